"""`[[inputs.docker]]` against a real Docker Engine: figures agree with `docker stats`,
the container set with `docker ps`, failures are one-line reasons, Pharo containers
are found by label.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from dockerd import DockerEngine, run_tls_dockerd, unmount_under
from helpers import (
    free_port,
    lines_of,
    load_docker_sample,
    make_certificate,
    require_executable,
    scrape_once,
    status_of,
    wait_until,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from telemon.agent import Agent
from telemon.collector import Collector, TargetState
from telemon.config import ConfigError, parse_config
from telemon.inputs.base import InputContext, InputError
from telemon.inputs.docker import DockerConfig, DockerTarget, PharoLabelError, pharo_endpoint
from telemon.inputs.pharo import PharoConfig
from telemon.lineprotocol import LineEncoder
from telemon.lpparse import parse_lines
from telemon.metric import Metric
from telemon.simulator.app import start_simulator

PHARO_PAYLOAD = Path(__file__).parent / "data" / "pharo" / "json-telemon-names" / "payload.json"
LABEL_KEYS = [
    "telemon.pharo.port", "telemon.pharo.path", "telemon.pharo.network", "telemon.pharo.scheme",
    "telemon.pharo.format", "NetworkMode", "Networks", "bridge", "IPAddress", "PrivatePort",
    "PublicPort", "IP",
]  # fmt: skip
_SIZE = re.compile(r"([\d.]+)\s*([KMGT]?i?B)")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "kB": 1e3, "MB": 1e6}


def bytes_of(text: str) -> float:
    """`docker stats` sizes ("556KiB", "48.6MiB") in bytes."""
    match = _SIZE.match(text.strip())
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def docker_target(engine: DockerEngine, **options: Any) -> DockerTarget:
    config = DockerConfig.model_validate({"endpoint": engine.endpoint, **options})
    [target] = config.build(InputContext())
    assert isinstance(target, DockerTarget)
    return target


def by_name(metrics: list[Metric], measurement: str, **tags: str) -> dict[str, Metric]:
    """The measurement's metrics keyed by container name, filtered by tags."""
    return {
        m.tags["container_name"]: m
        for m in metrics
        if m.measurement == measurement and all(m.tags.get(k) == v for k, v in tags.items())
    }


@pytest.fixture
def prefix(docker_engine: DockerEngine) -> str:
    """A container name prefix unique to this test, so a shared engine's others don't count."""
    return f"tm-{docker_engine.run_id}-{uuid.uuid4().hex[:6]}"


async def collect(target: DockerTarget) -> list[Metric]:
    return await target.collect(time.time_ns())


async def test_cpu_and_memory_agree_with_docker_stats(
    docker_engine: DockerEngine, prefix: str
) -> None:
    burner = f"{prefix}-burn"
    holder = f"{prefix}-mem"
    # Capped at half a core, so the figure holds steady on a busy shared machine.
    docker_engine.run("yes > /dev/null", name=burner, options=["--cpus", "0.5"])
    # 48 MiB in a tmpfs is shared memory: `docker stats` counts it, so must we.
    docker_engine.run(
        "head -c 50331648 /dev/zero > /data/blob; sleep 600",
        name=holder,
        options=["--tmpfs", "/data:size=100m"],
    )
    target = docker_target(docker_engine, container_name_include=[f"{prefix}-*"])
    try:
        await wait_until_holding(target, holder, 48 * 2**20)
        # Our CPU % is over the time between two polls; `docker stats` measures one
        # second in between, so both see the same (quota-capped) share.
        await collect(target)
        engine = await asyncio.to_thread(docker_engine.stats)
        metrics = await collect(target)
    finally:
        await target.aclose()
    cpu = by_name(metrics, "docker_container_cpu", cpu="cpu-total")
    mem = by_name(metrics, "docker_container_mem")
    for name in (burner, holder):
        theirs = float(engine[name]["CPUPerc"].rstrip("%"))
        ours = cpu[name].fields["usage_percent"]
        assert isinstance(ours, float)
        assert abs(ours - theirs) <= 15, (name, ours, theirs)
        used = bytes_of(engine[name]["MemUsage"].split("/")[0])
        assert mem[name].fields["working_set"] == pytest.approx(used, rel=0.10, abs=256 * 1024)
    assert int(cpu[burner].fields["throttling_throttled_periods"]) > 0  # the quota bites
    # `yes` keeps a core as busy as the (shared) machine lets it; `sleep` does not.
    assert cpu[burner].fields["usage_percent"] > cpu[holder].fields["usage_percent"] + 10
    assert mem[holder].fields["working_set"] >= 48 * 2**20


async def wait_until_holding(target: DockerTarget, name: str, size: int) -> None:
    async def holds() -> bool:
        mem = by_name(await collect(target), "docker_container_mem")
        return name in mem and int(mem[name].fields["working_set"]) >= size

    await wait_until(holds, timeout=60, what=f"{name} holding {size} bytes")


async def test_container_set_follows_docker_ps(docker_engine: DockerEngine, prefix: str) -> None:
    def ps_names(all_states: bool = False) -> set[str]:
        rows = docker_engine.ps(all_states=all_states)
        return {r["Names"] for r in rows if r["Names"].startswith(prefix)}

    first = [docker_engine.run("sleep 600", name=f"{prefix}-{i}") for i in range(3)]
    running = docker_target(docker_engine, container_name_include=[f"{prefix}-*"])
    every = docker_target(
        docker_engine,
        container_name_include=[f"{prefix}-*"],
        container_state_include=["running", "exited", "created"],
    )
    try:
        seen = set(by_name(await collect(running), "docker_container_status"))
        assert seen == ps_names() == {f"{prefix}-{i}" for i in range(3)}
        # Between polls: one stops, one is removed, one more starts.
        docker_engine.cli("stop", "-t", "0", first[0])
        docker_engine.remove(first[1])
        docker_engine.run("sleep 600", name=f"{prefix}-new")
        seen = set(by_name(await collect(running), "docker_container_status"))
        assert seen == ps_names() == {f"{prefix}-2", f"{prefix}-new"}
        statuses = by_name(await collect(every), "docker_container_status")
        assert set(statuses) == ps_names(all_states=True)
        stopped = statuses[f"{prefix}-0"]
        assert stopped.tags["container_status"] == "exited"
        assert "finished_at" in stopped.fields
        assert not by_name(await collect(every), "docker_container_cpu").get(f"{prefix}-0")
    finally:
        await running.aclose()
        await every.aclose()


async def test_tags_are_telegrafs_and_labels_filtered(
    docker_engine: DockerEngine, prefix: str
) -> None:
    docker_engine.run(
        "sleep 600", name=f"{prefix}-a", labels={"com.example.team": "blue", "secret.note": "x"}
    )
    target = docker_target(
        docker_engine,
        container_name_include=[f"{prefix}-*"],
        docker_label_include=["com.example.*"],
    )
    try:
        metrics = await collect(target)
    finally:
        await target.aclose()
    [engine] = [m for m in metrics if m.measurement == "docker"]
    assert int(engine.fields["n_containers_running"]) >= 1
    mem = by_name(metrics, "docker_container_mem")[f"{prefix}-a"]
    version = docker_engine.cli("version", "--format", "{{.Server.Version}}").strip()
    assert mem.tags["server_version"] == version
    assert mem.tags["container_image"] == "local/busybox"
    assert mem.tags["container_version"] == "latest"
    assert mem.tags["container_status"] == "running"
    assert mem.tags["com.example.team"] == "blue"
    assert "secret.note" not in mem.tags
    assert mem.tags["engine_host"] == engine.tags["engine_host"] != ""


async def test_a_container_removed_during_the_poll_is_skipped(
    docker_engine: DockerEngine, prefix: str
) -> None:
    doomed = docker_engine.run("sleep 600", name=f"{prefix}-doomed")
    docker_engine.run("sleep 600", name=f"{prefix}-stays")
    target = docker_target(docker_engine, container_name_include=[f"{prefix}-*"])
    real_get = target.client.get_json

    async def remove_after_listing(path: str, *args: Any, **kwargs: Any) -> Any:
        answer = await real_get(path, *args, **kwargs)
        if path == "/containers/json":  # listed; gone before its inspect and stats
            await asyncio.to_thread(docker_engine.remove, doomed)
        return answer

    target.client.get_json = remove_after_listing  # type: ignore[method-assign]
    try:
        metrics = await collect(target)
    finally:
        await target.aclose()
    assert set(by_name(metrics, "docker_container_status")) == {f"{prefix}-stays"}
    assert target.partial_errors == 0


async def test_lines_are_accepted_by_a_real_influxdb(
    docker_engine: DockerEngine, prefix: str, influxdb: Any
) -> None:
    docker_engine.run(
        "yes > /dev/null", name=f"{prefix}-x", labels={"com.example.odd": 'a "b",c=d \\'}
    )
    target = docker_target(docker_engine, container_name_include=[f"{prefix}-*"])
    try:
        await collect(target)
        metrics = await collect(target)
    finally:
        await target.aclose()
    body = LineEncoder().encode_all(metrics)
    parse_lines(body.decode())  # the strict parser, modelled on Telegraf's
    db = influxdb.create_database(f"docker_{uuid.uuid4().hex[:8]}")
    assert influxdb.write(db, body) == (204, "")
    series = influxdb.series(db, 'SELECT last("usage_percent") FROM "docker_container_cpu"')
    assert series and series[0]["values"][0][1] > 0


# --- failures: one-line reasons, the rest keeps serving ---------------------------------------


async def test_a_missing_socket_marks_the_input_down(aiohttp_client: Any, tmp_path: Path) -> None:
    socket = tmp_path / "nothing.sock"
    body = await scrape_once(
        aiohttp_client, {"docker": [{"endpoint": f"unix://{socket}"}], "python": [{}]}
    )
    assert status_of(body, input="docker")["up"] == 0
    assert status_of(body, input="python")["up"] == 1
    assert any(line.startswith("python,") for line in body.splitlines())
    target = docker_target_at(f"unix://{socket}")
    with pytest.raises(Exception, match=f"no Docker engine socket at {socket}"):
        await collect(target)
    await target.aclose()


def docker_target_at(endpoint: str) -> DockerTarget:
    [target] = DockerConfig(endpoint=endpoint).build(InputContext())
    assert isinstance(target, DockerTarget)
    return target


async def test_an_engine_that_is_not_docker_gives_a_reason(aiohttp_client: Any) -> None:
    runner, port = await start_simulator("127.0.0.1", 0, vms=1, seed=1)
    try:
        target = docker_target_at(f"tcp://127.0.0.1:{port}")
        with pytest.raises(
            Exception, match="does not look like a Docker engine: /_ping answered HTTP 404"
        ):
            await collect(target)
        await target.aclose()
    finally:
        await runner.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_socket_without_permission_names_the_group(docker_engine: DockerEngine) -> None:
    """As a user outside the docker group the engine's socket is refused."""
    runuser = shutil.which("setpriv")
    assert runuser is not None
    code = (
        "import asyncio, sys, time\n"
        "from telemon.inputs.docker import DockerConfig\n"
        "from telemon.inputs.base import InputContext\n"
        f"[t] = DockerConfig(endpoint={docker_engine.endpoint!r}).build(InputContext())\n"
        "async def main():\n"
        "    try:\n"
        "        await t.collect(time.time_ns())\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
        "    await t.aclose()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [runuser, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.stdout.startswith("InputError permission denied on"), done.stdout + done.stderr
    assert "docker group" in done.stdout


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"endpoint": "ftp://x"}, "inputs.docker.0.endpoint"),
        ({"endpoint": "unix://relative.sock"}, "inputs.docker.0.endpoint"),
        ({"container_state_include": ["sleeping"]}, "inputs.docker.0.container_state_include.0"),
        ({"perdevice_include": ["gpu"]}, "inputs.docker.0.perdevice_include.0"),
        ({"max_concurrency": 0}, "inputs.docker.0.max_concurrency"),
        ({"stats_timeout": "soon"}, "inputs.docker.0.stats_timeout"),
        ({"discover": True}, "inputs.docker.0.discover"),
    ],
)
def test_config_errors_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"inputs": {"docker": [options]}}, "t.toml")
    assert any(line.startswith(f"t.toml: {key}: ") for line in error.value.lines())


def test_state_filters_default_to_running() -> None:
    assert DockerConfig().wanted_states() == {"running"}
    assert DockerConfig(container_state_exclude=["dead"]).wanted_states() == {
        "created", "restarting", "running", "removing", "paused", "exited",
    }  # fmt: skip
    assert DockerConfig(container_state_include=["exited"]).wanted_states() == {"exited"}


def test_name_globs() -> None:
    config = DockerConfig(container_name_include=["pharo-*"], container_name_exclude=["*-test"])
    assert config.wants_name("pharo-1")
    assert not config.wants_name("pharo-1-test")
    assert not config.wants_name("nginx")


# --- Pharo containers found by label ---------------------------------------------------


def listing_item(labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"Id": "c1", "Names": ["/app"], "State": "running", "Labels": labels, **extra}


@pytest.mark.parametrize(
    ("item", "url"),
    [
        (
            listing_item(
                {"telemon.pharo.port": "8080"},
                NetworkSettings={"Networks": {"bridge": {"IPAddress": "172.17.0.5"}}},
            ),
            "http://172.17.0.5:8080/metrics",
        ),
        (
            listing_item(
                {"telemon.pharo.port": "8080", "telemon.pharo.network": "back"},
                NetworkSettings={
                    "Networks": {"a": {"IPAddress": "10.0.0.2"}, "back": {"IPAddress": "10.1.0.2"}}
                },
            ),
            "http://10.1.0.2:8080/metrics",
        ),
        (
            listing_item(
                {
                    "telemon.pharo.port": "1701",
                    "telemon.pharo.path": "/stats.json",
                    "telemon.pharo.scheme": "https",
                },  # fmt: skip
                HostConfig={"NetworkMode": "host"},
            ),
            "https://127.0.0.1:1701/stats.json",
        ),
        (
            listing_item(
                {"telemon.pharo.port": "8080"},
                NetworkSettings={"Networks": {"n": {"IPAddress": ""}}},
                Ports=[{"PrivatePort": 8080, "PublicPort": 32768, "IP": "0.0.0.0", "Type": "tcp"}],
            ),
            "http://127.0.0.1:32768/metrics",
        ),
        (
            listing_item(
                {"telemon.pharo.port": "8080"},
                NetworkSettings={"Networks": {"v6": {"IPAddress": "fd00::5"}}},
            ),
            "http://[fd00::5]:8080/metrics",
        ),
    ],
)
def test_pharo_endpoint_from_labels(item: dict[str, Any], url: str) -> None:
    assert pharo_endpoint(item)[0] == url


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"telemon.pharo.port": "http"}, "telemon.pharo.port='http' is not a port number"),
        ({"telemon.pharo.port": "70000"}, "is not a port number"),
        ({"telemon.pharo.port": "\u00b2"}, "is not a port number"),  # "²".isdigit() is True
        ({"telemon.pharo.port": "80", "telemon.pharo.format": "xml"}, "telemon.pharo.format='xml'"),
        ({"telemon.pharo.port": "80", "telemon.pharo.path": "metrics"}, "does not start with /"),
        ({"telemon.pharo.port": "80", "telemon.pharo.scheme": "ftp"}, "not http or https"),
        ({"telemon.pharo.port": "80", "telemon.pharo.network": "nope"}, "not one of its networks"),
        ({"telemon.pharo.port": "80"}, "reachable on no network and not published"),
    ],
)
def test_bad_labels_are_named(labels: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pharo_endpoint(listing_item(labels))


@pytest.fixture
async def simulator_port() -> AsyncIterator[int]:
    runner, port = await start_simulator("127.0.0.1", 0, vms=1, seed=3)
    yield port
    await runner.cleanup()


def discovering_agent(engine: DockerEngine, prefix: str, interval: str = "10s") -> Agent:
    config = parse_config(
        {
            "inputs": {
                "docker": [
                    {
                        "endpoint": engine.endpoint,
                        "discover_pharo": True,
                        "container_name_include": [f"{prefix}-*"],
                        "interval": interval,
                    }
                ]
            }
        }
    )
    return Agent(config)


def pharo_states(collector: Collector) -> list[TargetState]:
    return [s for s in collector.states if s.input == "pharo"]


async def test_discovers_pharo_on_the_host_network_and_drops_it_when_gone(
    docker_engine: DockerEngine, prefix: str, simulator_port: int
) -> None:
    name = f"{prefix}-pharo"
    docker_engine.run(
        "sleep 600",
        name=name,
        labels={"telemon.pharo.port": str(simulator_port)},
        options=["--network", "host"],
    )
    docker_engine.run("sleep 600", name=f"{prefix}-plain")  # no label: not a Pharo target
    agent = discovering_agent(docker_engine, prefix)
    collector = agent.collector
    try:
        await collector.collect_all()
        [state] = pharo_states(collector)
        assert state.target.target == f"http://127.0.0.1:{simulator_port}/metrics"
        assert state.health.up is True
        body = (await agent.scrape()).decode()
        pharo = lines_of(body, "pharo")
        assert pharo and all(p.tags["container_name"] == name for p in pharo)
        assert all(p.tags["instance"] == name for p in pharo)
        # The engine's host name, as on the container's docker_container_* lines: a VM
        # joins its container by (engine_host, container_name) across several hosts.
        [mem] = [m for m in lines_of(body, "docker_container_mem")
                 if m.tags["container_name"] == name]  # fmt: skip
        assert mem.tags["engine_host"]
        assert all(p.tags["engine_host"] == mem.tags["engine_host"] for p in pharo)
        assert "memoryFree" in pharo[0].fields
        docker_engine.remove(name)
        docker_state = next(s for s in collector.states if s.input == "docker")
        await collector.collect(docker_state)
        assert pharo_states(collector) == []
        body = (await agent.scrape()).decode()
        assert not [x for x in body.splitlines() if x.startswith("pharo,")]
        assert f"target=http://127.0.0.1:{simulator_port}/metrics" not in body
    finally:
        await collector.stop()


async def test_discovers_pharo_on_a_bridge_network_while_running(
    docker_engine: DockerEngine, prefix: str, tmp_path: Path
) -> None:
    """A container serving a recorded Pharo payload is polled at its own address."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(PHARO_PAYLOAD, www / "stats.json")
    www.chmod(0o755)
    name = f"{prefix}-bridge"
    docker_engine.run(
        "httpd -f -p 8080 -h /www",
        name=name,
        labels={"telemon.pharo.port": "8080", "telemon.pharo.path": "/stats.json"},
        options=["-v", f"{www}:/www:ro"],
    )
    agent = discovering_agent(docker_engine, prefix, interval="200ms")
    collector = agent.collector
    collector.start()
    try:
        body = await scraped_when(
            agent, lambda b: f"container_name={name}" in b and "\npharo," in "\n" + b
        )
        pharo = lines_of(body, "pharo")
        assert pharo[0].tags["container_name"] == name
        address = docker_engine.cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).strip()
        [state] = pharo_states(collector)
        assert state.target.target == f"http://{address}:8080/stats.json"
        docker_engine.cli("stop", "-t", "0", name)
        await scraped_when(agent, lambda b: "\npharo," not in "\n" + b)
        assert pharo_states(collector) == []
    finally:
        await collector.stop()


async def scraped_when(agent: Agent, condition: Callable[[str], bool]) -> str:
    """The first scraped body meeting `condition`."""

    async def body() -> str:
        text = (await agent.scrape()).decode()
        assert condition(text), text
        return text

    return await wait_until(body, timeout=20, every=0.05, what="a body meeting the condition")


async def test_a_bad_label_is_a_reason_not_a_crash(
    docker_engine: DockerEngine, prefix: str, simulator_port: int
) -> None:
    docker_engine.run("sleep 600", name=f"{prefix}-bad", labels={"telemon.pharo.port": "eighty"})
    docker_engine.run(
        "sleep 600",
        name=f"{prefix}-good",
        labels={"telemon.pharo.port": str(simulator_port)},
        options=["--network", "host"],
    )
    agent = discovering_agent(docker_engine, prefix)
    collector = agent.collector
    try:
        await collector.collect_all()
        docker_state = next(s for s in collector.states if s.input == "docker")
        assert docker_state.health.last_error == (
            f"container {prefix}-bad: label telemon.pharo.port='eighty' is not a port number"
        )
        assert [s.health.up for s in pharo_states(collector)] == [True]
        assert any(m.measurement == "docker_container_mem" for m in docker_state.metrics)
    finally:
        await collector.stop()


# --- Podman's compatible API (no Podman here: a small stand-in with its headers and documents)


async def test_podman_is_detected_and_cpu_comes_from_elapsed_time(aiohttp_server: Any) -> None:
    samples = [load_docker_sample("podman-1.json"), load_docker_sample("podman-2.json")]
    requests: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        headers = {"Api-Version": "1.41", "Libpod-API-Version": "4.3.1"}
        return web.Response(text="OK", headers=headers)

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"Name": "podhost", "ServerVersion": "4.3.1", "NCPU": 2})

    async def listing(request: web.Request) -> web.Response:
        item = {"Id": "aa", "Names": ["/pharo-podman"], "Image": "pharo:11", "State": "running"}
        return web.json_response([item])

    async def inspect(request: web.Request) -> web.Response:
        return web.json_response({"State": {"Status": "running", "Running": True}})

    async def stats(request: web.Request) -> web.Response:
        requests.append(request.query_string)
        return web.json_response(samples.pop(0))

    target = await fake_engine(
        aiohttp_server, "1.41", ping, info, listing, inspect, stats, container="aa"
    )
    try:
        await collect(target)
        metrics = await collect(target)
    finally:
        await target.aclose()
    assert target.client.version is not None and target.client.version.podman
    assert requests == ["stream=false", "stream=false"]  # Podman rejects one-shot with stream
    cpu = by_name(metrics, "docker_container_cpu", cpu="cpu-total")["pharo-podman"]
    assert cpu.fields["usage_percent"] == pytest.approx(50.0)  # 2.5 s of CPU in 5 s
    mem = by_name(metrics, "docker_container_mem")["pharo-podman"]
    assert mem.fields["working_set"] == mem.fields["usage"]
    assert mem.tags["container_version"] == "11"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["Labels", "HostConfig", "NetworkSettings", "Ports", "Names"]),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.sampled_from(LABEL_KEYS), inner, max_size=4)
            ),
            max_leaves=12,
        ),
    )
)
def test_lying_listing_items_give_a_url_or_a_label_error(item: dict[str, Any]) -> None:
    try:
        url, _ = pharo_endpoint({"Id": "x", **item})
    except PharoLabelError:
        return
    assert url.startswith(("http://", "https://"))
    PharoConfig(urls=[url])  # one [[inputs.pharo]] accepts


async def test_a_lying_engine_costs_values_not_the_collection(aiohttp_server: Any) -> None:
    """Wrong JSON types anywhere: the engine line and the sane container still come."""

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": "1.43"})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"Name": ["not", "a", "name"], "NCPU": "two", "Images": 3})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(
            [
                "not an object",
                {"Id": 7},
                {"Id": "liar", "Names": 5, "State": "running", "Labels": ["x"]},
                {"Id": "sane", "Names": ["/sane"], "Image": "img:1", "State": "running"},
            ]
        )

    async def inspect(request: web.Request) -> web.Response:
        if request.match_info["id"] == "liar":
            return web.json_response([1, 2, 3])
        return web.json_response({"State": {"Running": True, "Status": "running"}})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"memory_stats": {"usage": 100, "stats": {"cache": 1}}})

    target = await fake_engine(aiohttp_server, "1.43", ping, info, listing, inspect, stats)
    try:
        metrics = await collect(target)
    finally:
        await target.aclose()
    assert [m.fields for m in metrics if m.measurement == "docker"] == [{"n_images": 3}]
    assert by_name(metrics, "docker_container_mem")["sane"].fields["usage"] == 100
    body = LineEncoder().encode_all(metrics).decode()
    parse_lines(body)


async def test_json_nested_too_deep_costs_one_container(aiohttp_server: Any) -> None:
    """json.loads raises RecursionError (not ValueError) on "[[[[...": one line, not the poll."""

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": "1.43"})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"Images": 3})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(
            [{"Id": cid, "Names": [f"/{cid}"], "State": "running"} for cid in ("deep", "sane")]
        )

    async def inspect(request: web.Request) -> web.Response:
        if request.match_info["id"] == "deep":
            return web.Response(text="[" * 100_000, content_type="application/json")
        return web.json_response({"State": {"Running": True, "Status": "running"}})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"memory_stats": {"usage": 100, "stats": {}}})

    target = await fake_engine(aiohttp_server, "1.43", ping, info, listing, inspect, stats)
    try:
        metrics = await collect(target)
    finally:
        await target.aclose()
    assert set(by_name(metrics, "docker_container_status")) == {"sane"}
    assert target.last_partial_error == (
        "container deep: /containers/deep/json: the engine answered something that is not JSON"
    )


async def test_a_restarting_container_writes_no_zero_counters(
    docker_engine: DockerEngine, prefix: str
) -> None:
    """Docker answers zeros for a restarting container; written, they read as counter resets."""
    name = f"{prefix}-crashy"
    docker_engine.run("exit 3", name=name, options=["--restart=always"])
    target = docker_target(
        docker_engine,
        container_name_include=[name],
        container_state_include=["running", "restarting", "exited"],
    )
    try:
        for _ in range(20):  # polls until one finds it restarting (it is, most of the time)
            metrics = await collect(target)
            status = by_name(metrics, "docker_container_status").get(name)
            if status is not None and status.tags["container_status"] == "restarting":
                break
        else:
            pytest.fail("the container was never seen restarting")
        for measurement in ("docker_container_cpu", "docker_container_blkio"):
            assert name not in by_name(metrics, measurement), measurement
        assert status.fields["uptime_ns"] < 60 * 10**9
    finally:
        await target.aclose()


def test_credentials_in_the_endpoint_are_never_shown() -> None:
    target = docker_target_at("https://admin:s3cret@127.0.0.1:1")
    assert target.target == "https://127.0.0.1:1"
    assert "s3cret" not in target.client.endpoint
    with pytest.raises(ConfigError) as caught:
        parse_config({"inputs": {"docker": [{"endpoint": "ftp://admin:s3cret@host"}]}})
    assert "s3cret" not in "\n".join(caught.value.lines())


def test_a_unix_endpoint_with_a_host_part_is_refused() -> None:
    """unix://tmp/x.sock would read "tmp" as a host and connect to /x.sock."""
    with pytest.raises(ValueError, match="needs an absolute socket path"):
        DockerConfig(endpoint="unix://tmp/x.sock")


def test_stats_timeout_must_leave_room_in_the_collection() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"inputs": {"docker": [{"timeout": "2s", "stats_timeout": "2s"}]}}, "t.toml")
    assert error.value.lines() == [
        "t.toml: inputs.docker.0: stats_timeout must be shorter than timeout"
    ]


# --- a TLS-protected engine (tcp://host:2376 with client certificates) -----------------


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate and key of their own for 127.0.0.1, in `directory/name/`."""
    (directory / name).mkdir()
    return make_certificate(directory / name)


@pytest.fixture
def tls_engine(docker_engine: DockerEngine) -> Iterator[tuple[str, dict[str, Path]]]:
    """(endpoint, files): a second dockerd on 127.0.0.1 that only answers clients with our cert."""
    dockerd = require_executable("dockerd", "docker.io")
    require_executable("openssl", "openssl")
    directory = Path(tempfile.mkdtemp(prefix="tmt-", dir="/tmp"))
    server_cert, server_key = self_signed(directory, "server")
    client_cert, client_key = self_signed(directory, "client")
    files = {
        "server_cert": server_cert, "server_key": server_key,
        "client_ca": client_cert, "client_cert": client_cert, "client_key": client_key,
    }  # fmt: skip
    port = free_port()
    try:
        with run_tls_dockerd(dockerd, directory, port, files):
            yield f"tcp://127.0.0.1:{port}", files
    finally:
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_tls_engine_with_client_certificates(
    tls_engine: tuple[str, dict[str, Path]],
) -> None:
    endpoint, files = tls_engine
    trusted = DockerConfig(
        endpoint=endpoint,
        tls_ca=files["server_cert"],
        tls_cert=files["client_cert"],
        tls_key=files["client_key"],
    )
    [target] = trusted.build(InputContext())
    assert isinstance(target, DockerTarget)
    try:
        metrics = await collect(target)
    finally:
        await target.aclose()
    [engine] = [m for m in metrics if m.measurement == "docker"]
    assert engine.fields["n_containers"] == 0  # a fresh engine of its own

    anonymous = DockerConfig(endpoint=endpoint, tls_ca=files["server_cert"])
    [target] = anonymous.build(InputContext())
    assert isinstance(target, DockerTarget)
    try:
        with pytest.raises(InputError, match=f"Docker engine at {endpoint}"):
            await collect(target)
    finally:
        await target.aclose()


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "c")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    cases = [
        ({"endpoint": "tcp://h:2376", "tls_cert": str(cert)}, "needs both tls_cert and tls_key"),
        ({"endpoint": "unix:///s.sock", "tls_ca": str(cert)}, "need a tcp:// or https://"),
        ({"endpoint": "tcp://h:2376", "tls_ca": str(tmp_path / "no.pem")}, "tls_ca: cannot read"),
        ({"endpoint": "tcp://h:2376", "tls_ca": str(junk)}, "tls_ca: cannot use"),
        ({"endpoint": "tcp://h:2376", "tls_cert": str(cert), "tls_key": str(junk)}, "cannot use"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError) as error:
            parse_config({"inputs": {"docker": [options]}}, "t.toml")
        [line] = error.value.lines()
        assert line.startswith("t.toml: inputs.docker.0") and message in line, line
    ok = DockerConfig(
        endpoint="tcp://h:2376", tls_cert=cert, tls_key=key, insecure_skip_verify=True
    )
    context = ok.tls_context()
    assert context is not None and context.verify_mode is ssl.CERT_NONE
    assert DockerConfig(endpoint="tcp://h:2375").tls_context() is None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def fake_engine(
    aiohttp_server: Any,
    version: str,
    ping: Handler,
    info: Handler,
    listing: Handler,
    inspect: Handler,
    stats: Handler,
    container: str = "{id}",
) -> DockerTarget:
    """A target on a small stand-in engine (what cannot run here: Podman, a lying engine)."""
    app = web.Application()
    app.router.add_get("/_ping", ping)
    app.router.add_get(f"/v{version}/info", info)
    app.router.add_get(f"/v{version}/containers/json", listing)
    app.router.add_get(f"/v{version}/containers/{container}/json", inspect)
    app.router.add_get(f"/v{version}/containers/{container}/stats", stats)
    server = await aiohttp_server(app)
    return docker_target_at(f"tcp://127.0.0.1:{server.port}")


async def test_discovery_honours_the_name_filters(
    docker_engine: DockerEngine, prefix: str, simulator_port: int
) -> None:
    """A labelled container outside `container_name_include` is not polled (another
    stack's Pharo images on the same engine stay out of this telemon's data)."""
    labels = {"telemon.pharo.port": str(simulator_port)}
    docker_engine.run(
        "sleep 600", name=f"other-{prefix}", labels=labels, options=["--network", "host"]
    )
    docker_engine.run(
        "sleep 600", name=f"{prefix}-mine", labels=labels, options=["--network", "host"]
    )
    agent = discovering_agent(docker_engine, prefix)
    collector = agent.collector
    try:
        await collector.collect_all()
        discovered = [s.target.instance for s in pharo_states(collector)]
        assert discovered == [f"{prefix}-mine"]
    finally:
        await collector.stop()
        docker_engine.remove(f"other-{prefix}")
