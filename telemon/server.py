"""The aiohttp application: `/metrics`, `/healthz` and the index page."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler

from telemon.agent import Agent
from telemon.auth import auth_middleware
from telemon.config import Config
from telemon.lazy import Telemon
from telemon.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from telemon.prometheus import SampleCache, render_steps, wants_prometheus
from telemon.respond import accepts_gzip, gzip_bytes, line_protocol_response
from telemon.sink import ClientGone, client_gone, open_paths, setup_sink
from telemon.status_page import PageContext, render_status_page

__all__ = [
    "AGENT_KEY",
    "ConnectionCap",
    "RepeatedErrorFilter",
    "create_app",
    "default_max_connections",
    "max_connections",
]

_log = logging.getLogger("telemon")
AGENT_KEY = web.AppKey("agent", Agent)
HEALTH_PATH = "/healthz"
# Requests still running at shutdown get this long to finish (aiohttp's own default is 60 s).
SHUTDOWN_TIMEOUT_S = 5.0
# A repeated warning (the cap reached, accept() failing) is logged at most this often.
LOG_EVERY_S = 10.0


def create_app(
    config: Config,
    telemons: Sequence[Telemon] = (),
    *,
    agent: Agent | None = None,
) -> web.Application:
    """HTTP wired to an agent (built from `config` unless given) that runs with the app."""
    agent = agent or Agent(config, telemons)
    credentials = agent.settings.credentials
    middlewares = (
        [auth_middleware(credentials, frozenset({HEALTH_PATH}) | open_paths(config))]
        if credentials.required
        else []
    )
    if _request_log.isEnabledFor(logging.DEBUG):  # no cost unless asked for
        middlewares = [request_log_middleware(config.http.path), *middlewares]
    # The sink inflates gzip bodies itself, in bounded steps; aiohttp's own
    # inflating would keep decompressing a refused gzip bomb while draining it.
    app = web.Application(middlewares=middlewares, handler_args={"auto_decompress": False})
    app[AGENT_KEY] = agent
    app.router.add_get(config.http.path, metrics_handler)
    app.router.add_get(HEALTH_PATH, health_handler)
    app.router.add_get("/", index_handler)
    if agent.sink is not None:
        setup_sink(app, agent.sink)
    app.cleanup_ctx.append(_agent_ctx)
    return app


_request_log = logging.getLogger("telemon.http")
MAX_LOGGED_REASON = 200
"""Characters of a refusal's reason (its body's first line) in the debug log."""


def request_log_middleware(metrics_path: str) -> Middleware:
    """`--log-level debug`: each scrape (client, bytes, duration), each refused
    request (status, path, reason) and any other request. Only the path, never
    the query or a header, so no credential is logged."""

    @web.middleware
    async def log_request(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _log_refused(request, exc.status, exc.text or exc.reason)
            raise
        if response.status >= 400:
            body = response.body if isinstance(response, web.Response) else None
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
            _log_refused(request, response.status, text or response.reason)
            return response
        what = "scrape" if request.path == metrics_path else f"{request.method} {request.path}"
        _request_log.debug("%s from %s: %d, %s bytes in %.1f ms", what, request.remote,
                           response.status, response.content_length,
                           (time.perf_counter() - started) * 1000)  # fmt: skip
        return response

    return log_request


def _log_refused(request: web.Request, status: int, text: str) -> None:
    reason = text.strip().partition("\n")[0].removeprefix(f"{status}: ")[:MAX_LOGGED_REASON]
    _request_log.debug("refused %s %s from %s: %d %s",
                       request.method, request.path[:MAX_LOGGED_REASON], request.remote,
                       status, reason)  # fmt: skip


async def _agent_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[AGENT_KEY]:
        yield


_T = TypeVar("_T")
GONE_POLL_S = 0.05
"""How often a running scrape looks whether its client went away."""
LARGE_BODY = 256 * 1024
"""Bodies larger than this are gzipped off the event loop (7 MB take ~100 ms)."""
RENDER_STEP = 500
"""Samples rendered between two turns of the event loop (a few ms at most)."""


async def metrics_handler(request: web.Request) -> web.Response:
    """GET/HEAD: everything collected, as line protocol or (when asked) Prometheus text."""
    agent = request.app[AGENT_KEY]
    config = agent.config
    accept = request.headers.get("Accept")
    prometheus = False
    # Telegraf's inputs.http sends neither a query nor an Accept: skip parsing.
    if request.query_string or (accept and accept != "*/*"):
        try:
            prometheus = wants_prometheus(request.query.get("format"), accept)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
    try:
        if not prometheus:  # the fast path: encoded snapshots joined
            # Not watched for a client gone: joining ready bytes takes microseconds,
            # and lazy fields are bounded by field_timeout; a watch task costs more.
            body = await agent.scrape()
            return await _respond(request, body, gzip=config.http.gzip)
        options = config.prometheus
        metrics = await _unless_gone(request, agent.scrape_metrics())
        lock, cache = _rendering(request.app)
        steps = render_steps(
            metrics,
            timestamps=options.timestamps,
            string_as_label=options.string_as_label,
            cache=cache,
            step=RENDER_STEP,
            names=agent.prometheus_names,
        )
        body = await _unless_gone(request, _render_alone(lock, steps))
        response = await _respond(request, body, gzip=config.http.gzip)
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response
    except ClientGone:
        return web.Response(status=499)  # nginx's "client closed request"; nobody reads it


_RENDERINGS: weakref.WeakKeyDictionary[web.Application, tuple[asyncio.Lock, SampleCache]] = (
    weakref.WeakKeyDictionary()
)


def _rendering(app: web.Application) -> tuple[asyncio.Lock, SampleCache]:
    """The app's Prometheus rendering lock and prepared samples. One rendering at a
    time: more would only compete for the loop; the others wait, and leave if their
    client does. Metrics served again (the sink's, the last poll's) are not prepared
    again."""
    found = _RENDERINGS.get(app)
    if found is None:
        found = _RENDERINGS[app] = (asyncio.Lock(), SampleCache())
    return found


async def _render_alone(lock: asyncio.Lock, steps: Generator[None, None, bytes]) -> bytes:
    """Run `steps` on the loop, letting others run between two: a thread would hold
    the GIL for long stretches and keep the loop waiting. Cancelled (abandoned) at
    any step."""
    async with lock:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                body: bytes = done.value
                return body
            await asyncio.sleep(0)


async def _unless_gone(request: web.Request, work: Awaitable[_T]) -> _T:
    """`work`'s result; cancelled when the client closes the connection meanwhile.

    aiohttp only tells by dropping the request's transport (without
    `handler_cancellation`), so it is looked at every `GONE_POLL_S`.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=GONE_POLL_S)
            if done:
                return task.result()
            if client_gone(request):
                raise ClientGone("scrape abandoned")
    finally:
        task.cancel()


async def _respond(request: web.Request, body: bytes, *, gzip: bool) -> web.Response:
    """`line_protocol_response`, with a large body's gzip made off the loop."""
    if gzip and len(body) > LARGE_BODY and accepts_gzip(request):
        packed = await asyncio.to_thread(gzip_bytes, body)
        response = line_protocol_response(request, b"", gzip=False)
        response.body = packed
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
        return response
    return line_protocol_response(request, body, gzip=gzip)


async def health_handler(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.Response(text="ok\n")


async def index_handler(request: web.Request) -> web.Response:
    """The operator's page (`telemon.status_page`): each part's state, charts, the endpoints."""
    agent = request.app[AGENT_KEY]
    host, port = agent.config.http.listen
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if port == 0 and isinstance(sockname, tuple):  # `--listen HOST:0`: the port bound
        port = sockname[1]
    context = PageContext(agent.config.http.path, HEALTH_PATH, f"{host}:{port}")
    return web.Response(text=render_status_page(agent.status(), context), content_type="text/html")


# --- the connection cap ------------------------------------------------------------------


# Descriptors left beside the connections: targets, outputs, spool and log files, and the
# connections asyncio accepts in one go (up to the listen backlog) before the cap sees them.
MIN_FREE_DESCRIPTORS = 256
MIN_CONNECTIONS = 16


def default_max_connections(open_files_limit: int) -> int:
    """Three quarters of the open-file limit, leaving at least 256 descriptors free (min. 16)."""
    limit = min(open_files_limit, 1 << 20)  # RLIM_INFINITY and huge limits alike
    return max(MIN_CONNECTIONS, min(limit * 3 // 4, limit - MIN_FREE_DESCRIPTORS))


def max_connections(configured: int | None) -> int:
    """`[http] max_connections`, or the default derived from RLIMIT_NOFILE when unset."""
    limit = _open_files_limit()
    if configured is None:
        return default_max_connections(limit)
    if configured >= limit:
        _log.warning(
            "http.max_connections = %d is not below the open-file limit (%d): past it,"
            " new connections fail until some close (raise the limit, or lower the cap)",
            configured, limit,
        )  # fmt: skip
    return configured


def _open_files_limit() -> int:
    import resource  # POSIX only

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\r\n"
    b"too many connections\n"
)


class _Busy(asyncio.Protocol):
    """A connection past the cap while every other one is in a request: 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


class ConnectionCap:
    """The protocol factory of the listening socket: at most `limit` HTTP connections.

    Descriptors, not requests, are what idle clients exhaust: past the cap a
    new connection replaces the oldest one that has no request in progress
    (clients that connect and send nothing go first, and a fresh probe of
    /healthz always gets in); when every connection is in a request, the new
    one is answered 503 and closed. The cap keeps accept() from failing with
    EMFILE, which would refuse everyone.
    """

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.evicted = 0
        self.refused = 0
        self._busy: set[RequestHandler] = set()
        self._logged_at = -LOG_EVERY_S
        # RequestHandler copies the server's handler when it is built: wrap it first.
        inner = server.request_handler
        server.request_handler = self._tracking(inner)

    def _tracking(
        self, inner: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        busy = self._busy

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            protocol = request.protocol
            busy.add(protocol)
            try:
                return await inner(request)
            finally:
                busy.discard(protocol)

        return handle

    def __call__(self) -> asyncio.Protocol:
        connections = self.server.connections
        if len(connections) >= self.limit:
            # Closed ones stay listed until their task ends: count the open ones.
            open_now = [c for c in connections if c.transport is not None]
            if len(open_now) >= self.limit and not self._make_room(open_now):
                self.refused += 1
                self._warn("every connection is in a request; answering 503")
                return _Busy()
        return self.server()

    def _make_room(self, open_now: list[RequestHandler]) -> bool:
        """Close the oldest idle connections until one more fits; False when none is idle."""
        excess = len(open_now) - self.limit + 1
        idle = (c for c in open_now if c not in self._busy)  # oldest first
        for handler in idle:
            handler.force_close()
            self.evicted += 1
            excess -= 1
            if excess <= 0:
                self._warn("closing the oldest idle connections")
                return True
        return False

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            _log.warning(
                "connection cap reached (http.max_connections = %d): %s"
                " (%d closed, %d refused so far)",
                self.limit, what, self.evicted, self.refused,
            )  # fmt: skip


# --- repeated event-loop errors --------------------------------------------------------

# asyncio reports a failed accept() (out of descriptors, of memory) for every
# connection waiting, many times a second, each with a traceback; and it
# schedules a retry for each, which fails once the server is closed.
_ACCEPT_FAILED = "socket.accept() out of system resource"
_ACCEPT_RETRY = "._start_serving("  # in "Exception in callback BaseSelectorEventLoop._start..."


def _repeated_kind(context: dict[str, Any]) -> str | None:
    """Which repeated error `context` reports, or None for any other."""
    message = str(context.get("message", ""))
    if message == _ACCEPT_FAILED:
        return message
    if message.startswith("Exception in callback") and _ACCEPT_RETRY in message:
        return "a retry of accept() failed"
    return None


class RepeatedErrorFilter:
    """An event-loop exception handler: at most one line per `every_s` for repeated errors.

    Only failed accept() calls and their retries are throttled (to one line
    saying how many were left out, without a traceback); anything else goes
    to the loop's default handler unchanged.
    """

    def __init__(
        self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = _repeated_kind(context)
        if message is None:
            loop.default_exception_handler(context)
            return
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self.every_s:
            self._left_out[message] = self._left_out.get(message, 0) + 1
            return
        self._last[message] = now
        left_out = self._left_out.pop(message, 0)
        since = ""
        if left_out and last is not None:
            since = f" ({left_out} more in the last {now - last:.0f} s)"
        _log.error("%s: %s%s", message, context.get("exception"), since)
