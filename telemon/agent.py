"""The agent: the one owner of the running system, built once from a validated `Config`.

It holds the running parts, each with its own health and self-metrics:

* the inputs' targets, scheduled or lazy (`telemon.collector.Collector`),
  each with a `telemon_input` line;
* the sink, when enabled (`telemon.sink.Sink`), with a `telemon_sink` line;
* one output runner per output URL (`telemon.outputs`), each with a
  `telemon_output` line;
* the encoder, whose field-type table the inputs' declarations fill before
  anything is written, and the `telemon` line of its counters;
* the status page's `history` (`telemon.history`), fed after each polled
  collection (`Collector.observers`) and each scrape.

`start` and `stop` keep the order (collection stops before the outputs'
last write, so that write holds every collection). The HTTP app
(`telemon.server.create_app`) only wires requests to `scrape`,
`scrape_metrics` and `status`; tests and embedders use the same object::

    async with Agent(load_config(path)) as agent:
        body = await agent.scrape()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType

from telemon import __version__
from telemon.auth import Credentials
from telemon.catalog import Catalog
from telemon.collector import STATUS_FIELD_TYPES, Collector, TargetState
from telemon.config import Config
from telemon.history import History
from telemon.inputs import InputConfig, InputContext, Target
from telemon.inputs.fields import FieldsTarget
from telemon.lazy import Telemon
from telemon.lineprotocol import EncoderOptions, LineEncoder
from telemon.metric import FieldValue, Metric
from telemon.outputs import build_outputs
from telemon.outputs.base import OutputRunner
from telemon.promnames import PrometheusNames
from telemon.sink import Sink

__all__ = ["Agent", "Settings", "build_encoder"]

# Self-metrics that change with every scrape (the `telemon` line, lazy
# targets', the sink's and the outputs' status) are re-encoded at most this
# often, or at once when a lazy target's `up` changes.
SELF_METRICS_MAX_AGE_S = 1.0
_log = logging.getLogger("telemon.agent")
SELF_SOURCE = "telemon"
SINK_SOURCE = "sink"


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings, each default resolved here and nowhere else."""

    interval: float
    timeout: float
    field_timeout: float
    sink_ttl: float
    credentials: Credentials
    global_tags: dict[str, str]

    @classmethod
    def resolve(cls, config: Config) -> Settings:
        """The settings `config` means, with the agent's values filled in."""
        agent, http = config.agent, config.http
        return cls(
            interval=agent.interval,
            timeout=agent.timeout,
            field_timeout=agent.field_timeout,
            sink_ttl=config.sink.ttl or 2 * agent.interval,
            credentials=Credentials(http.username, http.basic_password, http.bearer_token),
            global_tags=dict(config.global_tags),
        )

    def schedule(self, input_config: InputConfig) -> tuple[float, float]:
        """An input table's interval and timeout."""
        return input_config.interval or self.interval, input_config.timeout or self.timeout


def build_encoder(config: Config) -> LineEncoder:
    """The encoder with the `[agent]` settings and every declared field type."""
    agent = config.agent
    encoder = LineEncoder(
        EncoderOptions(
            precision=agent.precision,
            omit_timestamp=agent.omit_timestamp,
            integer_type=agent.integer_type,
            uint_support=agent.uint_support,
        )
    )
    encoder.declare("telemon_input", STATUS_FIELD_TYPES)
    for name, input_config in config.inputs.configured():
        for measurement, kinds in input_config.field_types().items():
            for key in encoder.declare(measurement, kinds):
                _log.warning(
                    "input %s declares field %r of %r with another type than an input before"
                    " it; the first declaration stands",
                    name,
                    key,
                    measurement,
                )
    return encoder


class Agent:
    """Every running part of telemon, started and stopped together."""

    def __init__(
        self,
        config: Config,
        telemons: Sequence[Telemon] = (),
        *,
        targets: Sequence[tuple[str, Target]] = (),
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        config_path: str | None = None,
    ) -> None:
        """`telemons` are embedded lazy measurements; `targets` are (input name, target)
        pairs of the embedder's own, run at the agent's interval and timeout;
        `config_path` is the file `config` was read from (shown on the status page)."""
        self.config = config
        self.config_path = config_path
        self.settings = settings = Settings.resolve(config)
        self.clock = clock
        self._monotonic = monotonic
        self.encoder = build_encoder(config)
        context = InputContext(field_timeout=settings.field_timeout)
        self.collector = Collector(
            self._input_states(config, telemons, targets, context),
            self.encoder,
            settings.global_tags,
            context,
            clock=clock,
        )
        self.sink = (
            Sink(
                config.sink,
                self.encoder,
                settings.credentials,
                ttl=settings.sink_ttl,
                clock=clock,
                global_tags=settings.global_tags,  # lines encoded once, with them
            )
            if config.sink.enabled
            else None
        )
        self.outputs: list[OutputRunner] = build_outputs(
            config.outputs, self, interval=settings.interval, precision=config.agent.precision
        )
        # The status page's charts: fed after each collection and each scrape.
        self.history = History(lambda: clock() / 1e9, settings.global_tags)
        self.collector.observers.append(self.history.record_collection)
        self.scrapes = 0
        self.started_ns: int | None = None
        self._self_lines = b""
        self._self_lines_at = -SELF_METRICS_MAX_AGE_S

    def _input_states(
        self,
        config: Config,
        telemons: Sequence[Telemon],
        targets: Sequence[tuple[str, Target]],
        context: InputContext,
    ) -> list[TargetState]:
        settings = self.settings
        states = []
        for name, input_config in config.inputs.configured():
            interval, timeout = settings.schedule(input_config)
            for target in input_config.build(context):
                states.append(TargetState(name, target, interval, timeout, dict(input_config.tags)))
        for telemon in telemons:  # embedded: written by the agent's encoder
            telemon.encoder = self.encoder
            targets = [*targets, ("fields", FieldsTarget(telemon))]
        for name, target in targets:
            states.append(TargetState(name, target, settings.interval, settings.timeout))
        _distinct_names(states)
        return states

    # --- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        """Start polling, then the outputs' flushing."""
        self.started_ns = self.clock()
        self.collector.start()
        for runner in self.outputs:
            runner.start()

    async def stop(self) -> None:
        """Stop collecting first, so that the outputs' last write holds every collection.

        Each output first takes one last push (lazy fields, the sink's lines,
        self-metrics), so nothing that arrived since its last flush is lost.
        """
        await asyncio.gather(*(runner.take_last_push() for runner in self.outputs))
        await self.collector.stop()
        await asyncio.gather(*(runner.stop() for runner in self.outputs))

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def collect_once(self) -> None:
        """Collect every input target once, without starting (for `telemon once`)."""
        try:
            await self.collector.collect_all()
        finally:
            await self.collector.stop()

    # --- what is served and pushed ---------------------------------------------------

    @property
    def listeners(self) -> list[Callable[[bytes], None]]:
        """Called with each polled collection's lines (the outputs push every one)."""
        return self.collector.listeners

    async def scrape(self) -> bytes:
        """One HTTP scrape's line protocol: everything collected, the sink, the self-metrics."""
        self.scrapes += 1
        started = time.perf_counter()
        lazy = await self._lazy_lines()
        body = b"".join(
            [self.collector.snapshot(), lazy, self._sink_lines(), self._self_lines_now()]
        )
        self.history.record_scrape((time.perf_counter() - started) * 1000)
        return body

    async def push_lines(self) -> bytes:
        """An output's push beside the polled collections: lazy targets, sink, self-metrics."""
        lazy = await self._lazy_lines()
        return b"".join([lazy, self._sink_lines(), self._self_lines_now()])

    @cached_property
    def prometheus_names(self) -> PrometheusNames:
        """How fields are named in the Prometheus format (built at the first such scrape)."""
        return PrometheusNames(Catalog.for_config(self.config), self.config.prometheus.naming)

    async def scrape_metrics(self) -> list[Metric]:
        """One HTTP scrape as metrics (for the Prometheus format)."""
        self.scrapes += 1
        started = time.perf_counter()
        collector = self.collector
        lazy = await collector.lazy_metrics()
        now_ns = self.clock()
        status = [collector.status_metric(state, now_ns) for state in collector.states]
        metrics = [*collector.polled_metrics(), *lazy, *self._sink_metrics(), *status,
                   *self._self_metrics(now_ns)]  # fmt: skip
        self.history.record_scrape((time.perf_counter() - started) * 1000)
        return metrics

    async def _lazy_lines(self) -> bytes:
        body, changed = await self.collector.render_lazy()
        if changed:
            self._self_lines_at = -SELF_METRICS_MAX_AGE_S
        return body

    def _sink_metrics(self) -> list[Metric]:
        if self.sink is None:
            return []
        # The metrics the sink's lines were encoded from (global tags added):
        # shared, not rebuilt at every scrape.
        self.sink.loss_source = SINK_SOURCE
        return self.sink.served_metrics(self.settings.global_tags)

    def _sink_lines(self) -> bytes:
        if self.sink is None:
            return b""
        # The sink encodes each series when it arrives (losses noted under its
        # source) and serves the lines as they are: a scrape joins bytes.
        self.sink.loss_source = SINK_SOURCE
        return self.sink.serve(self.settings.global_tags)

    def _self_lines_now(self) -> bytes:
        now = self._monotonic()
        if now - self._self_lines_at >= SELF_METRICS_MAX_AGE_S:
            now_ns = self.clock()
            collector = self.collector
            metrics = [collector.status_metric(state, now_ns) for state in collector.lazy]
            metrics += self._self_metrics(now_ns)
            self.encoder.losses.source = SELF_SOURCE
            self._self_lines = self.encoder.encode_all(metrics)
            self._self_lines_at = now
        return self._self_lines

    def _self_metrics(self, now_ns: int) -> list[Metric]:
        """The `telemon` line, the sink's and each output's status line."""
        tags = self.settings.global_tags
        losses = self.encoder.losses
        fields: dict[str, FieldValue] = {"scrapes": self.scrapes}
        fields.update(self.encoder.stats.as_fields())
        fields["values_dropped"] = losses.dropped(SELF_SOURCE)
        metrics = [Metric("telemon", dict(tags), fields, now_ns)]
        if self.sink is not None:
            sink_status = self.sink.status_metric(now_ns)
            sink_status.fields["values_dropped"] = losses.dropped(SINK_SOURCE)
            metrics.append(sink_status)
        metrics += [runner.status_metric(now_ns) for runner in self.outputs]
        if tags:
            for metric in metrics[1:]:
                metric.tags = {**tags, **metric.tags}
        return metrics

    # --- start-up log ----------------------------------------------------------------

    def describe(self) -> list[str]:
        """What runs, one line per input table, output and the sink (logged at start,
        as Telegraf's "Loaded inputs"): targets and schedule, URLs and flush interval,
        paths and ttl."""
        lines = [_input_line(name, states) for name, states in _by_schedule(self.collector.states)]
        lines += [
            f"output {runner.name}: {runner.sender.url} every {runner.options.flush_interval:g}s"
            f" (batches of {runner.options.batch_size} lines)"
            for runner in self.outputs
        ]
        if self.sink is not None:
            paths = ", ".join(self.sink.config.paths)
            lines.append(f"sink: {paths} (series kept {self.sink.ttl:g}s)")
        if self.settings.global_tags:
            tags = ",".join(f"{k}={v}" for k, v in sorted(self.settings.global_tags.items()))
            lines.append(f"global tags: {tags}")
        return lines

    # --- health ----------------------------------------------------------------------

    def status(self) -> AgentStatus:
        """Every running part's state, for the status page."""
        return AgentStatus(
            version=__version__,
            started_ns=self.started_ns,
            inputs=list(self.collector.states),
            outputs=list(self.outputs),
            sink=self.sink,
            dropped=self.encoder.losses.dropped,
            interval=self.settings.interval,
            config_path=self.config_path,
            history=self.history,
            now_ns=self.clock(),
        )


DESCRIBED_TARGETS = 10
"""Targets named in an input's start-up line; the others are counted."""


def _by_schedule(states: Sequence[TargetState]) -> list[tuple[str, list[TargetState]]]:
    """The targets grouped by input and schedule (two tables of one input may differ)."""
    groups: dict[tuple[str, bool, float, float], list[TargetState]] = {}
    for state in states:
        key = (state.input, state.target.lazy, state.interval, state.timeout)
        groups.setdefault(key, []).append(state)
    return [(key[0], group) for key, group in groups.items()]


def _input_line(name: str, states: list[TargetState]) -> str:
    first = states[0]
    count = f"{len(states)} target{'s' if len(states) != 1 else ''}"
    if first.target.lazy:
        when = "evaluated at each scrape and push"
    else:
        when = f"every {first.interval:g}s (timeout {first.timeout:g}s)"
    shown = [s.target.target for s in states[:DESCRIBED_TARGETS]]
    more = len(states) - len(shown)
    targets = ", ".join(shown) + (f" and {more} more" if more else "")
    return f"input {name}: {count} {when}: {targets}"


def _distinct_names(states: list[TargetState]) -> None:
    """Targets of one input that would share a name (two `fields` tables of one
    measurement) get `#2`, `#3`...: their status lines and losses stay apart."""
    seen: dict[tuple[str, str], int] = {}
    for state in states:
        key = (state.input, state.target.target)
        seen[key] = count = seen.get(key, 0) + 1
        if count > 1:
            state.target.target = f"{state.target.target}#{count}"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """What the status page shows, read at one moment."""

    version: str
    started_ns: int | None
    inputs: list[TargetState]
    outputs: list[OutputRunner]
    sink: Sink | None
    dropped: Callable[[str], int]
    interval: float
    config_path: str | None
    history: History
    now_ns: int
