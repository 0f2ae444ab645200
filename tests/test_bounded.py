"""The bounded body readers: never more than the limit kept, whatever the sender does."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from telemon.bounded import CHUNK, read_at_most, read_bounded


class TooLarge(Exception):
    pass


def stream_of(*parts: bytes) -> asyncio.StreamReader:
    """A finished stream delivering `parts` (asyncio's reader reads like aiohttp's)."""
    stream = asyncio.StreamReader()
    for part in parts:
        stream.feed_data(part)
    stream.feed_eof()
    return stream


@pytest.mark.parametrize(
    ("parts", "limit", "expected"),
    [
        pytest.param([b"abc", b"def"], 10, b"abcdef", id="shorter"),
        pytest.param([b"abc", b"def"], 6, b"abcdef", id="exactly"),
        pytest.param([b"abc", b"def"], 4, b"abcd", id="longer"),
        pytest.param([], 4, b"", id="empty"),
        pytest.param([b"x" * (3 * CHUNK)], CHUNK + 1, b"x" * (CHUNK + 1), id="many-chunks"),
    ],
)
async def test_read_at_most_keeps_the_first_bytes(
    parts: list[bytes], limit: int, expected: bytes
) -> None:
    stream = stream_of(*parts)
    assert await read_at_most(stream, limit) == expected
    assert await stream.read() == b"".join(parts)[len(expected) :]  # the rest is left unread


@pytest.mark.parametrize(
    ("parts", "limit"),
    [
        pytest.param([b"abc", b"def"], 6, id="exactly"),
        pytest.param([b"abc"], 100, id="shorter"),
        pytest.param([], 0, id="empty"),
        pytest.param([b"y" * (2 * CHUNK + 5)], 2 * CHUNK + 5, id="many-chunks"),
    ],
)
async def test_read_bounded_answers_a_body_within_the_limit(parts: list[bytes], limit: int) -> None:
    assert await read_bounded(stream_of(*parts), limit, TooLarge) == b"".join(parts)


@pytest.mark.parametrize(
    ("parts", "limit"),
    [
        pytest.param([b"abc", b"def"], 5, id="one-byte-over"),
        pytest.param([b"x"], 0, id="zero-limit"),
        pytest.param([b"z" * (4 * CHUNK)], CHUNK, id="many-chunks"),
    ],
)
async def test_read_bounded_raises_the_callers_error_past_the_limit(
    parts: list[bytes], limit: int
) -> None:
    with pytest.raises(TooLarge):
        await read_bounded(stream_of(*parts), limit, TooLarge)


async def test_read_bounded_stops_reading_at_the_limit() -> None:
    """An endless sender costs one chunk past the limit, not its whole body."""
    stream = asyncio.StreamReader()
    stream.feed_data(b"a" * (10 * CHUNK))  # not finished: the sender goes on
    with pytest.raises(TooLarge):
        async with asyncio.timeout(60):  # a reader waiting for the end would hang here
            await read_bounded(stream, CHUNK, TooLarge)
    assert len(await stream.read(20 * CHUNK)) >= 8 * CHUNK


async def test_read_bounded_limits_what_decode_gives() -> None:
    """A small gzip body inflating past the limit is refused: the limit is on the inflated size."""
    body = b"m v=1i\n" * 100_000
    packed = zlib.compress(body)
    assert len(packed) < 10_000

    def inflater() -> Any:
        return zlib.decompressobj().decompress

    assert await read_bounded(stream_of(packed), len(body), TooLarge, decode=inflater()) == body
    with pytest.raises(TooLarge):
        await read_bounded(stream_of(packed), len(body) - 1, TooLarge, decode=inflater())


async def test_with_a_real_http_response(aiohttp_server: Any) -> None:
    """aiohttp's StreamReader, chunked from a real server: the same answers."""
    body = bytes(range(256)) * 1000

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(body), 7000):
            await response.write(body[start : start + 7000])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/")) as response:
            assert await read_at_most(response.content, 1000) == body[:1000]
        async with session.get(server.make_url("/")) as response:
            assert await read_bounded(response.content, len(body), TooLarge) == body
        async with session.get(server.make_url("/")) as response:
            with pytest.raises(TooLarge):
                await read_bounded(response.content, len(body) - 1, TooLarge)
