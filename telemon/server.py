"""The aiohttp application: `/metrics`, `/healthz` and the index page."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from telemon import __version__
from telemon.agent import build_collector, build_output_runners
from telemon.auth import Credentials, auth_middleware
from telemon.collector import Collector, TargetState
from telemon.config import Config
from telemon.lazy import Telemon
from telemon.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from telemon.prometheus import render_prometheus, wants_prometheus
from telemon.respond import line_protocol_response
from telemon.sink import find_store, open_paths, setup_sink

__all__ = ["COLLECTOR_KEY", "CONFIG_KEY", "create_app"]

CONFIG_KEY = web.AppKey("config", Config)
COLLECTOR_KEY = web.AppKey("collector", Collector)
HEALTH_PATH = "/healthz"


def create_app(
    config: Config,
    telemons: Sequence[Telemon] = (),
    *,
    collector: Collector | None = None,
) -> web.Application:
    """The wired application; collection starts with the app and stops with it."""
    credentials = Credentials(
        config.http.username, config.http.basic_password, config.http.bearer_token
    )
    middlewares = (
        [auth_middleware(credentials, frozenset({HEALTH_PATH}) | open_paths(config))]
        if credentials.required
        else []
    )
    # The sink inflates gzip bodies itself, in bounded steps; aiohttp's own
    # inflating would keep decompressing a refused gzip bomb while draining it.
    app = web.Application(middlewares=middlewares, handler_args={"auto_decompress": False})
    app[CONFIG_KEY] = config
    app[COLLECTOR_KEY] = collector or build_collector(config, telemons)
    app.router.add_get(config.http.path, metrics_handler)
    app.router.add_get(HEALTH_PATH, health_handler)
    app.router.add_get("/", index_handler)
    if config.sink.enabled:
        setup_sink(app, config, find_store(app[COLLECTOR_KEY]))
    app.cleanup_ctx.append(_collection_ctx)
    return app


async def _collection_ctx(app: web.Application) -> AsyncIterator[None]:
    collector = app[COLLECTOR_KEY]
    runners = build_output_runners(app[CONFIG_KEY], collector)
    collector.start()
    for runner in runners:
        runner.start()
    yield
    # Collection first, so the outputs' last write (or spooling) holds every collection.
    await collector.stop()
    await asyncio.gather(*(runner.stop() for runner in runners))


async def metrics_handler(request: web.Request) -> web.Response:
    """GET/HEAD: everything collected, as line protocol or (when asked) Prometheus text."""
    collector, config = request.app[COLLECTOR_KEY], request.app[CONFIG_KEY]
    accept = request.headers.get("Accept")
    prometheus = False
    # Telegraf's inputs.http sends neither a query nor an Accept: skip parsing.
    if request.query_string or (accept and accept != "*/*"):
        try:
            prometheus = wants_prometheus(request.query.get("format"), accept)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
    if not prometheus:  # the fast path: encoded snapshots joined
        response = line_protocol_response(request, await collector.render(), gzip=config.http.gzip)
    else:
        options = config.prometheus
        body = render_prometheus(
            await collector.render_metrics(),
            timestamps=options.timestamps,
            string_as_label=options.string_as_label,
        )
        response = line_protocol_response(request, body, gzip=config.http.gzip)
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
    return response


async def health_handler(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.Response(text="ok\n")


async def index_handler(request: web.Request) -> web.Response:
    """A page listing each input target's state and the endpoints."""
    config = request.app[CONFIG_KEY]
    rows = "".join(_row(state) for state in request.app[COLLECTOR_KEY].states)
    path = html.escape(config.http.path)
    page = _INDEX.format(
        version=__version__,
        metrics=path,
        health=HEALTH_PATH,
        rows=rows or '<tr><td colspan="6">no inputs configured</td></tr>',
    )
    return web.Response(text=page, content_type="text/html")


def _row(state: TargetState) -> str:
    if state.up is None:
        status = '<td class="wait">pending</td>'
    else:
        status = '<td class="up">up</td>' if state.up else '<td class="down">down</td>'
    last_ok = (
        time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(state.last_success_ns / 1e9))
        if state.last_success_ns
        else "never"
    )
    cells = [state.input, state.target.target, last_ok, str(state.errors), state.last_error or ""]
    escaped = [f"<td>{html.escape(c)}</td>" for c in cells]
    return f"<tr>{escaped[0]}{escaped[1]}{status}{''.join(escaped[2:])}</tr>"


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>telemon</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; }}
.up {{ color: #070; }} .down {{ color: #b00; }} .wait {{ color: #777; }}
</style></head>
<body><h1>telemon {version}</h1>
<p><a href="{metrics}">{metrics}</a> (line protocol) &middot;
<a href="{health}">{health}</a></p>
<table><tr><th>input</th><th>target</th><th>state</th><th>last success</th>
<th>errors</th><th>last error</th></tr>
{rows}
</table></body></html>
"""
