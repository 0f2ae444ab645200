"""`[[inputs.cgroup]]`: memory, CPU, pids and I/O of the container telemon runs in.

Read straight from the cgroup files, without the Docker socket: telemon's own
cgroup (found through /proc/self/cgroup), or the one named by `path`. Both
cgroup v2 (one unified directory) and v1 (one directory per controller) are
read; the parsing is in `cgroup_files`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationInfo, field_validator

from telemon.inputs.base import InputConfig, InputContext, InputError, Target
from telemon.inputs.cgroup_files import (
    FIELD_TYPES,
    V1_FILES,
    V2_FILES,
    Membership,
    parse_self_cgroup,
    v1_fields,
    v2_fields,
)
from telemon.metric import Metric
from telemon.schema import ConfigPath, MeasurementName

__all__ = [
    "COUNTER_FIELDS",
    "MEASUREMENT_COUNTERS",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "CgroupConfig",
    "CgroupTarget",
]

DEFAULT_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


class CgroupConfig(InputConfig):
    """Which cgroup to read: telemon's own unless `path` names another."""

    measurement: MeasurementName = "cgroup"
    # `root` comes before `path`: the check of `path` needs it.
    root: ConfigPath = DEFAULT_ROOT
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        root = info.data.get("root", DEFAULT_ROOT)
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise ValueError(f"{value!r} holds a control character")
        parts = [part for part in value.split("/") if part]
        if not value.startswith("/") or any(part in (".", "..") for part in parts):
            raise ValueError(
                f"{value!r} is neither a cgroup path as /proc/self/cgroup shows it"
                f' ("/system.slice/foo.service") nor a directory under {root}'
                " (absolute, without '.' or '..')"
            )
        return "/" + "/".join(parts)

    def build(self, context: InputContext) -> list[Target]:
        """One target: the cgroup."""
        return [CgroupTarget(self)]

    def field_types(self) -> dict[str, dict[str, str]]:
        """Percent and quota in cores are floats, the rest integers (v1 and v2 alike)."""
        return {self.measurement: dict(FIELD_TYPES)}


@dataclass
class _Group:
    """Where one cgroup's files are: one directory (v2) or one per controller (v1)."""

    version: int
    path: str
    dirs: dict[str, Path] = field(default_factory=dict)
    problem: str | None = None
    """Why a directory is missing, for the error when nothing can be read."""


class CgroupTarget(Target):
    """Collects one `cgroup` line."""

    def __init__(self, config: CgroupConfig, self_cgroup: Path = SELF_CGROUP) -> None:
        super().__init__(config.path or "self")
        self.config = config
        self.self_cgroup = self_cgroup
        self.user_hz = os.sysconf("SC_CLK_TCK")

    async def collect(self, now_ns: int) -> list[Metric]:
        """The cgroup's figures now (small pseudo-files: read in place)."""
        group = self._locate()
        files, where, reason = _read(group, self.config.root)
        if not files:
            raise InputError(f"no cgroup files under {where}: {reason}")
        if group.version == 2:
            fields = v2_fields(files)
        else:
            fields = v1_fields(files, self.user_hz)
        if not fields:
            raise InputError(f"no cgroup figures in the files under {where}")
        tags = {"cgroup": group.path, "version": str(group.version)}
        return [Metric(self.config.measurement, tags, fields, now_ns)]

    def _locate(self) -> _Group:
        root = self.config.root
        # Hybrid v1 machines also mount a unified hierarchy, but not at the root.
        version = 2 if (root / "cgroup.controllers").is_file() else 1
        if self.config.path is not None:
            return _named(root, version, self.config.path)
        try:
            memberships = parse_self_cgroup(self.self_cgroup.read_text(errors="replace"))
        except OSError as exc:
            raise InputError(f"cannot read {self.self_cgroup}: {exc.strerror}") from None
        return _own(root, version, memberships)


def _named(root: Path, version: int, path: str) -> _Group:
    """The cgroup at `path`: a cgroup path, or a directory under `root`."""
    if path == str(root) or path.startswith(f"{root}/"):
        parts = path[len(str(root)) :].split("/")[1:]
        if version == 1:
            parts = parts[1:]  # v1: the first part names the hierarchy (memory, cpu,cpuacct)
        path = "/" + "/".join(parts)
    group = _Group(version, path)
    if version == 2:
        directory = root / path.lstrip("/")
        if directory.is_dir():
            group.dirs[""] = directory
        else:
            group.problem = f"no such cgroup {directory}"
        return group
    for controller in V1_FILES:
        mount = _mount(root, controller)
        if mount is not None and (mount / path.lstrip("/")).is_dir():
            group.dirs[controller] = mount / path.lstrip("/")
    if not group.dirs:
        group.problem = f"no cgroup {path} in any of {', '.join(V1_FILES)}"
    return group


def _own(root: Path, version: int, memberships: list[Membership]) -> _Group:
    """Telemon's own cgroup, as /proc/self/cgroup names it."""
    if version == 2:
        unified = next((m.path for m in memberships if not m.controllers), None)
        if unified is None:
            return _Group(2, "/", problem="no 0::/path line in /proc/self/cgroup")
        return _Group(2, unified, {"": _inside(root, unified)})
    by_controller = {c: m.path for m in memberships for c in m.controllers}
    paths = [by_controller[c] for c in V1_FILES if c in by_controller]
    group = _Group(1, paths[0] if paths else "/")
    for controller in V1_FILES:
        mount = _mount(root, controller)
        if mount is not None and controller in by_controller:
            group.dirs[controller] = _inside(mount, by_controller[controller])
    if not group.dirs:
        group.problem = f"none of {', '.join(V1_FILES)} is mounted"
    return group


def _inside(mount: Path, path: str) -> Path:
    """The directory of `path` under `mount`, or `mount` itself when there is none.

    Inside a container sharing the host's cgroup namespace, /proc/self/cgroup
    shows the host path (/docker/ID) but only the container's own cgroup is
    mounted, at the top: runc bind-mounts it there. A path climbing out of the
    namespace ("/../.."; a process outside the namespace's root) is not
    followed out of the mount either.
    """
    if ".." in path.split("/"):
        return mount
    directory = mount / path.lstrip("/")
    return directory if directory.is_dir() else mount


def _mount(root: Path, controller: str) -> Path | None:
    """Where a v1 controller's hierarchy is mounted: root/memory, or root/cpu,cpuacct."""
    if (root / controller).is_dir():
        return root / controller
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    return next((e for e in entries if controller in e.name.split(",") and e.is_dir()), None)


def _read(group: _Group, root: Path) -> tuple[dict[str, str], str, str]:
    """({file name: text} of every readable file, the first directory, why none was read)."""
    files: dict[str, str] = {}
    reason = group.problem or "none of the files read is there"
    for controller, directory in group.dirs.items():
        names = V2_FILES if group.version == 2 else V1_FILES[controller]
        for name in names:
            try:
                files[name] = (directory / name).read_text(errors="replace")
            except FileNotFoundError:
                continue  # not every kernel has every file (memory.peak, pids.max at the root)
            except OSError as exc:
                reason = f"{name}: {exc.strerror}"
    where = next(iter(group.dirs.values()), root)
    return files, str(where), reason


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## The container telemon runs in, read from its cgroup without the Docker
## socket: memory (usage, limit, working set as `docker stats` shows it, anon,
## file), CPU (usage, user, system, throttling, quota), pids and I/O, as the
## "cgroup" measurement tagged with the cgroup path and version ("1" or "2").
## The cgroup is telemon's own (found through /proc/self/cgroup), under cgroup
## v2 or v1; a controller or file that is not there leaves its fields out.
# [[inputs.cgroup]]
#   ## Collection interval and timeout of this table (default: the agent's).
#   interval = "10s"
#   timeout = "5s"
#
#   ## Measurement name.
#   measurement = "cgroup"
#
#   ## Read another cgroup than telemon's own: its path as /proc/self/cgroup
#   ## shows it ("/system.slice/pharo.service", "/docker/ID"), or its directory
#   ## under root ("/sys/fs/cgroup/system.slice/pharo.service"; under v1, any
#   ## controller's, as "/sys/fs/cgroup/memory/docker/ID").
#   path = "/system.slice/pharo.service"
#
#   ## Where the cgroup filesystem is mounted.
#   root = "/sys/fs/cgroup"
#
#   ## Tags added to this table's lines.
#   [inputs.cgroup.tags]
#     app = "blog"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = """**`[[inputs.cgroup]]`** - the container telemon runs in, read from its
cgroup files, without the Docker socket. telemon finds its own cgroup in
`/proc/self/cgroup` and reads cgroup v2 (one directory) or v1 (one directory
per controller; inside a container that shares the host's cgroup namespace,
the container's own cgroup mounted at each controller's top). `path` reads
another cgroup: `"/system.slice/pharo.service"` as `/proc/self/cgroup` shows
it, or a directory such as `"/sys/fs/cgroup/memory/docker/ID"`; `root` is the
mount point (`/sys/fs/cgroup`). Measurement `cgroup` (`measurement` renames
it), tags `cgroup` (the
path) and `version` (`1` or `2`). Fields, left out when their controller or
file is missing, and limits left out when there is none:

| Fields | v2 source | v1 source |
|---|---|---|
| `memory_usage`, `memory_limit` (bytes) | `memory.current`, `memory.max` | `memory.usage_in_bytes`, `memory.limit_in_bytes` |
| `memory_working_set`, `memory_usage_percent` (float, of the limit) | usage - `inactive_file`, floored at 0: what `docker stats` shows | usage - `total_inactive_file` |
| `memory_anon`, `memory_file`, `memory_inactive_file`, `memory_active_file`, `memory_shmem` | `memory.stat` `anon`, `file`, ... | `memory.stat` `total_rss`, `total_cache`, ... |
| `memory_max_usage`, `memory_failcnt`, `memory_oom_kill` | `memory.peak`, `memory.events` `max`, `oom_kill` | `memory.max_usage_in_bytes`, `memory.failcnt`, `memory.oom_control` |
| `cpu_usage_ns`, `cpu_user_ns`, `cpu_system_ns` | `cpu.stat` `usage_usec`, ... x 1000 | `cpuacct.usage`, `cpuacct.stat` (ticks) |
| `cpu_periods`, `cpu_throttled_periods`, `cpu_throttled_ns`, `cpu_quota_cores` (float) | `cpu.stat`, `cpu.max` | `cpu.stat`, `cpu.cfs_quota_us` / `cpu.cfs_period_us` |
| `pids_current`, `pids_limit` | `pids.current`, `pids.max` | the same |
| `io_read_bytes`, `io_write_bytes`, `io_reads`, `io_writes` (all devices) | `io.stat` | `blkio.throttle.io_service_bytes_recursive`, `..._serviced_recursive` |

CPU % is the rate of `cpu_usage_ns`: its non-negative derivative per second
/ 1e9 x 100 (100 per busy core; divide by `cpu_quota_cores` for % of the
limit). Nothing needs the Docker API, so it works in any container.
"""  # noqa: E501 - a markdown table row is one line
"""This input's part of the README's input reference (markdown)."""

# Its cumulative fields (cpu_*_ns, io_*) have never been typed counters in the
# Prometheus exposition; adding them would change what scrapers see.
COUNTER_FIELDS: tuple[str, ...] = ()
"""Patterns of this input's cumulative field names (in any measurement: it can be renamed)."""

MEASUREMENT_COUNTERS: dict[str, tuple[str, ...]] = {
    "cgroup": (
        r"cpu_(usage|user|system|throttled)_ns|cpu_(throttled_)?periods",
        r"io_(read|write)_bytes|io_(reads|writes)|memory_(failcnt|oom_kill)",
    ),
}
"""Cumulative fields of this input's measurement (by its default name; a renamed one is
described as it)."""
