"""Benchmark: rendering the status page at `/` for 1,000 Pharo targets with full charts.

Run from the project root:

    PYTHONPATH=. .venv/bin/python bench/status_page.py [--targets 1000] [--repeats 21]

It builds 1,000 polled `pharo` targets (half of them down with an error, so
every column is filled) and a `History` holding a full 15-minute window for
each (one collection per 5 s step: 180 points in each of their two series,
plus the collection-time series), then times `render_status_page` alone (the
handler adds only `agent.status()`, a few list copies). It also measures, with
`tracemalloc`, what the history holds per series, and what feeding it costs
per collection (`History.record_collection`). Target: a render under
100 ms at 1,000 targets. Prints Markdown to paste into BENCHMARKS.md; exits
1 when the target is missed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc

from _common import print_machine_info

from telemon import __version__
from telemon.agent import AgentStatus
from telemon.collector import TargetState
from telemon.history import POINTS, STEP_S, WINDOW_S, History
from telemon.inputs.base import Target
from telemon.metric import FieldValue, Metric
from telemon.status_page import PageContext, render_status_page

TARGET_MS = 100.0
T0_S = 1_700_000_000.0


class _Pharo(Target):
    """A stand-in for a Pharo target: its `instance` and its last collection's metrics."""

    def __init__(self, index: int) -> None:
        super().__init__(f"http://10.0.{index // 250}.{index % 250}:8079/metrics")
        self.instance = f"vm-{index:04d}"

    async def collect(self, now_ns: int) -> list[Metric]:
        return []


def _states(count: int) -> list[TargetState]:
    states = []
    for index in range(count):
        state = TargetState("pharo", _Pharo(index), 10.0, 5.0)
        state.health.up = index % 2 == 0
        state.health.last_success_ns = int((T0_S + WINDOW_S - 7) * 1e9)
        state.health.failures = index % 7
        state.health.last_error = None if state.health.up else "connection refused by <host>"
        state.duration_ms = 1.0 + index % 13
        states.append(state)
    return states


class _Clock:
    def __init__(self) -> None:
        self.now = T0_S

    def __call__(self) -> float:
        return self.now


def _fill(history: History, clock: _Clock, states: list[TargetState]) -> None:
    """A full window: one collection of every target per step."""
    for step in range(POINTS):
        clock.now = T0_S + step * STEP_S
        for index, state in enumerate(states):
            fields: dict[str, FieldValue] = {
                "memory": 200_000_000 + index * 10_000 + step * 1000,
                "memoryFree": 50_000_000,
                "fullGCTime": step * 3 + index,
                "incrGCTime": step * 5,
            }
            state.metrics = [Metric("pharo", {"instance": f"vm-{index:04d}"}, fields)]
            history.record_collection(state)
        history.record_scrape(2.0 + step % 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print_machine_info()

    states = _states(args.targets)
    clock = _Clock()
    tracemalloc.start()
    history = History(clock)
    before = tracemalloc.get_traced_memory()[0]
    _fill(history, clock, states)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    series = sum(len(s) for s in history.series.values())
    # The feeding cost, without tracemalloc's: a second history filled the same way.
    started = time.perf_counter()
    _fill(History(_Clock()), _Clock(), states)
    feed_us = (time.perf_counter() - started) * 1e6 / (POINTS * len(states))

    status = AgentStatus(
        version=__version__,
        started_ns=int(T0_S * 1e9),
        inputs=states,
        outputs=[],
        sink=None,
        dropped=lambda source: 0,
        interval=10.0,
        config_path="/etc/telemon/telemon.toml",
        history=history,
        now_ns=int(clock.now * 1e9),
    )
    context = PageContext("/metrics", "/healthz", "0.0.0.0:8080")
    times = []
    size = 0
    gc.disable()
    try:
        for _ in range(args.repeats):
            started = time.perf_counter()
            page = render_status_page(status, context)
            times.append((time.perf_counter() - started) * 1000)
            size = len(page.encode())
    finally:
        gc.enable()

    median = statistics.median(times)
    print(f"\n| targets | series in the history | held by the history | per series |"
          f" page size | render, median of {args.repeats} | best | target |"
          " feeding, per collection |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    print(
        f"| {args.targets:,} | {series:,} | {held / 1e6:.1f} MB | {held / series:,.0f} B |"
        f" {size / 1e3:,.0f} kB | {median:.1f} ms | {min(times):.1f} ms |"
        f" < {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'} |"
        f" {feed_us:.1f} µs |"
    )
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
