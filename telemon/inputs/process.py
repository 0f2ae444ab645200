"""`[[inputs.process]]`: memory, CPU, threads and files of a process (psutil).

By default telemon itself; with `pattern` every process whose command line
matches the regex (a Pharo VM on the host, say); with `pid_file` the process
named in that file. Field names follow Telegraf's `procstat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Annotated

import psutil
from pydantic import AfterValidator, model_validator

from telemon.inputs.base import InputConfig, InputContext, InputError, Target
from telemon.metric import FieldValue, Metric
from telemon.schema import ConfigPath, MeasurementName

__all__ = [
    "COUNTER_FIELDS",
    "FIELD_TYPES",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "ProcessConfig",
    "ProcessTarget",
    "process_fields",
]

# pid_t is a signed 32-bit int; psutil overflows on larger numbers.
_MAX_PID = 2**31 - 1

FIELD_TYPES: dict[str, str] = {
    "pid": "i",
    "memory_rss": "i",
    "memory_vms": "i",
    "cpu_time_user": "f",
    "cpu_time_system": "f",
    "num_threads": "i",
    "created_at": "i",
    "cpu_usage": "f",
    "num_fds": "i",
}
"""The kind of every field `process_fields` writes."""


def _compile(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class ProcessConfig(InputConfig):
    """Which process to watch; telemon itself when neither key is set."""

    measurement: MeasurementName = "process"
    pattern: Annotated[str, AfterValidator(_compile)] | None = None
    pid_file: ConfigPath | None = None
    pid_tag: bool = False

    @model_validator(mode="after")
    def _one_selector(self) -> ProcessConfig:
        if self.pattern is not None and self.pid_file is not None:
            raise ValueError("set pattern or pid_file, not both")
        return self

    def build(self, context: InputContext) -> list[Target]:
        """One target: the selected process(es)."""
        return [ProcessTarget(self)]

    def field_types(self) -> dict[str, dict[str, str]]:
        """Telegraf procstat's types: CPU times and usage are floats, the rest integers."""
        return {self.measurement: dict(FIELD_TYPES)}


def process_fields(proc: psutil.Process, with_cpu_usage: bool = True) -> dict[str, FieldValue]:
    """Figures of one process; raises psutil.Error when it vanished.

    `cpu_usage` is measured since the previous call on the same `proc`, so
    the first call leaves it out (psutil answers a meaningless 0.0).
    """
    with proc.oneshot():
        memory = proc.memory_info()
        times = proc.cpu_times()
        fields: dict[str, FieldValue] = {
            "pid": proc.pid,
            "memory_rss": memory.rss,
            "memory_vms": memory.vms,
            "cpu_time_user": times.user,
            "cpu_time_system": times.system,
            "num_threads": proc.num_threads(),
            "created_at": int(proc.create_time() * 1e9),
        }
        usage = proc.cpu_percent()
        if with_cpu_usage:
            fields["cpu_usage"] = usage
        try:
            fields["num_fds"] = proc.num_fds()
        except (psutil.AccessDenied, AttributeError):
            pass  # another user's process, or not on Linux
    return fields


class ProcessTarget(Target):
    """Collects `process` lines for the configured selector."""

    def __init__(self, config: ProcessConfig) -> None:
        super().__init__(_describe(config))
        self.config = config
        # psutil computes cpu_percent against the previous call on the same
        # Process object, so the objects are kept between collections.
        self._procs: dict[int, psutil.Process] = {}

    async def collect(self, now_ns: int) -> list[Metric]:
        """One line per matched process."""
        return await asyncio.to_thread(self._collect, now_ns)

    def _collect(self, now_ns: int) -> list[Metric]:
        pids = self._pids()
        if not pids:
            raise InputError(f"no process matches {self.target}")
        known = self._procs
        self._procs = {}
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._procs[pid] = known.get(pid) or psutil.Process(pid)
        metrics, errors = [], []
        for pid, proc in self._procs.items():
            try:
                fields = process_fields(proc, with_cpu_usage=pid in known)
                name = proc.name()
            except psutil.NoSuchProcess:
                continue  # ended between listing and reading: not an error
            except psutil.AccessDenied:  # another user's process (macOS, hidepid=)
                errors.append(f"cannot read process {pid}: access denied")
                continue
            except psutil.Error as exc:
                errors.append(f"cannot read process {pid}: {exc}")
                continue
            metrics.append(Metric(self.config.measurement, self._tags(name, pid), fields, now_ns))
        if not metrics:
            raise InputError(errors[-1] if errors else f"no process matches {self.target}")
        # Counted only when lines still come: a failed collection is counted by the collector.
        for reason in errors:
            self.note_partial_error(reason)
        return metrics

    def _pids(self) -> list[int]:
        if self.config.pid_file is not None:
            return [_read_pid(self.config.pid_file)]
        if self.config.pattern is None:
            return [os.getpid()]
        regex, me = re.compile(self.config.pattern), os.getpid()
        return [
            p.info["pid"]
            for p in psutil.process_iter(["pid", "cmdline"])
            if p.info["pid"] != me and regex.search(" ".join(p.info["cmdline"] or ()))
        ]

    def _tags(self, name: str, pid: int) -> dict[str, str]:
        tags = {"process_name": name}
        if self.config.pattern is not None:
            tags["pattern"] = self.config.pattern
        if self.config.pid_file is not None:
            tags["pidfile"] = str(self.config.pid_file)
        if self.config.pid_tag:
            tags["pid"] = str(pid)
        return tags


def _read_pid(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise InputError(f"cannot read pid_file {path}: {exc.strerror}") from None
    try:
        pid = int(text) if text.isascii() else -1
    except ValueError:
        pid = -1
    if not 0 < pid <= _MAX_PID:
        raise InputError(f"pid_file {path} does not hold a pid: {text[:40]!r}")
    if not psutil.pid_exists(pid):
        raise InputError(f"process {pid} from {path} is not running")
    return pid


def _describe(config: ProcessConfig) -> str:
    if config.pid_file is not None:
        return f"pid_file={config.pid_file}"
    if config.pattern is not None:
        return f"pattern={config.pattern}"
    return "self"


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## Memory, CPU, threads and open files of a process (Telegraf procstat's
## field names). By default telemon's own process.
[[inputs.process]]
  ## Collection interval and timeout of this table (default: the agent's).
  # interval = "10s"
  # timeout = "5s"

  ## Measurement name.
  # measurement = "process"

  ## Add the pid as a tag (one series per process run: mind cardinality).
  # pid_tag = false

  ## Watch every process whose command line matches this regular expression
  ## instead of telemon itself (telemon never matches itself).
  # pattern = "pharo"

  ## Tags added to this table's lines.
  # [inputs.process.tags]
  #   role = "vm"

## Or watch the process whose pid is in a file (set pattern or pid_file in a
## table, not both).
# [[inputs.process]]
#   pid_file = "/run/pharo.pid"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = r"""**`[[inputs.process]]`** - a process's memory and CPU via psutil, telemon
itself by default. Measurement `process`, names as Telegraf's `procstat`.

| Key | Default | |
|---|---|---|
| `pattern` | - | regex matched against each process's command line (e.g. `"pharo.*myapp\\.image"`); one line per process |
| `pid_file` | - | read the pid from this file |
| `pid_tag` | `false` | add a `pid` tag (set it when a pattern matches several processes, or their lines share one series) |
| `measurement` | `"process"` | |

Tags `process_name` and `pattern` or `pidfile`; fields `pid`, `memory_rss`,
`memory_vms` (bytes), `cpu_time_user`, `cpu_time_system` (s), `cpu_usage`
(% since the previous collection, absent on the first), `num_threads`,
`num_fds`, `created_at` (ns).
"""  # noqa: E501 - a markdown table row is one line
"""This input's part of the README's input reference (markdown)."""

COUNTER_FIELDS: tuple[str, ...] = (r"cpu_time_(user|system)",)
"""Patterns of this input's cumulative field names (in any measurement: it can be renamed)."""
