"""Every format a Pharo image serves its VM figures in, rendered from a VMSnapshot.

Pure functions; the shapes follow the original Telemon package and Pharo's
`VirtualMachine>>statisticsReport`, quirks included. A classic VM's snapshot
is rendered in its meanings in every format: sizes from its end addresses,
GC times in ms (in ``us`` in the labels list, as its VM counts them), no
Spur-only figures, and the report with CR line ends, as a Squeak-era image
writes it (`REPORT_NEWLINES`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from typing import NamedTuple

from telemon.simulator.snapshot import CLASSIC, SPUR, Param, VMKind, VMSnapshot

__all__ = [
    "CONTENT_TYPES",
    "FORMATS",
    "REPORT_NEWLINES",
    "TELEMON_FIELDS",
    "ReportViews",
    "label_values",
    "named_values",
    "render_influx",
    "render_json",
    "render_labels",
    "render_parameters",
    "render_report",
    "telemon_fields",
]

FORMATS = ("influx", "json", "labels", "parameters", "report")
CONTENT_TYPES = {
    "influx": "text/plain",
    "json": "application/json",
    "labels": "application/json",
    "parameters": "application/json",
    "report": "text/plain",
}
REPORT_NEWLINES: dict[VMKind, str] = {SPUR: "\n", CLASSIC: "\r"}
"""The line end of each kind of VM's report by default."""
TELEMON_FIELDS = (
    "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
    "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
)
"""The original Telemon's default fields, in its order."""

_UNITS = {
    "uptime": "ms", "fullGCs": "count", "fullGCTime": "ms", "incrGCs": "count",
    "incrGCTime": "ms", "tenureCount": "count", "processSwitches": "count",
}


def telemon_fields(snapshot: VMSnapshot) -> dict[str, int]:
    """The ten default fields of the original Telemon, in the VM's meanings."""
    served = snapshot.served
    return {
        "uptime": snapshot.uptime_ms,
        "oldSpace": snapshot.old_space,
        "youngSpace": snapshot.young_space,
        "memory": snapshot.memory,
        "memoryFree": snapshot.memory_free,
        "fullGCs": served(Param.FULL_GCS),
        "fullGCTime": snapshot.full_gc_ms,
        "incrGCs": served(Param.INCR_GCS),
        "incrGCTime": snapshot.incr_gc_ms,
        "tenureCount": served(Param.TENURE_COUNT),
    }


def render_influx(
    snapshot: VMSnapshot,
    *,
    measurement: str = "pharo",
    tags: Mapping[str, str] | None = None,
    fields: Mapping[str, int | float] | None = None,
    app_measurement: str | None = None,
) -> str:
    """What Telemon's `renderInfluxDB` answered: unescaped, untyped, no timestamp.

    User `fields` follow the ten defaults, sorted by key; `app_measurement`
    adds a second line with the application's entity count and memory.
    """
    head = ",".join([measurement, *(f"{key}={value}" for key, value in (tags or {}).items())])
    values: dict[str, int | float] = dict(telemon_fields(snapshot))
    values.update(sorted((fields or {}).items()))
    line = head + " " + ",".join(f"{key}={value!r}" for key, value in values.items())
    if app_measurement is None:
        return line
    return (
        f"{line}\n{app_measurement} entityCount={snapshot.entity_count},"
        f"entityMemory={snapshot.entity_memory}"
    )


def named_values(snapshot: VMSnapshot) -> dict[str, object]:
    """The JSON object of named values, with a nested `jit` object (Spur only)."""
    if snapshot.vm == CLASSIC:
        return {**telemon_fields(snapshot), "usedMemory": snapshot.memory_used}
    get = snapshot.get
    return {
        **telemon_fields(snapshot),
        "edenSize": get(Param.EDEN_SIZE),
        "freeOldSpace": get(Param.FREE_OLD_SPACE),
        "bytesAllocated": get(Param.BYTES_ALLOCATED),
        "compactionTime": get(Param.COMPACTION_TIME),
        "processSwitches": get(Param.PROCESS_SWITCHES),
        "idleTime": (get(Param.IDLE_MICROSECONDS) + 500) // 1000,
        "gcGrowthRatio": snapshot.values[Param.GC_GROWTH_RATIO - 1],
        "jit": {
            "methods": get(Param.JITTED_METHODS),
            "compiledMethods": get(Param.JIT_COMPILED_METHODS),
            "compiledBlocks": get(Param.JIT_COMPILED_BLOCKS),
            "codeCompactions": get(Param.CODE_COMPACTIONS),
        },
    }


def render_json(snapshot: VMSnapshot) -> str:
    """`named_values` as compact JSON, the way NeoJSON writes it."""
    return _dumps(named_values(snapshot))


def label_values(snapshot: VMSnapshot) -> list[dict[str, object]]:
    """The `{"label", "value", "unit"}` list; a classic VM's GC times in ``us``."""
    if snapshot.vm == CLASSIC:
        return _classic_labels(snapshot)
    get = snapshot.get
    values = {
        **telemon_fields(snapshot),
        "edenSize": get(Param.EDEN_SIZE),
        "freeOldSpace": get(Param.FREE_OLD_SPACE),
        "processSwitches": get(Param.PROCESS_SWITCHES),
    }
    return [
        {"label": label, "value": value, "unit": _UNITS.get(label, "bytes")}
        for label, value in values.items()
    ]


def _classic_labels(snapshot: VMSnapshot) -> list[dict[str, object]]:
    """The ten and usedMemory, GC times in microseconds as the classic VM counts them."""
    values: dict[str, int] = {**telemon_fields(snapshot), "usedMemory": snapshot.memory_used}
    microseconds = {
        "fullGCTime": snapshot.served(Param.FULL_GC_TIME),
        "incrGCTime": snapshot.served(Param.INCR_GC_TIME),
    }
    return [
        {"label": label, "value": microseconds[label], "unit": "us"}
        if label in microseconds
        else {"label": label, "value": value, "unit": _UNITS.get(label, "bytes")}
        for label, value in values.items()
    ]


def render_labels(snapshot: VMSnapshot) -> str:
    """`label_values` as compact JSON."""
    return _dumps(label_values(snapshot))


def render_parameters(snapshot: VMSnapshot) -> str:
    """`getParameters` as a JSON array, null for nil."""
    return _dumps(snapshot.parameters())


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class _GCTotals(NamedTuple):
    uptime_ms: int
    full: int
    full_ms: int
    incr: int
    incr_ms: int
    tenures: int

    @classmethod
    def of(cls, snapshot: VMSnapshot) -> _GCTotals:
        served = snapshot.served
        return cls(
            snapshot.uptime_ms, served(Param.FULL_GCS), snapshot.full_gc_ms,
            served(Param.INCR_GCS), snapshot.incr_gc_ms, served(Param.TENURE_COUNT),
        )

    def since(self, earlier: _GCTotals) -> _GCTotals:
        return _GCTotals(*(now - then for now, then in zip(self, earlier, strict=True)))


def render_report(
    snapshot: VMSnapshot, previous: VMSnapshot | None = None, *, newline: str | None = None
) -> str:
    """`Smalltalk vm statisticsReport`; the "Since last view" block needs `previous`.

    Lines end with `newline`, by default the VM kind's (`REPORT_NEWLINES`).
    """
    newline = REPORT_NEWLINES[snapshot.vm] if newline is None else newline
    memory, old, young = snapshot.memory, snapshot.old_space, snapshot.young_space
    used, free = snapshot.memory_used, snapshot.memory_free
    uptime = snapshot.uptime_ms
    totals = _GCTotals.of(snapshot)
    lines = [
        f"uptime\t\t\t{uptime // 3_600_000}h{uptime // 60_000 % 60}m{uptime // 1000 % 60}s",
        f"memory\t\t\t{_commas(memory)} bytes",
        f"\told\t\t\t{_commas(old)} bytes ({_percent(old, memory)}%)",
        f"\tyoung\t\t{_commas(young)} bytes ({_percent(young, memory)}%)",
        f"\tused\t\t{_commas(used)} bytes ({_percent(used, memory)}%)",
        f"\tfree\t\t{_commas(free)} bytes ({_percent(free, memory)}%)",
        *_gc_lines("GCs\t\t\t\t", totals),
    ]
    if previous is not None:
        delta = totals.since(_GCTotals.of(previous))
        seconds = _print(_round_to(delta.uptime_ms / 1000, 0.1))
        first, *rest = _gc_lines("Since last view\t", delta)
        lines += [first, f"\tuptime\t\t{seconds}s", *rest]
    return newline.join(lines) + newline


def _gc_lines(title: str, t: _GCTotals) -> list[str]:
    count = t.full + t.incr
    between = f" ({t.uptime_ms // count}ms between GCs)" if count else ""
    tenures = f" (avg {t.incr // t.tenures} GCs/tenure)" if t.tenures else ""
    return [
        f"{title}{_commas(count)}{between}",
        f"\tfull\t\t\t{_gc_kind(t.full, t.full_ms, t.uptime_ms)}",
        f"\tincr\t\t{_gc_kind(t.incr, t.incr_ms, t.uptime_ms)}",
        f"\ttenures\t\t{_commas(t.tenures)}{tenures}",
    ]


def _gc_kind(count: int, ms: int, uptime_ms: int) -> str:
    text = f"{_commas(count)} totalling {_commas(ms)}ms ({_percent(ms, uptime_ms)}% uptime)"
    return f"{text}, avg {_print(_round_to(ms / count, 0.1))}ms" if count else text


def _commas(n: int) -> str:
    return f"{n:,}"


def _percent(part: int, whole: int) -> str:
    return _print(_round_to(part * 100 / whole, 0.1) if whole else 0.0)


def _round_to(x: float, quantum: float) -> float:
    """Smalltalk's `roundTo:`: an integer times `quantum`, hence 9.100000000000001."""
    quotient = x / quantum
    return math.trunc(quotient + math.copysign(0.5, quotient)) * quantum


def _print(x: float) -> str:
    """A Float's printString; Python's shortest repr is the same for these magnitudes."""
    return repr(float(x))


class ReportViews:
    """The snapshot each viewer saw last, for the report's "Since last view" block."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._last: dict[Hashable, VMSnapshot] = {}

    def render(self, viewer: Hashable, snapshot: VMSnapshot, *, newline: str | None = None) -> str:
        """The report for `viewer`, relative to its previous view of this VM."""
        previous = self._last.pop(viewer, None)
        boot = Param.START_MICROSECONDS
        if previous is not None and previous.get(boot) != snapshot.get(boot):
            previous = None  # the VM restarted since: this is a first view again
        self._last[viewer] = snapshot
        if len(self._last) > self.limit:
            del self._last[next(iter(self._last))]
        return render_report(snapshot, previous, newline=newline)
