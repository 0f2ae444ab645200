"""The output runner: batches what the collector gives, writes it, spools what cannot be written.

Lines come from two places: every polled collection (through
`Collector.listeners`, so each is pushed exactly once however the intervals
line up) and, every `flush_interval`, `Collector.render(snapshot=False)` (lazy
targets evaluated for this push, and the self-metrics). Batches are written
oldest first: the spool is drained before newer batches are sent. A batch that
cannot be written for a retryable reason (5xx, 429, timeout, refused
connection) goes to the spool with everything after it, and writing resumes
after a capped exponential backoff with jitter; a batch refused with another
4xx is dropped (counted, one log line). Any other error in a flush (the spool's
disk full or gone, a bug) is logged once and backed off like a failed write:
the flushing task never stops while telemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from telemon.outputs.spool import Batch, Spool

if TYPE_CHECKING:
    from telemon.collector import Collector

__all__ = [
    "OutputRunner",
    "OutputStats",
    "RunOptions",
    "Sender",
    "WriteError",
    "backoff_delay",
    "classify_status",
    "make_batches",
    "split_lines",
]

_log = logging.getLogger("telemon.outputs")
MAX_ERROR_TEXT = 200

# One line: the measurement and tags (escaped characters, no unescaped space),
# then the rest up to a line feed, where a quoted string may only start right
# after "=" (a field value) and may hold raw line feeds.
_LINE = re.compile(
    rb'(?:\\.|[^\\ \n])*(?:="(?:[^"\\]|\\.)*"|\\.|[^\\\n])*\n?',
    re.DOTALL,
)


def split_lines(body: bytes) -> list[bytes]:
    """The lines of a line-protocol body, each with its LF; LFs inside strings do not split."""
    lines = []
    pos, end = 0, len(body)
    while pos < end:
        match = _LINE.match(body, pos)
        stop = match.end() if match and match.end() > pos else end
        line = body[pos:stop]
        if line.strip():
            lines.append(line if line.endswith(b"\n") else line + b"\n")
        pos = stop
    return lines


def make_batches(lines: Iterable[bytes], size: int) -> Iterator[Batch]:
    """Consecutive batches of at most `size` lines."""
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield Batch(b"".join(chunk), len(chunk))
            chunk = []
    if chunk:
        yield Batch(b"".join(chunk), len(chunk))


class WriteError(Exception):
    """A write that failed; `retry` says whether the same batch may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        retry_after: float | None = None,
        too_large: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.too_large = too_large


def classify_status(status: int, text: str, retry_after: str | None = None) -> WriteError | None:
    """None for 2xx; otherwise the error: retry 5xx and 429, drop other 4xx."""
    if 200 <= status < 300:
        return None
    message = f"HTTP {status}: {' '.join(text.split())[:MAX_ERROR_TEXT]}"
    delay = None
    if retry_after and retry_after.strip().isdigit():
        delay = float(retry_after.strip())
    return WriteError(
        message,
        retry=status >= 500 or status == 429,
        retry_after=delay,
        too_large=status == 413,
    )


def backoff_delay(failures: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random (`rand` in [0, 1))."""
    delay: float = min(cap, base * 2 ** min(failures - 1, 30))
    return delay / 2 + delay / 2 * rand


class Sender(Protocol):
    """Writes one batch to one database; `url` is for display (no credentials)."""

    name: str
    url: str

    async def send(self, data: bytes) -> None:
        """Write `data`; raises `WriteError` when it was not written."""

    async def aclose(self) -> None:
        """Release connections."""


@dataclass(slots=True)
class OutputStats:
    """Counters of one output URL (lines, except `failed` and `retried`: write attempts)."""

    written: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    spooled: int = 0


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How often and how much to write."""

    flush_interval: float
    batch_size: int
    max_retry_interval: float
    timeout: float


class OutputRunner:
    """Pushes a collector's lines to one sender, through a spool when the database is away."""

    def __init__(
        self, collector: Collector, sender: Sender, spool: Spool, options: RunOptions
    ) -> None:
        self.collector = collector
        self.sender = sender
        self.spool = spool
        self.options = options
        self.stats = OutputStats()
        self._lines: list[bytes] = []  # collected, not yet batched
        self._queue: deque[Batch] = deque()  # batched, newer than anything spooled
        self._previous: set[bytes] = set()  # the last render's lines
        self._failures = 0
        self._retry_at = 0.0
        self._flush_error = False  # logged, and not followed by a clean flush yet
        self._spool_error = False  # logged, and not followed by a spooled batch yet
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The output's table name (`influxdb`, `influxdb_v2`)."""
        return self.sender.name

    def on_collect(self, body: bytes) -> None:
        """A polled target's fresh lines (a `Collector.listeners` callback)."""
        self._lines.extend(split_lines(body))

    def start(self) -> None:
        """Listen to collections and flush every `flush_interval`."""
        self.collector.listeners.append(self.on_collect)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop flushing; write what is left (bounded by `timeout`), spool the rest."""
        with contextlib.suppress(ValueError):
            self.collector.listeners.remove(self.on_collect)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._batch_lines()
        if not self._failures:
            try:
                async with asyncio.timeout(self.options.timeout):
                    await self._write()
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - what is left must still be spooled
                self._flush_failed(exc)
        self._spool_queue()
        await self.sender.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.options.flush_interval
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - this task must outlive any one flush
                self._flush_failed(exc)
            else:
                self._flush_error = False
            now = loop.time()
            while next_at <= now:  # a slow flush skips ticks
                next_at += self.options.flush_interval
            await asyncio.sleep(next_at - now)

    async def flush(self) -> None:
        """Take this push's lines, then write everything waiting, oldest first."""
        self._take_render(await self.collector.render(snapshot=False))
        self._batch_lines()
        loop = asyncio.get_running_loop()
        if self._failures and loop.time() < self._retry_at:
            self._spool_queue()  # keeps memory bounded while the database is away
            return
        await self._write()

    def _take_render(self, body: bytes) -> None:
        # Self-metrics are re-encoded at most once a second: skip lines already pushed.
        lines = split_lines(body)
        self._lines.extend(line for line in lines if line not in self._previous)
        self._previous = set(lines)

    def _batch_lines(self) -> None:
        self._queue.extend(make_batches(self._lines, self.options.batch_size))
        self._lines = []

    def _flush_failed(self, exc: Exception) -> None:
        """Back off as after a failed write, and keep memory bounded meanwhile."""
        if not self._flush_error:
            self._flush_error = True
            # An OSError (the disk, the network) is the world's doing: its message
            # says it all. Anything else is a bug, whose traceback is wanted.
            _log.error(
                "output %s %s: flush failed: %s; retrying",
                self.name,
                self.sender.url,
                exc if isinstance(exc, OSError) else repr(exc),
                exc_info=not isinstance(exc, OSError),
            )
        self._failures += 1
        self._back_off(None)
        self._batch_lines()
        self._spool_queue()

    def _spool_queue(self) -> None:
        while self._queue:
            batch = self._queue.popleft()
            # Counted from the spool's total: a failed append may already have
            # dropped older batches to make room.
            dropped_before = self.spool.dropped_lines
            try:
                self.spool.append(batch)
            except OSError as exc:
                # Nowhere to keep it (disk full, spool directory unusable): holding
                # it in memory instead would grow without bound, so it is dropped.
                self.stats.dropped += batch.lines + self.spool.dropped_lines - dropped_before
                if not self._spool_error:
                    self._spool_error = True
                    _log.error(
                        "output %s %s: cannot spool (%s); dropping lines until it can",
                        self.name,
                        self.sender.url,
                        exc,
                    )
                continue
            if self._spool_error:
                self._spool_error = False
                _log.info("output %s %s: spooling again", self.name, self.sender.url)
            self.stats.spooled += batch.lines
            self.stats.dropped += self.spool.dropped_lines - dropped_before

    async def _write(self) -> None:
        """Send spooled batches, then queued ones, until one fails for a retryable reason."""
        while True:
            spooled = self.spool.peek()
            batch = spooled or (self._queue[0] if self._queue else None)
            if batch is None:
                return
            if not await self._send(batch, spooled is not None):
                self._spool_queue()
                return
            if spooled is not None:
                self.spool.pop()
            else:
                self._queue.popleft()

    async def _send(self, batch: Batch, spooled: bool) -> bool:
        """Write one batch; False when it must be retried later (it stays where it is)."""
        if self._failures:
            self.stats.retried += 1
        try:
            await self.sender.send(batch.data)
        except WriteError as error:
            self.stats.failed += 1
            if error.retry:
                self._failed(error)
                return False
            if error.too_large and batch.lines > 1:
                return await self._send_halves(batch, spooled)
            self.stats.dropped += batch.lines
            _log.warning(
                "output %s %s: dropped a batch of %d lines: %s",
                self.name,
                self.sender.url,
                batch.lines,
                error,
            )
            return True
        self.stats.written += batch.lines
        if self._failures:
            _log.info("output %s %s: writing again", self.name, self.sender.url)
            self._failures = 0
        return True

    async def _send_halves(self, batch: Batch, spooled: bool) -> bool:
        """A batch the database found too large (413), as two smaller ones.

        A half that must be retried keeps the whole batch for later; the
        other half is then written again, which InfluxDB stores once (same
        series, fields and timestamps).
        """
        lines = split_lines(batch.data)
        middle = len(lines) // 2
        for part in (lines[:middle], lines[middle:]):
            if not await self._send(Batch(b"".join(part), len(part)), spooled):
                return False
        return True

    def _failed(self, error: WriteError) -> None:
        self._failures += 1
        if self._failures == 1:
            _log.warning(
                "output %s %s: cannot write (%s); spooling and retrying",
                self.name,
                self.sender.url,
                error,
            )
        self._back_off(error.retry_after)

    def _back_off(self, retry_after: float | None) -> None:
        options = self.options
        delay = backoff_delay(
            self._failures, options.flush_interval, options.max_retry_interval, random.random()
        )
        if retry_after is not None:
            delay = max(delay, min(retry_after, options.max_retry_interval))
        self._retry_at = asyncio.get_running_loop().time() + delay
