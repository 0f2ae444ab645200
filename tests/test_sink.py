"""The write sink: pushed line protocol is stored and served again on /metrics."""

from __future__ import annotations

import asyncio
import gzip
import logging
import resource
import struct
import tracemalloc
import zlib
from typing import Any

import pytest
from aiohttp import web
from helpers import T0_NS, Clocks, basic_auth

from telemon.auth import Credentials
from telemon.config import ConfigError, parse_config
from telemon.lineprotocol import LineEncoder
from telemon.lpparse import TIME_OUTSIDE_RANGE, UNSIGNED_OFF, ParsedLine, parse_lines
from telemon.sink import BodyTooLarge, BoundedInflater, Sink, SinkConfig, setup_sink

T0 = T0_NS  # the clocks' start: a line without a timestamp arrives then
TOKEN = "sink-token"
BOMB_SIZE = 1 << 30  # inflated; about 1 MB as sent


def make_sink(
    clock: Clocks | None = None,
    http: dict[str, str] | None = None,
    encoder: LineEncoder | None = None,
    **sink: Any,
) -> Sink:
    """A sink with `clock`, the `[sink]` settings given and the `[http]` credentials."""
    config = SinkConfig(enabled=True, **sink)
    http = http or {}
    credentials = Credentials(http.get("username"), http.get("password"), http.get("token"))
    ttl = config.ttl or 20.0
    wall_ns = (clock or Clocks()).wall_ns
    return Sink(config, encoder or LineEncoder(), credentials, ttl=ttl, clock=wall_ns)


def sink_app(
    clock: Clocks | None = None, http: dict[str, str] | None = None, **sink: Any
) -> tuple[web.Application, Sink]:
    """A small app with only the sink's routes (as the server builds it: no auto inflating)."""
    app = web.Application(handler_args={"auto_decompress": False})
    sink_ = make_sink(clock, http, **sink)
    setup_sink(app, sink_)
    return app, sink_


def served(sink: Sink) -> list[ParsedLine]:
    """What /metrics serves of the sink: its metrics through its encoder, read back."""
    return parse_lines(sink.encoder.encode_all(sink.metrics()).decode())


def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """A gzip member of `size` zero bytes, built from one compressed 16 MiB block repeated."""
    block = b"\0" * (16 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # After a full flush the compressor forgets its history, so equal input
    # compresses to equal bytes: compress twice, repeat the second result.
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // len(block)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = compressor.flush(zlib.Z_FINISH) + struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + again * (count - 1) + trailer


# aiohttp inflates request bodies itself unless its server says otherwise: test both.
INFLATERS = pytest.mark.parametrize(
    "auto_decompress", [True, False], ids=["aiohttp-inflates", "sink-inflates"]
)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """One gzip bomb for the module (building it takes most of a second)."""
    return gzip_bomb()


# --- round trip -----------------------------------------------------------------------


async def test_pushed_lines_reappear_on_metrics_with_their_types(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    body = 'vm,host=a\\ b,app=blog int=42i,float=1.5,whole=2.0,flag=true,text="x \\"y\\""\n'
    response = await client.post("/telegraf", data=body + "vm,host=c int=-1i 123\n")
    assert response.status == 204
    assert await response.read() == b""
    lines = {line.tags["host"]: line for line in served(sink)}
    assert lines["a b"].tags == {"host": "a b", "app": "blog"}
    assert lines["a b"].fields == {
        "int": 42,
        "float": 1.5,
        "whole": 2.0,
        "flag": True,
        "text": 'x "y"',
    }
    assert [type(v) for v in lines["a b"].fields.values()] == [int, float, float, bool, str]
    assert lines["a b"].time_ns == T0  # no timestamp: the arrival time
    assert lines["c"].time_ns == 123
    assert len(sink.store) == 2


async def test_status_metric_counts_the_sink(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    await client.post("/telegraf", data="a v=1\nb v=2\n")
    status = sink.status_metric(T0)
    assert (status.measurement, status.tags, status.time_ns) == ("telemon_sink", {}, T0)
    assert status.fields == {
        "up": 1,
        "series": 2,
        "writes": 1,
        "lines": 2,
        "refused_lines": 0,
        "refused_bodies": 0,
        "refused_type_conflict": 0,
        "refused_reserved": 0,
        "refused_time": 0,
        "refused_max_series": 0,
        "refused_max_bytes": 0,
        "refused_too_large": 0,
        "refused_control": 0,
        "refused_name": 0,
        "refused_duplicate_tags": 0,
        "refused_unsigned": 0,
        "refused_string_length": 0,
        "refused_parse": 0,
        "refused_invalid": 0,
        "bytes": sink.store.bytes,
        "writes_abandoned": 0,
    }
    assert sink.store.bytes > 0
    assert all(type(value) is int for value in status.fields.values())


async def test_fields_merge_per_series_newest_timestamp_wins(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    body = "m,h=a x=1,y=1 200\nm,h=a x=2 100\nm,h=a z=3 150\nm,h=a y=4 200\n"
    assert (await client.post("/telegraf", data=body)).status == 204
    [line] = served(sink)
    assert line.fields == {"x": 1.0, "y": 4.0, "z": 3.0}
    assert line.time_ns == 200


async def test_tag_order_does_not_make_a_new_series(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    await client.post("/telegraf", data="m,a=1,b=2 x=1 1\nm,b=2,a=1 y=2 2\n")
    assert len(sink.store) == 1


async def test_raw_newline_inside_a_string_field_survives(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    body = 'log,h=a msg="first\nsecond",n=1i 5\nnext v=1 6\n'
    assert (await client.post("/telegraf", data=body)).status == 204
    lines = {line.measurement: line for line in served(sink)}
    assert lines["log"].fields == {"msg": "first\nsecond", "n": 1}
    assert lines["next"].fields == {"v": 1.0}


async def test_put_works_and_other_methods_are_405(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    assert (await client.put("/write", data="m v=1\n")).status == 204
    assert len(sink.store) == 1
    for method in ("GET", "DELETE", "PATCH"):
        response = await client.request(method, "/telegraf")
        assert response.status == 405, method
        assert set(response.headers["Allow"].split(",")) == {"POST", "PUT"}


async def test_every_default_path_accepts_writes(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    for number, path in enumerate(("/telegraf", "/write", "/api/v2/write")):
        assert (await client.post(path, data=f"m{number} v=1\n")).status == 204
    assert len(sink.store) == 3


# --- bad bodies -----------------------------------------------------------------------


async def test_a_bad_line_is_400_naming_it_and_the_good_lines_are_kept(
    aiohttp_client: Any,
) -> None:
    """As InfluxDB does: a partial write, the bad lines named, `dropped=0` (not counted)."""
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/telegraf", data="good v=1\nalso v=2\nbad v=\nlater v=4\n")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error == (
        "partial write: unable to parse 'bad v=': expected field value (line 3, column 7) dropped=0"
    )
    assert response.headers["X-Influxdb-Error"] == error
    assert {line.measurement for line in served(sink)} == {"good", "also", "later"}


async def test_a_body_of_bad_lines_only_is_400_without_partial_write(
    aiohttp_client: Any,
) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/write", data="bad v=\n\nworse\n")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.split("\n") == [
        "unable to parse 'bad v=': expected field value (line 1, column 7)",
        "unable to parse 'worse': expected fields (line 3, column 6)",
    ]
    assert response.headers["X-Influxdb-Error"] == (
        "unable to parse 'bad v=': expected field value (line 1, column 7) (and 1 more)"
    )
    assert len(sink.store) == 0
    assert sink.refused["parse"] == 2


HUGE = "9" * 5000  # past int()'s 4300-digit limit


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (f"m f={HUGE}i", "integer out of range (line 2, column 5)"),
        (f"m f={HUGE}u", f"{UNSIGNED_OFF} (line 2, column 5)"),  # uint_support is off
        (f"m f=1 {HUGE}", f"{TIME_OUTSIDE_RANGE} (line 2, column 7)"),
        (f"m f={'9' * 400}", "float out of range (line 2, column 5)"),
    ],
    ids=["int", "uint", "timestamp", "float"],
)
async def test_a_huge_number_is_400_naming_its_place_without_a_traceback(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture, line: str, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/write", data=f"ok v=1\n{line}\n")
    assert response.status == 400
    text = await response.text()
    assert where in text
    assert len(text) < 500  # the line is quoted cut short, not echoed whole
    assert [line.measurement for line in served(sink)] == ["ok"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


async def test_invalid_utf8_is_400_naming_its_place(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/telegraf", data=b'a v=1\nb s="\xff"\n')
    assert response.status == 400
    assert "line 2, column 6: invalid UTF-8" in await response.text()
    assert len(sink.store) == 0


async def test_plain_body_past_max_body_size_is_413(aiohttp_client: Any) -> None:
    app, sink = sink_app(max_body_size=1000)
    client = await aiohttp_client(app)
    assert (await client.post("/telegraf", data="m v=1\n" * 166)).status == 204  # 996 bytes
    response = await client.post("/telegraf", data="n v=1\n" * 200)
    assert response.status == 413
    assert len(sink.store) == 1


async def test_chunked_body_past_max_body_size_is_413(aiohttp_client: Any) -> None:
    """Without Content-Length the bound holds while reading."""
    app, sink = sink_app(max_body_size=1000)
    client = await aiohttp_client(app)

    async def chunks() -> Any:
        for _ in range(300):  # 1800 bytes
            yield b"m v=1\n"

    response = await client.post("/telegraf", data=chunks())
    assert response.status == 413
    assert len(sink.store) == 0


# --- gzip ----------------------------------------------------------------------------


@INFLATERS
async def test_gzip_body(aiohttp_client: Any, auto_decompress: bool) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app, server_kwargs={"auto_decompress": auto_decompress})
    body = gzip.compress(b"m,h=a v=1i 10\n") + gzip.compress(b"m,h=b v=2i 20\n")  # two members
    headers = {"Content-Encoding": "gzip"}
    assert (await client.post("/telegraf", data=body, headers=headers)).status == 204
    assert {line.tags["h"]: line.fields["v"] for line in served(sink)} == {"a": 1, "b": 2}


@INFLATERS
async def test_gzip_bomb_is_413_without_memory_blowup(
    aiohttp_client: Any, bomb: bytes, auto_decompress: bool
) -> None:
    app, sink = sink_app(max_body_size=4 << 20)
    client = await aiohttp_client(app, server_kwargs={"auto_decompress": auto_decompress})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    response = await client.post("/telegraf", data=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status == 413
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100
    assert len(sink.store) == 0


async def test_gzip_inflating_past_max_body_size_is_413(aiohttp_client: Any) -> None:
    app, sink = sink_app(max_body_size=1000)
    client = await aiohttp_client(app, server_kwargs={"auto_decompress": False})
    body = gzip.compress(b"m v=1\n" * 200)  # 1200 bytes inflated, far fewer sent
    response = await client.post("/telegraf", data=body, headers={"Content-Encoding": "gzip"})
    assert response.status == 413


@INFLATERS
async def test_broken_gzip_is_400(aiohttp_client: Any, auto_decompress: bool) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app, server_kwargs={"auto_decompress": auto_decompress})
    body = gzip.compress(b"m v=1\n" * 50)[:-12]
    response = await client.post("/telegraf", data=body, headers={"Content-Encoding": "gzip"})
    assert response.status == 400
    assert len(sink.store) == 0


async def test_unknown_content_encoding_is_415(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app, server_kwargs={"auto_decompress": False})
    response = await client.post("/telegraf", data=b"x", headers={"Content-Encoding": "compress"})
    assert response.status == 415


def test_bounded_inflater_stops_a_bomb_in_bounded_memory(bomb: bytes) -> None:
    inflater = BoundedInflater(8 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            for start in range(0, len(bomb), 64 * 1024):
                inflater.feed(bomb[start : start + 64 * 1024])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


def test_bounded_inflater_allows_exactly_the_limit() -> None:
    data = b"m v=1\n" * 100
    inflater = BoundedInflater(len(data))
    assert inflater.feed(gzip.compress(data)) == data
    inflater.finish()
    with pytest.raises(BodyTooLarge):
        BoundedInflater(len(data) - 1).feed(gzip.compress(data))


# --- authentication -------------------------------------------------------------------


AUTH = {"username": "pharo", "password": "pw", "token": TOKEN}


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        pytest.param({}, {}, 401, id="none"),
        pytest.param({"Authorization": basic_auth("pharo", "pw")}, {}, 204, id="basic"),
        pytest.param({"Authorization": basic_auth("pharo", "no")}, {}, 401, id="basic-wrong"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, {}, 204, id="bearer"),
        pytest.param({"Authorization": f"Token {TOKEN}"}, {}, 204, id="token"),
        pytest.param({"Authorization": "Token nope"}, {}, 401, id="token-wrong"),
        pytest.param({}, {"u": "pharo", "p": "pw"}, 204, id="query-basic"),
        pytest.param({}, {"u": "pharo", "p": "no"}, 401, id="query-wrong"),
        pytest.param({}, {"u": "anyone", "p": TOKEN}, 204, id="query-token"),
        pytest.param({}, {"u": "pharo"}, 401, id="query-no-password"),
    ],
)
async def test_auth(
    aiohttp_client: Any, headers: dict[str, str], query: dict[str, str], status: int
) -> None:
    app, sink = sink_app(http=AUTH)
    client = await aiohttp_client(app)
    response = await client.post("/write", data="m v=1\n", headers=headers, params=query)
    assert response.status == status
    assert len(sink.store) == (1 if status == 204 else 0)
    if status == 401:
        assert "WWW-Authenticate" in response.headers
        assert await response.json() == {"error": "authorization failed"}
        assert (sink.writes, sink.up) == (0, True)  # nothing changes without credentials


# --- precision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "precision", "time_ns"),
    [
        ("/write", "", 1_700_000_000),
        ("/write", "n", 1_700_000_000),
        ("/write", "u", 1_700_000_000_000),
        ("/write", "ms", 1_700_000_000_000_000),
        ("/write", "s", 1_700_000_000_000_000_000),
        ("/api/v2/write", "ns", 1_700_000_000),
        ("/api/v2/write", "us", 1_700_000_000_000),
        ("/api/v2/write", "s", 1_700_000_000_000_000_000),
        ("/telegraf", "ms", 1_700_000_000_000_000),
    ],
)
async def test_precision(aiohttp_client: Any, path: str, precision: str, time_ns: int) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    params = {"precision": precision, "db": "telegraf", "rp": "autogen", "org": "o", "bucket": "b"}
    response = await client.post(path, data="m v=1 1700000000\n", params=params)
    assert response.status == 204
    [line] = served(sink)
    assert line.time_ns == time_ns


async def test_unknown_precision_is_400(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/write", data="m v=1 1\n", params={"precision": "h"})
    assert response.status == 400
    assert "unknown precision 'h'" in await response.text()
    assert len(sink.store) == 0


async def test_timestamp_overflowing_with_precision_is_400(aiohttp_client: Any) -> None:
    app, sink = sink_app()
    client = await aiohttp_client(app)
    response = await client.post("/write", data="m v=1 9999999999999\n", params={"precision": "s"})
    assert response.status == 400
    assert TIME_OUTSIDE_RANGE in await response.text()


# --- expiry and the series cap ----------------------------------------------------------


async def test_series_expire_after_ttl(aiohttp_client: Any) -> None:
    clock = Clocks()
    app, sink = sink_app(clock, ttl="30s")
    client = await aiohttp_client(app)
    await client.post("/telegraf", data="old v=1 1\nboth a=1 1\n")
    clock.advance(20)
    await client.post("/telegraf", data="both b=2 2\n")
    assert {line.measurement for line in served(sink)} == {"old", "both"}
    clock.advance(10)  # 30s after the first write
    [line] = served(sink)
    assert (line.measurement, line.fields) == ("both", {"b": 2.0})  # field a expired too
    clock.advance(20)
    assert served(sink) == []
    assert len(sink.store) == 0


async def test_series_cap_refuses_new_series_with_503(aiohttp_client: Any) -> None:
    clock = Clocks()
    app, sink = sink_app(clock, ttl="10s", max_series=2)
    client = await aiohttp_client(app)
    response = await client.post("/telegraf", data="a v=1\nb v=1\nc v=1\n")
    assert response.status == 503
    assert response.headers["Retry-After"] == "10"
    assert "1 lines of new series dropped, 2 kept" in await response.text()
    assert {line.measurement for line in served(sink)} == {"a", "b"}
    assert (await client.post("/telegraf", data="a v=2\n")).status == 204  # updates still go in
    clock.advance(5)
    await client.post("/telegraf", data="a v=3\n")
    clock.advance(5)  # b expires, a does not
    assert (await client.post("/telegraf", data="c v=1\n")).status == 204
    assert {line.measurement for line in served(sink)} == {"a", "c"}
    assert sink.refused_lines == 1


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"paths": ["write"]}, ("sink.paths.0", "must start with '/'")),
        ({"paths": ["/healthz"]}, ("sink.paths.0", "must start with '/'")),
        ({"paths": []}, ("sink.paths", "list at least one path")),
        ({"paths": ["/a", "/a"]}, ("sink.paths", "paths must be distinct")),
        ({"max_series": 0}, ("sink.max_series", "greater than 0")),
        ({"ttl": "0s"}, ("sink.ttl", "positive")),
        ({"enabled": True, "paths": ["/metrics"]}, ("", "sink.paths: '/metrics' is already")),
    ],
)
def test_config_errors(sink: dict[str, Any], expected: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sink": sink})
    [(key, message)] = info.value.details
    assert (key, expected[1] in message) == (expected[0], True), message


def test_config_path_clash_matters_only_when_enabled() -> None:
    config = parse_config({"http": {"path": "/write"}})
    assert config.sink == SinkConfig()


# --- an InfluxDB client pointing at telemon ---------------------------------------------


async def test_influxdb_client_writes_to_api_v2_write(aiohttp_client: Any) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    app, sink = sink_app(http={"token": TOKEN})
    client = await aiohttp_client(app)
    url = str(client.make_url("/")).rstrip("/")

    def write() -> None:
        with InfluxDBClient(url=url, token=TOKEN, org="o", enable_gzip=True) as influx:
            api = influx.write_api(write_options=SYNCHRONOUS)
            point = (
                Point("pharo")
                .tag("image", "blog one")
                .field("uptime", 12)
                .field("load", 0.5)
                .field("note", "ok\nfine")
                .time(1_700_000_000_123, WritePrecision.MS)
            )
            api.write(bucket="b", record=point, write_precision=WritePrecision.MS)
            api.write(bucket="b", record="pharo,image=two uptime=3i 1700000000")

    # The client blocks: run it off the loop that serves it.
    await asyncio.to_thread(write)
    lines = {line.tags["image"]: line for line in served(sink)}
    assert lines["blog one"].fields == {"uptime": 12, "load": 0.5, "note": "ok\nfine"}
    assert lines["blog one"].time_ns == 1_700_000_000_123_000_000
    assert lines["two"].time_ns == 1_700_000_000


# --- with the full app (telemon.server.create_app around an Agent) ------------------------
# These need more than the sink: the lead re-points them when the Agent settles.


async def test_disabled_sink_has_no_routes(aiohttp_client: Any) -> None:
    from telemon.server import create_app

    client = await aiohttp_client(create_app(parse_config({"inputs": {}})))
    assert (await client.post("/telegraf", data="m v=1\n")).status == 404


async def test_metrics_still_needs_credentials_when_the_sink_is_open(aiohttp_client: Any) -> None:
    from telemon.server import create_app

    config = parse_config({"inputs": {}, "http": {"token": TOKEN}, "sink": {"enabled": True}})
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", params={"p": TOKEN})).status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/metrics", headers=bearer)).status == 200
    assert (await client.post("/write", data="m v=1\n", params={"p": TOKEN})).status == 204


async def test_pushed_lines_and_the_sink_status_are_served_on_metrics(aiohttp_client: Any) -> None:
    from telemon.server import create_app

    config = parse_config({"inputs": {}, "sink": {"enabled": True}})
    client = await aiohttp_client(create_app(config))
    assert (await client.post("/telegraf", data="vm,host=a v=1i 5\n")).status == 204
    response = await client.get("/metrics")
    lines = {line.measurement: line for line in parse_lines(await response.text())}
    assert (lines["vm"].fields, lines["vm"].time_ns) == ({"v": 1}, 5)
    assert lines["telemon_sink"].fields["lines"] == 1


def test_sink_ttl_defaults_to_twice_the_agent_interval() -> None:
    from telemon.agent import Agent

    config = parse_config({"inputs": {}, "agent": {"interval": "15s"}, "sink": {"enabled": True}})
    sink = Agent(config).sink
    assert sink is not None
    assert sink.store.ttl_ns == 30_000_000_000
