"""An output's honest health: up only while its last write stored its batch.

Also: lines a database refuses in a batch it otherwise stores (a partial
write) are counted exactly, against the real InfluxDB 1.6.7; a push asks the
source for its lines (never a scrape); the backoff and the age of what waits
follow injected clocks, so nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import T0_NS, Clocks
from influx import InfluxDB

from telemon.outputs.base import OutputRunner, RunOptions, refused_lines
from telemon.outputs.influxdb import InfluxDBSender
from telemon.outputs.spool import Spool

LINES = [f"m v={n}i {n}\n".encode() for n in range(6)]
T0 = T0_NS  # the wall clock's start, ns


class Source:
    """A line source as the agent is one: listeners, and lines for each push."""

    def __init__(self, pushed: bytes = b"") -> None:
        self.listeners: list[Callable[[bytes], None]] = []
        self.pushed = pushed
        self.pushes = 0

    async def push_lines(self) -> bytes:
        self.pushes += 1
        return self.pushed


class Scripted:
    """A /write (and /api/v2/write) answering the scripted (status, body) in turn, then 204."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.requests = 0

    async def write(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        status, body = self.answers.pop(0) if self.answers else (204, "")
        content_type = "application/json" if body.startswith("{") else "text/plain"
        return web.Response(status=status, text=body or None, content_type=content_type)


async def scripted_url(aiohttp_server: Any, script: Scripted) -> str:
    app = web.Application()
    app.router.add_post("/write", script.write)
    app.router.add_post("/api/v2/write", script.write)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def make_runner(
    url: str, clocks: Clocks, spool: Spool | None = None, source: Source | None = None
) -> OutputRunner:
    sender = InfluxDBSender(url, "db", create_database=False)
    options = RunOptions(flush_interval=1.0, batch_size=2, max_retry_interval=10.0, timeout=2)
    return OutputRunner(
        source or Source(),
        sender,
        spool if spool is not None else Spool(None, 100_000),
        options,
        clock=clocks.monotonic,
        wall_clock=clocks.wall_ns,
    )


def health(runner: OutputRunner) -> tuple[bool | None, str | None]:
    """Up, and why not (a function: the runner's fields change under a type checker's eyes)."""
    return runner.up, runner.last_error


def output_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "telemon.outputs" and r.levelno == level
    ]


# --- health -------------------------------------------------------------------------


async def test_up_follows_the_last_write_and_logs_each_change_once(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "telemon.outputs")
    unavailable = (503, '{"error":"engine warming up"}')
    script = Scripted(unavailable, unavailable)
    clocks = Clocks()
    runner = make_runner(await scripted_url(aiohttp_server, script), clocks)
    status = runner.status_metric(T0).fields
    assert runner.up is None and status["up"] == 0  # nothing tried yet: not up
    assert (status["pending_lines"], status["oldest_unwritten_s"]) == (0, 0.0)

    runner.on_collect(b"".join(LINES))
    clocks.advance(3)
    status = runner.status_metric(clocks.wall).fields
    assert (status["pending_lines"], status["oldest_unwritten_s"]) == (6, 3.0)

    await runner.flush()  # 503: down, everything to the spool
    assert health(runner) == (False, "HTTP 503: engine warming up")
    status = runner.status_metric(clocks.wall).fields
    assert (status["up"], status["failed"], status["spool_lines"]) == (0, 1, 6)
    assert status["pending_lines"] == 0 and status["spool_bytes"] == runner.spool.bytes > 0
    assert status["oldest_unwritten_s"] == 3.0

    clocks.advance(20)  # past the longest backoff
    await runner.flush()  # 503 again, same reason: no second warning
    assert runner.status_metric(clocks.wall).fields["oldest_unwritten_s"] == 23.0
    [warning] = output_records(caplog, logging.WARNING)
    assert "down: cannot write (HTTP 503: engine warming up)" in warning
    assert not output_records(caplog, logging.INFO)

    clocks.advance(20)
    await runner.flush()
    assert health(runner) == (True, None) and runner.last_success_ns == clocks.wall
    status = runner.status_metric(clocks.wall).fields
    assert (status["up"], status["written"], status["failed"], status["retried"]) == (1, 6, 2, 2)
    assert (status["spool_lines"], status["pending_lines"], status["oldest_unwritten_s"]) == (
        0,
        0,
        0.0,
    )
    [info] = output_records(caplog, logging.INFO)
    assert "up, writing again" in info
    assert len(output_records(caplog, logging.WARNING)) == 1
    metric = runner.status_metric(clocks.wall)
    assert (metric.measurement, metric.tags) == (
        "telemon_output",
        {"output": "influxdb", "url": runner.sender.url},
    )
    await runner.stop()


async def test_backoff_follows_the_injected_clock(aiohttp_server: Any) -> None:
    script = Scripted((503, "busy"))
    clocks = Clocks()
    runner = make_runner(await scripted_url(aiohttp_server, script), clocks)
    runner.on_collect(LINES[0])
    await runner.flush()
    assert script.requests == 1
    runner.on_collect(LINES[1])
    await runner.flush()  # the clock has not moved: still backing off, no request
    assert (script.requests, runner.spool.lines) == (1, 2)
    clocks.advance(20)
    await runner.flush()
    assert (script.requests, runner.stats.written, runner.up) == (3, 2, True)
    await runner.stop()


async def test_a_refused_batch_is_down_until_a_write_succeeds(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "telemon.outputs")
    refused = (401, '{"error":"authorization failed"}')
    script = Scripted(refused, refused)
    clocks = Clocks()
    runner = make_runner(await scripted_url(aiohttp_server, script), clocks)
    runner.on_collect(b"".join(LINES[:4]))
    await runner.flush()  # two batches, both refused
    assert (runner.up, runner.last_error) == (False, "HTTP 401: authorization failed")
    assert (runner.stats.dropped, runner.stats.failed, runner.spool.lines) == (4, 2, 0)
    [warning] = output_records(caplog, logging.WARNING)  # once for the same reason
    assert "down: the database refused a batch of 2 lines (HTTP 401" in warning
    runner.on_collect(LINES[4])
    await runner.flush()
    assert (runner.up, runner.stats.written) == (True, 1)
    assert len(output_records(caplog, logging.INFO)) == 1
    await runner.stop()


async def test_an_unexpected_error_in_a_write_is_down_too() -> None:
    class Broken:
        name, url = "influxdb", "http://broken"

        async def send(self, data: bytes) -> None:
            raise RuntimeError("a bug")

        async def aclose(self) -> None:
            pass

    options = RunOptions(flush_interval=1.0, batch_size=2, max_retry_interval=10.0, timeout=2)
    runner = OutputRunner(Source(), Broken(), Spool(None, 10_000), options)
    runner.on_collect(LINES[0])
    with pytest.raises(RuntimeError):
        await runner.flush()
    assert (runner.up, runner.last_error) == (False, "RuntimeError('a bug')")


async def test_the_age_of_what_waits_survives_a_restart(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    script = Scripted((503, "away"))
    clocks = Clocks()
    url = await scripted_url(aiohttp_server, script)
    first = make_runner(url, clocks, Spool(tmp_path, 100_000))
    first.on_collect(LINES[0])
    clocks.advance(1)
    first.on_collect(LINES[1])
    await first.flush()
    assert first.spool.lines == 2
    await first.stop()  # the sender is closed; the spool stays on disk

    clocks.advance(60)
    spool = Spool(tmp_path, 100_000)
    assert spool.oldest_ns == T0  # when the first line came, not when it was spooled
    second = make_runner(url, clocks, spool)
    assert second.status_metric(clocks.wall).fields["oldest_unwritten_s"] == 61.0
    await second.flush()
    assert (second.up, second.stats.written, second.spool.lines) == (True, 2, 0)
    assert second.status_metric(clocks.wall).fields["oldest_unwritten_s"] == 0.0
    await second.stop()


def test_a_spool_from_an_older_telemon_takes_the_files_time(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000003-1.lp").write_bytes(LINES[0])
    mtime = (tmp_path / "00000000000000000003-1.lp").stat().st_mtime_ns
    spool = Spool(tmp_path, 10_000)
    assert (spool.lines, spool.oldest_ns) == (1, mtime)
    head = spool.peek()
    assert head is not None and (head.data, head.seq) == (LINES[0], 3)


async def test_a_flush_pushes_the_sources_lines_not_a_scrape(aiohttp_server: Any) -> None:
    script = Scripted()
    source = Source(pushed=b"telemon,host=a scrapes=0i 5\n")
    runner = make_runner(await scripted_url(aiohttp_server, script), Clocks(), source=source)
    await runner.flush()
    await runner.flush()  # the same self-metrics line again: pushed once
    assert (source.pushes, runner.stats.written) == (2, 1)
    runner.start()
    try:
        assert source.listeners == [runner.on_collect]
    finally:
        await runner.stop()
    assert source.listeners == []


# --- partial writes ---------------------------------------------------------------------

# Answers of InfluxDB 1.6.7 (seen here) and 2.x to batches it stored but in part.
PARTIAL_ANSWERS = [
    ('{"error":"partial write: points beyond retention policy dropped=2"}', 2),
    (
        '{"error":"partial write: field type conflict: input field \\"v\\" on measurement '
        '\\"m\\" is type float, already exists as type integer dropped=1"}',
        1,
    ),
    (
        '{"error":"partial write: unable to parse \'ts,k=max f=1i 9223372036854775807\': '
        'time outside range -9223372036854775806 - 9223372036854775806 dropped=0"}',
        1,
    ),
    (
        '{"error":"partial write: unable to parse \'m dropped=5 1\': bad\\n'
        "unable to parse 'm x=': missing field value dropped=0\"}",
        2,
    ),
    (
        '{"code":"unprocessable entity","message":"failure writing points to database: '
        "partial write: dropped 3 points outside retention policy of duration 1h0m0s - "
        "oldest point m at 1970-01-01T00:00:00Z dropped because it violates a Retention "
        'Policy Lower Bound dropped=3 for database: 0a for retention policy: autogen"}',
        3,
    ),
]


@pytest.mark.parametrize(("answer", "refused"), PARTIAL_ANSWERS)
def test_refused_lines_of_partial_writes(answer: str, refused: int) -> None:
    message = json.loads(answer)
    assert refused_lines(message.get("error") or message["message"]) == refused


@pytest.mark.parametrize(
    "message",
    [
        "unable to parse 'm v=': missing field value",  # nothing stored: the whole batch
        'database not found: "db"',
        "partial write: cut sho",  # no count: the whole batch
    ],
)
def test_answers_that_are_not_partial_writes(message: str) -> None:
    assert refused_lines(message) is None


def _good_lines(measurement: str, count: int, start_ns: int) -> list[bytes]:
    return [f"{measurement},n={n} v={n}i {start_ns + n}\n".encode() for n in range(count)]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("ts,k=max f=1i 9223372036854775807\n", "time outside range"),
        ("{m},n=x v=1.5 {t}\n", "field type conflict"),
        ("{m},n=old v=1i 1000\n", "points beyond retention policy"),
    ],
)
async def test_a_partial_write_counts_exactly_the_refused_lines(
    influxdb: InfluxDB, caplog: pytest.LogCaptureFixture, bad: str, reason: str
) -> None:
    database = f"partial_{reason.split()[0]}"
    status, text = await asyncio.to_thread(
        influxdb._request,
        "POST",
        "/query",
        {"q": f'CREATE DATABASE "{database}" WITH DURATION 1h'},  # 1970 is beyond it
    )
    assert status == 200, text
    start = time.time_ns()
    # The field's type set before: a conflict within one new batch refuses it whole.
    status, text = await asyncio.to_thread(
        influxdb.write, database, f"m,n=seed v=0i {start - 1}\n".encode()
    )
    assert status == 204, text
    lines = _good_lines("m", 129, start)
    lines.insert(64, bad.format(m="m", t=start + 500).encode())
    sender = InfluxDBSender(influxdb.url, database)  # gzip, as by default
    options = RunOptions(flush_interval=1.0, batch_size=1000, max_retry_interval=1.0, timeout=5)
    runner = OutputRunner(Source(), sender, Spool(None, 10**6), options)
    runner.on_collect(b"".join(lines))
    await runner.flush()
    await runner.stop()
    query = f"SELECT count(v) FROM m WHERE time >= {start}"
    rows = await asyncio.to_thread(influxdb.series, database, query)
    assert rows[0]["values"][0][1] == 129  # the database stored the others
    stats = runner.stats
    assert (stats.written, stats.dropped, stats.failed, runner.up) == (129, 1, 0, True)
    [warning] = output_records(caplog, logging.WARNING)
    assert "refused 1 of 130 lines" in warning and reason in warning
    assert len(warning) < 400 and "\n" not in warning


async def test_partial_writes_are_logged_once_until_a_batch_is_stored_whole(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    partial = (400, PARTIAL_ANSWERS[1][0])
    script = Scripted(partial, partial, (204, ""), partial)
    clocks = Clocks()
    runner = make_runner(await scripted_url(aiohttp_server, script), clocks)
    for round_ in range(4):
        runner.on_collect(b"".join(LINES[:2]))
        await runner.flush()
        assert runner.up is True, round_
    assert (runner.stats.written, runner.stats.dropped) == (5, 3)
    assert len(output_records(caplog, logging.WARNING)) == 2
    await runner.stop()


async def test_v2_partial_write_counts_the_refused_lines(aiohttp_server: Any) -> None:
    pytest.importorskip("influxdb_client")
    from telemon.outputs.influxdb_v2 import InfluxDBv2Sender

    answer = PARTIAL_ANSWERS[4][0]  # InfluxDB 2.7: 422 unprocessable entity
    script = Scripted((422, answer))
    url = await scripted_url(aiohttp_server, script)
    sender = InfluxDBv2Sender(url, "o", "b", token="t")
    options = RunOptions(flush_interval=1.0, batch_size=10, max_retry_interval=1.0, timeout=5)
    runner = OutputRunner(Source(), sender, Spool(None, 10**6), options)
    runner.on_collect(b"".join(LINES))
    await runner.flush()
    await runner.stop()
    assert (runner.stats.written, runner.stats.dropped, runner.up) == (3, 3, True)
