"""The sink under abuse (issue 15, items 2, 5 and 6): bounded memory, bounded work.

Memory bounds are asserted by structure (the store's byte count, refusals,
what one write holds), never by timing; the timing and RSS figures are in
bench/abuse_sink.py. HTTP tests talk to a real aiohttp server on loopback.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tracemalloc
from typing import Any

import pytest
from aiohttp import web
from helpers import Clocks, wait_until

from telemon.auth import Credentials
from telemon.config import ConfigError, parse_config
from telemon.lineprotocol import LineEncoder
from telemon.lpparse import Limits, ParsedLine, iter_lines_partial, parse_lines
from telemon.server import AGENT_KEY, create_app
from telemon.sink import MIB, Sink, SinkConfig, decode_text, setup_sink

TTL_S = 20.0


def make_sink(clock: Clocks | None = None, **settings: Any) -> Sink:
    config = SinkConfig(enabled=True, **settings)
    wall_ns = (clock or Clocks()).wall_ns
    return Sink(config, LineEncoder(), Credentials(), ttl=TTL_S, clock=wall_ns)


def sink_app(sink: Sink) -> web.Application:
    app = web.Application(handler_args={"auto_decompress": False})
    setup_sink(app, sink)
    return app


def served(sink: Sink) -> list[ParsedLine]:
    """What a scrape serves of the sink, read back."""
    return parse_lines(sink.serve().decode())


def lines(count: int, start: int = 0) -> str:
    return "".join(f"m,i={i} v={i}i\n" for i in range(start, start + count))


async def error_of(response: Any) -> str:
    text: str = (await response.json())["error"]
    assert response.headers["X-Influxdb-Error"] == " ".join(text.splitlines())
    return text


# --- item 6: control characters would merge series --------------------------------------


async def test_a_nul_in_a_tag_value_is_refused_and_cannot_merge_two_series(
    aiohttp_client: Any,
) -> None:
    """Was: both lines kept (204) and served as one series `nul,t=ab`."""
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    response = await client.post("/write", data="nul,t=a\x00b f=1i 5\nnul,t=ab f=2i 5\n")
    assert response.status == 400
    assert await error_of(response) == (
        "partial write: control character '\\x00' in tag value of line 'nul,t=a\\x00b':"
        " it would be written without it, as another series dropped=1"
    )
    assert [(line.tags, line.fields) for line in served(sink)] == [({"t": "ab"}, {"f": 2})]
    assert sink.refused["control"] == 1


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("m\x01 v=1", "measurement"),
        ("m,k\x1b=a v=1", "tag key"),
        ("m,k=a\x7f v=1", "tag value"),
        ("m f\x00=1", "field key"),
    ],
)
def test_every_name_with_a_control_character_is_refused(line: str, where: str) -> None:
    sink = make_sink()
    lines_, errors = parse_lines_with_defaults(line + "\nok v=1\n")
    result = sink.write(lines_, errors)
    assert result.refused == {"control": 1}
    assert result.first_refusal is not None and f" in {where} of line " in result.first_refusal
    assert [line.measurement for line in served(sink)] == ["ok"]


def test_control_characters_in_string_values_are_kept() -> None:
    """A string value is quoted: its control characters are written as they are."""
    sink = make_sink()
    result = sink.write(*parse_lines_with_defaults('m s="a\x00b\x1bc" 5\n'))
    assert result.refused == {}
    [line] = served(sink)
    assert line.fields == {"s": "a\x00b\x1bc"}


def parse_lines_with_defaults(text: str) -> tuple[list[ParsedLine], list[Any]]:
    """The body as the handler reads it, with the default limits."""
    config = SinkConfig()
    limits = Limits(config.max_line_bytes, config.max_fields_per_line)
    found: tuple[list[ParsedLine], list[Any]] = ([], [])
    for parsed, errors in iter_lines_partial(text, limits=limits):
        found[0].extend(parsed)
        found[1].extend(errors)
    return found


# --- item 5: lines past the limits are refused, naming them ---------------------------


async def test_a_line_past_max_line_bytes_is_400_naming_it_and_the_rest_is_kept(
    aiohttp_client: Any,
) -> None:
    sink = make_sink(max_line_bytes=100)
    client = await aiohttp_client(sink_app(sink))
    big = 'big s="' + "x" * 200 + '"'
    response = await client.post("/write", data=f"a v=1\n{big}\nb v=1\n")
    assert response.status == 400
    assert await error_of(response) == (
        f"partial write: unable to parse '{big[:200]}': line exceeds max_line_bytes (100)"
        " (line 2, column 1) dropped=0"
    )
    assert {line.measurement for line in served(sink)} == {"a", "b"}
    assert sink.refused["too_large"] == 1


def test_max_line_bytes_counts_utf8_bytes_and_lines_made_long_by_raw_newlines() -> None:
    sink = make_sink(max_line_bytes=40)
    body = (
        f'ascii s="{"e" * 30}"\n'  # 40 bytes: kept
        f'utf8 s="{"é" * 15}"\n'  # 24 characters, 39 bytes: kept
        f'more s="{"é" * 16}"\n'  # 26 characters, 41 bytes: refused
        'raw s="' + "line\n" * 10 + '"\nafter v=1\n'  # one line of 58 bytes over 11 lines
    ).encode()
    text, utf8 = decode_text(body)
    result = asyncio.run(sink.write_text(text, utf8=utf8))
    assert result.refused == {"too_large": 2}
    assert {line.measurement for line in served(sink)} == {"ascii", "utf8", "after"}


async def test_a_line_past_max_fields_per_line_is_400_naming_it(aiohttp_client: Any) -> None:
    sink = make_sink(max_fields_per_line=3)
    client = await aiohttp_client(sink_app(sink))
    response = await client.post("/write", data="ok a=1,b=2,c=3\nwide a=1,b=2,c=3,d=4\n")
    assert response.status == 400
    assert await error_of(response) == (
        "partial write: unable to parse 'wide a=1,b=2,c=3,d=4': line exceeds"
        " max_fields_per_line (3) (line 2, column 18) dropped=0"
    )
    assert [line.measurement for line in served(sink)] == ["ok"]


def test_a_line_too_long_is_refused_before_its_fields_exist() -> None:
    """One physical line of 800k fields (8.7 MB was seen): nothing of it is parsed."""
    text = "wide " + ",".join(f"f{i}=1" for i in range(200_000)) + "\n"
    tracemalloc.start()
    try:
        [(parsed, [error])] = list(iter_lines_partial(text, limits=Limits(max_line_bytes=MIB)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed == []
    assert error.reason == f"line exceeds max_line_bytes ({MIB})"
    assert peak < 100_000  # the error, not 200k fields


@pytest.mark.parametrize(
    "line",
    [
        'm s="{big}"',
        'm s="{escaped}"',
        "{big} v=1",
        "m,t={big} v=1",
        "m {big}=1",
    ],
    ids=["string", "escaped-string", "measurement", "tag-value", "field-key"],
)
def test_reading_a_long_line_takes_memory_in_proportion_to_it(line: str) -> None:
    """Was: a regex kept ~150 bytes of backtracking state per character (8 MiB: 1 GB)."""
    text = line.format(big="x" * MIB, escaped="\\\\" * (MIB // 2)) + "\n"
    tracemalloc.start()
    try:
        [(parsed, errors)] = list(iter_lines_partial(text, limits=Limits(2 * MIB)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (len(parsed), errors) == (1, [])
    assert peak < 8 * MIB  # a few copies of the 1 MiB name or value (was 150 MiB)


# --- item 2: the store is bounded by bytes too ------------------------------------------


def test_the_store_counts_its_bytes_and_gives_them_back_on_expiry() -> None:
    clock = Clocks()
    sink = make_sink(clock)
    sink.write(*parse_lines_with_defaults(lines(100)))
    assert len(sink.store) == 100
    served_bytes = len(sink.serve())
    assert served_bytes < sink.store.bytes < 100 * 2000
    clock.advance(TTL_S)
    assert sink.serve() == b""
    assert (len(sink.store), sink.store.bytes) == (0, 0)


async def test_max_bytes_refuses_new_series_with_503_and_keeps_updating_known_ones(
    aiohttp_client: Any,
) -> None:
    sink = make_sink(max_bytes=20_000)
    client = await aiohttp_client(sink_app(sink))
    response = await client.post("/write", data=lines(100))
    assert response.status == 503
    assert response.headers["Retry-After"] == "20"
    kept = len(sink.store)
    assert 0 < kept < 100
    assert await error_of(response) == (
        f"max_bytes (20000) reached: {100 - kept} lines of new series or fields dropped,"
        f" {kept} kept"
    )
    assert sink.store.bytes <= 20_000
    assert sink.refused["max_bytes"] == 100 - kept
    # Known fields of known series still update; new fields of them do not.
    assert (await client.post("/write", data="m,i=0 v=7i\n")).status == 204
    assert (await client.post("/write", data=f'm,i=0 w="{"x" * 2000}"\n')).status == 503
    assert sink.store.bytes <= 20_000


async def test_a_long_string_costs_no_memory(aiohttp_client: Any) -> None:
    """100 posts of one 8 MiB string took 835 MB: a string longer than the 64 KiB the
    encoder writes is now refused (never served cut), and nothing of it is kept."""
    sink = make_sink(max_line_bytes=2 * MIB)
    client = await aiohttp_client(sink_app(sink))
    for i in range(3):
        body = f'big,i={i} s="' + "x" * MIB + f'"\nsmall,i={i} s="ok"\n'
        assert (await client.post("/write", data=io.BytesIO(body.encode()))).status == 400
    assert len(sink.store) == 3  # the small lines of each body
    assert sink.store.bytes < 10_000


async def test_a_string_past_max_line_bytes_is_refused_whole(aiohttp_client: Any) -> None:
    sink = make_sink(max_line_bytes=MIB)
    client = await aiohttp_client(sink_app(sink))
    body = io.BytesIO(('big s="' + "x" * (2 * MIB) + '"\n').encode())
    response = await client.post("/write", data=body)
    assert response.status == 400
    assert f"line exceeds max_line_bytes ({MIB})" in await error_of(response)
    assert (len(sink.store), sink.store.bytes) == (0, 0)


# --- item 2: what one write holds --------------------------------------------------------


def test_a_write_holds_its_text_and_one_step_of_parsed_lines() -> None:
    """Was: every line of a body parsed into one list (1.5 M lines: ~500 MB)."""
    sink = make_sink()
    text = "m f=1i\n" * 20_000  # 140 kB; parsed whole, several MB
    tracemalloc.start()
    try:
        result = asyncio.run(sink.write_text(text, step=50))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.kept == 20_000
    assert peak < len(text) // 2


def test_blank_and_comment_lines_are_read_in_steps_too() -> None:
    """A body of 10 MiB of empty lines must not hold the event loop for one long step."""
    text = "\n" * 1000 + "# comment\n" * 1000 + "m v=1\n"
    batches = list(iter_lines_partial(text, batch=100))
    assert len(batches) == 21
    assert [len(parsed) for parsed, _ in batches] == [0] * 20 + [1]


def test_the_text_of_a_body_is_never_larger_than_the_body() -> None:
    """Decoded as UTF-8, one emoji in 1 MiB of ASCII makes the text 4 MiB."""
    body = b"m v=1\n" * (MIB // 6) + 'e,t=\U0001f600 s="é"\n'.encode()
    text, utf8 = decode_text(body)
    assert utf8 is True
    assert len(text) == len(body)
    assert sys.getsizeof(text) < 1.01 * len(body)


async def test_non_ascii_names_and_strings_are_read_as_utf8(aiohttp_client: Any) -> None:
    sink = make_sink()
    client = await aiohttp_client(sink_app(sink))
    body = 'mé,t=\U0001f600 s="ü\nß",n=1i 5\n'.encode()
    assert (await client.post("/write", data=body)).status == 204
    [line] = served(sink)
    assert line == ParsedLine("mé", {"t": "\U0001f600"}, {"s": "ü\nß", "n": 1}, 5)
    response = await client.post("/write", data=b'ok v=1\nm\xc3\xa9 s="\xe2\x82\xac\xff"\n')
    assert response.status == 400
    assert "line 2, column 11: invalid UTF-8" in await error_of(response)  # bytes


async def test_writes_past_max_concurrent_writes_are_503_with_retry_after(
    aiohttp_client: Any,
) -> None:
    sink = make_sink(max_concurrent_writes=1)
    client = await aiohttp_client(sink_app(sink))
    release = asyncio.Event()

    async def slow_body() -> Any:
        yield b"first v=1\n"
        await release.wait()
        yield b"second v=1\n"

    first = asyncio.create_task(client.post("/write", data=slow_body()))
    await wait_until(lambda: sink.active_writes == 1, what="the first write running")
    response = await client.post("/write", data="third v=1\n")
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert await error_of(response) == "too many concurrent writes (max_concurrent_writes is 1)"
    release.set()
    assert (await first).status == 204
    assert sink.active_writes == 0
    assert (await client.post("/write", data="third v=1\n")).status == 204
    assert {line.measurement for line in served(sink)} == {"first", "second", "third"}


async def test_a_write_stops_when_its_client_goes_away(aiohttp_server: Any) -> None:
    """Was: handlers kept admitting 10 MiB bodies long after their clients gave up."""
    sink = make_sink(max_series=1_000_000)
    server = await aiohttp_server(sink_app(sink))
    body = lines(150_000).encode()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = f"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    await wait_until(lambda: len(sink.store) > 0, what="the write admitting lines")
    writer.close()
    await wait_until(lambda: sink.active_writes == 0, what="the write to stop")
    assert sink.abandoned_writes == 1
    assert len(sink.store) < 150_000
    assert sink.status_metric(0).fields["writes_abandoned"] == 1


# --- item 5: scrapes serve what was encoded on arrival ----------------------------------


def test_series_are_encoded_when_they_arrive_not_at_each_scrape() -> None:
    sink = make_sink()
    stats = sink.encoder.stats
    sink.write(*parse_lines_with_defaults(lines(50)))
    assert stats.lines_written == 50
    first = sink.serve()
    for _ in range(3):
        assert sink.serve() == first
    assert stats.lines_written == 50  # scrapes encode nothing
    sink.write(*parse_lines_with_defaults("m,i=3 v=-3i\n"))
    assert stats.lines_written == 51  # only the series that changed
    assert b"m,i=3 v=-3i " in sink.serve()


def test_scrapes_between_two_changes_share_one_body() -> None:
    clock = Clocks()
    sink = make_sink(clock)
    sink.write(*parse_lines_with_defaults(lines(10)))
    first = sink.serve()
    assert sink.serve() is first
    sink.write(*parse_lines_with_defaults("m,i=3 v=-3i\n"))
    second = sink.serve()
    assert second is not first and b"m,i=3 v=-3i " in second
    clock.advance(TTL_S)
    assert sink.serve() == b""


def test_an_expired_field_leaves_the_served_line() -> None:
    clock = Clocks()
    sink = make_sink(clock)
    sink.write(*parse_lines_with_defaults("m a=1i 5\n"))
    clock.advance(10)
    sink.write(*parse_lines_with_defaults("m b=2i 6\n"))
    before = sink.store.bytes
    clock.advance(10)  # a arrived TTL ago
    assert served(sink) == [ParsedLine("m", {}, {"b": 2}, 6)]
    assert sink.store.bytes < before


def test_a_series_updated_since_it_was_queued_expires_ttl_after_its_update() -> None:
    clock = Clocks()
    sink = make_sink(clock)
    sink.write(*parse_lines_with_defaults("m a=1i 5\n"))
    clock.advance(TTL_S / 2)
    sink.write(*parse_lines_with_defaults("m a=2i 6\n"))
    clock.advance(TTL_S / 2)  # due as first queued: looked at, queued again
    assert served(sink) == [ParsedLine("m", {}, {"a": 2}, 6)]
    clock.advance(TTL_S / 2 - 1)
    assert len(served(sink)) == 1
    clock.advance(1)
    assert served(sink) == []
    assert (len(sink.store), sink.store.bytes) == (0, 0)


def test_a_scrape_never_waits_for_a_whole_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired series left after a bounded purge step are left out all the same."""
    monkeypatch.setattr("telemon.sink.PURGE_STEP", 10)
    clock = Clocks()
    sink = make_sink(clock)
    sink.write(*parse_lines_with_defaults(lines(100)))
    clock.advance(TTL_S / 2)
    sink.write(*parse_lines_with_defaults(lines(5, start=1000)))
    clock.advance(TTL_S / 2)  # the first 100 expired, the 5 not
    assert {line.tags["i"] for line in served(sink)} == {str(i) for i in range(1000, 1005)}
    assert len(sink.store) == 5  # met on the way: purged


def test_global_tags_are_encoded_into_the_lines_once() -> None:
    sink = make_sink()
    sink.write(*parse_lines_with_defaults("m,h=a v=1i 5\n"))
    assert sink.serve({"dc": "x", "h": "global"}) == b"m,dc=x,h=a v=1i 5\n"
    written = sink.encoder.stats.lines_written
    assert sink.serve({"dc": "x", "h": "global"}) == b"m,dc=x,h=a v=1i 5\n"
    assert sink.encoder.stats.lines_written == written
    [metric] = sink.served_metrics({"dc": "x", "h": "global"})
    assert metric.tags == {"dc": "x", "h": "a"}


async def test_an_abandoned_scrape_is_cancelled(aiohttp_server: Any) -> None:
    """Was: scrapes kept running after their clients gave up, piling up."""
    app = create_app(parse_config({"inputs": {}, "sink": {"enabled": True}}))
    agent = app[AGENT_KEY]
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_scrape() -> bytes:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    agent.scrape = slow_scrape  # type: ignore[method-assign]
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(started.wait(), 10)
    writer.close()
    await asyncio.wait_for(cancelled.wait(), 10)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["max_bytes", "max_concurrent_writes", "max_line_bytes", "max_fields_per_line"]
)
def test_limits_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"sink": {key: 0}})
    [(where, message)] = info.value.details
    assert where == f"sink.{key}"
    assert "greater than 0" in message


def test_default_limits() -> None:
    config = SinkConfig()
    assert (
        config.max_bytes,
        config.max_concurrent_writes,
        config.max_line_bytes,
        config.max_fields_per_line,
    ) == (256 * MIB, 4, MIB, 1000)
