"""Basic and bearer authentication for the HTTP endpoints (constant time)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

__all__ = ["Credentials", "auth_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Credentials:
    """What a request must carry; nothing configured means open access."""

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self._basic = (
            (username.encode(), password.encode())
            if username is not None and password is not None
            else None
        )
        self._token = token.encode() if token is not None else None

    @property
    def required(self) -> bool:
        """True when any credential is configured."""
        return self._basic is not None or self._token is not None

    def allows(self, authorization: str) -> bool:
        """True when the Authorization header value matches a configured credential."""
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self._token is not None:
            # aiohttp keeps undecodable header bytes as surrogates: give them back as bytes.
            return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), self._token)
        if scheme == "basic" and self._basic is not None:
            return self._basic_matches(value)
        return False

    def challenge(self) -> str:
        """The WWW-Authenticate header for a 401."""
        return 'Basic realm="telemon"' if self._basic is not None else 'Bearer realm="telemon"'

    def _basic_matches(self, value: str) -> bool:
        assert self._basic is not None
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = decoded.partition(b":")
        # Both comparisons always run, so timing does not tell which failed.
        user_ok = hmac.compare_digest(user, self._basic[0])
        password_ok = hmac.compare_digest(password, self._basic[1])
        return user_ok and password_ok


def auth_middleware(credentials: Credentials, open_paths: frozenset[str]) -> Middleware:
    """Answers 401 for requests without valid credentials, except on `open_paths`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if credentials.required and request.path not in open_paths:
            if not credentials.allows(request.headers.get(hdrs.AUTHORIZATION, "")):
                raise web.HTTPUnauthorized(
                    headers={hdrs.WWW_AUTHENTICATE: credentials.challenge()},
                    text="401: unauthorized\n",
                )
        return await handler(request)

    return middleware
