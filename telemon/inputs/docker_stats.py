"""Pure arithmetic on Docker Engine API documents: no I/O, no clock.

Turns `/containers/json` items, `/containers/{id}/json` (inspect) and
`/containers/{id}/stats?one-shot=true` documents into the fields of
Telegraf's `inputs.docker` measurements, so existing dashboards keep
working. CPU % needs two samples; `CpuTracker` keeps the previous one per
container because one-shot stats come without `precpu_stats`.
"""

from __future__ import annotations

import re
from calendar import timegm
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemon.metric import FieldValue

__all__ = [
    "FIELD_TYPES",
    "CpuSample",
    "as_array",
    "as_object",
    "CpuTracker",
    "blkio_points",
    "container_name",
    "cpu_fields",
    "cpu_percent",
    "engine_fields",
    "health_fields",
    "mem_fields",
    "net_points",
    "parse_image",
    "parse_timestamp_ns",
    "status_fields",
    "working_set",
]

Doc = dict[str, Any]

# The `memory_stats.stats` keys Telegraf writes (the v1 names), plus the v2
# names that carry the same meaning, so cgroup v2 hosts lose nothing.
_MEM_STAT_KEYS = (
    "active_anon", "active_file", "cache", "hierarchical_memory_limit", "inactive_anon",
    "inactive_file", "mapped_file", "pgfault", "pgmajfault", "pgpgin", "pgpgout", "rss",
    "rss_huge", "total_active_anon", "total_active_file", "total_cache", "total_inactive_anon",
    "total_inactive_file", "total_mapped_file", "total_pgfault", "total_pgmajfault",
    "total_pgpgin", "total_pgpgout", "total_rss", "total_rss_huge", "total_unevictable",
    "total_writeback", "unevictable", "writeback",
    "anon", "file", "shmem", "sock", "kernel_stack", "slab", "file_mapped", "file_dirty",
)  # fmt: skip
_NET_KEYS = (
    "rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
    "tx_bytes", "tx_packets", "tx_errors", "tx_dropped",
)  # fmt: skip
# Stats list -> field prefix (Telegraf drops `_recursive` from the wait time).
_BLKIO_LISTS = {
    "io_service_bytes_recursive": "io_service_bytes_recursive",
    "io_serviced_recursive": "io_serviced_recursive",
    "io_queue_recursive": "io_queue_recursive",
    "io_service_time_recursive": "io_service_time_recursive",
    "io_wait_time_recursive": "io_wait_time",
    "io_merged_recursive": "io_merged_recursive",
}
_BLKIO_OPLESS = ("io_time_recursive", "sectors_recursive")
# Old Podman builds also emit rios/wios/dbytes/dios "ops" in the bytes list.
_BLKIO_OPS = {"read", "write", "sync", "async", "discard", "total"}
_ENGINE_KEYS = (
    ("n_cpus", "NCPU"),
    ("n_used_file_descriptors", "NFd"),
    ("n_containers", "Containers"),
    ("n_containers_running", "ContainersRunning"),
    ("n_containers_stopped", "ContainersStopped"),
    ("n_containers_paused", "ContainersPaused"),
    ("n_images", "Images"),
    ("n_goroutines", "NGoroutines"),
    ("n_listener_events", "NEventsListener"),
    ("memory_total", "MemTotal"),
)
"""`docker` field <- `/info` key."""
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$"
)


def as_object(value: Any) -> Doc:
    """A JSON object, or an empty one for anything else (an engine may lie)."""
    return value if isinstance(value, dict) else {}


def as_array(value: Any) -> list[Any]:
    """A JSON array, or an empty one for anything else."""
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    """An API number as an int; None for anything else (bool, null, text)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def parse_timestamp_ns(text: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time; None when unset (year 1)."""
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year <= 1:
        return None  # Go's zero time: "0001-01-01T00:00:00Z" means never
    fraction, zone = match.group(7) or "", match.group(8)
    try:  # datetime refuses month 13 or hour 25 from a lying engine; timegm would not
        seconds = timegm(datetime(year, month, day, hour, minute, second).timetuple())
    except (ValueError, OverflowError):
        return None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


def is_empty_stats(stats: Doc) -> bool:
    """True for the all-zero document an engine answers for a container not running
    (read at Go's zero time): its zeros are no measurement."""
    read = stats.get("read")
    return isinstance(read, str) and read.startswith("0001-01-01T")


def container_name(names: Any) -> str:
    """The container's own name: the first without a `/` inside (links add `/a/b`)."""
    if not isinstance(names, list):
        return ""
    cleaned = [n.lstrip("/") for n in names if isinstance(n, str)]
    for name in cleaned:
        if "/" not in name:
            return name
    return cleaned[0] if cleaned else ""


def parse_image(image: str) -> tuple[str, str]:
    """(`container_image`, `container_version`) as Telegraf splits them."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a colon before the last slash is a registry port
        return name[:colon], name[colon + 1 :]
    return name, "unknown"


def working_set(memory: Doc) -> int | None:
    """Memory use as `docker stats` shows it: usage minus inactive file cache."""
    usage = _int(memory.get("usage"))
    if usage is None:
        return None
    stats = as_object(memory.get("stats"))
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        inactive = _int(stats.get(key))
        if inactive is not None:
            return usage - inactive if inactive < usage else usage
    return usage


def mem_fields(memory: Doc, container_id: str, *, podman: bool = False) -> dict[str, FieldValue]:
    """`docker_container_mem`: raw values, `working_set` and its `usage_percent`."""
    fields: dict[str, FieldValue] = {"container_id": container_id}
    stats = as_object(memory.get("stats"))
    for key in _MEM_STAT_KEYS:
        value = _int(stats.get(key))
        if value is not None:
            fields[key] = value
    for source, name in (("usage", "usage"), ("limit", "limit"), ("max_usage", "max_usage")):
        value = _int(memory.get(source))
        if value is not None:
            fields[name] = value
    failcnt = _int(memory.get("failcnt"))
    if failcnt:
        fields["fail_count"] = failcnt
    # Podman's `usage` already excludes inactive file cache.
    used = _int(memory.get("usage")) if podman else working_set(memory)
    if used is not None:
        fields["working_set"] = used
        limit = _int(memory.get("limit"))
        if limit:
            fields["usage_percent"] = used / limit * 100.0
    return fields if len(fields) > 1 else {}


@dataclass(frozen=True, slots=True)
class CpuSample:
    """What CPU % is computed from: container and host counters at one read."""

    total_usage: int
    system_usage: int | None
    online_cpus: int
    read_ns: int | None

    @classmethod
    def from_stats(cls, stats: Doc) -> CpuSample | None:
        """The sample in a stats document; None when it carries no CPU counters."""
        cpu = as_object(stats.get("cpu_stats"))
        total = _int(as_object(cpu.get("cpu_usage")).get("total_usage"))
        if total is None:
            return None
        online = _int(cpu.get("online_cpus")) or len(
            as_array(as_object(cpu.get("cpu_usage")).get("percpu_usage"))
        )
        return cls(
            total_usage=total,
            system_usage=_int(cpu.get("system_cpu_usage")),
            online_cpus=online or 1,
            read_ns=parse_timestamp_ns(stats.get("read")),
        )


def cpu_percent(
    current: CpuSample, previous: CpuSample, *, wall_clock: bool = False
) -> float | None:
    """CPU % between two samples (100 = one core), or None when it cannot be told.

    Docker: Δcontainer / Δhost × online CPUs, as `docker stats` computes it.
    `wall_clock` (Podman, whose host counter is not comparable): Δcontainer /
    Δread time. None when a counter went backwards (the container restarted)
    or did not move.
    """
    used = current.total_usage - previous.total_usage
    if used < 0:
        return None
    if wall_clock:
        if current.read_ns is None or previous.read_ns is None:
            return None
        elapsed = current.read_ns - previous.read_ns
        return used / elapsed * 100.0 if elapsed > 0 else None
    if current.system_usage is None or previous.system_usage is None:
        return None
    host = current.system_usage - previous.system_usage
    return used / host * current.online_cpus * 100.0 if host > 0 else None


class CpuTracker:
    """The previous CPU sample of each container, for CPU % between our own polls."""

    def __init__(self) -> None:
        self._previous: dict[str, CpuSample] = {}

    def percent(
        self, container_id: str, sample: CpuSample, *, wall_clock: bool = False
    ) -> float | None:
        """CPU % since this container's previous sample; remembers this one."""
        previous = self._previous.get(container_id)
        self._previous[container_id] = sample
        if previous is None:
            return None
        return cpu_percent(sample, previous, wall_clock=wall_clock)

    def keep_only(self, container_ids: set[str]) -> None:
        """Forget containers that are gone, so memory stays bounded."""
        for gone in self._previous.keys() - container_ids:
            del self._previous[gone]

    def __len__(self) -> int:
        return len(self._previous)


def cpu_fields(stats: Doc, container_id: str, percent: float | None) -> dict[str, FieldValue]:
    """`docker_container_cpu,cpu=cpu-total`."""
    cpu = as_object(stats.get("cpu_stats"))
    usage = as_object(cpu.get("cpu_usage"))
    throttling = as_object(cpu.get("throttling_data"))
    pairs = (
        ("usage_total", usage.get("total_usage")),
        ("usage_in_usermode", usage.get("usage_in_usermode")),
        ("usage_in_kernelmode", usage.get("usage_in_kernelmode")),
        ("usage_system", cpu.get("system_cpu_usage")),
        ("throttling_periods", throttling.get("periods")),
        ("throttling_throttled_periods", throttling.get("throttled_periods")),
        ("throttling_throttled_time", throttling.get("throttled_time")),
    )
    fields: dict[str, FieldValue] = {k: v for k, raw in pairs if (v := _int(raw)) is not None}
    if not fields:
        return {}
    if percent is not None:
        fields["usage_percent"] = percent
    fields["container_id"] = container_id
    return fields


def percpu_points(stats: Doc, container_id: str) -> list[tuple[str, dict[str, FieldValue]]]:
    """(`cpu0`, fields) per online CPU; cgroup v1 only (v2 has no per-CPU usage)."""
    cpu = as_object(stats.get("cpu_stats"))
    percpu = as_array(as_object(cpu.get("cpu_usage")).get("percpu_usage"))
    online = _int(cpu.get("online_cpus")) or len(percpu)
    points: list[tuple[str, dict[str, FieldValue]]] = []
    for index, raw in enumerate(percpu[:online]):
        value = _int(raw)
        if value is not None:
            points.append((f"cpu{index}", {"usage_total": value, "container_id": container_id}))
    return points


def net_points(
    stats: Doc, container_id: str, *, per_interface: bool, total: bool
) -> list[tuple[str, dict[str, FieldValue]]]:
    """(`network` tag, fields) per interface and/or the `total` over all of them."""
    networks = stats.get("networks")
    if not isinstance(networks, dict) or not networks:
        return []
    points: list[tuple[str, dict[str, FieldValue]]] = []
    sums = dict.fromkeys(_NET_KEYS, 0)
    for name in sorted(networks):
        counters = networks[name] if isinstance(networks[name], dict) else {}
        fields: dict[str, FieldValue] = {}
        for key in _NET_KEYS:
            value = _int(counters.get(key))
            if value is not None:
                fields[key] = value
                sums[key] += value
        if per_interface and fields:
            points.append((name, {**fields, "container_id": container_id}))
    if total:
        points.append(("total", {**sums, "container_id": container_id}))
    return points


def blkio_points(
    stats: Doc, container_id: str, *, per_device: bool, total: bool
) -> list[tuple[str, dict[str, FieldValue]]]:
    """(`device` tag, fields) per `major:minor` and/or the `total`.

    The total always carries the read and write byte counts (0 with no I/O),
    so a dashboard shows a flat line rather than no data.
    """
    blkio = stats.get("blkio_stats")
    if not isinstance(blkio, dict):
        return []
    devices: dict[str, dict[str, int]] = {}
    for device, key, value in _blkio_entries(blkio):
        fields = devices.setdefault(device, {})
        fields[key] = fields.get(key, 0) + value
    points: list[tuple[str, dict[str, FieldValue]]] = []
    if per_device:
        points += [(d, {**f, "container_id": container_id}) for d, f in sorted(devices.items())]
    if total:
        sums = {"io_service_bytes_recursive_read": 0, "io_service_bytes_recursive_write": 0}
        for fields in devices.values():
            for key, value in fields.items():
                sums[key] = sums.get(key, 0) + value
        points.append(("total", {**sums, "container_id": container_id}))
    return points


def _blkio_entries(blkio: Doc) -> list[tuple[str, str, int]]:
    """(`major:minor`, field name, value) for every usable entry."""
    entries = []
    for source, prefix in [*_BLKIO_LISTS.items(), *((k, k) for k in _BLKIO_OPLESS)]:
        for entry in as_array(blkio.get(source)):
            if not isinstance(entry, dict):
                continue
            value = _int(entry.get("value"))
            major, minor = _int(entry.get("major")), _int(entry.get("minor"))
            if value is None or major is None or minor is None:
                continue
            name = prefix
            if source in _BLKIO_LISTS:
                op = str(entry.get("op", "")).lower()
                if op not in _BLKIO_OPS:
                    continue
                name = f"{prefix}_{op}"
            entries.append((f"{major}:{minor}", name, value))
    return entries


def status_fields(inspect: Doc, container_id: str, now_ns: int) -> dict[str, FieldValue]:
    """`docker_container_status` from an inspect document."""
    state = as_object(inspect.get("State"))
    fields: dict[str, FieldValue] = {"container_id": container_id}
    if isinstance(state.get("OOMKilled"), bool):
        fields["oomkilled"] = state["OOMKilled"]
    for key, name in (("Pid", "pid"), ("ExitCode", "exitcode")):
        value = _int(state.get(key))
        if value is not None:
            fields[name] = value
    restarts = _int(inspect.get("RestartCount"))
    if restarts is not None:
        fields["restart_count"] = restarts
    started = parse_timestamp_ns(state.get("StartedAt"))
    finished = parse_timestamp_ns(state.get("FinishedAt"))
    if started is not None:
        fields["started_at"] = started
        # Telegraf: a stopped (or restarting) container's uptime is the time it
        # ran; a running one finished, if ever, before it started.
        end = finished if finished is not None and finished > started else now_ns
        fields["uptime_ns"] = max(end - started, 0)
    if finished is not None:
        fields["finished_at"] = finished
    return fields


def health_fields(inspect: Doc) -> dict[str, FieldValue]:
    """`docker_container_health` for containers with a HEALTHCHECK; else empty."""
    health = as_object(inspect.get("State")).get("Health")
    if not isinstance(health, dict) or not isinstance(health.get("Status"), str):
        return {}
    fields: dict[str, FieldValue] = {"health_status": health["Status"]}
    streak = _int(health.get("FailingStreak"))
    if streak is not None:
        fields["failing_streak"] = streak
    return fields


def engine_fields(info: Doc) -> dict[str, FieldValue]:
    """The `docker` measurement (engine-wide counts) from `/info`."""
    return {name: v for name, key in _ENGINE_KEYS if (v := _int(info.get(key))) is not None}


def _kinds(ints: Iterable[str], **others: str) -> dict[str, str]:
    return {**dict.fromkeys(ints, "i"), **others, "container_id": "s"}


_BLKIO_FIELDS = [
    *(f"{prefix}_{op}" for prefix in _BLKIO_LISTS.values() for op in sorted(_BLKIO_OPS)),
    *_BLKIO_OPLESS,
]
FIELD_TYPES: dict[str, dict[str, str]] = {
    "docker": dict.fromkeys((name for name, _ in _ENGINE_KEYS), "i"),
    "docker_container_mem": _kinds(
        (*_MEM_STAT_KEYS, "usage", "limit", "max_usage", "fail_count", "working_set"),
        usage_percent="f",
    ),
    "docker_container_cpu": _kinds(
        (
            "usage_total", "usage_in_usermode", "usage_in_kernelmode", "usage_system",
            "throttling_periods", "throttling_throttled_periods", "throttling_throttled_time",
        ),
        usage_percent="f",
    ),  # fmt: skip
    "docker_container_net": _kinds(_NET_KEYS),
    "docker_container_blkio": _kinds(_BLKIO_FIELDS),
    "docker_container_status": _kinds(
        ("pid", "exitcode", "restart_count", "started_at", "finished_at", "uptime_ns"),
        oomkilled="b",
    ),
    "docker_container_health": {"health_status": "s", "failing_streak": "i"},
}
"""The kind of every field written, per measurement: Telegraf's `inputs.docker` types
(its unsigned counters are integers in line protocol, as Telegraf writes them)."""
