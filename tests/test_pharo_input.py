"""`[[inputs.pharo]]` end to end: simulator -> telemon -> /metrics -> real InfluxDB."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import FORMAT_PATHS, lines_of, make_certificate, scrape_once, status_of
from influx import InfluxDB

from telemon.agent import Agent
from telemon.config import ConfigError, parse_config
from telemon.inputs.pharo import samples_to_metrics
from telemon.inputs.pharo_formats import Sample
from telemon.schema import display_url
from telemon.server import AGENT_KEY, create_app
from telemon.simulator.app import start_simulator

TELEMON_FIELDS = (
    "uptime",
    "oldSpace",
    "youngSpace",
    "memory",
    "memoryFree",
    "fullGCs",
    "fullGCTime",
    "incrGCs",
    "incrGCTime",
    "tenureCount",
)


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    """A simulated fleet of Pharo VMs on a free port; answers its base URL."""
    runner, port = await start_simulator("127.0.0.1", 0, vms=8, seed=7)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("fmt", list(FORMAT_PATHS))
@pytest.mark.parametrize("explicit", [False, True], ids=["auto", "explicit"])
async def test_every_format_gives_telemon_fields(
    aiohttp_client: Any, simulator: str, fmt: str, explicit: bool
) -> None:
    """Each format served by the simulator yields a typed `pharo` line with Telemon's fields."""
    url = simulator + "/1" + FORMAT_PATHS[fmt]
    table: dict[str, Any] = {"urls": [url], "tags": {"app": "blog"}}
    if explicit:
        table["format"] = fmt
    body = await scrape_once(aiohttp_client, {"pharo": [table]}, global_tags={"dc": "eu"})
    [parsed] = lines_of(body, "pharo")
    host_port = url.split("/")[2]
    assert parsed.tags["instance"] == host_port
    assert parsed.tags["app"] == "blog" and parsed.tags["dc"] == "eu"
    for name in TELEMON_FIELDS:
        if fmt == "report" and name in ("youngSpace",):
            continue
        assert isinstance(parsed.fields.get(name), int), (name, parsed)
    assert parsed.fields["memory"] >= parsed.fields["memoryFree"] > 0
    assert parsed.time_ns is not None
    assert status_of(body, target=url)["up"] == 1


async def test_instance_names_can_be_set_per_url(aiohttp_client: Any, simulator: str) -> None:
    """`[inputs.pharo.instances]` names a target; others keep host:port."""
    first, second = simulator + "/1/stats.json", simulator + "/2/stats.json"
    body = await scrape_once(
        aiohttp_client, {"pharo": [{"urls": [first, second], "instances": {first: "blog"}}]}
    )
    instances = sorted(line.tags["instance"] for line in lines_of(body, "pharo"))
    assert instances == sorted(["blog", second.split("/")[2]])


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "HTTP 500"),
        ("garbage", ""),
        ("html", ""),
        ("empty", ""),
        ("truncate", ""),
    ],
)
async def test_a_failing_target_is_down_and_the_rest_carries_on(
    aiohttp_client: Any, simulator: str, fault: str, reason: str
) -> None:
    """A bad answer marks only its target down, with a reason; /metrics still answers 200."""
    bad = f"{simulator}/3/stats.json?fault={fault}"
    good = f"{simulator}/4/stats.json"
    config = parse_config({"inputs": {"pharo": [{"urls": [bad, good]}], "python": [{}]}})
    agent = Agent(config)
    collector = agent.collector
    await collector.collect_all()
    client: TestClient = await aiohttp_client(create_app(config, agent=agent))
    body = await (await client.get("/metrics")).text()
    assert status_of(body, target=bad)["up"] == 0
    assert status_of(body, target=good)["up"] == 1
    assert len(lines_of(body, "pharo")) == 1
    assert lines_of(body, "python")
    [state] = [s for s in collector.states if s.target.target == bad]
    assert state.health.last_error and "\n" not in state.health.last_error
    assert reason in state.health.last_error
    index = await (await client.get("/")).text()
    assert "down" in index


async def test_a_hanging_target_times_out(aiohttp_client: Any, simulator: str) -> None:
    """A target that never answers is down with "timed out" after the input's timeout."""
    url = f"{simulator}/5/stats.json?fault=hang"
    config = parse_config({"inputs": {"pharo": [{"urls": [url], "timeout": "200ms"}]}})
    agent = Agent(config)
    collector = agent.collector
    await collector.collect_all()
    [state] = collector.states
    assert state.health.up is False and state.health.last_error == "timed out after 0.2s"
    await collector.stop()


async def test_a_huge_body_is_cut_off(aiohttp_client: Any, simulator: str) -> None:
    """A body past max_body_size is not read further and marks the target down."""
    url = f"{simulator}/5/stats.json?fault=huge"
    config = parse_config({"inputs": {"pharo": [{"urls": [url], "max_body_size": 65536}]}})
    agent = Agent(config)
    collector = agent.collector
    await collector.collect_all()
    [state] = collector.states
    assert state.health.up is False and "max_body_size" in (state.health.last_error or "")
    await collector.stop()


async def test_a_refused_connection_is_a_one_line_reason(aiohttp_client: Any) -> None:
    """Nothing listening: down, with the address in the reason."""
    config = parse_config({"inputs": {"pharo": [{"urls": ["http://127.0.0.1:9/stats"]}]}})
    agent = Agent(config)
    collector = agent.collector
    await collector.collect_all()
    [state] = collector.states
    assert state.health.up is False
    assert "127.0.0.1:9" in (state.health.last_error or "")
    await collector.stop()


async def test_recovery_after_a_restart_of_the_vm(aiohttp_client: Any, simulator: str) -> None:
    """A target comes back up by itself once it answers again."""
    good = f"{simulator}/6/stats.json"
    config = parse_config({"inputs": {"pharo": [{"urls": [good]}]}})
    agent = Agent(config)
    collector = agent.collector
    [state] = collector.states
    target = state.target
    target.url = good + "?fault=500"  # type: ignore[attr-defined]
    await collector.collect(state)
    assert state.health.up is False
    target.url = good  # type: ignore[attr-defined]
    await collector.collect(state)
    assert state.health.up is True and state.health.consecutive_failures == 0
    await collector.stop()


def test_credentials_never_appear_in_the_target_name() -> None:
    """user:password in a URL is dropped from tags, logs and the index page."""
    assert display_url("http://bob:s3cret@vm:8080/stats") == "http://vm:8080/stats"


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ({"urls": []}, "inputs.pharo.0.urls", "at least 1"),
        ({"urls": ["ftp://x/"]}, "inputs.pharo.0.urls.0", "not an http"),
        ({"urls": ["http://a/"], "format": "xml"}, "inputs.pharo.0.format", "'auto'"),
        ({"urls": ["http://a/"], "instances": {"http://b/": "x"}}, "inputs.pharo.0", "not one of"),
        ({"urls": ["http://a/"], "username": "u"}, "inputs.pharo.0", "username and password"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], key: str, message: str) -> None:
    """Bad `[[inputs.pharo]]` tables are config errors naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [table]}})
    [(where, what)] = info.value.details
    assert where == key and message in what


async def test_stored_in_influxdb_for_every_format(
    aiohttp_client: Any, simulator: str, influxdb: InfluxDB
) -> None:
    """The lines of every format are accepted by InfluxDB and read back with their tags."""
    urls = [f"{simulator}/{n}{path}" for n, path in enumerate(FORMAT_PATHS.values(), start=1)]
    instances = {url: fmt for url, fmt in zip(urls, FORMAT_PATHS, strict=True)}
    body = await scrape_once(
        aiohttp_client,
        {"pharo": [{"urls": urls, "instances": instances}]},
        global_tags={"host": "ci"},
    )
    db = influxdb.create_database(f"pharo_{uuid.uuid4().hex[:8]}")
    status, text = influxdb.write(db, body.encode())
    assert status == 204, text
    series = influxdb.series(db, 'SELECT * FROM "pharo" GROUP BY "instance"')
    by_instance = {
        s["tags"]["instance"]: dict(zip(s["columns"], s["values"][0], strict=True)) for s in series
    }
    assert sorted(by_instance) == sorted(FORMAT_PATHS)
    for fmt, row in by_instance.items():
        assert row["memory"] > 0 and row["fullGCs"] is not None, fmt
        assert row["memory"] - row["memoryFree"] > 0, fmt
    keys = influxdb.series(db, 'SHOW FIELD KEYS FROM "pharo"')[0]["values"]
    types = dict((name, kind) for name, kind in keys)
    assert types["memory"] == "integer" and types["uptime"] == "integer"


async def test_demo_app_serves_pharo_lines(aiohttp_client: Any) -> None:
    """`telemon demo` wires a simulator and a telemon that scrapes every format."""
    from telemon.demo import DEMO_PATHS, demo_app

    app: web.Application = demo_app("127.0.0.1:0")
    client: TestClient = await aiohttp_client(app)
    collector = client.server.app[AGENT_KEY].collector
    await collector.collect_all()
    body = await (await client.get("/metrics")).text()
    instances = {line.tags["instance"] for line in lines_of(body, "pharo")}
    assert instances == {f"demo-{fmt}" for fmt in DEMO_PATHS}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"urls": ["http://vm/"], "token": "T", "username": "u", "password": "p"},
            "username/password and token both set the Authorization header; keep one",
        ),
        (
            {"urls": ["http://vm/", "http://a:b@vm/"], "username": "u", "password": "p"},
            "username/password and user:password in urls.1 both set the Authorization header",
        ),
        (
            {"urls": ["http://a:b@vm/"], "token": "T"},
            "token and user:password in urls.0 both set the Authorization header",
        ),
        (
            {"urls": ["http://vm/"], "headers": {"authorization": "X"}, "username": "u",
             "password": "p"},
            "username/password and headers.authorization both set the Authorization header",
        ),
        (
            {"urls": ["http://:b@vm/"], "headers": {"Authorization": "X"}},
            "headers.Authorization and user:password in urls.0 both set",
        ),
    ],
    ids=["token+basic", "url+basic", "url+token", "header+basic", "header+url"],
)  # fmt: skip
def test_two_sources_of_authorization_are_a_config_error(
    table: dict[str, Any], message: str
) -> None:
    """Combinations aiohttp refuses at every request are refused by `telemon check` instead."""
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [table]}})
    [(where, what)] = info.value.details
    assert where == "inputs.pharo.0" and what.startswith(message)
    assert "b@" not in what and "s3cret" not in what


def test_one_source_of_authorization_per_table_is_accepted(tmp_path: Path) -> None:
    """Credentials in a URL, basic auth, a token or a header: each alone is fine."""
    token_file = tmp_path / "token"
    token_file.write_text("T\n")
    for table in (
        {"urls": ["http://a:b@vm/", "http://@vm/other"]},
        {"urls": ["http://@vm/"], "username": "u", "password": "p"},
        {"urls": ["http://vm/"], "token_file": str(token_file)},
        {"urls": ["http://vm/"], "headers": {"Authorization": "Basic eDp5"}},
    ):
        parse_config({"inputs": {"pharo": [table]}})


@pytest.mark.parametrize("url", ["http://vm:99999/stats", "http://vm:0/stats", "http://vm:x/"])
def test_a_port_out_of_range_is_a_config_error(url: str) -> None:
    """An invalid port fails `telemon check` on its URL, not the first request at start-up."""
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": ["http://vm:8080/", url]}]}})
    [(where, what)] = info.value.details
    assert where == "inputs.pharo.0.urls.1"
    assert what == f"{url!r}: the port is not a number from 1 to 65535"


def test_a_bad_port_message_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": ["http://bob:s3cret@vm:99999/"]}]}})
    [(_, what)] = info.value.details
    assert "s3cret" not in what and "'http://vm:99999/'" in what


def test_a_tls_ca_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    """tls_ca is loaded by the config check, so a wrong file never reaches start-up."""
    cert, _ = make_certificate(tmp_path)
    parse_config({"inputs": {"pharo": [{"urls": ["https://vm/"], "tls_ca": str(cert)}]}})
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": ["https://vm/"], "tls_ca": str(garbage)}]}})
    [(where, what)] = info.value.details
    assert where == "inputs.pharo.0"
    assert what.startswith(f"tls_ca: cannot use {garbage}: ") and "\n" not in what


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b" \n", "{path} is empty"), (b"\xff\xfe", "{path} is not UTF-8 text")],
)
def test_a_token_file_is_read_by_the_config_check(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """An empty or binary token file fails `telemon check`, not every poll."""
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": ["http://vm/"], "token_file": str(path)}]}})
    assert info.value.details == [("inputs.pharo.0", "token_file: " + reason.format(path=path))]


@pytest.mark.parametrize("key", ["token_file", "tls_ca"])
def test_a_path_the_os_refuses_to_look_at_is_a_config_error(key: str) -> None:
    """ENAMETOOLONG (like EACCES on a parent directory) is one line naming the key."""
    path = "/" + "x" * 300
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": ["http://vm/"], key: path}]}})
    reason = f"{key}: cannot read {path}: File name too long"
    assert info.value.details == [("inputs.pharo.0", reason)]


async def test_urls_sharing_host_and_port_get_the_path_in_instance(
    aiohttp_client: Any, simulator: str
) -> None:
    """Two images behind one server are two series; a named URL and a lone host keep theirs."""
    first, second, named = (f"{simulator}/{n}/stats.json" for n in (1, 2, 3))
    alone = first.replace("127.0.0.1", "localhost")
    table = {"urls": [first, second, named, alone], "instances": {named: "blog"}}
    body = await scrape_once(aiohttp_client, {"pharo": [table]})
    host_port = first.split("/")[2]
    instances = sorted(line.tags["instance"] for line in lines_of(body, "pharo"))
    assert instances == sorted(
        [f"{host_port}/1/stats.json", f"{host_port}/2/stats.json", "blog", alone.split("/")[2]]
    )


def test_credentials_are_dropped_from_ipv6_urls() -> None:
    """The brackets of an IPv6 address stay: without them the URL would not parse back."""
    assert display_url("http://bob:s3cret@[::1]:8080/stats") == "http://[::1]:8080/stats"
    assert display_url("https://bob@[fe80::1]/x?y=1") == "https://[fe80::1]/x?y=1"
    assert display_url("http://[::1]:8080/stats") == "http://[::1]:8080/stats"


async def test_uptime_right_after_a_vm_restart(aiohttp_client: Any, simulator: str) -> None:
    """A VM started during the request still gets `uptime` (read against the clock after it)."""
    url = f"{simulator}/2/vm/parameters?fault=restart"
    body = await scrape_once(aiohttp_client, {"pharo": [{"urls": [url], "format": "parameters"}]})
    [line] = lines_of(body, "pharo")
    uptime = line.fields.get("uptime")
    assert isinstance(uptime, int) and uptime >= 0, line


def test_uptime_is_clamped_for_a_start_a_moment_ahead_and_dropped_for_nonsense() -> None:
    """Clocks read a moment apart: a slightly later start is uptime 0, an hour later is none."""
    now_ns = time.time_ns()
    smalltalk_now_us = now_ns // 1000 + 2_177_452_800 * 1_000_000

    def uptime_for(started_us: int) -> object:
        sample = Sample("pharo", fields={"startMicroseconds": started_us})
        [metric] = samples_to_metrics([sample], "pharo", "vm:80", now_ns)
        return metric.fields.get("uptime")

    assert uptime_for(smalltalk_now_us - 5_000_000) == 5000
    assert uptime_for(smalltalk_now_us + 2_000) == 0
    assert uptime_for(smalltalk_now_us + 3600 * 1_000_000) is None


async def test_urls_differing_only_in_their_query_get_it_in_instance(
    aiohttp_client: Any, simulator: str
) -> None:
    """`?vm=a` and `?vm=b` are two series; a parameter named like a credential never shows."""
    a, b = f"{simulator}/metrics?vm=a", f"{simulator}/metrics?vm=b"
    secret = f"{simulator}/metrics?token=s3cret&vm=c"
    other_path = f"{simulator}/stats.json"
    body = await scrape_once(aiohttp_client, {"pharo": [{"urls": [a, b, secret, other_path]}]})
    host_port = a.split("/")[2]
    instances = sorted(line.tags["instance"] for line in lines_of(body, "pharo"))
    assert instances == sorted(
        [
            f"{host_port}/metrics?vm=a",
            f"{host_port}/metrics?vm=b",
            f"{host_port}/metrics?vm=c",
            f"{host_port}/stats.json",
        ]
    )
    assert not [line for line in lines_of(body, "pharo") if "s3cret" in repr(line)]


@pytest.mark.parametrize(
    ("urls", "instances", "message"),
    [
        (["http://a/x", "http://a/x"], {}, "urls: urls.1 repeats urls.0"),
        (
            ["http://a/x", "http://b/y"],
            {"http://a/x": "blog", "http://b/y": "blog"},
            "instances: urls.0 and urls.1 would both be instance 'blog';",
        ),
        (
            ["http://a/m?token=1", "http://a/m?token=2"],
            {},
            "instances: urls.0 and urls.1 would both be instance 'a:80/m';",
        ),
        (
            ["http://a:8079/m", "http://b/m"],
            {"http://b/m": "a:8079"},
            "instances: urls.0 and urls.1 would both be instance 'a:8079';",
        ),
    ],
)
def test_urls_that_would_share_an_instance_are_a_config_error(
    urls: list[str], instances: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"pharo": [{"urls": urls, "instances": instances}]}})
    [(where, what)] = info.value.details
    assert where == "inputs.pharo.0" and what.startswith(message), what
    assert "\n" not in what


def test_telemon_check_refuses_two_urls_of_one_instance(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[[inputs.pharo]]\nurls = ["http://a/m?key=1", "http://a/m?key=2"]\n', encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "telemon", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines() == [
        f"{path}: inputs.pharo.0: instances: urls.0 and urls.1 would both be instance"
        " 'a:80/m'; give them different names in instances"
    ]
