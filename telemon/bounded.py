"""Reading an HTTP body without trusting its size: the one bounded reader.

Both ends of telemon read bodies they did not write (a Pharo image's or an
engine's answer, an InfluxDB error, a sink client's request): each is read
in chunks and never kept past a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["CHUNK", "ByteStream", "read_at_most", "read_bounded"]

CHUNK = 64 * 1024


class ByteStream(Protocol):
    """What is read: `aiohttp.StreamReader` (a response's or a request's `.content`)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes; b"" at the end."""
        ...


async def read_at_most(stream: ByteStream, limit: int) -> bytes:
    """The first `limit` bytes of the body (all of it if shorter); the rest is left unread."""
    chunks, size = [], 0
    while size < limit:
        chunk = await stream.read(min(limit - size, CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def read_bounded(
    stream: ByteStream,
    limit: int,
    too_large: Callable[[], Exception],
    *,
    decode: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """The whole body, or `too_large()` raised once it passes `limit` bytes.

    With `decode` (an inflater's feed, say), the limit bounds what it gives,
    not what was received: a small gzip body may inflate past any limit.
    """
    chunks, size = [], 0
    while chunk := await stream.read(CHUNK):
        data = decode(chunk) if decode is not None else chunk
        size += len(data)
        if size > limit:
            raise too_large()
        chunks.append(data)
    return b"".join(chunks)
