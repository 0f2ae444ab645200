"""The status page at `/`: its pure rendering, its history ring, and a real headless browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from dockerd import DockerEngine
from helpers import FakeTarget, require_executable, wait_until

from telemon import __version__
from telemon.agent import Agent, AgentStatus
from telemon.collector import TargetState
from telemon.config import parse_config
from telemon.history import (
    DOCKER_CPU,
    DOCKER_MEMORY,
    MAX_SERIES,
    PHARO_GC,
    PHARO_MEMORY,
    POINTS,
    STEP_S,
    TELEMON_DURATIONS,
    WINDOW_S,
    History,
    Ring,
)
from telemon.metric import Metric
from telemon.server import create_app
from telemon.simulator.app import start_simulator
from telemon.status_page import (
    MAX_LINES,
    PageContext,
    format_age,
    format_interval,
    render_status_page,
)

NOW_S = 1_700_000_000.0
NOW_NS = int(NOW_S * 1e9)
CONTEXT = PageContext("/metrics", "/healthz", "127.0.0.1:8080")
HOSTILE = '<script>alert("x")</script>&'


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, now: float = NOW_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def status_for(states: list[TargetState], history: History, **kwargs: Any) -> AgentStatus:
    """A status of `states` read at NOW, started an hour before."""
    values: dict[str, Any] = {
        "version": __version__,
        "started_ns": NOW_NS - 3600 * 10**9,
        "inputs": states,
        "outputs": [],
        "sink": None,
        "dropped": lambda source: 0,
        "interval": 10.0,
        "config_path": "/etc/telemon/telemon.toml",
        "history": history,
        "now_ns": NOW_NS,
    }
    values.update(kwargs)
    return AgentStatus(**values)


def pharo_state(instance: str, memory: int, free: int, gc_ms: int) -> TargetState:
    """A pharo target's state whose last collection gave one `pharo` line."""
    target = FakeTarget(f"http://{instance}:8079/metrics")
    target.instance = instance  # type: ignore[attr-defined] # as PharoTarget has
    state = TargetState("pharo", target, 10.0, 5.0)
    fields = {"memory": memory, "memoryFree": free, "fullGCTime": gc_ms, "incrGCTime": gc_ms}
    state.metrics = [Metric("pharo", {"instance": instance}, dict(fields), NOW_NS)]
    state.health.up, state.health.last_success_ns = True, NOW_NS - 4 * 10**9
    state.duration_ms = 3.0
    return state


def rows_of(page: str, table: str) -> list[list[str]]:
    """The cells of each data row of the table with id `table`."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S)
    assert body is not None, f"no table {table}"
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [cells for row in rows if (cells := re.findall(r"<td[^>]*>(.*?)</td>", row, re.S))]


# --- the ring and the history ---------------------------------------------------------------


def test_ring_keeps_one_point_per_step_and_at_most_points() -> None:
    """Points of one step merge (their maximum); past POINTS steps the oldest go."""
    ring = Ring()
    ring.add(NOW_S, 1.0)
    ring.add(NOW_S + 0.1, 5.0)
    ring.add(NOW_S + 0.2, 2.0)
    assert [v for _, v in ring.points(0)] == [5.0]
    for step in range(1, POINTS + 10):
        ring.add(NOW_S + step * STEP_S, float(step))
    points = ring.points(0)
    assert len(points) == POINTS
    assert points[0][1] == 10.0 and points[-1][1] == POINTS + 9


def test_history_derives_used_memory_and_gc_per_minute() -> None:
    """Used memory is memory - memoryFree; GC time per minute comes from the counters' deltas."""
    clock = Clock()
    history = History(clock)
    history.record_collection(pharo_state("blog", 1000, 400, 100))
    clock.now += 1
    history.record_collection(pharo_state("blog", 1000, 300, 105))  # within a step: no rate
    assert history.view(PHARO_GC.key, clock.now, 8) == ([], 0)
    clock.now += 29
    history.record_collection(pharo_state("blog", 1000, 300, 110))  # +20 ms in 30 s
    [memory], _ = history.view(PHARO_MEMORY.key, clock.now, 8)
    assert memory.label == "blog"
    assert [v for _, v in memory.points] == [700.0, 700.0]  # a step keeps its maximum
    [gc], _ = history.view(PHARO_GC.key, clock.now, 8)
    assert [v for _, v in gc.points] == [40.0]
    clock.now += 30
    history.record_collection(pharo_state("blog", 1000, 300, 5))  # restarted: no point
    [gc], _ = history.view(PHARO_GC.key, clock.now, 8)
    assert len(gc.points) == 1
    views, _ = history.view(TELEMON_DURATIONS.key, clock.now, 8)
    assert [v.label for v in views] == ["collection: pharo"]


def test_history_drops_series_of_gone_targets() -> None:
    """A series without a point for the window is dropped at the next sweep."""
    clock = Clock()
    history = History(clock)
    history.record_collection(pharo_state("gone", 1000, 400, 100))
    clock.now += WINDOW_S / 2
    history.record_collection(pharo_state("staying", 1000, 400, 100))
    clock.now += WINDOW_S / 2 + 1
    history.record_collection(pharo_state("staying", 1000, 400, 100))
    assert set(history.series[PHARO_MEMORY.key]) == {"staying"}
    assert "gone" not in history._gc_last


def test_history_caps_the_number_of_series() -> None:
    """Past MAX_SERIES series new ones are counted as left out, not kept."""
    history = History(Clock())
    state = TargetState("docker", FakeTarget("engine"), 10.0, 5.0)
    tags = {"cpu": "cpu-total"}
    state.metrics = [
        Metric("docker_container_cpu", {**tags, "container_name": f"c{i}"}, {"usage_percent": 1.0})
        for i in range(MAX_SERIES + 5)
    ]
    history.record_collection(state)  # and the input's collection time: one more series
    assert sum(len(s) for s in history.series.values()) == MAX_SERIES
    assert history.left_out == 6


def test_history_keeps_each_containers_cpu_and_memory() -> None:
    """docker_container_cpu (cpu-total only) and docker_container_mem's working set, by name."""
    history = History(Clock())
    state = TargetState("docker", FakeTarget("unix:///run/docker.sock"), 10.0, 5.0)
    name = {"container_name": "shop"}
    state.metrics = [
        Metric("docker_container_cpu", {**name, "cpu": "cpu-total"}, {"usage_percent": 12.5}),
        Metric("docker_container_cpu", {**name, "cpu": "cpu0"}, {"usage_percent": 99.0}),
        Metric("docker_container_mem", name, {"working_set": 4096, "usage": 8192}),
    ]
    history.record_collection(state)
    [cpu], _ = history.view(DOCKER_CPU.key, NOW_S, 8)
    [memory], _ = history.view(DOCKER_MEMORY.key, NOW_S, 8)
    assert (cpu.label, cpu.points[0][1]) == ("shop", 12.5)
    assert (memory.label, memory.points[0][1]) == ("shop", 4096.0)
    page = render_status_page(status_for([state], history), CONTEXT)
    assert re.search(r'id="chart-docker_cpu" data-series="1" data-points="1"', page)
    assert "12.5 %" in page and "4.0 KiB" in page


# --- the pure rendering ----------------------------------------------------------------------


def test_page_shows_each_target_with_instance_age_and_interval() -> None:
    """Each target's row: input, instance, target, state, age, interval, errors, dropped, error."""
    clock = Clock()
    history = History(clock)
    up = pharo_state("blog", 1000, 400, 100)
    history.record_collection(up)
    down = TargetState("docker", FakeTarget("unix:///run/docker.sock"), 30.0, 5.0)
    down.health.up, down.health.failures, down.health.last_error = False, 2, "refused"
    discovered = TargetState(
        "pharo", FakeTarget("http://10.0.0.5:8079/"), 10.0, 5.0, {"container_name": "shop"}
    )
    page = render_status_page(
        status_for([up, down, discovered], history, dropped=lambda source: 7), CONTEXT
    )
    rows = rows_of(page, "inputs")
    assert rows[0][:7] == ["pharo", "blog", "http://blog:8079/metrics", "up", "4 s ago", "10 s",
                           "0"]  # fmt: skip
    assert rows[0][7] == "7"
    assert rows[1] == ["docker", "", "unix:///run/docker.sock", "down", "never", "30 s", "2", "7",
                       "refused"]  # fmt: skip
    assert rows[2][1] == "shop" and rows[2][3] == "pending"
    assert "up 60 min" in page and "/etc/telemon/telemon.toml" in page and "127.0.0.1:8080" in page
    assert '<a href="/metrics?format=prometheus">' in page and '<a href="/healthz">' in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert re.search(r'id="chart-pharo_memory" data-series="1" data-points="1"', page)


def test_page_escapes_hostile_names_and_errors() -> None:
    """Input, target, instance, error and series names are escaped, in tables and charts."""
    history = History(Clock())
    state = pharo_state(HOSTILE, 1000, 400, 100)
    state.input = HOSTILE
    state.health.last_error = HOSTILE
    history.record_collection(state)
    history._add(PHARO_MEMORY.key, HOSTILE, NOW_S, 5.0)
    page = render_status_page(
        status_for([state], history, config_path=HOSTILE, version=HOSTILE), CONTEXT
    )
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "src=" not in page and 'href="http' not in page  # nothing loaded from elsewhere


def test_page_for_a_target_without_data() -> None:
    """A target never collected: pending, never, and empty charts that say so."""
    state = TargetState("pharo", FakeTarget("http://cold:8079/"), 10.0, 5.0)
    page = render_status_page(status_for([state], History(Clock()), started_ns=None), CONTEXT)
    [row] = rows_of(page, "inputs")
    assert row[3:5] == ["pending", "never"]
    assert page.count(">no data yet</text>") == 3  # the two Pharo charts and telemon's
    assert "chart-docker_cpu" not in page  # no docker input: no container charts
    assert "not started" in page


def test_page_without_inputs() -> None:
    """With no targets the page says so."""
    page = render_status_page(status_for([], History(Clock())), CONTEXT)
    assert "no inputs configured" in page


def test_page_with_1000_targets_lists_all_and_draws_a_few() -> None:
    """Every target has a row; a chart draws the MAX_LINES highest series and counts the rest."""
    clock = Clock(NOW_S - WINDOW_S)
    history = History(clock)
    states = [pharo_state(f"vm{i:04d}", 10_000 + i, 0, i) for i in range(1000)]
    for _ in range(3):
        for state in states:
            history.record_collection(state)
        clock.now += 60
    page = render_status_page(status_for(states, history), CONTEXT)
    assert len(rows_of(page, "inputs")) == 1000
    memory = re.search(r'<figure class="chart" id="chart-pharo_memory".*?</figure>', page, re.S)
    assert memory is not None
    assert memory.group(0).count("<polyline") == MAX_LINES
    assert "vm0999" in memory.group(0) and "vm0000" not in memory.group(0)
    assert f"{1000 - MAX_LINES} more not drawn" in memory.group(0)
    assert len(page) < 1_000_000


def test_ages_read_as_a_person_would() -> None:
    """Seconds, then minutes, hours, days; never when there was no success."""
    second = 10**9
    assert format_age(NOW_NS - 4 * second, NOW_NS) == "4 s ago"
    assert format_age(NOW_NS - 300 * second, NOW_NS) == "5 min ago"
    assert format_age(NOW_NS - 3 * 3600 * second, NOW_NS) == "3 h ago"
    assert format_age(None, NOW_NS) == "never"
    assert [format_interval(s) for s in (0.2, 10, 90, 300, 3600)] == [
        "0.2 s", "10 s", "90 s", "5 min", "1 h"]  # fmt: skip


# --- a real browser against a real telemon polling the simulator -------------------------------


@contextlib.asynccontextmanager
async def serving(inputs: dict[str, Any], config_path: Path) -> AsyncIterator[tuple[str, Agent]]:
    """telemon on loopback with `inputs`, polled every 0.2 s by default; its URL and agent."""
    config = parse_config(
        {
            "agent": {"interval": "0.2s", "timeout": "1s"},
            "inputs": inputs,
            "http": {"listen": "127.0.0.1:0"},
        }
    )
    agent = Agent(config, config_path=str(config_path))
    runner = web.AppRunner(create_app(config, agent=agent), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", agent
    finally:
        await runner.cleanup()


@pytest.fixture
async def simulator_port() -> AsyncIterator[int]:
    """A simulator of two Pharo VMs on loopback; its port."""
    runner, port = await start_simulator("127.0.0.1", 0, vms=2, seed=3)
    yield port
    await runner.cleanup()


async def charted(url: str, agent: Agent, charts: dict[str, set[str]]) -> None:
    """Scrape `/metrics` (the scrape chart's points) until each chart has those series."""
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            await (await session.get(f"{url}/metrics")).read()
            now = agent.clock() / 1e9
            return all(
                wanted <= {view.label for view in agent.history.view(chart, now, 100)[0]}
                for chart, wanted in charts.items()
            )

        await wait_until(ready, timeout=30, every=0.1, what=f"points in {sorted(charts)}")


async def page_in_browser(url: str, tmp_path: Path) -> str:
    """The page's DOM in chromium, checked for console errors and points in every chart;
    a screenshot written to `tmp_path`."""
    binary = require_executable("chromium", "chromium")
    dom, log = await _chromium(binary, tmp_path / "profile", "--dump-dom", url + "/")
    assert "CONSOLE" not in log and "Uncaught" not in log, log
    figures = re.findall(r'<figure class="chart" id="chart-(\w+)" data-series="(\d+)"'
                         r' data-points="(\d+)"', dom)  # fmt: skip
    assert figures
    for name, series, points in figures:
        assert int(series) >= 1 and int(points) >= 1, name
    screenshot = tmp_path / "status-page.png"
    _, log = await _chromium(binary, tmp_path / "profile", f"--screenshot={screenshot}", url + "/")
    assert "CONSOLE" not in log, log
    assert screenshot.stat().st_size > 10_000
    return dom


async def _chromium(binary: str, profile: Path, *args: str) -> tuple[str, str]:
    """Run headless chromium (without blocking the loop telemon serves on); stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--window-size=1280,1600", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace"), err.decode(errors="replace")


async def test_the_page_in_a_real_browser(simulator_port: int, tmp_path: Path) -> None:
    """Chromium loads the page without console errors, every chart has points after a few
    collections and scrapes, and a screenshot is written."""
    urls = [f"http://127.0.0.1:{simulator_port}/{vm}/metrics" for vm in (0, 1)]
    config_path = tmp_path / "telemon.toml"
    async with serving({"pharo": [{"urls": urls}]}, config_path) as (url, agent):
        instances = {f"127.0.0.1:{simulator_port}/0/metrics host=pharo-0",
                     f"127.0.0.1:{simulator_port}/1/metrics host=pharo-1"}  # fmt: skip
        durations = {"scrape", "collection: pharo"}
        wanted = {PHARO_MEMORY.key: instances, PHARO_GC.key: instances,
                  TELEMON_DURATIONS.key: durations}  # fmt: skip
        await charted(url, agent, wanted)
        dom = await page_in_browser(url, tmp_path)
    charts = re.findall(r'<figure class="chart" id="chart-(\w+)"', dom)
    assert charts == ["pharo_memory", "pharo_gc", "telemon_durations"]
    assert len(re.findall(r'<polyline class="series" data-points="[1-9]', dom)) == 6
    assert "<td>pharo</td><td>127.0.0.1:" in dom  # the instance
    assert f"listening on <code>{url.removeprefix('http://')}</code>" in dom  # the port bound
    assert str(config_path) in dom


async def test_containers_and_a_discovered_pharo_in_a_real_browser(
    docker_engine: DockerEngine, simulator_port: int, tmp_path: Path
) -> None:
    """With a docker input: the containers' CPU and memory charts, and a discovered Pharo
    target named by its container, in the table and in the Pharo charts."""
    prefix = f"tm-{docker_engine.run_id}-{uuid.uuid4().hex[:6]}"
    name = f"{prefix}-pharo"
    docker_engine.run(
        "sleep 600",
        name=name,
        labels={"telemon.pharo.port": str(simulator_port)},
        options=["--network", "host"],
    )
    docker = {
        "endpoint": docker_engine.endpoint,
        "discover_pharo": True,
        "container_name_include": [f"{prefix}-*"],
        "interval": "1s",
        "timeout": "5s",
    }
    try:
        async with serving({"docker": [docker]}, tmp_path / "t.toml") as (url, agent):
            pharo = {f"{name} host=pharo-0"}
            await charted(url, agent, {DOCKER_CPU.key: {name}, DOCKER_MEMORY.key: {name},
                                       PHARO_MEMORY.key: pharo, PHARO_GC.key: pharo})  # fmt: skip
            dom = await page_in_browser(url, tmp_path)
    finally:
        docker_engine.remove(name)
    charts = re.findall(r'<figure class="chart" id="chart-(\w+)"', dom)
    assert charts == ["pharo_memory", "pharo_gc", "docker_cpu", "docker_memory",
                      "telemon_durations"]  # fmt: skip
    assert f"<tr><td>pharo</td><td>{name}</td>" in dom  # a discovered target's instance
