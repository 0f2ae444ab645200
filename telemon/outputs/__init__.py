"""Outputs: push everything collected into InfluxDB (`[[outputs.influxdb]]`, `..._v2]]`).

Each URL gets every line from the agent (a `LineSource`), through its own
runner and spool (see `base`). A runner is a running part of its own, not an
input: it is up only while its last write stored its batch, and
`runner.status_metric(now_ns)` gives its `telemon_output` line (health,
counters, what waits to be written and how old the oldest of it is).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PositiveInt,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from telemon.outputs.base import LineSource, OutputRunner, RunOptions
from telemon.outputs.influxdb import InfluxDBSender
from telemon.outputs.influxdb_v2 import InfluxDBv2Sender
from telemon.outputs.spool import Spool
from telemon.schema import (
    ConfigPath,
    Duration,
    Model,
    WebURL,
    check_web_url,
    display_url,
    secret_or_file,
    url_has_credentials,
)
from telemon.tls import ClientTLS

__all__ = [
    "InfluxDBConfig",
    "InfluxDBv2Config",
    "OutputsConfig",
    "build_outputs",
]

MIB = 1024 * 1024


def _check_url_credentials(key: str, urls: Sequence[str], other: str) -> None:
    # aiohttp refuses a request with both (ValueError at every write), so say it at start-up.
    for url in urls:
        if url_has_credentials(url):
            masked = display_url(url).replace("://", "://***@", 1)
            raise ValueError(
                f"{key}: {masked!r} has credentials and so has {other}; use one or the other"
            )


class OutputConfig(ClientTLS):
    """Keys every `[[outputs.NAME]]` table accepts: batching, retries, the spool, TLS."""

    flush_interval: Duration | None = None
    metric_batch_size: PositiveInt = 1000
    timeout: Duration = 5.0
    content_encoding: Literal["gzip", "identity"] = "gzip"
    max_retry_interval: Duration = 60.0
    spool_dir: ConfigPath | None = None
    spool_max_bytes: PositiveInt = 100 * MIB


class InfluxDBConfig(OutputConfig):
    """`[[outputs.influxdb]]`: InfluxDB 1.x; every URL gets every line."""

    urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8086"])
    database: str = "telegraf"
    retention_policy: str = ""
    skip_database_creation: bool = False
    username: str | None = None
    password: SecretStr | None = None
    password_file: ConfigPath | None = None

    _password: SecretStr | None = PrivateAttr(default=None)

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("list at least one URL")
        if len(set(urls)) != len(urls):
            raise ValueError("urls must be distinct")
        # Not list[WebURL]: an error names `urls`, the key written, not an index in it.
        return [check_web_url(url) for url in urls]

    @field_validator("database")
    @classmethod
    def _check_database(cls, database: str) -> str:
        if not database.strip():
            raise ValueError("must not be empty")
        return database

    @model_validator(mode="after")
    def _check_auth(self) -> InfluxDBConfig:
        password = secret_or_file("password", self.password, self.password_file)
        if (self.username is None) != (password is None):
            raise ValueError("basic auth needs both username and password (or password_file)")
        if self.username is not None:
            _check_url_credentials("urls", self.urls, "username")
        self._password = password
        return self

    @property
    def basic_password(self) -> str | None:
        """The password, from `password` or read from `password_file` at start-up."""
        return self._password.get_secret_value() if self._password else None


class InfluxDBv2Config(OutputConfig):
    """`[[outputs.influxdb_v2]]`: InfluxDB 2.x (or anything serving `/api/v2/write`)."""

    url: WebURL = "http://127.0.0.1:8086"
    org: str = ""
    bucket: str
    token: SecretStr | None = None
    token_file: ConfigPath | None = None

    _token: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_token(self) -> InfluxDBv2Config:
        # Imported only when a v2 output runs: refuse here, not at every flush.
        if importlib.util.find_spec("influxdb_client") is None:
            raise ValueError(
                "needs the influxdb-client package: pip install -e \".[influxdb]\""
            )
        self._token = secret_or_file("token", self.token, self.token_file)
        if self._token is not None:
            _check_url_credentials("url", [self.url], "token")
        return self

    @property
    def auth_token(self) -> str | None:
        """The token, from `token` or read from `token_file` at start-up."""
        return self._token.get_secret_value() if self._token else None

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, bucket: str) -> str:
        if not bucket.strip():
            raise ValueError("must not be empty")
        return bucket


class OutputsConfig(Model):
    """`[outputs]`: where to push what is collected (nothing by default)."""

    influxdb: list[InfluxDBConfig] = Field(default_factory=list)
    influxdb_v2: list[InfluxDBv2Config] = Field(default_factory=list)

    @property
    def configured(self) -> bool:
        """Whether any output table is present."""
        return bool(self.influxdb or self.influxdb_v2)


def build_outputs(
    outputs: OutputsConfig, source: LineSource, *, interval: float, precision: str
) -> list[OutputRunner]:
    """One runner per output URL (not started), each taking its lines from `source`."""
    runners = []
    for v1 in outputs.influxdb:
        for url in v1.urls:
            sender = InfluxDBSender(
                url,
                v1.database,
                retention_policy=v1.retention_policy,
                username=v1.username,
                password=v1.basic_password,
                tls=v1.tls_context(),
                precision=precision,
                timeout=v1.timeout,
                gzip=v1.content_encoding == "gzip",
                create_database=not v1.skip_database_creation,
            )
            key = ("influxdb", url, v1.database, v1.retention_policy)
            runners.append(_runner(source, sender, v1, key, interval))
    for v2 in outputs.influxdb_v2:
        sender2 = InfluxDBv2Sender(
            v2.url,
            v2.org,
            v2.bucket,
            token=v2.auth_token,
            tls=v2.tls_context(),
            precision=precision,
            timeout=v2.timeout,
            gzip=v2.content_encoding == "gzip",
        )
        key = ("influxdb_v2", v2.url, v2.org, v2.bucket)
        runners.append(_runner(source, sender2, v2, key, interval))
    return runners


def _runner(
    source: LineSource,
    sender: InfluxDBSender | InfluxDBv2Sender,
    config: OutputConfig,
    key: Sequence[str],
    interval: float,
) -> OutputRunner:
    options = RunOptions(
        flush_interval=config.flush_interval or interval,
        batch_size=config.metric_batch_size,
        max_retry_interval=config.max_retry_interval,
        timeout=config.timeout,
    )
    spool = Spool(_spool_path(config.spool_dir, key), config.spool_max_bytes)
    return OutputRunner(source, sender, spool, options)


def _spool_path(spool_dir: Path | None, key: Sequence[str]) -> Path | None:
    """A directory per destination, named so the same destination finds it after a restart."""
    if spool_dir is None:
        return None
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    return spool_dir / f"{key[0]}-{digest}"
