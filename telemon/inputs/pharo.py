"""`[[inputs.pharo]]`: poll Pharo images' statistics endpoints.

Each URL is one target, polled at the input's interval. The body is read up
to `max_body_size`, parsed by `pharo_formats` (every format a Pharo image
serves its VM figures in) and written as the `pharo` measurement with an
`instance` tag naming the target.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from pydantic import AfterValidator, Field, SecretStr, model_validator

from telemon.inputs.base import InputConfig, InputContext, InputError, Target, read_bounded
from telemon.inputs.pharo_formats import (
    FormatError,
    Sample,
    parse_auto,
    parse_payload,
    with_telemon_fields,
)
from telemon.metric import FieldValue, Metric
from telemon.schema import MeasurementName
from telemon.tls import client_context

__all__ = ["PharoConfig", "PharoTarget", "samples_to_metrics"]

_SMALLTALK_EPOCH_OFFSET_US = 2_177_452_800 * 1_000_000
PharoFormat = Literal["auto", "influx", "json", "labels", "parameters", "report"]


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


class PharoConfig(InputConfig):
    """Which images to poll and how to reach them."""

    urls: list[Annotated[str, AfterValidator(_check_url)]] = Field(min_length=1)
    format: PharoFormat = "auto"
    measurement: MeasurementName = "pharo"
    instances: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    tls_ca: Path | None = None
    insecure_skip_verify: bool = False
    max_body_size: int = Field(default=1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> PharoConfig:
        unknown = sorted(set(self.instances) - set(self.urls))
        if unknown:
            raise ValueError(f"instances: {unknown[0]!r} is not one of urls")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        for name in ("token_file", "tls_ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: cannot read {path}")
        return self

    def build(self, context: InputContext) -> list[Target]:
        """One target per URL, sharing the request settings."""
        request = _RequestSettings(self)
        return [PharoTarget(url, self, request, context) for url in self.urls]


class _RequestSettings:
    """Headers, auth and TLS for every request of one `[[inputs.pharo]]` table."""

    def __init__(self, config: PharoConfig) -> None:
        self.headers = dict(config.headers)
        token = config.token.get_secret_value() if config.token else None
        if config.token_file is not None:
            token = config.token_file.read_text(encoding="utf-8").strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.auth = (
            aiohttp.BasicAuth(config.username, config.password.get_secret_value())
            if config.username is not None and config.password is not None
            else None
        )
        context = client_context(config.tls_ca, insecure=config.insecure_skip_verify)
        self.ssl: ssl.SSLContext | bool = context if context is not None else True


class PharoTarget(Target):
    """One Pharo image's statistics URL."""

    def __init__(
        self, url: str, config: PharoConfig, request: _RequestSettings, context: InputContext
    ) -> None:
        super().__init__(display_url(url))
        self.url = url
        self.config = config
        self.request = request
        self.context = context
        self.instance = config.instances.get(url) or _host_port(url)
        self.format_used: str | None = None

    async def collect(self, now_ns: int) -> list[Metric]:
        """GET the URL, parse the body, answer the `pharo` lines."""
        content_type, text = await self._fetch()
        try:
            if self.config.format == "auto":
                self.format_used, samples = parse_auto(content_type, text)
            else:
                samples = parse_payload(self.config.format, text)
                self.format_used = self.config.format
        except FormatError as exc:
            raise InputError(str(exc)) from None
        return samples_to_metrics(samples, self.config.measurement, self.instance, now_ns)

    async def _fetch(self) -> tuple[str, str]:
        try:
            async with self.context.session.get(
                self.url,
                headers=self.request.headers,
                auth=self.request.auth,
                ssl=self.request.ssl,
                allow_redirects=True,
            ) as response:
                if not 200 <= response.status < 300:
                    raise InputError(f"HTTP {response.status} {response.reason or ''}".strip())
                body = await read_bounded(response, self.config.max_body_size)
                return response.content_type, body.decode("utf-8", "replace")
        except aiohttp.ClientError as exc:
            raise InputError(_client_error(exc)) from None


def samples_to_metrics(
    samples: list[Sample], measurement: str, instance: str, now_ns: int
) -> list[Metric]:
    """Metrics for parsed samples: the input's measurement and `instance` tag."""
    metrics = []
    for sample in samples:
        name = sample.measurement or measurement
        fields = sample.fields
        if name == measurement:
            fields = with_telemon_fields(_with_uptime(fields, now_ns))
        tags = {**sample.tags, "instance": instance}
        metrics.append(Metric(name, tags, dict(fields), sample.time_ns or now_ns))
    return metrics


def _with_uptime(fields: dict[str, FieldValue], now_ns: int) -> dict[str, FieldValue]:
    """Telemon's `uptime` (ms) from VM parameter 20 when the payload lacks it."""
    started_us = fields.get("startMicroseconds")
    if "uptime" in fields or type(started_us) is not int or started_us <= 0:
        return fields
    # Pharo's microsecond clock counts from 1901-01-01, not from 1970.
    uptime_ms = (now_ns // 1000 + _SMALLTALK_EPOCH_OFFSET_US - started_us) // 1000
    return {"uptime": uptime_ms, **fields} if uptime_ms >= 0 else fields


def display_url(url: str) -> str:
    """The URL without user:password, for tags, logs and the index page."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_error(exc: aiohttp.ClientError) -> str:
    """One line naming what went wrong, without aiohttp's repr noise."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"response body broken off: {exc}"
    return f"{type(exc).__name__}: {exc}"
