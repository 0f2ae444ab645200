"""Turns a validated `Config` into the running parts (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence

from telemon.collector import Collector, TargetState
from telemon.config import Config
from telemon.inputs import InputContext
from telemon.inputs.fields import FieldsTarget
from telemon.lazy import Telemon
from telemon.lineprotocol import EncoderOptions, LineEncoder
from telemon.outputs import OutputsTarget, build_outputs
from telemon.outputs.base import OutputRunner
from telemon.sink import SeriesStore, SinkTarget

__all__ = ["build_collector", "build_encoder", "build_output_runners"]


def build_encoder(config: Config) -> LineEncoder:
    """The encoder with the `[agent]` number and timestamp settings."""
    agent = config.agent
    return LineEncoder(
        EncoderOptions(
            precision=agent.precision,
            omit_timestamp=agent.omit_timestamp,
            integer_type=agent.integer_type,
            uint_support=agent.uint_support,
        )
    )


def build_collector(config: Config, telemons: Sequence[Telemon] = ()) -> Collector:
    """Every configured input's targets, embedded `Telemon`s and the sink, ready to run."""
    agent = config.agent
    context = InputContext(field_timeout=agent.field_timeout)
    states = []
    for name, input_config in config.inputs.configured():
        interval = input_config.interval or agent.interval
        timeout = input_config.timeout or agent.timeout
        for target in input_config.build(context):
            states.append(TargetState(name, target, interval, timeout, dict(input_config.tags)))
    encoder = build_encoder(config)
    for telemon in telemons:
        telemon.encoder = encoder
        states.append(TargetState("fields", FieldsTarget(telemon), agent.interval, agent.timeout))
    if config.sink.enabled:
        # The server finds the store through this target (`telemon.sink.find_store`).
        store = SeriesStore(config.sink.ttl or 2 * agent.interval, config.sink.max_series)
        states.append(TargetState("sink", SinkTarget(store), agent.interval, agent.timeout))
    if config.outputs.configured:
        # `build_output_runners` hands this target the runners whose counters it serves.
        states.append(TargetState("outputs", OutputsTarget(), agent.interval, agent.timeout))
    return Collector(states, encoder, dict(config.global_tags), context)


def build_output_runners(config: Config, collector: Collector) -> list[OutputRunner]:
    """The configured outputs' runners, pushing what `collector` collects (not started)."""
    return build_outputs(
        config.outputs,
        collector,
        interval=config.agent.interval,
        precision=config.agent.precision,
    )
