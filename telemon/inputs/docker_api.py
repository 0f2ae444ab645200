"""A small Docker Engine API client on aiohttp (no Docker SDK).

Speaks to `unix:///var/run/docker.sock`, `tcp://host:port` or an
`http(s)://` URL; negotiates the API version with `/_ping` and then uses
versioned paths, at least 1.41 where the engine has it, because only 1.41+
honours `one-shot=true` (a stats call that answers at once instead of after
the daemon's two 1 s samples). Every body is read with a size bound; every
failure is an `InputError` with a one-line reason.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from telemon.inputs.base import InputError, read_bounded
from telemon.schema import display_url

__all__ = ["EngineClient", "EngineVersion", "NotFound", "check_endpoint"]

# The newest API version telemon knows; a newer engine is spoken to in this one.
MAX_API_VERSION = (1, 45)
ONE_SHOT_API_VERSION = (1, 41)


class NotFound(InputError):
    """The engine answered 404: the container went away meanwhile."""


def check_endpoint(endpoint: str) -> str:
    """Validate an endpoint (for the config model); returns it unchanged."""
    parts = urlsplit(endpoint)
    if parts.scheme == "unix":
        # unix://tmp/x.sock would read "tmp" as a host and connect to /x.sock.
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(
                f"{display_url(endpoint)!r}: a unix endpoint needs an absolute socket path"
            )
    elif parts.scheme in ("tcp", "http", "https"):
        if not parts.hostname:
            raise ValueError(f"{display_url(endpoint)!r} has no host")
    else:
        raise ValueError(
            f"{display_url(endpoint)!r}: use unix:///path, tcp://host:port or http(s)://host:port"
        )
    return endpoint


@dataclass(frozen=True, slots=True)
class EngineVersion:
    """What `/_ping` told: the API version to use and whether it is Podman."""

    api: tuple[int, int]
    podman: bool

    @property
    def prefix(self) -> str:
        """The path prefix, e.g. `/v1.43`."""
        return f"/v{self.api[0]}.{self.api[1]}"

    @property
    def one_shot(self) -> bool:
        """Whether `one-shot=true` is honoured at this version."""
        return self.api >= ONE_SHOT_API_VERSION


def _parse_version(text: str | None) -> tuple[int, int] | None:
    try:
        major, minor = (text or "").strip().split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


class EngineClient:
    """HTTP to one engine, with its own connection pool."""

    def __init__(
        self,
        endpoint: str,
        *,
        max_body_size: int,
        connections: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = display_url(endpoint)  # for messages: never the password
        self.max_body_size = max_body_size
        self._connections = connections
        self._tls = tls
        parts = urlsplit(endpoint)
        self._socket = parts.path if parts.scheme == "unix" else None
        if parts.scheme == "unix":
            self._base = "http://docker"
        else:
            # tcp:// with TLS settings is Docker's TLS port (2376), as in the docker CLI.
            scheme = "https" if parts.scheme == "https" or tls is not None else "http"
            self._base = f"{scheme}://{parts.netloc}"
        self._session: aiohttp.ClientSession | None = None
        self.version: EngineVersion | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._socket is not None:
                connector = aiohttp.UnixConnector(path=self._socket, limit=self._connections)
            else:
                connector = aiohttp.TCPConnector(
                    limit=self._connections, ssl=self._tls if self._tls is not None else True
                )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def negotiate(self, timeout: float | None = None) -> EngineVersion:
        """Ask `/_ping` for the engine's API version (once; again after a failure)."""
        if self.version is not None:
            return self.version
        async with self._request("/_ping", timeout=timeout) as response:
            if response.status != 200:
                raise InputError(
                    f"{self.endpoint} does not look like a Docker engine: "
                    f"/_ping answered HTTP {response.status}"
                )
            server = _parse_version(response.headers.get("Api-Version"))
            podman = "Libpod-API-Version" in response.headers
        if server is None:
            raise InputError(f"{self.endpoint} did not name its API version in /_ping")
        self.version = EngineVersion(min(server, MAX_API_VERSION), podman)
        return self.version

    async def get_json(
        self, path: str, params: dict[str, str] | None = None, timeout: float | None = None
    ) -> Any:
        """GET a versioned path and decode its JSON; NotFound on 404."""
        try:
            version = await self.negotiate(timeout)
            async with self._request(version.prefix + path, params, timeout) as response:
                await self._check(response, path)
                body = await read_bounded(response, self.max_body_size)
        except InputError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            self.version = None  # the engine may have restarted or been upgraded
            raise InputError(self._connection_error(exc)) from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            raise InputError(f"{path}: the engine answered something that is not JSON") from None

    def _request(
        self, path: str, params: dict[str, str] | None = None, timeout: float | None = None
    ) -> Any:
        return self._open().get(
            self._base + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        )

    async def _check(self, response: aiohttp.ClientResponse, path: str) -> None:
        if response.status == 200:
            return
        message = await _error_message(response)
        if response.status == 404:
            raise NotFound(message)
        raise InputError(f"{path}: HTTP {response.status}: {message}")

    def _connection_error(self, exc: BaseException) -> str:
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        if isinstance(cause, FileNotFoundError):
            return f"no Docker engine socket at {self._socket} (engine not running? not mounted?)"
        if isinstance(cause, PermissionError):
            return (
                f"permission denied on {self._socket}: run telemon in the docker group "
                "(in a container: group_add with the socket's group id)"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = getattr(cause, "strerror", None) or cause
            return f"cannot connect to the Docker engine at {self.endpoint}: {reason}"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return f"the Docker engine at {self.endpoint} closed the connection"
        return f"Docker engine at {self.endpoint}: {type(exc).__name__}: {exc}"

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The engine's `{"message": ...}`, or the status reason."""
    try:
        body = await read_bounded(response, 64 * 1024)
        message = json.loads(body).get("message")
    except (InputError, ValueError, RecursionError, AttributeError, aiohttp.ClientError):
        message = None
    text = message if isinstance(message, str) and message else (response.reason or "")
    return " ".join(text.split())[:300]
