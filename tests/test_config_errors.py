"""`telemon check` reports every problem in one run, suggests keys, and types are strict."""

from __future__ import annotations

from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from telemon.config import Config, ConfigError, parse_config
from telemon.inputs import InputsConfig
from telemon.outputs import OutputsConfig


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.toml")
    return info.value.details


# --- every problem in one run ------------------------------------------------

FIVE_MISTAKES: dict[str, Any] = {
    "agent": {"precision": "1h", "omit_timestamp": True},
    "http": {"listen": "127.0.0.1:99999", "tls_cert": "/nonexistent/cert.pem"},
    "inputs": {"pharo": [{"url": ["http://127.0.0.1:8079/metrics"]}]},
    "outputs": {"influxdb": [{"urls": ["http://127.0.0.1:8086"]}]},
}


def test_five_mistakes_reported_in_one_run() -> None:
    assert errors(FIVE_MISTAKES) == [
        ("agent.precision", "Input should be 'ns', 'us', 'ms' or 's'"),
        ("http.listen", "port 99999 is not 0-65535"),
        ("inputs.pharo.0.urls", "required key is missing"),
        ("inputs.pharo.0.url", "unknown key; did you mean 'urls'?"),
        # Checks that pydantic runs only once the keys they read are valid:
        ("http", "TLS needs both tls_cert and tls_key"),
        ("", "outputs need timestamps: set agent.omit_timestamp = false"),
    ]


def test_every_check_of_a_table_reported() -> None:
    http = {"username": "a:b", "token": " ", "tls_key": "/nonexistent/key.pem"}
    assert errors({"http": http}) == [
        ("http", "token must not be empty (leave it out to disable auth)"),
        ("http", "username must not contain ':' (it separates user and password)"),
        ("http", "basic auth needs both username and password (or password_file)"),
        ("http", "TLS needs both tls_cert and tls_key"),
    ]


def test_every_check_across_sections_reported() -> None:
    data = {
        "agent": {"omit_timestamp": True, "timeout": "2s"},
        "sink": {"enabled": True, "paths": ["/metrics"]},
        "inputs": {"docker": [{}, {}]},
        "outputs": {"influxdb": [{}]},
    }
    assert errors(data) == [
        ("", "sink.paths: '/metrics' is already http.path"),
        ("", "inputs.docker.0.stats_timeout must be shorter than agent.timeout"
             " (or set the table's own timeout)"),
        ("", "inputs.docker.1.stats_timeout must be shorter than agent.timeout"
             " (or set the table's own timeout)"),
        ("", "outputs need timestamps: set agent.omit_timestamp = false"),
    ]


def test_a_check_is_not_run_on_a_default_standing_in_for_a_bad_key() -> None:
    # agent.timeout is wrong: the docker table's stats_timeout is not compared with the default.
    assert errors({"agent": {"timeout": "soon"}, "inputs": {"docker": [{}]}}) == [
        ("agent.timeout", "invalid duration 'soon': use units ns, us, ms, s, m, h (\"10s\")"),
    ]
    # username is not a string: "basic auth needs both" would only be a consequence.
    assert errors({"http": {"username": 5, "password": "p"}}) == [
        ("http.username", "expected a string, got 5"),
    ]


def test_a_broken_output_still_counts_as_an_output() -> None:
    data = {
        "agent": {"omit_timestamp": True},
        "outputs": {"influxdb": [{"username": "u"}]},
    }
    assert errors(data) == [
        ("outputs.influxdb.0",
         "basic auth needs both username and password (or password_file)"),
        ("", "outputs need timestamps: set agent.omit_timestamp = false"),
    ]


def test_tables_after_a_removed_one_keep_their_index() -> None:
    pharo = [{"urls": ["http://a/"], "format": "nope"}, {}, {"urls": ["http://b/"], "x": 1}]
    found = errors({"inputs": {"pharo": pharo}})
    assert [key for key, _ in found] == [
        "inputs.pharo.0.format", "inputs.pharo.1.urls", "inputs.pharo.2.x",
    ]


def test_the_document_given_is_not_changed() -> None:
    data = {"agent": {"precision": "1h"}, "inputs": {"pharo": [{}]}}
    errors(data)
    assert data == {"agent": {"precision": "1h"}, "inputs": {"pharo": [{}]}}


# --- did you mean -------------------------------------------------------------

INPUT_NAMES = ", ".join(InputsConfig.model_fields)
OUTPUT_NAMES = ", ".join(OutputsConfig.model_fields)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"inputs": {"pharo": [{"url": "x"}]}}, "unknown key; did you mean 'urls'?"),
        ({"agent": {"intervall": "1s"}}, "unknown key; did you mean 'interval'?"),
        ({"http": {"zzz": 1}}, "unknown key"),
        ({"inputs": {"pharos": [{}]}}, f"unknown input; known inputs: {INPUT_NAMES};"
                                       " did you mean 'pharo'?"),
        ({"inputs": {"procstat": [{}]}}, f"unknown input; known inputs: {INPUT_NAMES};"
                                         " did you mean 'process'?"),
        ({"outputs": {"file": [{}]}}, f"unknown output; known outputs: {OUTPUT_NAMES}"),
        ({"outputs": {"influxdb2": [{}]}}, f"unknown output; known outputs: {OUTPUT_NAMES};"
                                           " did you mean 'influxdb'?"),
        ({"outputs": {"influxdb": [{"url": "http://x"}]}}, "unknown key; did you mean 'urls'?"),
        ({"sink": {"path": ["/x"]}}, "unknown key; did you mean 'paths'?"),
    ],
)
def test_did_you_mean(data: dict[str, Any], expected: str) -> None:
    assert expected in [message for _, message in errors(data)]


def test_a_table_written_for_an_array_of_tables() -> None:
    assert errors({"inputs": {"process": {"pattern": "x"}}}) == [
        ("inputs.process",
         "expected an array of tables: write [[inputs.process]], not [inputs.process]"),
    ]


# --- strict types -------------------------------------------------------------


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for inner in _inner(field.annotation):
            _models(inner, seen)


def _inner(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _inner(arg)]


def _all_models() -> list[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    _models(Config, seen)
    return sorted(seen, key=lambda m: m.__qualname__)


def _fields_of(kind: type) -> list[tuple[type[BaseModel], str]]:
    found = []
    for model in _all_models():
        for name, field in model.model_fields.items():
            annotation = field.annotation
            types = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
            if kind in types:
                found.append((model, name))
    return found


BOOL_FIELDS = _fields_of(bool)
INT_FIELDS = _fields_of(int)


def test_the_registry_is_walked() -> None:
    names = {m.__name__ for m in _all_models()}
    assert {"PharoConfig", "DockerConfig", "InfluxDBConfig", "InfluxDBv2Config", "SinkConfig",
            "HttpConfig"} <= names
    assert len(BOOL_FIELDS) >= 10 and len(INT_FIELDS) >= 8


def _refused(model: type[BaseModel], name: str, value: Any) -> bool:
    try:
        model.model_validate({name: value})
    except ValidationError as exc:
        return any(e["loc"][:1] == (name,) for e in exc.errors())
    return False


@pytest.mark.parametrize(("model", "name"), BOOL_FIELDS,
                         ids=[f"{m.__name__}.{n}" for m, n in BOOL_FIELDS])
@pytest.mark.parametrize("value", ["yes", "true", 1, 0])
def test_booleans_are_toml_booleans(model: type[BaseModel], name: str, value: Any) -> None:
    assert _refused(model, name, value)
    assert not _refused(model, name, True)


@pytest.mark.parametrize(("model", "name"), INT_FIELDS,
                         ids=[f"{m.__name__}.{n}" for m, n in INT_FIELDS])
@pytest.mark.parametrize("value", ["5", 5.0, True])
def test_integers_are_toml_integers(model: type[BaseModel], name: str, value: Any) -> None:
    assert _refused(model, name, value)


@pytest.mark.parametrize("value", ["10s", 10, 2.5, "1m30s"])
def test_durations_still_take_strings_and_seconds(value: Any) -> None:
    assert parse_config({"agent": {"interval": value}}).agent.interval > 0


def test_strict_messages_in_toml_words() -> None:
    assert errors({"http": {"gzip": "yes"}, "sink": {"max_series": 1.5}}) == [
        ("http.gzip", 'expected a boolean (true or false), got "yes"'),
        ("sink.max_series", "expected an integer, got 1.5"),
    ]


def test_paths_and_arrays_from_toml_still_accepted() -> None:
    config = parse_config({"sink": {"paths": ["/a", "/b"]},
                           "inputs": {"process": [{"pid_file": "/run/x.pid"}]}})
    assert config.sink.paths == ("/a", "/b")
    assert str(config.inputs.process[0].pid_file) == "/run/x.pid"
    assert errors({"inputs": {"process": [{"pid_file": 5}]}}) == [
        ("inputs.process.0.pid_file", "expected a path (a string)"),
    ]
