"""The last quarter of an hour of a few key figures, for the status page's charts.

Fed after each polled collection (`History.record_collection`, the
collector's `observers`) and each scrape (`History.record_scrape`), it keeps,
per series, one point per `STEP_S` seconds over `WINDOW_S` seconds:

* ``pharo``: each Pharo target's used memory (``memory - memoryFree``) and its
  GC time per minute (the deltas of ``fullGCTime + incrGCTime``, ms/min);
* ``docker``: each container's CPU % (``docker_container_cpu,cpu=cpu-total``
  ``usage_percent``) and memory (``docker_container_mem`` ``working_set``,
  else ``usage``);
* ``telemon``: the scrape duration and each input's slowest collection (ms).

Cost: a series is two preallocated ``array('d')`` of `POINTS` (180) floats,
2,880 bytes, plus its ring object, label and dict entries (and, for GC time,
the previous counters): 3.7 KB measured (`bench/status_page.py`, tracemalloc),
whatever the interval, as points of one step are merged (their maximum).
Nothing grows without bound: a series without a point for `WINDOW_S` (a
target gone, a container stopped) is dropped at the next sweep, at most
`SWEEP_EVERY_S` later, and past `MAX_SERIES` series new ones are not kept
(`left_out` counts them). So 1,000 Pharo targets cost about 7.5 MB (two
series each); the cap bounds the whole at about 37 MB.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from telemon.collector import TargetState
from telemon.metric import Metric

__all__ = ["CHARTS", "ChartSpec", "History", "Ring", "SeriesView"]

WINDOW_S = 900.0
"""How far back the charts reach."""
STEP_S = 5.0
"""One point per series per step; more in one step are merged (their maximum)."""
POINTS = int(WINDOW_S / STEP_S)
MAX_SERIES = 10_000
"""A safety cap far above any fleet's series: 10,000 series are about 37 MB."""
SWEEP_EVERY_S = 60.0
"""How often series without a recent point are looked for and dropped."""


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """One chart: its key, title and the unit of its values."""

    key: str
    title: str
    unit: str  # "bytes", "%", "ms", "ms/min"


PHARO_MEMORY = ChartSpec("pharo_memory", "Pharo used memory (memory - memoryFree)", "bytes")
PHARO_GC = ChartSpec("pharo_gc", "Pharo GC time per minute (full + incremental)", "ms/min")
DOCKER_CPU = ChartSpec("docker_cpu", "Container CPU", "%")
DOCKER_MEMORY = ChartSpec("docker_memory", "Container memory (working set)", "bytes")
TELEMON_DURATIONS = ChartSpec(
    "telemon_durations", "telemon: scrape and slowest collection per input", "ms"
)
CHARTS = (PHARO_MEMORY, PHARO_GC, DOCKER_CPU, DOCKER_MEMORY, TELEMON_DURATIONS)
"""Every chart, in the page's order."""


class Ring:
    """At most `POINTS` (time, value) points, one per `STEP_S`, oldest overwritten."""

    __slots__ = ("_count", "_next", "_times", "_values")

    def __init__(self) -> None:
        self._times = array("d", bytes(8 * POINTS))
        self._values = array("d", bytes(8 * POINTS))
        self._next = 0
        self._count = 0

    def add(self, time_s: float, value: float) -> None:
        """A point; in the same step as the last one, the larger of the two is kept."""
        last = (self._next - 1) % POINTS
        if self._count and time_s // STEP_S == self._times[last] // STEP_S:
            self._times[last] = time_s
            self._values[last] = max(value, self._values[last])
            return
        self._times[self._next] = time_s
        self._values[self._next] = value
        self._next = (self._next + 1) % POINTS
        self._count = min(self._count + 1, POINTS)

    @property
    def last_time(self) -> float:
        """The newest point's time (0.0 when empty)."""
        return self._times[(self._next - 1) % POINTS] if self._count else 0.0

    @property
    def last_value(self) -> float:
        """The newest point's value (0.0 when empty)."""
        return self._values[(self._next - 1) % POINTS] if self._count else 0.0

    def points(self, since_s: float) -> list[tuple[float, float]]:
        """The points at or after `since_s`, oldest first."""
        start = (self._next - self._count) % POINTS
        times, values = self._times, self._values
        indexes = ((start + i) % POINTS for i in range(self._count))
        return [(times[i], values[i]) for i in indexes if times[i] >= since_s]


@dataclass(frozen=True, slots=True)
class SeriesView:
    """One series' points, as the page draws them."""

    label: str
    points: list[tuple[float, float]]


class History:
    """The charts' series, keyed by chart and label, bounded in count and in time."""

    def __init__(self, clock: Callable[[], float], global_tags: Iterable[str] = ()) -> None:
        """`clock` answers seconds since the epoch (the agent's clock); `global_tags`
        (their keys) are on every metric, so they are left out of series' labels."""
        self.clock = clock
        self._shared_tags = frozenset(global_tags)
        self.series: dict[str, dict[str, Ring]] = {spec.key: {} for spec in CHARTS}
        self.left_out = 0
        self._count = 0
        self._gc_last: dict[str, tuple[float, float]] = {}
        self._swept_at = 0.0

    # --- feeding ---------------------------------------------------------------------

    def record_collection(self, state: TargetState) -> None:
        """A polled target's collection: its figures, and its input's collection time."""
        now = self.clock()
        self._add(TELEMON_DURATIONS.key, f"collection: {state.input}", now, state.duration_ms)
        for metric in state.metrics:
            if metric.measurement == "docker_container_cpu":
                self._docker_cpu(metric, now)
            elif metric.measurement == "docker_container_mem":
                self._docker_memory(metric, now)
            elif state.input == "pharo":  # configured and discovered alike
                self._pharo(metric, state, now)
        if now - self._swept_at >= SWEEP_EVERY_S:
            self.sweep(now)

    def record_scrape(self, duration_ms: float) -> None:
        """One HTTP scrape's duration."""
        self._add(TELEMON_DURATIONS.key, "scrape", self.clock(), duration_ms)

    def _pharo(self, metric: Metric, state: TargetState, now: float) -> None:
        label = _pharo_label(metric, state, self._shared_tags)
        fields = metric.fields
        memory, free = _number(fields.get("memory")), _number(fields.get("memoryFree"))
        if memory is not None and free is not None:
            self._add(PHARO_MEMORY.key, label, now, memory - free)
        full, incremental = _number(fields.get("fullGCTime")), _number(fields.get("incrGCTime"))
        if full is None and incremental is None:
            return
        total = (full or 0.0) + (incremental or 0.0)
        before = self._gc_last.get(label)
        if before is not None and 0 <= now - before[0] < STEP_S and total >= before[1]:
            return  # a rate over one step at least: one GC in a 1 s poll is not a trend
        self._gc_last[label] = (now, total)
        # A restarted VM starts its counters again: no point for that step.
        if before is not None and now > before[0] and total >= before[1]:
            per_minute = (total - before[1]) / (now - before[0]) * 60.0
            self._add(PHARO_GC.key, label, now, per_minute)

    def _docker_cpu(self, metric: Metric, now: float) -> None:
        name = metric.tags.get("container_name")
        percent = _number(metric.fields.get("usage_percent"))
        if name is not None and metric.tags.get("cpu") == "cpu-total" and percent is not None:
            self._add(DOCKER_CPU.key, name, now, percent)

    def _docker_memory(self, metric: Metric, now: float) -> None:
        name = metric.tags.get("container_name")
        fields = metric.fields
        used = _number(fields.get("working_set", fields.get("usage")))
        if name is not None and used is not None:
            self._add(DOCKER_MEMORY.key, name, now, used)

    def _add(self, chart: str, label: str, now: float, value: float) -> None:
        series = self.series[chart]
        ring = series.get(label)
        if ring is None:
            if self._count >= MAX_SERIES:
                self.left_out += 1
                return
            ring = series[label] = Ring()
            self._count += 1
        ring.add(now, value)

    def sweep(self, now: float) -> None:
        """Drop the series (and GC counters) without a point in the last `WINDOW_S`."""
        self._swept_at = now
        since = now - WINDOW_S
        for series in self.series.values():
            for label in [k for k, ring in series.items() if ring.last_time < since]:
                del series[label]
                self._count -= 1
        for label in [k for k, (t, _) in self._gc_last.items() if t < since]:
            del self._gc_last[label]

    # --- reading ---------------------------------------------------------------------

    def view(self, chart: str, now: float, limit: int) -> tuple[list[SeriesView], int]:
        """Up to `limit` series of `chart` with points in the window (the highest latest
        values first, for the page), and how many more there are."""
        since = now - WINDOW_S
        # Only the drawn series' points are copied: a page over 1,000 targets stays fast.
        live = [(label, ring) for label, ring in self.series[chart].items()
                if ring.last_time >= since]  # fmt: skip
        live.sort(key=lambda item: (-item[1].last_value, item[0]))
        views = [SeriesView(label, ring.points(since)) for label, ring in live[:limit]]
        return views, max(0, len(live) - limit)


def _pharo_label(metric: Metric, state: TargetState, shared: frozenset[str]) -> str:
    """The instance, with the sample's own tags when one payload holds several VMs."""
    instance = metric.tags.get("instance", state.target.target)
    extra = sorted(
        f"{key}={value}"
        for key, value in metric.tags.items()
        if key != "instance" and key not in shared and state.tags.get(key) != value
    )
    return " ".join([instance, *extra])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
