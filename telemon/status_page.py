"""The operator's page at `/`: every running part's state, and charts of the last minutes.

Pure rendering, no I/O: `render_status_page` takes the agent's status (with
its `telemon.history.History`) and where telemon serves, and answers the
HTML. The charts are inline SVG drawn here (no script, nothing loaded from
elsewhere); the page reloads itself with a meta refresh. Every text that
comes from a configuration, a target or an upstream is escaped.

A chart shows at most `MAX_LINES` series (the highest latest values) and
says how many it left out, so that the page stays small and fast with
thousands of targets; the tables list every target.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from telemon.agent import AgentStatus
from telemon.collector import TargetState
from telemon.history import (
    CHARTS,
    DOCKER_CPU,
    DOCKER_MEMORY,
    PHARO_GC,
    PHARO_MEMORY,
    WINDOW_S,
    ChartSpec,
    SeriesView,
)
from telemon.outputs.base import OutputRunner
from telemon.sink import Sink

__all__ = [
    "MAX_LINES",
    "PageContext",
    "format_age",
    "format_interval",
    "instance_of",
    "render_status_page",
]

MAX_LINES = 8
"""Series drawn per chart at most."""
MAX_ERROR_CHARS = 300
"""A longer last error is cut (with an ellipsis): a page line, not a log."""
REFRESH_MIN_S, REFRESH_MAX_S = 5, 60
"""The meta refresh follows the agent's interval, within these bounds."""

# Which input's presence makes a chart worth showing before it has data.
_CHART_INPUTS = {
    PHARO_MEMORY.key: "pharo",
    PHARO_GC.key: "pharo",
    DOCKER_CPU.key: "docker",
    DOCKER_MEMORY.key: "docker",
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_WIDTH, _HEIGHT = 520, 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 72, 8, 8, 20


@dataclass(frozen=True, slots=True)
class PageContext:
    """Where telemon serves: what the page links to and names."""

    metrics_path: str
    health_path: str
    listen: str
    """The address actually bound, "HOST:PORT"."""


def render_status_page(status: AgentStatus, context: PageContext) -> str:
    """The whole page."""
    now_ns = status.now_ns
    refresh = int(min(REFRESH_MAX_S, max(REFRESH_MIN_S, status.interval)))
    return _PAGE.format(
        refresh=refresh,
        version=_e(status.version),
        about=_about(status, context, now_ns),
        charts=_charts(status),
        inputs=_inputs_table(status, now_ns),
        outputs=_outputs_table(status.outputs, now_ns) if status.outputs else "",
        sink=_sink_table(status.sink) if status.sink is not None else "",
    )


# --- text --------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def format_age(then_ns: int | None, now_ns: int) -> str:
    """How long ago, for a person: "4 s ago", "3 min ago", "2 h ago", "never"."""
    if not then_ns:
        return "never"
    return f"{format_duration((now_ns - then_ns) / 1e9)} ago"


def format_duration(seconds: float) -> str:
    """A duration in its largest whole unit: "4 s", "3 min", "2 h", "5 d"."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:.0f} s"


def format_interval(seconds: float) -> str:
    """An interval as configured: "0.5 s", "10 s", "5 min", "1 h"."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def format_value(value: float, unit: str) -> str:
    """A chart value with its unit (bytes in binary multiples)."""
    if unit == "bytes":
        for suffix, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.0f} B"
    for prefix, scale in (("M", 1e6), ("k", 1e3)):  # short enough for the axis: "12k ms/min"
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix} {unit}"
    return f"{value:.3g} {unit}"


def _cut(text: str | None) -> str:
    if not text:
        return ""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "\u2026"


def instance_of(state: TargetState) -> str:
    """The `instance` tag a target's lines carry: a Pharo target's (for one discovered in a
    container, the container's name), else the `container_name` or `instance` input tag."""
    instance = getattr(state.target, "instance", None)
    if isinstance(instance, str):
        return instance
    return state.tags.get("container_name") or state.tags.get("instance") or ""


# --- the head of the page --------------------------------------------------------------


def _about(status: AgentStatus, context: PageContext, now_ns: int) -> str:
    uptime = (
        format_duration((now_ns - status.started_ns) / 1e9) if status.started_ns else "not started"
    )
    metrics = _e(context.metrics_path)
    health = _e(context.health_path)
    return (
        f"<p>up {uptime} &middot; config <code>{_e(status.config_path or '(not given)')}</code>"
        f" &middot; listening on <code>{_e(context.listen)}</code></p>\n"
        f'<p><a href="{metrics}">{metrics}</a> (line protocol) &middot; '
        f'<a href="{metrics}?format=prometheus">Prometheus format</a> &middot; '
        f'<a href="{health}">{health}</a></p>'
    )


# --- charts ------------------------------------------------------------------------------


def _charts(status: AgentStatus) -> str:
    now_s = status.now_ns / 1e9
    inputs = {state.input for state in status.inputs}
    figures = []
    for spec in CHARTS:
        views, more = status.history.view(spec.key, now_s, MAX_LINES)
        wanted_by = _CHART_INPUTS.get(spec.key)
        if views or wanted_by is None or wanted_by in inputs:
            figures.append(chart_figure(spec, views, more, now_s))
    return "\n".join(figures)


def chart_figure(spec: ChartSpec, views: Sequence[SeriesView], more: int, now_s: float) -> str:
    """One chart: its title, the SVG and a legend with each series' latest value."""
    points = sum(len(view.points) for view in views)
    svg = _svg(spec, views, now_s) if views else _EMPTY_SVG
    legend = "".join(
        f'<li><span class="sw" style="background:{_COLORS[i % len(_COLORS)]}"></span>'
        f"{_e(view.label)} <b>{_e(format_value(view.points[-1][1], spec.unit))}</b></li>"
        for i, view in enumerate(views)
    )
    if more:
        legend += f'<li class="more">{more} more not drawn (lower values)</li>'
    return (
        f'<figure class="chart" id="chart-{spec.key}" data-series="{len(views)}"'
        f' data-points="{points}"><figcaption>{_e(spec.title)}</figcaption>'
        f'{svg}<ul class="legend">{legend}</ul></figure>'
    )


_EMPTY_SVG = (
    f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}"'
    ' role="img" aria-label="no data yet">'
    f'<text x="{_WIDTH / 2}" y="{_HEIGHT / 2}" text-anchor="middle" fill="#777">'
    "no data yet</text></svg>"
)


def _svg(spec: ChartSpec, views: Sequence[SeriesView], now_s: float) -> str:
    top = _nice_ceiling(max(value for view in views for _, value in view.points), spec.unit)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    start = now_s - WINDOW_S

    def x(time_s: float) -> float:
        return _LEFT + (time_s - start) / WINDOW_S * plot_w

    def y(value: float) -> float:
        return _TOP + plot_h - max(0.0, value) / top * plot_h

    parts = [
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img"'
        f' aria-label="{_e(spec.title)}">',
        *_axes(spec, top, plot_w, plot_h),
    ]
    for i, view in enumerate(views):
        color = _COLORS[i % len(_COLORS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in view.points)
        last_t, last_v = view.points[-1]
        parts.append(
            f'<polyline class="series" data-points="{len(view.points)}" fill="none"'
            f' stroke="{color}" stroke-width="1.5" points="{coords}"><title>{_e(view.label)}'
            f"</title></polyline>"
            f'<circle cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="2.5" fill="{color}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes(spec: ChartSpec, top: float, plot_w: float, plot_h: float) -> Iterable[str]:
    bottom = _TOP + plot_h
    for fraction in (0.0, 0.5, 1.0):
        level = bottom - fraction * plot_h
        yield (
            f'<line x1="{_LEFT}" y1="{level:.1f}" x2="{_LEFT + plot_w}" y2="{level:.1f}"'
            ' stroke="#ddd"/>'
            f'<text x="{_LEFT - 4}" y="{level + 4:.1f}" text-anchor="end" class="tick">'
            f"{_e(format_value(top * fraction, spec.unit))}</text>"
        )
    minutes = int(WINDOW_S // 60)
    for ago in range(minutes, -1, -5):
        at = _LEFT + (1 - ago / minutes) * plot_w
        label = f"-{ago} min" if ago else "now"
        anchor = "start" if ago == minutes else "end" if not ago else "middle"
        yield (
            f'<text x="{at:.1f}" y="{_HEIGHT - 5}" text-anchor="{anchor}" class="tick">'
            f"{label}</text>"
        )


def _nice_ceiling(value: float, unit: str) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least `value` (> 0); for
    bytes, in the binary multiple they are shown in (so the axis reads 500 MiB)."""
    if value <= 0:
        return 1.0
    if unit == "bytes":
        multiple = 1 << 10 * min(3, max(0, (int(value).bit_length() - 1) // 10))
        return _nice_ceiling(value / multiple, "") * multiple
    scale = 10.0 ** int(f"{value:e}".split("e")[1])
    for step in (1, 2, 5, 10):
        if value <= step * scale:
            return step * scale
    return 10 * scale


# --- tables ------------------------------------------------------------------------------


def _state_cell(up: bool | None) -> str:
    if up is None:
        return '<td class="wait">pending</td>'
    return '<td class="up">up</td>' if up else '<td class="down">down</td>'


def _cells(*texts: object) -> str:
    return "".join(f"<td>{_e(text)}</td>" for text in texts)


def _inputs_table(status: AgentStatus, now_ns: int) -> str:
    dropped = status.dropped
    rows = "\n".join(_input_row(state, dropped(state.source), now_ns) for state in status.inputs)
    return _INPUTS.format(rows=rows or '<tr><td colspan="9">no inputs configured</td></tr>')


def _input_row(state: TargetState, dropped: int, now_ns: int) -> str:
    # One f-string, and only texts from outside escaped: 1,000 rows in a few ms.
    health, escape = state.health, html.escape
    return (
        f"<tr><td>{escape(state.input)}</td><td>{escape(instance_of(state))}</td>"
        f"<td>{escape(state.target.target)}</td>{_state_cell(health.up)}"
        f"<td>{format_age(health.last_success_ns, now_ns)}</td>"
        f"<td>{format_interval(state.interval)}</td><td>{state.errors:d}</td><td>{dropped:d}</td>"
        f"<td>{escape(_cut(health.last_error))}</td></tr>"
    )


def _outputs_table(outputs: Sequence[OutputRunner], now_ns: int) -> str:
    return _OUTPUTS.format(rows="\n".join(_output_row(runner, now_ns) for runner in outputs))


def _output_row(runner: OutputRunner, now_ns: int) -> str:
    spool, stats = runner.spool, runner.stats
    behind = f"{runner.oldest_unwritten_s(now_ns):.1f} s"
    return (
        f"<tr>{_cells(runner.name, runner.sender.url)}{_state_cell(runner.up)}"
        f"{_cells(format_age(runner.last_success_ns, now_ns))}"
        f"{_cells(stats.written, stats.dropped, runner.pending_lines, spool.lines, spool.bytes)}"
        f"{_cells(behind, _cut(runner.last_error))}</tr>"
    )


def _sink_table(sink: Sink) -> str:
    reasons = ", ".join(f"{why}: {count}" for why, count in sink.refused.items() if count)
    return _SINK.format(
        row=f"<tr>{_state_cell(sink.up)}"
        f"{_cells(len(sink.store), sink.lines, sink.refused_lines, reasons or 'none')}"
        f"{_cells(_cut(sink.last_error))}</tr>"
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>telemon {version}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .5em; text-align: left; }}
th {{ background: #f3f3f3; }}
.up {{ color: #070; }} .down {{ color: #b00; font-weight: bold; }} .wait {{ color: #777; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure.chart {{ margin: 0; border: 1px solid #ddd; padding: .5em; }}
figcaption {{ font-weight: bold; margin-bottom: .3em; }}
.tick {{ font-size: 10px; fill: #555; }}
ul.legend {{ list-style: none; padding: 0; margin: .3em 0 0; font-size: 12px; max-width: 520px; }}
ul.legend li {{ display: inline-block; margin-right: 1em; }}
.sw {{ display: inline-block; width: .8em; height: .8em; margin-right: .3em; }}
</style></head>
<body><h1>telemon {version}</h1>
{about}
<h2>Last 15 minutes</h2>
<div class="charts">
{charts}
</div>
{inputs}
{outputs}{sink}</body></html>
"""

_INPUTS = """<h2>Inputs</h2>
<table id="inputs"><tr><th>input</th><th>instance</th><th>target</th><th>state</th>
<th>last success</th><th>interval</th><th>errors</th><th>values dropped</th>
<th>last error</th></tr>
{rows}
</table>
"""

_OUTPUTS = """<h2>Outputs</h2>
<table id="outputs"><tr><th>output</th><th>url</th><th>state</th><th>last write</th>
<th>lines written</th><th>lines dropped</th><th>lines waiting</th><th>spooled lines</th>
<th>spooled bytes</th><th>oldest unwritten</th><th>last error</th></tr>
{rows}
</table>
"""

_SINK = """<h2>Sink</h2>
<table id="sink"><tr><th>state</th><th>series</th><th>lines kept</th><th>lines refused</th>
<th>refusals</th><th>last refusal</th></tr>
{row}
</table>
"""
