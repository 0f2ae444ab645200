"""The output runner: batches a line source's lines, writes them, spools what cannot be written.

Lines come from a `LineSource` in two ways: every polled collection (through
`source.listeners`, so each is pushed exactly once however the intervals line
up) and, every `flush_interval`, `source.push_lines()` (lazy targets evaluated
for this push, and the self-metrics; a push is not a scrape). Batches are
written oldest first: the spool is drained before newer batches are sent. A
batch that cannot be written for a retryable reason (5xx, 429, timeout,
refused connection) goes to the spool with everything after it, and writing
resumes after a capped exponential backoff with jitter; a batch refused with
another 4xx is dropped (counted). A partial write, where the database stored
all but some lines and says how many (InfluxDB: `partial write: REASON
dropped=N`, to which 1.x adds each line it could not parse), counts exactly
those lines as dropped and the rest as written, and logs the database's reason
once until a batch is stored whole. (A 1.x batch with both unparsable lines and
lines refused at write is answered with the latter alone: the unparsable ones
then count as written.) Any other error in a flush (the spool's directory
gone or unusable, a bug) is logged once and backed off like a failed write: the
flushing task never stops while telemon runs. Lines the spool drops for room
(spool_max_bytes reached, filesystem full: the oldest go) log one WARNING per
reason when it starts, and one INFO with the totals when the output writes
again or stops; `dropped` counts each line.

Health is what the last write did: `up` is None before the first attempt,
True while the last write stored its batch (wholly or in part), False after a
failed or refused one, with `last_error` saying why. Going down logs one
WARNING with the reason (again only if the reason changes), writing again one
INFO. `status_metric` is the runner's `telemon_output` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from telemon.metric import FieldValue, Metric
from telemon.outputs.spool import Appended, Batch, Spool

__all__ = [
    "LineSource",
    "OutputRunner",
    "OutputStats",
    "RunOptions",
    "Sender",
    "WriteError",
    "backoff_delay",
    "classify_status",
    "error_message",
    "make_batches",
    "refused_lines",
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
# InfluxDB's answer to a batch it stored in part: "partial write: REASON
# dropped=N" (1.x in {"error": ...}, 2.x in {"message": ...}; 2.7 may add text
# after N). The lines 1.x could not parse are listed, one "unable to parse
# 'LINE': WHY" each, and are not in N. The last "dropped=" is InfluxDB's: a
# quoted line comes before it.
_DROPPED = re.compile(r"\bdropped=(\d+)(?=\s|$)")
_UNPARSED = re.compile(r"(?:^|\n|partial write: )unable to parse '")


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


def make_batches(lines: Iterable[bytes], size: int, created_ns: int = 0) -> Iterator[Batch]:
    """Consecutive batches of at most `size` lines, collected at `created_ns` (or later)."""
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield Batch(b"".join(chunk), len(chunk), created_ns=created_ns)
            chunk = []
    if chunk:
        yield Batch(b"".join(chunk), len(chunk), created_ns=created_ns)


class WriteError(Exception):
    """A write that failed; `retry` says whether the same batch may succeed later.

    `refused` is set for a partial write: the database stored the batch but
    for that many lines; None means it stored none of it.
    """

    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        retry_after: float | None = None,
        too_large: bool = False,
        refused: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.too_large = too_large
        self.refused = refused


def error_message(text: str) -> str:
    """The message of a JSON error answer (`error` for 1.x, `message` for 2.x), else the text."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text
    if isinstance(answer, dict):
        for key in ("error", "message"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return text


def refused_lines(message: str) -> int | None:
    """The lines a database refused while it stored the rest (a partial write), else None.

    None also when the answer says "partial write" but not how many (cut
    short): the batch then counts as refused whole.
    """
    if "partial write" not in message:
        return None
    dropped = _DROPPED.findall(message)
    unparsed = len(_UNPARSED.findall(message))
    if not dropped and not unparsed:
        return None
    return (int(dropped[-1]) if dropped else 0) + unparsed


def classify_status(status: int, text: str, retry_after: str | None = None) -> WriteError | None:
    """None for 2xx; otherwise the error: retry 5xx and 429, drop other 4xx; partial writes."""
    if 200 <= status < 300:
        return None
    reason = error_message(text)
    message = f"HTTP {status}: {' '.join(reason.split())[:MAX_ERROR_TEXT]}"
    refused = refused_lines(reason)
    if refused is not None:
        # Stored but for `refused` lines, whatever the status: sending it again
        # would be refused again.
        return WriteError(message, retry=False, refused=refused)
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


class LineSource(Protocol):
    """Where a runner's lines come from (the agent)."""

    @property
    def listeners(self) -> list[Callable[[bytes], None]]:
        """Called with each polled collection's encoded lines (a runner adds itself)."""
        ...

    async def push_lines(self) -> bytes:
        """Lazy targets' lines and the self-metrics, for one push (not a scrape)."""
        ...


class Sender(Protocol):
    """Writes one batch to one database; `url` is for display (no credentials)."""

    name: str
    url: str

    async def send(self, data: bytes) -> None:
        """Write `data`; raises `WriteError` when it was not written (or in part)."""

    async def aclose(self) -> None:
        """Release connections."""


@dataclass(slots=True)
class OutputStats:
    """Counters of one output URL (lines, except `failed` and `retried`: write attempts).

    `failed` counts attempts that stored nothing; `dropped` counts lines lost for
    good (refused by the database, or no room in the spool).
    """

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
    """Pushes a source's lines to one sender, through a spool when the database is away.

    `clock` (monotonic seconds) times the backoff; `wall_clock` (ns since the
    epoch) stamps batches, so that the age of what waits survives a restart.
    """

    def __init__(
        self,
        source: LineSource,
        sender: Sender,
        spool: Spool,
        options: RunOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.source = source
        self.sender = sender
        self.spool = spool
        self.options = options
        self.stats = OutputStats(dropped=spool.dropped_lines)  # at its start (a smaller bound)
        self.up: bool | None = None  # None: nothing written or tried yet
        self.last_error: str | None = None  # why it is down (None while up)
        self.last_success_ns: int | None = None  # wall clock of the last stored batch
        self._clock = clock
        self._wall_clock = wall_clock
        self._lines: list[bytes] = []  # collected, not yet batched
        self._lines_since_ns: int | None = None  # when the first of `_lines` came
        self._queue: deque[Batch] = deque()  # batched, newer than anything spooled
        self._previous: set[bytes] = set()  # the last push's lines
        self._failures = 0
        self._retry_at = 0.0
        self._flush_error = False  # logged, and not followed by a clean flush yet
        self._spool_error = False  # logged, and not followed by a spooled batch yet
        # Lines the spool dropped since it started to, by reason (each logged once).
        self._dropping: dict[str, int] = {}
        self._partial_logged = False  # a partial write logged, no whole write since
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The output's table name (`influxdb`, `influxdb_v2`)."""
        return self.sender.name

    @property
    def pending_lines(self) -> int:
        """Lines held in memory, not yet written nor spooled."""
        return len(self._lines) + sum(batch.lines for batch in self._queue)

    def oldest_unwritten_s(self, now_ns: int) -> float:
        """Age of the oldest line not yet written (spooled or in memory); 0.0 when none."""
        times = [self.spool.oldest_ns, self._lines_since_ns]
        if self._queue:
            times.append(self._queue[0].created_ns)
        oldest = min((t for t in times if t is not None), default=None)
        return 0.0 if oldest is None else max(0.0, (now_ns - oldest) / 1e9)

    def status_metric(self, now_ns: int) -> Metric:
        """The `telemon_output` line: health, counters, and what waits to be written."""
        stats = self.stats
        fields: dict[str, FieldValue] = {
            "up": int(bool(self.up)),
            "written": stats.written,
            "failed": stats.failed,
            "retried": stats.retried,
            "dropped": stats.dropped,
            "spooled": stats.spooled,
            "spool_lines": self.spool.lines,
            "spool_bytes": self.spool.bytes,
            "pending_lines": self.pending_lines,
            "oldest_unwritten_s": round(self.oldest_unwritten_s(now_ns), 3),
        }
        tags = {"output": self.name, "url": self.sender.url}
        return Metric("telemon_output", tags, fields, now_ns)

    def on_collect(self, body: bytes) -> None:
        """A polled target's fresh lines (a `LineSource.listeners` callback)."""
        self._add_lines(split_lines(body))

    def _add_lines(self, lines: list[bytes]) -> None:
        if lines and not self._lines:
            self._lines_since_ns = self._wall_clock()
        self._lines.extend(lines)

    def start(self) -> None:
        """Listen to collections and flush every `flush_interval`."""
        self.source.listeners.append(self.on_collect)
        self._task = asyncio.create_task(self._run())

    async def take_last_push(self) -> None:
        """Take one more push (lazy targets, sink, self-metrics) for `stop` to write.

        For the source to call while the inputs still run, just before it stops
        them: lines pushed to the sink since the last flush are then written
        or spooled too. Bounded by `timeout`; a failure leaves what was held.
        """
        try:
            async with asyncio.timeout(self.options.timeout):
                self._take_push(await self.source.push_lines())
        except Exception as exc:  # noqa: BLE001 - stopping must go on
            _log.warning("output %s %s: no last push at stop: %r", self.name, self.sender.url, exc)

    async def stop(self) -> None:
        """Stop flushing; write what is left (bounded by `timeout`), spool the rest.

        Every line held is then written, or in the spool directory for the next
        start, or counted as lost in one log line (no `spool_dir`: the spool
        lives in memory; or the spool could not take it).
        """
        with contextlib.suppress(ValueError):
            self.source.listeners.remove(self.on_collect)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._batch_lines()
        held = self.pending_lines + self.spool.lines
        dropped_before, written_before = self.stats.dropped, self.stats.written
        # Backing off, a database is not tried again unless the spool dies with the process.
        if held and (not self._failures or self.spool.directory is None):
            try:
                async with asyncio.timeout(self.options.timeout):
                    await self._write()
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - what is left must still be spooled
                self._flush_failed(exc)
        self._spool_queue()
        self._end_spool_drops()
        await self.sender.aclose()
        self._log_left(held, self.stats.written - written_before,
                       self.stats.dropped - dropped_before)  # fmt: skip

    def _log_left(self, held: int, written: int, dropped: int) -> None:
        """At stop: one line saying what became of the lines held (when any were)."""
        if not held:
            return
        where = f"output {self.name} {self.sender.url}"
        left = self.spool.lines
        if self.spool.directory is None and left:
            _log.warning(
                "%s: stopping with %d lines unwritten (%d written at stop, %d dropped): %d lines"
                " lost, as the spool is in memory (set spool_dir to keep them)",
                where, held, written, dropped, left + dropped,
            )  # fmt: skip
        elif dropped:
            _log.warning(
                "%s: stopping with %d lines unwritten: %d written, %d spooled in %s, %d lost"
                " (the spool could not take them)",
                where, held, written, left, self.spool.directory, dropped,
            )  # fmt: skip
        elif left:
            _log.info(
                "%s: stopping with %d lines unwritten: %d written, %d spooled in %s"
                " for the next start",
                where, held, written, left, self.spool.directory,
            )  # fmt: skip
        else:
            _log.info("%s: stopping; wrote the %d lines held", where, written)

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
        self._take_push(await self.source.push_lines())
        self._batch_lines()
        if self._failures and self._clock() < self._retry_at:
            self._spool_queue()  # keeps memory bounded while the database is away
            return
        await self._write()

    def _take_push(self, body: bytes) -> None:
        # Self-metrics are re-encoded at most once a second: skip lines already pushed.
        lines = split_lines(body)
        self._add_lines([line for line in lines if line not in self._previous])
        self._previous = set(lines)

    def _batch_lines(self) -> None:
        created = self._lines_since_ns or 0
        self._queue.extend(make_batches(self._lines, self.options.batch_size, created))
        self._lines = []
        self._lines_since_ns = None

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
            self._spool_batch(self._queue.popleft())

    def _spool_batch(self, batch: Batch) -> None:
        # Counted from the spool's total: a failed append may already have
        # dropped older batches to make room.
        dropped_before = self.spool.dropped_lines
        try:
            appended = self.spool.append(batch)
        except OSError as exc:
            # Nowhere to keep it (spool directory unusable): holding it in
            # memory instead would grow without bound, so it is dropped.
            self.stats.dropped += batch.lines + self.spool.dropped_lines - dropped_before
            if not self._spool_error:
                self._spool_error = True
                _log.error(
                    "output %s %s: cannot spool (%s); dropping lines until it can",
                    self.name,
                    self.sender.url,
                    exc,
                )
            return
        if self._spool_error:
            self._spool_error = False
            _log.info("output %s %s: spooling again", self.name, self.sender.url)
        if appended.kept:
            self.stats.spooled += batch.lines
        self.stats.dropped += self.spool.dropped_lines - dropped_before
        self._note_spool_drops(appended)

    def _note_spool_drops(self, appended: Appended) -> None:
        """One WARNING when the spool starts dropping lines (for each reason), not per batch."""
        if not appended.dropped or appended.reason is None:
            return
        if appended.reason not in self._dropping:
            _log.warning(
                "output %s %s: the spool drops lines (%s): %d so far; the total is logged"
                " when the output writes again",
                self.name, self.sender.url, appended.reason, appended.dropped,
            )  # fmt: skip
        self._dropping[appended.reason] = self._dropping.get(appended.reason, 0) + appended.dropped

    def _end_spool_drops(self) -> None:
        """Writing again (or stopping): the spool drops no more; one INFO with the totals."""
        if not self._dropping:
            return
        totals = ", ".join(f"{lines} ({reason})" for reason, lines in self._dropping.items())
        _log.info(
            "output %s %s: no longer dropping spooled lines: %s dropped",
            self.name, self.sender.url, totals,
        )  # fmt: skip
        self._dropping = {}

    async def _write(self) -> None:
        """Send spooled batches, then queued ones, until one fails for a retryable reason."""
        while True:
            dropped_before = self.spool.dropped_lines
            spooled = self.spool.peek()
            self.stats.dropped += self.spool.dropped_lines - dropped_before  # unreadable files
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
            return await self._not_written(batch, spooled, error)
        except Exception as exc:
            # Not a database's answer (a bug): `_flush_failed` logs it; the
            # status must not say the output is up meanwhile.
            self.stats.failed += 1
            self._down(repr(exc), None)
            raise
        self._stored(batch.lines)
        self._partial_logged = False
        return True

    async def _not_written(self, batch: Batch, spooled: bool, error: WriteError) -> bool:
        """A batch the database did not store whole; False when it must be retried."""
        if error.refused is not None:
            self._stored_in_part(batch, error)
            return True
        self.stats.failed += 1
        if error.retry:
            self._failures += 1
            self._down(str(error), f"cannot write ({error}); spooling and retrying")
            self._back_off(error.retry_after)
            return False
        if error.too_large and batch.lines > 1:
            return await self._send_halves(batch, spooled)
        self.stats.dropped += batch.lines
        self._down(
            str(error), f"the database refused a batch of {batch.lines} lines ({error}); dropped it"
        )
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
            half = Batch(b"".join(part), len(part), created_ns=batch.created_ns)
            if not await self._send(half, spooled):
                return False
        return True

    def _stored_in_part(self, batch: Batch, error: WriteError) -> None:
        """A partial write: the database refused `error.refused` lines and stored the rest."""
        refused = min(error.refused or 0, batch.lines)
        self.stats.dropped += refused
        self._stored(batch.lines - refused)
        if not self._partial_logged:
            self._partial_logged = True  # until a batch is stored whole
            _log.warning(
                "output %s %s: the database refused %d of %d lines (%s); stored the rest",
                self.name,
                self.sender.url,
                refused,
                batch.lines,
                error,
            )

    def _stored(self, lines: int) -> None:
        """The batch was stored (`lines` of it): the output is up."""
        self.stats.written += lines
        self._end_spool_drops()  # nothing goes to the spool while writes succeed
        if self.up is False:
            _log.info("output %s %s: up, writing again", self.name, self.sender.url)
        self.up = True
        self.last_error = None
        self.last_success_ns = self._wall_clock()
        self._failures = 0

    def _down(self, reason: str, message: str | None) -> None:
        """The last write failed; logs `message` unless already down for the same reason."""
        if message is not None and (self.up is not False or reason != self.last_error):
            _log.warning("output %s %s: down: %s", self.name, self.sender.url, message)
        self.up = False
        self.last_error = reason

    def _back_off(self, retry_after: float | None) -> None:
        options = self.options
        delay = backoff_delay(
            self._failures, options.flush_interval, options.max_retry_interval, random.random()
        )
        if retry_after is not None:
            delay = max(delay, min(retry_after, options.max_retry_interval))
        self._retry_at = self._clock() + delay
