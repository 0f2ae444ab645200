"""telemon: a metrics exporter for Telegraf and InfluxDB.

Embed it in an aiohttp app the way Telemon was embedded in a Zinc server::

    import telemon
    tm = telemon.Telemon(measurement="app")
    tm.tags["host"] = "telemon-1"
    tm.fields["meaning"] = lambda: 42
    app.router.add_get("/metrics", tm.handler)

or run the whole agent (inputs, sink, outputs) from a configuration::

    config = telemon.load_config(Path("telemon.toml"))
    async with telemon.Agent(config) as agent:   # or: web.run_app(telemon.create_app(config))
        body = await agent.scrape()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from telemon.lazy import Telemon  # noqa: E402
from telemon.lineprotocol import EncoderOptions, LineEncoder  # noqa: E402
from telemon.metric import Metric  # noqa: E402

if TYPE_CHECKING:
    from telemon.agent import Agent
    from telemon.config import Config, ConfigError, load_config
    from telemon.server import create_app

__all__ = [
    "Agent",
    "Config",
    "ConfigError",
    "EncoderOptions",
    "LineEncoder",
    "Metric",
    "Telemon",
    "__version__",
    "create_app",
    "load_config",
]

# Imported on first use: embedding only a `Telemon` does not load the inputs.
_LAZY = {
    "Agent": "telemon.agent",
    "Config": "telemon.config",
    "ConfigError": "telemon.config",
    "load_config": "telemon.config",
    "create_app": "telemon.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'telemon' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
