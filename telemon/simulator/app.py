"""The simulator over HTTP: N simulated Pharo images in one aiohttp app, faults on demand.

VM 0 answers at `/metrics`, `/stats.json`, `/stats/labels`, `/vm/parameters`
and `/vm/report`; VM n (0 <= n < vms) at the same paths under `/<n>/`.
`?fault=NAME` (or the `fault` option, for every request) makes a request
misbehave; see `FAULTS`. Every VM is a Spur VM unless `vm="classic"` (or its
index is in `classic_vms`): then it serves a classic VM's figures.

A VM's condition (`conditions`: healthy, leak, gc_storm, down) is switched at
runtime with `POST /condition?condition=NAME` (VM 0) or `POST /<n>/condition`
(the name may be the body instead); `GET` of those paths answers it. A VM
`down` answers every data request 503.
"""

from __future__ import annotations

import asyncio
import html
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import suppress
from typing import Any

from aiohttp import web

from telemon.simulator.conditions import CONDITIONS, DOWN, HEALTHY, Condition, parse_condition
from telemon.simulator.faults import FAULTS, deliver, error_page, pause
from telemon.simulator.render import (
    CONTENT_TYPES,
    FORMATS,
    ReportViews,
    render_influx,
    render_json,
    render_labels,
    render_parameters,
)
from telemon.simulator.snapshot import (
    CLASSIC,
    MODERN_PARAMETER_COUNT,
    SPUR,
    SQUEAK_EPOCH_OFFSET_S,
    VM_KINDS,
    VMKind,
    VMSnapshot,
)
from telemon.simulator.vm import SimulatedVM

__all__ = [
    "CONDITION_PATH",
    "ENDPOINTS",
    "SIMULATOR_KEY",
    "Fleet",
    "Simulator",
    "create_simulator_app",
    "run_simulator",
    "start_simulator",
]

_log = logging.getLogger("telemon.simulator")

ENDPOINTS = {
    "/metrics": "influx",
    "/stats.json": "json",
    "/stats/labels": "labels",
    "/vm/parameters": "parameters",
    "/vm/report": "report",
}
"""Path (under `/` for VM 0 or `/<n>` for VM n) -> format served there."""
HEALTH_PATH = "/healthz"
CONDITION_PATH = "/condition"
"""Under `/` or `/<n>`: GET answers the VM's condition, POST switches it."""
MAX_CONDITION_BODY = 256
MIB = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fleet:
    """The simulated VMs, each with its own seed and age, created on first request.

    Each is a `vm` VM, but those whose index is in `classic_vms` are classic;
    each starts in `condition`.
    """

    def __init__(
        self,
        count: int,
        seed: int,
        clock: Callable[[], float],
        *,
        wall_clock: Callable[[], float] = time.time,
        parameter_count: int = MODERN_PARAMETER_COUNT,
        vm: VMKind = SPUR,
        classic_vms: Collection[int] = (),
        condition: str = HEALTHY,
    ) -> None:
        if count < 1:
            raise ValueError("a fleet needs at least one VM")
        if vm not in VM_KINDS:
            raise ValueError(f"unknown vm {vm!r}; one of {', '.join(VM_KINDS)}")
        self.condition = parse_condition(condition)
        self.count = count
        self.seed = seed
        self.clock = clock
        self.parameter_count = parameter_count
        self.kind = vm
        self.classic_vms = frozenset(classic_vms)
        self.origin = clock()
        self._wall_origin = wall_clock()
        self._vms: dict[int, SimulatedVM] = {}

    def vm(self, index: int) -> SimulatedVM:
        """VM `index`, booted some seeded time (10 min to 12 h) before the fleet."""
        vm = self._vms.get(index)
        if vm is None:
            if not 0 <= index < self.count:
                raise IndexError(index)
            age = random.Random(f"telemon-sim:{self.seed}:{index}:age").uniform(600, 43_200)
            booted_at_s = self._wall_origin - age + SQUEAK_EPOCH_OFFSET_S
            vm = SimulatedVM(
                f"{self.seed}:{index}",
                now=self.origin,
                uptime=age,
                parameter_count=self.parameter_count,
                booted_at_us=int(booted_at_s * 1e6),
                vm=self.kind_of(index),
                condition=self.condition,
            )
            self._vms[index] = vm
        return vm

    def kind_of(self, index: int) -> VMKind:
        """Whether VM `index` is a Spur or a classic VM."""
        return CLASSIC if index in self.classic_vms else self.kind

    def snapshot(self, index: int) -> VMSnapshot:
        """VM `index` as of now."""
        return self.vm(index).at(self.clock())

    def restart(self, index: int) -> None:
        """Restart VM `index` now: uptime and counters from zero."""
        self.vm(index).restart(self.clock())

    def condition_of(self, index: int) -> Condition:
        """VM `index`'s condition now."""
        return self.vm(index).condition

    def set_condition(self, index: int, condition: str) -> Condition:
        """VM `index` is in `condition` from now on (ValueError if unknown); answers it."""
        vm = self.vm(index)
        vm.set_condition(condition, self.clock())
        return vm.condition


class Simulator:
    """What the handlers share: the fleet, the options and the report viewers."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        fmt: str | None = None,
        fault: str | None = None,
        delay: float = 2.0,
        huge_size: int = 8 * MIB,
        app_measurement: str | None = None,
        report_newline: str | None = None,
    ) -> None:
        if fmt is not None and fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        self.fleet = fleet
        self.fmt = fmt
        self.fault = fault
        self.delay = delay
        self.huge_size = huge_size
        self.app_measurement = app_measurement
        self.report_newline = report_newline
        self.views = ReportViews()
        self.stopping = asyncio.Event()
        self.requests = 0

    def render(self, index: int, fmt: str, viewer: str) -> str:
        """VM `index` now, in `fmt`; `viewer` keys the report's "Since last view"."""
        snapshot = self.fleet.snapshot(index)
        if fmt == "influx":
            return render_influx(
                snapshot, tags={"host": f"pharo-{index}"}, app_measurement=self.app_measurement
            )
        if fmt == "report":
            return self.views.render((index, viewer), snapshot, newline=self.report_newline)
        renderer = {"json": render_json, "labels": render_labels, "parameters": render_parameters}
        return renderer[fmt](snapshot)


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def create_simulator_app(
    *,
    vms: int = 1,
    seed: int = 0,
    fmt: str | None = None,
    fault: str | None = None,
    delay: float = 2.0,
    huge_size: int = 8 * MIB,
    parameter_count: int = MODERN_PARAMETER_COUNT,
    app_measurement: str | None = None,
    report_newline: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    vm: VMKind = SPUR,
    classic_vms: Collection[int] = (),
    condition: str = HEALTHY,
) -> web.Application:
    """The simulator app; `fmt` makes `/` (and `/<n>/`) serve that format instead of the index.

    `fault` applies to every data request (`?fault=none` lifts it for one);
    `parameter_count=40` emulates an older VM's `getParameters`; `vm="classic"`
    makes every VM, `classic_vms` those VMs, a classic VM; the report's lines
    end with `report_newline`, by default CR for a classic VM and LF for Spur;
    every VM starts in `condition` (one of `CONDITIONS`).
    """
    fleet = Fleet(
        vms,
        seed,
        clock,
        wall_clock=wall_clock,
        parameter_count=parameter_count,
        vm=vm,
        classic_vms=classic_vms,
        condition=condition,
    )
    app = web.Application()
    app[SIMULATOR_KEY] = Simulator(
        fleet,
        fmt=fmt,
        fault=fault,
        delay=delay,
        huge_size=huge_size,
        app_measurement=app_measurement,
        report_newline=report_newline,
    )
    for path, format_name in ENDPOINTS.items():
        handler = _data_handler(format_name)
        app.router.add_get(path, handler)
        app.router.add_get(r"/{vm:\d+}" + path, handler)
    root = _data_handler(None)
    app.router.add_get("/", root)
    app.router.add_get(r"/{vm:\d+}", root)
    app.router.add_get(r"/{vm:\d+}/", root)
    for prefix in ("", r"/{vm:\d+}"):
        app.router.add_get(prefix + CONDITION_PATH, _get_condition)
        app.router.add_post(prefix + CONDITION_PATH, _post_condition)
    app.router.add_get(HEALTH_PATH, _health)
    app.on_shutdown.append(_stop_waiting)
    app.cleanup_ctx.append(_warm_up_ctx)
    return app


async def _warm_up_ctx(app: web.Application) -> AsyncIterator[None]:
    """Create the fleet's VMs in the background, so no first request pays for it."""
    task = asyncio.create_task(_warm_up(app[SIMULATOR_KEY].fleet))
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def _warm_up(fleet: Fleet) -> None:
    for index in range(fleet.count):
        fleet.vm(index)
        if index % 20 == 19:
            await asyncio.sleep(0)  # about 20 ms of work: let requests through


async def _stop_waiting(app: web.Application) -> None:
    """Release hanging and slow requests, so shutdown does not wait for them."""
    app[SIMULATOR_KEY].stopping.set()


def _vm_index(request: web.Request) -> int:
    """The VM a path names (`/<n>/...`, else 0); 404 beyond the fleet."""
    index = int(request.match_info.get("vm", "0"))
    count = request.app[SIMULATOR_KEY].fleet.count
    if index >= count:
        raise web.HTTPNotFound(text=f"no VM {index}: this simulator runs VMs 0-{count - 1}\n")
    return index


def _data_handler(fmt: str | None) -> Handler:
    """A handler serving `fmt` (None: the app's format, else the index page)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        simulator = request.app[SIMULATOR_KEY]
        index = _vm_index(request)
        chosen = fmt or simulator.fmt
        if chosen is None:
            return _index(simulator, index)
        return await _serve(request, simulator, index, chosen)

    return handler


async def _serve(
    request: web.Request, simulator: Simulator, index: int, fmt: str
) -> web.StreamResponse:
    fault = request.query.get("fault", simulator.fault or "none")
    if fault not in FAULTS:
        raise web.HTTPBadRequest(text=f"unknown fault {fault!r}; one of {', '.join(FAULTS)}\n")
    simulator.requests += 1
    if simulator.fleet.condition_of(index) == DOWN:
        raise web.HTTPServiceUnavailable(text=f"pharo-{index} is down (condition {DOWN})\n")
    if fault == "hang":
        await pause(request, simulator.stopping, None)
        raise web.HTTPServiceUnavailable()
    if fault == "slow":
        delay = _number(request, "delay", simulator.delay)
        if not await pause(request, simulator.stopping, delay):
            raise web.HTTPServiceUnavailable()
    if fault == "restart":
        simulator.fleet.restart(index)
    if fault == "500":
        return error_page()
    size = int(_number(request, "size", simulator.huge_size)) if fault == "huge" else 0
    viewer = request.query.get("client") or request.remote or ""
    body = simulator.render(index, fmt, viewer).encode()
    seed = f"{simulator.fleet.seed}:{simulator.requests}"
    return await deliver(request, fault, body, CONTENT_TYPES[fmt], huge_size=size, seed=seed)


def _number(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise web.HTTPBadRequest(text=f"{name} must be a number >= 0, got {text!r}\n")
    return value


async def _get_condition(request: web.Request) -> web.Response:
    """The VM's condition, one word on a line."""
    index = _vm_index(request)
    return web.Response(text=f"{request.app[SIMULATOR_KEY].fleet.condition_of(index)}\n")


async def _post_condition(request: web.Request) -> web.Response:
    """Switch the VM's condition to `?condition=NAME` or the body's NAME; answers it."""
    index = _vm_index(request)
    text = request.query.get("condition")
    if text is None:
        text = await _condition_body(request)
    try:
        condition = request.app[SIMULATOR_KEY].fleet.set_condition(index, text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    _log.info("VM %d: condition %s", index, condition)
    return web.Response(text=f"{condition}\n")


async def _condition_body(request: web.Request) -> str:
    """The body's condition name (`NAME` or `condition=NAME`), read no further than a name."""
    body = await request.content.read(MAX_CONDITION_BODY + 1)
    text = body.decode("utf-8", "replace").strip()
    if not text:
        raise web.HTTPBadRequest(
            text=f"no condition: give ?condition=NAME or NAME as the body;"
            f" one of {', '.join(CONDITIONS)}\n"
        )
    if len(body) > MAX_CONDITION_BODY:
        raise web.HTTPBadRequest(
            text=f"the body is longer than a condition's name; one of {', '.join(CONDITIONS)}\n"
        )
    return text.removeprefix("condition=")


async def _health(request: web.Request) -> web.Response:
    """Alive; never subject to faults."""
    return web.Response(text="ok\n")


def _index(simulator: Simulator, index: int) -> web.Response:
    prefix = f"/{index}" if index else ""
    links = "".join(
        f'<li><a href="{prefix}{path}">{prefix}{path}</a> ({fmt})</li>'
        for path, fmt in ENDPOINTS.items()
    )
    page = _INDEX.format(
        index=index,
        kind=simulator.fleet.kind_of(index),
        condition=simulator.fleet.condition_of(index),
        condition_path=f"{prefix}{CONDITION_PATH}",
        conditions=", ".join(CONDITIONS),
        count=simulator.fleet.count,
        last=simulator.fleet.count - 1,
        links=links,
        health=HEALTH_PATH,
        faults=html.escape(", ".join(FAULTS)),
    )
    return web.Response(text=page, content_type="text/html")


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>telemon simulator</title></head>
<body><h1>Simulated Pharo VM {index} ({kind}, {condition})</h1>
<ul>{links}</ul>
<p>{count} VM(s): VM n (0 to {last}) answers the same paths under <code>/n/</code>,
e.g. <code>/{last}/metrics</code>; the paths without a prefix are VM 0.
<a href="{health}">{health}</a> answers when the simulator is up.</p>
<p>Misbehave with <code>?fault=NAME</code>: {faults}
(<code>slow</code> takes <code>&amp;delay=SECONDS</code>, <code>huge</code>
<code>&amp;size=BYTES</code>; <code>?client=NAME</code> keys the report's
"Since last view").</p>
<p>Make it ill with <code>POST {condition_path}?condition=NAME</code>
(or NAME as the body): {conditions}; <code>GET {condition_path}</code>
answers its condition. A VM <code>down</code> answers 503.</p>
</body></html>
"""


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[web.AppRunner, int]:
    """Serve a simulator inside the running loop; answers the runner and the bound port.

    `options` are `create_simulator_app`'s; stop it with `await runner.cleanup()`.
    """
    runner = web.AppRunner(create_simulator_app(**options), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def run_simulator(
    listen_host: str,
    port: int,
    *,
    fmt: str | None,
    fault: str | None,
    vms: int,
    seed: int,
    vm: VMKind = SPUR,
    condition: str = HEALTHY,
) -> None:
    """`telemon simulate`: serve until interrupted."""
    app = create_simulator_app(vms=vms, seed=seed, fmt=fmt, fault=fault, vm=vm, condition=condition)
    _log.info(
        "simulating %d %s Pharo VM(s), %s, on http://%s:%d/", vms, vm, condition, listen_host, port
    )
    web.run_app(app, host=listen_host, port=port, print=None, access_log=None, shutdown_timeout=2.0)
