"""`telemon demo`: a simulated Pharo VM and a telemon scraping it, in one process.

The simulator serves ten VMs, one per format a Pharo image serves its
figures in, five Spur VMs and five classic (pre-Spur) ones, so the demo's
`/metrics` shows `pharo` lines read from each.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from aiohttp import web

from telemon.config import Config, parse_config
from telemon.server import create_app
from telemon.simulator.app import start_simulator

__all__ = ["CLASSIC_VMS", "DEMO_PATHS", "SIMULATOR_URL", "demo_app", "demo_config"]

DEMO_PATHS = {
    "influx": "/1/metrics",
    "json": "/2/stats.json",
    "labels": "/3/stats/labels",
    "parameters": "/4/vm/parameters",
    "report": "/5/vm/report",
    "classic-influx": "/6/metrics",
    "classic-json": "/7/stats.json",
    "classic-labels": "/8/stats/labels",
    "classic-parameters": "/9/vm/parameters",
    "classic-report": "/10/vm/report",
}
"""Instance name (after ``demo-``) -> the simulator's path; VMs 6-10 are classic."""
CLASSIC_VMS = range(6, 11)
SIMULATOR_URL = web.AppKey("simulator_url", str)
"""The demo app's simulator, `http://127.0.0.1:PORT/` (its index lists the VMs)."""


def demo_config(listen: str, simulator_port: int, interval: str = "5s") -> Config:
    """telemon's own inputs plus one pharo target per format."""
    base = f"http://127.0.0.1:{simulator_port}"
    urls = [base + path for path in DEMO_PATHS.values()]
    instances = {base + path: f"demo-{fmt}" for fmt, path in DEMO_PATHS.items()}
    return parse_config(
        {
            "global_tags": {"host": socket.gethostname() or "demo"},
            "agent": {"interval": interval},
            "http": {"listen": listen},
            "inputs": {
                "pharo": [{"urls": urls, "instances": instances}],
                "process": [{}],
                "python": [{}],
            },
        },
        "<demo>",
    )


def demo_app(listen: str) -> web.Application:
    """The telemon app, with the simulator started and stopped alongside it."""
    simulator_port = _free_port()
    app = create_app(demo_config(listen, simulator_port))
    app[SIMULATOR_URL] = f"http://127.0.0.1:{simulator_port}/"

    async def simulator_ctx(app: web.Application) -> AsyncIterator[None]:
        runner, _ = await start_simulator(
            "127.0.0.1", simulator_port, vms=len(DEMO_PATHS) + 1, classic_vms=CLASSIC_VMS
        )
        yield
        await runner.cleanup()

    # Before the collector's context, so the first polls find the simulator up.
    app.cleanup_ctx.insert(0, simulator_ctx)
    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
