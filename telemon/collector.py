"""Runs the inputs on their schedules and keeps the encoded snapshot.

Each polled target is collected by its own task at its interval (polls of
one target never overlap); its metrics are encoded once, right after the
collection, so a scrape only joins ready bytes and evaluates the lazy
targets. A target whose last collection failed serves no values, only its
`telemon_input` line with `up=0i`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp

from telemon.inputs.base import Discovered, InputContext, InputError, Target
from telemon.lineprotocol import LineEncoder
from telemon.metric import FieldValue, Metric

__all__ = ["Collector", "TargetState"]

_log = logging.getLogger("telemon.collector")
MAX_BACKOFF_S = 300.0
# Self-metrics that change with every scrape (the `telemon` line, lazy
# targets' status) are re-encoded at most this often, or when `up` changes.
SELF_METRICS_MAX_AGE_S = 1.0


@dataclass(slots=True, eq=False)
class TargetState:
    """A target with its schedule and what its last collection gave."""

    input: str
    target: Target
    interval: float
    timeout: float
    tags: dict[str, str] = field(default_factory=dict)
    up: bool | None = None
    failures: int = 0
    consecutive_failures: int = 0
    collections: int = 0
    lines: int = 0
    duration_ms: float = 0.0
    last_success_ns: int | None = None
    last_error: str | None = None
    body: bytes = b""
    metrics: list[Metric] = field(default_factory=list)
    status: bytes = b""

    @property
    def errors(self) -> int:
        """Failed collections plus failures inside successful ones (lazy fields)."""
        return self.failures + self.target.partial_errors

    def next_delay(self) -> float:
        """The interval, or a capped exponential backoff while failing."""
        if not self.consecutive_failures:
            return self.interval
        backoff: float = self.interval * 2 ** min(self.consecutive_failures - 1, 16)
        return min(backoff, max(self.interval, MAX_BACKOFF_S))


class Collector:
    """Owns the targets, their tasks and the encoded output."""

    def __init__(
        self,
        states: Iterable[TargetState],
        encoder: LineEncoder,
        global_tags: dict[str, str] | None = None,
        context: InputContext | None = None,
    ) -> None:
        self.states = list(states)
        self.encoder = encoder
        self.global_tags = dict(global_tags or {})
        self.context = context or InputContext()
        self.scrapes = 0
        # Called with each polled collection's encoded lines (outputs push every one).
        self.listeners: list[Callable[[bytes], None]] = []
        self._polled = [s for s in self.states if not s.target.lazy]
        self._lazy = [s for s in self.states if s.target.lazy]
        self._tasks: dict[TargetState, asyncio.Task[None]] = {}
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()
        self._discovered: dict[int, dict[str, TargetState]] = {}
        self.context.discovery = self.sync_discovered
        self._snapshot: bytes | None = None
        self._self_lines = b""
        self._self_lines_at = -SELF_METRICS_MAX_AGE_S

    async def collect(self, state: TargetState) -> list[Metric]:
        """Collect one target now and encode what it gave; never raises."""
        now_ns = time.time_ns()
        metrics = await self._gather(state, now_ns, with_timeout=True)
        state.status = self.encoder.encode_all([self._status_metric(state, now_ns)])
        self._snapshot = None
        for listener in self.listeners:
            listener(state.body + state.status)
        return metrics

    async def render(self, *, snapshot: bool = True) -> bytes:
        """One scrape's body: snapshots (unless `snapshot` is false), lazy targets, self-metrics."""
        self.scrapes += 1
        lazy = self._lazy
        lazy_bodies = []
        for state in lazy:
            was_up = state.up
            now_ns = time.time_ns()
            if not self._encode_now(state, now_ns):
                # Lazy fields have their own timeouts; no timeout task per scrape.
                await self._gather(state, now_ns, with_timeout=False)
            lazy_bodies.append(state.body)
            if state.up != was_up:
                self._self_lines_at = -SELF_METRICS_MAX_AGE_S
        if self._snapshot is None:
            self._snapshot = b"".join([s.body + s.status for s in self._polled])
        if not snapshot:  # outputs get polled lines from `listeners`, once per collection
            return b"".join([*lazy_bodies, self._self_lines_now(lazy)])
        return b"".join([self._snapshot, *lazy_bodies, self._self_lines_now(lazy)])

    def _encode_now(self, state: TargetState, now_ns: int) -> bool:
        """A lazy target's scrape by its direct path (no `Metric`s); False if it has none."""
        started = time.perf_counter()
        partial_before = state.target.partial_errors
        try:
            text = state.target.encode_now(self.encoder, now_ns, (self.global_tags, state.tags))
        except Exception as exc:  # noqa: BLE001 - one target must not stop the rest
            self._failed(state, _reason(exc, state.timeout))
            state.body, state.lines = b"", 0
            return True
        if text is None:
            return False
        self._succeeded(state, now_ns, partial_before)
        state.duration_ms = (time.perf_counter() - started) * 1000
        state.body = text.encode("utf-8", "replace")
        state.lines = 1 if text else 0
        return True

    def _self_lines_now(self, lazy: list[TargetState]) -> bytes:
        now = time.monotonic()
        if now - self._self_lines_at >= SELF_METRICS_MAX_AGE_S:
            self._self_lines = self._encode_self_lines(lazy)
            self._self_lines_at = now
        return self._self_lines

    async def render_metrics(self) -> list[Metric]:
        """Everything one scrape shows, as metrics (for other exposition formats)."""
        self.scrapes += 1
        now_ns = time.time_ns()
        for state in self._lazy:
            await self._gather(state, now_ns, with_timeout=False)
        metrics = [m for s in self.states for m in s.metrics]
        metrics += [self._status_metric(s, now_ns) for s in self.states]
        metrics.append(self._telemon_metric(now_ns))
        return metrics

    async def _gather(self, state: TargetState, now_ns: int, *, with_timeout: bool) -> list[Metric]:
        """Run the target's collect, record the outcome and encode the metrics."""
        started = time.perf_counter()
        partial_before = state.target.partial_errors
        try:
            if with_timeout:
                async with asyncio.timeout(state.timeout):
                    metrics = await state.target.collect(now_ns)
            else:
                metrics = await state.target.collect(now_ns)
        except Exception as exc:  # noqa: BLE001 - one target must not stop the rest
            metrics = []
            self._failed(state, _reason(exc, state.timeout))
        else:
            self._succeeded(state, now_ns, partial_before)
        state.duration_ms = (time.perf_counter() - started) * 1000
        if self.global_tags or state.tags:
            metrics = [self._tagged(m, state.tags) for m in metrics]
        state.metrics = metrics
        encoded = list(map(self.encoder.encode, metrics))
        state.body = "".join(encoded).encode("utf-8", "replace")
        state.lines = len(encoded) - encoded.count("")
        return metrics

    def _encode_self_lines(self, lazy: list[TargetState]) -> bytes:
        now_ns = time.time_ns()
        metrics = [self._status_metric(s, now_ns) for s in lazy]
        metrics.append(self._telemon_metric(now_ns))
        return self.encoder.encode_all(metrics)

    async def collect_all(self) -> None:
        """Collect every target once, concurrently (for `telemon once`).

        Targets discovered by that round are collected too.
        """
        done: set[TargetState] = set()
        while pending := [s for s in self.states if s not in done]:
            done.update(pending)
            await asyncio.gather(*(self.collect(s) for s in pending))

    def sync_discovered(self, owner: Target, input_name: str, found: Sequence[Discovered]) -> None:
        """Make `found` the targets `owner` discovered: poll new ones, drop the gone ones.

        They share the owner's interval, timeout and input tags.
        """
        owner_state = next(s for s in self.states if s.target is owner)
        current = self._discovered.setdefault(id(owner), {})
        wanted = {d.key: d for d in found}
        for key in current.keys() - wanted.keys():
            self._remove(current.pop(key))
        for key in wanted.keys() - current.keys():
            item = wanted[key]
            state = TargetState(
                input_name,
                item.target,
                owner_state.interval,
                owner_state.timeout,
                {**owner_state.tags, **item.tags},
            )
            current[key] = state
            self._add(state)

    def _add(self, state: TargetState) -> None:
        self.states.append(state)
        self._polled.append(state)
        self._snapshot = None
        if self._started:
            self._tasks[state] = asyncio.create_task(self._poll(state, 0.0))

    def _remove(self, state: TargetState) -> None:
        self.states.remove(state)
        self._polled.remove(state)
        self._snapshot = None
        task = self._tasks.pop(state, None)
        if task is not None:
            task.cancel()
        closing = asyncio.get_running_loop().create_task(state.target.aclose())
        self._closing.add(closing)  # a reference, so the task is not collected early
        closing.add_done_callback(self._closing.discard)

    def start(self) -> None:
        """Start one polling task per polled target, spreading start times."""
        by_input: dict[str, list[TargetState]] = {}
        for state in self.states:
            if not state.target.lazy:
                by_input.setdefault(state.input, []).append(state)
        for states in by_input.values():
            for index, state in enumerate(states):
                offset = state.interval * index / len(states)
                self._tasks[state] = asyncio.create_task(self._poll(state, offset))
        self._started = True

    async def stop(self) -> None:
        """Cancel the polling tasks and release the targets."""
        self._started = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for state in self.states:
            with contextlib.suppress(Exception):
                await state.target.aclose()
        await self.context.aclose()

    async def _poll(self, state: TargetState, offset: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(offset)
        next_at = loop.time()
        while True:
            await self.collect(state)
            next_at += state.next_delay()
            now = loop.time()
            while next_at <= now:  # a slow collection skips ticks, never overlaps
                next_at += state.next_delay()
            await asyncio.sleep(next_at - now)

    def _succeeded(self, state: TargetState, now_ns: int, partial_before: int) -> None:
        up = state.target.partial_errors == partial_before  # nothing failed in part
        if state.up is False and up:
            _log.info("input %s target %s recovered", state.input, state.target.target)
        state.up = up
        state.collections += 1
        state.consecutive_failures = 0
        state.last_success_ns = now_ns
        if not state.up:
            state.last_error = state.target.last_partial_error

    def _failed(self, state: TargetState, reason: str) -> None:
        if state.up is not False or reason != state.last_error:
            _log.warning("input %s target %s: %s", state.input, state.target.target, reason)
        state.up = False
        state.collections += 1
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = reason

    def _tagged(self, metric: Metric, input_tags: dict[str, str]) -> Metric:
        metric.tags = {**self.global_tags, **metric.tags, **input_tags}
        return metric

    def _status_metric(self, state: TargetState, now_ns: int) -> Metric:
        tags = {**self.global_tags, "input": state.input, "target": state.target.target}
        fields: dict[str, FieldValue] = {
            "up": int(bool(state.up)),
            "errors": state.errors,
            "collections": state.collections,
            "lines": state.lines,
            "duration_ms": round(state.duration_ms, 3),
        }
        return Metric("telemon_input", tags, fields, now_ns)

    def _telemon_metric(self, now_ns: int) -> Metric:
        fields: dict[str, FieldValue] = {"scrapes": self.scrapes}
        fields.update(self.encoder.stats.as_fields())
        return Metric("telemon", dict(self.global_tags), fields, now_ns)


def _reason(exc: BaseException, timeout: float) -> str:
    """A one-line reason for a failed collection."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, InputError | aiohttp.ClientError | OSError):
        return str(exc) or type(exc).__name__
    _log.error("unexpected error in collection", exc_info=exc)
    return f"unexpected {type(exc).__name__}: {exc}"
