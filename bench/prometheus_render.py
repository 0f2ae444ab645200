"""The Prometheus text format in-process: Prometheus naming vs Telegraf naming vs
prometheus_client.

    .venv/bin/python bench/prometheus_render.py [--series 200] [--repeats 7]

One scrape's worth of metrics: `--series` `pharo` series (tags host, instance) of
Telemon's ten fields, as `telemon.prometheus.render_steps` renders them for
`/metrics?format=prometheus`:

* prometheus, fresh  - `naming = "prometheus"` (snake_case, units converted, HELP from
                       the catalog), every metric new (a poll replaced them all);
* prometheus, cached - the same metrics again (nothing changed since the last scrape:
                       prepared samples joined);
* telegraf, fresh    - `naming = "telegraf"` (`<measurement>_<field>`, values as they are);
* prometheus_client  - the same samples as labelled gauges and counters in a
                       `CollectorRegistry`, `generate_latest()` (the peer).

Each figure is the best of `--repeats` runs of a fixed number of renderings, in µs per
rendering; the ratios are taken within this one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest  # noqa: E402

from telemon.catalog import Catalog  # noqa: E402
from telemon.inputs.pharo_figures import TELEMON_FIELDS  # noqa: E402
from telemon.metric import Metric  # noqa: E402
from telemon.prometheus import SampleCache, render_steps  # noqa: E402
from telemon.promnames import PrometheusNames  # noqa: E402

FIELDS = TELEMON_FIELDS


def metrics(series: int, round_: int) -> list[Metric]:
    return [
        Metric(
            "pharo",
            {"host": f"host-{i % 5}", "instance": f"vm-{i}"},
            {name: 1_000 * i + n + round_ for n, name in enumerate(FIELDS)},
            1_700_000_000_000_000_000,
        )
        for i in range(series)
    ]


def drain(steps: object) -> bytes:
    try:
        while True:
            next(steps)  # type: ignore[call-overload]
    except StopIteration as done:
        body: bytes = done.value
        return body


def best_us(render: Callable[[], object], count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(count):
            render()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def client_registry(series: int, names: PrometheusNames) -> CollectorRegistry:
    """The same samples in prometheus_client, named as telemon names them."""
    registry = CollectorRegistry()
    for name in FIELDS:
        family = names.family("pharo", name)
        kind = Counter if family.kind == "counter" else Gauge
        metric = kind(
            family.name.removesuffix("_total"), family.help, ["host", "instance"],
            registry=registry,
        )  # fmt: skip
        for i, m in enumerate(metrics(series, 0)):
            child = metric.labels(m.tags["host"], m.tags["instance"])
            value = family.convert(m.fields[name])  # type: ignore[arg-type]
            child.inc(value) if kind is Counter else child.set(value)  # type: ignore[union-attr]
            del i
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    _common.print_machine_info()
    series, repeats, count = args.series, args.repeats, 50
    prometheus = PrometheusNames(Catalog.for_config())
    telegraf = PrometheusNames(Catalog.for_config(), "telegraf")
    fresh = [metrics(series, r) for r in range(count)]
    rounds = iter(range(10**9))

    def fresh_with(names: PrometheusNames) -> Callable[[], object]:
        return lambda: drain(render_steps(fresh[next(rounds) % count], names=names))

    cache = SampleCache()
    same = metrics(series, 0)
    drain(render_steps(same, names=prometheus, cache=cache))
    registry = client_registry(series, prometheus)
    figures = {
        "telemon, prometheus naming, fresh": best_us(fresh_with(prometheus), count, repeats),
        "telemon, prometheus naming, cached": best_us(
            lambda: drain(render_steps(same, names=prometheus, cache=cache)), count, repeats
        ),
        "telemon, telegraf naming, fresh": best_us(fresh_with(telegraf), count, repeats),
        "prometheus_client generate_latest": best_us(
            lambda: generate_latest(registry), count, repeats
        ),
    }
    peer = figures["prometheus_client generate_latest"]
    rows = [
        [name, f"{us:,.0f}", f"{peer / us:.1f}x"] for name, us in figures.items()
    ]
    print(f"\n{series} series x {len(FIELDS)} fields = {series * len(FIELDS)} samples\n")
    print(_common.markdown_table(["rendering", "µs per scrape", "vs prometheus_client"], rows))


if __name__ == "__main__":
    main()
