"""The cgroup files `[[inputs.cgroup]]` reads, parsed: pure functions, no I/O.

Each builder takes a mapping {file name: text} of whatever files could be read
and answers the fields it can compute from them; a missing or garbled file
leaves its fields out. Names follow docker stats / cAdvisor: `memory_working_set`
is usage minus inactive file pages, as `docker stats` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from telemon.metric import FieldValue

__all__ = [
    "FIELD_TYPES",
    "V1_FILES",
    "V2_FILES",
    "Membership",
    "parse_blkio",
    "parse_flat",
    "parse_int",
    "parse_io_stat",
    "parse_limit",
    "parse_quota",
    "parse_self_cgroup",
    "v1_fields",
    "v2_fields",
]

V2_FILES = (
    "memory.current",
    "memory.max",
    "memory.stat",
    "memory.peak",
    "memory.events",
    "cpu.stat",
    "cpu.max",
    "pids.current",
    "pids.max",
    "io.stat",
)
"""What is read from the one directory of a cgroup v2 group."""

V1_FILES: dict[str, tuple[str, ...]] = {
    "memory": (
        "memory.usage_in_bytes",
        "memory.limit_in_bytes",
        "memory.stat",
        "memory.max_usage_in_bytes",
        "memory.failcnt",
        "memory.oom_control",
    ),
    "cpuacct": ("cpuacct.usage", "cpuacct.stat"),
    "cpu": ("cpu.stat", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    "pids": ("pids.current", "pids.max"),
    "blkio": (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_serviced_recursive",
        "blkio.throttle.io_service_bytes",
        "blkio.throttle.io_serviced",
    ),
}
"""What is read from each cgroup v1 controller's directory (file names never collide)."""

# Percent and cores are ratios; everything else counts bytes, ns, periods or pids.
_FLOAT_FIELDS = ("memory_usage_percent", "cpu_quota_cores")
_INT_FIELDS = (
    "memory_usage", "memory_limit", "memory_working_set", "memory_anon", "memory_file",
    "memory_inactive_file", "memory_active_file", "memory_shmem", "memory_max_usage",
    "memory_failcnt", "memory_oom_kill",
    "cpu_usage_ns", "cpu_user_ns", "cpu_system_ns", "cpu_periods", "cpu_throttled_periods",
    "cpu_throttled_ns",
    "pids_current", "pids_limit",
    "io_read_bytes", "io_write_bytes", "io_reads", "io_writes",
)  # fmt: skip
FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(_INT_FIELDS, "i"),
    **dict.fromkeys(_FLOAT_FIELDS, "f"),
}
"""The kind of every field `v1_fields` and `v2_fields` write."""

# v1 writes "no limit" as the largest page-aligned int64 (9223372036854771712);
# nothing real comes near 4 EiB, so anything from there up means unlimited.
_UNLIMITED = 2**62


class Membership(NamedTuple):
    """One line of /proc/self/cgroup: the controllers of a hierarchy and the path in it."""

    controllers: tuple[str, ...]
    """Empty for the cgroup v2 (unified) line `0::/path`."""
    path: str


def parse_self_cgroup(text: str) -> list[Membership]:
    """The lines of /proc/self/cgroup (`ID:controllers:path`); malformed ones skipped."""
    memberships = []
    for line in text.splitlines():
        parts = line.split(":", 2)  # the path itself may hold ':'
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        memberships.append(Membership(controllers, parts[2]))
    return memberships


def parse_int(text: str) -> int | None:
    """A file holding one integer (`memory.current`, `cpuacct.usage`)."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_limit(text: str) -> int | None:
    """A limit file; None when unlimited ("max" in v2, ~9.22e18 or -1 in v1) or garbled."""
    value = parse_int(text)
    if value is None or value < 0 or value >= _UNLIMITED:
        return None
    return value


def parse_flat(text: str) -> dict[str, int]:
    """A flat-keyed file of `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`)."""
    values = {}
    for line in text.splitlines():
        key, _, raw = line.partition(" ")
        try:
            values[key] = int(raw)
        except ValueError:
            continue
    return values


def parse_io_stat(text: str) -> dict[str, int]:
    """v2 `io.stat` summed over devices: {"rbytes": n, "wbytes": n, "rios": n, ...}."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        for pair in line.split()[1:]:  # the first word is the device, MAJ:MIN
            key, _, raw = pair.partition("=")
            if raw.isdigit():
                totals[key] = totals.get(key, 0) + int(raw)
    return totals


def parse_blkio(text: str) -> dict[str, int]:
    """A v1 blkio file summed over devices by operation: {"Read": n, "Write": n, ...}.

    The per-device and the last `Total` lines are left out: they would count twice.
    """
    totals: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) != 3 or words[1] == "Total" or not words[2].isdigit():
            continue
        totals[words[1]] = totals.get(words[1], 0) + int(words[2])
    return totals


def parse_quota(quota: int | None, period: int | None) -> float | None:
    """CPU cores a quota allows per period; None when unlimited (or unknown)."""
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


def _first(stat: Mapping[str, int], keys: Iterable[str]) -> int | None:
    return next((stat[key] for key in keys if key in stat), None)


def _put(fields: dict[str, FieldValue], name: str, value: FieldValue | None) -> None:
    if value is not None:
        fields[name] = value


def _memory(
    usage: int | None,
    limit: int | None,
    inactive_file: int | None,
) -> dict[str, FieldValue]:
    """Usage, limit, and the working set as `docker stats` computes it."""
    fields: dict[str, FieldValue] = {}
    _put(fields, "memory_usage", usage)
    _put(fields, "memory_limit", limit)
    if usage is not None and inactive_file is not None:
        working_set = max(0, usage - inactive_file)  # usage is fuzzy in v1: never below 0
        fields["memory_working_set"] = working_set
        if limit:
            fields["memory_usage_percent"] = working_set / limit * 100
    return fields


def v2_fields(files: Mapping[str, str]) -> dict[str, FieldValue]:
    """The `cgroup` fields of a cgroup v2 group, from the `V2_FILES` that could be read."""
    stat = parse_flat(files.get("memory.stat", ""))
    usage = parse_int(files["memory.current"]) if "memory.current" in files else None
    limit = parse_limit(files["memory.max"]) if "memory.max" in files else None
    fields = _memory(usage, limit, stat.get("inactive_file"))
    for name, key in (
        ("memory_anon", "anon"),
        ("memory_file", "file"),
        ("memory_inactive_file", "inactive_file"),
        ("memory_active_file", "active_file"),
        ("memory_shmem", "shmem"),
    ):
        _put(fields, name, stat.get(key))
    if "memory.peak" in files:
        _put(fields, "memory_max_usage", parse_int(files["memory.peak"]))
    events = parse_flat(files.get("memory.events", ""))
    _put(fields, "memory_failcnt", events.get("max"))
    _put(fields, "memory_oom_kill", events.get("oom_kill"))

    cpu = parse_flat(files.get("cpu.stat", ""))
    for name, key, scale in (
        ("cpu_usage_ns", "usage_usec", 1000),
        ("cpu_user_ns", "user_usec", 1000),
        ("cpu_system_ns", "system_usec", 1000),
        ("cpu_periods", "nr_periods", 1),
        ("cpu_throttled_periods", "nr_throttled", 1),
        ("cpu_throttled_ns", "throttled_usec", 1000),
    ):
        if key in cpu:
            fields[name] = cpu[key] * scale
    if "cpu.max" in files:
        # "$MAX $PERIOD", MAX being "max" when unlimited
        quota, _, period = files["cpu.max"].strip().partition(" ")
        _put(fields, "cpu_quota_cores", parse_quota(parse_limit(quota), parse_int(period)))

    fields.update(_pids(files))
    if "io.stat" in files:
        io = parse_io_stat(files["io.stat"])  # no line at all until the first I/O
        for name, key in (
            ("io_read_bytes", "rbytes"),
            ("io_write_bytes", "wbytes"),
            ("io_reads", "rios"),
            ("io_writes", "wios"),
        ):
            fields[name] = io.get(key, 0)
    return fields


def v1_fields(files: Mapping[str, str], user_hz: int) -> dict[str, FieldValue]:
    """The `cgroup` fields of a cgroup v1 group, from the `V1_FILES` that could be read.

    `user_hz` is the kernel's USER_HZ (`os.sysconf("SC_CLK_TCK")`), the unit of
    `cpuacct.stat`.
    """
    stat = parse_flat(files.get("memory.stat", ""))
    # The total_* keys include child cgroups, as memory.usage_in_bytes does.
    usage = parse_int(files["memory.usage_in_bytes"]) if "memory.usage_in_bytes" in files else None
    limit = (
        parse_limit(files["memory.limit_in_bytes"]) if "memory.limit_in_bytes" in files else None
    )
    fields = _memory(usage, limit, _first(stat, ("total_inactive_file", "inactive_file")))
    for name, key in (
        ("memory_anon", "rss"),
        ("memory_file", "cache"),
        ("memory_inactive_file", "inactive_file"),
        ("memory_active_file", "active_file"),
        ("memory_shmem", "shmem"),
    ):
        _put(fields, name, _first(stat, (f"total_{key}", key)))
    for name, file in (
        ("memory_max_usage", "memory.max_usage_in_bytes"),
        ("memory_failcnt", "memory.failcnt"),
    ):
        if file in files:
            _put(fields, name, parse_int(files[file]))
    # oom_kill is in memory.oom_control since Linux 4.13
    _put(fields, "memory_oom_kill", parse_flat(files.get("memory.oom_control", "")).get("oom_kill"))

    if "cpuacct.usage" in files:
        _put(fields, "cpu_usage_ns", parse_int(files["cpuacct.usage"]))
    ticks = parse_flat(files.get("cpuacct.stat", ""))
    for name, key in (("cpu_user_ns", "user"), ("cpu_system_ns", "system")):
        if key in ticks and user_hz > 0:
            fields[name] = ticks[key] * 1_000_000_000 // user_hz
    cpu = parse_flat(files.get("cpu.stat", ""))
    for name, key in (
        ("cpu_periods", "nr_periods"),
        ("cpu_throttled_periods", "nr_throttled"),
        ("cpu_throttled_ns", "throttled_time"),
    ):
        _put(fields, name, cpu.get(key))
    quota = parse_int(files.get("cpu.cfs_quota_us", ""))
    period = parse_int(files.get("cpu.cfs_period_us", ""))
    _put(fields, "cpu_quota_cores", parse_quota(quota, period))

    fields.update(_pids(files))
    fields.update(_blkio(files))
    return fields


def _pids(files: Mapping[str, str]) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    if "pids.current" in files:
        _put(fields, "pids_current", parse_int(files["pids.current"]))
    if "pids.max" in files:
        _put(fields, "pids_limit", parse_limit(files["pids.max"]))
    return fields


def _blkio(files: Mapping[str, str]) -> dict[str, FieldValue]:
    """I/O from the throttle files: they count every request, whatever the I/O scheduler."""
    fields: dict[str, FieldValue] = {}
    nbytes = _first_file(files, "blkio.throttle.io_service_bytes")
    if nbytes is not None:
        fields.update(io_read_bytes=nbytes.get("Read", 0), io_write_bytes=nbytes.get("Write", 0))
    count = _first_file(files, "blkio.throttle.io_serviced")
    if count is not None:
        fields.update(io_reads=count.get("Read", 0), io_writes=count.get("Write", 0))
    return fields


def _first_file(files: Mapping[str, str], name: str) -> dict[str, int] | None:
    """The `_recursive` form of a blkio file (children included) or else the plain one."""
    for candidate in (f"{name}_recursive", name):
        if candidate in files:
            return parse_blkio(files[candidate])
    return None
