"""Logs (issue 16): one printable line per record, what runs at start, debug polls and requests."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import FakeTarget, basic_auth, free_port, wait_until

from telemon.agent import Agent
from telemon.collector import Collector, TargetState
from telemon.config import parse_config
from telemon.lineprotocol import LineEncoder
from telemon.logs import escape_text, setup_logging
from telemon.server import create_app
from telemon.simulator.app import start_simulator

# Raw control bytes of any kind (C0 but the log's own "\n", DEL, C1), as a terminal would act on.
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")
# What a `garbage` body may hold once decoded: every byte value, and non-characters.
UPSTREAM = "ok \x1b[31mred\x1b[0m\r\nsecond\tline\x00\x7f\x85\x9b\u2028\ud800 é \ufffd 漢"


@pytest.fixture
def root_logging() -> Iterator[io.StringIO]:
    """telemon's own log set-up, writing to a buffer; the root logger restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield io.StringIO()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# --- escaping ----------------------------------------------------------------------------


def test_escape_text_leaves_printable_text_alone() -> None:
    text = "input pharo target http://vm:8080/metrics: HTTP 500 é \ufffd 漢 'quoted' \\x41"
    assert escape_text(text) is text


def test_escape_text_escapes_every_control_and_non_printable_character() -> None:
    escaped = escape_text(UPSTREAM)
    assert escaped.isprintable()
    assert escaped == (
        "ok \\x1b[31mred\\x1b[0m\\r\\nsecond\\tline\\x00\\x7f\\x85\\x9b\\u2028\\ud800 é \ufffd 漢"
    )
    assert escape_text("\U000e0001") == "\\U000e0001"  # a non-printable beyond the BMP


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_record_carrying_upstream_text_is_one_printable_line(
    root_logging: io.StringIO, log_format: Any
) -> None:
    setup_logging("info", log_format)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(root_logging)  # pytest's capture replaces stderr at each phase
    logging.getLogger("telemon.test").warning("input pharo target t: %s", UPSTREAM)
    try:
        raise ValueError(UPSTREAM)
    except ValueError:
        logging.getLogger("telemon.test").exception("with a traceback")
    lines = root_logging.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable(), line
        assert not RAW_CONTROL.search(line.encode("utf-8", "surrogateescape"))
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert entries[0]["message"] == "input pharo target t: " + escape_text(UPSTREAM)
        assert escape_text(UPSTREAM) in entries[1]["exception"]
    else:
        assert lines[0].endswith("telemon.test: input pharo target t: " + escape_text(UPSTREAM))


# --- what runs, at start -------------------------------------------------------------------


def test_describe_names_each_input_output_and_the_sink() -> None:
    config = parse_config(
        {
            "agent": {"interval": "10s"},
            "global_tags": {"dc": "eu"},
            "inputs": {
                "pharo": [
                    {"urls": ["http://vm1:8080/metrics", "http://vm2:8080/metrics"]},
                    {"urls": ["http://slow:8080/metrics"], "interval": "1m", "timeout": "20s"},
                ],
                "process": [{}],
            },
            "outputs": {"influxdb": [{"urls": ["http://db:8086"], "flush_interval": "30s"}]},
            "sink": {"enabled": True, "ttl": "5m"},
        }
    )
    lines = Agent(config).describe()
    assert lines == [
        "input pharo: 2 targets every 10s (timeout 5s):"
        " http://vm1:8080/metrics, http://vm2:8080/metrics",
        "input pharo: 1 target every 60s (timeout 20s): http://slow:8080/metrics",
        "input process: 1 target every 10s (timeout 5s): self",
        "output influxdb: http://db:8086 every 30s (batches of 1000 lines)",
        "sink: /telegraf, /write, /api/v2/write (series kept 300s)",
        "global tags: dc=eu",
    ]


def test_describe_counts_the_targets_past_ten() -> None:
    urls = [f"http://vm{i}:8080/metrics" for i in range(25)]
    config = parse_config({"inputs": {"pharo": [{"urls": urls}]}})
    (line,) = Agent(config).describe()
    assert line.endswith("http://vm9:8080/metrics and 15 more")
    assert "vm10" not in line


# --- debug: polls and requests ---------------------------------------------------------------


async def test_debug_logs_each_poll_with_target_duration_and_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = FakeTarget("good", count=3), FakeTarget("bad")
    bad.error = OSError("refused \x1b[2J")
    collector = Collector(
        [TargetState("fake", good, 10.0, 5.0), TargetState("fake", bad, 10.0, 5.0)],
        LineEncoder(),
    )
    with caplog.at_level(logging.DEBUG, logger="telemon.collector"):
        for state in collector.states:
            await collector.collect(state)
    polls = [r.getMessage() for r in caplog.records if "polled in" in r.getMessage()]
    assert len(polls) == 2
    assert re.fullmatch(r"input fake target good: polled in [\d.]+ ms, 3 lines, up", polls[0])
    assert re.fullmatch(
        r"input fake target bad: polled in [\d.]+ ms, 0 lines, failed: refused \x1b\[2J", polls[1]
    )


async def test_no_poll_lines_at_info(caplog: pytest.LogCaptureFixture) -> None:
    collector = Collector([TargetState("fake", FakeTarget("good"), 10.0, 5.0)], LineEncoder())
    with caplog.at_level(logging.INFO, logger="telemon.collector"):
        await collector.collect(collector.states[0])
    assert not [r for r in caplog.records if "polled in" in r.getMessage()]


async def test_debug_logs_scrapes_and_refused_requests_without_credentials(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        {
            "http": {"username": "ops", "password": "s3cret-pass"},
            "inputs": {"process": [{}]},
            "sink": {"enabled": True},
        }
    )
    caplog.set_level(logging.DEBUG, logger="telemon.http")
    client = await aiohttp_client(create_app(config))
    auth = {"Authorization": basic_auth("ops", "s3cret-pass")}
    response = await client.get("/metrics", headers=auth)
    body = await response.read()
    await client.get("/metrics", headers={"Authorization": "Bearer tok-3xyz"})
    await client.get("/metrics", headers={"Authorization": basic_auth("ops", "wrong-pass")})
    await client.get("/no%1b[2Jwhere", headers=auth)
    await client.post("/write", data=b"m value=\x1b\n", headers=auth)
    messages = [r.getMessage() for r in caplog.records if r.name == "telemon.http"]
    assert re.fullmatch(
        rf"scrape from 127\.0\.0\.1: 200, {len(body)} bytes in [\d.]+ ms", messages[0]
    ), messages
    assert messages[1:3] == ["refused GET /metrics from 127.0.0.1: 401 unauthorized"] * 2
    assert messages[3] == "refused GET /no\x1b[2Jwhere from 127.0.0.1: 404 Not Found"
    assert messages[4].startswith("refused POST /write from 127.0.0.1: 400 ")
    logged = "\n".join(messages)
    for secret in ("s3cret-pass", "wrong-pass", "tok-3xyz", auth["Authorization"][6:]):
        assert secret not in logged


async def test_no_request_log_unless_debug(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="telemon.http")
    client = await aiohttp_client(create_app(parse_config({"inputs": {"process": [{}]}})))
    assert (await client.get("/metrics")).status == 200
    assert not [r for r in caplog.records if r.name == "telemon.http"]


# --- a real `telemon serve`, polling garbage ----------------------------------------------------


async def test_serve_at_debug_logs_polls_scrapes_and_no_raw_bytes_of_a_garbage_body(
    tmp_path: Path,
) -> None:
    simulator, sim_port = await start_simulator()
    port = free_port()
    base = f"http://127.0.0.1:{sim_port}"
    urls = [f"{base}/metrics?fault=garbage", f"{base}/stats.json?fault=garbage",
            f"{base}/vm/report?fault=garbage", f"{base}/metrics"]  # fmt: skip
    config = tmp_path / "telemon.toml"
    config.write_text(
        '[agent]\ninterval = "1s"\n[sink]\nenabled = true\n'
        f"[[inputs.pharo]]\nurls = {json.dumps(urls)}\n",
        encoding="utf-8",
    )
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "telemon", "serve", "-c", str(config),
             "--listen", f"127.0.0.1:{port}", "--log-level", "debug"],
            stderr=stderr, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:

        def garbage_polled() -> bool:
            text = log.read_bytes()
            return all(f"target {url}: polled in".encode() in text for url in urls)

        await wait_until(garbage_polled, timeout=30, every=0.05, what="every target polled")
        async with aiohttp.ClientSession() as session:
            plain = {"Accept-Encoding": "identity"}  # the bytes logged are those sent
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers=plain) as response:
                assert response.status == 200
                scraped = len(await response.read())
            # A path is the client's text: its escape sequence reaches the refusal's line.
            async with session.get(f"http://127.0.0.1:{port}/x%1b[2J%07y") as r:
                assert r.status == 404
            path = "/write?" + urllib.parse.urlencode({"db": "x"})
            async with session.post(f"http://127.0.0.1:{port}{path}", data=b"m\x1b v=\x07") as r:
                assert r.status == 400

        def scrape_logged() -> bool:
            return b"telemon.http: refused POST /write" in log.read_bytes()

        await wait_until(scrape_logged, timeout=30, every=0.05, what="the requests logged")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
        await simulator.cleanup()
    data = log.read_bytes()
    assert not RAW_CONTROL.search(data), RAW_CONTROL.search(data)
    text = data.decode("utf-8")
    assert all(line.isprintable() for line in text.splitlines())
    assert f"scrape from 127.0.0.1: 200, {scraped} bytes in " in text
    assert re.search(rf"target {re.escape(urls[3])}: polled in [\d.]+ ms, \d+ lines, up", text)
    assert re.search(rf"target {re.escape(urls[0])}: polled in [\d.]+ ms, 0 lines, failed: ", text)
    assert "refused GET /x\\x1b[2J\\x07y from 127.0.0.1: 404 Not Found" in text
    assert "INFO telemon: input pharo: 4 targets every 1s (timeout 5s): " in text
    assert "INFO telemon: sink: /telegraf, /write, /api/v2/write (series kept 2s)" in text


def test_once_prints_a_failed_targets_reason_escaped(tmp_path: Path) -> None:
    """`telemon once` prints each failed target's reason on stderr: escaped as the logs are."""
    (tmp_path / "noisy.py").write_text(
        'def fail():\n    raise ValueError("\\x1b[2Jupstream\\r\\nsays\\x07")\n', encoding="utf-8"
    )
    config = tmp_path / "telemon.toml"
    config.write_text(
        '[[inputs.fields]]\nmeasurement = "app"\n[inputs.fields.fields]\nx = "noisy:fail"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "telemon", "once", "-c", str(config)],
        capture_output=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert not RAW_CONTROL.search(done.stderr), done.stderr
    assert b"\\x1b[2Jupstream\\r\\nsays\\x07" in done.stderr
