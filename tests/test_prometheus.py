"""The Prometheus text format: naming, escaping, types, values, duplicates, negotiation."""

from __future__ import annotations

import gzip
import math
from typing import Any

import pytest
from aiohttp import web
from helpers import StaticTarget
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from telemon.agent import Agent
from telemon.config import parse_config
from telemon.metric import FieldValue, Metric
from telemon.prometheus import (
    CONTENT_TYPE,
    PrometheusNames,
    is_counter,
    label_name,
    metric_name,
    render_prometheus,
    wants_prometheus,
)
from telemon.server import create_app

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TELEGRAF_PROMETHEUS_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3"
)

Sample = tuple[str, tuple[tuple[str, str], ...], float, float | None]


def parse(body: bytes) -> tuple[dict[str, str], list[Sample]]:
    """(type per family name, samples) as prometheus_client reads `body`."""
    types, samples = {}, []
    for family in text_string_to_metric_families(body.decode("utf-8")):
        types[family.name] = family.type
        for s in family.samples:
            # The parser names counter samples `<name>_total`; telemon does not.
            name = s.name.removesuffix("_total") if family.type == "counter" else s.name
            stamp = None if s.timestamp is None else float(s.timestamp)
            samples.append((name, tuple(sorted(s.labels.items())), s.value, stamp))
    return types, samples


TELEGRAF_NAMES = PrometheusNames(naming="telegraf")


def render(*metrics: Metric, **options: Any) -> str:
    """The rendered text with Telegraf's naming (tests/test_prometheus_names.py has
    Prometheus's), checked to be well-formed."""
    body = render_prometheus(metrics, names=TELEGRAF_NAMES, **options)
    text = body.decode("utf-8")
    assert text == "" or text.endswith("\n")
    parse(body)
    return text


# --- naming -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "field", "name"),
    [
        ("pharo", "fullGCs", "pharo_fullGCs"),
        ("pharo", "value", "pharo"),
        ("my-app.v2", "req/s", "my_app_v2_req_s"),
        ("a:b", "c", "a:b_c"),
        ("_x_", "y_", "x__y"),
        ("1st", "x", "_1st_x"),
        ("été", "ça", "t___a"),
        ("---", "value", ""),
    ],
)
def test_metric_names(measurement: str, field: str, name: str) -> None:
    assert metric_name(measurement, field) == name


@pytest.mark.parametrize(
    ("key", "name"),
    [("host", "host"), ("a:b", "a_b"), ("__name__", "name"), ("9lives", "_9lives"), ("--", "")],
)
def test_label_names(key: str, name: str) -> None:
    assert label_name(key) == name


def test_sample_lines_with_help_and_type() -> None:
    text = render(Metric("pharo", {"instance": "blog:80", "app": "b"}, {"value": 2, "uptime": 7}))
    assert text == (
        "# HELP pharo telemon metric pharo field value\n"
        "# TYPE pharo gauge\n"
        'pharo{app="b",instance="blog:80"} 2\n'
        "# HELP pharo_uptime telemon metric pharo field uptime\n"
        "# TYPE pharo_uptime gauge\n"
        'pharo_uptime{app="b",instance="blog:80"} 7\n'
    )


def test_no_labels_no_braces() -> None:
    assert render(Metric("m", {}, {"f": 1})).splitlines()[-1] == "m_f 1"


def test_label_values_are_escaped_and_read_back() -> None:
    value = 'back\\slash "quoted"\nnew line, {braces}=ok é'
    text = render(Metric("m", {"t": value}, {"f": 1}))
    assert 'm_f{t="back\\\\slash \\"quoted\\"\\nnew line, {braces}=ok é"} 1\n' in text
    _, samples = parse(text.encode())
    assert samples == [("m_f", (("t", value),), 1.0, None)]


def test_invalid_label_names_are_sanitized_and_empty_values_dropped() -> None:
    metric = Metric("m", {"a-b": "1", "a.b": "2", "empty": "", "--": "gone"}, {"f": 1})
    _, samples = parse(render(metric).encode())
    assert samples == [("m_f", (("a_b", "1"),), 1.0, None)]


def test_help_is_escaped() -> None:
    text = render(Metric("m\\x", {}, {"f\nnew": 1}))
    assert "# HELP m_x_f_new telemon metric m\\\\x field f\\nnew\n" in text


def test_lone_surrogates_become_question_marks() -> None:
    text = render(Metric("m", {"t": "a\ud800b"}, {"f": 1}))
    assert 'm_f{t="a?b"} 1' in text


# --- types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "field"),
    [
        ("pharo", "fullGCs"),
        ("pharo", "fullGCTime"),
        ("pharo", "incrGCs"),
        ("pharo", "incrGCTime"),
        ("pharo", "tenureCount"),
        ("pharo", "bytesAllocated"),
        ("python", "gc_collections_0"),
        ("python", "gc_collected_2"),
        ("process", "cpu_time_user"),
        ("process", "cpu_time_system"),
        ("net", "rx_bytes"),
        ("net", "tx_bytes"),
        ("telemon_input", "errors"),
        ("telemon_input", "collections"),
        ("telemon", "scrapes"),
        ("telemon", "lines_written"),
        ("telemon", "fields_nonfinite"),
    ],
)
def test_known_monotonic_fields_are_counters(measurement: str, field: str) -> None:
    assert is_counter(measurement, field)
    types, _ = parse(render(Metric(measurement, {}, {field: 1})).encode())
    assert types == {metric_name(measurement, field): "counter"}


@pytest.mark.parametrize(
    ("measurement", "field"),
    [
        ("pharo", "oldSpace"),
        ("pharo", "sinceLastView_fullGCs"),
        ("pharo", "fullGCsX"),
        ("process", "memory_rss"),
        ("telemon_input", "lines"),
        ("telemon_input", "up"),
        ("other", "errors"),
        ("other", "scrapes"),
    ],
)
def test_other_fields_are_gauges(measurement: str, field: str) -> None:
    assert not is_counter(measurement, field)
    assert f"# TYPE {metric_name(measurement, field)} gauge\n" in render(
        Metric(measurement, {}, {field: 1})
    )


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "1"),
        (False, "0"),
        (0, "0"),
        (-42, "-42"),
        (2**63 - 1, "9223372036854775807"),
        (2**70, "1180591620717411303424"),
        (0.1, "0.1"),
        (-0.0, "-0.0"),
        (1e22, "1e+22"),
        (5e-324, "5e-324"),
    ],
)
def test_values(value: FieldValue, text: str) -> None:
    assert render(Metric("m", {}, {"f": value})).splitlines()[-1] == f"m_f {text}"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "text"])
def test_unrepresentable_values_are_left_out(value: FieldValue) -> None:
    assert render(Metric("m", {}, {"f": value, "g": 1})).count("m_f") == 0


def test_strings_become_labels_when_asked() -> None:
    metric = Metric("m", {"host": "a", "state": "tag"}, {"state": "running", "f": 1})
    _, samples = parse(render(metric, string_as_label=True).encode())
    assert samples == [("m_f", (("host", "a"), ("state", "running")), 1.0, None)]


@given(st.integers(min_value=-(2**64), max_value=2**64) | st.floats(allow_nan=False))
def test_any_finite_value_reads_back(value: float) -> None:
    text = render(Metric("m", {}, {"f": value}))
    if math.isinf(value):
        assert "m_f" not in text
        return
    (sample,) = parse(text.encode())[1]
    assert sample[2] == value  # ints are read back exactly, beyond 2**53 too


# --- structure --------------------------------------------------------------------------


def test_help_and_type_once_and_samples_contiguous() -> None:
    metrics = [
        Metric("pharo", {"instance": "a"}, {"fullGCs": 1, "uptime": 5}),
        Metric("python", {}, {"threads": 2}),
        Metric("pharo", {"instance": "b"}, {"fullGCs": 3, "uptime": 6}),
    ]
    lines = render(*metrics).splitlines()
    assert lines.count("# TYPE pharo_fullGCs counter") == 1
    names = [line.split("{")[0].split()[0] for line in lines if not line.startswith("#")]
    assert names == ["pharo_fullGCs"] * 2 + ["pharo_uptime"] * 2 + ["python_threads"]
    assert lines[0:2] == [
        "# HELP pharo_fullGCs telemon metric pharo field fullGCs",
        "# TYPE pharo_fullGCs counter",
    ]


def test_duplicate_series_keep_the_last_value() -> None:
    metrics = [
        Metric("m", {"a": "1"}, {"f": 1}),
        Metric("m", {"a": "2"}, {"f": 2}),
        Metric("m", {"a": "1", "empty": ""}, {"f": 3}),
        Metric("m_f", {"a-": "2"}, {"value": 4}),
    ]
    _, samples = parse(render(*metrics).encode())
    assert samples == [("m_f", (("a", "1"),), 3.0, None), ("m_f", (("a", "2"),), 4.0, None)]


def test_timestamps_in_milliseconds_only_when_asked() -> None:
    metric = Metric("m", {}, {"f": 1}, time_ns=1_700_000_000_123_456_789)
    assert render(metric).splitlines()[-1] == "m_f 1"
    assert render(metric, timestamps=True).splitlines()[-1] == "m_f 1 1700000000123"
    assert render(Metric("m", {}, {"f": 1}), timestamps=True).splitlines()[-1] == "m_f 1"


def test_nothing_gives_an_empty_body() -> None:
    assert render_prometheus([]) == b""
    assert render_prometheus([Metric("m", {}, {"s": "x"})]) == b""


# --- negotiation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_param", "accept", "prometheus"),
    [
        (None, None, False),
        (None, "", False),
        (None, "*/*", False),
        (None, "text/plain", False),
        (None, "text/plain; version=1.0", False),
        (None, "application/json, text/html;q=0.9", False),
        (None, "text/plain;version=0.0.4", True),
        (None, 'Text/Plain; Version="0.0.4"', True),
        (None, "text/plain; version=0.0.4; q=0", False),
        (None, "application/openmetrics-text; version=1.0.0", True),
        (None, PROMETHEUS_ACCEPT, True),
        (None, TELEGRAF_PROMETHEUS_ACCEPT, True),
        ("prometheus", None, True),
        ("prometheus", "*/*", True),
        ("influx", PROMETHEUS_ACCEPT, False),
    ],
)
def test_wants_prometheus(format_param: str | None, accept: str | None, prometheus: bool) -> None:
    assert wants_prometheus(format_param, accept) is prometheus


@pytest.mark.parametrize("format_param", ["", "json", "Prometheus"])
def test_unknown_format_is_refused(format_param: str) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        wants_prometheus(format_param, None)


async def client_for(aiohttp_client: Any, *metrics: Metric, **prometheus: Any) -> Any:
    """A client for an app serving `metrics` from one target, lazily collected per scrape."""
    target = StaticTarget(*metrics, lazy=True)
    config = parse_config({"inputs": {}, "prometheus": prometheus})
    return await aiohttp_client(
        create_app(config, agent=Agent(config, targets=[("static", target)]))
    )


async def test_endpoint_answers_prometheus_to_prometheus(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, Metric("app", {"t": "x"}, {"hits": 5, "s": "a"}))
    resp = await client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert "Accept" in resp.headers["Vary"]
    types, samples = parse(await resp.read())
    assert ("app_hits", (("t", "x"),), 5.0, None) in samples
    assert types["telemon_scrapes"] == "counter"
    assert types["telemon_input_up"] == "gauge"
    status = {(n, labels): v for n, labels, v, _ in samples if n.startswith("telemon_input")}
    assert status[("telemon_input_up", (("input", "static"), ("target", "static")))] == 1.0


async def test_endpoint_keeps_line_protocol_by_default(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client, Metric("app", {}, {"hits": 5}))
    for headers in ({}, {"Accept": "*/*"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert (await resp.text()).startswith("app hits=5i ")
    resp = await client.get("/metrics?format=influx", headers={"Accept": PROMETHEUS_ACCEPT})
    assert (await resp.text()).startswith("app hits=5i ")


async def test_endpoint_query_format_and_options(aiohttp_client: Any) -> None:
    client = await client_for(
        aiohttp_client,
        Metric("app", {}, {"hits": 5, "state": "ok"}),
        timestamps=True,
        string_as_label=True,
    )
    resp = await client.get("/metrics?format=prometheus")
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    _, samples = parse(await resp.read())
    ((labels, timestamp),) = [(s[1], s[3]) for s in samples if s[0] == "app_hits"]
    assert labels == (("state", "ok"),)
    assert timestamp is not None and timestamp > 1e9


async def test_endpoint_refuses_an_unknown_format(aiohttp_client: Any) -> None:
    client = await client_for(aiohttp_client)
    resp = await client.get("/metrics?format=json")
    assert resp.status == web.HTTPBadRequest.status_code
    assert "unknown format" in await resp.text()


async def test_endpoint_gzips_prometheus_and_answers_head(aiohttp_client: Any) -> None:
    metrics = [Metric("app", {"i": str(i)}, {"hits": i}) for i in range(100)]
    client = await client_for(aiohttp_client, *metrics)
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    resp = await client.get("/metrics", headers=headers, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    _, samples = parse(gzip.decompress(await resp.read()))
    assert sum(1 for s in samples if s[0] == "app_hits") == 100
    head = await client.head("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert head.status == 200
    assert head.headers["Content-Type"] == CONTENT_TYPE
    assert await head.read() == b""
