"""`Telemon`: a measurement whose fields are evaluated at every render.

The Python form of the original Pharo package: a measurement name, a dict of
tags and a dict of fields whose values are callables (sync or async) or
plain values::

    tm = Telemon(measurement="app")
    tm.tags["host"] = "telemon-1"
    tm.fields["meaning"] = lambda: 42
    tm.render()   # 'app,host=telemon-1 meaning=42i 1795894716100823171\\n'

Each evaluation has a timeout. A field that raises, times out or returns an
unusable value is left out of that render, logged once per distinct error and
counted in `errors`; the other fields are unaffected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from telemon.lineprotocol import LineEncoder
from telemon.logs import OnceLogger
from telemon.metric import FieldValue, Metric
from telemon.respond import line_protocol_response

__all__ = ["FieldSource", "Telemon"]

FieldSource = Callable[[], Any] | FieldValue
"""A field: a value, or a callable (sync or async) returning one."""

_USABLE = (bool, int, float, str)
_all_usable = frozenset(_USABLE).issuperset
"""True when every type given is one of `_USABLE` (subclasses are checked one by one)."""
_log = OnceLogger(logging.getLogger("telemon.fields"))


class Telemon:
    """A measurement with user-defined tags and lazily evaluated fields."""

    def __init__(
        self,
        measurement: str = "app",
        tags: dict[str, str] | None = None,
        fields: dict[str, FieldSource] | None = None,
        *,
        timeout: float = 1.0,
        encoder: LineEncoder | None = None,
    ) -> None:
        self.measurement = measurement
        self.tags: dict[str, str] = dict(tags or {})
        self.fields: dict[str, FieldSource] = dict(fields or {})
        self.timeout = timeout
        self.encoder = encoder or LineEncoder()
        self.errors = 0
        self.last_error: str | None = None
        # Sync callables cannot be interrupted; one that overran its timeout
        # is run in a worker thread from then on, so it cannot stall scrapes.
        self._threaded: set[str] = set()
        self._running: dict[str, concurrent.futures.Future[Any]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Each call is timed on its own in the first pass, and while a field is
        # not a plain sync callable or after a pass overran (see _evaluate_sync).
        self._careful = True

    async def collect(self, now_ns: int | None = None) -> Metric:
        """Evaluate every field now (async fields concurrently)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        values, pending = self._evaluate_sync()
        if pending:
            values.update(await self._await_all(pending))
            values = {key: values[key] for key in self.fields if key in values}
        return Metric(self.measurement, dict(self.tags), values, now_ns)

    async def render_async(self) -> str:
        """Line protocol for one evaluation, from inside an event loop."""
        return self.encoder.encode(await self.collect())

    def render(self) -> str:
        """Line protocol for one evaluation (use `render_async` in a loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio.run(): it would wait for a stuck threaded field.
            loop = asyncio.new_event_loop()
            try:
                return loop.run_until_complete(self.render_async())
            finally:
                loop.close()
        if any(inspect.iscoroutinefunction(f) for f in self.fields.values()):
            raise RuntimeError("async fields need `await tm.render_async()` in a running loop")
        values, pending = self._evaluate_sync(can_wait=False)
        for key, awaitable in pending.items():
            _discard(awaitable)
            self._fail(key, "returned an awaitable: use `await tm.render_async()` in a loop")
        ordered = {key: values[key] for key in self.fields if key in values}
        metric = Metric(self.measurement, dict(self.tags), ordered, time.time_ns())
        return self.encoder.encode(metric)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """An aiohttp handler serving this measurement: `router.add_get(path, tm.handler)`."""
        body = (await self.render_async()).encode("utf-8", "replace")
        return line_protocol_response(request, body)

    def _evaluate_sync(
        self, can_wait: bool = True
    ) -> tuple[dict[str, Any], dict[str, Awaitable[Any]]]:
        """Every field evaluated once: the values, and the awaitables still to wait for.

        A sync call cannot be interrupted, so its time is checked after it
        returned. A careful pass times each call and moves one that overran to
        a worker thread from then on; it is taken first, and whenever a field is
        not a plain sync callable or a pass overran. Otherwise one clock covers
        the whole pass, and the values are checked together at its end.
        """
        values: dict[str, Any] = {}
        pending: dict[str, Awaitable[Any]] = {}
        careful, plain = self._careful, True
        started = time.perf_counter()
        for key, source in self.fields.copy().items():  # a field may change `fields`
            if careful or not callable(source):
                plain = self._evaluate_one(key, source, values, pending, can_wait) and plain
                continue
            try:
                values[key] = source()
            except Exception as exc:  # noqa: BLE001 - user code may raise anything
                self._fail(key, f"raised {type(exc).__name__}: {exc}")
        if not _all_usable(map(type, values.values())):
            values = self._sort_out(values, pending)
        if careful:
            self._careful = not plain
        elif not plain or time.perf_counter() - started > self.timeout:
            self._careful = True  # the next pass finds the slow field
        return values, pending

    def _evaluate_one(
        self,
        key: str,
        source: FieldSource,
        values: dict[str, Any],
        pending: dict[str, Awaitable[Any]],
        can_wait: bool,
    ) -> bool:
        """One field, its call timed; True when it is a plain sync callable that kept
        to its timeout."""
        if not callable(source):
            self._accept(key, source, values)
            return False
        if key in self._threaded:
            if can_wait:
                pending[key] = self._in_thread(key, source)
            else:
                self._fail(key, "runs in a thread (it overran its timeout): use render_async()")
            return False
        started = time.perf_counter()
        try:
            result = source()
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            self._fail(key, f"raised {type(exc).__name__}: {exc}")
            return True
        if inspect.isawaitable(result):
            pending[key] = result
            return False
        if time.perf_counter() - started > self.timeout:
            self._threaded.add(key)
            self._fail(key, f"took longer than {self.timeout:g}s; now evaluated in a thread")
            return False
        values[key] = result
        return True

    def _sort_out(
        self, results: dict[str, Any], pending: dict[str, Awaitable[Any]]
    ) -> dict[str, Any]:
        """The usable values in order; awaitables go to `pending`, None is left out
        silently and anything else loudly."""
        values: dict[str, Any] = {}
        for key, result in results.items():
            if inspect.isawaitable(result):
                pending[key] = result
            else:
                self._accept(key, result, values)
        return values

    def _in_thread(self, key: str, source: Callable[[], Any]) -> asyncio.Future[Any]:
        """The running call of `source`, started anew only once the last one ended."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="telemon-field"
            )
        running = self._running.get(key)
        if running is None or running.done():
            running = self._running[key] = self._executor.submit(source)
        # A wrapper per render: cancelling it on timeout leaves the call running.
        return asyncio.wrap_future(_detached(running))

    async def _await_all(self, pending: dict[str, Awaitable[Any]]) -> dict[str, Any]:
        tasks = {key: asyncio.ensure_future(aw) for key, aw in pending.items()}
        await asyncio.wait(tasks.values(), timeout=self.timeout)
        values: dict[str, Any] = {}
        for key, task in tasks.items():
            if not task.done():
                task.cancel()
                self._fail(key, f"timed out after {self.timeout:g}s")
            elif task.cancelled():
                self._fail(key, "was cancelled")
            elif (exc := task.exception()) is not None:
                self._fail(key, f"raised {type(exc).__name__}: {exc}")
            else:
                self._accept(key, task.result(), values)
        return values

    def _accept(self, key: str, value: Any, values: dict[str, Any]) -> None:
        if value is None:
            return  # "no value this time" is not an error
        if isinstance(value, _USABLE):
            values[key] = value
        else:
            kind = type(value).__name__
            self._fail(key, f"returned unusable {kind} (want bool, int, float or str)")

    def _fail(self, key: str, reason: str) -> None:
        self.errors += 1
        self.last_error = f"field {key!r} of {self.measurement!r} {reason}"
        _log.warning(self.last_error)


def _discard(awaitable: Awaitable[Any]) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()


def _detached(source: concurrent.futures.Future[Any]) -> concurrent.futures.Future[Any]:
    """A future that mirrors `source` but can be cancelled on its own."""
    mirror: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def copy(done: concurrent.futures.Future[Any]) -> None:
        if mirror.cancelled():
            return
        if (exc := done.exception()) is not None:
            mirror.set_exception(exc)
        else:
            mirror.set_result(done.result())

    source.add_done_callback(copy)
    return mirror
