"""Misbehaviour on demand: what a stuck image, a broken proxy or a bug answers."""

from __future__ import annotations

import asyncio
import random
from contextlib import suppress

from aiohttp import web

__all__ = ["FAULTS", "deliver", "error_page", "pause"]

FAULTS = (
    "none", "hang", "slow", "500", "truncate", "garbage", "html",
    "huge", "wrongtype", "empty", "restart",
)
"""`none` serves normally; `restart` restarts the VM first, then serves normally."""

_POLL_S = 0.25


async def pause(request: web.BaseRequest, stopping: asyncio.Event, seconds: float | None) -> bool:
    """Wait `seconds` (None: forever); False as soon as the client left or the app stops."""
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    while not stopping.is_set():
        # aiohttp does not cancel a handler whose client went away: notice it here.
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        step = _POLL_S if deadline is None else min(_POLL_S, deadline - loop.time())
        if step <= 0:
            return True
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), step)
    return False


def error_page() -> web.Response:
    """500 with an HTML page, as Zinc answers an unhandled error."""
    return web.Response(status=500, text=_ERROR_PAGE, content_type="text/html")


async def deliver(
    request: web.BaseRequest,
    fault: str,
    body: bytes,
    content_type: str,
    *,
    huge_size: int,
    seed: str,
) -> web.StreamResponse:
    """`body` as `content_type`, spoilt the way `fault` says (other faults: as is)."""
    if fault == "truncate":
        return await _truncated(request, body, content_type)
    if fault == "garbage":
        body = random.Random(seed).randbytes(max(len(body), 64))
    elif fault == "html":
        body, content_type = _LOGIN_PAGE.encode(), "text/html"
    elif fault == "huge":
        # Blank lines keep it valid JSON or line protocol, merely far too big.
        body += b"\n" * max(0, huge_size - len(body))
    elif fault == "wrongtype":
        content_type = "text/html"
    elif fault == "empty":
        body = b""
    return web.Response(body=body, content_type=content_type, charset="utf-8")


async def _truncated(
    request: web.BaseRequest, body: bytes, content_type: str
) -> web.StreamResponse:
    """Announce the whole body, send half of it, then close the connection."""
    response = web.StreamResponse()
    response.content_type = content_type
    response.charset = "utf-8"
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return response


_ERROR_PAGE = """<html><head><title>Internal Server Error</title></head>
<body><h1>Internal Server Error</h1>
<p>ZeroDivide: Tried to divide 42 by zero</p>
<hr><p><small>Zinc HTTP Components 1.0 (Pharo/12.0)</small></p></body></html>
"""

_LOGIN_PAGE = """<!doctype html>
<html><head><title>Sign in</title></head>
<body><form method="post" action="/login"><h1>Please sign in</h1>
<input name="username"><input name="password" type="password">
<button>Sign in</button></form></body></html>
"""
