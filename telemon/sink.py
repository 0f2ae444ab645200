"""The write sink: line protocol pushed to telemon (Telegraf's outputs.http, InfluxDB clients).

`POST`/`PUT` on the sink paths store the latest value of every series
(measurement + tag set; fields merged, the newest timestamp wins) in a
`SeriesStore`; a lazy `SinkTarget` serves what has not expired on `/metrics`.

* A body is parsed strictly and kept whole or not at all on a parse error (400
  naming the line and column). Lines without a timestamp get the arrival time.
* `max_body_size` bounds the body as sent and as inflated (413); gzip is
  inflated incrementally, so a gzip bomb never grows past the bound.
* Beyond `max_series`, lines of new series are dropped (updates of known series
  are still kept) and the answer is 503 with Retry-After: series expire after
  `ttl`, so room comes back. Refusing, rather than evicting, keeps one client's
  cardinality explosion from pushing out everyone else's series.
* Authentication is the `[http]` one, also as InfluxDB clients send it:
  `Authorization: Token T` (v2) counts as a bearer token, `?u=U&p=P` (v1) as
  basic credentials, and `?p=T` as the token.
* `precision` is n/ns, u/us, ms or s (v1 and v2 names) on every path; `db`,
  `rp`, `org` and `bucket` are accepted and ignored (there is one store).
"""

from __future__ import annotations

import asyncio
import base64
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import AfterValidator, PositiveInt, field_validator

from telemon.auth import Credentials
from telemon.inputs.base import Target
from telemon.lpparse import LineProtocolError, ParsedLine, parse_lines
from telemon.metric import FieldValue, Metric
from telemon.schema import Duration, Model

if TYPE_CHECKING:
    from telemon.collector import Collector
    from telemon.config import Config

__all__ = [
    "DEFAULT_PATHS",
    "BodyTooLarge",
    "BoundedInflater",
    "SeriesStore",
    "SinkConfig",
    "SinkTarget",
    "WriteResult",
    "find_store",
    "open_paths",
    "setup_sink",
]

DEFAULT_PATHS = ("/telegraf", "/write", "/api/v2/write")
MIB = 1024 * 1024
READ_CHUNK = 64 * 1024
# InfluxDB v1 and v2 names of the timestamp units lpparse knows.
PRECISIONS = {"n": "ns", "ns": "ns", "u": "us", "us": "us", "ms": "ms", "s": "s"}


def _check_sink_path(path: str) -> str:
    if not path.startswith("/") or path in ("/", "/healthz") or any(c.isspace() for c in path):
        raise ValueError(f"{path!r} must start with '/' and not be '/' or '/healthz'")
    return path


class SinkConfig(Model):
    """`[sink]`: accepting line protocol pushed by Telegraf or InfluxDB clients."""

    enabled: bool = False
    paths: tuple[Annotated[str, AfterValidator(_check_sink_path)], ...] = DEFAULT_PATHS
    ttl: Duration | None = None
    max_body_size: PositiveInt = 10 * MIB
    max_series: PositiveInt = 100_000

    @field_validator("paths")
    @classmethod
    def _distinct(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        if not paths:
            raise ValueError("list at least one path (or set enabled = false)")
        if len(set(paths)) != len(paths):
            raise ValueError("paths must be distinct")
        return paths


# --- the store (pure: the clock is injected) ----------------------------------------

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class _Field:
    """One field's latest value, its timestamp and when it arrived."""

    value: FieldValue
    time_ns: int
    seen_ns: int


@dataclass(slots=True, frozen=True)
class WriteResult:
    """What one write kept and what it refused for want of room."""

    lines: int
    refused_lines: int = 0


class SeriesStore:
    """The latest fields of each pushed series, forgotten `ttl` seconds after they arrived.

    `clock` gives wall-clock nanoseconds; it stamps lines without a timestamp
    and dates arrivals for expiry.
    """

    def __init__(
        self, ttl: float, max_series: int, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.ttl_ns = int(ttl * 1e9)
        self.max_series = max_series
        self.clock = clock
        self._series: dict[SeriesKey, dict[str, _Field]] = {}
        self.writes = 0
        self.lines = 0
        self.refused_lines = 0

    def __len__(self) -> int:
        return len(self._series)

    def write(self, lines: Iterable[ParsedLine]) -> WriteResult:
        """Merge `lines` in; lines of new series beyond `max_series` are refused."""
        now = self.clock()
        kept = refused = 0
        purged = False
        for line in lines:
            key = (line.measurement, tuple(sorted(line.tags.items())))
            fields = self._series.get(key)
            if fields is None:
                if len(self._series) >= self.max_series and not purged:
                    self.purge(now)  # once per write: purging is a walk over every series
                    purged = True
                if len(self._series) >= self.max_series:
                    refused += 1
                    continue
                fields = self._series[key] = {}
            _merge(fields, line, now)
            kept += 1
        self.writes += 1
        self.lines += kept
        self.refused_lines += refused
        return WriteResult(kept, refused)

    def purge(self, now_ns: int | None = None) -> None:
        """Forget the fields, and series, that arrived `ttl` ago or earlier."""
        horizon = (self.clock() if now_ns is None else now_ns) - self.ttl_ns
        for key in list(self._series):
            fields = self._series[key]
            for name in [n for n, f in fields.items() if f.seen_ns <= horizon]:
                del fields[name]
            if not fields:
                del self._series[key]

    def __iter__(self) -> Iterator[Metric]:
        """The current metrics, one per series, stamped with its newest field's time."""
        self.purge()
        for (measurement, tags), fields in self._series.items():
            values = {name: field.value for name, field in fields.items()}
            time_ns = max(field.time_ns for field in fields.values())
            yield Metric(measurement, dict(tags), values, time_ns)


def _merge(fields: dict[str, _Field], line: ParsedLine, now_ns: int) -> None:
    """Newest timestamp wins per field; at equal timestamps the later arrival wins."""
    time_ns = now_ns if line.time_ns is None else line.time_ns
    for name, value in line.fields.items():
        old = fields.get(name)
        if old is None or time_ns >= old.time_ns:
            fields[name] = _Field(value, time_ns, now_ns)


class SinkTarget(Target):
    """Serves the store at every scrape, plus a `telemon_sink` line of counters."""

    lazy = True

    def __init__(self, store: SeriesStore) -> None:
        super().__init__("sink")
        self.store = store

    async def collect(self, now_ns: int) -> list[Metric]:
        """The non-expired pushed metrics and the sink's own counters."""
        metrics = list(self.store)
        store = self.store
        counters: dict[str, FieldValue] = {
            "series": len(store),
            "writes": store.writes,
            "lines": store.lines,
            "refused_lines": store.refused_lines,
        }
        return [*metrics, Metric("telemon_sink", {}, counters, now_ns)]


def find_store(collector: Collector) -> SeriesStore:
    """The store of the collector's sink target (build_collector adds one when enabled)."""
    for state in collector.states:
        if isinstance(state.target, SinkTarget):
            return state.target.store
    raise ValueError("[sink] is enabled but the collector has no sink target")


# --- bodies: size bound and gzip ----------------------------------------------------


class BodyTooLarge(Exception):
    """The body, as sent or inflated, is larger than allowed."""


class BadBody(Exception):
    """The body cannot be read (bad gzip, not UTF-8); the message says why."""


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
    raise web.HTTPUnsupportedMediaType(text=f"415: unsupported Content-Encoding {encoding!r}\n")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, inflated, of at most `limit` bytes; raises `BodyTooLarge` or `BadBody`."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    inflater = _inflater_for(request, limit)
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


def decode_text(body: bytes) -> str:
    """`body` as UTF-8; `BadBody` names the line and column of the first bad byte."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        column = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
        raise BadBody(f"line {line}, column {column}: invalid UTF-8") from None


# --- HTTP ---------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _Sink:
    """What the write handler needs."""

    config: SinkConfig
    store: SeriesStore
    credentials: Credentials
    retry_after_s: int


SINK_KEY = web.AppKey("sink", _Sink)


def open_paths(config: Config) -> frozenset[str]:
    """Paths the app-wide auth middleware must let through: the sink checks its own."""
    return frozenset(config.sink.paths) if config.sink.enabled else frozenset()


def setup_sink(app: web.Application, config: Config, store: SeriesStore) -> None:
    """Route POST and PUT of every sink path to the write handler (other methods: 405)."""
    http = config.http
    credentials = Credentials(http.username, http.basic_password, http.bearer_token)
    ttl = config.sink.ttl or 2 * config.agent.interval
    app[SINK_KEY] = _Sink(config.sink, store, credentials, max(1, round(ttl)))
    for path in config.sink.paths:
        app.router.add_route(hdrs.METH_POST, path, write_handler)
        app.router.add_route(hdrs.METH_PUT, path, write_handler)


async def write_handler(request: web.Request) -> web.Response:
    """Store the line protocol of the body: 204, or 400/401/413/415/503 and why."""
    sink = request.app[SINK_KEY]
    if not authorized(sink.credentials, request.headers, request.query):
        raise web.HTTPUnauthorized(
            headers={hdrs.WWW_AUTHENTICATE: sink.credentials.challenge()},
            text="401: unauthorized\n",
        )
    precision = _precision(request.query.get("precision", ""))
    lines = await _read_lines(request, sink.config.max_body_size, precision)
    result = sink.store.write(lines)
    if result.refused_lines:
        raise web.HTTPServiceUnavailable(
            headers={hdrs.RETRY_AFTER: str(sink.retry_after_s)},
            text=f"503: max_series ({sink.store.max_series}) reached: "
            f"{result.refused_lines} lines of new series dropped, {result.lines} kept\n",
        )
    return web.Response(status=204)


async def _read_lines(request: web.Request, limit: int, precision: str) -> list[ParsedLine]:
    """The parsed body; raises the HTTP error (400, 413) when it cannot be had."""
    try:
        text = decode_text(await read_body(request, limit))
        # Parsing a large body takes a while: keep the loop serving scrapes meanwhile.
        return await asyncio.to_thread(parse_lines, text, precision=precision)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit, actual_size=request.content_length or limit + 1
        ) from None
    except (BadBody, LineProtocolError) as exc:
        raise web.HTTPBadRequest(text=f"400: {exc}\n") from None


def _precision(value: str) -> str:
    if not value:
        return "ns"
    try:
        return PRECISIONS[value]
    except KeyError:
        raise web.HTTPBadRequest(
            text=f"400: unknown precision {value!r} (one of {', '.join(PRECISIONS)})\n"
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
