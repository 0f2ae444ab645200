"""The built-in inputs: process (psutil), python (the VM) and fields (import paths)."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import telemon.inputs.python as python_input
from telemon.agent import Agent
from telemon.config import ConfigError, parse_config
from telemon.inputs.base import InputContext, InputError
from telemon.inputs.fields import FieldsTarget
from telemon.inputs.process import ProcessConfig, ProcessTarget
from telemon.inputs.python import PythonConfig, PythonTarget, python_fields
from telemon.lineprotocol import LineEncoder

INT_FIELDS = ("pid", "memory_rss", "memory_vms", "num_threads", "num_fds", "created_at")
FLOAT_FIELDS = ("cpu_time_user", "cpu_time_system")


def process_target(**config: object) -> ProcessTarget:
    """A process target from validated config keys."""
    [target] = ProcessConfig.model_validate(config).build(InputContext())
    assert isinstance(target, ProcessTarget)
    return target


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A child process whose command line holds a unique marker; killed at teardown."""
    marker = f"marker-{uuid.uuid4().hex}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        yield child, marker
    finally:
        child.kill()
        child.wait(10)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    assert not psutil.pid_exists(child.pid)
    return child.pid


async def test_process_self_fields_and_types() -> None:
    """By default telemon's own process is read, with procstat-style fields of the right types."""
    target = process_target()
    assert target.target == "self"
    [metric] = await target.collect(time.time_ns())
    assert metric.measurement == "process"
    assert metric.tags == {"process_name": psutil.Process().name()}
    fields = metric.fields
    for key in INT_FIELDS:
        assert type(fields[key]) is int, key
    for key in FLOAT_FIELDS:
        assert type(fields[key]) is float, key
    assert fields["pid"] == os.getpid()
    assert fields["memory_rss"] > 0
    assert fields["memory_vms"] >= fields["memory_rss"]
    assert fields["num_threads"] >= 1
    assert fields["num_fds"] >= 3
    assert fields["cpu_time_user"] + fields["cpu_time_system"] > 0
    expected_created = int(psutil.Process().create_time() * 1e9)
    assert abs(fields["created_at"] - expected_created) < 1_000_000_000


async def test_process_cpu_usage_from_the_second_collection() -> None:
    """The first collection has no cpu_usage (no baseline yet); the second has a float."""
    target = process_target()
    [first] = await target.collect(time.time_ns())
    assert "cpu_usage" not in first.fields
    [second] = await target.collect(time.time_ns())
    assert type(second.fields["cpu_usage"]) is float
    assert second.fields["cpu_usage"] >= 0.0
    [third] = await target.collect(time.time_ns())
    assert "cpu_usage" in third.fields


async def test_process_self_line_encodes() -> None:
    """The process metric encodes to one valid line with integer and float fields."""
    target = process_target(measurement="proc_self")
    metrics = await target.collect(time.time_ns())
    body = LineEncoder().encode_all(metrics).decode()
    assert body.count("\n") == 1
    assert body.startswith("proc_self,process_name=")
    assert f" pid={os.getpid()}i," in body or f",pid={os.getpid()}i," in body


async def test_process_pattern_matches_a_child(sleeper) -> None:
    """A `pattern` finds the child by its command line: one line with name and pattern tags."""
    child, marker = sleeper
    target = process_target(pattern=marker, pid_tag=True)
    assert target.target == f"pattern={marker}"
    [metric] = await target.collect(time.time_ns())
    assert metric.fields["pid"] == child.pid
    assert metric.tags == {
        "process_name": psutil.Process(child.pid).name(),
        "pattern": marker,
        "pid": str(child.pid),
    }
    assert metric.fields["memory_rss"] > 0
    [again] = await target.collect(time.time_ns())
    assert "cpu_usage" in again.fields


async def test_process_pattern_is_a_regex(sleeper) -> None:
    """The pattern is a regular expression searched in the joined command line."""
    child, marker = sleeper
    target = process_target(pattern=r"time\.sleep\(30\)\S* " + marker.replace("-", "[-]") + "$")
    [metric] = await target.collect(time.time_ns())
    assert metric.fields["pid"] == child.pid


async def test_process_pattern_never_matches_telemon_itself(sleeper) -> None:
    """A pattern that also matches telemon's own command line still excludes telemon."""
    child, marker = sleeper
    own = " ".join(psutil.Process().cmdline())
    target = process_target(pattern=f"{marker}|^{re.escape(own)}$", pid_tag=True)
    pids = {metric.fields["pid"] for metric in await target.collect(time.time_ns())}
    assert child.pid in pids
    assert os.getpid() not in pids


async def test_process_pattern_matching_nothing_is_an_error() -> None:
    """A pattern that matches no process raises InputError naming the pattern."""
    pattern = f"no-such-process-{uuid.uuid4().hex}"
    target = process_target(pattern=pattern)
    with pytest.raises(InputError, match=f"no process matches pattern={pattern}"):
        await target.collect(time.time_ns())


async def test_process_pattern_after_the_process_ended(sleeper) -> None:
    """When the matched process exits, the next collection fails instead of serving old values."""
    child, marker = sleeper
    target = process_target(pattern=marker)
    assert len(await target.collect(time.time_ns())) == 1
    child.kill()
    child.wait(10)
    with pytest.raises(InputError, match="no process matches"):
        await target.collect(time.time_ns())


async def test_process_pid_file_valid(tmp_path: Path, sleeper) -> None:
    """A pid_file naming a running process gives its line, tagged with the file."""
    child, _ = sleeper
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"  {child.pid}\n")
    target = process_target(pid_file=str(pid_file))
    assert target.target == f"pid_file={pid_file}"
    [metric] = await target.collect(time.time_ns())
    assert metric.fields["pid"] == child.pid
    assert metric.tags == {
        "process_name": psutil.Process(child.pid).name(),
        "pidfile": str(pid_file),
    }


async def test_process_pid_file_missing(tmp_path: Path) -> None:
    """A missing pid_file is an InputError saying it cannot be read."""
    pid_file = tmp_path / "absent.pid"
    target = process_target(pid_file=str(pid_file))
    with pytest.raises(InputError, match=f"cannot read pid_file {pid_file}: No such file"):
        await target.collect(time.time_ns())


@pytest.mark.parametrize("content", ["", "not-a-pid", "12abc", "-5", "1.5", "\x00\x01", "²"])
async def test_process_pid_file_garbage(tmp_path: Path, content: str) -> None:
    """A pid_file without a pid is an InputError saying so."""
    pid_file = tmp_path / "garbage.pid"
    pid_file.write_text(content)
    target = process_target(pid_file=str(pid_file))
    with pytest.raises(InputError, match=f"pid_file {pid_file} does not hold a pid"):
        await target.collect(time.time_ns())


async def test_process_pid_file_dead_pid(tmp_path: Path) -> None:
    """A pid_file naming a process that is gone is an InputError saying it is not running."""
    pid = dead_pid()
    pid_file = tmp_path / "dead.pid"
    pid_file.write_text(str(pid))
    target = process_target(pid_file=str(pid_file))
    with pytest.raises(InputError, match=f"process {pid} from {pid_file} is not running"):
        await target.collect(time.time_ns())


def test_process_config_rejects_bad_selectors(tmp_path: Path) -> None:
    """Both selectors at once, or an invalid regex, are config errors on the right key."""
    with pytest.raises(ConfigError, match="set pattern or pid_file, not both"):
        parse_config({"inputs": {"process": [{"pattern": "x", "pid_file": str(tmp_path)}]}})
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"process": [{"pattern": "(unclosed"}]}})
    [(key, message)] = info.value.details
    assert key == "inputs.process.0.pattern"
    assert message.startswith("invalid regular expression")


def deny_access_to(monkeypatch: pytest.MonkeyPatch, *denied: int) -> None:
    """psutil answers AccessDenied for reads of the `denied` pids.

    Root on Linux may read every process, so the real cause (another user's
    process on macOS, or /proc mounted with hidepid=) cannot be set up here.
    """
    real = psutil.Process.num_threads

    def num_threads(proc: psutil.Process) -> int:
        if proc.pid in denied:
            raise psutil.AccessDenied(proc.pid)
        return real(proc)

    monkeypatch.setattr(psutil.Process, "num_threads", num_threads)


async def test_process_pattern_skips_a_process_it_may_not_read(
    sleeper: tuple[subprocess.Popen[bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unreadable matched process costs its own line, reported as a partial error."""
    child, marker = sleeper
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        deny_access_to(monkeypatch, other.pid)
        agent = Agent(parse_config({"inputs": {"process": [{"pattern": marker}]}}))
        collector = agent.collector
        await collector.collect_all()
        [state] = collector.states
        assert [metric.fields["pid"] for metric in state.metrics] == [child.pid]
        assert state.target.partial_errors == 1 and state.health.failures == 0
        assert state.health.up is False
        assert state.health.last_error == f"cannot read process {other.pid}: access denied"
        await collector.stop()
    finally:
        other.kill()
        other.wait(10)


async def test_process_pattern_fails_when_no_matched_process_is_readable(
    sleeper: tuple[subprocess.Popen[bytes], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only when nothing could be read does the collection fail, with the reason."""
    child, marker = sleeper
    deny_access_to(monkeypatch, child.pid)
    target = process_target(pattern=marker)
    with pytest.raises(InputError, match=f"^cannot read process {child.pid}: access denied$"):
        await target.collect(time.time_ns())
    assert target.partial_errors == 0


@pytest.mark.parametrize("content", ["99999999999", str(2**31), str(2**64)])
async def test_process_pid_file_beyond_any_pid(tmp_path: Path, content: str) -> None:
    """A number no pid can be is "does not hold a pid", not psutil's OverflowError."""
    pid_file = tmp_path / "big.pid"
    pid_file.write_text(content)
    target = process_target(pid_file=str(pid_file))
    with pytest.raises(InputError, match=f"^pid_file {pid_file} does not hold a pid: '{content}'$"):
        await target.collect(time.time_ns())


async def test_python_fields_and_types() -> None:
    """The python input reports gc per generation, objects, threads, tasks and uptime as ints."""
    target = PythonTarget(PythonConfig())
    threads_before = threading.active_count()
    [metric] = await target.collect(time.time_ns())
    threads_after = threading.active_count()
    assert metric.measurement == "python"
    assert metric.tags == {
        "implementation": platform.python_implementation().lower(),
        "python_version": platform.python_version(),
    }
    fields = metric.fields
    generations = len(gc.get_stats())
    assert generations >= 3
    for generation in range(generations):
        for kind in ("collections", "collected", "uncollectable"):
            value = fields[f"gc_{kind}_{generation}"]
            assert type(value) is int and value >= 0
    assert type(fields["objects_tracked"]) is int and fields["objects_tracked"] > 1000
    low, high = sorted((threads_before, threads_after))
    assert type(fields["threads"]) is int and low <= fields["threads"] <= high
    assert type(fields["asyncio_tasks"]) is int and fields["asyncio_tasks"] >= 1
    assert type(fields["uptime"]) is int and fields["uptime"] >= 0


async def test_python_counts_gc_collections_and_tasks() -> None:
    """A forced full collection and extra tasks show up in the next collection."""
    target = PythonTarget(PythonConfig())
    [before] = await target.collect(time.time_ns())
    gc.collect()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(stop.wait()) for _ in range(5)]
    try:
        [after] = await target.collect(time.time_ns())
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    top = len(gc.get_stats()) - 1
    assert after.fields[f"gc_collections_{top}"] > before.fields[f"gc_collections_{top}"]
    assert after.fields["asyncio_tasks"] >= before.fields["asyncio_tasks"] + 5


async def test_python_uptime_is_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uptime counts milliseconds from when telemon started (as this process did, or after)."""
    target = PythonTarget(PythonConfig())
    [real] = await target.collect(time.time_ns())
    process_age_ms = (time.time() - psutil.Process().create_time()) * 1000
    assert 0 <= real.fields["uptime"] <= process_age_ms + 1000
    # Started 90 s ago: read between two readings of the same clock, so no timing is assumed.
    started_ns = time.monotonic_ns() - 90 * 10**9
    monkeypatch.setattr(python_input, "_STARTED_NS", started_ns)
    before = (time.monotonic_ns() - started_ns) // 10**6
    [metric] = await target.collect(time.time_ns())
    after = (time.monotonic_ns() - started_ns) // 10**6
    assert before <= metric.fields["uptime"] <= after
    assert before >= 90_000


async def test_python_without_object_count() -> None:
    """`count_objects = false` leaves out the heap walk."""
    [metric] = await PythonTarget(PythonConfig(count_objects=False)).collect(time.time_ns())
    assert "objects_tracked" not in metric.fields
    assert "gc_collections_0" in metric.fields


def test_python_fields_outside_a_loop() -> None:
    """Without a running loop asyncio_tasks is simply absent."""
    fields = python_fields(count_objects=False)
    assert "asyncio_tasks" not in fields
    assert "threads" in fields and "uptime" in fields


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a fresh module on sys.path with field callables for the fields input."""
    name = f"telemon_user_fields_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(
        "import asyncio\n"
        "calls = []\n"
        "def sessions():\n"
        "    calls.append(1)\n"
        "    return 40 + len(calls)\n"
        "async def latency():\n"
        "    await asyncio.sleep(0)\n"
        "    return 0.25\n"
        "def broken():\n"
        "    raise RuntimeError('db down')\n"
        "class Holder:\n"
        "    @staticmethod\n"
        "    def version():\n"
        "        return 'v1'\n"
        "not_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def fields_config(module: str, fields: dict[str, str], **extra: object):
    """A config with one `[[inputs.fields]]` table and nothing else."""
    table = {"measurement": "app", "tags": {"service": "blog"}, "fields": fields}
    return parse_config({"inputs": {"fields": [table]}, **extra})


async def test_fields_input_from_import_paths(user_module: str) -> None:
    """Import paths resolve to the module's callables, evaluated at every scrape."""
    config = fields_config(
        user_module,
        {
            "sessions": f"{user_module}:sessions",
            "latency": f"{user_module}:latency",
            "version": f"{user_module}:Holder.version",
        },
    )
    agent = Agent(config)
    collector = agent.collector
    [state] = collector.states
    assert state.input == "fields"
    assert isinstance(state.target, FieldsTarget) and state.target.lazy
    assert sys.modules[user_module].calls == []  # nothing evaluated before a scrape

    first = (await agent.scrape()).decode()
    assert 'app,service=blog sessions=41i,latency=0.25,version="v1" ' in first
    second = (await agent.scrape()).decode()
    assert "app,service=blog sessions=42i," in second
    assert "telemon_input,input=fields,target=app up=1i,errors=0i," in second


async def test_fields_input_failing_callable(user_module: str) -> None:
    """A callable that raises is left out, marks the target down and the rest is served."""
    config = fields_config(
        user_module, {"sessions": f"{user_module}:sessions", "broken": f"{user_module}:broken"}
    )
    agent = Agent(config)
    collector = agent.collector
    body = (await agent.scrape()).decode()
    assert "app,service=blog sessions=41i " in body
    assert "telemon_input,input=fields,target=app up=0i,errors=1i," in body
    [state] = collector.states
    assert state.health.last_error == "field 'broken' of 'app' raised RuntimeError: db down"


def test_fields_input_uses_the_field_timeout(user_module: str) -> None:
    """`agent.field_timeout` becomes the Telemon's evaluation timeout."""
    config = fields_config(
        user_module, {"s": f"{user_module}:sessions"}, agent={"field_timeout": "50ms"}
    )
    [state] = Agent(config).collector.states
    assert isinstance(state.target, FieldsTarget)
    assert state.target.telemon.timeout == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("{m}:missing", "has no attribute 'missing'"),
        ("{m}:not_callable", "is not callable"),
        ("telemon_no_such_module_xyz:f", "cannot import 'telemon_no_such_module_xyz'"),
        ("{m}.sessions", 'expected "package.module:callable"'),
        ("{m}:a:b", 'expected "package.module:callable"'),
    ],
)
def test_fields_input_bad_import_paths(user_module: str, path: str, message: str) -> None:
    """A bad import path is a config error on the field's key."""
    with pytest.raises(ConfigError) as info:
        fields_config(user_module, {"bad": path.format(m=user_module)})
    [(key, text)] = info.value.details
    assert key == "inputs.fields.0.fields.bad"
    assert message in text
