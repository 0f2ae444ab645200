"""The configuration file: every mistake is a `ConfigError` naming its key path.

Most cases are table-driven: a TOML document (as the dict `tomllib` gives)
and the exact `ConfigError.details` it must produce. Strings in a table may
hold `{tmp}`, replaced by a directory holding the files of `secrets_dir`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from helpers import make_certificate

from telemon.agent import Agent
from telemon.auth import Credentials
from telemon.config import (
    AgentConfig,
    ConfigError,
    HttpConfig,
    PrometheusConfig,
    default_config_path,
    load_config,
    parse_config,
    read_config_data,
)
from telemon.inputs import InputsConfig
from telemon.inputs.process import ProcessConfig
from telemon.inputs.python import PythonConfig
from telemon.outputs import InfluxDBConfig, InfluxDBv2Config
from telemon.sink import SinkConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "telemon.example.toml"

SECRET_PASSWORD = "pw-3f9c1e-do-not-leak"
SECRET_TOKEN = "tok-8a7b6c-do-not-leak"
BAD_UNITS = 'use units ns, us, ms, s, m, h ("10s")'
BAD_LISTEN = 'expected "HOST:PORT"'
INPUTS = InputsConfig.registry()
KNOWN_INPUTS = f"unknown input; known inputs: {', '.join(spec.name for spec in INPUTS)}"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """Files the tables refer to as {tmp}/NAME."""
    (tmp_path / "password").write_text(f"  {SECRET_PASSWORD}\n", encoding="utf-8")
    (tmp_path / "token").write_text(f"\n{SECRET_TOKEN} \n\n", encoding="utf-8")
    (tmp_path / "empty").write_text(" \n", encoding="utf-8")
    make_certificate(tmp_path)  # cert.pem, key.pem
    return tmp_path


def _fill(value: Any, tmp: Path) -> Any:
    """`value` with "{tmp}" replaced in every string, recursively."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {_fill(k, tmp): _fill(v, tmp) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_fill(v, tmp) for v in value)
    return value


def config_errors(data: dict[str, Any], source: str = "telemon.toml") -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    assert info.value.source == source
    return info.value.details


# --- unknown keys and inputs -------------------------------------------------

UNKNOWN_KEYS = [
    pytest.param({"bogus": 1}, [("bogus", "unknown key")], id="top-level"),
    pytest.param(
        {"agent": {"intervall": "10s"}},
        [("agent.intervall", "unknown key; did you mean 'interval'?")],
        id="agent",
    ),
    pytest.param({"http": {"port": 8080}}, [("http.port", "unknown key")], id="http"),
    pytest.param(
        {"inputs": {"procstat": [{"pattern": "x"}]}},
        [("inputs.procstat", f"{KNOWN_INPUTS}; did you mean 'process'?")],
        id="input-name",
    ),
    pytest.param(
        {"inputs": {"process": [{}, {"patern": "pharo"}]}},
        [("inputs.process.1.patern", "unknown key; did you mean 'pattern'?")],
        id="key-in-second-process-table",
    ),
    pytest.param(
        {"inputs": {"python": [{"count_object": False}]}},
        [("inputs.python.0.count_object", "unknown key; did you mean 'count_objects'?")],
        id="key-in-python-table",
    ),
    pytest.param(
        {"inputs": {"fields": [{"measurement": "app", "fields": {}, "field": {}}]}},
        [("inputs.fields.0.field", "unknown key; did you mean 'fields'?")],
        id="key-in-fields-table",
    ),
    pytest.param(
        {"bogus": 1, "agent": {"x": 1}, "inputs": {"nope": [{}]}},
        [("agent.x", "unknown key"), ("inputs.nope", KNOWN_INPUTS), ("bogus", "unknown key")],
        id="every-problem-reported",
    ),
]


@pytest.mark.parametrize(("data", "expected"), UNKNOWN_KEYS)
def test_unknown_keys(data: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert sorted(config_errors(data)) == sorted(expected)


# --- durations ---------------------------------------------------------------

DURATION_KEYS = [
    ("agent", "interval"),
    ("agent", "timeout"),
    ("agent", "field_timeout"),
    ("inputs.process.0", "interval"),
    ("inputs.python.0", "timeout"),
]


def _at(path: str, key: str, value: Any) -> dict[str, Any]:
    """The document setting `key` in the table at dotted `path`."""
    table: dict[str, Any] = {key: value}
    parts = path.split(".")
    if parts[-1].isdigit():
        table, parts = {parts[-2]: [table]}, parts[:-2]
    for part in reversed(parts):
        table = {part: table}
    return table


BAD_DURATIONS = [
    pytest.param("10x", f"invalid duration '10x': {BAD_UNITS}", id="unknown-unit"),
    pytest.param("-1s", f"invalid duration '-1s': {BAD_UNITS}", id="negative"),
    pytest.param("10", f"invalid duration '10': {BAD_UNITS}", id="string-without-unit"),
    pytest.param("1 s", f"invalid duration '1 s': {BAD_UNITS}", id="space-inside"),
    pytest.param("", f"invalid duration '': {BAD_UNITS}", id="empty"),
    pytest.param(0, "duration must be positive, got 0", id="zero"),
    pytest.param(-5, "duration must be positive, got -5", id="negative-number"),
    pytest.param("0s", "duration must be positive, got '0s'", id="zero-seconds"),
    pytest.param(True, 'expected a duration like "10s"', id="boolean"),
    pytest.param(["10s"], 'expected a duration like "10s"', id="array"),
]


@pytest.mark.parametrize(("path", "key"), DURATION_KEYS)
@pytest.mark.parametrize(("value", "message"), BAD_DURATIONS)
def test_bad_duration(path: str, key: str, value: Any, message: str) -> None:
    assert config_errors(_at(path, key, value)) == [(f"{path}.{key}", message)]


GOOD_DURATIONS = [
    pytest.param("500ms", 0.5, id="ms"),
    pytest.param("1m30s", 90.0, id="compound"),
    pytest.param("1.5s", 1.5, id="fraction"),
    pytest.param("1h", 3600.0, id="hour"),
    pytest.param("250us", 250e-6, id="us"),
    pytest.param("250µs", 250e-6, id="micro-sign"),
    pytest.param("100ns", 100e-9, id="ns"),
    pytest.param(10, 10.0, id="integer-seconds"),
    pytest.param(2.5, 2.5, id="float-seconds"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_DURATIONS)
def test_good_duration_everywhere(value: Any, expected: float) -> None:
    config = parse_config(
        {
            "agent": {"interval": value, "timeout": value, "field_timeout": value},
            "inputs": {"process": [{"interval": value, "timeout": value}]},
        }
    )
    agent, process = config.agent, config.inputs.process[0]
    for seconds in (agent.interval, agent.timeout, agent.field_timeout):
        assert seconds == pytest.approx(expected, rel=1e-12)
    assert process.interval == pytest.approx(expected, rel=1e-12)
    assert process.timeout == pytest.approx(expected, rel=1e-12)


def test_input_interval_and_timeout_override_the_agents() -> None:
    config = parse_config(
        {
            "agent": {"interval": "20s", "timeout": "3s"},
            "inputs": {"process": [{"interval": "500ms"}], "python": [{"timeout": "1m"}]},
        }
    )
    states = {state.input: state for state in Agent(config).collector.states}
    assert (states["process"].interval, states["process"].timeout) == (0.5, 3.0)
    assert (states["python"].interval, states["python"].timeout) == (20.0, 60.0)


# --- http.listen and http.path -----------------------------------------------

BAD_LISTEN_ADDRESSES = [
    pytest.param("localhost", f"'localhost' has no port: {BAD_LISTEN}", id="no-port"),
    pytest.param("localhost:", f"'localhost:' has no port: {BAD_LISTEN}", id="empty-port"),
    pytest.param("localhost:http", "port 'http' of 'localhost:http' is not a number",
                 id="service-name"),
    pytest.param("0.0.0.0:65536", "port 65536 is not 0-65535", id="port-too-large"),
    pytest.param("0.0.0.0:-1", "port '-1' of '0.0.0.0:-1' is not a number", id="negative-port"),
    pytest.param("", f"'' has no port: {BAD_LISTEN}", id="empty"),
    # str.isdigit() accepts "²" but int() does not: the message must still be ours.
    pytest.param("0.0.0.0:²", "port '²' of '0.0.0.0:²' is not a number",
                 id="superscript-digit-port"),
    pytest.param(8080, 'expected a string "HOST:PORT"', id="number"),
]


@pytest.mark.parametrize(("value", "message"), BAD_LISTEN_ADDRESSES)
def test_bad_listen_address(value: Any, message: str) -> None:
    assert config_errors({"http": {"listen": value}}) == [("http.listen", message)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.1:8080", ("127.0.0.1", 8080), id="ipv4"),
        pytest.param("localhost:9273", ("localhost", 9273), id="hostname"),
        pytest.param(":8080", ("0.0.0.0", 8080), id="every-interface"),
        pytest.param("[::1]:8080", ("::1", 8080), id="ipv6"),
    ],
)
def test_good_listen_address(value: str, expected: tuple[str, int]) -> None:
    assert parse_config({"http": {"listen": value}}).http.listen == expected


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "metrics", "/me trics", "/metrics{", "/{any}", "/m?x=1", "/m#top"]
)
def test_bad_metrics_path(path: str) -> None:
    """Braces would make aiohttp route a pattern (matching the sink's open paths too)."""
    message = (
        f"{path!r} must be a plain path starting with '/' (no spaces, braces, ? or #)"
        " and not '/' or '/healthz'"
    )
    assert config_errors({"http": {"path": path}}) == [("http.path", message)]


@pytest.mark.parametrize("path", ["/metrics", "/telemon/metrics", "/m-1_x.txt", "/a:b@c"])
def test_good_metrics_path(path: str) -> None:
    assert parse_config({"http": {"path": path}}).http.path == path


def test_basic_auth_username_without_colon() -> None:
    """RFC 7617: the first ':' of user:password ends the user; such a user could never log in."""
    errors = config_errors({"http": {"username": "ops:team", "password": "pw"}})
    assert errors == [("http", "username must not contain ':' (it separates user and password)")]


# --- tags --------------------------------------------------------------------

TAG_TABLES = [
    pytest.param("global_tags", id="global_tags"),
    pytest.param("inputs.process.0.tags", id="process-tags"),
    pytest.param("inputs.python.1.tags", id="second-python-tags"),
]


def _tags_at(path: str, tags: dict[str, str]) -> dict[str, Any]:
    if path == "global_tags":
        return {"global_tags": tags}
    _, name, index, _ = path.split(".")
    return {"inputs": {name: [{} for _ in range(int(index))] + [{"tags": tags}]}}


BAD_TAG_KEYS = [
    # The key path names the key as written in TOML ("" for the empty key).
    pytest.param("", '""', "tag keys must not be empty", id="empty"),
    pytest.param("time", "time", "tag key 'time' is reserved by InfluxDB", id="time"),
    pytest.param("_field", "_field", "tag key '_field' is reserved by InfluxDB", id="_field"),
    pytest.param("_measurement", "_measurement", "tag key '_measurement' is reserved by InfluxDB",
                 id="_measurement"),
]


@pytest.mark.parametrize("table", TAG_TABLES)
@pytest.mark.parametrize(("key", "written", "message"), BAD_TAG_KEYS)
def test_bad_tag_key(table: str, key: str, written: str, message: str) -> None:
    errors = config_errors(_tags_at(table, {"ok": "1", key: "x"}))
    assert errors == [(f"{table}.{written}", message)]


@pytest.mark.parametrize("table", TAG_TABLES)
def test_tag_value_must_be_a_string(table: str) -> None:
    errors = config_errors(_tags_at(table, {"rack": 12}))  # type: ignore[dict-item]
    assert errors == [(f"{table}.rack", "expected a string, got 12")]


def test_tags_are_kept() -> None:
    config = parse_config(
        {"global_tags": {"dc": "eu-1"}, "inputs": {"python": [{"tags": {"role": "web"}}]}}
    )
    assert config.global_tags == {"dc": "eu-1"}
    assert config.inputs.python[0].tags == {"role": "web"}


# --- agent -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1ns", "ns", id="1ns"),
        pytest.param("1us", "us", id="1us"),
        pytest.param("1µs", "us", id="1µs"),
        pytest.param("1ms", "ms", id="1ms"),
        pytest.param("1s", "s", id="1s"),
        pytest.param("ns", "ns", id="ns"),
        pytest.param("ms", "ms", id="ms"),
        pytest.param("s", "s", id="s"),
    ],
)
def test_precision_forms(value: str, expected: str) -> None:
    assert parse_config({"agent": {"precision": value}}).agent.precision == expected


@pytest.mark.parametrize("value", ["2s", "1m", "seconds", ""])
def test_bad_precision(value: str) -> None:
    message = "Input should be 'ns', 'us', 'ms' or 's'"
    assert config_errors({"agent": {"precision": value}}) == [("agent.precision", message)]


def test_bad_agent_values() -> None:
    errors = config_errors(
        {"agent": {"integer_type": "int", "omit_timestamp": "sometimes", "uint_support": 2}}
    )
    assert sorted(errors) == [
        ("agent.integer_type", "Input should be 'integer' or 'float'"),
        ("agent.omit_timestamp", 'expected a boolean (true or false), got "sometimes"'),
        ("agent.uint_support", "expected a boolean (true or false), got 2"),
    ]


# --- http authentication and TLS --------------------------------------------

HTTP_ERRORS = [
    pytest.param(
        {"username": "u", "password": "p", "password_file": "{tmp}/password"},
        "set password or password_file, not both",
        id="password-and-password_file",
    ),
    pytest.param(
        {"token": "t", "token_file": "{tmp}/token"},
        "set token or token_file, not both",
        id="token-and-token_file",
    ),
    pytest.param(
        {"username": "u"},
        "basic auth needs both username and password (or password_file)",
        id="username-without-password",
    ),
    pytest.param(
        {"password": "p"},
        "basic auth needs both username and password (or password_file)",
        id="password-without-username",
    ),
    pytest.param(
        {"password_file": "{tmp}/password"},
        "basic auth needs both username and password (or password_file)",
        id="password_file-without-username",
    ),
    pytest.param(
        {"username": "u", "password_file": "{tmp}/missing"},
        "password_file: cannot read {tmp}/missing: No such file or directory",
        id="password_file-missing",
    ),
    pytest.param(
        {"username": "u", "password_file": "{tmp}"},
        "password_file: cannot read {tmp}: Is a directory",
        id="password_file-is-a-directory",
    ),
    pytest.param(
        {"username": "u", "password_file": "{tmp}/empty"},
        "password_file: {tmp}/empty is empty",
        id="password_file-empty",
    ),
    pytest.param(
        {"token_file": "{tmp}/missing"},
        "token_file: cannot read {tmp}/missing: No such file or directory",
        id="token_file-missing",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/cert.pem"}, "TLS needs both tls_cert and tls_key",
        id="tls_cert-without-tls_key",
    ),
    pytest.param(
        {"tls_key": "{tmp}/key.pem"}, "TLS needs both tls_cert and tls_key",
        id="tls_key-without-tls_cert",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/missing.pem", "tls_key": "{tmp}/key.pem"},
        "tls_cert: cannot read {tmp}/missing.pem",
        id="tls_cert-missing",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/cert.pem", "tls_key": "{tmp}/missing.pem"},
        "tls_key: cannot read {tmp}/missing.pem",
        id="tls_key-missing",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/cert.pem", "tls_key": "{tmp}/other/key.pem"},
        "tls_cert, tls_key: cannot use them: the key does not belong to the certificate",
        id="tls-key-of-another-certificate",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/token", "tls_key": "{tmp}/key.pem"},
        "tls_cert, tls_key: cannot use them: not a PEM certificate and key",
        id="tls_cert-not-pem",
    ),
    pytest.param(
        {"tls_cert": "{tmp}/encrypted/cert.pem", "tls_key": "{tmp}/encrypted/key.pem"},
        "tls_cert, tls_key: cannot use them: the key is encrypted with a passphrase;"
        " give an unencrypted key",
        id="tls_key-encrypted",
    ),
]


@pytest.mark.parametrize(("http", "message"), HTTP_ERRORS)
def test_http_errors(http: dict[str, Any], message: str, secrets_dir: Path) -> None:
    if "/other/" in str(http):
        make_certificate(_subdir(secrets_dir, "other"))
    if "/encrypted/" in str(http):
        _encrypted_certificate(_subdir(secrets_dir, "encrypted"))
    errors = config_errors({"http": _fill(http, secrets_dir)})
    assert errors == [("http", _fill(message, secrets_dir))]


def _subdir(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def _encrypted_certificate(directory: Path) -> None:
    """cert.pem and a key.pem encrypted with a passphrase (telemon must not prompt for it)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    secret = ["-passout", "pass:a passphrase"]
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["openssl", "genrsa", "-aes128", *secret, "-out", str(key), "2048"])
    run(["openssl", "req", "-x509", "-new", "-key", str(key), "-passin", "pass:a passphrase",
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"])  # fmt: skip


def test_password_file_and_token_file_are_read_and_stripped(secrets_dir: Path) -> None:
    config = parse_config(
        {
            "http": {
                "username": "telegraf",
                "password_file": str(secrets_dir / "password"),
                "token_file": str(secrets_dir / "token"),
            }
        }
    )
    assert config.http.basic_password == SECRET_PASSWORD
    assert config.http.bearer_token == SECRET_TOKEN


def test_inline_password_and_token() -> None:
    config = parse_config({"http": {"username": "u", "password": "p w", "token": "t"}})
    assert (config.http.username, config.http.basic_password) == ("u", "p w")
    assert config.http.bearer_token == "t"


def test_tls_cert_and_key(secrets_dir: Path) -> None:
    http = parse_config(
        {"http": {"tls_cert": f"{secrets_dir}/cert.pem", "tls_key": f"{secrets_dir}/key.pem"}}
    ).http
    assert (http.tls_cert, http.tls_key) == (secrets_dir / "cert.pem", secrets_dir / "key.pem")


def test_no_auth_by_default() -> None:
    http = load_config(None).http
    assert (http.username, http.basic_password, http.bearer_token) == (None, None, None)
    assert not Credentials(http.username, http.basic_password, http.bearer_token).required


@pytest.mark.parametrize(
    "http",
    [
        pytest.param({"username": "u", "password": "p"}, id="user-and-password"),
        pytest.param({"username": "", "password": "p"}, id="empty-username"),
        pytest.param({"username": "u", "password": "p", "token": ""}, id="empty-token"),
        pytest.param({"token": "t"}, id="token"),
    ],
)
def test_configured_credentials_are_enforced(http: dict[str, Any]) -> None:
    """A config naming credentials is refused or protects the server, never open."""
    try:
        config = parse_config({"http": http})
    except ConfigError:
        return
    h = config.http
    assert Credentials(h.username, h.basic_password, h.bearer_token).required


def test_secrets_never_in_repr_or_str(secrets_dir: Path) -> None:
    inline = parse_config(
        {"http": {"username": "u", "password": SECRET_PASSWORD, "token": SECRET_TOKEN}}
    )
    from_files = parse_config(
        {
            "http": {
                "username": "u",
                "password_file": str(secrets_dir / "password"),
                "token_file": str(secrets_dir / "token"),
            }
        }
    )
    for config in (inline, from_files):
        # The secrets are there...
        assert config.http.basic_password == SECRET_PASSWORD
        assert config.http.bearer_token == SECRET_TOKEN
        # ...but no rendering of the config shows them.
        for text in (
            repr(config), str(config), repr(config.http), str(config.http),
            config.model_dump_json(), repr(config.model_dump()), f"{config}", f"{config!r}",
        ):
            assert SECRET_PASSWORD not in text
            assert SECRET_TOKEN not in text


def test_secrets_not_in_error_messages(secrets_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "http": {
                    "username": "u",
                    "password": SECRET_PASSWORD,
                    "password_file": str(secrets_dir / "password"),
                    "token": SECRET_TOKEN,
                }
            }
        )
    for text in (str(info.value), repr(info.value), *info.value.lines()):
        assert SECRET_PASSWORD not in text
        assert SECRET_TOKEN not in text


# --- inputs ------------------------------------------------------------------

INPUT_ERRORS = [
    pytest.param(
        {"process": [{"pattern": "pharo(vm"}]},
        [("inputs.process.0.pattern",
          "invalid regular expression: missing ), unterminated subpattern at position 5")],
        id="process-bad-regex",
    ),
    pytest.param(
        {"process": [{}, {"pattern": "pharo", "pid_file": "/run/pharo.pid"}]},
        [("inputs.process.1", "set pattern or pid_file, not both")],
        id="process-pattern-and-pid_file",
    ),
    pytest.param(
        {"process": [{"measurement": ""}]},
        [("inputs.process.0.measurement", "must not be empty")],
        id="process-empty-measurement",
    ),
    pytest.param(
        {"process": {"pattern": "pharo"}},
        [("inputs.process", "expected an array of tables: write [[inputs.process]], not [inputs.process]")],
        id="process-table-instead-of-array",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"sessions": "myapp.sessions"}}]},
        [("inputs.fields.0.fields.sessions",
          "expected \"package.module:callable\", got 'myapp.sessions'")],
        id="fields-no-colon",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"sessions": "a:b:c"}}]},
        [("inputs.fields.0.fields.sessions", "expected \"package.module:callable\", got 'a:b:c'")],
        id="fields-two-colons",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"sessions": 42}}]},
        [("inputs.fields.0.fields.sessions", 'expected "package.module:callable", got 42')],
        id="fields-not-a-string",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"sep": "os:sep"}}]},
        [("inputs.fields.0.fields.sep", "'os:sep' is not callable")],
        id="fields-not-callable",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"x": "telemon_no_such_module:f"}}]},
        [("inputs.fields.0.fields.x",
          "cannot import 'telemon_no_such_module': "
          "ModuleNotFoundError: No module named 'telemon_no_such_module'")],
        id="fields-missing-module",
    ),
    pytest.param(
        {"fields": [{"measurement": "app", "fields": {"x": "os:no_such_function"}}]},
        [("inputs.fields.0.fields.x", "'os' has no attribute 'no_such_function'")],
        id="fields-missing-attribute",
    ),
    pytest.param(
        {"fields": [
            {"measurement": "ok", "fields": {"pid": "os:getpid"}},
            {"measurement": "app", "fields": {"pid": "os:getpid", "bad": "os:sep"}},
        ]},
        [("inputs.fields.1.fields.bad", "'os:sep' is not callable")],
        id="fields-second-table",
    ),
    pytest.param(
        {"fields": [{"fields": {"pid": "os:getpid"}}]},
        [("inputs.fields.0.measurement", "required key is missing")],
        id="fields-measurement-missing",
    ),
    pytest.param(
        {"fields": [{"measurement": "app"}]},
        [("inputs.fields.0.fields", "required key is missing")],
        id="fields-fields-missing",
    ),
]


@pytest.mark.parametrize(("inputs", "expected"), INPUT_ERRORS)
def test_input_errors(inputs: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert config_errors({"inputs": inputs}) == expected


def test_fields_import_error_in_user_module_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "telemon_test_broken_module.py").write_text(
        "raise RuntimeError('broken at import')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    errors = config_errors(
        {"inputs": {"fields": [
            {"measurement": "app", "fields": {"n": "telemon_test_broken_module:n"}}
        ]}}
    )
    assert errors == [(
        "inputs.fields.0.fields.n",
        "cannot import 'telemon_test_broken_module': RuntimeError: broken at import",
    )]


def test_fields_resolve_callables() -> None:
    config = parse_config(
        {"inputs": {"fields": [{
            "measurement": "app",
            "tags": {"service": "blog"},
            "fields": {"pid": "os:getpid", "join": "os.path:join", "now": "time:time"},
        }]}}
    )
    (table,) = config.inputs.fields
    assert table.measurement == "app"
    assert table.tags == {"service": "blog"}
    assert table.fields["pid"] is os.getpid
    assert table.fields["join"] is os.path.join
    assert table.fields["pid"]() == os.getpid()


def test_process_selectors() -> None:
    config = parse_config(
        {"inputs": {"process": [
            {"pattern": "pharo.*image", "pid_tag": True},
            {"pid_file": "/run/pharo.pid", "measurement": "vm"},
        ]}}
    )
    first, second = config.inputs.process
    assert (first.pattern, first.pid_file, first.pid_tag) == ("pharo.*image", None, True)
    assert (second.pattern, second.pid_file) == (None, Path("/run/pharo.pid"))
    assert second.measurement == "vm"


# --- defaults ----------------------------------------------------------------

def test_defaults() -> None:
    config = load_config(None)
    assert config.http.listen == ("127.0.0.1", 8080)
    assert config.http.path == "/metrics"
    assert (config.agent.interval, config.agent.timeout) == (10.0, 5.0)
    assert config.global_tags == {}
    assert config.inputs.configured() == [("process", ProcessConfig()), ("python", PythonConfig())]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", ["process", "python"], id="empty-file"),
        pytest.param("[agent]\ninterval = '1s'\n", ["process", "python"], id="no-inputs-section"),
        pytest.param("[inputs]\n", [], id="empty-inputs-table"),
        pytest.param("inputs = {}\n", [], id="empty-inline-inputs"),
        pytest.param("[[inputs.python]]\n", ["python"], id="only-python"),
        pytest.param(
            "[[inputs.fields]]\nmeasurement = 'a'\nfields = {pid = 'os:getpid'}\n",
            ["fields"],
            id="only-fields",
        ),
    ],
)
def test_which_inputs_run(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text(text, encoding="utf-8")
    assert [name for name, _ in load_config(path).inputs.configured()] == expected


def test_config_is_immutable() -> None:
    config = load_config(None)
    with pytest.raises(ValueError):
        config.agent.interval = 1.0  # type: ignore[misc]


# --- files -------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.details == [("", "cannot read: No such file or directory")]
    assert info.value.lines() == [f"{path}: (file): cannot read: No such file or directory"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[agent\ninterval = '1s'\n", "(at line 1, column 7)", id="unclosed-table"),
        pytest.param("[agent]\ninterval = 10s\n", "(at line 2, column 14)", id="bare-duration"),
        pytest.param("[agent]\ninterval = 1\ninterval = 2\n", "Cannot overwrite a value",
                     id="duplicate-key"),
        pytest.param('[agent]\nprecision = "ns\n', "(at line 2, column 16)",
                     id="unterminated-string"),
    ],
)
def test_invalid_toml(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    ((key, message),) = info.value.details
    assert key == ""
    assert message.startswith("not valid TOML: ")
    assert problem in message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[global_tags]\ndc = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    ((key, message),) = info.value.details
    assert key == ""
    assert message.startswith("not valid TOML: ") and "utf-8" in message


def test_error_lines_name_file_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text('[agent]\ninterval = "soon"\n[http]\nlisten = "nowhere"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.lines() == [
        f"{path}: agent.interval: invalid duration 'soon': {BAD_UNITS}",
        f"{path}: http.listen: 'nowhere' has no port: {BAD_LISTEN}",
    ]


def test_read_config_data_without_file() -> None:
    assert read_config_data(None) == {}


class TestDefaultConfigPath:
    @pytest.fixture(autouse=True)
    def _isolated(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("TELEMON_CONFIG", raising=False)

    def test_nothing(self) -> None:
        assert default_config_path(None) is None

    def test_cwd_file(self, tmp_path: Path) -> None:
        (tmp_path / "telemon.toml").write_text("", encoding="utf-8")
        path = default_config_path(None)
        assert path is not None and path.resolve() == tmp_path / "telemon.toml"

    def test_env_var_before_cwd_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "telemon.toml").write_text("", encoding="utf-8")
        monkeypatch.setenv("TELEMON_CONFIG", "/etc/telemon/from-env.toml")
        assert default_config_path(None) == Path("/etc/telemon/from-env.toml")

    def test_env_var_naming_a_missing_file_is_still_used(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TELEMON_CONFIG", "/nonexistent/telemon.toml")
        assert default_config_path(None) == Path("/nonexistent/telemon.toml")

    def test_empty_env_var_is_ignored(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TELEMON_CONFIG", "")
        assert default_config_path(None) is None

    def test_explicit_before_env_and_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "telemon.toml").write_text("", encoding="utf-8")
        monkeypatch.setenv("TELEMON_CONFIG", "/etc/telemon/from-env.toml")
        assert default_config_path("other.toml") == Path("other.toml")


# --- telemon.example.toml ----------------------------------------------------

_COMMENTED = re.compile(r"^(\s*)#(?!#) ?")
_OPTION = re.compile(r'^\s*#\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*\S')
_TABLE = re.compile(r"^\s*#?\s*\[{1,2}[A-Za-z0-9_.]+\]{1,2}\s*$")
_DOC = re.compile(r"^\s*(#\s*)?##")
EXAMPLE_PATHS = ("password_file", "token_file", "tls_cert", "tls_key")


def uncomment(text: str) -> str:
    """Every line commented out with a single "#" made active; "##" lines stay."""
    return "\n".join(_COMMENTED.sub(r"\1", line) for line in text.splitlines()) + "\n"


# Options that exclude each other: a file shows both, and a test uncomments
# every option except one of each pair (the Telegraf sample.conf convention,
# "use either token or token_file").
EXCLUSIVE = {"password": "password_file", "token": "token_file"}


def _example_uncommented(tmp: Path, drop: tuple[str, ...] = ()) -> str:
    """The example with every option set but `drop`, its paths made readable files."""
    text = uncomment(EXAMPLE.read_text(encoding="utf-8"))
    for key in drop:
        text, count = re.subn(rf"^\s*{key}\s*=.*\n", "", text, flags=re.MULTILINE)
        assert count == 1, f"the example sets {key} {count} times"
    cert, key = make_certificate(_subdir(tmp, "certificate"))
    files = {
        "password_file": f"  {SECRET_PASSWORD}\n",
        "token_file": f"{SECRET_TOKEN}\n",
        "tls_cert": cert.read_text(encoding="utf-8"),
        "tls_key": key.read_text(encoding="utf-8"),
    }
    for key, content in files.items():
        if key in drop:
            continue
        (tmp / key).write_text(content, encoding="utf-8")
        text, count = re.subn(
            rf'^(\s*{key}\s*=\s*)".*"\s*$', rf'\g<1>"{tmp / key}"', text, flags=re.MULTILINE
        )
        assert count == 1, f"the example sets {key} {count} times"
    return text


def test_example_as_is_is_the_builtin_defaults() -> None:
    assert load_config(EXAMPLE) == load_config(None)


@pytest.mark.parametrize(
    "drop",
    [
        pytest.param(tuple(EXCLUSIVE.values()), id="inline-secrets"),
        pytest.param(tuple(EXCLUSIVE), id="secret-files"),
    ],
)
def test_example_with_every_option_uncommented_validates(
    tmp_path: Path, drop: tuple[str, ...]
) -> None:
    text = _example_uncommented(tmp_path, drop)
    path = tmp_path / "telemon.toml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    http = config.http
    assert http.username is not None
    if "password" in drop:
        assert http.basic_password == SECRET_PASSWORD
        assert http.bearer_token == SECRET_TOKEN
    else:
        raw = tomllib.loads(text)["http"]
        assert http.basic_password == raw["password"]
        assert http.bearer_token == raw["token"]
    assert (http.tls_cert, http.tls_key) == (tmp_path / "tls_cert", tmp_path / "tls_key")
    assert config.global_tags
    names = [name for name, _ in config.inputs.configured()]
    assert sorted(set(names)) == sorted(spec.name for spec in INPUTS)
    (fields,) = config.inputs.fields
    assert all(callable(f) for f in fields.fields.values())
    assert fields.fields["pid"]() == os.getpid()
    assert any(p.pattern for p in config.inputs.process)
    assert any(p.pid_file for p in config.inputs.process)
    for spec in INPUTS:
        assert any(table.tags for table in getattr(config.inputs, spec.name)), spec.name


def test_example_exclusive_options_are_refused_together(tmp_path: Path) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text(_example_uncommented(tmp_path, drop=("token",)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.details == [("http", "set password or password_file, not both")]


MODELS = [
    pytest.param("agent", AgentConfig, id="agent"),
    pytest.param("http", HttpConfig, id="http"),
    pytest.param("prometheus", PrometheusConfig, id="prometheus"),
    pytest.param("sink", SinkConfig, id="sink"),
    *(pytest.param(f"inputs.{spec.name}", spec.config, id=spec.name) for spec in INPUTS),
    pytest.param("outputs.influxdb", InfluxDBConfig, id="influxdb"),
    pytest.param("outputs.influxdb_v2", InfluxDBv2Config, id="influxdb_v2"),
]
# Credentials the example describes in "##" lines only: `password` and `token`
# may be set once in the file (the [http] ones), and a username needs a password.
UNSHOWN = {
    "outputs.influxdb": {"username", "password", "password_file", "tls_ca"},
    "outputs.influxdb_v2": {"token", "token_file", "tls_ca"},
    "inputs.docker": {"tls_ca", "tls_cert", "tls_key"},  # real certificates: shown in "##" lines
    "inputs.pharo": {"username", "password", "token", "token_file", "tls_ca"},
}


def _tables(data: dict[str, Any], path: str) -> list[dict[str, Any]]:
    node: Any = data
    for part in path.split("."):
        node = node.get(part, {})
    return node if isinstance(node, list) else [node]


@pytest.mark.parametrize(("path", "model"), MODELS)
def test_example_shows_every_option_at_its_default(
    path: str, model: type[Any], tmp_path: Path
) -> None:
    data = tomllib.loads(_example_uncommented(tmp_path))
    tables = _tables(data, path)
    shown = {key for table in tables for key in table}
    expected = set(model.model_fields) - UNSHOWN.get(path, set())
    assert shown == expected, f"[{path}]: the example's options differ"
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if field.is_required() or default is None or default == {}:
            continue  # no default to show (or an empty table): an example value is shown instead
        for table in tables:
            if name in table:
                value = _validate_one(model, name, table)
                assert value == default, f"{path}.{name} is not shown at its default"


def _validate_one(model: type[Any], name: str, table: dict[str, Any]) -> Any:
    """Option `name` of `table` as `model` reads it, beside the table's required options only."""
    required: dict[str, Any] = {
        key: table[key]
        for key, field in model.model_fields.items()
        if field.is_required() and key != name
    }
    return getattr(model.model_validate({**required, name: table[name]}), name)


# Keys every input takes, documented once for all (the example's INPUTS banner,
# the README's configuration table).
COMMON_INPUT_KEYS = {"interval", "timeout", "tags"}



def _in_sample(sample: str, name: str, key: str) -> bool:
    """`key` set as an option, as a table, or (UNSHOWN keys) in a "##" line."""
    option = rf"^\s*#?\s*{key}\s*="
    table = rf"^\s*#?\s*\[inputs\.{name}\.{key}\]"
    explained = rf"^\s*#?\s*##.*\b{key}\s*="
    return any(re.search(p, sample, re.MULTILINE) for p in (option, table, explained))


@pytest.mark.parametrize("spec", INPUTS, ids=[spec.name for spec in INPUTS])
def test_every_input_key_is_in_its_sample_and_reference(spec: Any) -> None:
    """Each key is set in the input's sample (or, when UNSHOWN, in its "##" lines) and
    named in its README reference."""
    for key in spec.config.model_fields:
        assert _in_sample(spec.sample, spec.name, key), f"{spec.name}.{key}: not in its sample"
        if key not in COMMON_INPUT_KEYS:
            assert re.search(rf"\b{key}\b", spec.reference), f"{spec.name}.{key}: not in README"


def test_example_every_option_is_explained() -> None:
    """Each commented-out option sits under a "##" line (Telegraf sample.conf style)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    options = 0
    for number, line in enumerate(lines):
        if not _OPTION.match(line):
            continue
        options += 1
        above = number - 1
        while above >= 0 and (_OPTION.match(lines[above]) or _TABLE.match(lines[above])):
            above -= 1  # options explained together, and their table header
        assert above >= 0 and _DOC.match(lines[above]), f"line {number + 1} has no '##' above it"
    assert options >= 25


def test_example_single_hash_lines_are_all_toml() -> None:
    """Only "##" lines explain: every "#" line is an option, a table or blank."""
    for number, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        if _COMMENTED.match(line) and not _DOC.match(line):
            active = _COMMENTED.sub("", line).strip()
            assert (
                not active or _OPTION.match(line) or _TABLE.match(line)
            ), f"line {number}: {line!r} is neither an option nor a table"


@pytest.mark.parametrize("key", ["tls_ca", "tls_cert", "tls_key"])
def test_docker_tls_path_the_os_refuses_to_look_at_names_the_key(
    tmp_path: Path, key: str
) -> None:
    """ENAMETOOLONG (like EACCES on a parent directory) is one line naming the key."""
    path = "/" + "x" * 300
    cert, tls_key = make_certificate(tmp_path)
    table = {"endpoint": "tcp://127.0.0.1:2376", "tls_cert": str(cert), "tls_key": str(tls_key)}
    table[key] = path
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"docker": [table]}})
    reason = f"{key}: cannot read {path}: File name too long"
    assert info.value.details == [("inputs.docker.0", reason)]


@pytest.mark.parametrize("public", [0, 65536, 99999, -1])
def test_docker_published_port_out_of_range_is_a_label_error(public: int) -> None:
    """An engine's impossible PublicPort is a discovery error, not an [[inputs.pharo]] crash."""
    from telemon.inputs.docker import PharoLabelError, pharo_endpoint

    item = {
        "Id": "x",
        "Labels": {"telemon.pharo.port": "8080"},
        "Ports": [{"PrivatePort": 8080, "PublicPort": public, "IP": "0.0.0.0"}],
    }
    with pytest.raises(PharoLabelError, match="reachable on no network and not published"):
        pharo_endpoint(item)
    item["Ports"] = [{"PrivatePort": 8080, "PublicPort": 18080, "IP": "::"}]
    assert pharo_endpoint(item) == ("http://127.0.0.1:18080/metrics", "auto")


def test_docker_stats_timeout_is_checked_against_the_agents_timeout() -> None:
    """The default stats_timeout (3 s) must also fit a shorter [agent] timeout."""
    errors = config_errors({"agent": {"timeout": "2s"}, "inputs": {"docker": [{}]}})
    assert errors == [
        ("", "inputs.docker.0.stats_timeout must be shorter than agent.timeout"
         " (or set the table's own timeout)")
    ]  # fmt: skip
    fits = {"agent": {"timeout": "2s"}, "inputs": {"docker": [{"stats_timeout": "1s"}]}}
    assert parse_config(fits).inputs.docker[0].stats_timeout == 1.0
    own = {"agent": {"timeout": "2s"}, "inputs": {"docker": [{"timeout": "10s"}]}}
    assert parse_config(own).inputs.docker[0].timeout == 10.0


def test_influxdb_v2_output_without_its_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without influxdb-client, `check` refuses: else every flush would fail at run time."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "influxdb_client" else real(name, *args),
    )
    errors = config_errors({"outputs": {"influxdb_v2": [{"bucket": "b"}]}})
    assert errors == [
        ("outputs.influxdb_v2.0", 'needs the influxdb-client package: pip install -e ".[influxdb]"')
    ]
