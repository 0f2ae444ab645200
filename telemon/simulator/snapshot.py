"""The numbering of `Smalltalk vm getParameters` and one frozen reading of it.

A snapshot holds the simulated VM's state in Spur's numbering (`values`);
a classic (pre-Spur) VM serves `classic_values` instead, in its own
meanings (see `classic_parameters` in `vm`). The figure properties
(`old_space`, `memory_free`, `full_gc_ms`, ...) answer what either kind of
VM means, so every format of one snapshot agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

__all__ = [
    "CLASSIC",
    "COUNTER_PARAMETERS",
    "LEGACY_PARAMETER_COUNT",
    "MODERN_PARAMETER_COUNT",
    "NIL_PARAMETERS",
    "SPUR",
    "SQUEAK_EPOCH_OFFSET_S",
    "VM_KINDS",
    "Param",
    "ParameterValue",
    "VMKind",
    "VMSnapshot",
    "microseconds_to_ms",
]

VMKind = Literal["spur", "classic"]
SPUR: VMKind = "spur"
CLASSIC: VMKind = "classic"
VM_KINDS: tuple[VMKind, ...] = (SPUR, CLASSIC)
"""Spur (Pharo 5 and later) or classic object memory (Squeak, Pharo 1-4)."""

ParameterValue = int | float | None
"""One element of `getParameters`: an integer, a float (55, 68) or nil."""

MODERN_PARAMETER_COUNT = 85
LEGACY_PARAMETER_COUNT = 40
SQUEAK_EPOCH_OFFSET_S = 2_177_452_800
"""Seconds from 1901-01-01 (the epoch of parameter 20) to 1970-01-01."""


class Param(IntEnum):
    """The 1-based `getParameters` indices the simulator sets."""

    OLD_SPACE = 1
    YOUNG_SPACE = 2
    MEMORY = 3
    TENURING_THRESHOLD = 6
    FULL_GCS = 7
    FULL_GC_TIME = 8
    INCR_GCS = 9
    INCR_GC_TIME = 10
    TENURE_COUNT = 11
    IDLE_MICROSECONDS = 16
    CODE_ZONE_FRACTION = 17
    COMPACTION_TIME = 18
    SCAVENGE_THRESHOLD = 19
    START_MICROSECONDS = 20
    ROOT_TABLE_SIZE = 21
    ROOT_TABLE_OVERFLOWS = 22
    EXTRA_VM_MEMORY = 23
    SHRINK_THRESHOLD = 24
    GROW_HEADROOM = 25
    INTERRUPT_CHECK_MS = 26
    MARK_ITERATIONS = 27
    SWEEP_ITERATIONS = 28
    FORWARD_ITERATIONS = 29
    COMPACT_ITERATIONS = 30
    GROW_REQUESTS = 31
    SHRINK_REQUESTS = 32
    ROOT_ENTRIES_LAST_GC = 33
    BYTES_ALLOCATED = 34
    SURVIVOR_COUNT = 35
    LAST_GC_AT = 36
    MARKED_ROOTS = 37
    LAST_INCR_GC_TIME = 38
    PENDING_FINALIZATIONS = 39
    WORD_SIZE = 40
    IMAGE_FORMAT = 41
    STACK_PAGES_IN_USE = 42
    STACK_PAGES_DESIRED = 43
    EDEN_SIZE = 44
    NEW_SPACE_DESIRED = 45
    CODE_ZONE_SIZE = 46
    CODE_ZONE_DESIRED = 47
    HEADER_FLAGS = 48
    MAX_EXTERNAL_SEMAPHORES = 49
    ROOT_TABLE_CAPACITY = 52
    SEGMENTS = 53
    FREE_OLD_SPACE = 54
    GC_GROWTH_RATIO = 55
    PROCESS_SWITCHES = 56
    IO_PROCESS_EVENTS = 57
    FORCE_INTERRUPT_CHECKS = 58
    CHECK_EVENTS = 59
    STACK_OVERFLOWS = 60
    STACK_DIVORCES = 61
    CODE_COMPACTIONS = 62
    CODE_COMPACTION_TIME = 63
    JITTED_METHODS = 64
    FEATURE_FLAGS = 65
    STACK_PAGE_SIZE = 66
    MAX_OLD_SPACE = 67
    AVG_LIVE_STACK_PAGES = 68
    MAX_LIVE_STACK_PAGES = 69
    PROXY_MAJOR = 70
    PROXY_MINOR = 71
    FULL_GC_MARK_TIME = 72
    FULL_GC_SWEEP_TIME = 73
    SEGMENT_ALLOCATION_MAX_PAUSE = 74
    JIT_COMPILED_METHODS = 75
    JIT_METHODS_TIME = 76
    JIT_COMPILED_BLOCKS = 77
    JIT_BLOCKS_TIME = 78
    IMAGE_VERSION = 79
    REMEMBERED_OLD = 80
    REMEMBERED_OLD_MAX = 81
    REMEMBERED_PERM_OLD = 82
    REMEMBERED_PERM_OLD_MAX = 83
    REMEMBERED_PERM_NEW = 84
    REMEMBERED_PERM_NEW_MAX = 85


NIL_PARAMETERS = frozenset({4, 5, 12, 13, 14, 15, 50, 51})
"""Unused or reserved in Spur: answered as nil."""

COUNTER_PARAMETERS: frozenset[int] = frozenset({
    Param.FULL_GCS, Param.FULL_GC_TIME, Param.INCR_GCS, Param.INCR_GC_TIME, Param.TENURE_COUNT,
    Param.IDLE_MICROSECONDS, Param.COMPACTION_TIME, Param.ROOT_TABLE_OVERFLOWS,
    Param.GROW_REQUESTS, Param.SHRINK_REQUESTS, Param.BYTES_ALLOCATED, Param.PROCESS_SWITCHES,
    Param.IO_PROCESS_EVENTS, Param.FORCE_INTERRUPT_CHECKS, Param.CHECK_EVENTS,
    Param.STACK_OVERFLOWS, Param.STACK_DIVORCES, Param.CODE_COMPACTIONS,
    Param.CODE_COMPACTION_TIME, Param.FULL_GC_MARK_TIME, Param.FULL_GC_SWEEP_TIME,
    Param.JIT_COMPILED_METHODS, Param.JIT_METHODS_TIME, Param.JIT_COMPILED_BLOCKS,
    Param.JIT_BLOCKS_TIME,
})
"""Totals since start-up: they never decrease until the VM restarts."""


def microseconds_to_ms(us: int) -> int:
    """A classic VM's microsecond count in ms, rounded to the nearest (halves up)."""
    return (us + 500) // 1000


@dataclass(frozen=True, slots=True)
class VMSnapshot:
    """The VM's figures at one instant; the renderers read nothing else."""

    uptime_ms: int
    values: tuple[ParameterValue, ...]  # all 85, Spur's numbering; values[0] is parameter 1
    parameter_count: int = MODERN_PARAMETER_COUNT
    entity_count: int = 0
    entity_memory: int = 0
    vm: VMKind = SPUR
    classic_values: tuple[ParameterValue, ...] = ()  # what a classic VM answers instead

    def parameters(self) -> list[ParameterValue]:
        """What `Smalltalk vm getParameters` answers (None for nil)."""
        if self.vm == CLASSIC:
            return list(self.classic_values[: self.parameter_count])
        return list(self.values[: self.parameter_count])

    def get(self, n: int) -> int:
        """Parameter `n` (1-based) of the state in Spur's numbering, as an integer; 0 for nil."""
        value = self.values[n - 1]
        return 0 if value is None else int(value)

    def served(self, n: int) -> int:
        """Parameter `n` (1-based) as this VM answers it, as an integer; 0 for nil."""
        if self.vm == SPUR:
            return self.get(n)
        value = self.classic_values[n - 1]
        return 0 if value is None else int(value)

    @property
    def old_space(self) -> int:
        """Old space, bytes (a classic VM's parameter 1 is its end: the heap starts at 0)."""
        return self.served(Param.OLD_SPACE)

    @property
    def young_space(self) -> int:
        """Young space in use, bytes (classic: end of young space - end of old space)."""
        young = self.served(Param.YOUNG_SPACE)
        return young - self.served(Param.OLD_SPACE) if self.vm == CLASSIC else young

    @property
    def memory(self) -> int:
        """The heap's size, bytes."""
        return self.served(Param.MEMORY)

    @property
    def memory_free(self) -> int:
        """Free heap: Pharo's freeOldSpace + edenSize - youngSpace; classic: p3 - p2."""
        served = self.served
        if self.vm == CLASSIC:
            return served(Param.MEMORY) - served(Param.YOUNG_SPACE)
        return served(Param.FREE_OLD_SPACE) + served(Param.EDEN_SIZE) - served(Param.YOUNG_SPACE)

    @property
    def memory_used(self) -> int:
        """Used heap: Pharo's youngSpace + oldSpace - free; classic: p2."""
        if self.vm == CLASSIC:
            return self.served(Param.YOUNG_SPACE)
        return self.young_space + self.old_space - self.memory_free

    @property
    def full_gc_ms(self) -> int:
        """Time in full GCs, ms (a classic VM counts microseconds)."""
        return self._ms(Param.FULL_GC_TIME)

    @property
    def incr_gc_ms(self) -> int:
        """Time in incremental GCs, ms (a classic VM counts microseconds)."""
        return self._ms(Param.INCR_GC_TIME)

    def _ms(self, n: int) -> int:
        value = self.served(n)
        return microseconds_to_ms(value) if self.vm == CLASSIC else value
