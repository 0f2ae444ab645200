"""`[[outputs.influxdb_v2]]`: InfluxDB 2.x `/api/v2/write` through `influxdb-client`'s async API.

The package is imported on the first write, so telemon starts without it
unless this output is configured.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from telemon.outputs.base import WriteError, classify_status
from telemon.schema import display_url

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
    from influxdb_client.domain.write_precision import WritePrecision

__all__ = ["InfluxDBv2Sender"]


class InfluxDBv2Sender:
    """Writes batches to one InfluxDB 2.x bucket (or anything serving `/api/v2/write`)."""

    name = "influxdb_v2"

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        *,
        token: str | None = None,
        precision: str = "ns",
        timeout: float = 5.0,
        gzip: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = display_url(url)
        self._client_url = url
        self._tls = tls  # built once when the config was checked
        self.org = org
        self.bucket = bucket
        self._token = token
        self._precision = precision
        self._timeout = timeout
        self._gzip = gzip
        self._client: InfluxDBClientAsync | None = None

    def _open(self) -> InfluxDBClientAsync:
        if self._client is None:
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

            self._client = InfluxDBClientAsync(
                self._client_url,
                token=self._token or "",
                org=self.org,
                timeout=int(self._timeout * 1000),
                enable_gzip=self._gzip,
                ssl_context=self._tls,
            )
        return self._client

    async def send(self, data: bytes) -> None:
        """Write one batch; the client does not retry (the runner does)."""
        from influxdb_client.rest import ApiException

        client = self._open()
        try:
            await client.write_api().write(
                self.bucket,
                self.org,
                record=data,
                write_precision=cast("WritePrecision", self._precision),
            )
        except ApiException as exc:
            status = exc.status or 0
            error = (
                classify_status(status, _text(exc.body), _header(exc.headers)) if status else None
            )
            raise error or WriteError(f"HTTP {exc.status}", retry=True) from None
        except TimeoutError:
            raise WriteError(f"timed out after {self._timeout:g}s", retry=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WriteError(str(exc) or type(exc).__name__, retry=True) from None

    async def aclose(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body or "")


def _header(headers: Any) -> str | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    return str(value) if value is not None else None
