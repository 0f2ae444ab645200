"""Runs the input targets: polled ones on their schedules, lazy ones when asked.

Each polled target is collected by its own task at its interval (polls of
one target never overlap); its metrics are encoded once, right after the
collection, so a scrape only joins ready bytes (`snapshot`) and evaluates
the lazy targets (`render_lazy`). A target whose last collection failed
serves no values, only its `telemon_input` line with `up=0i`. The agent
(`telemon.agent`) owns the collector beside the sink and the outputs.
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

__all__ = ["Collector", "Health", "TargetState"]

_log = logging.getLogger("telemon.collector")
MAX_BACKOFF_S = 300.0

STATUS_FIELD_TYPES = {
    "up": "i",
    "errors": "i",
    "collections": "i",
    "lines": "i",
    "values_dropped": "i",
    "duration_ms": "f",
}
"""The `telemon_input` line's fields (declared, so nothing else can take them)."""


@dataclass(slots=True)
class Health:
    """How a target is doing: its state, its counters and its last error."""

    up: bool | None = None
    failures: int = 0
    consecutive_failures: int = 0
    collections: int = 0
    last_success_ns: int | None = None
    last_error: str | None = None


@dataclass(slots=True, eq=False)
class TargetState:
    """A target with its schedule, its health and what its last collection gave."""

    input: str
    target: Target
    interval: float
    timeout: float
    tags: dict[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    lines: int = 0
    duration_ms: float = 0.0
    body: bytes = b""
    metrics: list[Metric] = field(default_factory=list)
    status: bytes = b""

    _source: str = field(default="", init=False, repr=False)

    @property
    def source(self) -> str:
        """How logs and the encoder's losses name this target (made once: every scrape
        of a lazy target asks)."""
        if not self._source:
            self._source = f"input {self.input} target {self.target.target}"
        return self._source

    @property
    def errors(self) -> int:
        """Failed collections plus failures inside successful ones (lazy fields)."""
        return self.health.failures + self.target.partial_errors

    def next_delay(self) -> float:
        """The interval, or a capped exponential backoff while failing."""
        failures = self.health.consecutive_failures
        if not failures:
            return self.interval
        backoff: float = self.interval * 2 ** min(failures - 1, 16)
        return min(backoff, max(self.interval, MAX_BACKOFF_S))


class Collector:
    """Owns the input targets, their tasks and their encoded lines."""

    def __init__(
        self,
        states: Iterable[TargetState],
        encoder: LineEncoder,
        global_tags: dict[str, str] | None = None,
        context: InputContext | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.states = list(states)
        self.encoder = encoder
        self.global_tags = dict(global_tags or {})
        self.context = context or InputContext()
        self.clock = clock
        # Called with each polled collection's encoded lines (outputs push every one).
        self.listeners: list[Callable[[bytes], None]] = []
        # Called with each polled target's state after its collection (the status
        # page's history reads `metrics` and `duration_ms`); must not raise.
        self.observers: list[Callable[[TargetState], None]] = []
        self._polled = [s for s in self.states if not s.target.lazy]
        self.lazy = [s for s in self.states if s.target.lazy]
        self._tasks: dict[TargetState, asyncio.Task[None]] = {}
        self._started = False
        self._closing: set[asyncio.Task[None]] = set()
        self._discovered: dict[int, dict[str, TargetState]] = {}
        self.context.discovery = self.sync_discovered
        self._snapshot: bytes | None = None

    async def collect(self, state: TargetState) -> list[Metric]:
        """Collect one polled target now and encode what it gave; never raises."""
        now_ns = self.clock()
        metrics = await self._gather(state, now_ns, with_timeout=True)
        if _log.isEnabledFor(logging.DEBUG):
            _log_poll(state)
        state.status = self.encoder.encode_all([self.status_metric(state, now_ns)])
        self._snapshot = None
        for listener in self.listeners:
            listener(state.body + state.status)
        for observer in self.observers:
            observer(state)
        return metrics

    def snapshot(self) -> bytes:
        """The polled targets' latest lines and status lines, joined once per change."""
        if self._snapshot is None:
            self._snapshot = b"".join([s.body + s.status for s in self._polled])
        return self._snapshot

    async def render_lazy(self) -> tuple[bytes, bool]:
        """The lazy targets' lines evaluated now, and whether any of them changed `up`."""
        bodies, changed = [], False
        for state in self.lazy:
            was_up = state.health.up
            # Lazy fields have their own timeouts; no timeout task per scrape.
            await self._gather(state, self.clock(), with_timeout=False)
            bodies.append(state.body)
            changed = changed or state.health.up != was_up
        return b"".join(bodies), changed

    async def lazy_metrics(self) -> list[Metric]:
        """The lazy targets evaluated now, as metrics (for other exposition formats)."""
        now_ns = self.clock()
        for state in self.lazy:
            await self._gather(state, now_ns, with_timeout=False)
        return [m for s in self.lazy for m in s.metrics]

    def polled_metrics(self) -> list[Metric]:
        """The polled targets' latest metrics."""
        return [m for s in self._polled for m in s.metrics]

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
        losses = self.encoder.losses
        losses.source = state.source
        for measurement, reason in state.target.take_lost():
            losses.note(measurement, "(payload)", reason)
        encoded = list(map(self.encoder.encode, metrics))
        state.body = "".join(encoded).encode("utf-8", "replace")
        state.lines = len(encoded) - encoded.count("")
        return metrics

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
        self.encoder.losses.forget(state.source)
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
        health = state.health
        up = state.target.partial_errors == partial_before  # nothing failed in part
        if health.up is False and up:
            _log.info("%s recovered", state.source)
        health.up = up
        health.collections += 1
        health.consecutive_failures = 0
        health.last_success_ns = now_ns
        if not up:
            health.last_error = state.target.last_partial_error

    def _failed(self, state: TargetState, reason: str) -> None:
        health = state.health
        if health.up is not False or reason != health.last_error:
            _log.warning("%s: %s", state.source, reason)
        health.up = False
        health.collections += 1
        health.failures += 1
        health.consecutive_failures += 1
        health.last_error = reason

    def _tagged(self, metric: Metric, input_tags: dict[str, str]) -> Metric:
        metric.tags = {**self.global_tags, **metric.tags, **input_tags}
        return metric

    def status_metric(self, state: TargetState, now_ns: int) -> Metric:
        """The target's `telemon_input` line."""
        tags = {**self.global_tags, "input": state.input, "target": state.target.target}
        fields: dict[str, FieldValue] = {
            "up": int(bool(state.health.up)),
            "errors": state.errors,
            "collections": state.health.collections,
            "lines": state.lines,
            "values_dropped": self.encoder.losses.dropped(state.source),
            "duration_ms": round(state.duration_ms, 3),
        }
        return Metric("telemon_input", tags, fields, now_ns)


def _log_poll(state: TargetState) -> None:
    """`--log-level debug`: each poll, with its duration and lines (failures also warn)."""
    outcome = "up" if state.health.up else f"failed: {state.health.last_error}"
    _log.debug("%s: polled in %.1f ms, %d lines, %s",
               state.source, state.duration_ms, state.lines, outcome)  # fmt: skip


def _reason(exc: BaseException, timeout: float) -> str:
    """A one-line reason for a failed collection."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, InputError | aiohttp.ClientError | OSError):
        return str(exc) or type(exc).__name__
    _log.error("unexpected error in collection", exc_info=exc)
    return f"unexpected {type(exc).__name__}: {exc}"
