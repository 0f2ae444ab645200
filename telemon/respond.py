"""Building the HTTP response for a line-protocol body (shared by all handlers)."""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

__all__ = ["accepts_gzip", "gzip_bytes", "line_protocol_response"]

_GZIP_MIN_BYTES = 1024
# Vary on Accept too: /metrics answers Prometheus text when Accept asks for it.
_PLAIN_HEADERS = {
    hdrs.CONTENT_TYPE: "text/plain; charset=utf-8",
    hdrs.VARY: "Accept, Accept-Encoding",
}
_GZIP_HEADERS = {**_PLAIN_HEADERS, hdrs.CONTENT_ENCODING: "gzip"}


def accepts_gzip(request: web.BaseRequest) -> bool:
    """True when Accept-Encoding allows gzip; a named coding beats `*` (RFC 9110)."""
    header = request.headers.get(hdrs.ACCEPT_ENCODING)
    if not header:
        return False
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.partition(";")
        weights[coding.strip().lower()] = _quality(params)
    weight = weights.get("gzip", weights.get("*", 0.0))
    return weight > 0


def _quality(params: str) -> float:
    name, _, value = params.replace(" ", "").partition("=")
    if name.lower() != "q":
        return 1.0
    try:
        return float(value)
    except ValueError:
        return 0.0


def gzip_bytes(body: bytes) -> bytes:
    """A single gzip member; level 5 trades little size for much less CPU."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def line_protocol_response(
    request: web.BaseRequest, body: bytes, *, gzip: bool = True
) -> web.Response:
    """200 text/plain with `body`, gzipped when the client allows it."""
    headers = _PLAIN_HEADERS
    if gzip and len(body) >= _GZIP_MIN_BYTES and accepts_gzip(request):
        body = gzip_bytes(body)
        headers = _GZIP_HEADERS
    return web.Response(body=body, headers=headers)
