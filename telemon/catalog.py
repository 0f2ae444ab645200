"""What each field telemon writes means: its unit, its meaning, whether it only grows.

One table for everything that describes a field beyond its line-protocol type
(`fieldtypes` holds the types): docs/measurements.md is written from it, and
the Prometheus names, units and HELP texts (`promnames`) are made from it.

* Pharo's figures come from `pharo_figures.FIGURES`.
* The other inputs' fields and telemon's own are described here: `UNITS`
  where the name does not tell the unit, `MEANINGS` what a field is.
* A field is a counter (monotonic, reset only by a restart) when its input's
  `COUNTER_FIELDS` or `SELF_COUNTERS` says so.

`Catalog` answers for one configuration: a measurement renamed with
``measurement = "..."`` is described as the input's default one. Fields of
measurements nobody declared (`[[inputs.fields]]`, the sink's clients' data)
have no unit and no meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from telemon.inputs import InputsConfig
from telemon.inputs.pharo_figures import FIGURES

if TYPE_CHECKING:
    from telemon.config import Config

__all__ = [
    "COUNTERS",
    "SELF_COUNTERS",
    "Catalog",
    "FieldInfo",
    "is_counter",
    "meaning_of",
    "unit_of",
]


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """A field's unit ("" when not declared), meaning ("" likewise) and counter-ness."""

    unit: str = ""
    meaning: str = ""
    counter: bool = False


UNDECLARED = FieldInfo()

# --- counters ------------------------------------------------------------------------------

SELF_COUNTERS: dict[str, tuple[str, ...]] = {
    # telemon's own cumulative counts (`lines` of telemon_input is the last collection's).
    "telemon_input": (r"errors|collections|values_dropped",),
    "telemon": (
        r"scrapes|values_dropped",
        r"lines_(written|dropped)",
        r"fields_(nonfinite|type_conflict|unsupported|invalid_key)",
        r"ints_clamped|strings_truncated",
    ),
    "telemon_sink": (r"writes|lines|refused_\w+|writes_abandoned|values_dropped",),
    "telemon_output": (r"written|failed|retried|dropped|spooled",),
}

def _counters() -> dict[str, tuple[str, ...]]:
    registry = InputsConfig.registry()
    # Inputs' COUNTER_FIELDS apply to any measurement (as they always did);
    # their MEASUREMENT_COUNTERS to their own measurements only.
    counters = {"*": tuple(pattern for spec in registry for pattern in spec.counters)}
    for spec in registry:
        for measurement, patterns in spec.measurement_counters.items():
            counters[measurement] = counters.get(measurement, ()) + patterns
    return {**counters, **SELF_COUNTERS}


COUNTERS: dict[str, tuple[str, ...]] = _counters()
"""Field-name patterns (matching the whole name) of monotonic fields, per measurement
(``*``: any)."""

_COUNTER_PATTERNS = {
    measurement: re.compile("|".join(f"(?:{p})" for p in patterns))
    for measurement, patterns in COUNTERS.items()
}


def is_counter(measurement: str, field_name: str) -> bool:
    """True when `COUNTERS` lists the field as monotonic."""
    for key in (measurement, "*"):
        pattern = _COUNTER_PATTERNS.get(key)
        if pattern is not None and pattern.fullmatch(field_name):
            return True
    return False


# --- units ---------------------------------------------------------------------------------

UNITS: dict[str, dict[str, str]] = {
    "process": {"pid": "id", "created_at": "ns since the epoch", "cpu_time_user": "s",
                "cpu_time_system": "s", "cpu_usage": "%"},
    "python": {"uptime": "ms"},
    "cgroup": {"memory_usage_percent": "%", "cpu_quota_cores": "cores"},
    "docker": {"memory_total": "bytes"},
    "docker_container_status": {"pid": "id", "exitcode": "code", "started_at": "ns since the epoch",
                                "finished_at": "ns since the epoch", "oomkilled": "1 or 0"},
    "docker_container_blkio": {"io_time_recursive": "ms", "sectors_recursive": "sectors"},
    "docker_container_cpu": {"usage_total": "ns", "usage_in_usermode": "ns",
                             "usage_in_kernelmode": "ns", "usage_system": "ns"},
    "telemon_input": {"up": "1 or 0"},
    "telemon_output": {"up": "1 or 0"},
    "telemon_sink": {"up": "1 or 0", "refused_max_bytes": "count"},
}  # fmt: skip
"""Units the names do not tell (the others: see `unit_of`)."""

_COUNTS = ("fail", "pg", "periods", "count", "streak", "oom_kill", "dropped", "errors", "packets")


def unit_of(measurement: str, field: str, kind: str) -> str:
    """A declared field's unit: listed in `UNITS`, else told by its name; counts by default."""
    if measurement == "pharo":
        figure = FIGURES.get(field)
        return figure.unit if figure else ""
    explicit = UNITS.get(measurement, {}).get(field)
    if explicit is not None:
        return explicit
    if kind in ("s", "b"):
        return "-"
    if field.endswith("_ns") or "_time" in field and measurement.startswith("docker_container"):
        return "ns"
    if field.endswith("_ms"):
        return "ms"
    if field.endswith("_s"):
        return "s"
    if "percent" in field:
        return "%"
    if any(word in field for word in _COUNTS) or field.startswith(("io_", "n_", "pids_")):
        return "bytes" if "bytes" in field else "count"
    if "bytes" in field or field.startswith("memory") or measurement == "docker_container_mem":
        return "bytes"
    return "count"


# --- meanings ------------------------------------------------------------------------------

_SINK_REFUSALS = {
    "type_conflict": "a field's type differs from the type it has",
    "reserved": "a measurement telemon writes itself",
    "time": "a time outside InfluxDB's range",
    "max_series": "the store holds max_series series",
    "max_bytes": "the store holds max_bytes bytes",
    "too_large": "a line longer than max_line_bytes, or more fields than max_fields_per_line",
    "control": "a control character in a name",
    "name": "a name the encoder would have to rewrite",
    "duplicate_tags": "a tag key given twice",
    "unsigned": "an unsigned integer without uint_support",
    "string_length": "a string longer than 64 KiB",
    "parse": "not line protocol",
    "invalid": "a line InfluxDB would refuse",
}

MEANINGS: dict[str, dict[str, str]] = {
    "telemon_input": {
        "up": "1 while the target's last poll succeeded, 0 after it failed",
        "errors": "polls of the target that failed",
        "collections": "polls of the target",
        "lines": "lines the last poll gave",
        "values_dropped": "values the target gave that were not written (each logged)",
        "duration_ms": "how long the last poll took",
    },
    "telemon": {
        "scrapes": "HTTP scrapes of /metrics served",
        "lines_written": "lines encoded",
        "lines_dropped": "lines not encoded (no field left)",
        "fields_nonfinite": "float values not written: NaN or infinite",
        "fields_type_conflict": "values not written: another type than the field's",
        "fields_unsupported": "values not written: a type line protocol cannot carry",
        "fields_invalid_key": "values not written: an empty or invalid field key",
        "ints_clamped": "integers clamped to the 64-bit range",
        "strings_truncated": "string values cut to 64 KiB",
        "values_dropped": "values of telemon's own lines that were not written",
    },
    "telemon_sink": {
        "up": "1 while the sink accepts writes",
        "series": "series the sink holds",
        "writes": "write requests received",
        "lines": "lines kept",
        "refused_lines": "lines refused",
        "refused_bodies": "write requests refused whole",
        "bytes": "bytes the held series take",
        "writes_abandoned": "writes whose client went away before they were done",
        **{f"refused_{why}": f"lines refused: {text}" for why, text in _SINK_REFUSALS.items()},
        "values_dropped": "values of kept lines that were not served",
    },
    "telemon_output": {
        "up": "1 while the output's last write stored its batch",
        "written": "lines written",
        "failed": "writes that failed",
        "retried": "writes retried",
        "dropped": "lines given up (refused by the server, or spool full)",
        "spooled": "lines spooled while the server could not take them",
        "spool_lines": "lines in the spool now",
        "spool_bytes": "bytes in the spool now",
        "pending_lines": "lines waiting for the next flush",
        "oldest_unwritten_s": "age of the oldest line not written yet",
    },
    "process": {
        "pid": "process id",
        "memory_rss": "resident memory",
        "memory_vms": "virtual memory",
        "cpu_time_user": "CPU time in user mode",
        "cpu_time_system": "CPU time in kernel mode",
        "num_threads": "threads",
        "created_at": "when the process started",
        "cpu_usage": "CPU use since the previous poll (100 % is one core)",
        "num_fds": "open file descriptors",
    },
    "python": {
        "threads": "threads alive",
        "asyncio_tasks": "asyncio tasks not done",
        "uptime": "time since telemon started",
        "objects_tracked": "objects the garbage collector tracks",
    },
    "cgroup": {
        "memory_usage": "memory charged to the cgroup",
        "memory_limit": "the cgroup's memory limit (absent when unlimited)",
        "memory_working_set": "memory usage less inactive file cache (what the OOM killer sees)",
        "memory_anon": "anonymous memory",
        "memory_file": "file cache",
        "memory_inactive_file": "inactive file cache",
        "memory_active_file": "active file cache",
        "memory_shmem": "shared memory",
        "memory_max_usage": "peak memory usage",
        "memory_failcnt": "times the memory limit was hit",
        "memory_oom_kill": "processes killed by the OOM killer",
        "cpu_usage_ns": "CPU time used",
        "cpu_user_ns": "CPU time in user mode",
        "cpu_system_ns": "CPU time in kernel mode",
        "cpu_periods": "CFS enforcement periods",
        "cpu_throttled_periods": "CFS periods in which the cgroup was throttled",
        "cpu_throttled_ns": "time the cgroup was throttled",
        "pids_current": "processes and threads in the cgroup",
        "pids_limit": "the cgroup's process limit",
        "io_read_bytes": "bytes read from block devices",
        "io_write_bytes": "bytes written to block devices",
        "io_reads": "block device reads",
        "io_writes": "block device writes",
        "memory_usage_percent": "memory usage as a share of the limit",
        "cpu_quota_cores": "the CPU quota, in cores",
    },
    "docker": {
        "n_cpus": "CPUs of the engine's host",
        "n_used_file_descriptors": "file descriptors the engine uses",
        "n_containers": "containers",
        "n_containers_running": "running containers",
        "n_containers_stopped": "stopped containers",
        "n_containers_paused": "paused containers",
        "n_images": "images",
        "n_goroutines": "goroutines of the engine",
        "n_listener_events": "event listeners of the engine",
        "memory_total": "memory of the engine's host",
    },
    "docker_container_mem": {
        "usage": "memory charged to the container",
        "limit": "the container's memory limit (the host's memory when unlimited)",
        "max_usage": "peak memory usage (cgroup v1)",
        "fail_count": "times the memory limit was hit (cgroup v1)",
        "working_set": "memory usage less inactive file cache",
        "usage_percent": "memory usage as a share of the limit",
    },
    "docker_container_cpu": {
        "usage_total": "CPU time used",
        "usage_in_usermode": "CPU time in user mode",
        "usage_in_kernelmode": "CPU time in kernel mode",
        "usage_system": "the host's CPU time (all containers and processes)",
        "throttling_periods": "CFS enforcement periods",
        "throttling_throttled_periods": "CFS periods in which the container was throttled",
        "throttling_throttled_time": "time the container was throttled",
        "usage_percent": "CPU use since the previous poll (100 % is one core)",
    },
    "docker_container_status": {
        "pid": "the container's main process id",
        "exitcode": "the last exit code",
        "restart_count": "restarts of the container by the engine",
        "started_at": "when the container last started",
        "finished_at": "when the container last stopped",
        "uptime_ns": "time since the container started",
        "oomkilled": "1 when the container's last stop was an OOM kill",
    },
    "docker_container_health": {
        "failing_streak": "health checks failed in a row",
        "health_status": "the health check's status",
    },
    "docker_container_blkio": {
        "io_time_recursive": "time the devices were busy (cgroup v1)",
        "sectors_recursive": "sectors transferred (cgroup v1)",
    },
}
"""What each field of the inputs other than pharo, and of telemon's own lines, is."""

_BLKIO = {
    "io_service_bytes_recursive": "bytes transferred",
    "io_serviced_recursive": "operations",
    "io_queue_recursive": "operations queued",
    "io_service_time_recursive": "time servicing operations",
    "io_wait_time": "time operations waited",
    "io_merged_recursive": "operations merged",
}


def meaning_of(measurement: str, field: str) -> str:
    """What a declared field is ("" when nothing says)."""
    if measurement == "pharo":
        figure = FIGURES.get(field)
        return figure.meaning if figure else ""
    meaning = MEANINGS.get(measurement, {}).get(field)
    if meaning is not None:
        return meaning
    if measurement == "python":
        match = re.fullmatch(r"gc_(collections|collected|uncollectable)_(\d)", field)
        if match:
            what = {"collections": "collections", "collected": "objects collected",
                    "uncollectable": "uncollectable objects found"}[match[1]]  # fmt: skip
            return f"garbage collector generation {match[2]}: {what}"
    if measurement == "docker_container_net" and field[:3] in ("rx_", "tx_"):
        return f"{field[3:]} {'received' if field[0] == 'r' else 'sent'}"
    if measurement == "docker_container_blkio":
        stem, _, op = field.rpartition("_")
        return f"{_BLKIO.get(stem, stem)}, {op}" if stem in _BLKIO else ""
    if measurement == "docker_container_mem":
        # cgroup v1's memory.stat (total_*: with descendants) and v2's names.
        if field == "container_id":
            return "the container's id"
        stat = field.removeprefix("total_")
        scope = " (with descendant cgroups)" if field.startswith("total_") else ""
        return f"memory.stat {stat}{scope}"
    return ""


# --- the catalog ---------------------------------------------------------------------------


class Catalog:
    """The description of every field of one configuration, by measurement."""

    def __init__(self, tables: Mapping[str, Mapping[str, FieldInfo]]) -> None:
        self._tables = tables

    def info(self, measurement: str, field: str) -> FieldInfo:
        """`field`'s description (`UNDECLARED` when nobody declared it)."""
        return self._tables.get(measurement, {}).get(field, UNDECLARED)

    def measurements(self) -> Iterable[str]:
        """The measurements described."""
        return self._tables.keys()

    @classmethod
    def for_config(cls, config: Config | None = None) -> Catalog:
        """The reference (every input with its defaults), then `config`'s inputs as named."""
        tables = dict(_reference_tables())
        for _, input_config in config.inputs.configured() if config else ():
            renamed = getattr(input_config, "measurement", None)
            default = type(input_config).model_fields.get("measurement")
            for measurement, kinds in input_config.field_types().items():
                base = default.default if default and measurement == renamed else measurement
                tables[measurement] = _describe(base, kinds)
        return cls(tables)


_PHARO_WRITERS = "pharo, and docker for the Pharo containers it discovers (`discover_pharo`)"
_SELF = "telemon itself (self-metrics)"


def declared_measurements() -> dict[str, tuple[str, dict[str, str]]]:
    """Every measurement telemon declares, {measurement: (who writes it, {field: kind})}:
    the inputs with their defaults, then telemon's own lines."""
    from telemon.collector import STATUS_FIELD_TYPES
    from telemon.inputs.cgroup import CgroupConfig
    from telemon.inputs.docker import DockerConfig
    from telemon.inputs.pharo import TELEMON_FIELD_TYPES
    from telemon.inputs.process import ProcessConfig
    from telemon.inputs.python import PythonConfig

    tables = {"pharo": (_PHARO_WRITERS, dict(TELEMON_FIELD_TYPES))}
    for name, config in (("docker", DockerConfig()), ("cgroup", CgroupConfig()),
                         ("process", ProcessConfig()), ("python", PythonConfig())):  # fmt: skip
        for measurement, kinds in config.field_types().items():
            tables.setdefault(measurement, (name, dict(kinds)))
    # telemon's own fields are all integers but one: tests/test_reference.py checks a
    # real scrape against these.
    tables["telemon_input"] = (_SELF, dict(STATUS_FIELD_TYPES))
    for measurement in ("telemon", "telemon_sink", "telemon_output"):
        tables[measurement] = (_SELF, {field: "i" for field in MEANINGS[measurement]})
    tables["telemon_output"][1]["oldest_unwritten_s"] = "f"
    return tables


@cache
def _reference_tables() -> dict[str, dict[str, FieldInfo]]:
    return {measurement: _describe(measurement, kinds)
            for measurement, (_, kinds) in declared_measurements().items()}  # fmt: skip


def _describe(measurement: str, kinds: Mapping[str, str]) -> dict[str, FieldInfo]:
    return {
        field: FieldInfo(
            unit_of(measurement, field, kind),
            meaning_of(measurement, field),
            is_counter(measurement, field),
        )
        for field, kind in kinds.items()
    }
