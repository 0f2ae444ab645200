"""Prometheus's naming conventions: names, units, `_total`, HELP texts, and `promtool
check metrics` on a full scrape of a real telemon (pharo in every format, docker, cgroup,
process, python, fields, sink, outputs and self-metrics)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from typing import Any

import pytest
from dockerd import DockerEngine
from helpers import require_executable

from telemon.catalog import Catalog
from telemon.config import parse_config
from telemon.metric import Metric
from telemon.prometheus import render_prometheus
from telemon.promnames import PrometheusNames, snake_case
from telemon.server import create_app

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("fullGCTime", "full_gc_time"),
        ("fullGCs", "full_gcs"),
        ("sinceLastView_fullGCs", "since_last_view_full_gcs"),
        ("extraVMMemory", "extra_vm_memory"),
        ("lastGCAt", "last_gc_at"),
        ("jitCompiledMethods", "jit_compiled_methods"),
        ("rx_bytes", "rx_bytes"),
        ("HTTPRequests", "http_requests"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


NAMES = PrometheusNames(Catalog.for_config())


@pytest.mark.parametrize(
    ("measurement", "field", "name", "kind", "value", "sample"),
    [
        ("pharo", "fullGCTime", "pharo_full_gc_time_seconds_total", "counter", 1500, 1.5),
        ("pharo", "fullGCs", "pharo_full_gcs_total", "counter", 7, 7),
        ("pharo", "memoryFree", "pharo_memory_free_bytes", "gauge", 4096, 4096),
        ("pharo", "uptime", "pharo_uptime_seconds", "gauge", 61_000, 61.0),
        # Parameter 20 counts µs from 1901: the sample is a Unix time.
        ("pharo", "startMicroseconds", "pharo_start_timestamp_seconds", "gauge",
         3_771_187_200_000_000, 1_593_734_400.0),
        ("pharo", "survivorCount", "pharo_survivors", "gauge", 5, 5),  # no `_count` gauge
        ("docker_container_cpu", "usage_total", "docker_container_cpu_usage_seconds_total",
         "counter", 2_000_000_000, 2.0),
        ("docker_container_mem", "usage_percent", "docker_container_mem_usage_ratio", "gauge",
         50.0, 0.5),
        ("docker_container_status", "restart_count",
         "docker_container_status_restart_count_total", "counter", 3, 3),
        ("cgroup", "cpu_usage_ns", "cgroup_cpu_usage_seconds_total", "counter", 10**9, 1.0),
        ("telemon_input", "duration_ms", "telemon_input_duration_seconds", "gauge", 250.0, 0.25),
        ("telemon_output", "oldest_unwritten_s", "telemon_output_oldest_unwritten_seconds",
         "gauge", 2.5, 2.5),
        ("telemon_sink", "refused_type_conflict", "telemon_sink_refused_type_conflict_total",
         "counter", 2, 2),
        ("app", "requestsServed", "app_requests_served", "gauge", 9, 9),  # undeclared
    ],
)  # fmt: skip
def test_names_units_and_types(
    measurement: str, field: str, name: str, kind: str, value: float, sample: float
) -> None:
    family = NAMES.family(measurement, field)
    assert family.name == name
    assert f"# TYPE {name} {kind}\n" in family.header
    assert family.convert(value) == sample
    body = render_prometheus([Metric(measurement, {}, {field: value})], names=NAMES).decode()
    assert body.splitlines()[-1] == f"{name} {sample!r}"


def test_help_says_what_the_figure_is_its_unit_and_its_field() -> None:
    header = NAMES.family("pharo", "fullGCTime").header
    assert header.startswith(
        "# HELP pharo_full_gc_time_seconds_total Time in full GCs since start-up, in seconds"
        " (line protocol: pharo fullGCTime)\n"
    )


def test_a_renamed_measurement_keeps_its_units() -> None:
    config = parse_config({"inputs": {"pharo": [{"urls": ["http://x:1/"], "measurement": "vm"}]}})
    names = PrometheusNames(Catalog.for_config(config))
    family = names.family("vm", "fullGCTime")
    assert family.name == "vm_full_gc_time_seconds_total"
    assert family.convert(2000) == 2.0


def test_telegraf_naming_writes_fields_as_they_are() -> None:
    names = PrometheusNames(Catalog.for_config(), "telegraf")
    metric = Metric("pharo", {"hostName": "a"}, {"fullGCTime": 1500})
    body = render_prometheus([metric], names=names).decode()
    assert "# TYPE pharo_fullGCTime counter\n" in body
    assert "# HELP pharo_fullGCTime Time in full GCs since start-up, in ms (" in body
    assert body.endswith('pharo_fullGCTime{hostName="a"} 1500\n')


def test_label_names_are_snake_case() -> None:
    metric = Metric("m", {"hostName": "a", "container.name": "b"}, {"v": 1})
    body = render_prometheus([metric], names=NAMES).decode()
    assert body.endswith('m_v{container_name="b",host_name="a"} 1\n')


# --- promtool on a full scrape ----------------------------------------------------------


def full_config(urls: list[str], docker_endpoint: str, prefix: str) -> dict[str, Any]:
    return {
        "global_tags": {"site": "test"},
        "inputs": {
            "pharo": [{"urls": urls}],
            "cgroup": [{}],
            "process": [{}],
            "python": [{}],
            "fields": [{"measurement": "app", "fields": {"pid": "os:getpid"}}],
            "docker": [
                {
                    "endpoint": docker_endpoint,
                    "container_name_include": [f"{prefix}-*"],
                    "perdevice_include": ["cpu", "network", "blkio"],
                }
            ],
        },
        "outputs": {"influxdb": [{"urls": ["http://127.0.0.1:9"]}]},
        "sink": {"enabled": True},
    }


def promtool_problems(body: str) -> list[str]:
    promtool = require_executable("promtool", "prometheus")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert done.returncode in (0, 3), done.stderr  # 3: lint problems found
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


async def test_promtool_passes_a_full_scrape(
    simulators: list[str], docker_engine: DockerEngine, aiohttp_client: Any
) -> None:
    prefix = f"tm-{docker_engine.run_id}-{uuid.uuid4().hex[:6]}"
    name = f"{prefix}-app"
    docker_engine.run("sleep 600", name=name, options=["--health-cmd", "true"])
    try:
        config = parse_config(full_config(simulators, docker_engine.endpoint, prefix))
        client = await aiohttp_client(create_app(config))
        await client.post("/write", data=b"sensorData,roomName=a tempC=21.5,itemCount=3i\n")
        scrape = await _scrape_when_complete(client, len(simulators))
    finally:
        docker_engine.remove(name)
    assert promtool_problems(scrape) == []
    names = {match[1] for line in scrape.splitlines() if (match := SAMPLE.match(line))}
    expected = {
        "pharo_full_gc_time_seconds_total", "pharo_used_memory_bytes",
        "docker_container_mem_usage_bytes", "docker_container_cpu_usage_seconds_total",
        "docker_container_status_restart_count_total", "cgroup_memory_usage_bytes",
        "process_cpu_time_user_seconds_total", "python_gc_collections_0_total",
        "app_pid", "sensor_data_temp_c", "sensor_data_items", "telemon_input_up",
        "telemon_output_up", "telemon_sink_lines_total", "telemon_scrapes_total",
    }  # fmt: skip
    assert expected <= names, expected - names


async def _scrape_when_complete(client: Any, pharo_targets: int) -> str:
    """A Prometheus scrape once every pharo target and the docker input have given lines."""
    for _ in range(200):
        response = await client.get("/metrics", params={"format": "prometheus"})
        body: str = await response.text()
        pharo = len(set(re.findall(r'pharo_\w+\{[^}]*instance="([^"]+)"', body)))
        if pharo == pharo_targets and "docker_container_status_" in body:
            return body
        await asyncio.sleep(0.1)  # polls run on their own interval: nothing to wait on
    raise AssertionError(f"incomplete scrape: {pharo} pharo targets; {body[-3000:]}")


def test_undeclared_fields_whose_names_meet_keep_both_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fields = {"requests": 1, "requests_total": 7, "fooBar": 3, "foo_bar": 4}
    body = render_prometheus([Metric("app", {}, fields)], names=PrometheusNames()).decode()
    samples = dict(line.split(" ") for line in body.splitlines() if not line.startswith("#"))
    assert samples == {
        "app_requests": "1",
        "app_requests_2": "7",
        "app_foo_bar": "3",
        "app_foo_bar_2": "4",
    }
    assert "app_foo_bar of measurement app field foo_bar is taken by field fooBar" in caplog.text
    assert promtool_problems(body) == []


def test_inputs_counters_are_counters_only_in_their_own_measurements() -> None:
    # Telegraf's `cpu` input writes usage_system as a percentage: a gauge.
    assert NAMES.family("cpu", "usage_system").kind == "gauge"
    assert NAMES.family("docker_container_cpu", "usage_system").kind == "counter"
    assert NAMES.family("app", "restart_count").name == "app_restarts"  # a gauge
    assert NAMES.family("pharo", "processSwitches").name == "pharo_process_switches_total"
    assert NAMES.family("pharo", "idleTime").name == "pharo_idle_time_seconds_total"
    assert NAMES.family("pharo", "bytesAllocated").name == "pharo_bytes_allocated_total"


def test_a_tag_named_like_telemons_own_keeps_both_values(caplog: pytest.LogCaptureFixture) -> None:
    # A container label `containerName` must not replace the container_name tag.
    tags = {"container_name": "shop", "containerName": "bar", "my.label": "1", "my_label": "2"}
    body = render_prometheus([Metric("m", tags, {"v": 1})], names=PrometheusNames()).decode()
    assert body.splitlines()[-1] == (
        'm_v{container_name="shop",container_name_2="bar",my_label="2",my_label_2="1"} 1'
    )
    assert "tag containerName is served as label container_name_2" in caplog.text
    assert promtool_problems(body) == []
