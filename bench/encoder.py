"""Benchmark: telemon's LineEncoder against influxdb-client's Point on the same points.

Run from the project root:

    PYTHONPATH=. .venv/bin/python bench/encoder.py [--lines 5000] [--points 1000] [--repeats 21]
    PYTHONPATH=. .venv/bin/python bench/encoder.py --instructions   # needs valgrind

Each side builds its point object inside the timed loop (a `Metric` with a fresh
fields dict, or a `Point` with `.tag()`/`.field()`/`.time()` calls) and turns it
into one line. Repetitions alternate the two sides, with the garbage collector
off while timing (as `timeit` does); best-of and median are reported in lines
per second, as a markdown table. On a shared machine trust best-of most.

`--instructions` counts CPU instructions per line instead, with valgrind's
callgrind (Debian `valgrind`): each side runs in its own interpreter twice,
encoding 0 and N lines, and the difference is divided by N. The counts do not
move with the machine's load, so their ratio is the steadiest figure here.
A third side, `template`, is the floor of any pure-Python encoder: the same
rows written through one fixed line template with `%`, no object built and
nothing escaped or checked (it writes the same bytes as telemon, checked
first); telemon's target is at most 1.5x its instructions.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from influxdb_client import Point

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model  # noqa: E402

from telemon.lineprotocol import LineEncoder
from telemon.metric import Metric

MEASUREMENT = "pharo"
FIELD_NAMES = (
    "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
    "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
)  # fmt: skip
HOSTS = ("web-1", "web-2", "batch-1", "batch-2")
INSTANCES = ("a", "b", "c", "d", "e")
START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Row:
    """One point's raw data, shared by both encoders."""

    tags: dict[str, str]
    fields: dict[str, int | float]
    time_ns: int


def make_rows(count: int, mixed: bool, seed: int = 1) -> list[Row]:
    """`count` distinct points over 20 series; `mixed` makes every other field a float."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        tags = {"host": HOSTS[i % len(HOSTS)], "instance": INSTANCES[i % len(INSTANCES)]}
        values: list[int | float] = [rng.randrange(10**3, 10**10) for _ in FIELD_NAMES]
        if mixed:
            values[1::2] = [v / 1000 + 0.0005 for v in values[1::2]]
        fields = dict(zip(FIELD_NAMES, values, strict=True))
        rows.append(Row(tags, fields, START_NS + i * 1_000_000_007))
    return rows


def run_telemon(rows: Sequence[Row], lines: int) -> float:
    """Seconds to encode `lines` lines with one LineEncoder."""
    encode = LineEncoder().encode
    cycle = len(rows)
    start = time.perf_counter()
    for i in range(lines):
        row = rows[i % cycle]
        encode(Metric(MEASUREMENT, row.tags, row.fields, row.time_ns))
    return time.perf_counter() - start


def line_template(row: Row) -> str:
    """The unescaped `%`-template of the rows' one shape (`%di` for ints, `%r` for floats)."""
    specs = ",".join(
        f"{name}={'%r' if isinstance(value, float) else '%di'}" for name, value in row.fields.items()
    )
    return f"{MEASUREMENT},host=%s,instance=%s {specs} %d\n"


def run_template(rows: Sequence[Row], lines: int) -> float:
    """Seconds to write `lines` lines through one fixed `%`-template (no checks, no escaping)."""
    template = line_template(rows[0])
    cycle = len(rows)
    start = time.perf_counter()
    for i in range(lines):
        row = rows[i % cycle]
        tags = row.tags
        template % (tags["host"], tags["instance"], *row.fields.values(), row.time_ns)
    return time.perf_counter() - start


def run_point(rows: Sequence[Row], lines: int) -> float:
    """Seconds to build and serialize `lines` influxdb-client Points."""
    cycle = len(rows)
    start = time.perf_counter()
    for i in range(lines):
        row = rows[i % cycle]
        point = Point(MEASUREMENT)
        for key, value in row.tags.items():
            point.tag(key, value)
        for name, value in row.fields.items():
            point.field(name, value)
        point.time(row.time_ns).to_line_protocol()
    return time.perf_counter() - start


def run_telemon_prebuilt(rows: Sequence[Row], lines: int) -> float:
    """Seconds to serialize `lines` prebuilt Metrics."""
    encode = LineEncoder().encode
    metrics = [Metric(MEASUREMENT, row.tags, row.fields, row.time_ns) for row in rows]
    cycle = len(metrics)
    start = time.perf_counter()
    for i in range(lines):
        encode(metrics[i % cycle])
    return time.perf_counter() - start


def run_point_prebuilt(rows: Sequence[Row], lines: int) -> float:
    """Seconds to serialize `lines` prebuilt influxdb-client Points."""
    points = []
    for row in rows:
        point = Point(MEASUREMENT).time(row.time_ns)
        for key, value in row.tags.items():
            point.tag(key, value)
        for key, value in row.fields.items():
            point.field(key, value)
        points.append(point)
    cycle = len(points)
    start = time.perf_counter()
    for i in range(lines):
        points[i % cycle].to_line_protocol()
    return time.perf_counter() - start


def check_same_data(rows: Sequence[Row]) -> None:
    """Both sides must write the same fields (Point sorts them, telemon does not)."""
    encoder = LineEncoder()
    for row in rows:
        ours = encoder.encode(Metric(MEASUREMENT, row.tags, row.fields, row.time_ns))
        point = Point(MEASUREMENT).time(row.time_ns)
        for key, value in row.tags.items():
            point.tag(key, value)
        for key, value in row.fields.items():
            point.field(key, value)
        theirs = point.to_line_protocol() + "\n"
        if _normalized(ours) != _normalized(theirs):
            raise SystemExit(f"outputs differ:\n{ours!r}\n{theirs!r}")
        tags = row.tags
        floor = line_template(row) % (
            tags["host"], tags["instance"], *row.fields.values(), row.time_ns
        )
        if floor != ours:
            raise SystemExit(f"the template writes another line:\n{ours!r}\n{floor!r}")


def _normalized(line: str) -> tuple[str, list[str], str]:
    header, field_text, stamp = line.split(" ")
    return header, sorted(field_text.split(",")), stamp


Runner = Callable[[Sequence[Row], int], float]


def measure(
    rows: Sequence[Row], lines: int, repeats: int, sides: dict[str, Runner]
) -> dict[str, list[float]]:
    """Lines/s per repetition for each side, alternating which side goes first."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(repeats):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            gc.collect()
            gc.disable()
            try:
                rates[name].append(lines / sides[name](rows, lines))
            finally:
                gc.enable()
    return rates


def machine_info() -> list[str]:
    """Lines describing where the figures come from."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- CPU: {cpu_model()} ({platform.machine()}, {os_cpus()} logical CPUs)",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- influxdb-client: {version('influxdb-client')}",
    ]


def os_cpus() -> int:
    """Logical CPUs available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def table_row(variant: str, rates: dict[str, list[float]]) -> str:
    """One markdown row: best and median for each side and their ratios."""
    ours, theirs = rates["telemon"], rates["influxdb-client"]
    best = max(ours) / max(theirs)
    median = statistics.median(ours) / statistics.median(theirs)
    return (
        f"| {variant} | {max(ours):,.0f} | {statistics.median(ours):,.0f} "
        f"| {max(theirs):,.0f} | {statistics.median(theirs):,.0f} "
        f"| {best:.1f}x | {median:.1f}x |"
    )


BUILD_AND_SERIALIZE: dict[str, Runner] = {"telemon": run_telemon, "influxdb-client": run_point}
FLOOR: dict[str, Runner] = {"template": run_template}
TARGET_TEMPLATE_RATIO = 1.5
VARIANTS = {"10 int": False, "5 int + 5 float": True}


def instructions(side: str, mixed: bool, lines: int, points: int) -> int:
    """Instructions callgrind counts for one interpreter encoding `lines` lines."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--run", side, "--points", str(points), "--lines", str(lines),
    ]  # fmt: skip
    if mixed:
        command.append("--mixed")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in: {result.stderr[-500:]}")
    return int(found.group(1))


def report_instructions(points: int) -> bool:
    """Instructions per line for each side (build + serialize), as a markdown table.

    True when telemon's 10-integer line stays within TARGET_TEMPLATE_RATIO of the template's.
    """
    print(
        "| fields | telemon instructions/line | influxdb-client instructions/line "
        "| Point / telemon | %-template instructions/line | telemon / template |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    met = True
    for variant, mixed in VARIANTS.items():
        # Every side imports both libraries and builds the same rows: one baseline.
        start_up = instructions("telemon", mixed, 0, points)
        per_line = {}
        for side, lines in (("telemon", 20_000), ("influxdb-client", 5_000), ("template", 20_000)):
            per_line[side] = (instructions(side, mixed, lines, points) - start_up) / lines
        ours, theirs, floor = (per_line[k] for k in ("telemon", "influxdb-client", "template"))
        print(
            f"| {variant} | {ours:,.0f} | {theirs:,.0f} | {theirs / ours:.1f}x "
            f"| {floor:,.0f} | {ours / floor:.2f}x |",
            flush=True,
        )
        if not mixed:
            met = ours / floor <= TARGET_TEMPLATE_RATIO
    print(f"\n10 int: telemon / template <= {TARGET_TEMPLATE_RATIO}: {'met' if met else 'NOT met'}")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    """Run both variants and print a markdown report; 1 when a counted target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5_000, help="lines per repetition")
    parser.add_argument("--points", type=int, default=1_000, help="distinct points, cycled")
    parser.add_argument("--repeats", type=int, default=21, help="repetitions per side")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument(
        "--run", choices=[*BUILD_AND_SERIALIZE, *FLOOR], help=argparse.SUPPRESS
    )
    parser.add_argument("--mixed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:  # one side, once, under callgrind
        rows = make_rows(args.points, args.mixed)
        if args.lines:
            {**BUILD_AND_SERIALIZE, **FLOOR}[args.run](rows, args.lines)
        return 0
    if args.instructions:
        print("\n".join(machine_info()) + "\n")
        for mixed in VARIANTS.values():
            check_same_data(make_rows(args.points, mixed))
        return 0 if report_instructions(args.points) else 1
    print("\n".join(machine_info()))
    print(
        f"- {args.lines:,} lines per repetition, {args.points:,} distinct points over 20 series, "
        f"{args.repeats} repetitions per side (alternating)\n"
    )
    print(
        "| fields | telemon best (lines/s) | telemon median | influxdb-client best "
        "| influxdb-client median | ratio (best) | ratio (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, mixed in VARIANTS.items():
        rows = make_rows(args.points, mixed)
        check_same_data(rows)
        for how, sides in (
            ("build + serialize", BUILD_AND_SERIALIZE),
            (
                "serialize only",
                {"telemon": run_telemon_prebuilt, "influxdb-client": run_point_prebuilt},
            ),
        ):
            rates = measure(rows, args.lines, args.repeats, sides)
            print(table_row(f"{variant}, {how}", rates), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
