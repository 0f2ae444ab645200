"""`[[inputs.cgroup]]`: recorded cgroup file sets, this machine's real cgroup, config, end to end.

tests/data/cgroup/ holds one directory per recorded cgroup filesystem, each
with the `proc-self-cgroup` a process in it would see:

* `v1-host`: this test machine's real files (cgroup v1 with a memory cgroup of
  its own, every other controller at /), copied as they were;
* `v2-docker-limited`: a container with --memory 512m --cpus 1.5
  --pids-limit 100 in its private cgroup namespace (its cgroup is the root);
* `v2-host-unlimited`: a container without limits seen from the host
  namespace (systemd driver), an older kernel without memory.peak.

The v2 sets are written by hand (this machine has no v2 controllers): the
files and keys of a 6.x kernel as cgroup-v2.rst lists them, with consistent
values. The hybrid's unified hierarchy is read live for its cpu.stat.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import wait_until

from telemon.agent import Agent
from telemon.config import ConfigError, load_config, parse_config
from telemon.inputs.base import InputContext, InputError
from telemon.inputs.cgroup import CgroupConfig, CgroupTarget
from telemon.inputs.cgroup_files import (
    V1_FILES,
    V2_FILES,
    Membership,
    parse_blkio,
    parse_flat,
    parse_io_stat,
    parse_limit,
    parse_self_cgroup,
    v1_fields,
    v2_fields,
)
from telemon.lpparse import parse_lines
from telemon.metric import FieldValue

DATA = Path(__file__).resolve().parent / "data" / "cgroup"
V1_HOST = DATA / "v1-host"
V1_MEMORY_PATH = "/process_api/5fad38d804c17bf3bb28f2617b8a0c0d"
V2_LIMITED = DATA / "v2-docker-limited"
V2_UNLIMITED = DATA / "v2-host-unlimited"
V2_SCOPE = (
    "/system.slice/docker-3f5c1d0e8a7b9c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d.scope"
)
TELEMON = [sys.executable, "-m", "telemon"]
MiB = 1 << 20

FLOAT_FIELDS = {"memory_usage_percent", "cpu_quota_cores"}

V2_LIMITED_FIELDS: dict[str, FieldValue] = {
    "memory_usage": 248512512,
    "memory_limit": 536870912,
    "memory_working_set": 248512512 - 41943040,
    "memory_usage_percent": (248512512 - 41943040) / 536870912 * 100,  # 38.48 %
    "memory_anon": 180355072,
    "memory_file": 58720256,
    "memory_inactive_file": 41943040,
    "memory_active_file": 16777216,
    "memory_shmem": 1048576,
    "memory_max_usage": 402653184,
    "memory_failcnt": 37,
    "memory_oom_kill": 2,
    "cpu_usage_ns": 73512844000,
    "cpu_user_ns": 61203511000,
    "cpu_system_ns": 12309333000,
    "cpu_periods": 5123,
    "cpu_throttled_periods": 412,
    "cpu_throttled_ns": 9876543000,
    "cpu_quota_cores": 1.5,
    "pids_current": 23,
    "pids_limit": 100,
    "io_read_bytes": 10485760 + 4096000,
    "io_write_bytes": 2097152,
    "io_reads": 320 + 100,
    "io_writes": 85,
}

# No memory_limit, memory_usage_percent, cpu_quota_cores nor pids_limit:
# "max" everywhere; no memory_max_usage: no memory.peak on that kernel.
V2_UNLIMITED_FIELDS: dict[str, FieldValue] = {
    "memory_usage": 73400320,
    "memory_working_set": 73400320 - 12582912,
    "memory_anon": 52428800,
    "memory_file": 16777216,
    "memory_inactive_file": 12582912,
    "memory_active_file": 4194304,
    "memory_shmem": 0,
    "memory_failcnt": 0,
    "memory_oom_kill": 0,
    "cpu_usage_ns": 1204377000,
    "cpu_user_ns": 901233000,
    "cpu_system_ns": 303144000,
    "cpu_periods": 0,
    "cpu_throttled_periods": 0,
    "cpu_throttled_ns": 0,
    "pids_current": 7,
    "io_read_bytes": 0,  # an empty io.stat: no I/O yet
    "io_write_bytes": 0,
    "io_reads": 0,
    "io_writes": 0,
}

# This machine's v1 cgroup: memory limit 9223372036854771712 (none), cfs quota
# -1 (none), no pids files at the pids root, blkio "Total 0"; USER_HZ 100.
V1_HOST_FIELDS: dict[str, FieldValue] = {
    "memory_usage": 39886848,
    "memory_working_set": 39886848 - 610304,
    "memory_anon": 35360768,
    "memory_file": 3407872,
    "memory_inactive_file": 610304,
    "memory_active_file": 2760704,
    "memory_shmem": 0,
    "memory_max_usage": 39886848,
    "memory_failcnt": 0,
    "memory_oom_kill": 0,
    "cpu_usage_ns": 5859529173207,
    "cpu_user_ns": 493354 * 10_000_000,
    "cpu_system_ns": 92598 * 10_000_000,
    "cpu_periods": 0,
    "cpu_throttled_periods": 0,
    "cpu_throttled_ns": 0,
    "io_read_bytes": 0,
    "io_write_bytes": 0,
    "io_reads": 0,
    "io_writes": 0,
}


def v2_files(directory: Path) -> dict[str, str]:
    return {n: (directory / n).read_text() for n in V2_FILES if (directory / n).exists()}


def v1_files(root: Path, paths: dict[str, str]) -> dict[str, str]:
    files = {}
    for controller, names in V1_FILES.items():
        directory = root / controller / paths.get(controller, "/").lstrip("/")
        files.update({n: (directory / n).read_text() for n in names if (directory / n).exists()})
    return files


def v1_host_files() -> dict[str, str]:
    return v1_files(V1_HOST, {"memory": V1_MEMORY_PATH})


def target(self_cgroup: Path | None = None, **config: Any) -> CgroupTarget:
    """A cgroup target from validated config keys, reading `self_cgroup` as /proc/self/cgroup."""
    [built] = CgroupConfig.model_validate(config).build(InputContext())
    assert isinstance(built, CgroupTarget)
    if self_cgroup is not None:
        built.self_cgroup = self_cgroup
    return built


def collect(t: CgroupTarget) -> tuple[dict[str, str], dict[str, FieldValue]]:
    [metric] = asyncio.run(t.collect(123))
    assert (metric.measurement, metric.time_ns) == ("cgroup", 123)
    return metric.tags, metric.fields


def assert_types(fields: dict[str, FieldValue]) -> None:
    for name, value in fields.items():
        expected = float if name in FLOAT_FIELDS else int
        assert type(value) is expected, f"{name} is {type(value).__name__}"


# --- parsing -----------------------------------------------------------------


def test_parse_self_cgroup_v1_hybrid() -> None:
    memberships = parse_self_cgroup((V1_HOST / "proc-self-cgroup").read_text())
    assert Membership(("memory",), V1_MEMORY_PATH) in memberships
    assert Membership(("name=systemd",), "/") in memberships
    assert Membership((), "/") in memberships  # the unified line of a hybrid machine
    assert len(memberships) == 10


def test_parse_self_cgroup_comounted_odd_paths_and_garbage() -> None:
    text = (
        "12:cpu,cpuacct:/docker/abc\n"
        "3:net_cls,net_prio:/\n"
        "0::/user.slice/odd:name.scope\n"  # ':' inside the path
        "garbage\n"
        "4:memory:relative\n"
        "\n"
    )
    assert parse_self_cgroup(text) == [
        Membership(("cpu", "cpuacct"), "/docker/abc"),
        Membership(("net_cls", "net_prio"), "/"),
        Membership((), "/user.slice/odd:name.scope"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),
        ("9223372036854771712\n", None),  # v1 "unlimited", page-aligned int64
        ("9223372036854775807\n", None),
        ("-1\n", None),  # v1 cpu.cfs_quota_us
        ("536870912\n", 536870912),
        ("0\n", 0),
        ("", None),
        ("lots\n", None),
    ],
)
def test_parse_limit(text: str, expected: int | None) -> None:
    assert parse_limit(text) == expected


def test_parse_flat_any_order_and_garbage() -> None:
    text = "b 2\na 1\nbroken\nc x\nd  4\ne 5 6\n\nf -3\n"
    assert parse_flat(text) == {"b": 2, "a": 1, "d": 4, "f": -3}


def test_parse_io_stat_sums_devices() -> None:
    text = (
        "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:16 rbytes=1000 wbytes=2000 rios=10 wios=20\n"
        "253:0 rbytes=x\n"
    )
    assert parse_io_stat(text) == {
        "rbytes": 1100,
        "wbytes": 2200,
        "rios": 11,
        "wios": 22,
        "dbytes": 0,
        "dios": 0,
    }
    assert parse_io_stat("") == {}


def test_parse_blkio_leaves_totals_out() -> None:
    text = (
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n"
        "8:0 Total 12288\n"
        "8:16 Read 100\n8:16 Write 1\n8:16 Total 101\n"
        "Total 12389\n"
    )
    assert parse_blkio(text) == {
        "Read": 4196,
        "Write": 8193,
        "Sync": 12288,
        "Async": 0,
        "Discard": 0,
    }
    assert parse_blkio("Total 0\n") == {}


# --- field builders ----------------------------------------------------------


def test_v2_limited_container() -> None:
    fields = v2_fields(v2_files(V2_LIMITED))
    assert fields == V2_LIMITED_FIELDS
    assert list(fields) == list(V2_LIMITED_FIELDS)  # a stable field order
    assert fields["memory_usage_percent"] == pytest.approx(38.4765625)
    assert_types(fields)


def test_v2_unlimited_container() -> None:
    fields = v2_fields(v2_files(V2_UNLIMITED / V2_SCOPE.lstrip("/")))
    assert fields == V2_UNLIMITED_FIELDS
    assert_types(fields)


def test_v2_without_cpu_controller() -> None:
    """cpu.stat without the cpu controller has usage only: no throttling fields."""
    files = {"cpu.stat": "usage_usec 10\nuser_usec 7\nsystem_usec 3\n"}
    assert v2_fields(files) == {"cpu_usage_ns": 10000, "cpu_user_ns": 7000, "cpu_system_ns": 3000}


def test_v1_this_machine_recorded() -> None:
    fields = v1_fields(v1_host_files(), user_hz=100)
    assert fields == V1_HOST_FIELDS
    assert list(fields) == list(V1_HOST_FIELDS)
    assert_types(fields)


def test_v1_limited() -> None:
    """The same files with a 128 MiB limit, a half-core quota and a pids limit."""
    files = {
        **v1_host_files(),
        "memory.limit_in_bytes": "134217728\n",
        "cpu.cfs_quota_us": "50000\n",
        "pids.current": "4\n",
        "pids.max": "64\n",
    }
    fields = v1_fields(files, user_hz=100)
    assert fields["memory_limit"] == 134217728
    assert fields["memory_usage_percent"] == pytest.approx((39886848 - 610304) / 134217728 * 100)
    assert fields["cpu_quota_cores"] == 0.5
    assert (fields["pids_current"], fields["pids_limit"]) == (4, 64)
    assert_types(fields)


def test_v1_blkio_prefers_recursive_and_user_hz() -> None:
    files = {
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
        "blkio.throttle.io_service_bytes": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        "blkio.throttle.io_serviced": "8:0 Read 3\n8:0 Write 4\n8:0 Total 7\nTotal 7\n",
        "cpuacct.stat": "user 3\nsystem 1\n",
    }
    assert v1_fields(files, user_hz=250) == {
        "cpu_user_ns": 12_000_000,
        "cpu_system_ns": 4_000_000,
        "io_read_bytes": 10,
        "io_write_bytes": 20,
        "io_reads": 3,
        "io_writes": 4,
    }


def test_v1_without_hierarchical_keys() -> None:
    """Without total_* keys (memory.use_hierarchy = 0), the group's own are used."""
    files = {
        "memory.usage_in_bytes": "1000\n",
        "memory.stat": "cache 300\nrss 600\ninactive_file 100\nactive_file 200\n",
    }
    assert v1_fields(files, user_hz=100) == {
        "memory_usage": 1000,
        "memory_working_set": 900,
        "memory_anon": 600,
        "memory_file": 300,
        "memory_inactive_file": 100,
        "memory_active_file": 200,
    }


@pytest.mark.parametrize("version", [1, 2])
def test_working_set_is_floored_at_zero(version: int) -> None:
    """v1 usage is a "fuzz value" that can be below inactive_file: never negative."""
    if version == 1:
        files = {"memory.usage_in_bytes": "100\n", "memory.stat": "total_inactive_file 4096\n"}
        fields = v1_fields({**files, "memory.limit_in_bytes": "1000\n"}, user_hz=100)
    else:
        files = {"memory.current": "100\n", "memory.stat": "inactive_file 4096\n"}
        fields = v2_fields({**files, "memory.max": "1000\n"})
    assert (fields["memory_working_set"], fields["memory_usage_percent"]) == (0, 0.0)


def test_garbled_files_leave_their_fields_out() -> None:
    files = {
        "memory.current": "not a number\n",
        "memory.max": "max\n",
        "memory.stat": "anon many\nfile 4096\n",
        "cpu.max": "garbage\n",
        "cpu.stat": "",
        "pids.current": "",
        "pids.max": "max\n",
        "memory.events": "\x00\x01",
    }
    assert v2_fields(files) == {"memory_file": 4096}
    assert v1_fields({"cpuacct.usage": "?\n", "memory.oom_control": "x"}, user_hz=100) == {}


# --- the target on recorded file sets ----------------------------------------


def test_target_v2_private_namespace() -> None:
    tags, fields = collect(target(V2_LIMITED / "proc-self-cgroup", root=str(V2_LIMITED)))
    assert tags == {"cgroup": "/", "version": "2"}
    assert fields == V2_LIMITED_FIELDS


def test_target_v2_host_namespace() -> None:
    tags, fields = collect(target(V2_UNLIMITED / "proc-self-cgroup", root=str(V2_UNLIMITED)))
    assert tags == {"cgroup": V2_SCOPE, "version": "2"}
    assert fields == V2_UNLIMITED_FIELDS


def test_target_v2_host_path_not_mounted_falls_back_to_the_root(tmp_path: Path) -> None:
    """/proc/self/cgroup names a host path the container's mount does not have."""
    (tmp_path / "proc-self-cgroup").write_text(f"0::{V2_SCOPE}\n")
    tags, fields = collect(target(tmp_path / "proc-self-cgroup", root=str(V2_LIMITED)))
    assert tags == {"cgroup": V2_SCOPE, "version": "2"}
    assert fields == V2_LIMITED_FIELDS


@pytest.mark.parametrize(
    "path",
    [V2_SCOPE, V2_SCOPE + "/", "{root}" + V2_SCOPE, "//system.slice//" + V2_SCOPE.split("/")[-1]],
)
def test_target_v2_path_option(path: str) -> None:
    """`path` as /proc/self/cgroup shows it, or as the directory; /proc/self/cgroup unread."""
    t = target(
        Path("/nonexistent/proc-self-cgroup"),
        root=str(V2_UNLIMITED),
        path=path.format(root=V2_UNLIMITED),
    )
    assert t.target == t.config.path
    tags, fields = collect(t)
    assert tags == {"cgroup": V2_SCOPE, "version": "2"}
    assert fields == V2_UNLIMITED_FIELDS


def test_target_v2_path_root_cgroup_at_the_root_dir() -> None:
    tags, fields = collect(target(root=str(V2_LIMITED), path=str(V2_LIMITED)))
    assert tags == {"cgroup": "/", "version": "2"}
    assert fields == V2_LIMITED_FIELDS


def test_target_v1_host_layout() -> None:
    """This machine's recorded files: the memory cgroup under its path, the rest at /."""
    t = target(V1_HOST / "proc-self-cgroup", root=str(V1_HOST))
    t.user_hz = 100  # as recorded
    tags, fields = collect(t)
    assert tags == {"cgroup": V1_MEMORY_PATH, "version": "1"}
    assert fields == V1_HOST_FIELDS


def copy_v1_as(root: Path, layout: Callable[[str], str]) -> Path:
    """The recorded v1 files under `root`, each controller's at `layout(controller)`."""
    paths = {"memory": V1_MEMORY_PATH}
    for controller, names in V1_FILES.items():
        source = V1_HOST / controller / paths.get(controller, "/").lstrip("/")
        destination = root / layout(controller)
        destination.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (source / name).exists():
                shutil.copy(source / name, destination / name)
    return root


def test_target_v1_container_with_host_namespace(tmp_path: Path) -> None:
    """runc's v1 layout: /proc/self/cgroup shows /docker/ID, the cgroup is each mount's top."""
    root = copy_v1_as(tmp_path / "cgroup", lambda controller: controller)
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("")  # hybrid: not the root's
    docker_id = "8b746d60949ac17eb8b3c2993d8c84e3d20d25e8be799d7e8fc2afedea476179"
    lines = [f"{n}:{c}:/docker/{docker_id}" for n, c in enumerate(V1_FILES, 1)]
    (tmp_path / "self").write_text("\n".join([*lines, "0::/"]) + "\n")
    t = target(tmp_path / "self", root=str(root))
    t.user_hz = 100
    tags, fields = collect(t)
    assert tags == {"cgroup": f"/docker/{docker_id}", "version": "1"}
    assert fields == V1_HOST_FIELDS


def test_target_v1_comounted_cpu_cpuacct(tmp_path: Path) -> None:
    """cpu and cpuacct mounted together at root/cpu,cpuacct (without the usual symlinks)."""
    root = copy_v1_as(
        tmp_path,
        lambda c: "cpu,cpuacct" + V1_MEMORY_PATH if c.startswith("cpu") else c + V1_MEMORY_PATH,
    )
    (tmp_path / "self").write_text(
        "".join(
            f"{n}:{c}:{V1_MEMORY_PATH}\n"
            for n, c in (("2", "cpu,cpuacct"), ("4", "memory"), ("7", "blkio"))
        )
    )
    t = target(tmp_path / "self", root=str(root))
    t.user_hz = 100
    tags, fields = collect(t)
    assert tags == {"cgroup": V1_MEMORY_PATH, "version": "1"}
    assert fields == V1_HOST_FIELDS
    # `path` finds the co-mounted hierarchy too, and takes any controller's directory.
    for path in (V1_MEMORY_PATH, f"{root}/cpu,cpuacct{V1_MEMORY_PATH}"):
        t = target(root=str(root), path=path)
        t.user_hz = 100
        assert collect(t) == ({"cgroup": V1_MEMORY_PATH, "version": "1"}, V1_HOST_FIELDS)


def test_target_v1_path_option_reads_only_where_the_cgroup_exists() -> None:
    """`path` names the memory cgroup: the other controllers have no such group."""
    for path in (V1_MEMORY_PATH, f"{V1_HOST}/memory{V1_MEMORY_PATH}"):
        tags, fields = collect(target(root=str(V1_HOST), path=path))
        assert tags == {"cgroup": V1_MEMORY_PATH, "version": "1"}
        assert fields == {k: v for k, v in V1_HOST_FIELDS.items() if k.startswith("memory_")}


def test_target_path_climbing_out_of_the_namespace_stays_in_the_mount(tmp_path: Path) -> None:
    """A process outside the namespace's root sees "/../x": the mount's top is read, not ../x."""
    outside = V2_LIMITED.parent / "v2-host-unlimited"
    (tmp_path / "self").write_text(f"0::/../{outside.name}{V2_SCOPE}\n")
    tags, fields = collect(target(tmp_path / "self", root=str(V2_LIMITED)))
    assert tags == {"cgroup": f"/../{outside.name}{V2_SCOPE}", "version": "2"}
    assert fields == V2_LIMITED_FIELDS


# --- failures ----------------------------------------------------------------


def assert_one_line_error(t: CgroupTarget, *parts: str) -> str:
    with pytest.raises(InputError) as info:
        asyncio.run(t.collect(0))
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message
    return message


def test_nothing_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "self").write_text((V1_HOST / "proc-self-cgroup").read_text())
    message = assert_one_line_error(target(tmp_path / "self", root=str(tmp_path)))
    assert message == (
        f"no cgroup files under {tmp_path}: none of memory, cpuacct, cpu, pids, blkio is mounted"
    )
    missing = tmp_path / "missing"
    assert_one_line_error(target(tmp_path / "self", root=str(missing)), f"under {missing}:")
    (tmp_path / "memory").mkdir()  # a hierarchy without any of the files read
    message = assert_one_line_error(target(tmp_path / "self", root=str(tmp_path)))
    assert (
        message == f"no cgroup files under {tmp_path / 'memory'}: none of the files read is there"
    )


def test_nothing_readable(tmp_path: Path) -> None:
    """Every file there, but unreadable (directories standing in for files)."""
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    for name in V2_FILES:
        (tmp_path / name).mkdir()
    (tmp_path / "self").write_text("0::/\n")
    message = assert_one_line_error(target(tmp_path / "self", root=str(tmp_path)))
    assert message.startswith(f"no cgroup files under {tmp_path}: ")
    assert message.endswith(": Is a directory")


def test_missing_named_cgroup() -> None:
    assert_one_line_error(
        target(root=str(V2_LIMITED), path="/system.slice/gone.service"),
        f"no cgroup files under {V2_LIMITED}: no such cgroup {V2_LIMITED}/system.slice/gone",
    )
    assert_one_line_error(
        target(root=str(V1_HOST), path="/gone"),
        "no cgroup /gone in any of memory, cpuacct, cpu, pids, blkio",
    )


def test_only_garbage(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "memory.current").write_text("garbage\n")
    assert_one_line_error(
        target(root=str(tmp_path), path="/"), f"no cgroup figures in the files under {tmp_path}"
    )


def test_unreadable_proc_self_cgroup(tmp_path: Path) -> None:
    assert_one_line_error(
        target(tmp_path / "nope", root=str(V2_LIMITED)),
        f"cannot read {tmp_path / 'nope'}: No such file or directory",
    )


# --- config ------------------------------------------------------------------


def cgroup_config(**table: Any) -> CgroupConfig:
    [config] = parse_config({"inputs": {"cgroup": [table]}}).inputs.cgroup
    return config


def test_config_defaults() -> None:
    config = cgroup_config()
    assert (config.path, config.root, config.measurement) == (
        None,
        Path("/sys/fs/cgroup"),
        "cgroup",
    )
    [t] = config.build(InputContext())
    assert isinstance(t, CgroupTarget) and t.target == "self"
    assert t.self_cgroup == Path("/proc/self/cgroup")
    assert t.user_hz == os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/", "/"),
        ("/system.slice/foo.service", "/system.slice/foo.service"),
        ("//docker//abc/", "/docker/abc"),
        ("/sys/fs/cgroup/memory/docker/abc", "/sys/fs/cgroup/memory/docker/abc"),
        ("/user.slice/a:b.scope", "/user.slice/a:b.scope"),
    ],
)
def test_config_path_is_normalized(path: str, normalized: str) -> None:
    assert cgroup_config(path=path).path == normalized


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ({"path": "system.slice/foo.service"}, "inputs.cgroup.0.path", "is neither a cgroup path"),
        ({"path": ""}, "inputs.cgroup.0.path", "is neither a cgroup path"),
        ({"path": "/docker/../etc"}, "inputs.cgroup.0.path", "without '.' or '..'"),
        ({"path": "/./docker"}, "inputs.cgroup.0.path", "without '.' or '..'"),
        ({"path": "/docker/a\nb"}, "inputs.cgroup.0.path", "holds a control character"),
        ({"path": 5}, "inputs.cgroup.0.path", "expected a string, got 5"),
        ({"paht": "/docker/abc"}, "inputs.cgroup.0.paht", "unknown key"),
        ({"root": 5}, "inputs.cgroup.0.root", "expected a path (a string)"),
        ({"measurement": ""}, "inputs.cgroup.0.measurement", "must not be empty"),
        ({"interval": "soon"}, "inputs.cgroup.0.interval", "invalid duration"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cgroup_config(**table)
    [(where, text)] = info.value.details
    assert where == key
    assert message in text


def test_config_path_message_names_the_root() -> None:
    with pytest.raises(ConfigError) as info:
        cgroup_config(root="/mnt/cg", path="docker")
    [(_, text)] = info.value.details
    assert text == (
        "'docker' is neither a cgroup path as /proc/self/cgroup shows it"
        ' ("/system.slice/foo.service") nor a directory under /mnt/cg'
        " (absolute, without '.' or '..')"
    )


# --- this machine's real cgroup ----------------------------------------------

LIVE = pytest.mark.skipif(
    not Path("/proc/self/cgroup").exists() or not Path("/sys/fs/cgroup").is_dir(),
    reason="needs Linux with /sys/fs/cgroup mounted",
)


def own_memory_file() -> tuple[Path, int]:
    """This process's memory usage file, and the cgroup version, found independently."""
    root = Path("/sys/fs/cgroup")
    lines = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    if (root / "cgroup.controllers").exists():
        path = next(p for _, controllers, p in lines if controllers == "")
        directory, name, version = root / path.lstrip("/"), "memory.current", 2
    else:
        path = next(p for _, controllers, p in lines if "memory" in controllers.split(","))
        directory, name, version = root / "memory" / path.lstrip("/"), "memory.usage_in_bytes", 1
    if not directory.is_dir():
        directory = directory.parent if version == 2 else root / "memory"
    return directory / name, version


async def collect_until(
    t: CgroupTarget, done: Callable[[dict[str, FieldValue]], bool]
) -> dict[str, FieldValue]:
    """Collect until `done(fields)` holds; those fields (the kernel's counters lag a little)."""

    async def fields_when_done() -> dict[str, FieldValue]:
        [metric] = await t.collect(time.time_ns())
        assert done(metric.fields), metric.fields
        return metric.fields

    return await wait_until(fields_when_done, every=0.02, what="the cgroup's counters")


@LIVE
async def test_live_own_cgroup_matches_the_files() -> None:
    memory_file, version = own_memory_file()
    before = int(memory_file.read_text())
    [metric] = await target().collect(time.time_ns())
    after = int(memory_file.read_text())
    fields = metric.fields
    assert metric.tags["version"] == str(version)
    assert_types(fields)
    # usage read at about the same moment: within what the test process may allocate meanwhile
    low, high = min(before, after) - 16 * MiB, max(before, after) + 16 * MiB
    assert low <= int(fields["memory_usage"]) <= high
    # this process's anonymous memory is charged to this cgroup
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss_anon = int(status["RssAnon"].split()[0]) * 1024
    assert int(fields["memory_anon"]) >= rss_anon * 0.9
    assert int(fields["memory_working_set"]) <= int(fields["memory_usage"])
    # this process's CPU time is part of the cgroup's
    assert int(fields["cpu_usage_ns"]) >= time.process_time_ns() * 0.95
    assert int(fields["cpu_user_ns"]) + int(fields["cpu_system_ns"]) > 0
    assert "memory_limit" not in fields or int(fields["memory_limit"]) < 2**62


@LIVE
async def test_live_tag_is_the_path_in_proc_self_cgroup() -> None:
    [metric] = await target().collect(0)
    memberships = parse_self_cgroup(Path("/proc/self/cgroup").read_text())
    if metric.tags["version"] == "2":
        expected = next(m.path for m in memberships if not m.controllers)
    else:
        expected = next(m.path for m in memberships if "memory" in m.controllers)
    assert metric.tags["cgroup"] == expected
    # and the directory read is the one this process is in
    memory_file, _ = own_memory_file()
    assert str(os.getpid()) in (memory_file.parent / "cgroup.procs").read_text().split()


@LIVE
async def test_live_cpu_usage_grows_after_burning_cpu() -> None:
    t = target()
    [metric] = await t.collect(0)
    first = metric.fields
    start = time.process_time_ns()
    while time.process_time_ns() - start < 300_000_000:  # 0.3 s of this process's CPU
        sum(i * i for i in range(10_000))
    burned = time.process_time_ns() - start
    grown = await collect_until(
        t, lambda f: int(f["cpu_usage_ns"]) - int(first["cpu_usage_ns"]) >= burned * 0.9
    )
    assert int(grown["cpu_usage_ns"]) - int(first["cpu_usage_ns"]) >= burned * 0.9
    user = int(grown["cpu_user_ns"]) - int(first["cpu_user_ns"])
    assert user >= burned * 0.5  # ticks: coarser, and some of it may count as system time


@LIVE
async def test_live_memory_usage_grows_with_an_allocation() -> None:
    t = target()
    [metric] = await t.collect(0)
    first = int(metric.fields["memory_usage"])
    blob = b"\xa5" * (64 * MiB)  # written, so its pages are charged now
    grown = await collect_until(t, lambda f: int(f["memory_usage"]) - first >= 48 * MiB)
    assert int(grown["memory_usage"]) - first >= 48 * MiB
    assert blob[-1] == 0xA5
    del blob


@LIVE
def test_live_matches_psutil_for_the_process() -> None:
    """The cgroup holds at least this process's resident anonymous memory (psutil's view)."""
    _, fields = collect(target())
    info = psutil.Process().memory_info()
    assert int(fields["memory_usage"]) >= (info.rss - info.shared) * 0.9


UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.mark.skipif(
    not (UNIFIED / "cgroup.controllers").exists() or (UNIFIED / "cpu.max").exists(),
    reason="needs a hybrid machine's unified hierarchy (without its cpu controller)",
)
async def test_live_hybrid_unified_hierarchy_as_v2() -> None:
    """This machine's v2 hierarchy, mounted beside v1: a real v2 cpu.stat, read through `root`."""
    path = next(
        m.path
        for m in parse_self_cgroup(Path("/proc/self/cgroup").read_text())
        if not m.controllers
    )
    cpu_stat = UNIFIED / path.lstrip("/") / "cpu.stat"
    before = parse_flat(cpu_stat.read_text())["usage_usec"] * 1000
    [metric] = await target(root=str(UNIFIED)).collect(0)
    after = parse_flat(cpu_stat.read_text())["usage_usec"] * 1000
    assert metric.tags == {"cgroup": path, "version": "2"}
    # only cpu.stat there, without the cpu controller's throttling keys
    assert set(metric.fields) == {"cpu_usage_ns", "cpu_user_ns", "cpu_system_ns"}
    assert before <= int(metric.fields["cpu_usage_ns"]) <= after
    assert_types(metric.fields)


# --- end to end --------------------------------------------------------------


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def test_config_file_through_the_collector(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path / "telemon.toml",
            f"""\
[global_tags]
dc = "eu-1"

[[inputs.cgroup]]
  root = "{V2_LIMITED}"
  path = "/"
  [inputs.cgroup.tags]
    app = "blog"

[[inputs.cgroup]]
  measurement = "container"
  root = "{V2_UNLIMITED}"
  path = "{V2_SCOPE}"
""",
        )
    )
    agent = Agent(config)
    collector = agent.collector
    assert [(s.input, s.target.target) for s in collector.states] == [
        ("cgroup", "/"),
        ("cgroup", V2_SCOPE),
    ]
    await collector.collect_all()
    lines = parse_lines((await agent.scrape()).decode())
    by_measurement = {line.measurement: line for line in lines if line.tags.get("version")}
    limited, unlimited = by_measurement["cgroup"], by_measurement["container"]
    assert limited.tags == {"dc": "eu-1", "cgroup": "/", "version": "2", "app": "blog"}
    assert limited.fields == V2_LIMITED_FIELDS
    assert unlimited.tags == {"dc": "eu-1", "cgroup": V2_SCOPE, "version": "2"}
    assert unlimited.fields == V2_UNLIMITED_FIELDS
    for line in (limited, unlimited):
        assert_types(line.fields)
        assert line.time_ns is not None
    status = [line for line in lines if line.measurement == "telemon_input"]
    assert [(s.tags["input"], s.fields["up"]) for s in status] == [("cgroup", 1), ("cgroup", 1)]


@pytest.fixture
def env() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("TELEMON_CONFIG", "PYTHONPATH")}
    return environment


@LIVE
def test_once_reads_its_own_cgroup(tmp_path: Path, env: dict[str, str]) -> None:
    path = write_config(tmp_path / "telemon.toml", "[[inputs.cgroup]]\n")
    result = subprocess.run(
        [*TELEMON, "once", "-c", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")
    [line] = parse_lines(result.stdout)
    _, version = own_memory_file()
    memberships = parse_self_cgroup(Path("/proc/self/cgroup").read_text())  # the child's too
    wanted = () if version == 2 else ("memory",)
    expected = next(m.path for m in memberships if m.controllers == wanted)
    assert line.measurement == "cgroup"
    assert line.tags == {"cgroup": expected, "version": str(version)}
    assert_types(line.fields)
    assert int(line.fields["memory_usage"]) > 0
    assert int(line.fields["cpu_usage_ns"]) > 0


def test_once_with_nothing_to_read(tmp_path: Path, env: dict[str, str]) -> None:
    empty = tmp_path / "cgroup"
    empty.mkdir()
    path = write_config(
        tmp_path / "telemon.toml", f'[[inputs.cgroup]]\nroot = "{empty}"\npath = "/a"\n'
    )
    result = subprocess.run(
        [*TELEMON, "once", "-c", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = result.stderr.splitlines()
    assert f"no cgroup files under {empty}: no cgroup /a in any of" in error
    assert result.stdout == ""
