"""`[[outputs.influxdb]]`: InfluxDB 1.x `/write` over HTTP."""

from __future__ import annotations

import base64
import gzip
import logging
import ssl

import aiohttp
from yarl import URL

from telemon.bounded import read_at_most
from telemon.outputs.base import WriteError, classify_status
from telemon.schema import display_url

__all__ = ["InfluxDBSender"]

_log = logging.getLogger("telemon.outputs")
# Of an error answer: enough for InfluxDB's JSON error, not a proxy's endless page.
MAX_ERROR_BODY = 64 * 1024
# InfluxDB 1.x names of the `[agent] precision` units.
V1_PRECISIONS = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


class InfluxDBSender:
    """Writes batches to one InfluxDB 1.x URL, creating the database first unless told not to."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str = "",
        username: str | None = None,
        password: str | None = None,
        precision: str = "ns",
        timeout: float = 5.0,
        gzip: bool = True,
        create_database: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = display_url(url)
        self.database = database
        base = URL(url.rstrip("/"))
        url_auth = aiohttp.BasicAuth.from_url(base)
        if url_auth is not None and username:
            # aiohttp would refuse every request (ValueError); the config refuses it first.
            raise ValueError(f"{self.url}: credentials both in the URL and in username")
        # Sent as a header, not in the URL, so that no error message can show the password.
        base = base.with_user(None)
        query = {"db": database, "precision": V1_PRECISIONS[precision]}
        if retention_policy:
            query["rp"] = retention_policy
        self._write_url = (base / "write").with_query(query)
        self._query_url = base / "query"
        self._auth_headers: dict[str, str] = {}
        if username:
            credentials = f"{username}:{password or ''}".encode()
            self._auth_headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        elif url_auth is not None:
            self._auth_headers["Authorization"] = url_auth.encode()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._gzip = gzip
        self._create_database = create_database  # as configured
        self._database_ready = False  # created by us, or known to exist
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = tls if tls is not None else True

    async def send(self, data: bytes) -> None:
        """POST one batch to `/write`."""
        if self._create_database and not self._database_ready:
            await self._ensure_database()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            data = gzip.compress(data, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        status, text, retry_after = await self._post(self._write_url, data, headers)
        if status == 404 and "database not found" in text and not self._create_database:
            _log.warning("output influxdb %s: database %r not found", self.url, self.database)
        elif status == 404 and "database not found" in text:
            self._database_ready = False  # dropped meanwhile: create it again, then retry
            raise WriteError(f"database {self.database!r} not found", retry=True)
        error = classify_status(status, text, retry_after)
        if error is not None:
            raise error

    async def _ensure_database(self) -> None:
        """CREATE DATABASE (idempotent) before the first write; 401/403 mean no right to: skip."""
        query = {"q": f'CREATE DATABASE "{_quote(self.database)}"'}
        status, text, _ = await self._post(self._query_url.with_query(query), b"", {})
        if status in (401, 403):
            _log.warning("output influxdb %s: cannot create database: HTTP %d", self.url, status)
            # Not allowed to: from now on as with skip_database_creation, so that a
            # missing database drops batches rather than retrying them forever.
            self._create_database = False
        elif status >= 300:
            error = classify_status(status, text)
            assert error is not None
            raise WriteError(f"creating database: {error}", retry=error.retry)
        self._database_ready = True

    async def _post(
        self, url: URL, data: bytes, headers: dict[str, str]
    ) -> tuple[int, str, str | None]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._auth_headers)
        try:
            async with self._session.post(
                url, data=data, headers=headers, ssl=self._ssl
            ) as response:
                body = await read_at_most(response.content, MAX_ERROR_BODY)
                text = body.decode("utf-8", "replace")
                return response.status, text, response.headers.get("Retry-After")
        except TimeoutError:
            raise WriteError(f"timed out after {self._timeout.total:g}s", retry=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WriteError(str(exc) or type(exc).__name__, retry=True) from None

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


def _quote(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')
