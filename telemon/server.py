"""The aiohttp application: `/metrics`, `/healthz` and the index page."""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from telemon.agent import Agent
from telemon.auth import auth_middleware
from telemon.collector import TargetState
from telemon.config import Config
from telemon.lazy import Telemon
from telemon.outputs.base import OutputRunner
from telemon.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from telemon.prometheus import render_prometheus, wants_prometheus
from telemon.respond import line_protocol_response
from telemon.sink import Sink, open_paths, setup_sink

__all__ = ["AGENT_KEY", "create_app"]

AGENT_KEY = web.AppKey("agent", Agent)
HEALTH_PATH = "/healthz"


def create_app(
    config: Config,
    telemons: Sequence[Telemon] = (),
    *,
    agent: Agent | None = None,
) -> web.Application:
    """HTTP wired to an agent (built from `config` unless given) that runs with the app."""
    agent = agent or Agent(config, telemons)
    credentials = agent.settings.credentials
    middlewares = (
        [auth_middleware(credentials, frozenset({HEALTH_PATH}) | open_paths(config))]
        if credentials.required
        else []
    )
    # The sink inflates gzip bodies itself, in bounded steps; aiohttp's own
    # inflating would keep decompressing a refused gzip bomb while draining it.
    app = web.Application(middlewares=middlewares, handler_args={"auto_decompress": False})
    app[AGENT_KEY] = agent
    app.router.add_get(config.http.path, metrics_handler)
    app.router.add_get(HEALTH_PATH, health_handler)
    app.router.add_get("/", index_handler)
    if agent.sink is not None:
        setup_sink(app, agent.sink)
    app.cleanup_ctx.append(_agent_ctx)
    return app


async def _agent_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[AGENT_KEY]:
        yield


async def metrics_handler(request: web.Request) -> web.Response:
    """GET/HEAD: everything collected, as line protocol or (when asked) Prometheus text."""
    agent = request.app[AGENT_KEY]
    config = agent.config
    accept = request.headers.get("Accept")
    prometheus = False
    # Telegraf's inputs.http sends neither a query nor an Accept: skip parsing.
    if request.query_string or (accept and accept != "*/*"):
        try:
            prometheus = wants_prometheus(request.query.get("format"), accept)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
    if not prometheus:  # the fast path: encoded snapshots joined
        response = line_protocol_response(request, await agent.scrape(), gzip=config.http.gzip)
    else:
        options = config.prometheus
        body = render_prometheus(
            await agent.scrape_metrics(),
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
    """A page showing each running part's state, and the endpoints."""
    agent = request.app[AGENT_KEY]
    status = agent.status()
    path = html.escape(agent.config.http.path)
    inputs = "".join(_input_row(state, status.dropped(state.source)) for state in status.inputs)
    now_ns = time.time_ns()
    outputs = "".join(_output_row(runner, now_ns) for runner in status.outputs)
    page = _INDEX.format(
        version=html.escape(status.version),
        metrics=path,
        health=HEALTH_PATH,
        inputs=inputs or '<tr><td colspan="7">no inputs configured</td></tr>',
        outputs=_OUTPUTS.format(rows=outputs) if outputs else "",
        sink=_sink_table(status.sink) if status.sink is not None else "",
    )
    return web.Response(text=page, content_type="text/html")


def _state_cell(up: bool | None) -> str:
    if up is None:
        return '<td class="wait">pending</td>'
    return '<td class="up">up</td>' if up else '<td class="down">down</td>'


def _time_cell(time_ns: int | None) -> str:
    if not time_ns:
        return "<td>never</td>"
    return f"<td>{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(time_ns / 1e9))}</td>"


def _cells(*texts: object) -> str:
    return "".join(f"<td>{html.escape(str(text))}</td>" for text in texts)


def _input_row(state: TargetState, dropped: int) -> str:
    health = state.health
    return (
        f"<tr>{_cells(state.input, state.target.target)}{_state_cell(health.up)}"
        f"{_time_cell(health.last_success_ns)}"
        f"{_cells(state.errors, dropped, health.last_error or '')}</tr>"
    )


def _output_row(runner: OutputRunner, now_ns: int) -> str:
    spool, stats = runner.spool, runner.stats
    behind = f"{runner.oldest_unwritten_s(now_ns):.1f} s"
    return (
        f"<tr>{_cells(runner.name, runner.sender.url)}{_state_cell(runner.up)}"
        f"{_time_cell(runner.last_success_ns)}"
        f"{_cells(stats.written, stats.dropped, runner.pending_lines, spool.lines, spool.bytes)}"
        f"{_cells(behind, runner.last_error or '')}</tr>"
    )


def _sink_table(sink: Sink) -> str:
    row = (
        f"<tr>{_state_cell(sink.up)}"
        f"{_cells(len(sink.store), sink.lines, sink.refused_lines, sink.last_error or '')}</tr>"
    )
    return _SINK.format(row=row)


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>telemon</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; }}
.up {{ color: #070; }} .down {{ color: #b00; }} .wait {{ color: #777; }}
</style></head>
<body><h1>telemon {version}</h1>
<p><a href="{metrics}">{metrics}</a> (line protocol) &middot;
<a href="{metrics}?format=prometheus">Prometheus format</a> &middot;
<a href="{health}">{health}</a></p>
<h2>Inputs</h2>
<table><tr><th>input</th><th>target</th><th>state</th><th>last success</th>
<th>errors</th><th>values dropped</th><th>last error</th></tr>
{inputs}
</table>
{outputs}{sink}</body></html>
"""

_OUTPUTS = """<h2>Outputs</h2>
<table><tr><th>output</th><th>url</th><th>state</th><th>last write</th><th>lines written</th>
<th>lines dropped</th><th>lines waiting</th><th>spooled lines</th><th>spooled bytes</th>
<th>oldest unwritten</th><th>last error</th></tr>
{rows}
</table>
"""

_SINK = """<h2>Sink</h2>
<table><tr><th>state</th><th>series</th><th>lines kept</th><th>lines refused</th>
<th>last refusal</th></tr>
{row}
</table>
"""
