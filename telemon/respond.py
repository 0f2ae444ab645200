"""Building the HTTP response for a line-protocol body (shared by all handlers)."""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

__all__ = ["accepts_gzip", "gzip_bytes", "line_protocol_response"]

_GZIP_MIN_BYTES = 1024


def accepts_gzip(request: web.BaseRequest) -> bool:
    """True when the client's Accept-Encoding allows gzip (and not with q=0)."""
    for item in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def gzip_bytes(body: bytes) -> bytes:
    """A single gzip member; level 5 trades little size for much less CPU."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def line_protocol_response(
    request: web.BaseRequest, body: bytes, *, gzip: bool = True
) -> web.Response:
    """200 text/plain with `body`, gzipped when the client allows it."""
    headers: dict[str, str] = {hdrs.VARY: hdrs.ACCEPT_ENCODING}
    if gzip and len(body) >= _GZIP_MIN_BYTES and accepts_gzip(request):
        body = gzip_bytes(body)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
    return web.Response(body=body, content_type="text/plain", charset="utf-8", headers=headers)
