"""Inputs declare their fields' kinds (`InputConfig.field_types`), and write nothing else.

A declared kind wins over the first value's, so a declaration that disagrees
with what the input itself writes would cost its own values. Each input's
pure functions run here on recorded data (tests/data/docker, tests/data/cgroup,
tests/data/pharo) or on this very process, and every field written must have
its declared kind. Inputs whose fields are all stable must declare them all.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from telemon.config import parse_config
from telemon.inputs import InputConfig, InputContext, InputsConfig
from telemon.inputs import docker_stats as ds
from telemon.inputs.cgroup import CgroupConfig
from telemon.inputs.docker import DockerConfig
from telemon.inputs.fields import FieldsConfig
from telemon.inputs.pharo import PharoConfig, samples_to_metrics
from telemon.inputs.pharo_figures import figure_kinds
from telemon.inputs.pharo_formats import TELEMON_FIELDS, FormatError, parse_payload
from telemon.inputs.process import ProcessConfig
from telemon.inputs.python import PythonConfig, python_fields
from telemon.metric import FieldValue, Metric

DATA = Path(__file__).resolve().parent / "data"
KINDS = {"i", "u", "f", "b", "s"}
INT64_MAX = 2**63 - 1
INPUTS = InputsConfig.registry()


def kind_of(value: FieldValue) -> str:
    """The kind line protocol writes `value` with (bool before int: True is an int)."""
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "i" if value <= INT64_MAX else "u"
    if isinstance(value, float):
        return "f"
    return "s"


def assert_declared(
    metrics: list[Metric], declared: dict[str, dict[str, str]], *, complete: bool
) -> int:
    """Every field written has its declared kind; with `complete`, every field is declared.

    Answers how many declared fields were checked (so a test cannot pass on nothing).
    """
    checked = 0
    for metric in metrics:
        kinds = declared.get(metric.measurement, {})
        for key, value in metric.fields.items():
            where = f"{metric.measurement}.{key} = {value!r}"
            if key in kinds:
                assert kind_of(value) == kinds[key], f"{where}: declared {kinds[key]!r}"
                checked += 1
            else:
                assert not complete, f"{where}: written but not declared"
    return checked


def _uncomment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#") and not stripped.startswith("##"):
            line = line.replace("# ", "", 1) if "# " in line else line.replace("#", "", 1)
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("spec", INPUTS, ids=[spec.name for spec in INPUTS])
def test_declarations_use_known_kinds_and_configured_measurements(spec: Any) -> None:
    """Every input's sample tables, uncommented, declare only the five kinds."""
    config = parse_config(tomllib.loads(_uncomment(spec.sample)))
    tables: list[InputConfig] = getattr(config.inputs, spec.name)
    assert tables, f"the sample of {spec.name} has no table"
    for table in tables:
        for measurement, kinds in table.field_types().items():
            assert measurement and kinds, f"{spec.name}: empty declaration"
            assert set(kinds.values()) <= KINDS, f"{spec.name}.{measurement}: unknown kind"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(CgroupConfig(measurement="box"), id="cgroup"),
        pytest.param(PharoConfig(urls=["http://vm:8080/"], measurement="box"), id="pharo"),
        pytest.param(ProcessConfig(measurement="box"), id="process"),
        pytest.param(PythonConfig(measurement="box"), id="python"),
    ],
)
def test_declarations_follow_a_renamed_measurement(config: InputConfig) -> None:
    assert list(config.field_types()) == ["box"]


def test_base_and_fields_declare_nothing() -> None:
    """What user callables return is theirs to know."""
    assert FieldsConfig(measurement="app", fields={"pid": "os:getpid"}).field_types() == {}


# --- pharo ----------------------------------------------------------------------------

PHARO_CASES = sorted(
    p.name for p in (DATA / "pharo").iterdir() if p.is_dir() and not p.name.startswith("garbage")
)
# Payloads of numbers beyond int64 on purpose: the VM sent them, and the declared
# integer kind refuses them rather than change the field's type.
OUT_OF_RANGE = {"influx-huge-numbers", "json-huge-numbers"}


def _pharo_metrics(case: str, measurement: str) -> list[Metric]:
    (path,) = (DATA / "pharo" / case).glob("payload.*")
    try:
        samples = parse_payload(case.split("-")[0], path.read_bytes().decode("utf-8"))
    except FormatError:  # pragma: no cover - every golden case but garbage parses
        pytest.fail(f"{case} does not parse")
    return samples_to_metrics(samples, measurement, "vm:8080", 1_795_000_000_000_000_000)


@pytest.mark.parametrize("case", [c for c in PHARO_CASES if c not in OUT_OF_RANGE])
def test_pharo_telemon_fields_are_integers(case: str) -> None:
    """Telemon's ten fields are integers whatever the format; `labels` converts units
    into integral floats (1452.854 s -> 1452854.0 ms), which the declared kind writes
    as integers without loss."""
    declared = PharoConfig(urls=["http://vm:8080/"]).field_types()
    # Telemon's ten are integers, and every other figure of the one table is declared too
    assert {k: declared["pharo"][k] for k in TELEMON_FIELDS} == dict.fromkeys(TELEMON_FIELDS, "i")
    assert declared == {"pharo": figure_kinds()}
    kinds = declared["pharo"]
    checked = 0
    for metric in _pharo_metrics(case, "pharo"):
        if metric.measurement != "pharo":
            continue  # a line of another measurement in an influx payload: not declared
        for key, value in metric.fields.items():
            if key not in kinds:
                continue  # the payload's other values: not declared
            lossless = isinstance(value, float) and value.is_integer() and abs(value) <= INT64_MAX
            assert kind_of(value) == kinds[key] or lossless, f"{case}: {key} = {value!r}"
            checked += 1
    assert checked >= 2, f"{case}: no Telemon field written"


def test_docker_declares_discovered_pharo_images_only_when_discovering() -> None:
    assert "pharo" not in DockerConfig().field_types()
    discovered = DockerConfig(discover_pharo=True).field_types()["pharo"]
    assert discovered == PharoConfig(urls=["http://vm:8080/"]).field_types()["pharo"]


# --- docker ---------------------------------------------------------------------------


def _load(name: str) -> Any:
    return json.loads((DATA / "docker" / name).read_text(encoding="utf-8"))


# `/info` as a Docker Engine answers it (the keys telemon reads, with their JSON types).
ENGINE_INFO = {
    "Name": "host1", "ServerVersion": "26.1.5", "NCPU": 2, "NFd": 31, "Containers": 3,
    "ContainersRunning": 2, "ContainersStopped": 1, "ContainersPaused": 0, "Images": 7,
    "NGoroutines": 48, "NEventsListener": 0, "MemTotal": 4_124_000_256,
}  # fmt: skip


def _docker_metrics() -> list[Metric]:
    """Every docker measurement, from the recorded engine documents."""
    metrics = [Metric("docker", {}, ds.engine_fields(ENGINE_INFO), 1)]
    pairs = [("v1-burn-1.json", "v1-burn-2.json"), ("v2-limited.json", "v2-limited-2.json"),
             ("podman-1.json", "podman-2.json")]  # fmt: skip
    for first, second in pairs:
        stats, previous = _load(second), _load(first)
        podman = first.startswith("podman")
        current = ds.CpuSample.from_stats(stats)
        before = ds.CpuSample.from_stats(previous)
        assert current is not None and before is not None
        percent = ds.cpu_percent(current, before, wall_clock=podman)
        assert percent is not None, f"{second}: no CPU %"
        fields = [
            ("docker_container_mem", ds.mem_fields(stats["memory_stats"], "c1", podman=podman)),
            ("docker_container_cpu", ds.cpu_fields(stats, "c1", percent)),
            *(("docker_container_cpu", f) for _, f in ds.percpu_points(stats, "c1")),
            *(
                ("docker_container_net", f)
                for _, f in ds.net_points(stats, "c1", per_interface=True, total=True)
            ),
            *(
                ("docker_container_blkio", f)
                for _, f in ds.blkio_points(stats, "c1", per_device=True, total=True)
            ),
        ]
        metrics += [Metric(name, {}, f, 1) for name, f in fields if f]
    inspect = _load("v1-memhold-inspect.json")
    stopped = {**inspect, "State": {**inspect["State"], "Running": False, "OOMKilled": True,
               "ExitCode": 137, "FinishedAt": "2026-11-28T22:00:00.5Z",
               "Health": {"Status": "unhealthy", "FailingStreak": 3}}}  # fmt: skip
    for document in (inspect, stopped):
        metrics.append(
            Metric("docker_container_status", {}, ds.status_fields(document, "c1", 2**62), 1)
        )
        health = ds.health_fields(document)
        if health:
            metrics.append(Metric("docker_container_health", {}, health, 1))
    return metrics


def test_docker_writes_every_field_with_its_declared_kind() -> None:
    metrics = _docker_metrics()
    declared = DockerConfig().field_types()
    assert {m.measurement for m in metrics} == set(declared)  # every measurement exercised
    assert assert_declared(metrics, declared, complete=True) > 100


# --- cgroup ---------------------------------------------------------------------------


@pytest.mark.parametrize("recorded", ["v1-host", "v2-docker-limited", "v2-host-unlimited"])
def test_cgroup_writes_every_field_with_its_declared_kind(recorded: str) -> None:
    root = DATA / "cgroup" / recorded
    config = CgroupConfig(root=root)
    [target] = config.build(InputContext())
    target.self_cgroup = root / "proc-self-cgroup"  # type: ignore[attr-defined]
    metrics = asyncio.run(target.collect(1))
    assert assert_declared(metrics, config.field_types(), complete=True) >= 10


# --- process and python: this very process ----------------------------------------


def test_process_writes_every_field_with_its_declared_kind() -> None:
    config = ProcessConfig()
    [target] = config.build(InputContext())

    async def twice() -> list[Metric]:
        await target.collect(1)
        return await target.collect(2)  # the second has cpu_usage

    metrics = asyncio.run(twice())
    assert "cpu_usage" in metrics[0].fields
    assert assert_declared(metrics, config.field_types(), complete=True) >= 8


@pytest.mark.parametrize("count_objects", [True, False])
def test_python_writes_every_field_with_its_declared_kind(count_objects: bool) -> None:
    config = PythonConfig(count_objects=count_objects)

    async def collect() -> dict[str, FieldValue]:
        return python_fields(count_objects)  # in a running loop: asyncio_tasks too

    fields = asyncio.run(collect())
    metrics = [Metric("python", {}, fields, 1)]
    declared = config.field_types()
    assert assert_declared(metrics, declared, complete=True) == len(fields)
    assert ("objects_tracked" in declared["python"]) is count_objects
    per_generation = {f"gc_{s}_{n}" for s in ("collections", "collected", "uncollectable")
                      for n in range(3)}  # fmt: skip
    assert per_generation <= declared["python"].keys()
