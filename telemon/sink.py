"""The write sink: line protocol pushed to telemon (Telegraf's outputs.http, InfluxDB clients).

`POST`/`PUT` on the sink paths store the latest value of every series
(measurement + tag set; fields merged, the newest timestamp wins) in a
`SeriesStore`; the `Sink` serves what has not expired (`Sink.metrics`, on
`/metrics`) and its own `telemon_sink` line. The agent builds and owns the
`Sink`; `setup_sink` routes the HTTP requests to it.

The sink answers as InfluxDB 1.x does, so that clients written for InfluxDB
(Telegraf's outputs, telemon's own outputs, client libraries) understand it:

* Every line that can be kept is kept. A line is refused when it cannot be
  parsed (strictly, as InfluxDB reads it; a timestamp outside InfluxDB's
  range counts as such, ``time outside range``), when its measurement is one
  of telemon's own (`RESERVED_MEASUREMENTS`: a pushed line must not pose as
  telemon's self-metrics), or when a value's type differs from its field's
  (`LineEncoder.admit`: types declared by the inputs, else fixed by the first
  value; InfluxDB's ``field type conflict``). A line refused for its type
  never fixes a field's type, so a push can never lock a field against its
  input.
* A body with refused lines is a 400 with a JSON body ``{"error": "..."}``
  and the same text in ``X-Influxdb-Error``: ``partial write: REASON
  dropped=N`` when lines were refused after parsing (REASON is the first such
  line's, N counts them), else ``partial write: unable to parse 'LINE':
  WHY`` (one per unparsed line, LF-separated, ``dropped=0``: InfluxDB does
  not count those), or, when no line could be parsed, ``unable to parse``
  alone.
* Lines without a timestamp get the arrival time.
* `max_body_size` bounds the body as sent and as inflated (413); gzip is
  inflated incrementally, so a gzip bomb never grows past the bound.
* Beyond `max_series`, lines of new series are dropped (updates of known series
  are still kept) and the answer is 503 with Retry-After: series expire after
  the TTL, so room comes back. Refusing, rather than evicting, keeps one
  client's cardinality explosion from pushing out everyone else's series.
  `max_bytes` bounds the store's estimated memory the same way (new series
  and new fields dropped, 503).
* A line longer than `max_line_bytes` or with more than `max_fields_per_line`
  fields is refused unread (``line exceeds ...``, as an unparsable line); a
  name or tag value with a control character is refused (``control
  character ...``): the encoder would remove it and merge two series.
* A line is never stored to be served otherwise than it was sent:
  ``refused_name`` counts lines with a measurement, tag key, tag value or
  field key that the encoder writes as something else (what it writes does
  not read back as the name: a reserved key such as the field key ``time``
  renamed, a backslash removed, a leading ``#``), asked of the encoder's own
  functions so the rule follows it; ``refused_duplicate_tags`` a tag key
  named twice (lpparse's ``duplicate tags``); ``refused_unsigned`` a ``u``
  value while the encoder writes no unsigned integers (``[agent]
  uint_support = false``; InfluxDB 1.x refuses them too); and
  ``refused_string_length`` a string the encoder would cut
  (`truncate_string`, 64 KiB of UTF-8, InfluxDB's documented limit).
* At most `max_concurrent_writes` writes run at once (another is a 503 with
  Retry-After before its body is read). A write holds its body, its text (a
  latin-1 view: one character per byte) and one step of parsed lines; it
  stops when its client goes away.
* Each series' line is encoded when the series changes and kept: a scrape
  joins bytes (`Sink.serve`), whatever the store's size.
* Authentication is the `[http]` one, also as InfluxDB clients send it:
  `Authorization: Token T` (v2) counts as a bearer token, `?u=U&p=P` (v1) as
  basic credentials, and `?p=T` as the token. A request without valid
  credentials changes nothing, not even the counters.
* `precision` is n/ns, u/us, ms or s (v1 and v2 names) on every path; `db`,
  `rp`, `org` and `bucket` are accepted and ignored (there is one store).

Every error answer (400, 401, 413, 415, 503) has the JSON body and the
header. Every kind of refusal is logged at WARNING the first time per
(reason, measurement, field), client text escaped and cut short.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import heapq
import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import AfterValidator, PositiveInt, field_validator

from telemon.auth import Credentials
from telemon.lineprotocol import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    LineEncoder,
    escape_key,
    escape_measurement,
    truncate_string,
)
from telemon.lpparse import (
    DUPLICATE_TAGS,
    LIMIT_EXCEEDED,
    TIME_OUTSIDE_RANGE,
    UNSIGNED_OFF,
    Limits,
    LineProtocolError,
    ParsedLine,
    iter_lines_partial,
    parse_lines,
    unescape_key,
    unescape_measurement,
)
from telemon.metric import FieldValue, Metric
from telemon.schema import Duration, Model, TomlTuple

if TYPE_CHECKING:
    from telemon.config import Config

__all__ = [
    "DEFAULT_PATHS",
    "REFUSALS",
    "RESERVED_MEASUREMENTS",
    "BodyTooLarge",
    "BoundedInflater",
    "SeriesStore",
    "Sink",
    "SinkConfig",
    "WriteResult",
    "open_paths",
    "setup_sink",
]

_log = logging.getLogger("telemon.sink")

DEFAULT_PATHS = ("/telegraf", "/write", "/api/v2/write")
MIB = 1024 * 1024
READ_CHUNK = 64 * 1024
UTF8_CHECK_STEP = 1024 * 1024
# InfluxDB v1 and v2 names of the timestamp units lpparse knows.
PRECISIONS = {"n": "ns", "ns": "ns", "u": "us", "us": "us", "ms": "ms", "s": "s"}


def _check_sink_path(path: str) -> str:
    if not path.startswith("/") or path in ("/", "/healthz") or any(c.isspace() for c in path):
        raise ValueError(f"{path!r} must start with '/' and not be '/' or '/healthz'")
    return path


class SinkConfig(Model):
    """`[sink]`: accepting line protocol pushed by Telegraf or InfluxDB clients."""

    enabled: bool = False
    paths: TomlTuple[Annotated[str, AfterValidator(_check_sink_path)]] = DEFAULT_PATHS
    ttl: Duration | None = None
    max_body_size: PositiveInt = 10 * MIB
    max_series: PositiveInt = 100_000
    max_bytes: PositiveInt = 256 * MIB
    max_concurrent_writes: PositiveInt = 4
    max_line_bytes: PositiveInt = MIB
    max_fields_per_line: PositiveInt = 1000

    @field_validator("paths")
    @classmethod
    def _distinct(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        if not paths:
            raise ValueError("list at least one path (or set enabled = false)")
        if len(set(paths)) != len(paths):
            raise ValueError("paths must be distinct")
        return paths


RESERVED_MEASUREMENTS = frozenset({"telemon", "telemon_input", "telemon_output", "telemon_sink"})
"""telemon's own measurements (as written): only telemon writes them."""

REFUSALS = (
    "type_conflict",
    "reserved",
    "time",
    "max_series",
    "max_bytes",
    "too_large",
    "control",
    "name",
    "duplicate_tags",
    "unsigned",
    "string_length",
    "parse",
    "invalid",
)
"""Why a line is refused, as counted in `telemon_sink` (`refused_<why>`)."""

MAX_LISTED = 100
"""Unparsed lines named in one answer at most (InfluxDB names them all)."""
MAX_TEXT = 200
"""Characters of client-supplied text quoted in an answer or a log line."""
MAX_NAMES = 10_000
"""Tag and field keys remembered as written as sent or not (cleared when full)."""
MAX_LOGGED = 1000
"""Distinct (reason, measurement, field) refusals remembered for logging once."""
WRITE_STEP = 500
"""Lines read and admitted between two turns of the event loop (about 10 ms of work)."""
LOSS_SOURCE = "sink"
"""The source the encoder's losses are noted under while it encodes the sink's series."""
BUSY_RETRY_AFTER_S = 1
"""Retry-After of a write refused because `max_concurrent_writes` are running."""
# Characters the encoder removes or rewrites in names and tag values: two
# series differing only by them would be served as one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the store (pure: the clock and the encoding are injected) ---------------------

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

SERIES_OVERHEAD = 1500
"""Bytes a series costs in the store beyond its text (objects, dict slots, heap entry,
its metric, the allocator's slack), as RSS grew for 100k series (CPython 3.11, 64-bit)."""
FIELD_OVERHEAD = 160
"""Bytes a field costs beyond its name and value (its record, dict slots, its value)."""
MAX_STORED_STRING = 64 * 1024 + 1
"""Characters of a string value kept: the encoder writes 64 KiB of UTF-8 at most, which
these hold (one more, so that the encoder still counts the value as truncated)."""
NUMBER_WIDTH = 24
"""Characters of the widest number or timestamp as written."""
PURGE_STEP = 5000
"""Series examined for expiry in one go (a scrape or a write step), keeping each short."""


@dataclass(slots=True)
class _Field:
    """One field's latest value, its timestamp and when it arrived."""

    value: FieldValue
    time_ns: int
    seen_ns: int


@dataclass(slots=True, eq=False)
class _Series:
    """One series: its fields, its line as encoded, and what it costs in bytes."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, _Field]
    line: bytes = b""
    metric: Metric | None = None  # what `line` encodes (global tags added): never changed
    size: int = 0
    oldest_seen_ns: int = 0
    alive: bool = True
    changed: bool = False


Encode = Callable[[Metric], bytes]
"""Encodes one series' metric to its line (b"" when nothing can be written); may add
tags to the metric, which is then kept as what the line says."""


class StoreFull(Exception):
    """No room for a line: the limit's name and value, as the 503 answer says them."""


class SeriesStore:
    """The latest fields of each pushed series, forgotten `ttl` seconds after they arrived.

    Each series keeps its line encoded (`encode`, injected) from the moment it
    changes, so serving the store is joining bytes, whatever its size.
    `clock` gives wall-clock nanoseconds; callers pass its reading as `now_ns`,
    which stamps lines without a timestamp and dates arrivals for expiry.
    Expiry is found through a heap of due times, one entry per series, so a
    purge touches only the series that are due. `bytes` estimates what the
    store holds (texts, values and the objects around them); past `max_bytes`
    or `max_series` no series or field is added (`StoreFull`).
    """

    def __init__(
        self,
        ttl: float,
        max_series: int,
        clock: Callable[[], int] = time.time_ns,
        *,
        max_bytes: int | None = None,
        encode: Encode | None = None,
    ) -> None:
        self.ttl_ns = int(ttl * 1e9)
        self.max_series = max_series
        self.max_bytes = max_bytes
        self.clock = clock
        self.encode = encode or _plain_encode
        self.bytes = 0
        self._series: dict[SeriesKey, _Series] = {}
        self._due: list[tuple[int, int, _Series]] = []
        self._queued = 0  # tie-breaker of heap entries with equal due times
        self._changed: list[_Series] = []
        self._served: bytes | None = None  # the last body served, until something changes

    def __len__(self) -> int:
        return len(self._series)

    def check_room(self, line: ParsedLine) -> None:
        """Raise `StoreFull` when `line` would add a series or a field past a limit.

        Known fields of known series always update; expired series leave at
        the next `purge`, which write steps and scrapes run.
        """
        series = self._series.get(_key(line))
        if series is None:
            if len(self._series) >= self.max_series:
                raise StoreFull(f"max_series ({self.max_series})")
            if self.max_bytes is not None and self.bytes + _line_cost(line) > self.max_bytes:
                raise StoreFull(f"max_bytes ({self.max_bytes})")
        elif self.max_bytes is not None:
            fields = series.fields
            grown = sum(
                FIELD_OVERHEAD + 2 * len(name) + _text_size(value) + NUMBER_WIDTH
                for name, value in line.fields.items()
                if name not in fields
            )
            if grown and self.bytes + grown > self.max_bytes:
                raise StoreFull(f"max_bytes ({self.max_bytes})")

    def has_room(self, line: ParsedLine, now_ns: int) -> bool:
        """True when `line` fits (see `check_room`), after purging what is due."""
        self.purge(now_ns, limit=PURGE_STEP)
        try:
            self.check_room(line)
        except StoreFull:
            return False
        return True

    def put(self, line: ParsedLine, now_ns: int) -> None:
        """Merge `line` in (call `check_room` first: `put` does not check the limits).

        The series' line is encoded again at the next `refresh`.
        """
        key = _key(line)
        series = self._series.get(key)
        created = series is None
        if series is None:
            series = self._series[key] = _Series(key[0], key[1], {}, oldest_seen_ns=now_ns)
            self._queue(series, now_ns + self.ttl_ns)
            self._count(series, _line_cost(line))  # counted now: `refresh` comes later
        fields = series.fields
        time_ns = now_ns if line.time_ns is None else line.time_ns
        for name, value in line.fields.items():
            old = fields.get(name)
            # Newest timestamp wins per field; at equal timestamps the later arrival.
            if old is None or time_ns >= old.time_ns:
                if isinstance(value, str) and len(value) > MAX_STORED_STRING:
                    value = value[:MAX_STORED_STRING]
                if old is None and not created:
                    self._count(series, FIELD_OVERHEAD + len(name) + _text_size(value))
                fields[name] = _Field(value, time_ns, now_ns)
        if not series.changed:
            series.changed = True
            self._changed.append(series)

    def refresh(self) -> None:
        """Encode again every series changed since the last refresh."""
        changed, self._changed = self._changed, []
        for series in changed:
            series.changed = False
            if series.alive:
                self._encode(series)

    def purge(self, now_ns: int | None = None, *, limit: int | None = None) -> bool:
        """Forget the fields, and series, that arrived `ttl` ago or earlier.

        Examines at most `limit` due series (all with None); True when none
        is left due.
        """
        horizon = (self.clock() if now_ns is None else now_ns) - self.ttl_ns
        due = self._due
        examined = 0
        while due and due[0][0] - self.ttl_ns <= horizon:
            if limit is not None and examined >= limit:
                return False
            examined += 1
            series = heapq.heappop(due)[2]
            if series.alive and self._expire(series, horizon):
                self._queue(series, series.oldest_seen_ns + self.ttl_ns)
        return True

    def serve(self, now_ns: int | None = None) -> bytes:
        """Every series that has not expired, as encoded lines (joined again only
        after a change: scrapes between two writes share one body)."""
        current, whole = self._current(now_ns)
        if whole and self._served is not None:
            return self._served
        body = b"".join([series.line for series in current])
        if whole:
            self._served = body
        return body

    def served_metrics(self, now_ns: int | None = None) -> list[Metric]:
        """The metrics `serve` encodes (global tags added), shared: never change them."""
        current, _ = self._current(now_ns)
        return [series.metric for series in current if series.metric is not None]

    def _current(self, now_ns: int | None) -> tuple[Iterable[_Series], bool]:
        """The series to serve, after a purge in a bounded step, and whether they are
        the whole store (nothing left due).

        When series are still due after the step, each is brought up to date
        (or left out, expired whole) as it is met: a scrape never waits for a
        purge of the whole store.
        """
        now_ns = self.clock() if now_ns is None else now_ns
        self.refresh()
        if self.purge(now_ns, limit=PURGE_STEP):
            return self._series.values(), True
        horizon = now_ns - self.ttl_ns
        current = [
            series
            for series in list(self._series.values())
            if series.oldest_seen_ns > horizon or self._expire(series, horizon)
        ]
        return current, False

    def reencode(self) -> None:
        """Encode every series again (the encoding changed, e.g. the global tags)."""
        for series in self._series.values():
            self._encode(series)

    def __iter__(self) -> Iterator[Metric]:
        """The current metrics, one per series, stamped with its newest field's time."""
        self.purge()
        for series in self._series.values():
            yield _metric(series)

    def _expire(self, series: _Series, horizon: int) -> bool:
        """Drop `series`' fields that arrived by `horizon`; False when none is left."""
        fields = series.fields
        expired = [name for name, field in fields.items() if field.seen_ns <= horizon]
        for name in expired:
            del fields[name]
        if not fields:
            del self._series[(series.measurement, series.tags)]
            self._served = None
            self.bytes -= series.size
            series.alive = False
            return False
        if expired:
            self._encode(series)
        else:  # read from the fields: a due time in the past would be popped forever
            series.oldest_seen_ns = min(field.seen_ns for field in fields.values())
        return True

    def _encode(self, series: _Series) -> None:
        series.oldest_seen_ns = min(field.seen_ns for field in series.fields.values())
        metric = _metric(series)
        series.line = self.encode(metric)
        series.metric = metric
        self._served = None
        self._count(series, _series_cost(series) - series.size)

    def _count(self, series: _Series, grown: int) -> None:
        series.size += grown
        self.bytes += grown

    def _queue(self, series: _Series, due_ns: int) -> None:
        self._queued += 1
        heapq.heappush(self._due, (due_ns, self._queued, series))


def _key(line: ParsedLine) -> SeriesKey:
    return line.measurement, tuple(sorted(line.tags.items()))


def _metric(series: _Series) -> Metric:
    fields = series.fields
    values = {name: field.value for name, field in fields.items()}
    time_ns = max(field.time_ns for field in fields.values())
    return Metric(series.measurement, dict(series.tags), values, time_ns)


def _plain_encode(metric: Metric) -> bytes:
    return LineEncoder().encode(metric).encode("utf-8", "replace")


def _text_size(value: FieldValue) -> int:
    return len(value) if isinstance(value, str) else 8


def _line_cost(line: ParsedLine) -> int:
    """At least what a new series of `line` will cost (`_series_cost`), before it is encoded:
    its line is counted at its parts' length plus separators, numbers at their widest."""
    tags = sum(len(k) + len(v) for k, v in line.tags.items())
    fields = sum(FIELD_OVERHEAD + len(k) + _text_size(v) for k, v in line.fields.items())
    names = len(line.measurement) + tags
    written = (
        names
        + 2 * len(line.tags)
        + sum(
            len(k) + 2 + (len(v) + 2 if isinstance(v, str) else NUMBER_WIDTH)
            for k, v in line.fields.items()
        )
    )
    return SERIES_OVERHEAD + names + fields + written + NUMBER_WIDTH


def _series_cost(series: _Series) -> int:
    """What `series` costs: its line, names and values, and the objects holding them."""
    tags = sum(len(k) + len(v) for k, v in series.tags)
    fields = sum(
        FIELD_OVERHEAD + len(name) + _text_size(field.value)
        for name, field in series.fields.items()
    )
    return SERIES_OVERHEAD + len(series.measurement) + tags + fields + len(series.line)


# --- the sink: admission, counters, health ----------------------------------------------


@dataclass(slots=True)
class WriteResult:
    """What one write kept and refused.

    `refused` counts refused lines by reason (`REFUSALS`). `dropped` lines were
    parsed and then refused (InfluxDB's ``dropped=N``), `first_dropped` is the
    first one's reason in InfluxDB's words; `unparsed` lines could not be
    parsed, `unparsed_texts` names up to `MAX_LISTED` of them as InfluxDB does
    (``unable to parse 'LINE': WHY``).
    """

    kept: int = 0
    dropped: int = 0
    unparsed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    first_dropped: str | None = None
    unparsed_texts: list[str] = field(default_factory=list)

    @property
    def refused_lines(self) -> int:
        """Every refused line, whatever the reason."""
        return self.dropped + self.unparsed

    @property
    def first_refusal(self) -> str | None:
        """The reason InfluxDB names first: a line refused after parsing, else an unparsed one."""
        if self.first_dropped is not None:
            return self.first_dropped
        return self.unparsed_texts[0] if self.unparsed_texts else None

    def add_refusal(self, why: str) -> None:
        """One more line refused for `why`."""
        self.refused[why] = self.refused.get(why, 0) + 1


class Sink:
    """The running sink: the store, admission by the encoder's field types, counters, health.

    `up` says whether the last write was kept whole: True before any write
    and after a write whose every line was kept; False after an authorized
    write refused in part or whole (any 400, 413, 415 or 503 answer), until a
    write is kept whole again. Refusing is the sink working as it should, but
    `up=0` tells that some client's lines are being lost. `last_error` is the
    last refusal's reason and stays after `up` is back (None before any).
    Requests without valid credentials change nothing.
    """

    def __init__(
        self,
        config: SinkConfig,
        encoder: LineEncoder,
        credentials: Credentials,
        *,
        ttl: float,
        clock: Callable[[], int] = time.time_ns,
        global_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.credentials = credentials
        self.ttl = ttl
        self.clock = clock
        self.global_tags = dict(global_tags or {})
        self.loss_source = LOSS_SOURCE
        self.limits = Limits(config.max_line_bytes, config.max_fields_per_line)
        self.store = SeriesStore(
            ttl, config.max_series, clock, max_bytes=config.max_bytes, encode=self._encode
        )
        self.active_writes = 0
        self.abandoned_writes = 0
        self.writes = 0
        self.lines = 0
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self.refused_bodies = 0
        self.up = True
        self.last_error: str | None = None
        self._logged: set[tuple[str, str, str]] = set()
        self._keys_as_sent: dict[tuple[bool, str], str | None] = {}

    @property
    def refused_lines(self) -> int:
        """Lines refused since start, whatever the reason."""
        return sum(self.refused.values())

    @property
    def retry_after_s(self) -> int:
        """The Retry-After of a 503: series expire within the TTL, so room comes back."""
        return max(1, round(self.ttl))

    def write(
        self, lines: Sequence[ParsedLine], errors: Sequence[LineProtocolError] = ()
    ) -> WriteResult:
        """Admit and store `lines`; `errors` are the body's lines that could not be parsed."""
        result = WriteResult()
        self._unparsed(result, errors)
        self._take(result, lines, self.clock())
        return self._finish(result)

    async def write_text(
        self,
        text: str,
        precision: str = "ns",
        *,
        utf8: bool = False,
        gone: Callable[[], bool] = lambda: False,
        step: int = WRITE_STEP,
    ) -> WriteResult:
        """Read, admit and store a body's `text` in steps of `step` lines.

        The event loop serves others (scrapes) between steps, and only one
        step's parsed lines exist at a time: a write holds its text and little
        more. `text` is as `decode_text` gives it: with `utf8`, a latin-1 view
        of UTF-8. When `gone()` says the client went away, the write stops
        (`ClientGone`); what was admitted stays, as InfluxDB keeps what it wrote.
        """
        result = WriteResult()
        now = self.clock()  # one arrival time for the body, as InfluxDB stamps a write
        try:
            batches = iter_lines_partial(
                text,
                precision=precision,
                limits=self.limits,
                batch=step,
                unsigned=self.encoder.options.uint_support,  # else served as int64, clamped
            )
            for lines, errors in batches:
                if utf8:
                    lines = [utf8_line(line) for line in lines]
                    errors = [utf8_error(error) for error in errors]
                self._unparsed(result, errors)
                self._take(result, lines, now)
                await asyncio.sleep(0)
                if gone():
                    self.abandoned_writes += 1
                    raise ClientGone(f"client went away after {result.kept} lines kept")
        finally:
            self._finish(result)
        return result

    def serve(self, global_tags: Mapping[str, str] | None = None) -> bytes:
        """The stored series as line protocol, each encoded when it last changed.

        `global_tags` (default: those given at start) are added to every
        line's tags; when they differ from those the lines were encoded with,
        every series is encoded again, once.
        """
        if global_tags is not None and global_tags != self.global_tags:
            self.global_tags = dict(global_tags)
            self.store.reencode()
        return self.store.serve()

    def served_metrics(self, global_tags: Mapping[str, str] | None = None) -> list[Metric]:
        """What `serve` encodes, as metrics (for the Prometheus format); shared: never
        change them."""
        if global_tags is not None and global_tags != self.global_tags:
            self.global_tags = dict(global_tags)
            self.store.reencode()
        return self.store.served_metrics()

    def _encode(self, metric: Metric) -> bytes:
        if self.global_tags:
            metric.tags = {**self.global_tags, **metric.tags}
        self.encoder.losses.source = self.loss_source
        return self.encoder.encode(metric).encode("utf-8", "replace")

    async def write_in_steps(
        self,
        lines: Sequence[ParsedLine],
        errors: Sequence[LineProtocolError] = (),
        step: int = WRITE_STEP,
    ) -> WriteResult:
        """`write`, letting the event loop serve others (scrapes) after every `step` lines.

        Admitting a 10 MiB body takes seconds; each line is taken whole, so
        writes that interleave stay correct.
        """
        result = WriteResult()
        self._unparsed(result, errors)
        now = self.clock()  # one arrival time for the body, as InfluxDB stamps a write
        for start in range(0, len(lines), step):
            if start:
                await asyncio.sleep(0)
            self._take(result, lines[start : start + step], now)
        return self._finish(result)

    def _take(self, result: WriteResult, lines: Sequence[ParsedLine], now_ns: int) -> None:
        self.store.purge(now_ns, limit=PURGE_STEP)  # room comes back before it is needed
        try:
            self._admit(result, lines, now_ns)
        finally:
            self.store.refresh()

    def _admit(self, result: WriteResult, lines: Sequence[ParsedLine], now_ns: int) -> None:
        for line in lines:
            refusal = self._refusal(line, now_ns)
            if refusal is None:
                self.store.put(line, now_ns)
                result.kept += 1
                continue
            why, reason = refusal
            result.dropped += 1
            result.add_refusal(why)
            if result.first_dropped is None:
                result.first_dropped = reason
            self._log_once(why, _printable(line.measurement), reason)

    def _finish(self, result: WriteResult) -> WriteResult:
        self.writes += 1
        self.lines += result.kept
        for why, count in result.refused.items():
            self.refused[why] += count
        self.up = not result.refused_lines
        if not self.up:
            self.last_error = _write_error(self, result)[2]  # the one-line form
        return result

    def refuse_body(self, reason: str, status: int = 400) -> None:
        """An authorized write was refused whole before its lines were read (413, 415, 400).

        Logged once per status: the reason may quote the client (a precision,
        a position in the body) and differ at every request.
        """
        self.writes += 1
        self.refused_bodies += 1
        self.up = False
        self.last_error = reason
        self._log_once("body", "", reason, key=str(status))

    def metrics(self) -> list[Metric]:
        """The stored series that have not expired (fresh objects: callers may change them)."""
        return list(self.store)

    def status_metric(self, now_ns: int) -> Metric:
        """The `telemon_sink` line: health, series, writes, kept and refused lines (integers)."""
        self.store.purge(now_ns)
        fields: dict[str, FieldValue] = {
            "up": int(self.up),
            "series": len(self.store),
            "writes": self.writes,
            "lines": self.lines,
            "refused_lines": self.refused_lines,
            "refused_bodies": self.refused_bodies,
            "bytes": self.store.bytes,
            "writes_abandoned": self.abandoned_writes,
        }
        fields.update({f"refused_{why}": count for why, count in self.refused.items()})
        return Metric("telemon_sink", {}, fields, now_ns)

    def _refusal(self, line: ParsedLine, now_ns: int) -> tuple[str, str] | None:
        """Why `line` cannot be kept (a `REFUSALS` name and InfluxDB-like words), or None."""
        measurement = line.measurement
        if escape_measurement(measurement) in RESERVED_MEASUREMENTS:
            name = _printable(measurement)
            return "reserved", f'reserved measurement: "{name}" is written by telemon itself'
        if line.time_ns is not None and not MIN_TIME_NS <= line.time_ns <= MAX_TIME_NS:
            name = _printable(measurement)
            return "time", f'{TIME_OUTSIDE_RANGE}: {line.time_ns} on measurement "{name}"'
        control = _control_in_names(line)
        if control is not None:
            return "control", control
        renamed = self._renamed(line)
        if renamed is not None:
            return "name", renamed
        cut = _cut_string(line)
        if cut is not None:
            return "string_length", cut
        try:
            self.store.check_room(line)
        except StoreFull as full:
            return str(full).split(" ", 1)[0], f"{full} reached"
        # Last: admitting fixes the types of new fields, which a refused line must not do.
        reason = self.encoder.admit(measurement, line.fields)
        if reason is None:
            return None
        why = "type_conflict" if reason.startswith("field type conflict") else "invalid"
        return why, _printable(reason, 3 * MAX_TEXT)

    def _renamed(self, line: ParsedLine) -> str | None:
        """Why `line` is refused for a name the encoder would write otherwise, or None.

        A name is served as sent when what the encoder writes for it reads
        back as the name itself; a rewritten name (a reserved key renamed, a
        backslash removed, a leading ``#``) would merge two pushed series or
        fields, or serve what the client never sent.
        """
        measurement = line.measurement
        name = _printable(measurement)
        written = unescape_measurement(escape_measurement(measurement))
        if written != measurement:
            return f'invalid measurement: "{name}" would be served as "{_printable(written)}"'
        for key, value in line.tags.items():
            written_key = self._key_as_written(key, tag=True)
            if written_key != key:
                return _renamed_key("tag key", "tag", key, name, written_key)
            written = unescape_key(escape_key(value))
            if written != value:
                return (
                    f'invalid tag value: input tag "{_printable(key)}" on measurement "{name}"'
                    f' has value "{_printable(value)}", which would be served as'
                    f' "{_printable(written)}"'
                )
        for key in line.fields:
            written_key = self._key_as_written(key, tag=False)
            if written_key != key:
                return _renamed_key("field name", "field", key, name, written_key)
        return None

    def _key_as_written(self, key: str, *, tag: bool) -> str | None:
        """`key` as read back from a line the encoder writes with it (None: left out).

        Asked of the encoder itself (a fresh one: no types are fixed), so the
        rule follows the encoder's renaming of reserved keys as it changes.
        """
        cache = self._keys_as_sent
        try:
            return cache[tag, key]
        except KeyError:
            pass
        if len(cache) >= MAX_NAMES:
            cache.clear()
        probe = Metric("m", {key: "v"}, {"f": 1}, None) if tag else Metric("m", {}, {key: 1}, None)
        try:
            [read] = parse_lines(LineEncoder().encode(probe))
        except ValueError:  # nothing written (LineProtocolError is a ValueError)
            read = ParsedLine("m", {}, {}, None)
        names = list(read.tags if tag else read.fields)
        cache[tag, key] = written = names[0] if len(names) == 1 else None
        return written

    def _unparsed(self, result: WriteResult, errors: Sequence[LineProtocolError]) -> None:
        """Count the lines that could not be parsed (or were past `limits`) in `result`."""
        for error in errors:
            why = _unparsed_why(error.reason)
            result.unparsed += 1
            result.add_refusal(why)
            text = (
                f"unable to parse '{_printable(error.line)}': {_printable(error.reason)}"
                f" (line {error.line_number}, column {error.column})"
            )
            if len(result.unparsed_texts) < MAX_LISTED:
                result.unparsed_texts.append(text)
            # Logged once per kind of mistake, not per line: a quoted value varies.
            self._log_once(why, "", text, key=error.reason.split(" '", 1)[0])

    def _log_once(self, why: str, measurement: str, text: str, key: str | None = None) -> None:
        """WARNING the first time per (reason, measurement, field); the text names the field."""
        seen = (why, measurement[:MAX_TEXT], (text if key is None else key)[: 3 * MAX_TEXT])
        if seen in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED:
            self._logged.clear()  # bounded: at worst a refusal is logged again
        self._logged.add(seen)
        _log.warning("refused a pushed line (%s): %s", why, text)


def _unparsed_why(reason: str) -> str:
    if reason == TIME_OUTSIDE_RANGE:
        return "time"
    if reason == DUPLICATE_TAGS:
        return "duplicate_tags"
    if reason == UNSIGNED_OFF:
        return "unsigned"
    return "too_large" if reason.startswith(LIMIT_EXCEEDED) else "parse"


def _control_in_names(line: ParsedLine) -> str | None:
    """Why `line` is refused for a control character in a name or tag value, or None.

    The encoder removes or rewrites them, so `t=a\\x00b` would be served as
    `t=ab`, merging two series (or two fields) that were pushed apart.
    """
    tags = line.tags
    names = "".join([line.measurement, *tags, *tags.values(), *line.fields])
    if names.isprintable():  # the usual line, checked at C speed
        return None
    for where, text in _names(line):
        found = _CONTROL.search(text)
        if found is not None:
            series = ",".join([line.measurement, *(f"{k}={v}" for k, v in line.tags.items())])
            return (
                f"control character {found[0]!r} in {where} of line"
                f" '{_printable(series)}': it would be written without it, as another series"
            )
    return None


def _renamed_key(what: str, kind: str, key: str, measurement: str, written: str | None) -> str:
    """InfluxDB's words for a key it refuses (``invalid field name: input field "time" ...``),
    and how telemon would have served it."""
    served = "left out" if written is None else f'served as "{_printable(written)}"'
    return (
        f'invalid {what}: input {kind} "{_printable(key)}" on measurement "{measurement}"'
        f" is invalid: it would be {served}"
    )


def _cut_string(line: ParsedLine) -> str | None:
    """Why `line` is refused for a string the encoder would cut (`truncate_string`), or None."""
    for key, value in line.fields.items():
        if isinstance(value, str) and truncate_string(value) is not value:
            size = len(value.encode("utf-8", "replace"))
            kept = len(truncate_string(value).encode("utf-8"))
            return (
                f'string too long: input field "{_printable(key)}" on measurement'
                f' "{_printable(line.measurement)}" is {size} bytes of UTF-8; telemon'
                f" serves at most {kept}"
            )
    return None


def _names(line: ParsedLine) -> Iterator[tuple[str, str]]:
    yield "measurement", line.measurement
    for key, value in line.tags.items():
        yield "tag key", key
        yield "tag value", value
    for key in line.fields:
        yield "field key", key


def _printable(text: str, limit: int = MAX_TEXT) -> str:
    """Client text made safe to quote in an answer or a log: escaped, at most `limit` characters."""
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --- bodies: size bound and gzip ----------------------------------------------------


class ClientGone(Exception):
    """The client closed the connection: its write stops."""


class BodyTooLarge(Exception):
    """The body, as sent or inflated, is larger than allowed."""


class BadBody(Exception):
    """The body cannot be read (bad gzip, not UTF-8); the message says why."""


class UnsupportedEncoding(Exception):
    """The body's Content-Encoding is neither identity nor gzip."""


class BoundedInflater:
    """Inflates gzip chunk by chunk, never producing more than `limit` bytes in all."""

    def __init__(self, limit: int) -> None:
        self._room = limit
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes `chunk` inflates to; raises `BodyTooLarge` past the limit."""
        out = []
        try:
            while chunk:
                # One byte more than the room left tells "too large" from "exactly full".
                data = self._inflater.decompress(chunk, self._room + 1)
                self._room -= len(data)
                if self._room < 0:
                    raise BodyTooLarge
                out.append(data)
                chunk = self._next_member()
        except zlib.error as exc:
            raise BadBody(f"body is not valid gzip: {exc}") from None
        return b"".join(out)

    def _next_member(self) -> bytes:
        """Input left after a gzip member ends: concatenated members are one body (as in Go)."""
        if not self._inflater.eof:
            return b""
        rest = self._inflater.unused_data
        if rest:
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        return rest

    def finish(self) -> None:
        """Raises `BadBody` when the gzip stream was cut short."""
        if not self._inflater.eof:
            raise BadBody("body is not valid gzip: truncated")


def _inflater_for(request: web.Request, limit: int) -> BoundedInflater | None:
    """Our own inflater for gzip, unless aiohttp already inflates (its bounded auto_decompress)."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding in ("", "identity") or request.content.total_compressed_bytes is not None:
        return None
    if encoding in ("gzip", "x-gzip"):
        return BoundedInflater(limit)
    raise UnsupportedEncoding(f"unsupported Content-Encoding {_printable(encoding, 40)!r}")


async def read_body(request: web.Request, limit: int) -> bytes | bytearray:
    """The body, inflated, of at most `limit` bytes; raises `BodyTooLarge` or `BadBody`."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    inflater = _inflater_for(request, limit)
    if inflater is None and request.content_length is not None:
        return await _read_sized(request, request.content_length)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            data = inflater.feed(chunk) if inflater else chunk
            size += len(data)
            if size > limit:
                raise BodyTooLarge
            chunks.append(data)
    except HttpProcessingError as exc:  # aiohttp's own inflating failed
        raise BadBody(f"body cannot be decoded: {exc.message}") from None
    if inflater:
        inflater.finish()
    return b"".join(chunks)


async def _read_sized(request: web.Request, size: int) -> bytearray:
    """A body of known size, read into one buffer (no list of chunks joined at the end)."""
    body = bytearray(size)
    view = memoryview(body)
    got = 0
    try:
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            view[got : got + len(chunk)] = chunk  # aiohttp never reads past Content-Length
            got += len(chunk)
    except HttpProcessingError as exc:
        raise BadBody(f"body cannot be decoded: {exc.message}") from None
    finally:
        view.release()
    if got != size:
        raise BadBody(f"body ended after {got} of {size} bytes")
    return body


def decode_text(body: bytes | bytearray) -> tuple[str, bool]:
    """`body` as the parser reads it, and whether it holds any non-ASCII byte.

    The text is `body` decoded as latin-1, one character per byte, so it
    never takes more memory than the body (UTF-8 decoding makes a mostly
    ASCII body with one emoji four times larger). Line protocol's delimiters
    are ASCII, which never occur inside a UTF-8 sequence, so the parser
    splits it exactly as the UTF-8 text; `utf8_line` reads the parsed names
    and strings back as UTF-8. `BadBody` names the line and column (in
    bytes) of the first byte that is not UTF-8.
    """
    if body.isascii():
        return body.decode("ascii"), False
    position = _invalid_utf8_at(body)
    if position is not None:
        line = body.count(b"\n", 0, position) + 1
        column = position - (body.rfind(b"\n", 0, position) + 1) + 1
        raise BadBody(f"line {line}, column {column}: invalid UTF-8")
    return body.decode("latin-1"), True


def _invalid_utf8_at(body: bytes | bytearray) -> int | None:
    """Where the first invalid UTF-8 byte is, checked in slices (no full-size text)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(body), UTF8_CHECK_STEP):
        pending = len(decoder.getstate()[0])  # bytes of a sequence cut by the slice
        end = start + UTF8_CHECK_STEP
        try:
            decoder.decode(body[start:end], final=end >= len(body))
        except UnicodeDecodeError as exc:
            return start - pending + exc.start
    return None


def _utf8(text: str) -> str:
    """A string parsed from a latin-1 view of UTF-8 (see `decode_text`), read as UTF-8."""
    return text if text.isascii() else text.encode("latin-1").decode("utf-8", "replace")


def utf8_line(line: ParsedLine) -> ParsedLine:
    """`line`, parsed from a latin-1 view of UTF-8, with its names and strings read as UTF-8."""
    line.measurement = _utf8(line.measurement)
    line.tags = {_utf8(key): _utf8(value) for key, value in line.tags.items()}
    line.fields = {
        _utf8(key): _utf8(value) if isinstance(value, str) else value
        for key, value in line.fields.items()
    }
    return line


def utf8_error(error: LineProtocolError) -> LineProtocolError:
    """`error`'s texts read as UTF-8 (its column counts bytes)."""
    error.line = _utf8(error.line)
    error.reason = error.reason.encode("latin-1", "replace").decode("utf-8", "replace")
    return error


# --- HTTP ---------------------------------------------------------------------------


class _Refused(Exception):
    """A write refused whole before its lines are read: the status and why."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


SINK_KEY = web.AppKey("sink", Sink)


def open_paths(config: Config) -> frozenset[str]:
    """Paths the app-wide auth middleware must let through: the sink checks its own."""
    return frozenset(config.sink.paths) if config.sink.enabled else frozenset()


def setup_sink(app: web.Application, sink: Sink) -> None:
    """Route POST and PUT of every sink path to `sink` (other methods: 405)."""
    app[SINK_KEY] = sink
    for path in sink.config.paths:
        app.router.add_route(hdrs.METH_POST, path, write_handler)
        app.router.add_route(hdrs.METH_PUT, path, write_handler)


async def write_handler(request: web.Request) -> web.Response:
    """Store what the body holds: 204, or 400/401/413/415/503 and why (InfluxDB's JSON)."""
    sink = request.app[SINK_KEY]
    if not authorized(sink.credentials, request.headers, request.query):
        challenge = {"WWW-Authenticate": sink.credentials.challenge()}
        return error_response(401, "authorization failed", headers=challenge)
    limit = sink.config.max_concurrent_writes
    if sink.active_writes >= limit:
        # Refused before the body is read: each running write holds up to
        # about twice max_body_size, so this bounds the sink's memory.
        text = f"too many concurrent writes (max_concurrent_writes is {limit})"
        sink.refuse_body(text, 503)
        return error_response(503, text, headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
    sink.active_writes += 1
    try:
        return await _write(request, sink)
    except ClientGone as gone:
        _log.debug("write abandoned: %s", gone)
        return error_response(499, str(gone))  # nobody reads it
    finally:
        sink.active_writes -= 1


async def _write(request: web.Request, sink: Sink) -> web.Response:
    try:
        precision = _precision(request.query.get("precision", ""))
        text, utf8 = await _read_text(request, sink.config.max_body_size)
    except _Refused as refused:
        sink.refuse_body(refused.text, refused.status)
        return error_response(refused.status, refused.text)
    result = await sink.write_text(text, precision, utf8=utf8, gone=lambda: client_gone(request))
    if not result.refused_lines:
        return web.Response(status=204)
    status, text, header = _write_error(sink, result)
    extra = {"Retry-After": str(sink.retry_after_s)} if status == 503 else None
    return error_response(status, text, header=header, headers=extra)


def client_gone(request: web.BaseRequest) -> bool:
    """True once the client closed the connection (aiohttp drops the transport)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _write_error(sink: Sink, result: WriteResult) -> tuple[int, str, str]:
    """The status, the error text and its one-line form for the header, as InfluxDB words them.

    Refused after parsing: ``partial write: FIRST dropped=N``. Only unparsed
    lines: each ``unable to parse 'LINE': WHY`` on its own line, wrapped in
    ``partial write: ... dropped=0`` when other lines were kept. Lines of new
    series past `max_series`: 503, worded without "partial write" so that
    clients retry (the series expire, room comes back).
    """
    store = sink.store
    limits = {"max_series": store.max_series, "max_bytes": store.max_bytes}
    full = sum(result.refused.get(why, 0) for why in limits)
    if full:
        hit = [why for why in limits if result.refused.get(why)]
        reached = " and ".join(f"{why} ({limits[why]})" for why in hit)
        what = "new series" if not result.refused.get("max_bytes") else "new series or fields"
        others = ", ".join(
            f"{count} {why}" for why, count in result.refused.items() if count and why not in limits
        )
        text = f"{reached} reached: {full} lines of {what} dropped, {result.kept} kept" + (
            f"; also refused: {others}" if others else ""
        )
        return 503, text, text
    if result.dropped:
        text = f"partial write: {result.first_dropped} dropped={result.dropped}"
        return 400, text, text
    listed = result.unparsed_texts
    more = result.unparsed - len(listed)
    tail = [f"and {more} more lines that cannot be parsed"] if more else []
    text = "\n".join([*listed, *tail])
    header = listed[0] + (f" (and {result.unparsed - 1} more)" if result.unparsed > 1 else "")
    if result.kept:
        text, header = f"partial write: {text} dropped=0", f"partial write: {header} dropped=0"
    return 400, text, header


def error_response(
    status: int, text: str, *, header: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """InfluxDB's error answer: ``{"error": TEXT}`` and the text in ``X-Influxdb-Error``.

    The header gets `header` (default `text`) on one line, in ASCII.
    """
    one_line = " ".join((text if header is None else header).splitlines())
    return web.Response(
        status=status,
        text=json.dumps({"error": text}) + "\n",
        content_type="application/json",
        headers={
            **(headers or {}),
            "X-Influxdb-Error": one_line.encode("ascii", "backslashreplace").decode("ascii"),
        },
    )


async def _read_text(request: web.Request, limit: int) -> tuple[str, bool]:
    """The body as text; raises `_Refused` (413, 415, 400) when it cannot be had."""
    try:
        return decode_text(await read_body(request, limit))
    except BodyTooLarge:
        raise _Refused(413, f"request body too large: max_body_size is {limit} bytes") from None
    except UnsupportedEncoding as exc:
        raise _Refused(415, str(exc)) from None
    except BadBody as exc:
        raise _Refused(400, str(exc)) from None


def _precision(value: str) -> str:
    if not value:
        return "ns"
    try:
        return PRECISIONS[value]
    except KeyError:
        known = ", ".join(PRECISIONS)
        raise _Refused(
            400, f"unknown precision {_printable(value, 40)!r} (one of {known})"
        ) from None


def authorized(
    credentials: Credentials, headers: Mapping[str, str], query: Mapping[str, str]
) -> bool:
    """The `[http]` credentials, in any way InfluxDB clients send them."""
    if not credentials.required:
        return True
    scheme, _, value = headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
    if scheme.lower() == "token":  # InfluxDB v2's name for a bearer token
        scheme = "Bearer"
    if scheme and credentials.allows(f"{scheme} {value}"):
        return True
    return _query_authorized(credentials, query.get("u"), query.get("p"))


def _query_authorized(credentials: Credentials, user: str | None, password: str | None) -> bool:
    """InfluxDB v1's `?u=&p=`; the password may also be the token (v2's v1 API does so)."""
    if password is None:
        return False
    basic = base64.b64encode(f"{user or ''}:{password}".encode()).decode()
    # Both checks always run, so timing does not tell which credential matched.
    basic_ok = user is not None and credentials.allows(f"Basic {basic}")
    token_ok = credentials.allows(f"Bearer {password}")
    return basic_ok or token_ok
