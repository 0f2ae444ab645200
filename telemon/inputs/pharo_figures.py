"""The Pharo VM figures telemon knows: one name, one type, one unit each.

`FIGURES` is the one table. Every format converts to it (`pharo_formats`),
`PharoConfig.field_types` declares from it, and the README's table of
figures is `figures_markdown()` of it, so none of them can drift. Units:
times in ms, sizes in bytes, counts as integers; the few ratios are floats.

Where a figure comes from in each format:

* ``parameters``: `spur` says where a Spur VM's `getParameters` (Pharo 5
  and later) has it, `classic` where a classic (pre-Spur) VM's has it: an
  element, a difference of two (sizes from end addresses), or a count of
  microseconds converted to ms (see `pharo_formats` for how a classic array
  is recognised and why its GC times are taken as microseconds).
* ``report``: the `statisticsReport` labels of `pharo_formats.REPORT_FIELDS`.
* ``influx``: the original Telemon package's lines give Telemon's ten.
* ``json`` and ``labels``: any figure the image names, by its name written in
  any case with or without ``_``/``-`` (``jit_compiledMethods`` is
  ``jitCompiledMethods``), or by one of its `aliases` (kept beside it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FIGURES",
    "TELEMON_FIELDS",
    "Figure",
    "P",
    "figure_kinds",
    "figures_markdown",
    "norm",
]

Unit = Literal["ms", "bytes", "count", "ratio", "µs since 1901", "ms clock", "id"]


@dataclass(frozen=True, slots=True)
class P:
    """Where a `getParameters` array has a figure: element `index` (1-based), less
    element `minus` when given; `micro`: the VM counts microseconds (converted to ms)."""

    index: int
    minus: int | None = None
    micro: bool = False

    def __str__(self) -> str:
        text = f"p{self.index}" + (f" - p{self.minus}" if self.minus else "")
        return f"{text} (µs)" if self.micro else text


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure: its field name, line-protocol kind, unit and where formats find it."""

    name: str
    kind: Literal["i", "f"]
    unit: Unit
    meaning: str
    spur: P | None = None
    classic: P | None = None
    aliases: tuple[str, ...] = ()


Source = P | int | None


def _p(source: Source) -> P | None:
    return P(source) if isinstance(source, int) else source


def _i(name: str, unit: Unit, meaning: str, spur: Source = None, classic: Source = None,
       aliases: tuple[str, ...] = ()) -> Figure:  # fmt: skip
    return Figure(name, "i", unit, meaning, _p(spur), _p(classic), aliases)


def _same(name: str, unit: Unit, meaning: str, index: int) -> Figure:
    """A parameter with the same index and meaning on Spur and classic VMs."""
    return Figure(name, "i", unit, meaning, P(index), P(index))


_TIME: Unit = "ms"
_SIZE: Unit = "bytes"
_COUNT: Unit = "count"

_FIGURE_LIST: tuple[Figure, ...] = (
    # Telemon's ten, in the original package's order.
    _i(
        "uptime",
        _TIME,
        "time since the VM started",
        aliases=("upTime", "uptimeMs", "millisecondClockValue"),
    ),
    _i("oldSpace", _SIZE, "old space", 1, 1, ("oldSpaceSize", "memoryOld")),
    _i(
        "youngSpace",
        _SIZE,
        "young (new) space in use",
        2,
        P(2, minus=1),
        ("youngSpaceSize", "newSpaceSize", "memoryYoung"),
    ),
    _i("memory", _SIZE, "heap size", 3, 3, ("memorySize", "heapSize", "memoryTotal")),
    _i("memoryFree", _SIZE, "free heap", None, P(3, minus=2), ("freeSize", "freeMemory")),
    _i("fullGCs", _COUNT, "full GCs since start-up", 7, 7, ("fullGCCount", "gcFullCount")),
    _i(
        "fullGCTime",
        _TIME,
        "time in full GCs since start-up",
        8,
        P(8, micro=True),
        ("totalFullGCTime", "gcFullTime"),
    ),
    _i(
        "incrGCs",
        _COUNT,
        "incremental GCs (scavenges) since start-up",
        9,
        9,
        ("incrementalGCCount", "incrGCCount", "scavengeCount", "gcIncrCount"),
    ),
    _i(
        "incrGCTime",
        _TIME,
        "time in incremental GCs since start-up",
        10,
        P(10, micro=True),
        ("totalIncrementalGCTime", "incrementalGCTime", "scavengeTime", "gcIncrTime"),
    ),
    _i(
        "tenureCount",
        _COUNT,
        "tenures of surviving objects since start-up",
        11,
        11,
        ("tenures", "gcTenures"),
    ),
    # Derived from the spaces.
    _i("usedMemory", _SIZE, "used heap", None, 2, ("usedSize", "memoryUsed")),
    # getParameters, by index.
    _i("allocationsSinceGC", _COUNT, "allocations since the last GC", None, 4),
    _i(
        "allocationsBetweenGCs",
        _COUNT,
        "allocations that trigger an incremental GC (a setting)",
        None,
        5,
    ),
    _same("tenuringThreshold", _COUNT, "survivor count tenuring threshold", 6),
    _i("idleTime", _TIME, "time idle since start-up", P(16, micro=True)),
    _i("compactionTime", _TIME, "time in the compaction phase of full GCs", 18),
    _i("scavengeThreshold", _SIZE, "scavenge threshold (effective eden size)", 19),
    _i("startMicroseconds", "µs since 1901", "when the VM started (UTC)", 20),
    _same("rootTableSize", _COUNT, "root table size", 21),
    _same("rootTableOverflows", _COUNT, "root table overflows since start-up", 22),
    _same("extraVMMemory", _SIZE, "extra VM memory reserved", 23),
    _same("shrinkThreshold", _SIZE, "shrink threshold", 24),
    _same("growHeadroom", _SIZE, "grow headroom", 25),
    _same("interruptChecksEveryMs", _TIME, "interrupt check period", 26),
    _same("growRequests", _COUNT, "grow-memory requests since start-up", 31),
    _same("shrinkRequests", _COUNT, "shrink-memory requests since start-up", 32),
    _i("bytesAllocated", _SIZE, "bytes allocated since start-up", 34),
    _i("allocationsBeforeLastGC", _COUNT, "allocations done before the last GC", None, 34),
    _same("survivorCount", _COUNT, "survivor objects after the last GC", 35),
    _i("lastGCAt", "ms clock", "the VM's clock when the last GC finished", 36, P(36, micro=True)),
    _i("lastIncrGCTime", _TIME, "time taken by the last incremental GC", 38),
    _same("pendingFinalizations", _COUNT, "pending finalization signals after the last GC", 39),
    _same("wordSize", _SIZE, "bytes per word (4 or 8)", 40),
    _i("imageFormat", "id", "image format version", 41),
    _i("stackPagesInUse", _COUNT, "stack pages in use", 42),
    _i("stackPagesDesired", _COUNT, "desired number of stack pages", 43),
    _i("edenSize", _SIZE, "eden size", 44, aliases=("edenSpaceSize",)),
    _i("newSpaceDesired", _SIZE, "desired new-space size", 45),
    _i("codeZoneSize", _SIZE, "machine code zone size (JIT)", 46),
    _i("codeZoneDesired", _SIZE, "desired machine code zone size (JIT)", 47),
    _i("maxExternalSemaphores", _COUNT, "external semaphore table size", 49),
    _i("rootTableCapacity", _COUNT, "root table capacity", 52),
    _i("segments", _COUNT, "old-space segments", 53),
    _i("freeOldSpace", _SIZE, "free old space", 54, aliases=("freeOldSpaceSize",)),
    Figure("gcGrowthRatio", "f", "ratio", "old-space growth that triggers a full GC", P(55)),
    _i("processSwitches", _COUNT, "process switches since start-up", 56),
    _i("ioProcessEvents", _COUNT, "ioProcessEvents calls since start-up", 57),
    _i("forceInterruptChecks", _COUNT, "forced interrupt checks since start-up", 58),
    _i("checkEvents", _COUNT, "check-event calls since start-up", 59),
    _i("stackOverflows", _COUNT, "stack page overflows since start-up", 60),
    _i("stackDivorces", _COUNT, "stack page divorces since start-up", 61),
    _i(
        "codeCompactions",
        _COUNT,
        "machine code compactions since start-up (JIT)",
        62,
        aliases=("jitCodeCompactions",),
    ),
    _i("codeCompactionTime", _TIME, "time in machine code compactions (JIT)", 63),
    _i("jittedMethods", _COUNT, "methods with machine code now (JIT)", 64, aliases=("jitMethods",)),
    _i("stackPageSize", _SIZE, "stack page size", 66),
    _i("maxOldSpace", _SIZE, "max old space size (0: no limit)", 67),
    Figure("avgLiveStackPages", "f", "count", "average live stack pages at GC", P(68)),
    _i("maxLiveStackPages", _COUNT, "maximum live stack pages at GC", 69),
    _i("fullGCMarkTime", _TIME, "time in the mark phase of full GCs", 72),
    _i("fullGCSweepTime", _TIME, "time in the sweep phase of full GCs", 73),
    _i("segmentAllocationMaxPause", _TIME, "max pause allocating a segment", 74),
    _i("jitCompiledMethods", _COUNT, "methods JIT-compiled since start-up", 75),
    _i("jitMethodsTime", _TIME, "time JIT-compiling methods", 76),
    _i("jitCompiledBlocks", _COUNT, "blocks JIT-compiled since start-up", 77),
    _i("jitBlocksTime", _TIME, "time JIT-compiling blocks", 78),
    _i("rememberedSetOld", _COUNT, "remembered set size (old space)", 80),
    _i("rememberedSetOldMax", _COUNT, "remembered set capacity (old space)", 81),
    _i("rememberedSetPermToOld", _COUNT, "remembered set size (perm space to old)", 82),
    _i("rememberedSetPermToOldMax", _COUNT, "remembered set capacity (perm space to old)", 83),
    _i("rememberedSetPermToNew", _COUNT, "remembered set size (perm space to new)", 84),
    _i("rememberedSetPermToNewMax", _COUNT, "remembered set capacity (perm space to new)", 85),
    # statisticsReport only.
    _i("totalGCs", _COUNT, "full and incremental GCs since start-up"),
    _i("msBetweenGCs", _TIME, "uptime per GC"),
    _i("sinceLastView_totalGCs", _COUNT, "GCs since the previous report"),
    _i("sinceLastView_msBetweenGCs", _TIME, "time per GC since the previous report"),
    _i("sinceLastView_uptime", _TIME, "time since the previous report"),
    _i("sinceLastView_fullGCs", _COUNT, "full GCs since the previous report"),
    _i("sinceLastView_fullGCTime", _TIME, "time in full GCs since the previous report"),
    _i("sinceLastView_incrGCs", _COUNT, "incremental GCs since the previous report"),
    _i("sinceLastView_incrGCTime", _TIME, "time in incremental GCs since the previous report"),
    _i("sinceLastView_tenureCount", _COUNT, "tenures since the previous report"),
    _i("sends", _COUNT, "message sends since start-up (older images)"),
    _i("sendsFullLookups", _COUNT, "sends that needed a full method lookup"),
    _i("sendsMethodCacheHits", _COUNT, "sends found in the method cache"),
    _i("sendsInlineCacheHits", _COUNT, "sends found in an inline cache"),
)

FIGURES: dict[str, Figure] = {figure.name: figure for figure in _FIGURE_LIST}
"""Field name -> figure, in the README's order (Telemon's ten first)."""

TELEMON_FIELDS: tuple[str, ...] = tuple(figure.name for figure in _FIGURE_LIST[:10])
"""The original Telemon's default fields, in its order (Grafana panels use them)."""


def norm(name: str) -> str:
    """A name without case, ``_`` or ``-``: how payload keys are matched to figures."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def figure_kinds() -> dict[str, str]:
    """Every figure's line-protocol kind (``i`` or ``f``), for `field_types`."""
    return {name: figure.kind for name, figure in FIGURES.items()}


# --- the README's table ------------------------------------------------------------------

_KIND_NAMES = {"i": "integer", "f": "float"}


def figures_markdown(report_names: frozenset[str]) -> str:
    """The table of figures as markdown; `report_names` are those a report gives."""
    rows = [
        "| field | type | unit | meaning | `parameters` Spur / classic | `report` | `influx` |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in FIGURES.values():
        rows.append(
            f"| `{figure.name}` | {_KIND_NAMES[figure.kind]} | {figure.unit} | {figure.meaning} "
            f"| {_parameter_source(figure)} | {'yes' if figure.name in report_names else ''} "
            f"| {'yes' if figure.name in TELEMON_FIELDS else ''} |"
        )
    return "\n".join(rows) + "\n"


_DERIVED_SPUR = {
    "uptime": "clock - p20",
    "memoryFree": "p54 + p44 - p2",
    "usedMemory": "p2 + p1 - free",
}


def _parameter_source(figure: Figure) -> str:
    spur = str(figure.spur) if figure.spur else _DERIVED_SPUR.get(figure.name, "-")
    classic = str(figure.classic) if figure.classic else "-"
    return spur if spur == classic else f"{spur} / {classic}"
