"""The configuration file: Telegraf-shaped TOML validated by pydantic models.

`load_config(path)` is the only way in; it raises `ConfigError` whose
`details` name each bad key as a dotted path (`inputs.process.0.interval`).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PositiveInt,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from telemon.envsubst import SubstitutionError, substitute
from telemon.inputs import InputContext, InputsConfig
from telemon.outputs import OutputsConfig
from telemon.promnames import Naming
from telemon.schema import ConfigPath, Duration, Model, Tags, raise_problems, secret_or_file
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
    "summary",
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
    """(host, port) of "HOST:PORT" (":PORT" is every interface); ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError('expected a string "HOST:PORT"')
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep and value.isascii() and value.isdigit():
        raise ValueError(f'{value!r} has no host: write "127.0.0.1:{value}" (":{value}" is every'
                         " interface)")  # fmt: skip
    if not sep or not port:
        raise ValueError(f'{value!r} has no port: expected "HOST:PORT"')
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"port {port!r} of {value!r} is not a number")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} is not 0-65535")
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
    password_file: ConfigPath | None = None
    token: SecretStr | None = None
    token_file: ConfigPath | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    # None: three quarters of the open-file limit (telemon.server.max_connections).
    max_connections: PositiveInt | None = None
    idle_timeout: Duration = 15.0

    _password: SecretStr | None = PrivateAttr(default=None)
    _token: SecretStr | None = PrivateAttr(default=None)
    _ssl_context: ssl.SSLContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> HttpConfig:
        # Both checked, whatever the first finds: `telemon check` reports every problem.
        raise_problems([*self._auth_problems(), *self._tls_problems()])
        return self

    def _auth_problems(self) -> list[str]:
        problems = []
        for name in ("username", "password", "token"):
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None and not value.strip():
                problems.append(f"{name} must not be empty (leave it out to disable auth)")
        if self.username is not None and ":" in self.username:
            problems.append("username must not contain ':' (it separates user and password)")
        try:
            self._password = secret_or_file("password", self.password, self.password_file)
        except ValueError as exc:
            problems.append(str(exc))
        try:
            self._token = secret_or_file("token", self.token, self.token_file)
        except ValueError as exc:
            problems.append(str(exc))
        has_password = self.password is not None or self.password_file is not None
        if (self.username is None) == has_password:
            problems.append("basic auth needs both username and password (or password_file)")
        return problems

    def _tls_problems(self) -> list[str]:
        if (self.tls_cert is None) != (self.tls_key is None):
            return ["TLS needs both tls_cert and tls_key"]
        if self.tls_cert is not None and self.tls_key is not None:
            # Built now, once: `telemon check` refuses what `serve` would, and `serve` uses it.
            try:
                self._ssl_context = server_context(self.tls_cert, self.tls_key)
            except ValueError as exc:
                return [str(exc)]
            except OSError as exc:
                return [f"cannot read {exc.filename or 'tls_cert/tls_key'}: {exc.strerror or exc}"]
        return []

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
    naming: Naming = "prometheus"


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
    def _check_across_sections(self) -> Config:
        raise_problems([
            *self._sink_path_problems(),
            *self._docker_stats_timeout_problems(),
            *self._output_timestamp_problems(),
        ])
        return self

    def _sink_path_problems(self) -> list[str]:
        reserved = {self.http.path: "http.path", "/healthz": "/healthz"}
        return [
            f"sink.paths: {path!r} is already {reserved[path]}"
            for path in (self.sink.paths if self.sink.enabled else ())
            if path in reserved
        ]

    def _docker_stats_timeout_problems(self) -> list[str]:
        # The docker table checks its own timeout; the agent's it cannot see.
        return [
            f"inputs.docker.{index}.stats_timeout must be shorter than agent.timeout"
            " (or set the table's own timeout)"
            for index, docker in enumerate(self.inputs.docker)
            if docker.timeout is None and docker.stats_timeout >= self.agent.timeout
        ]

    def _output_timestamp_problems(self) -> list[str]:
        # Spooled lines are written late: without timestamps they would be dated on arrival.
        if self.outputs.configured and self.agent.omit_timestamp:
            return ["outputs need timestamps: set agent.omit_timestamp = false"]
        return []


Loc = tuple[int | str, ...]


def _is_tag(part: int | str) -> bool:
    # pydantic adds the name of a validator or union member to the location;
    # users only know the keys they wrote.
    return isinstance(part, str) and (part == "[key]" or part.startswith(("function-", "tagged-")))


def _clean(loc: Loc) -> Loc:
    return tuple(part for part in loc if not _is_tag(part))


def _location(loc: Loc) -> str:
    return ".".join(str(part) or '""' for part in _clean(loc))


def _sections(loc: Loc) -> tuple[str, str] | None:
    """("input", "inputs") or ("output", "outputs") when `loc` is `inputs.NAME`/`outputs.NAME`."""
    if len(loc) == 2 and loc[0] in ("inputs", "outputs"):
        return ("input", "inputs") if loc[0] == "inputs" else ("output", "outputs")
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The config model holding the last key of `loc` (None if the path leaves the models)."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _inner_model(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (inner := _inner_model(arg)) is not None:
            return inner
    return None


def _did_you_mean(key: int | str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(loc: Loc) -> str:
    model = _model_at(loc)
    known = list(model.model_fields) if model is not None else []
    if (kind := _sections(loc)) is not None:
        hint = _did_you_mean(loc[-1], known)
        return f"unknown {kind[0]}; known {kind[1]}: {', '.join(known)}{hint}"
    return f"unknown key{_did_you_mean(loc[-1], known)}"


def _messages(error: Mapping[str, Any]) -> list[str]:
    """The error's message(s): a model validator's problems come one per line."""
    if error["type"] == "extra_forbidden":
        return [_unknown(_clean(error["loc"]))]
    if error["type"] == "missing":
        return ["required key is missing"]
    if (
        error["type"] == "list_type"
        and isinstance(error["input"], dict)
        and _sections(_clean(error["loc"]))
    ):
        name = ".".join(map(str, _clean(error["loc"])))
        return [f"expected an array of tables: write [[{name}]], not [{name}]"]
    if (expected := _EXPECTED.get(error["type"])) is not None:
        return [f"expected {expected}, got {_toml(error['input'])}"]
    message = re.sub(r" or instance of \w+", "", str(error["msg"]))
    return message.removeprefix("Value error, ").splitlines()


_EXPECTED = {
    "bool_type": "a boolean (true or false)",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "tuple_type": "an array",
}
"""Type errors in TOML's words (the model is strict: `gzip = "yes"` is not guessed at)."""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else "a string"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    return "an array" if isinstance(value, list) else type(value).__name__


def _mentions(message: str, key: int | str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(str(key))}(?![\w])", message) is not None


class _Pruned:
    """The document with what failed taken out, so that another pass checks the rest.

    pydantic runs a model's own checks only once its keys are valid, and the
    whole file's checks once every section is: each pass takes out the keys
    (or tables) that failed, so the checks they blocked run in the next one.
    Locations are given in the file's terms (a table taken out of a list
    leaves the following ones their index in the file).
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.document: dict[str, Any] = copy.deepcopy(dict(data))
        self.removed: list[Loc] = []
        self._kept: dict[Loc, list[int]] = {}  # a list's remaining items' indices in the file

    def original(self, loc: Loc) -> Loc:
        """`loc` (in the pruned document) in the file's terms."""
        out: list[int | str] = []
        for part in _clean(loc):
            kept = self._kept.get(tuple(out))
            out.append(kept[part] if isinstance(part, int) and kept and part < len(kept) else part)
        return tuple(out)

    def follows_from_removed(self, loc: Loc, message: str) -> bool:
        """Whether an error is only the consequence of taking a key out."""
        for removed in self.removed:
            if loc[: len(removed)] == removed:  # missing now, or inside
                return True
            names = [part for part in removed[len(loc) :] if isinstance(part, str)]
            if removed[: len(loc)] == loc and names and _mentions(message, names[-1]):
                return True  # a check of the model holding it, now run with its default
        return False

    def prune(self, locs: list[Loc]) -> bool:
        """Take out what each failed location names; False when there is nothing to take out."""
        targets = {t for loc in locs if (t := self._target(_clean(loc)))}
        for target in sorted(targets, reverse=True):  # later list items first
            if any(other != target and target[: len(other)] == other for other in targets):
                continue
            self.removed.append(self.original(target))
            parent = self._node(target[:-1])
            if isinstance(parent, list) and parent[int(target[-1])] != {}:
                # First an empty table (its defaults): `outputs need timestamps` still sees
                # an output; taken out only if even that fails (a required key).
                parent[int(target[-1])] = {}
                continue
            if isinstance(parent, list):
                kept = self._kept.setdefault(self.original(target[:-1]), list(range(len(parent))))
                del kept[int(target[-1])]
            del parent[target[-1]]
        return bool(targets)

    def _node(self, loc: Loc) -> Any:
        node: Any = self.document
        for part in loc:
            node = node[part]
        return node

    def _target(self, loc: Loc) -> Loc | None:
        """The key (or the table in a list) of the document that `loc` falls in."""
        node: Any = self.document
        found: list[int | str] = []
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                break  # a missing key: its table is what failed
            found.append(part)
        while found and isinstance(found[-1], int) and not isinstance(node, dict):
            found.pop()  # a bad item of a list of values: the key holding the list
            node = self._node(tuple(found))
        return tuple(found) or None


_MAX_PASSES = 20


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document; ConfigError lists every problem found."""
    pruned = _Pruned(data)
    details: list[tuple[str, str]] = []
    for _ in range(_MAX_PASSES):
        try:
            config = Config.model_validate(pruned.document)
        except ValidationError as exc:
            errors = exc.errors()
            for error in errors:
                loc = pruned.original(error["loc"])
                for message in _messages(error):
                    if not pruned.follows_from_removed(loc, message):
                        details.append((_location(loc), message))
            if not pruned.prune([e["loc"] for e in errors]):
                break
        except OSError as exc:  # a validator's file check that did not say which key
            reason = f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc)
            details.append(("", reason))
            break
        else:
            if not details:
                return config
            break
    raise ConfigError(source, list(dict.fromkeys(details)))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summary(config: Config) -> str:
    """One line of what a valid configuration runs: inputs and targets, outputs, the sink."""
    tables = config.inputs.configured()
    # Building targets does no I/O; discovered containers are found only when running.
    targets = sum(len(table.build(InputContext())) for _, table in tables)
    outputs = config.outputs
    urls = sum(len(o.urls) for o in outputs.influxdb) + len(outputs.influxdb_v2)
    output_count = len(outputs.influxdb) + len(outputs.influxdb_v2)
    parts = [
        f"{_count(len(tables), 'input')} ({_count(targets, 'target')})",
        f"{_count(output_count, 'output')} ({_count(urls, 'URL')})" if urls else "no outputs",
        f"sink on {' '.join(config.sink.paths)}" if config.sink.enabled else "no sink",
    ]
    return ", ".join(parts)


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
