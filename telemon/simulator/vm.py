"""A simulated Pharo VM whose `getParameters` evolve like a real one's.

Spur by default; ``vm="classic"`` answers a classic (pre-Spur) VM's 40
parameters instead, in their meanings (end addresses, allocation counts,
GC times in microseconds: see `classic_parameters`).

A VM has a condition (see `conditions`): healthy, or leaking, or in a GC
storm, switched with `set_condition` from a given clock value on.

Pure and deterministic: the state depends only on the seed, the condition
switches and the clock values handed to `advance`; nothing here sleeps or
reads a clock.

    vm = SimulatedVM(seed=7, now=0.0, uptime=3600.0)
    vm.advance(10.0)
    snapshot = vm.snapshot()      # a frozen VMSnapshot
    snapshot.parameters()         # what `Smalltalk vm getParameters` answers
    vm.set_condition("leak", 20.0)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from telemon.simulator.conditions import (
    GC_STORM,
    GC_STORM_PERIOD_S,
    GC_STORM_SHARE,
    HEALTHY,
    LEAK,
    LEAK_BYTES_PER_S,
    LEAK_CHURN_BYTES_PER_S,
    LEAK_FLOATING,
    LEAK_HEADROOM,
    LEAK_MAX_GC_SHARE,
    Condition,
    parse_condition,
)
from telemon.simulator.snapshot import (
    CLASSIC,
    COUNTER_PARAMETERS,
    LEGACY_PARAMETER_COUNT,
    MODERN_PARAMETER_COUNT,
    NIL_PARAMETERS,
    SPUR,
    VM_KINDS,
    ParameterValue,
    VMKind,
    VMSnapshot,
)
from telemon.simulator.snapshot import Param as P

__all__ = [
    "DEFAULT_BOOT_US",
    "EDEN_SIZE",
    "NEW_SPACE_SIZE",
    "SimulatedVM",
    "classic_parameters",
]

MIB = 1024 * 1024
# memory - oldSpace is 8,952,032 in every example of the seed: the new space.
NEW_SPACE_SIZE = 8_952_032
# Spur splits new space into eden (5/7) and two survivor spaces (1/7 each).
EDEN_SIZE = NEW_SPACE_SIZE * 5 // 7 // 8 * 8
SURVIVOR_SPACE = NEW_SPACE_SIZE // 7 // 8 * 8
# Scavenging this early keeps eden use + survivors (youngSpace) below edenSize,
# so Pharo's free = freeOldSpace + edenSize - youngSpace never goes negative.
SCAVENGE_AT = EDEN_SIZE - SURVIVOR_SPACE
SEGMENT = 8 * MIB
GROW_HEADROOM = 16 * MIB
SHRINK_THRESHOLD = 24 * MIB
GC_GROWTH_RATIO = 0.3333333432674408  # 1/3 as a 32-bit float, as the VM answers it
CODE_ZONE = 2 * MIB
DEFAULT_BOOT_US = 3_771_187_200_000_000
"""2020-07-03T00:00Z in parameter 20's unit and epoch (microseconds since 1901)."""
MAX_STEP_S = 1.0
MAX_STEPS = 64
WARMUP_STEPS = 16


@dataclass(frozen=True, slots=True)
class _Profile:
    """What kind of application this VM runs; drawn once from the seed."""

    alloc_rate: float  # bytes/s
    scavenge_ms: float
    object_size: int
    tenured_per_scavenge: float  # bytes
    retained: float  # share of tenured bytes that stay live
    live_base: float
    full_gc_ms_per_mib: float
    idle: float
    switch_rate: float
    jit_rate: float
    jit_capacity: int
    entity_rate: float
    entity_size: int

    @classmethod
    def draw(cls, rng: random.Random) -> _Profile:
        """A plausible Pharo server: 0.4-8 scavenges/s, a full GC every 2-30 minutes."""
        alloc_rate = rng.uniform(2e6, 40e6)
        live = rng.uniform(60e6, 200e6)
        # Old space grows by GC_GROWTH_RATIO * live between full GCs.
        tenured_per_s = GC_GROWTH_RATIO * live / rng.uniform(120.0, 1800.0)
        return cls(
            alloc_rate=alloc_rate,
            scavenge_ms=rng.uniform(0.4, 1.5),
            object_size=rng.randrange(40, 200, 8),
            tenured_per_scavenge=tenured_per_s * SCAVENGE_AT / alloc_rate,
            retained=rng.uniform(0.0005, 0.005),
            live_base=live,
            full_gc_ms_per_mib=rng.uniform(0.6, 1.4),
            idle=rng.uniform(0.5, 0.95),
            switch_rate=rng.uniform(50.0, 2000.0),
            jit_rate=rng.uniform(20.0, 120.0),
            jit_capacity=rng.randrange(3000, 9000),
            entity_rate=rng.uniform(0.001, 0.05),
            entity_size=rng.randrange(2000, 20000),
        )


class SimulatedVM:
    """One VM: booted `uptime` seconds before clock value `now`, advanced by `advance`.

    `booted_at_us` is parameter 20, the boot time in UTC microseconds since
    1901; `parameter_count=40` emulates an older VM's shorter `getParameters`;
    `vm="classic"` a classic VM (40 parameters unless fewer are asked for);
    `condition` applies from `now` on (the VM was healthy before).
    """

    # The state, set by _boot.
    _rng: random.Random
    _now: float
    _booted_at: float
    _booted_at_us: int
    _t: float
    _counters: dict[int, float]
    _gauges: dict[int, ParameterValue]
    _eden_used: float
    _survivors: int
    _old_live: float
    _old_used: float
    _old_size: int
    _segments: int
    _next_full_gc: float
    _last_full_gc: float  # uptime (s)
    _jitted: float
    _entities: float
    _condition: Condition
    _storm_last: float  # uptime (s) of the storm's last full GC
    _storm_next: float

    def __init__(
        self,
        seed: int | str = 0,
        *,
        now: float = 0.0,
        uptime: float = 0.0,
        parameter_count: int = MODERN_PARAMETER_COUNT,
        booted_at_us: int = DEFAULT_BOOT_US,
        vm: VMKind = SPUR,
        condition: Condition = HEALTHY,
    ) -> None:
        if not 1 <= parameter_count <= MODERN_PARAMETER_COUNT:
            raise ValueError(f"parameter_count must be 1..{MODERN_PARAMETER_COUNT}")
        if vm not in VM_KINDS:
            raise ValueError(f"unknown vm {vm!r}; one of {', '.join(VM_KINDS)}")
        self.seed = seed
        self.vm = vm
        self.parameter_count = (
            min(parameter_count, LEGACY_PARAMETER_COUNT) if vm == CLASSIC else parameter_count
        )
        self.restarts = 0
        self._profile = _Profile.draw(random.Random(f"telemon-sim:{seed}:profile"))
        self._condition = HEALTHY
        self._boot(now - uptime, booted_at_us)
        # Coarse steps: a fleet of 1,000 VMs is created in about a second.
        self._advance(now, WARMUP_STEPS)
        # Not during the warm-up: 12 hours of a leak would be a 40 GiB heap.
        self.set_condition(condition, now)

    @property
    def condition(self) -> Condition:
        """What ails the VM now (see `conditions`)."""
        return self._condition

    def set_condition(self, condition: str, now: float) -> None:
        """Run up to clock value `now` as before, then on as `condition`.

        Counters carry on; ValueError (one line) for an unknown condition.
        """
        chosen = parse_condition(condition)
        self.advance(now)
        self._condition = chosen
        self._begin_condition()

    def advance(self, now: float) -> None:
        """Run the VM up to clock value `now` (seconds); earlier values are ignored."""
        self._advance(now, MAX_STEPS)

    def at(self, now: float) -> VMSnapshot:
        """Advance to `now` and answer the snapshot."""
        self.advance(now)
        return self.snapshot()

    def restart(self, now: float) -> None:
        """The image was restarted at `now`: uptime and every counter start from zero."""
        self.advance(now)
        self.restarts += 1
        self._boot(now, self._booted_at_us + int(self._t * 1e6))

    def parameters(self) -> list[ParameterValue]:
        """`getParameters` as of the last `advance`."""
        return self.snapshot().parameters()

    def snapshot(self) -> VMSnapshot:
        """The figures as of the last `advance`."""
        values: dict[int, ParameterValue] = dict(self._constants())
        values.update({n: int(v) for n, v in self._counters.items()})
        values.update(self._gauges)
        young = int(self._eden_used) + self._survivors
        values.update(
            {
                P.OLD_SPACE: self._old_size,
                P.YOUNG_SPACE: young,
                P.MEMORY: self._old_size + NEW_SPACE_SIZE,
                P.FREE_OLD_SPACE: self._old_size - math.ceil(self._old_used),
                P.SEGMENTS: self._segments,
                P.JITTED_METHODS: int(self._jitted),
            }
        )
        entities = int(self._entities)
        spur = tuple(
            values.get(n, None if n in NIL_PARAMETERS else 0)
            for n in range(1, MODERN_PARAMETER_COUNT + 1)
        )
        classic: tuple[ParameterValue, ...] = ()
        if self.vm == CLASSIC:
            size = self._profile.object_size
            classic = classic_parameters(
                spur,
                allocations=int(self._eden_used) // size,
                allocations_between_gcs=SCAVENGE_AT // size,
                full_gc_us=int(self._counters[P.FULL_GC_TIME] * 1000),
                incr_gc_us=int(self._counters[P.INCR_GC_TIME] * 1000),
            )
        return VMSnapshot(
            uptime_ms=int(self._t * 1000),
            values=spur,
            parameter_count=self.parameter_count,
            entity_count=entities,
            entity_memory=entities * self._profile.entity_size,
            vm=self.vm,
            classic_values=classic,
        )

    def _boot(self, now: float, booted_at_us: int) -> None:
        p = self._profile
        self._rng = random.Random(f"telemon-sim:{self.seed}:{self.restarts}")
        self._now = self._booted_at = now
        self._booted_at_us = booted_at_us
        self._t = 0.0
        self._counters = dict.fromkeys(COUNTER_PARAMETERS, 0.0)
        self._gauges = {}
        self._eden_used = 0.0
        self._survivors = 0
        self._old_live = p.live_base
        self._old_used = p.live_base
        self._old_size = _round_up(p.live_base + GROW_HEADROOM)
        self._segments = 1
        self._next_full_gc = p.live_base * (1 + GC_GROWTH_RATIO)
        self._jitted = 0.0
        self._entities = self._rng.uniform(100, 5000)
        self._last_full_gc = 0.0
        # Loading and starting an image does a full GC or two.
        for _ in range(self._rng.randint(1, 2)):
            self._full_gc(0.0)
        self._begin_condition()  # a restarted image is ill the same way

    def _begin_condition(self) -> None:
        if self._condition == LEAK:
            # Old space is only ever a little larger than the live data: full from now on.
            self._next_full_gc = min(self._next_full_gc, self._old_used + LEAK_HEADROOM)
        elif self._condition == GC_STORM:
            self._storm_last = self._t
            self._storm_next = self._t + self._rng.uniform(*GC_STORM_PERIOD_S)

    def _advance(self, now: float, max_steps: int) -> None:
        """Simulate up to `now` in steps of at most a second, fewer and longer for long gaps."""
        if now <= self._now:
            return
        start, seconds = self._t, now - self._now
        steps = min(max_steps, max(1, math.ceil(seconds / MAX_STEP_S)))
        for i in range(1, steps):
            self._t = start + seconds * i / steps
            self._step(seconds / steps)
        # The last step ends exactly at `now`: no drift from summing the steps.
        self._t = now - self._booted_at
        self._step(seconds / steps)
        self._now = now

    def _step(self, dt: float) -> None:
        """`dt` seconds of activity, ending at `self._t`."""
        rng, p, c = self._rng, self._profile, self._counters
        busy, idle = c[P.FULL_GC_TIME] + c[P.INCR_GC_TIME], c[P.IDLE_MICROSECONDS]
        allocated = p.alloc_rate * dt * rng.uniform(0.5, 1.5)
        c[P.BYTES_ALLOCATED] += allocated
        scavenges, self._eden_used = divmod(self._eden_used + allocated, SCAVENGE_AT)
        if scavenges:
            self._scavenge(int(scavenges), dt)
        self._schedule(dt)
        self._compile(dt)
        self._entities += rng.uniform(0, 2 * p.entity_rate * dt)
        if self._condition in (LEAK, GC_STORM):
            if self._condition == LEAK:
                self._leak(dt)
            else:
                self._storm()
            # A VM busy collecting garbage is idle less.
            gc_us = (c[P.FULL_GC_TIME] + c[P.INCR_GC_TIME] - busy) * 1000
            c[P.IDLE_MICROSECONDS] = min(c[P.IDLE_MICROSECONDS], idle + max(0.0, dt * 1e6 - gc_us))

    def _leak(self, dt: float) -> None:
        """Leaked objects survive their scavenges into old space, with some churn."""
        rng, c = self._rng, self._counters
        leaked = LEAK_BYTES_PER_S * dt * rng.uniform(0.8, 1.2)
        churn = LEAK_CHURN_BYTES_PER_S * dt * rng.uniform(0.8, 1.2)
        c[P.BYTES_ALLOCATED] += leaked + churn
        c[P.TENURE_COUNT] += (leaked + churn) / self._profile.object_size
        self._tenure(leaked + churn, dt, retained=leaked / (leaked + churn))

    def _storm(self) -> None:
        """The full GCs of a storm due by now, each taking its share of the time since the last."""
        while self._storm_next <= self._t:
            pause_s = (self._storm_next - self._storm_last) * self._rng.uniform(*GC_STORM_SHARE)
            self._storm_last = self._storm_next
            self._storm_next += self._rng.uniform(*GC_STORM_PERIOD_S)
            self._full_gc(self._t - self._storm_last, pause_ms=pause_s * 1000, at=self._storm_last)

    def _scavenge(self, n: int, dt: float) -> None:
        rng, p, c = self._rng, self._profile, self._counters
        c[P.INCR_GCS] += n
        c[P.INCR_GC_TIME] += n * p.scavenge_ms * rng.uniform(0.7, 1.3)
        self._survivors = rng.randrange(SURVIVOR_SPACE // 8, SURVIVOR_SPACE) // 8 * 8
        self._gauges.update(
            {
                P.LAST_INCR_GC_TIME: max(0, round(rng.gauss(p.scavenge_ms, p.scavenge_ms / 3))),
                P.SURVIVOR_COUNT: self._survivors // p.object_size,
                P.ROOT_ENTRIES_LAST_GC: rng.randrange(50, 2000),
                P.REMEMBERED_OLD: rng.randrange(100, 4000),
            }
        )
        tenured = n * p.tenured_per_scavenge * rng.uniform(0.5, 1.5)
        c[P.TENURE_COUNT] += tenured / p.object_size
        self._gc_finished(dt)
        self._tenure(tenured, dt, retained=p.retained)

    def _tenure(self, tenured: float, dt: float, *, retained: float) -> None:
        """Move survivors to old space (`retained` of them stay live), growing it, and
        full-GC at the growth ratio (leaking: when it is full)."""
        total, start = tenured, self._t - dt
        while tenured > 0:
            chunk = min(tenured, max(self._next_full_gc - self._old_used, 1.0))
            tenured -= chunk
            self._old_used += chunk
            self._old_live += chunk * retained
            if self._old_used > self._old_size:
                self._grow()
            if self._old_used >= self._next_full_gc:
                # Tenuring goes on evenly through the step: the GC comes this far into it.
                self._full_gc(dt, at=start + dt * (1 - tenured / total))

    def _grow(self) -> None:
        self._old_size = _round_up(self._old_used + GROW_HEADROOM)
        self._segments += 1
        self._counters[P.GROW_REQUESTS] += 1
        pause = self._rng.randrange(0, 4)
        self._gauges[P.SEGMENT_ALLOCATION_MAX_PAUSE] = max(
            pause, self._gauge(P.SEGMENT_ALLOCATION_MAX_PAUSE)
        )

    def _full_gc(self, dt: float, pause_ms: float | None = None, at: float | None = None) -> None:
        """A full GC at uptime `at` (default now), taking `pause_ms` (default: by heap size)."""
        rng, p, c = self._rng, self._profile, self._counters
        ms = self._old_used / MIB * p.full_gc_ms_per_mib * rng.uniform(0.8, 1.25)
        at = self._t if at is None else at
        if pause_ms is not None:
            ms = pause_ms
        elif self._condition == LEAK:
            # Hours into a leak, marking gigabytes would take longer than the time between
            # full GCs: the model does not slow the leak down, so it caps the pauses.
            ms = min(ms, LEAK_MAX_GC_SHARE * max(0.0, at - self._last_full_gc) * 1000)
        self._last_full_gc = at
        c[P.FULL_GCS] += 1
        c[P.FULL_GC_TIME] += ms
        c[P.FULL_GC_MARK_TIME] += ms * 0.6
        c[P.FULL_GC_SWEEP_TIME] += ms * 0.25
        c[P.COMPACTION_TIME] += ms * 0.15
        objects = int(self._old_used / p.object_size)
        self._gauges.update(
            {
                P.MARK_ITERATIONS: objects,
                P.SWEEP_ITERATIONS: objects,
                P.FORWARD_ITERATIONS: objects // 3,
                P.COMPACT_ITERATIONS: objects // 4,
                P.MARKED_ROOTS: rng.randrange(1000, 20000),
            }
        )
        self._eden_used = 0.0  # a full GC scavenges first
        if self._condition == LEAK:
            self._leaky_full_gc()
        else:
            self._old_used = self._old_live * rng.uniform(1.0, 1.04)
            self._next_full_gc = self._old_used * (1 + GC_GROWTH_RATIO)
            if self._old_size - self._old_used > SHRINK_THRESHOLD:
                self._old_size = _round_up(self._old_used + GROW_HEADROOM)
                self._segments = max(1, self._segments - 1)
                c[P.SHRINK_REQUESTS] += 1
            elif self._old_used > self._old_size:
                self._grow()  # only after a leak, whose heap was just large enough
        self._gc_finished(dt)

    def _leaky_full_gc(self) -> None:
        """Little survives besides the live data; old space is resized to it plus a little
        room (in MiB: a leak's growth is the size asked for), and full-GCs again once full."""
        self._old_used = self._old_live + self._rng.uniform(0, LEAK_FLOATING)
        size = _round_up(self._old_used + LEAK_HEADROOM, MIB)
        if size > self._old_size:
            self._segments += 1
            self._counters[P.GROW_REQUESTS] += 1
        elif size < self._old_size:
            self._segments = max(1, self._segments - 1)
            self._counters[P.SHRINK_REQUESTS] += 1
        self._old_size = self._next_full_gc = size

    def _gc_finished(self, dt: float) -> None:
        finished = int((self._t - self._rng.uniform(0, dt)) * 1000)
        self._gauges[P.LAST_GC_AT] = max(finished, self._gauge(P.LAST_GC_AT))

    def _schedule(self, dt: float) -> None:
        """Process scheduler and event loop activity."""
        rng, p, c = self._rng, self._profile, self._counters
        c[P.IDLE_MICROSECONDS] += dt * 1e6 * min(1.0, p.idle * rng.uniform(0.9, 1.1))
        switches = p.switch_rate * dt * rng.uniform(0.5, 1.5)
        c[P.PROCESS_SWITCHES] += switches
        c[P.IO_PROCESS_EVENTS] += dt * rng.uniform(40, 60)
        c[P.CHECK_EVENTS] += dt * rng.uniform(450, 550)
        c[P.FORCE_INTERRUPT_CHECKS] += dt * rng.uniform(0, 5)
        c[P.STACK_OVERFLOWS] += switches * rng.uniform(0.01, 0.05)
        c[P.STACK_DIVORCES] += switches * rng.uniform(0.0, 0.01)
        c[P.ROOT_TABLE_OVERFLOWS] += dt * rng.uniform(0, 0.002)
        in_use = rng.randrange(4, 24)
        self._gauges.update(
            {
                P.STACK_PAGES_IN_USE: in_use,
                P.AVG_LIVE_STACK_PAGES: round(rng.uniform(2.0, in_use), 3),
                P.MAX_LIVE_STACK_PAGES: max(in_use, self._gauge(P.MAX_LIVE_STACK_PAGES)),
                P.ROOT_TABLE_SIZE: rng.randrange(0, 3000),
                P.PENDING_FINALIZATIONS: rng.randrange(0, 3),
            }
        )

    def _compile(self, dt: float) -> None:
        """The JIT: busy while the application warms up, then mostly idle."""
        rng, p, c = self._rng, self._profile, self._counters
        warmth = math.exp(-self._t / 900.0) + 0.02
        methods = p.jit_rate * dt * warmth * rng.uniform(0.5, 1.5)
        c[P.JIT_COMPILED_METHODS] += methods
        c[P.JIT_METHODS_TIME] += methods * rng.uniform(0.02, 0.08)
        c[P.JIT_COMPILED_BLOCKS] += methods * 0.4
        c[P.JIT_BLOCKS_TIME] += methods * 0.4 * rng.uniform(0.01, 0.05)
        self._jitted += methods
        while self._jitted > p.jit_capacity:
            c[P.CODE_COMPACTIONS] += 1
            c[P.CODE_COMPACTION_TIME] += rng.uniform(1.0, 6.0)
            self._jitted *= 0.7

    def _gauge(self, n: int) -> int:
        """A gauge's current integer value (0 before it is first set)."""
        value = self._gauges.get(n)
        return 0 if value is None else int(value)

    def _constants(self) -> dict[int, ParameterValue]:
        p = self._profile
        return {
            P.TENURING_THRESHOLD: SURVIVOR_SPACE // p.object_size // 2,
            P.CODE_ZONE_FRACTION: 0,
            P.SCAVENGE_THRESHOLD: SCAVENGE_AT,
            P.START_MICROSECONDS: self._booted_at_us,
            P.EXTRA_VM_MEMORY: 0,
            P.SHRINK_THRESHOLD: SHRINK_THRESHOLD,
            P.GROW_HEADROOM: GROW_HEADROOM,
            P.INTERRUPT_CHECK_MS: 2,
            P.WORD_SIZE: 8,
            P.IMAGE_FORMAT: 68021,
            P.STACK_PAGES_DESIRED: 50,
            P.EDEN_SIZE: EDEN_SIZE,
            P.NEW_SPACE_DESIRED: NEW_SPACE_SIZE,
            P.CODE_ZONE_SIZE: CODE_ZONE,
            P.CODE_ZONE_DESIRED: CODE_ZONE,
            P.HEADER_FLAGS: 0,
            P.MAX_EXTERNAL_SEMAPHORES: 256,
            P.ROOT_TABLE_CAPACITY: 8192,
            P.GC_GROWTH_RATIO: GC_GROWTH_RATIO,
            P.FEATURE_FLAGS: 1,
            P.STACK_PAGE_SIZE: 8192,
            P.MAX_OLD_SPACE: 0,
            P.PROXY_MAJOR: 1,
            P.PROXY_MINOR: 17,
            P.IMAGE_VERSION: 0,
            P.REMEMBERED_OLD_MAX: 8192,
            P.REMEMBERED_PERM_OLD: 0,
            P.REMEMBERED_PERM_OLD_MAX: 0,
            P.REMEMBERED_PERM_NEW: 0,
            P.REMEMBERED_PERM_NEW_MAX: 0,
        }


def classic_parameters(
    spur: tuple[ParameterValue, ...],
    *,
    allocations: int,
    allocations_between_gcs: int,
    full_gc_us: int,
    incr_gc_us: int,
) -> tuple[ParameterValue, ...]:
    """The 40 parameters a classic VM answers for the state `spur` (Spur's numbering).

    Classic object memory is one contiguous heap from address 0: old objects,
    then young ones, then free space. So parameter 1 is the end of old space
    (the bytes old objects take), 2 the end of young space, 3 the end of
    memory; 4 counts allocations since the last GC, 5 how many trigger one
    and 34 how many were done before the last one; 8, 10 and 36 (and 38) are
    microseconds, as the Squeak 4.x interpreter counts them; 12-20 (a
    translating VM's slots) are 0; 40 is a 32-bit word.
    """

    def get(n: int) -> int:
        value = spur[n - 1]
        return 0 if value is None else int(value)

    # Addresses of a 32-bit heap: whole words.
    old_end = (get(P.OLD_SPACE) - get(P.FREE_OLD_SPACE)) // 4 * 4
    values: list[ParameterValue] = [get(n) for n in range(1, LEGACY_PARAMETER_COUNT + 1)]
    changed = {
        P.OLD_SPACE: old_end,
        P.YOUNG_SPACE: old_end + get(P.YOUNG_SPACE) // 4 * 4,
        P.MEMORY: get(P.MEMORY),
        4: allocations,
        5: allocations_between_gcs,
        P.FULL_GC_TIME: full_gc_us,
        P.INCR_GC_TIME: incr_gc_us,
        P.BYTES_ALLOCATED: allocations_between_gcs + 1,  # the one that went over
        P.LAST_GC_AT: get(P.LAST_GC_AT) * 1000,
        P.LAST_INCR_GC_TIME: get(P.LAST_INCR_GC_TIME) * 1000,
        P.WORD_SIZE: 4,
        **dict.fromkeys(range(12, 21), 0),
    }
    for n, value in changed.items():
        values[n - 1] = value
    return tuple(values)


def _round_up(size: float, unit: int = SEGMENT) -> int:
    """`size` rounded up to whole segments (or `unit`s)."""
    return math.ceil(size / unit) * unit
