"""The agent: one owner of the running parts, honest about each of them.

Each test here is a case seen against telemon before the agent existed:
outputs posing as an input, values dropped without a word, a pushed line
locking a field against its input, self-metrics forged through the sink,
and output flushes counted as scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from aiohttp import web
from helpers import (
    WAIT_S,
    Clocks,
    FakeTarget,
    lines_of,
    status_of,
    wait_until,
    without_self_line,
)

from telemon.agent import SELF_METRICS_MAX_AGE_S, Agent, Settings
from telemon.collector import TargetState
from telemon.config import parse_config
from telemon.inputs.base import Target
from telemon.lazy import Telemon
from telemon.lpparse import parse_lines
from telemon.metric import Metric
from telemon.server import create_app
from telemon.simulator.app import start_simulator

HOUR = {"interval": "1h", "timeout": "1s"}


def ticking(step: float = 2.0) -> Any:
    """A monotonic clock that moves `step` seconds per reading (self-metrics never cached)."""
    now = [0.0]

    def read() -> float:
        now[0] += step
        return now[0]

    return read


class Scripted(Target):
    """A polled target whose next values the test sets."""

    def __init__(self, name: str, measurement: str = "app") -> None:
        super().__init__(name)
        self.measurement = measurement
        self.fields: dict[str, Any] = {"sessions": 1}

    async def collect(self, now_ns: int) -> list[Metric]:
        return [Metric(self.measurement, {}, dict(self.fields), now_ns)]


# --- settings, resolved once ---------------------------------------------------------------


def test_settings_resolve_each_default_once() -> None:
    config = parse_config(
        {
            "agent": {"interval": "20s", "timeout": "3s"},
            "sink": {"enabled": True},
            "http": {"token": "secret"},
            "inputs": {"process": [{"interval": "5s"}], "python": [{}]},
        }
    )
    settings = Settings.resolve(config)
    assert settings.sink_ttl == 40.0  # twice the interval when unset
    assert settings.credentials.required
    assert settings.schedule(config.inputs.process[0]) == (5.0, 3.0)
    assert settings.schedule(config.inputs.python[0]) == (20.0, 3.0)
    agent = Agent(config)
    assert [(s.input, s.interval) for s in agent.collector.states] == [
        ("process", 5.0),
        ("python", 20.0),
    ]


# --- only HTTP scrapes are scrapes -----------------------------------------------------------


async def test_output_pushes_do_not_count_as_scrapes() -> None:
    agent = Agent(parse_config({"inputs": {}, "agent": HOUR}), monotonic=ticking())
    for _ in range(5):
        await agent.push_lines()
    body = await agent.scrape()
    assert status_of(body, "telemon")["scrapes"] == 1
    assert agent.scrapes == 1


# --- kinds are kinds: outputs are not inputs --------------------------------------------------


async def test_a_failing_output_is_down_and_is_no_input(tmp_path: Any) -> None:
    """An output whose database is unreachable says so; it never poses as an input target."""
    config = parse_config(
        {
            "inputs": {},
            "agent": HOUR,
            "outputs": {
                "influxdb": [
                    {
                        "urls": ["http://127.0.0.1:9"],  # discard port: refused
                        "spool_dir": str(tmp_path),
                        "timeout": "1s",
                    }
                ]
            },
        },
    )
    agent = Agent(config, targets=[("app", Scripted("t"))], monotonic=ticking())
    [runner] = agent.outputs
    await agent.collector.collect(agent.collector.states[0])
    await runner.flush()
    body = await agent.scrape()
    assert not [x for x in lines_of(body, "telemon_input") if x.tags["input"] == "outputs"]
    output = status_of(body, "telemon_output", output="influxdb")
    assert output["up"] == 0
    assert output["spool_lines"] > 0
    await agent.stop()


# --- no silent loss ----------------------------------------------------------------------------


async def test_a_dropped_value_is_logged_once_and_counted_per_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = Scripted("counter")
    agent = Agent(parse_config({"inputs": {}, "agent": HOUR}), targets=[("app", target)])
    agent.encoder.losses = type(agent.encoder.losses)()  # another test may have logged it
    [state] = agent.collector.states
    await agent.collector.collect(state)  # sessions is an integer from now on
    target.fields = {"sessions": 1.5}
    with caplog.at_level(logging.WARNING, logger="telemon.values"):
        await agent.collector.collect(state)
        await agent.collector.collect(state)
    warnings = [r.getMessage() for r in caplog.records if r.name == "telemon.values"]
    assert len(warnings) == 1, warnings
    assert "input app target counter" in warnings[0]
    assert "'sessions'" in warnings[0] and "float" in warnings[0] and "integer" in warnings[0]
    body = await agent.scrape()
    assert status_of(body, "telemon_input", target="counter")["values_dropped"] == 2


async def test_lazy_fields_dropped_values_are_counted_for_their_target() -> None:
    values = iter([3, 2.5, 4])
    telemon = Telemon("app", fields={"n": lambda: next(values)})
    agent = Agent(parse_config({"inputs": {}, "agent": HOUR}), [telemon], monotonic=ticking())
    for _ in range(3):
        body = await agent.scrape()
    assert lines_of(body, "app")[0].fields == {"n": 4}
    assert status_of(body, "telemon_input", input="fields")["values_dropped"] == 1


async def test_index_shows_values_dropped(aiohttp_client: Any) -> None:
    target = Scripted("counter")
    config = parse_config({"inputs": {}, "agent": HOUR})
    agent = Agent(config, targets=[("app", target)])
    [state] = agent.collector.states
    await agent.collector.collect(state)
    target.fields = {"sessions": "many"}
    await agent.collector.collect(state)
    client = await aiohttp_client(create_app(config, agent=agent))
    page = await (await client.get("/")).text()
    assert "<th>values dropped</th>" in page
    [row] = [r for r in re.findall(r"<tr>(.*?)</tr>", page, re.S) if "<td>counter</td>" in r]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert int(cells[7]) == agent.encoder.losses.dropped(state.source) >= 1


# --- sources cannot hurt each other --------------------------------------------------------------


@pytest.fixture
async def simulator() -> Any:
    runner, port = await start_simulator("127.0.0.1", 0, vms=2, seed=3)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_pushed_line_cannot_lock_a_pharo_field(aiohttp_client: Any, simulator: str) -> None:
    """Before the first poll, a push typing `uptime` as a string is refused; pharo keeps it."""
    config = parse_config(
        {
            "agent": HOUR,
            "sink": {"enabled": True},
            "inputs": {"pharo": [{"urls": [f"{simulator}/1/metrics"], "format": "influx"}]},
        }
    )
    agent = Agent(config)
    client = await aiohttp_client(create_app(config, agent=agent))
    resp = await client.post(
        "/write", data=b'pharo,instance=x uptime="pwned",memoryFree=true\nother v=1i\n'
    )
    assert resp.status == 400
    assert "uptime" in await resp.text()
    await agent.collector.collect_all()
    body = await (await client.get("/metrics")).text()
    [pharo] = [x for x in lines_of(body, "pharo") if x.tags.get("instance") != "x"]
    assert isinstance(pharo.fields["uptime"], int) and isinstance(pharo.fields["memoryFree"], int)
    assert lines_of(body, "other")  # the good line of the refused body was kept


@pytest.mark.parametrize(
    "line",
    [
        b"telemon_input,input=process,target=self up=0i,errors=999i",
        b"telemon scrapes=1i",
        b"telemon_output,output=influxdb up=1i",
        b"telemon_sink series=0i",
    ],
)
async def test_the_sink_refuses_telemons_own_measurements(aiohttp_client: Any, line: bytes) -> None:
    config = parse_config({"agent": HOUR, "sink": {"enabled": True}, "inputs": {}})
    client = await aiohttp_client(create_app(config))
    resp = await client.post("/write", data=line)
    assert resp.status == 400
    body = await (await client.get("/metrics")).text()
    assert "999" not in body
    assert len(lines_of(body, "telemon")) == 1


async def test_a_conflicting_push_after_an_input_is_refused_and_named(aiohttp_client: Any) -> None:
    target = Scripted("app")
    config = parse_config({"agent": HOUR, "sink": {"enabled": True}, "inputs": {}})
    agent = Agent(config, targets=[("app", target)])
    await agent.collector.collect(agent.collector.states[0])
    client = await aiohttp_client(create_app(config, agent=agent))
    resp = await client.post("/telegraf", data=b"app sessions=1.5")
    assert resp.status == 400
    text = await resp.text()
    assert "partial write" in text and "sessions" in text and "integer" in text


# --- one owner: start and stop ------------------------------------------------------------------


async def test_the_agent_starts_and_stops_with_the_app(aiohttp_client: Any) -> None:
    target = Scripted("t")
    config = parse_config({"inputs": {}, "agent": HOUR})
    agent = Agent(config, targets=[("app", target)])
    app = create_app(config, agent=agent)
    client = await aiohttp_client(app)
    assert agent.started_ns is not None
    assert agent.collector._tasks
    await client.close()
    assert not agent.collector._tasks


async def test_embedders_use_the_agent_as_a_context_manager() -> None:
    config = parse_config({"inputs": {}, "agent": HOUR})
    async with Agent(config, targets=[("app", Scripted("t"))]) as agent:
        assert agent.collector._tasks
    assert not agent.collector._tasks


def test_the_package_exports_the_public_api() -> None:
    import telemon

    assert telemon.Agent is Agent
    assert telemon.create_app is create_app
    assert isinstance(telemon.create_app(parse_config({"inputs": {}})), web.Application)
    assert not [name for name in telemon.__all__ if "test" in name.lower()]


async def test_index_shows_a_failing_output_apart_from_the_inputs(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    config = parse_config(
        {
            "inputs": {},
            "agent": HOUR,
            "outputs": {"influxdb": [{"urls": ["http://127.0.0.1:9"], "timeout": "1s"}]},
        },
    )
    agent = Agent(config, targets=[("app", Scripted("t"))])
    client = await aiohttp_client(create_app(config, agent=agent))
    [runner] = agent.outputs
    await agent.collector.collect(agent.collector.states[0])
    await runner.flush()
    page = await (await client.get("/")).text()
    outputs = page.split("<h2>Outputs</h2>", 1)[1]
    [row] = [r for r in re.findall(r"<tr>(.*?)</tr>", outputs, re.S) if "influxdb" in r]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:4] == ["influxdb", "http://127.0.0.1:9", "down", "never"]
    assert int(cells[8]) > 0  # spooled lines
    assert cells[-1]  # the reason
    assert "outputs" not in page.split("<h2>Outputs</h2>", 1)[0]  # not among the inputs


# --- what a scrape adds around the collected lines -------------------------------------------


def collected_agent(target: Target, clocks: Clocks, **config: Any) -> tuple[Agent, TargetState]:
    """An agent over one polled target, its self-lines cache on `clocks`."""
    agent = Agent(
        parse_config({"inputs": {}, "agent": HOUR, **config}),
        targets=[("fake", target)],
        monotonic=clocks.monotonic,
    )
    [state] = agent.collector.states
    return agent, state


async def test_each_scrape_counts_itself_and_reuses_the_collected_lines() -> None:
    target, clocks = FakeTarget("t"), Clocks()
    agent, state = collected_agent(target, clocks)
    await agent.collector.collect(state)
    first = await agent.scrape()
    clocks.advance(SELF_METRICS_MAX_AGE_S)
    second = await agent.scrape()
    assert target.calls == 1  # a scrape serves what was collected, it collects nothing
    assert without_self_line(first) == without_self_line(second)
    assert lines_of(first, "fake") and status_of(first, target="t")["up"] == 1
    assert status_of(first, "telemon")["scrapes"] == 1
    assert status_of(second, "telemon")["scrapes"] == 2


async def test_self_lines_are_reencoded_at_most_once_per_max_age() -> None:
    """Back-to-back scrapes share the self-lines; the lazy values stay fresh."""
    clocks = Clocks()
    telemon = Telemon("lazy_app", fields={"n": iter(range(1, 100)).__next__})
    config = parse_config({"inputs": {}, "agent": HOUR})
    agent = Agent(config, [telemon], monotonic=clocks.monotonic)
    first = await agent.scrape()
    clocks.advance(SELF_METRICS_MAX_AGE_S / 2)
    second = await agent.scrape()
    assert lines_of(second, "lazy_app")[0].fields == {"n": 2}
    assert lines_of(first, "telemon") == lines_of(second, "telemon")
    assert status_of(second, "telemon")["scrapes"] == 1
    assert status_of(second, input="fields")["collections"] == 1
    clocks.advance(SELF_METRICS_MAX_AGE_S / 2)
    third = await agent.scrape()
    assert status_of(third, "telemon")["scrapes"] == 3
    assert status_of(third, input="fields")["collections"] == 3


async def test_a_lazy_target_going_down_or_up_is_served_at_once() -> None:
    """A lazy target's changed `up` re-encodes the cached self-lines at the same scrape."""
    broken = {"on": False}

    def flaky() -> int:
        if broken["on"]:
            raise ConnectionError("pool exhausted")
        return 1

    clocks = Clocks()  # never advanced: only a change of `up` can refresh the self-lines
    telemon = Telemon("lazy_app", fields={"v": flaky, "steady": lambda: 2})
    agent = Agent(
        parse_config({"inputs": {}, "agent": HOUR}), [telemon], monotonic=clocks.monotonic
    )
    assert status_of(await agent.scrape(), input="fields")["up"] == 1
    broken["on"] = True
    body = await agent.scrape()
    assert lines_of(body, "lazy_app")[0].fields == {"steady": 2}
    assert status_of(body, input="fields")["up"] == 0
    assert status_of(body, input="fields")["errors"] == 1
    broken["on"] = False
    assert status_of(await agent.scrape(), input="fields")["up"] == 1


async def test_global_tags_fill_the_self_lines() -> None:
    target = FakeTarget("tagged")
    target.tags = {"host": "metric-host"}
    agent, state = collected_agent(
        target, Clocks(), global_tags={"host": "global-host", "dc": "eu1"}
    )
    await agent.collector.collect(state)
    body = await agent.scrape()
    [self_line] = lines_of(body, "telemon")
    assert self_line.tags == {"dc": "eu1", "host": "global-host"}
    [status_line] = lines_of(body, "telemon_input")
    assert status_line.tags == {
        "dc": "eu1",
        "host": "global-host",
        "input": "fake",
        "target": "tagged",
    }
    assert lines_of(body, "fake")[0].tags["host"] == "metric-host"


async def test_a_scrape_does_not_wait_for_a_blocked_collection() -> None:
    """While a polled target's collection hangs, a scrape answers with the last one."""
    target = FakeTarget("slow")
    agent, state = collected_agent(target, Clocks())
    await agent.collector.collect(state)
    target.gate = asyncio.Event()  # the next collection blocks until the end of the test
    target.entered.clear()
    collection = asyncio.create_task(agent.collector.collect(state))
    await target.entered.wait()
    async with asyncio.timeout(WAIT_S):  # guards against a hang; a scrape takes milliseconds
        body = await agent.scrape()
    assert not collection.done()
    assert lines_of(body, "fake")[0].fields["calls"] == 1
    assert status_of(body, target="slow")["up"] == 1
    target.gate.set()
    await collection


async def test_scrape_metrics_holds_what_a_scrape_holds() -> None:
    """The metrics behind the Prometheus format: values, status lines, the `telemon` line."""
    target = FakeTarget("t")
    telemon = Telemon("lazy_app", fields={"n": 5})
    config = parse_config({"inputs": {}, "agent": HOUR})
    agent = Agent(config, [telemon], targets=[("fake", target)], monotonic=ticking())
    await agent.collector.collect(agent.collector.states[0])
    metrics = await agent.scrape_metrics()
    assert sorted({m.measurement for m in metrics}) == [
        "fake",
        "lazy_app",
        "telemon",
        "telemon_input",
    ]
    status = {m.tags["input"]: m.fields["up"] for m in metrics if m.measurement == "telemon_input"}
    assert status == {"fake": 1, "fields": 1}
    [self_metric] = [m for m in metrics if m.measurement == "telemon"]
    assert self_metric.fields["scrapes"] == 1 == agent.scrapes


async def test_two_fields_tables_of_one_measurement_are_told_apart() -> None:
    """Their status lines differ and a loss in one is not counted for the other."""
    config = parse_config({"inputs": {}, "agent": HOUR})
    good = Telemon("app", {"service": "a"}, {"v": lambda: 1})
    bad = Telemon("app", {"service": "b"}, {"v": lambda: float("nan")})
    agent = Agent(config, [good, bad], monotonic=ticking())
    await agent.scrape()
    body = await agent.scrape()
    statuses = [x for x in lines_of(body, "telemon_input") if x.tags["input"] == "fields"]
    assert sorted(x.tags["target"] for x in statuses) == ["app", "app#2"]
    dropped = {x.tags["target"]: x.fields["values_dropped"] for x in statuses}
    assert dropped == {"app": 0, "app#2": 2}


async def test_losses_of_the_sink_and_of_telemon_itself_are_shown() -> None:
    config = parse_config({"inputs": {}, "agent": HOUR, "sink": {"enabled": True}})
    body = await Agent(config, monotonic=ticking()).scrape()
    assert lines_of(body, "telemon")[0].fields["values_dropped"] == 0
    assert lines_of(body, "telemon_sink")[0].fields["values_dropped"] == 0


async def test_values_a_pharo_payload_leaves_out_are_logged_and_counted(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"uptime": 12, "oldSpace": 5, "memory": [1, 2]})

    app = web.Application()
    app.router.add_get("/stats.json", stats)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/stats.json"
    config = parse_config({"agent": HOUR, "inputs": {"pharo": [{"urls": [url]}]}})
    agent = Agent(config, monotonic=ticking())
    with caplog.at_level(logging.WARNING, logger="telemon.values"):
        await agent.collector.collect_all()
        await agent.collector.collect_all()
    warnings = [r.getMessage() for r in caplog.records if r.name == "telemon.values"]
    assert len(warnings) == 1 and "'memory'" in warnings[0], warnings
    body = await agent.scrape()
    assert status_of(body, "telemon_input", input="pharo")["values_dropped"] == 2
    await agent.stop()


async def test_lines_pushed_to_the_sink_reach_the_outputs_at_stop(tmp_path: Any) -> None:
    """A line the sink took after the last flush is written or spooled when telemon stops."""
    config = parse_config(
        {
            "inputs": {},
            "agent": HOUR,
            "sink": {"enabled": True},
            "outputs": {
                "influxdb": [
                    {"urls": ["http://127.0.0.1:9"], "spool_dir": str(tmp_path), "timeout": "1s"}
                ]
            },
        }
    )
    agent = Agent(config)
    await agent.start()
    [runner] = agent.outputs
    await wait_until(lambda: runner.up is False)  # its first flush is behind it
    result = await agent.sink.write_in_steps(parse_lines("relay value=42i 1\n"))
    assert result.kept == 1
    await agent.stop()
    spooled = b"".join(path.read_bytes() for path in tmp_path.rglob("*.lp"))
    assert b"relay value=42i" in spooled


def test_the_field_type_table_is_bounded_and_keeps_what_is_in_use() -> None:
    from telemon import fieldtypes
    from telemon.lineprotocol import LineEncoder

    encoder = LineEncoder()
    encoder.declare("pharo", {"uptime": "i"})
    assert encoder.admit("live", {"f": 1}) is None
    for i in range(fieldtypes.MAX_MEASUREMENTS * 2):
        assert encoder.admit(f"gone{i}", {"f": 1}) is None
        if i % 1000 == 0:
            assert encoder.admit("live", {"f": 2}) is None  # in use: stays locked
    assert len(encoder.types._kinds) <= fieldtypes.MAX_MEASUREMENTS
    assert encoder.admit("live", {"f": 1.5}) is not None  # still integer
    assert encoder.admit("pharo", {"uptime": "x"}) is not None  # declared: never forgotten
