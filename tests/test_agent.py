"""The agent: one owner of the running parts, honest about each of them.

Each test here is a case seen against telemon before the agent existed:
outputs posing as an input, values dropped without a word, a pushed line
locking a field against its input, self-metrics forged through the sink,
and output flushes counted as scrapes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp import web

from telemon.agent import Agent, Settings
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


def lines_of(body: bytes | str, measurement: str) -> list[Any]:
    text = body.decode() if isinstance(body, bytes) else body
    return [line for line in parse_lines(text) if line.measurement == measurement]


def status_of(body: bytes | str, measurement: str, **tags: str) -> dict[str, Any]:
    found = [
        line.fields
        for line in lines_of(body, measurement)
        if all(line.tags.get(k) == v for k, v in tags.items())
    ]
    assert len(found) == 1, f"{measurement} {tags}: {found}"
    return found[0]


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
    assert int(cells[5]) == agent.encoder.losses.dropped(state.source) >= 1


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
