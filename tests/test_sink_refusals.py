"""The sink refuses what InfluxDB would not keep (and telemon's own measurements), keeps the rest.

Unit tests drive `Sink` with an injected clock; HTTP tests use a small app
built by `setup_sink`; the side-by-side tests send the same bodies to a real
InfluxDB 1.6.7 and to the sink and compare the answers and what was kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from influx import InfluxDB

from telemon.auth import Credentials
from telemon.inputs.pharo import TELEMON_FIELD_TYPES
from telemon.lineprotocol import EncoderOptions, LineEncoder, truncate_string
from telemon.lpparse import TIME_OUTSIDE_RANGE, ParsedLine, parse_lines, parse_lines_partial
from telemon.metric import FieldValue, Metric
from telemon.sink import RESERVED_MEASUREMENTS, SINK_KEY, Sink, SinkConfig, setup_sink

T0 = 1_700_000_000_000_000_000
CONFLICT = (
    'field type conflict: input field "sessions" on measurement "app" is type float,'
    " already exists as type integer"
)


class Clock:
    """An injectable wall clock in nanoseconds."""

    def __init__(self, now_ns: int = T0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def make_sink(encoder: LineEncoder | None = None, **settings: Any) -> Sink:
    config = SinkConfig(enabled=True, **settings)
    return Sink(config, encoder or LineEncoder(), Credentials(), ttl=20.0, clock=Clock())


def push(sink: Sink, text: str) -> Any:
    """Write `text` as the HTTP handler does: strict, bad lines reported."""
    lines, errors = parse_lines_partial(text, unsigned=sink.encoder.options.uint_support)
    return sink.write(lines, errors)


def kept(sink: Sink) -> set[tuple[str, str, FieldValue]]:
    """(measurement, field, value) of everything the sink serves."""
    return {(m.measurement, k, v) for m in sink.metrics() for k, v in m.fields.items()}


def kept_columns(sink: Sink) -> set[tuple[str, str, FieldValue]]:
    """(measurement, field or tag, value) of everything the sink serves, as InfluxDB's
    `SELECT *` gives them (see `influx_kept`)."""
    return kept(sink) | {(m.measurement, k, v) for m in sink.metrics() for k, v in m.tags.items()}


def sink_app(sink: Sink) -> web.Application:
    app = web.Application(handler_args={"auto_decompress": False})
    setup_sink(app, sink)
    return app


def app_with_int_sessions() -> LineEncoder:
    """An encoder that has written `app sessions` as an integer (an [[inputs.fields]] table)."""
    encoder = LineEncoder()
    assert encoder.encode(Metric("app", {}, {"sessions": 1}, T0)) == f"app sessions=1i {T0}\n"
    return encoder


# --- what was seen (issue 13) -------------------------------------------------------------


async def test_a_float_pushed_into_an_integer_field_is_a_400_partial_write(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: 204, the line never appeared, nothing was logged."""
    sink = make_sink(app_with_int_sessions())
    client = await aiohttp_client(sink_app(sink))
    response = await client.post("/telegraf", data="app sessions=1.5")
    assert response.status == 400
    expected = f"partial write: {CONFLICT} dropped=1"
    assert await response.json() == {"error": expected}
    assert response.headers["X-Influxdb-Error"] == expected
    assert response.headers["Content-Type"].startswith("application/json")
    assert kept(sink) == set()
    assert sink.refused["type_conflict"] == 1
    [record] = [r for r in caplog.records if r.name == "telemon.sink"]
    assert record.levelno == logging.WARNING
    assert CONFLICT in record.getMessage()


async def test_a_push_before_the_first_poll_cannot_lock_declared_fields(
    aiohttp_client: Any,
) -> None:
    """Was: every real pharo line lacked uptime and memoryFree from then on."""
    encoder = LineEncoder()
    encoder.declare("pharo", TELEMON_FIELD_TYPES)  # as the pharo input declares them
    sink = make_sink(encoder)
    client = await aiohttp_client(sink_app(sink))
    body = 'pharo,instance=x uptime="pwned",memoryFree=true'
    response = await client.post("/write", data=body)
    assert response.status == 400
    assert (await response.json())["error"] == (
        'partial write: field type conflict: input field "uptime" on measurement "pharo"'
        " is type string, already exists as type integer dropped=1"
    )
    assert kept(sink) == set()
    real = Metric("pharo", {"instance": "x"}, {"uptime": 12, "memoryFree": 3}, T0)
    assert encoder.encode(real) == f"pharo,instance=x uptime=12i,memoryFree=3i {T0}\n"
    # Pushed with the declared types, the same fields are kept.
    good = "pharo,instance=x uptime=5i,memoryFree=7i"
    assert (await client.post("/write", data=good)).status == 204


async def test_a_pushed_self_metric_is_refused_and_the_rest_kept(aiohttp_client: Any) -> None:
    """Was: accepted and served beside the real self-metric line."""
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    body = "app v=1i\ntelemon_input,input=process,target=self up=0i,errors=999i\nother v=2i\n"
    response = await client.post("/telegraf", data=body)
    assert response.status == 400
    assert (await response.json())["error"] == (
        'partial write: reserved measurement: "telemon_input" is written by telemon itself'
        " dropped=1"
    )
    assert kept(sink) == {("app", "v", 1), ("other", "v", 2)}
    assert sink.refused["reserved"] == 1


async def test_a_time_outside_influxdbs_range_is_refused(aiohttp_client: Any) -> None:
    """Was: 204 and served; InfluxDB 1.6.7 refuses the batch."""
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    line = "ts,k=max f=1i 9223372036854775807"
    response = await client.post("/write", data=line)
    assert response.status == 400
    assert (await response.json())["error"] == (
        f"unable to parse '{line}': {TIME_OUTSIDE_RANGE} (line 1, column 15)"
    )
    assert kept(sink) == set()
    assert sink.refused["time"] == 1


# --- Sink ----------------------------------------------------------------------------------


def test_refused_lines_are_counted_per_reason_and_the_rest_kept() -> None:
    sink = make_sink(app_with_int_sessions())
    body = (
        "app sessions=2i\n"
        "app sessions=1.5\n"
        'app sessions="x"\n'
        "telemon v=1\n"
        "ts v=1 9223372036854775807\n"
        "bad v=\n"
        "new f=1.5\n"
        "new f=2i\n"
    )
    result = push(sink, body)
    assert (result.kept, result.dropped, result.unparsed) == (2, 4, 2)
    assert result.refused == {"type_conflict": 3, "reserved": 1, "time": 1, "parse": 1}
    assert result.first_refusal == CONFLICT
    assert kept(sink) == {("app", "sessions", 2), ("new", "f", 1.5)}
    status = sink.status_metric(T0)
    assert status.fields["refused_lines"] == 6
    assert {k: v for k, v in status.fields.items() if k.startswith("refused_") and v} == {
        "refused_lines": 6,
        "refused_type_conflict": 3,
        "refused_reserved": 1,
        "refused_time": 1,
        "refused_parse": 1,
    }


def test_time_outside_range_in_a_given_line_is_refused() -> None:
    sink = make_sink()
    lines = [
        ParsedLine("a", {}, {"v": 1.0}, 2**63 - 1),
        ParsedLine("b", {}, {"v": 1.0}, -(2**63) + 1),
        ParsedLine("c", {}, {"v": 1.0}, 2**63 - 2),
        ParsedLine("d", {}, {"v": 1.0}, -(2**63) + 2),
    ]
    result = sink.write(lines)
    assert result.refused == {"time": 2}
    assert result.first_refusal == f'{TIME_OUTSIDE_RANGE}: {2**63 - 1} on measurement "a"'
    assert {m.measurement for m in sink.metrics()} == {"c", "d"}


@pytest.mark.parametrize("name", [*sorted(RESERVED_MEASUREMENTS), "telemon\x00", "telemon\x7f"])
def test_every_reserved_measurement_is_refused_also_as_written(name: str) -> None:
    sink = make_sink()
    result = sink.write([ParsedLine(name, {}, {"v": 1.0}, None)])
    assert result.refused == {"reserved": 1}
    assert sink.metrics() == []


def test_lookalikes_of_reserved_measurements_are_kept() -> None:
    sink = make_sink()
    result = push(sink, "telemon_app v=1\ntelemonx v=1\nTelemon v=1\n")
    assert result.refused == {}
    assert len(sink.store) == 3


def test_a_refused_line_fixes_no_field_type() -> None:
    encoder = app_with_int_sessions()
    sink = make_sink(encoder)
    # `fresh` is new, but the line is refused for `sessions`: `fresh` stays open.
    assert push(sink, "app fresh=1i,sessions=1.5\n").refused == {"type_conflict": 1}
    assert push(sink, 'app fresh="text"\n').refused == {}
    assert kept(sink) == {("app", "fresh", "text")}


def test_a_line_refused_for_max_series_fixes_no_field_type() -> None:
    sink = make_sink(max_series=1)
    assert push(sink, "a v=1\n").refused == {}
    assert push(sink, "b v=1i\n").refused == {"max_series": 1}
    sink.store.purge(T0 + 21 * 10**9)  # `a` expired: room again
    assert push(sink, 'b v="s"\n').refused == {}


def test_within_one_body_the_first_value_fixes_a_new_field_as_in_influxdb() -> None:
    sink = make_sink()
    result = push(sink, "newm f=1.5\nnewm f=2i\nnewm g=1i\n")
    assert result.refused == {"type_conflict": 1}
    assert result.first_refusal == (
        'field type conflict: input field "f" on measurement "newm" is type integer,'
        " already exists as type float"
    )


def test_up_is_false_after_a_refusal_until_a_write_is_kept_whole() -> None:
    sink = make_sink(app_with_int_sessions())
    assert (sink.up, sink.last_error) == (True, None)
    push(sink, "app sessions=1.5\nok v=1\n")
    assert sink.up is False
    assert sink.last_error == f"partial write: {CONFLICT} dropped=1"
    assert sink.status_metric(T0).fields["up"] == 0
    push(sink, "ok v=2\n")
    assert sink.up is True
    assert sink.last_error == f"partial write: {CONFLICT} dropped=1"  # kept for the status page
    sink.refuse_body("request body too large")
    assert (sink.up, sink.last_error, sink.refused_bodies, sink.writes) == (
        False,
        "request body too large",
        1,
        3,
    )


def test_each_refusal_is_logged_once_escaped_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = make_sink(app_with_int_sessions())
    for _ in range(3):
        push(sink, "app sessions=1.5\napp sessions=2.5\ntelemon v=1\nbad v=\nworse v=\n")
    messages = [r.getMessage() for r in caplog.records if r.name == "telemon.sink"]
    assert len(messages) == 3, messages  # type conflict, reserved, one kind of parse error
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "telemon.sink")
    caplog.clear()
    push(sink, "app\x1b[31m k=1i\napp\x1b[31m k=1.5\n")
    key = "k" * 10_000
    push(sink, f"app {key}=1i\napp {key}=1.5\n")
    escaped, long = [r.getMessage() for r in caplog.records if r.name == "telemon.sink"]
    assert "\x1b" not in escaped
    assert "\\x1b[31m" in escaped
    assert len(long) < 1000


def test_many_bad_lines_name_at_most_a_hundred() -> None:
    sink = make_sink()
    result = push(sink, "bad v=\n" * 250 + "ok v=1\n")
    assert (result.unparsed, len(result.unparsed_texts), result.kept) == (250, 100, 1)


def test_metrics_are_fresh_objects() -> None:
    sink = make_sink()
    push(sink, "m,h=a v=1 5\n")
    [first] = sink.metrics()
    first.tags["global"] = "x"
    assert sink.metrics() == [Metric("m", {"h": "a"}, {"v": 1.0}, 5)]


# --- HTTP answers --------------------------------------------------------------------------


async def test_body_refusals_are_json_with_the_header_and_counted(aiohttp_client: Any) -> None:
    sink = make_sink(max_body_size=100)
    client = await aiohttp_client(sink_app(sink))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": "m v=1\n" * 50}, 413, "request body too large: max_body_size is 100 bytes"),
        (
            {"data": b"x", "headers": {"Content-Encoding": "br"}},
            415,
            "unsupported Content-Encoding 'br'",
        ),
        ({"data": "m v=1\n", "params": {"precision": "h"}}, 400, "unknown precision 'h'"),
        ({"data": b'm s="\xff"\n'}, 400, "line 1, column 6: invalid UTF-8"),
    ]
    for request, status, text in cases:
        response = await client.post("/write", **request)
        assert response.status == status, text
        body = await response.text()
        assert text in body, body
        assert response.headers["X-Influxdb-Error"].isascii()
    assert (sink.writes, sink.refused_bodies, sink.up, len(sink.store)) == (4, 4, False, 0)


async def test_max_series_is_503_without_partial_write_so_clients_retry(
    aiohttp_client: Any,
) -> None:
    sink = make_sink(app_with_int_sessions(), max_series=2)
    client = await aiohttp_client(sink_app(sink))
    assert (await client.post("/write", data="app sessions=2i\n")).status == 204
    response = await client.post("/write", data="a v=1\nb v=1\napp sessions=1.5\n")
    assert response.status == 503
    assert response.headers["Retry-After"] == "20"
    error = (await response.json())["error"]
    assert error == (
        "max_series (2) reached: 1 lines of new series dropped, 1 kept;"
        " also refused: 1 type_conflict"
    )
    assert "partial write" not in error  # Telegraf and telemon's outputs would not retry


async def test_a_clean_write_after_refusals_is_204(aiohttp_client: Any) -> None:
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    assert (await client.post("/write", data="telemon v=1\n")).status == 400
    response = await client.post("/write", data="m v=1\n\n# comment\n")
    assert response.status == 204
    assert "X-Influxdb-Error" not in response.headers
    assert sink.up is True


# --- side by side with InfluxDB 1.6.7 -------------------------------------------------------


def influx_kept(influxdb: InfluxDB, db: str) -> set[tuple[str, str, FieldValue]]:
    """(measurement, field, value) of every point InfluxDB stored."""
    out: set[tuple[str, str, FieldValue]] = set()
    for series in influxdb.series(db, "SELECT * FROM /.*/"):
        columns = series["columns"]
        for row in series["values"]:
            for column, value in zip(columns[1:], row[1:], strict=True):
                if value is not None:
                    out.add((series["name"], column, value))
    return out


SIDE_BY_SIDE = [
    pytest.param(["app sessions=1i"], "app sessions=1.5\nother v=3i\n", id="type-conflict"),
    pytest.param([], "newm f=1.5\nnewm2 f=2i\nnewm f=2i\nnewm g=1i\n", id="conflict-in-body"),
    pytest.param(
        ["app sessions=1i"], 'app sessions=1.5\napp sessions="x"\nk v=1\n', id="two-conflicts"
    ),
    pytest.param([], "ts,k=max f=1i 9223372036854775807\n", id="time-max"),
    pytest.param([], "ts,k=min f=1i -9223372036854775807\n", id="time-min-plus-one"),
    pytest.param(
        [],
        "a1 v=1\nts f=1i 9223372036854775807\na2 v=1\n",
        id="time-among-good-lines",
    ),
    pytest.param(
        [],
        "hi f=1i 9223372036854775806\nlo f=1i -9223372036854775806\n",
        id="time-range-ends-kept",
    ),
    pytest.param([], "good v=1\nbad v=\nlater v=4\n", id="parse-error-among-good-lines"),
    pytest.param([], "bad v=\nbad2 v=\n", id="only-parse-errors"),
    pytest.param(
        ["app sessions=1i"],
        "good v=1\nbad v=\napp sessions=1.5\n",
        id="conflict-and-parse-error",
    ),
    pytest.param([], "", id="empty"),
    pytest.param([], "dupt,t=a,t=b f=1i\n", id="duplicate-tags"),
    pytest.param([], "ok v=1\ndupt,t=a,t=b f=1i\nok2 v=2\n", id="duplicate-tags-among-good"),
    pytest.param([], "u1 x=18446744073709551615u\n", id="uint-max"),
    pytest.param([], "ok v=1\nu2 x=5u\nok2 v=2\n", id="uint-among-good-lines"),
    pytest.param([], "tm time=5i\n", id="field-key-time"),
    pytest.param([], "ok v=1\ntm time=5i\nok2 v=2\n", id="field-key-time-among-good"),
    pytest.param([], "rt,time=a v=1\nok v=1\n", id="tag-key-time"),
    pytest.param([], "dupf f=1i,f=2i\n", id="repeated-field-last-wins"),
]


@pytest.mark.parametrize(("before", "body"), SIDE_BY_SIDE)
async def test_same_answer_and_same_lines_kept_as_influxdb(
    aiohttp_client: Any, influxdb: InfluxDB, before: list[str], body: str
) -> None:
    db = influxdb.create_database(f"sink_{uuid.uuid4().hex}")
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    # A first write creates the shard: InfluxDB 1.6 refuses a whole first batch
    # with a type conflict in it ("field type conflict", nothing kept), but only
    # the conflicting lines once the shard exists.
    for earlier in ["warm v=1i", *before]:
        assert influxdb.write(db, earlier.encode())[0] == 204
        assert (await client.post("/write", data=earlier)).status == 204
    influx_status, influx_text = influxdb.write(db, body.encode())
    response = await client.post("/write", data=body)
    assert response.status == influx_status, (influx_text, await response.text())
    assert influx_kept(influxdb, db) == kept_columns(sink)
    if influx_status == 204:
        return
    ours = (await response.json())["error"]
    theirs = json.loads(influx_text)["error"]
    # The same kind of answer: partial or not, the same dropped=N, the same
    # first reason (ours adds where a line could not be parsed).
    assert ours.startswith("partial write:") == theirs.startswith("partial write:")
    assert ours.rsplit(" dropped=", 1)[1:] == theirs.rsplit(" dropped=", 1)[1:]
    assert ours.count("unable to parse '") == theirs.count("unable to parse '")
    if "field type conflict" in theirs:
        assert ours == theirs
    if TIME_OUTSIDE_RANGE in theirs:
        assert TIME_OUTSIDE_RANGE in ours


async def write_both(
    client: Any, influxdb: InfluxDB, body: str
) -> tuple[tuple[int, str], Any, Sink, str]:
    """`body` written to a fresh InfluxDB database and to the sink behind `client`."""
    db = influxdb.create_database(f"sink_{uuid.uuid4().hex}")
    assert influxdb.write(db, b"warm v=1i")[0] == 204  # the shard exists (see above)
    assert (await client.post("/write", data="warm v=1i")).status == 204
    theirs = influxdb.write(db, body.encode())
    response = await client.post("/write", data=body)
    return theirs, response, client.server.app[SINK_KEY], db


# InfluxDB refuses these lines too, but as unparsable where the sink refuses them
# after parsing (its parser reads a backslash before a backslash as Telegraf does):
# the same status and lines kept, other words.
SAME_CLASS = [
    pytest.param("ok v=1\nbt,t=a\\\\ f=1i\nbt,t=a f=2i\n", id="tag-value-trailing-backslash"),
    pytest.param("ok v=1\nbk,k\\\\=x v=1\n", id="tag-key-trailing-backslash"),
    pytest.param("ok v=1\nbs\\\\ v=1\n", id="measurement-trailing-backslash"),
    pytest.param("ok v=1\nfk k\\\\=1\n", id="field-key-trailing-backslash"),
]


@pytest.mark.parametrize("body", SAME_CLASS)
async def test_lines_influxdb_cannot_parse_are_refused_and_the_rest_kept(
    aiohttp_client: Any, influxdb: InfluxDB, body: str
) -> None:
    """Was: `bt,t=a\\\\ f=1i` was 204 and served as `bt,t=a`, merged with the real series."""
    client = await aiohttp_client(sink_app(make_sink()))
    (status, text), response, sink, db = await write_both(client, influxdb, body)
    assert (status, response.status) == (400, 400), text
    assert "unable to parse" in text
    assert influx_kept(influxdb, db) == kept_columns(sink)
    error = (await response.json())["error"]
    assert error.startswith("partial write: invalid ") and error.endswith(" dropped=1")
    assert sink.refused["name"] == 1


# Lines InfluxDB 1.6.7 keeps, changed or whole, that telemon could only serve changed:
# refused (400, the rest kept), where InfluxDB answers 204.
KEPT_BY_INFLUXDB = [
    # InfluxDB drops the field `time` silently and keeps the rest; the encoder would
    # serve it as `time_`, merged with the real `time_`.
    pytest.param("tm3 time_=1i,time=2i\n", [("tm3", "time_", 1)], "name", id="field-time-beside"),
    # Tag keys InfluxDB 2.x reserves; the encoder writes them with a trailing `_`.
    pytest.param(
        "rt2,_field=a v=1\n",
        [("rt2", "v", 1.0), ("rt2", "_field", "a")],
        "name",
        id="tag-key-_field",
    ),
    pytest.param(
        "rt3,_measurement=a v=1\n",
        [("rt3", "v", 1.0), ("rt3", "_measurement", "a")],
        "name",
        id="tag-key-_measurement",
    ),
    # InfluxDB stores the whole string; the encoder writes 64 KiB at most.
    pytest.param(
        's1 s="' + "a" * 70_000 + '"\n', [("s1", "s", "a" * 70_000)], "string_length", id="string"
    ),
]


@pytest.mark.parametrize(("line", "influxdb_keeps", "why"), KEPT_BY_INFLUXDB)
async def test_lines_telemon_would_serve_changed_are_refused_where_influxdb_keeps_them(
    aiohttp_client: Any,
    influxdb: InfluxDB,
    line: str,
    influxdb_keeps: list[tuple[str, str, FieldValue]],
    why: str,
) -> None:
    client = await aiohttp_client(sink_app(make_sink()))
    body = f"ok v=1\n{line}ok2 v=2\n"
    (status, text), response, sink, db = await write_both(client, influxdb, body)
    assert status == 204, text
    good = {("warm", "v", 1), ("ok", "v", 1.0), ("ok2", "v", 2.0)}
    assert influx_kept(influxdb, db) == good | set(influxdb_keeps)
    assert response.status == 400
    assert kept_columns(sink) == good
    error = (await response.json())["error"]
    assert error.startswith("partial write: ") and error.endswith(" dropped=1")
    assert sink.refused[why] == 1
    assert sink.status_metric(T0).fields[f"refused_{why}"] == 1


async def test_each_new_refusal_is_counted_under_its_reason(aiohttp_client: Any) -> None:
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    body = "".join(
        [
            "ok v=1\n",
            "dupt,t=a,t=b f=1i\n",
            "u1 x=5u\n",
            "tm time=5i\n",
            "bt,t=a\\\\ f=1i\n",
            f's s="{"é" * 40_000}"\n',  # 80,000 bytes of UTF-8
        ]
    )
    response = await client.post("/write", data=body.encode())
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith(
        'partial write: invalid field name: input field "time" on measurement "tm" is invalid'
    )
    assert error.endswith(" dropped=3")
    assert kept(sink) == {("ok", "v", 1.0)}
    fields = sink.status_metric(T0).fields
    assert {k: v for k, v in fields.items() if k.startswith("refused_") and v} == {
        "refused_lines": 5,
        "refused_duplicate_tags": 1,
        "refused_unsigned": 1,
        "refused_name": 2,
        "refused_string_length": 1,
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("bt,t=a\\\\ f=1i", 'input tag "t" on measurement "bt" has value "a\\\\"'),
        ("rt,time=a v=1", 'invalid tag key: input tag "time" on measurement "rt" is invalid'),
        ("tm time=5i", 'invalid field name: input field "time" on measurement "tm" is invalid'),
        ("fk k\\\\=1", 'invalid field name: input field "k\\\\" on measurement "fk"'),
        ("bs\\\\ v=1", 'invalid measurement: "bs\\\\" would be served as "bs"'),
        ("m,k\\\\=x v=1", 'invalid tag key: input tag "k\\\\" on measurement "m"'),
    ],
)
def test_a_name_the_encoder_rewrites_is_refused_naming_it(line: str, reason: str) -> None:
    sink = make_sink()
    result = push(sink, f"{line}\nok v=1\n")
    assert result.refused == {"name": 1}
    assert result.first_refusal is not None and reason in result.first_refusal
    assert kept(sink) == {("ok", "v", 1.0)}


def test_a_leading_hash_in_a_measurement_is_refused() -> None:
    """A body cannot start a measurement with `#` (a comment), a given line can."""
    sink = make_sink()
    result = sink.write(
        [ParsedLine("#m", {}, {"v": 1.0}, None), ParsedLine("_m", {}, {"v": 2.0}, None)]
    )
    assert result.refused == {"name": 1}
    assert result.first_refusal == 'invalid measurement: "#m" would be served as "_m"'
    assert kept(sink) == {("_m", "v", 2.0)}


def test_backslashes_the_encoder_keeps_are_kept() -> None:
    sink = make_sink()
    body = "b\\\\s,t=a\\\\b,C:\\dir=x k\\\\j=1i\n\\#m v=1\n"
    assert push(sink, body).refused == {}
    assert served_lines(sink) == sorted(
        [
            ParsedLine("b\\\\s", {"t": "a\\\\b", "C:\\dir": "x"}, {"k\\\\j": 1}, T0),
            ParsedLine("\\#m", {}, {"v": 1.0}, T0),
        ],
        key=repr,
    )


def test_a_string_of_64_kib_is_kept_whole_and_one_byte_more_refused() -> None:
    sink = make_sink()
    limit = len(truncate_string("a" * 200_000))
    assert push(sink, f's s="{"a" * limit}"\n').refused == {}
    assert kept(sink) == {("s", "s", "a" * limit)}
    result = push(sink, f's2 s="{"a" * (limit + 1)}"\n')
    assert result.refused == {"string_length": 1}
    assert result.first_refusal == (
        f'string too long: input field "s" on measurement "s2" is {limit + 1} bytes of UTF-8;'
        f" telemon serves at most {limit}"
    )


async def test_unsigned_values_are_kept_with_uint_support(aiohttp_client: Any) -> None:
    encoder = LineEncoder(EncoderOptions(uint_support=True))
    sink = make_sink(encoder)
    client = await aiohttp_client(sink_app(sink))
    top = "18446744073709551615"
    assert (await client.post("/write", data=f"u1 x={top}u 5\n")).status == 204
    assert sink.serve() == f"u1 x={top}u 5\n".encode()
    response = await client.post("/write", data=f"u1 x={top}0u 6\n")
    assert response.status == 400
    assert "unsigned integer out of range" in (await response.json())["error"]
    assert sink.refused["parse"] == 1


NAME_PARTS = st.text(alphabet='ab#\\ ,=_"', max_size=6) | st.sampled_from(
    ["time", "_field", "_measurement", "time_", "a\\", "#a"]
)


@settings(max_examples=300, deadline=None)
@given(
    measurement=NAME_PARTS.filter(bool),
    tags=st.dictionaries(NAME_PARTS.filter(bool), NAME_PARTS.filter(bool), max_size=3),
    keys=st.lists(NAME_PARTS.filter(bool), min_size=1, max_size=3, unique=True),
)
def test_a_kept_line_is_served_as_it_was_sent(
    measurement: str, tags: dict[str, str], keys: list[str]
) -> None:
    """The rule: whatever the names, the sink keeps a line only if it serves it unchanged."""
    sink = make_sink()
    line = ParsedLine(measurement, tags, {key: 1 for key in keys}, 5)
    result = sink.write([line])
    if result.kept:
        [served] = served_lines(sink)
        assert served == ParsedLine(measurement, tags, {key: 1 for key in keys}, 5)
    else:
        assert set(result.refused) <= {"name", "reserved"}


def served_lines(sink: Sink) -> list[ParsedLine]:
    """What /metrics serves of the sink, read back (sorted, to compare)."""
    return sorted(parse_lines(sink.serve().decode()), key=repr)


def test_read_back_of_what_the_sink_serves_is_what_was_pushed() -> None:
    """The sink's store goes through the encoder: it reads back as pushed (types kept)."""
    sink = make_sink()
    push(sink, 'm,h=a i=1i,f=1.5,b=true,s="x" 5\n')
    [line] = parse_lines(sink.encoder.encode_all(sink.metrics()).decode())
    assert line == ParsedLine("m", {"h": "a"}, {"i": 1, "f": 1.5, "b": True, "s": "x"}, 5)


async def test_a_large_write_lets_the_event_loop_serve_others_meanwhile() -> None:
    sink = make_sink(app_with_int_sessions())
    text = "".join(f"m,h={i} v={i}i\n" for i in range(5000)) + "app sessions=1.5\n"
    lines, errors = parse_lines_partial(text)
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    before = turns
    result = await sink.write_in_steps(lines, errors, step=1000)
    task.cancel()
    assert turns - before >= 4  # a turn between every two steps
    assert (result.kept, result.refused) == (5000, {"type_conflict": 1})
    assert (sink.writes, sink.lines, sink.up) == (1, 5000, False)


@pytest.mark.parametrize(
    ("body", "refused", "retry"),
    [
        ("app sessions=1.5\nok v=1\n", 1, False),
        ("ok v=1\nbad v=\nworse\n", 2, False),
        ("bad v=\nworse\n", None, False),  # nothing stored: refused whole
        ("a v=1\nb v=1\nc v=1\n", None, True),  # max_series: retried later
    ],
)
async def test_telemons_own_outputs_read_the_answers_right(
    aiohttp_client: Any, body: str, refused: int | None, retry: bool
) -> None:
    """A telemon pushing to another telemon's sink counts what was refused, retries a 503."""
    from telemon.outputs.base import classify_status

    sink = make_sink(app_with_int_sessions(), max_series=2)
    client = await aiohttp_client(sink_app(sink))
    assert (await client.post("/write", data="app sessions=1i\n")).status == 204
    response = await client.post("/write", data=body)
    error = classify_status(
        response.status, await response.text(), response.headers.get("Retry-After")
    )
    assert error is not None
    assert (error.refused, error.retry) == (refused, retry)


def test_refused_bodies_are_logged_once_per_status(caplog: pytest.LogCaptureFixture) -> None:
    sink = make_sink()
    for column in range(1, 5):
        sink.refuse_body(f"line 1, column {column}: invalid UTF-8", 400)
    sink.refuse_body("request body too large: max_body_size is 100 bytes", 413)
    logged = [r.getMessage() for r in caplog.records if r.name == "telemon.sink"]
    assert len(logged) == 2
    assert (sink.refused_bodies, sink.last_error) == (5, logged[1].split(": ", 1)[1])
