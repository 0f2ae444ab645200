"""A real Prometheus scrapes telemon every second: the target is up and the values match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpers import StaticTarget, free_port, wait_until
from prom import Prometheus
from prometheus_client.parser import text_string_to_metric_families

from telemon.agent import Agent
from telemon.config import parse_config
from telemon.metric import Metric
from telemon.server import create_app

DEADLINE_S = 30.0

METRICS = [
    Metric(
        "e2e",
        {"host": "a", "quote": 'say "hi"\\ there\nnext', "dash-key": "x"},
        {"value": 1.5, "fullGCs": 12, "big": 2**60, "ok": True, "s": "left out"},
    ),
    Metric("e2e", {"host": "b"}, {"value": -3, "fullGCs": 0, "ok": False}),
    Metric("e2e.dotted-name", {}, {"ratio": 0.1}),
    # The same series twice in one scrape: only the last is served.
    Metric("e2e", {"host": "b"}, {"value": 7}),
    # A tag named like a target label: Prometheus keeps it as `exported_instance`.
    Metric("e2e_pharo", {"instance": "blog"}, {"uptime": 99}),
]


def own_samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """telemon's own Prometheus body as {(name, labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return samples


def stored_samples(
    result: list[dict[str, Any]],
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A query result as {(name, labels without job/instance): value}."""
    samples = {}
    for item in result:
        labels = dict(item["metric"])
        name = labels.pop("__name__")
        labels.pop("job")
        labels.pop("instance")
        samples[(name, frozenset(labels.items()))] = float(item["value"][1])
    return samples


async def test_prometheus_scrapes_telemon(
    prometheus_for: Callable[[str], Prometheus], aiohttp_server: Any, aiohttp_client: Any
) -> None:
    port = free_port()
    prometheus = prometheus_for(f"127.0.0.1:{port}")
    config = parse_config({"inputs": {}, "agent": {"interval": "1h", "timeout": "1s"}})
    agent = Agent(config, targets=[("static", StaticTarget(*METRICS, lazy=True))])
    app = create_app(config, agent=agent)
    server = await aiohttp_server(app, port=port)
    client = await aiohttp_client(server)

    async def target_is_up() -> list[dict[str, Any]]:
        health = await prometheus.target_health()
        assert health["health"] == "up", health
        assert health["lastError"] == ""
        (up,) = await prometheus.query('up{job="telemon"}')
        assert up["value"][1] == "1"
        result = await prometheus.query('{__name__=~"e2e.*"}')
        assert result
        return result

    stored = stored_samples(await wait_until(target_is_up, timeout=DEADLINE_S, every=0.25))
    own = own_samples(await (await client.get("/metrics?format=prometheus")).text())
    expected = {as_stored(key): value for key, value in own.items() if key[0].startswith("e2e")}
    assert stored == expected
    assert stored[("e2e", frozenset({("host", "b")}))] == 7
    assert stored[("e2e_big", frozenset(expected_labels_a()))] == 2**60
    assert stored[("e2e_pharo_uptime", frozenset({("exported_instance", "blog")}))] == 99
    assert not any(name == "e2e_s" for name, _ in stored)

    async def self_metrics_counted() -> bool:
        (scrapes,) = await prometheus.query('telemon_scrapes_total{job="telemon"}')
        assert 2 <= float(scrapes["value"][1]) <= agent.scrapes
        metadata = await prometheus.api("metadata", metric="telemon_scrapes_total")
        (kind,) = metadata["telemon_scrapes_total"]
        assert kind["type"] == "counter"
        return True

    await wait_until(self_metrics_counted, timeout=DEADLINE_S, every=0.25)


def as_stored(
    key: tuple[str, frozenset[tuple[str, str]]],
) -> tuple[str, frozenset[tuple[str, str]]]:
    """A served series as Prometheus stores it: a served `instance` becomes `exported_instance`."""
    name, labels = key
    return name, frozenset((f"exported_{k}" if k == "instance" else k, v) for k, v in labels)


def expected_labels_a() -> set[tuple[str, str]]:
    """The labels of the first `e2e` metric as Prometheus stores them."""
    return {("host", "a"), ("quote", 'say "hi"\\ there\nnext'), ("dash_key", "x")}
