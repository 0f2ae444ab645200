"""The configuration file: Telegraf-shaped TOML validated by pydantic models.

`load_config(path)` is the only way in; it raises `ConfigError` whose
`details` name each bad key as a dotted path (`inputs.process.0.interval`).
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PositiveInt,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from telemon.envsubst import SubstitutionError, substitute
from telemon.inputs import InputsConfig
from telemon.outputs import OutputsConfig
from telemon.schema import Duration, Model, Tags, secret_or_file
from telemon.sink import SinkConfig
from telemon.tls import server_context

__all__ = [
    "AgentConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "PrometheusConfig",
    "default_config_path",
    "listen_address",
    "load_config",
    "parse_config",
    "read_config_data",
]


class ConfigError(Exception):
    """A configuration that cannot be used; `details` are (key path, message)."""

    def __init__(self, source: str, details: list[tuple[str, str]]) -> None:
        self.source = source
        self.details = details
        super().__init__("; ".join(f"{key}: {msg}" if key else msg for key, msg in details))

    def lines(self) -> list[str]:
        """One `FILE: key.path: message` line per problem."""
        return [f"{self.source}: {key or '(file)'}: {msg}" for key, msg in self.details]


_PRECISIONS = {"1ns": "ns", "1us": "us", "1µs": "us", "1ms": "ms", "1s": "s"}


def _precision(value: Any) -> Any:
    return _PRECISIONS.get(value, value) if isinstance(value, str) else value


class AgentConfig(Model):
    """`[agent]`: collection timing and how numbers and timestamps are written."""

    interval: Duration = 10.0
    timeout: Duration = 5.0
    field_timeout: Duration = 1.0
    precision: Annotated[Literal["ns", "us", "ms", "s"], BeforeValidator(_precision)] = "ns"
    omit_timestamp: bool = False
    integer_type: Literal["integer", "float"] = "integer"
    uint_support: bool = False


def listen_address(value: Any) -> tuple[str, int]:
    """(host, port) of "HOST:PORT" (":PORT" is every interface); ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError('expected "HOST:PORT"')
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f'invalid listen address {value!r}: expected "HOST:PORT"')
    return host or "0.0.0.0", int(port)


ListenAddress = Annotated[tuple[str, int], BeforeValidator(listen_address)]


# A plain URL path: aiohttp would read "{name}" as a pattern matching other paths.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


def _check_path(path: str) -> str:
    if not _PLAIN_PATH.fullmatch(path) or path in ("/", "/healthz"):
        raise ValueError(
            f"{path!r} must be a plain path starting with '/' (no spaces, braces, ? or #)"
            " and not '/' or '/healthz'"
        )
    return path


class HttpConfig(Model):
    """`[http]`: where and how the metrics are served."""

    listen: ListenAddress = ("127.0.0.1", 8080)
    path: Annotated[str, AfterValidator(_check_path)] = "/metrics"
    gzip: bool = True
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # None: three quarters of the open-file limit (telemon.server.max_connections).
    max_connections: PositiveInt | None = None
    idle_timeout: Duration = 15.0

    _password: SecretStr | None = PrivateAttr(default=None)
    _token: SecretStr | None = PrivateAttr(default=None)
    _ssl_context: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_auth(self) -> HttpConfig:
        for name in ("username", "password", "token"):
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None and not value.strip():
                raise ValueError(f"{name} must not be empty (leave it out to disable auth)")
        if self.username is not None and ":" in self.username:
            raise ValueError("username must not contain ':' (it separates user and password)")
        password = secret_or_file("password", self.password, self.password_file)
        self._token = secret_or_file("token", self.token, self.token_file)
        if (self.username is None) != (password is None):
            raise ValueError("basic auth needs both username and password (or password_file)")
        self._password = password
        return self

    @model_validator(mode="after")
    def _load_tls(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if self.tls_cert is not None and self.tls_key is not None:
            # Built now, once: `telemon check` refuses what `serve` would, and `serve` uses it.
            self._ssl_context = server_context(self.tls_cert, self.tls_key)
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context when `tls_cert`/`tls_key` are set (built by the check)."""
        return self._ssl_context

    @property
    def basic_password(self) -> str | None:
        """The basic-auth password, from `password` or `password_file`."""
        return self._password.get_secret_value() if self._password else None

    @property
    def bearer_token(self) -> str | None:
        """The bearer token, from `token` or `token_file`."""
        return self._token.get_secret_value() if self._token else None


class PrometheusConfig(Model):
    """`[prometheus]`: how the Prometheus text format is written (when a client asks for it)."""

    timestamps: bool = False
    string_as_label: bool = False


class Config(Model):
    """The whole file."""

    global_tags: Tags = Field(default_factory=dict)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    inputs: InputsConfig = Field(default_factory=InputsConfig.defaults)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)

    @model_validator(mode="after")
    def _check_sink_paths(self) -> Config:
        reserved = {self.http.path: "http.path", "/healthz": "/healthz"}
        for path in self.sink.paths if self.sink.enabled else ():
            if path in reserved:
                raise ValueError(f"sink.paths: {path!r} is already {reserved[path]}")
        return self

    @model_validator(mode="after")
    def _check_docker_stats_timeouts(self) -> Config:
        # The docker table checks its own timeout; the agent's it cannot see.
        for index, docker in enumerate(self.inputs.docker):
            if docker.timeout is None and docker.stats_timeout >= self.agent.timeout:
                raise ValueError(
                    f"inputs.docker.{index}.stats_timeout must be shorter than agent.timeout"
                    " (or set the table's own timeout)"
                )
        return self

    @model_validator(mode="after")
    def _check_output_timestamps(self) -> Config:
        # Spooled lines are written late: without timestamps they would be dated on arrival.
        if self.outputs.configured and self.agent.omit_timestamp:
            raise ValueError("outputs need timestamps: set agent.omit_timestamp = false")
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    # pydantic adds the name of a validator or union member to the location;
    # users only know the keys they wrote.
    parts = [str(part) or '""' for part in loc]
    return ".".join(p for p in parts if p != "[key]" and not p.startswith(("function-", "tagged-")))


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        if len(error["loc"]) == 2 and error["loc"][0] == "inputs":
            return f"unknown input; known inputs: {', '.join(InputsConfig.model_fields)}"
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    message = re.sub(r" or instance of \w+", "", str(error["msg"]))
    return message.removeprefix("Value error, ")


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        details = [(_location(e["loc"]), _message(e)) for e in exc.errors()]
        raise ConfigError(source, details) from None
    except OSError as exc:  # a validator's file check that did not say which key
        reason = f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc)
        raise ConfigError(source, [("", reason)]) from None


def read_config_data(path: Path | None) -> dict[str, Any]:
    """The parsed TOML document (empty without a file), environment variables replaced."""
    if path is None:
        return {}
    try:
        return tomllib.loads(substitute(path.read_text(encoding="utf-8"), os.environ))
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    except SubstitutionError as exc:
        raise ConfigError(str(path), [("", str(exc))]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [("", f"not valid TOML: {exc}")]) from None


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML file; None gives the built-in defaults."""
    return parse_config(read_config_data(path), str(path) if path else "<defaults>")


def default_config_path(explicit: str | None) -> Path | None:
    """`--config`, then `$TELEMON_CONFIG`, then `./telemon.toml`, else None."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("TELEMON_CONFIG"):
        return Path(env)
    local = Path("telemon.toml")
    return local if local.exists() else None
