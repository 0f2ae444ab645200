"""A spool drops its oldest lines whatever the limit: spool_max_bytes or a full filesystem.

The filesystem is a real tmpfs, mounted small by the test (root only: the
tests skip otherwise, and fail under CI) and unmounted after. Dropped lines
are counted exactly, and an output logs one WARNING when its spool starts
dropping (why, and how many) and one INFO with the totals when it stops.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import Clocks

from telemon.outputs.base import OutputRunner, RunOptions
from telemon.outputs.influxdb import InfluxDBSender
from telemon.outputs.spool import (
    FILESYSTEM_FULL,
    MAX_BYTES_REACHED,
    TOO_LARGE,
    Appended,
    Batch,
    Spool,
)

FS_BYTES = 64 * 1024  # 16 pages of 4 KiB
LINES = 200  # per batch: about 3 KB, one page on the tmpfs
ROOMY = 10 * 1024 * 1024  # a spool_max_bytes the filesystem fills first


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _mount(tmp_path: Path, size: int) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        _unavailable("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        _unavailable(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs."""
    yield from _mount(tmp_path, FS_BYTES)


@pytest.fixture
def larger_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs."""
    yield from _mount(tmp_path, 4 * FS_BYTES)


def batch(n: int, lines: int = LINES) -> Batch:
    return Batch(b"".join(f"m n={n}i,v={i}i {i}\n".encode() for i in range(lines)), lines)


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (head := spool.peek()) is not None:
        out.append(head.data)
        spool.pop()
    return out


def fill(path: Path) -> None:
    """Another writer: takes all the space left on the filesystem."""
    with path.open("ab", buffering=0) as file:
        for chunk in (4096, 512, 1):
            try:
                while True:
                    file.write(b"x" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


# --- the spool --------------------------------------------------------------------------


def test_a_full_filesystem_drops_the_oldest_batches(small_fs: Path) -> None:
    spool = Spool(small_fs / "spool", ROOMY)
    results = [spool.append(batch(n)) for n in range(40)]
    kept = len(spool)
    assert 0 < kept < 40  # the filesystem, not spool_max_bytes, was the limit
    assert all(result.kept for result in results)
    assert {r.reason for r in results if r.dropped} == {FILESYSTEM_FULL}
    assert spool.dropped_lines == sum(r.dropped for r in results) == (40 - kept) * LINES
    assert spool.lines == kept * LINES
    files = sorted(p.name for p in (small_fs / "spool").iterdir())
    assert len(files) == kept and not [name for name in files if name.startswith(".tmp-")]
    assert drain(spool) == [batch(n).data for n in range(40 - kept, 40)]  # the newest, in order


def test_a_filesystem_filled_by_another_writer_drops_the_oldest_too(small_fs: Path) -> None:
    spool = Spool(small_fs / "spool", ROOMY)
    for n in range(5):
        assert spool.append(batch(n)) == Appended(kept=True)
    fill(small_fs / "other")
    assert spool.append(batch(5)) == Appended(True, LINES, FILESYSTEM_FULL)
    assert spool.append(batch(6)) == Appended(True, LINES, FILESYSTEM_FULL)
    assert drain(spool) == [batch(n).data for n in range(2, 7)]
    assert spool.dropped_lines == 2 * LINES


def test_a_batch_the_filesystem_cannot_hold_is_dropped_and_the_spool_kept(
    small_fs: Path,
) -> None:
    spool = Spool(small_fs / "spool", ROOMY)
    for n in range(5):
        spool.append(batch(n))
    huge = batch(99, 8000)  # about 120 KB, more than the whole filesystem
    assert spool.append(huge) == Appended(False, 8000, FILESYSTEM_FULL)
    assert spool.dropped_lines == 8000
    assert drain(spool) == [batch(n).data for n in range(5)]


def test_space_taken_as_it_is_freed_stops_the_dropping(larger_fs: Path) -> None:
    """Another writer takes every page freed: dropping stops after the batch's size and
    a margin, instead of emptying the spool for nothing."""
    spool = Spool(larger_fs / "spool", ROOMY)
    n = 0
    while spool.append(batch(n)).dropped == 0:
        n += 1
    held = len(spool)  # the spool fills the filesystem: its oldest go
    real_pop = spool.pop

    def pop_then_fill() -> None:
        real_pop()
        fill(larger_fs / "other")

    spool.pop = pop_then_fill  # type: ignore[method-assign]
    dropped_before, bytes_before = spool.dropped_lines, spool.bytes
    result = spool.append(batch(1000))
    assert not result.kept and result.reason == FILESYSTEM_FULL
    gone = held - len(spool)
    assert 0 < gone < held  # some of the oldest, not all
    margin = len(batch(1000).data) + 64 * 1024
    assert margin <= bytes_before - spool.bytes < margin + len(batch(1000).data)
    assert result.dropped == spool.dropped_lines - dropped_before == (gone + 1) * LINES
    survivors = drain(spool)
    assert survivors == [batch(k).data for k in range(n + 1 - len(survivors), n + 1)]


def test_reasons_of_the_spool_max_bytes() -> None:
    spool = Spool(None, 2 * len(batch(0).data))
    assert spool.append(batch(0)) == Appended(kept=True)
    assert spool.append(batch(1)) == Appended(kept=True)
    assert spool.append(batch(2)) == Appended(True, LINES, MAX_BYTES_REACHED)
    assert spool.append(batch(3, 3 * LINES)) == Appended(False, 3 * LINES, TOO_LARGE)


# --- the output -------------------------------------------------------------------------


class Database:
    """A /write that answers 503 while `down`, else stores the body."""

    def __init__(self) -> None:
        self.down = True
        self.written: list[bytes] = []

    async def write(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.down:
            return web.Response(status=503, text="down")
        self.written.append(body)
        return web.Response(status=204)


class Source:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    async def push_lines(self) -> bytes:
        return b""


async def _runner(aiohttp_server: Any, db: Database, spool: Spool, clocks: Clocks) -> OutputRunner:
    app = web.Application()
    app.router.add_post("/write", db.write)
    server = await aiohttp_server(app)
    sender = InfluxDBSender(str(server.make_url("")), "db", create_database=False)
    options = RunOptions(flush_interval=1.0, batch_size=LINES, max_retry_interval=5.0, timeout=5)
    return OutputRunner(Source(), sender, spool, options, clock=clocks.monotonic)


async def _outage(runner: OutputRunner, clocks: Clocks, batches: int) -> None:
    """One batch collected per flush, past the backoff each time: all go to the spool."""
    for n in range(batches):
        runner.on_collect(batch(n).data)
        clocks.advance(10)
        await runner.flush()


def _messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "telemon.outputs" and r.levelno == level and text in r.getMessage()
    ]


async def _drops_logged_once_and_counted(
    runner: OutputRunner,
    db: Database,
    clocks: Clocks,
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, "telemon.outputs")
    await _outage(runner, clocks, 40)
    kept = runner.spool.lines // LINES
    assert 0 < kept < 40
    assert runner.stats.dropped == (40 - kept) * LINES  # exact: nothing written, nothing held
    assert runner.stats.spooled == 40 * LINES and runner.pending_lines == 0
    [warning] = _messages(caplog, logging.WARNING, "the spool drops lines")
    first = re.search(rf"\({reason}\): (\d+) so far", warning)
    assert first and int(first[1]) % LINES == 0 and runner.sender.url in warning
    assert not _messages(caplog, logging.INFO, "dropping")

    db.down = False
    clocks.advance(10)
    await runner.flush()
    assert db.written == [batch(n).data for n in range(40 - kept, 40)]  # the newest, in order
    [info] = _messages(caplog, logging.INFO, "no longer dropping spooled lines")
    assert f"{runner.stats.dropped} ({reason}) dropped" in info
    status = runner.status_metric(clocks.wall).fields
    assert (status["written"], status["dropped"]) == (kept * LINES, (40 - kept) * LINES)
    await runner.stop()
    assert len(_messages(caplog, logging.WARNING, "the spool drops lines")) == 1
    assert len(_messages(caplog, logging.INFO, "no longer dropping")) == 1


async def test_an_output_on_a_full_filesystem_keeps_the_newest_and_says_so(
    aiohttp_server: Any, small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, clocks = Database(), Clocks()
    runner = await _runner(aiohttp_server, db, Spool(small_fs / "spool", ROOMY), clocks)
    await _drops_logged_once_and_counted(runner, db, clocks, caplog, FILESYSTEM_FULL)


async def test_an_output_at_spool_max_bytes_keeps_the_newest_and_says_so(
    aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, clocks = Database(), Clocks()
    spool = Spool(tmp_path / "spool", 10 * len(batch(0).data))
    runner = await _runner(aiohttp_server, db, spool, clocks)
    await _drops_logged_once_and_counted(runner, db, clocks, caplog, MAX_BYTES_REACHED)


def test_batches_dropped_at_start_for_a_smaller_bound_are_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "telemon.outputs")
    spool = Spool(tmp_path, ROOMY)
    for n in range(4):
        spool.append(batch(n))
    smaller = Spool(tmp_path, 2 * len(batch(3).data))
    [warning] = _messages(caplog, logging.WARNING, "left by the last run")
    assert f"dropped the oldest {2 * LINES} lines" in warning and str(tmp_path) in warning
    sender = InfluxDBSender("http://127.0.0.1:9", "db", create_database=False)
    options = RunOptions(flush_interval=1.0, batch_size=LINES, max_retry_interval=5.0, timeout=5)
    runner = OutputRunner(Source(), sender, smaller, options)
    assert runner.status_metric(0).fields["dropped"] == 2 * LINES
