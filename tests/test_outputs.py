"""Outputs: pushing to real InfluxDB 1.x and VictoriaMetrics (v2 API), through outages.

The status-code matrix runs against a small aiohttp server, since real
databases cannot be made to answer each code on demand.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import Clocks, free_port, require_executable, wait_until
from influx import InfluxDB, _spawn, _wait_ready, write_config
from victoria import VictoriaMetrics, run_victoria

from telemon.config import ConfigError, parse_config
from telemon.lineprotocol import EncoderOptions, LineEncoder
from telemon.metric import FieldValue, Metric
from telemon.outputs import OutputsConfig, build_outputs
from telemon.outputs.base import OutputRunner, RunOptions, WriteError
from telemon.outputs.influxdb import InfluxDBSender
from telemon.outputs.spool import Spool

INTERVAL = 0.1  # of the counting target
FLUSH = 0.2  # of the outputs
DEADLINE = 30.0
POLL_S = 0.1  # a poll asks a real database: not too often


class Counter:
    """A polled target recording the timestamp of every point it gives."""

    def __init__(self, run: str, stamps: list[int], note: str = "two\nlines") -> None:
        self.run = run
        self.stamps = stamps
        self.note = note

    async def collect(self, now_ns: int) -> list[Metric]:
        self.stamps.append(now_ns)
        # A raw newline in a string field: bodies must never be split on LF naively.
        fields: dict[str, FieldValue] = {"n": len(self.stamps), "note": self.note}
        return [Metric("outage", {"run": self.run}, fields, now_ns)]


ENCODER = LineEncoder(EncoderOptions())


class PollingSource:
    """A line source as the agent is one: polls a counter, and pushes the outputs' status."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.listeners: list[Callable[[bytes], None]] = []
        self.runners: list[OutputRunner] = []
        self._task: asyncio.Task[None] | None = None

    async def push_lines(self) -> bytes:
        now = time.time_ns()
        return _encode([runner.status_metric(now) for runner in self.runners])

    async def _poll(self) -> None:
        while True:
            body = _encode(await self.counter.collect(time.time_ns()))
            for listener in self.listeners:
                listener(body)
            await asyncio.sleep(INTERVAL)  # the polling schedule, not a wait for a condition

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _encode(metrics: list[Metric]) -> bytes:
    return "".join(ENCODER.encode(metric) for metric in metrics).encode()


class Telemon:
    """A line source with its outputs, started and stopped like the agent does."""

    def __init__(self, counter: Counter, outputs: dict[str, Any]) -> None:
        if "influxdb_v2" in outputs:
            counter.note = "one line"  # VictoriaMetrics 1.79 skips lines with a raw LF in a string
        self.source = PollingSource(counter)
        config = OutputsConfig.model_validate(outputs)
        self.runners = build_outputs(config, self.source, interval=FLUSH, precision="ns")
        self.source.runners = self.runners

    def start(self) -> None:
        self.source.start()
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        await self.source.stop()
        for runner in self.runners:
            await runner.stop()


# --- a real InfluxDB 1.x that can be killed and started again on the same data -------


class Influxd:
    """influxd on fixed ports and a fixed data dir, so a restart keeps the data."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.config = write_config(directory, self.port, free_port())
        self.client = InfluxDB(f"http://127.0.0.1:{self.port}")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.directory / "influxd.log").open("ab")
        self.process = _spawn(self.binary, self.config, log)
        log.close()
        _wait_ready(self.process, self.client, self.directory / "influxd.log")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[Influxd]:
    (tmp_path / "influxd").mkdir()
    server = Influxd(require_executable("influxd", "influxdb"), tmp_path / "influxd")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _influx_stamps(server: Influxd, db: str, run: str) -> list[int]:
    try:
        series = server.client.series(db, f"SELECT n FROM outage WHERE run = '{run}'")
    except (OSError, AssertionError):
        return []
    return [row[0] for s in series for row in s["values"]]


async def test_v1_outage_and_restart_lose_nothing(influxd: Influxd, tmp_path: Path) -> None:
    stamps: list[int] = []
    run = "v1"
    outputs = {
        "influxdb": [
            {
                "urls": [influxd.client.url],
                "database": "telemon_test",
                "flush_interval": FLUSH,
                "metric_batch_size": 7,
                "max_retry_interval": 0.5,
                "timeout": 2,
                "spool_dir": str(tmp_path / "spool"),
            }
        ]
    }

    async def stored() -> list[int]:
        return await asyncio.to_thread(_influx_stamps, influxd, "telemon_test", run)

    await outage_scenario(run, stamps, outputs, stored, influxd.kill, influxd.start)
    assert sorted(await stored()) == stamps


async def outage_scenario(
    run: str,
    stamps: list[int],
    outputs: dict[str, Any],
    stored: Callable[[], Awaitable[list[int]]],
    kill: Callable[[], None],
    start: Callable[[], None],
) -> None:
    """Write, kill the database, keep collecting, restart telemon, start the database."""
    first = Telemon(Counter(run, stamps), outputs)
    first.start()
    try:
        await wait_until(
            lambda: _has(stored, 3), what="the first points", timeout=DEADLINE, every=POLL_S
        )
        kill()
        outage_from = len(stamps)
        await wait_until(
            lambda: _spooled(first.runners[0], 3),
            what="batches in the spool",
            timeout=DEADLINE,
            every=POLL_S,
        )
    finally:
        await first.stop()
    second = Telemon(Counter(run, stamps), outputs)
    assert second.runners[0].spool.lines > 0  # left by the first run, on disk
    second.start()
    try:
        # Keep collecting while the database is away.
        await wait_until(
            lambda: len(stamps) - outage_from >= 10,
            what="points of the outage",
            timeout=DEADLINE,
            every=POLL_S,
        )
        outage_to = len(stamps)
        await asyncio.to_thread(start)
        await wait_until(
            lambda: _has(stored, outage_to),
            what="the points of the outage",
            timeout=DEADLINE,
            every=POLL_S,
        )
    finally:
        await second.stop()
    await wait_until(
        lambda: _has(stored, len(stamps)),
        what="the points written at stop",
        timeout=DEADLINE,
        every=POLL_S,
    )
    assert outage_to - outage_from >= 10
    runner = second.runners[0]
    assert (runner.spool.lines, runner.stats.dropped) == (0, 0)


async def _has(stored: Callable[[], Awaitable[list[int]]], count: int) -> bool:
    return len(await stored()) >= count


def _spooled(runner: OutputRunner, lines: int) -> bool:
    return runner.spool.lines >= lines


async def test_v1_self_metrics_and_lazy_lines_reach_influxdb(influxd: Influxd) -> None:
    counter = Counter("self", [])
    outputs = {
        "influxdb": [
            {"urls": [influxd.client.url], "database": "selfm", "content_encoding": "identity"}
        ]
    }
    telemon = Telemon(counter, outputs)
    telemon.start()

    async def seen() -> bool:
        rows = (
            await asyncio.to_thread(
                influxd.client.series, "selfm", "SELECT written, url FROM telemon_output"
            )
            if telemon.runners[0].stats.written
            else []
        )
        return any(row[1] > 0 for s in rows for row in s["values"])

    try:
        await wait_until(
            seen, what="telemon_output lines with written > 0", timeout=DEADLINE, every=POLL_S
        )
    finally:
        await telemon.stop()


# --- VictoriaMetrics through the influxdb_v2 output ----------------------------------


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with run_victoria(tmp_path / "vm") as server:
        yield server


async def stamps_ms(victoria: VictoriaMetrics, run: str) -> list[int]:
    """Every stored sample's timestamp (ms) of outage_n for `run`, duplicates included."""
    try:
        exported = await victoria.export(f'outage_n{{run="{run}"}}')
    except (OSError, aiohttp.ClientError, AssertionError):  # down, or not answering yet
        return []
    return [t for series in exported for t in series.timestamps_ms]


async def test_v2_outage_and_restart_lose_nothing(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    stamps: list[int] = []
    run = "v2"
    outputs = {
        "influxdb_v2": [
            {
                "url": victoria.url,
                "org": "o",
                "bucket": "b",
                "token": "t",
                "flush_interval": FLUSH,
                "metric_batch_size": 5,
                "max_retry_interval": 0.5,
                "timeout": 2,
                "spool_dir": str(tmp_path / "spool"),
            }
        ]
    }

    async def stored() -> list[int]:
        return await stamps_ms(victoria, run)

    # stop is a SIGTERM: on SIGKILL VictoriaMetrics loses the last second of samples it
    # already acknowledged (kept in memory), which no client can prevent.
    await outage_scenario(run, stamps, outputs, stored, victoria.stop, victoria.start)
    await victoria.force_flush()  # a sample written twice is searchable now
    samples = await stored()
    assert sorted(set(samples)) == [s // 1_000_000 for s in stamps]  # nothing lost
    # Delivery is at least once: a batch the stopping server stored but never
    # answered is sent again. InfluxDB stores such a point once; VictoriaMetrics
    # (without -dedup.minScrapeInterval) keeps both samples. At most one batch.
    assert len(samples) - len(set(samples)) <= 5


# --- status codes, against a scripted server ------------------------------------------


class StubSource:
    """A line source with nothing to push; lines are fed through `on_collect`."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[bytes], None]] = []

    async def push_lines(self) -> bytes:
        return b""


class Scripted:
    """A /write endpoint answering the scripted statuses in turn, then 204."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.written: list[bytes] = []
        self.requests = 0
        self.gzip = False

    async def write(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()  # aiohttp inflates gzip
        self.gzip = request.headers.get("Content-Encoding") == "gzip"
        status, headers = self.answers.pop(0) if self.answers else (204, {})
        if status == 204:
            self.written.append(body)
        return web.Response(status=status, headers=headers, text="" if status == 204 else "no")


async def _runner(aiohttp_server: Any, script: Scripted, clocks: Clocks) -> OutputRunner:
    app = web.Application()
    app.router.add_post("/write", script.write)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False)
    options = RunOptions(flush_interval=0.01, batch_size=2, max_retry_interval=0.02, timeout=2)
    return OutputRunner(StubSource(), sender, Spool(None, 10_000), options, clock=clocks.monotonic)


LINES = [f"m v={n}i {n}\n".encode() for n in range(6)]


async def _push_all(runner: OutputRunner, clocks: Clocks, rounds: int = 20) -> None:
    """Flush until everything is written, moving the runner's clock past each backoff."""
    runner.on_collect(b"".join(LINES))
    for _ in range(rounds):
        await runner.flush()
        if not runner.spool and not runner._queue:
            break
        clocks.advance(runner.options.max_retry_interval)
    await runner.stop()


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_4xx_drops_only_that_batch(aiohttp_server: Any, status: int) -> None:
    script = Scripted((204, {}), (status, {}))
    clocks = Clocks()
    runner = await _runner(aiohttp_server, script, clocks)
    await _push_all(runner, clocks)
    assert script.written == [b"".join(LINES[0:2]), b"".join(LINES[4:6])]
    assert script.gzip  # content_encoding defaults to gzip
    stats = runner.stats
    assert (stats.written, stats.dropped, stats.failed, stats.retried) == (4, 2, 1, 0)


class SizeLimited:
    """A /write answering 413 to bodies above `max_bytes` (as influxd's max-body-size does)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.written: list[bytes] = []
        self.refused = 0

    async def write(self, request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > self.max_bytes:
            self.refused += 1
            return web.Response(status=413, text='{"error":"Request Entity Too Large"}')
        self.written.append(body)
        return web.Response(status=204)


async def test_413_splits_the_batch_until_it_fits(aiohttp_server: Any) -> None:
    limited = SizeLimited(max_bytes=len(b"".join(LINES[:2])))
    app = web.Application()
    app.router.add_post("/write", limited.write)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False, gzip=False)
    options = RunOptions(flush_interval=0.01, batch_size=6, max_retry_interval=0.02, timeout=2)
    clocks = Clocks()
    runner = OutputRunner(
        StubSource(), sender, Spool(None, 10_000), options, clock=clocks.monotonic
    )
    runner.on_collect(b'm big="' + b"x" * 100 + b'" 7\n')  # _push_all adds LINES after it
    await _push_all(runner, clocks)
    assert b"".join(limited.written) == b"".join(LINES)  # in order, each line once
    assert limited.refused >= 2
    stats = runner.stats
    assert (stats.written, stats.dropped) == (6, 1)  # the one line that never fits


@pytest.mark.parametrize(
    "answer", [(500, {}), (502, {}), (503, {}), (429, {}), (429, {"Retry-After": "0"})]
)
async def test_5xx_and_429_are_retried_in_order(
    aiohttp_server: Any, answer: tuple[int, dict[str, str]]
) -> None:
    script = Scripted((204, {}), answer, answer)
    clocks = Clocks()
    runner = await _runner(aiohttp_server, script, clocks)
    await _push_all(runner, clocks)
    assert b"".join(script.written) == b"".join(LINES)
    stats = runner.stats
    assert (stats.written, stats.dropped, stats.failed) == (6, 0, 2)
    assert stats.retried == 2
    assert stats.spooled == 4  # the failed batch and the one after it


async def test_refused_connection_spools_then_stop_keeps_it(tmp_path: Path) -> None:
    sender = InfluxDBSender(f"http://127.0.0.1:{free_port()}", "db")
    options = RunOptions(flush_interval=0.01, batch_size=2, max_retry_interval=0.02, timeout=1)
    spool = Spool(tmp_path, 10_000)
    runner = OutputRunner(StubSource(), sender, spool, options)
    runner.on_collect(b"".join(LINES))
    await runner.flush()
    runner.on_collect(b"m v=9i 9\n")
    await runner.stop()
    assert Spool(tmp_path, 10_000).lines == 7
    assert (runner.stats.failed, runner.stats.written) == (1, 0)


class FailingSource(StubSource):
    """A line source whose push raises (a bug somewhere) until `healthy` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False

    async def push_lines(self) -> bytes:
        if not self.healthy:
            raise RuntimeError("push exploded")
        return b""


def _output_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "telemon.outputs" and text in r.getMessage()]


async def test_flush_task_survives_an_unexpected_error(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    script = Scripted()
    app = web.Application()
    app.router.add_post("/write", script.write)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False)
    options = RunOptions(flush_interval=0.01, batch_size=2, max_retry_interval=0.02, timeout=2)
    source = FailingSource()
    runner = OutputRunner(source, sender, Spool(None, 10_000), options)
    runner.start()
    try:
        runner.on_collect(b"".join(LINES))
        # Failing flushes still move collected lines out of memory, into the spool.
        await wait_until(
            lambda: _spooled(runner, len(LINES)),
            what="the lines in the spool",
            timeout=DEADLINE,
            every=POLL_S,
        )
        assert runner.up is None  # the database was not even tried: not its failure
        source.healthy = True
        await wait_until(
            lambda: len(script.written) == 3,
            what="the spooled batches written",
            timeout=DEADLINE,
            every=POLL_S,
        )
        assert runner._task is not None and not runner._task.done()
    finally:
        await runner.stop()
    assert b"".join(script.written) == b"".join(LINES)
    [record] = _output_records(caplog, "flush failed")
    assert "push exploded" in record.getMessage()
    assert runner.up is True


async def test_unusable_spool_drops_lines_and_keeps_flushing(
    aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = Scripted((503, {}))  # the database is away once: everything goes to the spool
    app = web.Application()
    app.router.add_post("/write", script.write)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False)
    options = RunOptions(flush_interval=0.01, batch_size=2, max_retry_interval=0.02, timeout=2)
    spool = Spool(tmp_path / "spool", 10_000)
    (tmp_path / "spool").rmdir()
    (tmp_path / "spool").write_text("a file where the spool directory was\n")  # as ENOTDIR
    runner = OutputRunner(StubSource(), sender, spool, options)
    runner.on_collect(b"".join(LINES))
    runner.start()
    later = b"m v=9i 9\n"
    try:
        await wait_until(
            lambda: runner.stats.dropped == len(LINES),
            what="the lines dropped",
            timeout=DEADLINE,
            every=POLL_S,
        )
        runner.on_collect(later)
        await wait_until(
            lambda: script.written == [later],
            what="the later line written",
            timeout=DEADLINE,
            every=POLL_S,
        )
        assert runner._task is not None and not runner._task.done()
    finally:
        await runner.stop()
    assert (runner.stats.dropped, runner.stats.written, runner.spool.lines) == (6, 1, 0)
    [record] = _output_records(caplog, "cannot spool")
    assert record.exc_info is None and "Not a directory" in record.getMessage()


async def test_database_dropped_meanwhile_is_created_again(influxdb: InfluxDB) -> None:
    database = "dropped_meanwhile"
    sender = InfluxDBSender(influxdb.url, database, gzip=False)
    options = RunOptions(flush_interval=0.01, batch_size=10, max_retry_interval=0.02, timeout=2)
    runner = OutputRunner(StubSource(), sender, Spool(None, 10_000), options)
    runner.on_collect(LINES[0])
    await runner.flush()
    assert runner.stats.written == 1
    status, text = await asyncio.to_thread(
        influxdb._request, "POST", "/query", {"q": f'DROP DATABASE "{database}"'}
    )
    assert status == 200, text
    runner.on_collect(LINES[1])

    async def written_again() -> bool:
        await runner.flush()
        return runner.stats.written + runner.stats.dropped == 2

    await wait_until(
        written_again,
        what="the point after the drop written (or dropped)",
        timeout=DEADLINE,
        every=POLL_S,
    )
    await runner.stop()
    assert (runner.stats.written, runner.stats.dropped, runner.stats.failed) == (2, 0, 1)
    rows = await asyncio.to_thread(influxdb.series, database, "SELECT v FROM m")
    assert [row[1] for row in rows[0]["values"]] == [1]  # the point written after the drop


async def test_error_body_is_read_only_in_part(aiohttp_server: Any) -> None:
    released = asyncio.Event()

    async def endless_error(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        await response.write(b'{"error": "' + b"x" * (1024 * 1024))
        await released.wait()  # never ends while the client waits: reading all of it hangs
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/write", endless_error)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False, timeout=10)
    try:
        with pytest.raises(WriteError) as info:
            await sender.send(b"m v=1i 1\n")
    finally:
        released.set()
        await sender.aclose()
    assert str(info.value).startswith('HTTP 500: {"error": "xxx'), str(info.value)[:80]
    assert info.value.retry


async def test_credentials_in_the_url_are_sent_but_never_shown(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    recording, url = await recording_server(aiohttp_server, None)
    with_password = url.replace("://", "://telemon:S3cret@")
    runner = await push_once({"influxdb": [{"urls": [with_password],
                                            "skip_database_creation": True}]})  # fmt: skip
    basic = "Basic " + base64.b64encode(b"telemon:S3cret").decode()
    assert recording.authorization == [basic]
    assert runner.sender.url == url

    refused = f"http://telemon:S3cret@127.0.0.1:{free_port()}"
    config = parse_config({"outputs": {"influxdb": [{"urls": [refused]}]}})
    [refusing] = build_outputs(config.outputs, StubSource(), interval=10, precision="ns")
    refusing.on_collect(b"m v=1i 1\n")
    await refusing.flush()
    await refusing.stop()
    metric = refusing.status_metric(0)
    assert metric.tags["url"] == refused.replace("telemon:S3cret@", "")
    assert "S3cret" not in (refusing.last_error or "") and metric.fields["up"] == 0
    assert _output_records(caplog, "cannot write")
    assert "S3cret" not in caplog.text


# --- configuration -------------------------------------------------------------------


def test_outputs_config_errors() -> None:
    cases = [
        ({"influxdb": [{"urls": []}]}, "outputs.influxdb.0.urls"),
        ({"influxdb": [{"urls": ["localhost:8086"]}]}, "outputs.influxdb.0.urls"),
        ({"influxdb": [{"username": "u"}]}, "outputs.influxdb.0"),
        ({"influxdb_v2": [{"url": "http://x"}]}, "outputs.influxdb_v2.0.bucket"),
        (
            {"influxdb_v2": [{"bucket": "b", "content_encoding": "br"}]},
            "outputs.influxdb_v2.0.content_encoding",
        ),
    ]
    for outputs, key in cases:
        with pytest.raises(ConfigError) as info:
            parse_config({"outputs": outputs})
        assert [k for k, _ in info.value.details] == [key], info.value.details
    with pytest.raises(ConfigError, match="outputs need timestamps"):
        parse_config({"agent": {"omit_timestamp": True}, "outputs": {"influxdb": [{}]}})


def test_credentials_in_the_url_and_in_other_keys_are_refused() -> None:
    cases = [
        ({"influxdb": [{"urls": ["http://a:S3cret@h:8086"], "username": "u", "password": "p"}]},
         "outputs.influxdb.0", "urls: 'http://***@h:8086' has credentials and so has username"),
        ({"influxdb_v2": [{"url": "http://a:S3cret@h:8086", "bucket": "b", "token": "t"}]},
         "outputs.influxdb_v2.0", "url: 'http://***@h:8086' has credentials and so has token"),
    ]  # fmt: skip
    for outputs, key, message in cases:
        with pytest.raises(ConfigError) as info:
            parse_config({"outputs": outputs})
        [(where, text)] = info.value.details
        assert where == key and message in text and "S3cret" not in text, (where, text)


def test_influxdb_client_is_not_imported_without_a_v2_output() -> None:
    # TODO(lead): also import telemon.server and telemon.cli here once they import cleanly
    # again, and build through the Agent, so that their imports are covered too.
    code = (
        "import sys\n"
        "from telemon.config import parse_config\n"
        "from telemon.outputs import build_outputs\n"
        "class Source:\n"
        "    listeners = []\n"
        "c = parse_config({'outputs': {'influxdb': [{}]}})\n"
        "build_outputs(c.outputs, Source(), interval=10, precision='ns')\n"
        "assert 'influxdb_client' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_server_starts_and_stops_its_outputs(aiohttp_client: Any, tmp_path: Path) -> None:
    from telemon.server import create_app

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: lines go to the spool
    config = parse_config(
        {
            "agent": {"interval": "100ms"},
            "inputs": {"python": [{}]},
            "outputs": {"influxdb": [{"urls": [url], "spool_dir": str(tmp_path)}]},
        }
    )
    client = await aiohttp_client(create_app(config))
    prefix = f"telemon_output,output=influxdb,url={url} "

    async def output_down() -> bool:
        text = await (await client.get("/metrics")).text()
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return bool(lines) and "spooled=0i" not in lines[0]

    await wait_until(
        output_down, what="the output's line, with lines spooled", timeout=DEADLINE, every=POLL_S
    )
    text = await (await client.get("/metrics")).text()
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    assert " up=0i," in line  # nothing listens: never shown healthy
    assert "input=outputs" not in text  # outputs are not an input
    await client.close()
    assert Spool(next(tmp_path.iterdir()), 10**6).lines > 0


# --- secrets from files, TLS ------------------------------------------------------------


class Recording:
    """v1 /write and v2 /api/v2/write endpoints that keep what reached them, and how."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.authorization: list[str] = []

    async def write(self, request: web.Request) -> web.Response:
        self.authorization.append(request.headers.get("Authorization", ""))
        self.bodies.append(await request.read())
        return web.Response(status=204)


async def recording_server(
    aiohttp_server: Any, tls: ssl.SSLContext | None
) -> tuple[Recording, str]:
    recording = Recording()
    app = web.Application()
    app.router.add_post("/write", recording.write)
    app.router.add_post("/api/v2/write", recording.write)
    server = await aiohttp_server(app, ssl=tls)
    scheme = "https" if tls is not None else "http"
    return recording, f"{scheme}://127.0.0.1:{server.port}"


async def push_once(outputs: dict[str, Any]) -> OutputRunner:
    """Build the configured output (one runner), hand it two lines, flush, stop."""
    config = parse_config({"outputs": outputs})
    [runner] = build_outputs(config.outputs, StubSource(), interval=10, precision="ns")
    runner.on_collect(b"m v=1i 1\nm v=2i 2\n")
    await runner.flush()
    await runner.stop()
    return runner


async def test_password_file_and_token_file_are_sent(aiohttp_server: Any, tmp_path: Path) -> None:
    recording, url = await recording_server(aiohttp_server, None)
    (tmp_path / "password").write_text("s3cret \n")
    (tmp_path / "token").write_text("tok-123\n")
    v1 = {"urls": [url], "username": "telemon", "password_file": str(tmp_path / "password"),
          "skip_database_creation": True}  # fmt: skip
    await push_once({"influxdb": [v1]})
    pytest.importorskip("influxdb_client")
    await push_once(
        {"influxdb_v2": [{"url": url, "bucket": "b", "token_file": str(tmp_path / "token")}]}
    )
    basic = "Basic " + base64.b64encode(b"telemon:s3cret").decode()
    assert recording.authorization == [basic, "Token tok-123"]
    assert all(b"m v=2i 2" in body for body in recording.bodies)


def test_secret_files_and_tls_settings_are_checked(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "junk.pem").write_text("not a certificate")
    cases = [
        ({"influxdb": [{"username": "u", "password": "p",
                        "password_file": str(tmp_path / "empty")}]},
         "outputs.influxdb.0", "not both"),
        ({"influxdb": [{"username": "u", "password_file": str(tmp_path / "nope")}]},
         "outputs.influxdb.0", "password_file: cannot read"),
        ({"influxdb": [{"username": "u", "password_file": str(tmp_path / "empty")}]},
         "outputs.influxdb.0", "is empty"),
        ({"influxdb_v2": [{"bucket": "b", "token": "t", "token_file": str(tmp_path / "empty")}]},
         "outputs.influxdb_v2.0", "not both"),
        ({"influxdb_v2": [{"bucket": "b", "tls_ca": str(tmp_path / "junk.pem")}]},
         "outputs.influxdb_v2.0", "tls_ca: cannot use"),
    ]  # fmt: skip
    for outputs, key, message in cases:
        with pytest.raises(ConfigError) as info:
            parse_config({"outputs": outputs})
        [(where, text)] = info.value.details
        assert where == key and message in text, (where, text)


@pytest.fixture
def server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and its (self-signed) certificate."""
    # Imported here: test_server imports the whole server, which other tests need not.
    from test_server import make_certificate

    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.mark.parametrize("output", ["influxdb", "influxdb_v2"])
async def test_https_with_a_private_ca(
    aiohttp_server: Any, server_tls: tuple[ssl.SSLContext, Path], output: str
) -> None:
    if output == "influxdb_v2":
        pytest.importorskip("influxdb_client")
    context, cert = server_tls
    recording, url = await recording_server(aiohttp_server, context)
    table: dict[str, Any] = (
        {"urls": [url], "skip_database_creation": True}
        if output == "influxdb"
        else {"url": url, "bucket": "b"}
    )
    untrusted = await push_once({output: [table]})
    assert untrusted.stats.written == 0 and untrusted.stats.failed >= 1  # unknown CA: refused
    assert recording.bodies == []
    trusted = await push_once({output: [{**table, "tls_ca": str(cert)}]})
    skipping = await push_once({output: [{**table, "insecure_skip_verify": True}]})
    assert trusted.stats.written > 0 and skipping.stats.written > 0
    assert sum(b"m v=2i 2" in body for body in recording.bodies) == 2
