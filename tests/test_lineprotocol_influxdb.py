"""Encoded lines written to a real InfluxDB 1.x and read back: accepted, and stored as encoded."""

from __future__ import annotations

import dataclasses
import itertools
import operator
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influx import CASES, Case, InfluxDB, Line, parse_line

from telemon.lineprotocol import LineEncoder
from telemon.metric import Metric

NS_PER_UNIT = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def read_back(influxdb: InfluxDB, db: str) -> Line:
    """The only point in `db`, with its tags and typed fields, as InfluxDB returns them."""
    (series,) = influxdb.series(db, "SELECT * FROM /.*/", exact=True)
    (row,) = series["values"]
    columns = dict(zip(series["columns"], row, strict=True))
    tag_keys = [key for s in influxdb.series(db, "SHOW TAG KEYS") for (key,) in s["values"]]
    types = {key: kind for s in influxdb.series(db, "SHOW FIELD KEYS") for key, kind in s["values"]}
    fields = {key: _typed(columns[key], kind) for key, kind in types.items()}
    tags = {key: columns[key] for key in tag_keys}
    return Line(series["name"], tags, fields, types, int(columns["time"]))


def _typed(value: Any, kind: str) -> Any:
    """A JSON value (numbers as Decimal) as the Python value of an InfluxDB field type."""
    convert = {"integer": int, "float": float, "string": str, "boolean": bool}[kind]
    assert isinstance(value, bool if kind == "boolean" else str if kind == "string" else Decimal)
    return convert(value)


def comparable(line: Line) -> tuple[Any, ...]:
    """A Line with float fields as repr, so -0.0 differs from 0.0."""
    fields = {k: repr(v) if isinstance(v, float) else v for k, v in line.fields.items()}
    return line.measurement, line.tags, fields, line.field_types, line.timestamp


def database_for(case: Case) -> str:
    """One database per case, so the field types of different cases never meet."""
    return "case_" + case.id.replace("-", "_")


@pytest.mark.parametrize("case", [c for c in CASES if c.line], ids=lambda c: c.id)
def test_case_is_stored_as_encoded(influxdb: InfluxDB, case: Case) -> None:
    """InfluxDB takes the case's line and stores exactly its values, types, tags and time."""
    body = LineEncoder(case.options).encode_all([case.metric])  # == the golden line (other module)
    expected = parse_line(body.decode("utf-8"))
    assert not expected.tags.keys() & expected.fields.keys(), (
        "a case needs distinct tag and field keys"
    )
    db = influxdb.create_database(database_for(case))
    status, text = influxdb.write(db, body, case.options.precision)
    if "unsigned" in expected.field_types.values():
        assert status == 400 and "invalid number" in text, text
        return  # InfluxDB 1.x OSS has no unsigned fields: uint_support is for 2.x and Telegraf
    assert (status, text) == (204, "")
    stored = read_back(influxdb, db)
    if expected.timestamp is None:
        stored = dataclasses.replace(stored, timestamp=None)  # the server's clock
    else:
        ns = expected.timestamp * NS_PER_UNIT[case.options.precision]
        expected = dataclasses.replace(expected, timestamp=ns)
    assert comparable(stored) == comparable(expected)


# --- arbitrary text --------------------------------------------------------------------

NASTY = list('"\\,= \n\r\t\x00#?é😀\ud800\udfff')
CHARS = st.one_of(st.sampled_from(NASTY), st.characters(exclude_categories=()))
TEXT = st.text(CHARS, max_size=10)
# Few characters, so that different keys often sanitize to the same written key.
CLASHING_KEYS = st.text(
    st.sampled_from(["a", "\\", "\x00", "\n", " ", "=", "?", "\ud800"]), max_size=3
)
LONG_TEXT = st.builds(
    operator.mul, st.text(CHARS, min_size=1, max_size=2), st.integers(20_000, 70_000)
)
START_NS = 1_704_067_200_000_000_000  # 2024-01-01: every example in one shard
NEXT_NS = itertools.count(START_NS)
_REMOVED = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def stored_string(value: str) -> str:
    """What InfluxDB must hold: UTF-8 with `?` for lone surrogates, cut at 64 KiB."""
    return value.encode("utf-8", "replace")[:65_536].decode("utf-8", "ignore")


def unusable(name: str) -> bool:
    """Nothing left of a name but backslashes once removed control characters are gone."""
    return re.fullmatch(r"\\*", _REMOVED.sub("", name)) is not None


@pytest.fixture(scope="module")
def property_db(influxdb: InfluxDB) -> str:
    """One database for every example: all fields are strings, so types cannot conflict."""
    return influxdb.create_database("lp_property")


@settings(max_examples=200, deadline=None)
@given(
    measurement=TEXT,
    tags=st.dictionaries(st.one_of(TEXT, CLASHING_KEYS), TEXT, max_size=4),
    key=TEXT,
    value=st.one_of(TEXT, LONG_TEXT),
)
def test_influxdb_accepts_any_encoded_metric(
    influxdb: InfluxDB,
    property_db: str,
    measurement: str,
    tags: dict[str, str],
    key: str,
    value: str,
) -> None:
    """Arbitrary names, tags and strings give a line InfluxDB accepts, and the string survives."""
    time_ns = next(NEXT_NS)  # unique: finds this example's point
    encoder = LineEncoder()
    body = encoder.encode_all([Metric(measurement, tags, {key: value}, time_ns)])
    if not body:
        assert unusable(measurement) or unusable(key)
        return
    assert influxdb.write(property_db, body) == (204, "")
    query = f"SELECT *::field FROM /.*/ WHERE time = {time_ns}"
    (series,) = influxdb.series(property_db, query)
    (row,) = series["values"]
    stored = dict(zip(series["columns"], row, strict=True))
    del stored["time"]
    line = parse_line(body.decode("utf-8"))
    assert series["name"] == line.measurement
    (field_key,) = line.fields
    assert {k: v for k, v in stored.items() if v is not None} == {field_key: stored_string(value)}
