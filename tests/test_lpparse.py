"""The line-protocol reader: strict syntax, error positions, round trips, tolerant mode."""

from __future__ import annotations

import math
import pickle
import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from influx import CASES, Case, parse_line

from telemon.lineprotocol import MAX_TIME_NS, MIN_TIME_NS, LineEncoder, _sanitize
from telemon.lpparse import (
    DUPLICATE_TAGS,
    TIME_OUTSIDE_RANGE,
    UNSIGNED_OFF,
    LineProtocolError,
    ParsedLine,
    iter_lines_partial,
    parse_lines,
    parse_lines_partial,
    parse_lines_tolerant,
    unescape_key,
    unescape_measurement,
)
from telemon.metric import Metric

SEED_TAGGED = (
    "pharo,host=telemon-1 uptime=2023314,oldSpace=139036448,youngSpace=5649200,"
    "memory=147988480,memoryFree=140242128,fullGCs=4,fullGCTime=660,incrGCs=14291,"
    "incrGCTime=12899,tenureCount=696589"
)
SEED_USER_FIELDS = (
    "pharo uptime=2548014,oldSpace=139036448,youngSpace=3651736,memory=147988480,"
    "memoryFree=142239592,fullGCs=4,fullGCTime=660,incrGCs=18503,incrGCTime=16632,"
    "tenureCount=747211,meaning=42,newMeaning=84"
)
T = 1_700_000_000_123_456_789
HUGE = "9" * 5000  # past int()'s 4300-digit limit
LONG = "9" * 400  # past float(int)'s range, within int()'s limit


def one(text: str, **options: Any) -> ParsedLine:
    """The only line of `text`."""
    (line,) = parse_lines(text, **options)
    return line


def error_of(text: str, **options: Any) -> LineProtocolError:
    with pytest.raises(LineProtocolError) as info:
        parse_lines(text, **options)
    return info.value


def typed(fields: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Fields with their types, in order (1 == 1.0 == True in Python)."""
    return [(k, type(v).__name__, v) for k, v in fields.items()]


# --- the seed's lines -------------------------------------------------------------------


def test_seed_line_strict_reads_untyped_numbers_as_floats() -> None:
    """Without suffixes every number is a float, as InfluxDB stored Telemon's values."""
    line = one(SEED_TAGGED)
    assert line.measurement == "pharo"
    assert line.tags == {"host": "telemon-1"}
    assert line.time_ns is None
    assert list(line.fields) == [
        "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
        "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
    ]  # fmt: skip
    assert all(type(v) is float for v in line.fields.values())
    assert line.fields["uptime"] == 2023314.0


def test_seed_line_tolerant_reads_integral_numbers_as_ints() -> None:
    line = one(SEED_USER_FIELDS, tolerant=True)
    assert line.measurement == "pharo" and line.tags == {}
    assert line.fields["meaning"] == 42 and line.fields["newMeaning"] == 84
    assert all(type(v) is int for v in line.fields.values())


# --- strict syntax (reference section 1) ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "measurement", "tags"),
    [
        ("cpu\\ load\\,total,host=a v=1", "cpu load,total", {"host": "a"}),
        ("a=b v=1", "a=b", {}),  # `=` is legal unescaped in a measurement
        ("m\\=x v=1", "m\\=x", {}),  # measurements unescape only `\,` and `\ `
        ("m,k\\,e\\ y\\==v\\,a\\ l\\=ue v=1", "m", {"k,e y=": "v,a l=ue"}),
        ("m,t=a\\\\b v=1", "m", {"t": "a\\\\b"}),  # other backslashes stay literal
        ("m,t=C:\\dir\\x v=1", "m", {"t": "C:\\dir\\x"}),
        ("m,t=a\\\\\\,b v=1", "m", {"t": "a\\\\,b"}),  # `\\` then `\,`
        ("m,t=\\=x v=1", "m", {"t": "=x"}),
        ("m,t=a=b v=1", "m", {"t": "a=b"}),  # `=` in a tag value
        ('m"q,q="x" v=1', 'm"q', {"q": '"x"'}),  # quotes in names are literal
        ("温度,ключ=значение v=1", "温度", {"ключ": "значение"}),
        ("m,t=a\\nb v=1", "m", {"t": "a\\nb"}),  # a written `\n` stays two characters
    ],
)
def test_names_and_escapes(text: str, measurement: str, tags: dict[str, str]) -> None:
    line = one(text)
    assert (line.measurement, line.tags) == (measurement, tags)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", 1.0),
        ("-1", -1.0),
        ("1.0", 1.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("-1.2e+78", -1.2e78),
        ("1E-3", 0.001),
        ("-0.0", -0.0),
        ("1i", 1),
        ("-9223372036854775808i", -(2**63)),
        ("9223372036854775807i", 2**63 - 1),
        ("0u", 0),
        ("18446744073709551615u", 2**64 - 1),
        ("0" * 5000 + "42i", 42),  # leading zeros do not count toward the digit bound
        ("-" + "0" * 5000 + "9223372036854775808i", -(2**63)),
        ("0" * 5000 + "18446744073709551615u", 2**64 - 1),
        ('"a b,c=d"', "a b,c=d"),
        ('"say \\"hi\\" \\\\ C:\\path"', 'say "hi" \\ C:\\path'),
        ('"a\\nb"', "a\\nb"),  # only \" and \\ are unescaped
        ('""', ""),
        ('"true"', "true"),
        ('"line1\nline2\r\nend"', "line1\nline2\r\nend"),  # raw newlines in strings
        *[(b, True) for b in ("t", "T", "true", "True", "TRUE")],
        *[(b, False) for b in ("f", "F", "false", "False", "FALSE")],
    ],
)
def test_field_values(raw: str, value: Any) -> None:
    (got,) = one(f"m v={raw}").fields.values()
    assert (type(got), got) == (type(value), value)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("tRUE", "invalid field value 'tRUE'"),
        ("NaN", "invalid field value 'NaN'"),
        ("inf", "invalid field value 'inf'"),
        ("-Infinity", "invalid field value '-Infinity'"),
        ("1e999", "float out of range"),
        ("9223372036854775808i", "integer out of range"),
        ("-9223372036854775809i", "integer out of range"),
        ("18446744073709551616u", "unsigned integer out of range"),
        (HUGE + "i", "integer out of range"),
        ("-" + HUGE + "i", "integer out of range"),
        ("1" + "0" * 19 + "i", "integer out of range"),
        (HUGE + "u", "unsigned integer out of range"),
        ("1" + "0" * 20 + "u", "unsigned integer out of range"),
        (HUGE, "float out of range"),
        ("-1u", "invalid field value '-1u'"),
        ("1.5i", "invalid field value '1.5i'"),
        ("+1", "invalid field value '+1'"),
        ("0x10", "invalid field value '0x10'"),
        ("abc", "invalid field value 'abc'"),
        ("'abc'", "invalid field value"),
        ('"abc', "unterminated string"),
        ('"abc"x', "unexpected 'x'"),
    ],
)
def test_bad_field_values(raw: str, reason: str) -> None:
    error = error_of(f"m v={raw}")
    assert reason in error.reason
    assert (error.line_number, error.column) == (1, 5 if reason != "unexpected 'x'" else 10)


def test_duplicate_field_keys_keep_the_last_value() -> None:
    assert typed(one("m a=1i,b=2i,a=3i").fields) == [("a", "int", 3), ("b", "int", 2)]


def test_a_repeated_tag_key_is_duplicate_tags_located_at_the_repeat() -> None:
    """InfluxDB 1.x refuses the line (``duplicate tags``); keeping either value made another
    series than the client's."""
    error = error_of("m,b=1,a=2,b=3 v=1")
    assert (error.reason, error.line_number, error.column) == (DUPLICATE_TAGS, 1, 11)
    assert error_of("m,k\\ =1,k\\ =2 v=1").reason == DUPLICATE_TAGS  # as unescaped
    lines, errors = parse_lines_partial("ok v=1\nm,t=a,t=a v=1\nok2 v=2\n")
    assert [line.measurement for line in lines] == ["ok", "ok2"]
    assert [(e.reason, e.line_number, e.column) for e in errors] == [(DUPLICATE_TAGS, 2, 7)]


def test_tolerant_mode_keeps_the_last_of_a_repeated_tag() -> None:
    [line] = parse_lines("m,b=1,a=2,b=3 v=1", tolerant=True)
    assert line.tags == {"b": "3", "a": "2"}


def test_unsigned_values_are_errors_when_unsigned_is_off() -> None:
    body = "ok v=1\nu x=5u,y=1i\nok2 v=2\n"
    lines, errors = parse_lines_partial(body, unsigned=False)
    assert [line.measurement for line in lines] == ["ok", "ok2"]
    assert [(e.reason, e.line_number, e.column) for e in errors] == [(UNSIGNED_OFF, 2, 5)]
    [(batch, batch_errors)] = list(iter_lines_partial(body, unsigned=False))
    assert ([line.measurement for line in batch], len(batch_errors)) == (["ok", "ok2"], 1)
    assert parse_lines_partial(body)[0][1].fields == {"x": 5, "y": 1}  # on by default


@pytest.mark.parametrize(
    ("written", "measurement", "key"),
    [("a\\,b\\ c", "a,b c", "a,b c"), ("k\\=v", "k\\=v", "k=v"), ("a\\\\b", "a\\\\b", "a\\\\b")],
)
def test_unescape_reads_names_as_lines_do(written: str, measurement: str, key: str) -> None:
    assert unescape_measurement(written) == measurement
    assert unescape_key(written) == key
    assert one(f"{written},{written}=x v=1").measurement == measurement
    assert one(f"m,{written}=x v=1").tags == {key: "x"}


@pytest.mark.parametrize(
    ("text", "precision", "time_ns"),
    [
        (f"m v=1 {T}", "ns", T),
        ("m v=1 -1000000001", "ns", -1_000_000_001),
        ("m v=1 1700000000123456", "us", 1_700_000_000_123_456_000),
        ("m v=1 1700000000123", "ms", 1_700_000_000_123_000_000),
        ("m v=1 1700000000", "s", 1_700_000_000_000_000_000),
        ("m v=1 0", "s", 0),
        ("m v=1", "s", None),
        ("m v=1 9223372036854775806", "ns", 2**63 - 2),
        ("m v=1 -9223372036854775806", "ns", -(2**63) + 2),
        ("m v=1 9223372036", "s", 9_223_372_036_000_000_000),
        ("m v=1 " + "0" * 5000 + "17", "s", 17_000_000_000),
    ],
)
def test_timestamps(text: str, precision: str, time_ns: int | None) -> None:
    assert one(text, precision=precision).time_ns == time_ns


@pytest.mark.parametrize(
    ("text", "precision", "reason"),
    [
        ("m v=1 1.5", "ns", "invalid timestamp '1.5'"),
        ('m v=1 "1"', "ns", "invalid timestamp"),
        # InfluxDB refuses the two lowest and the highest int64 (in ns, after precision).
        ("m v=1 9223372036854775807", "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 -9223372036854775807", "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 -9223372036854775808", "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 9223372036854775808", "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 9223372037", "s", TIME_OUTSIDE_RANGE),
        ("m v=1 9223372036854776", "ms", TIME_OUTSIDE_RANGE),
        ("m v=1 " + HUGE, "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 -" + HUGE, "s", TIME_OUTSIDE_RANGE),
        ("m v=1 " + "1" + "0" * 20, "ns", TIME_OUTSIDE_RANGE),
        ("m v=1 12 13", "ns", "expected end of line"),
    ],
)
def test_bad_timestamps(text: str, precision: str, reason: str) -> None:
    assert reason in error_of(text, precision=precision).reason


def test_unknown_precision_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown precision 'h'"):
        parse_lines("m v=1", precision="h")


def test_comments_blank_lines_crlf_and_spacing() -> None:
    text = "# a comment\r\n\r\n  m,t=a  v=1i,w=2i   123  \r\n\t# another\n\nn x=t\n  \n"
    assert parse_lines(text) == [
        ParsedLine("m", {"t": "a"}, {"v": 1, "w": 2}, 123),
        ParsedLine("n", {}, {"x": True}, None),
    ]


def test_a_hash_inside_a_line_is_not_a_comment() -> None:
    assert one("m#x v=1").measurement == "m#x"


def test_strict_mode_ends_lines_only_at_lf() -> None:
    """As in Telegraf, a bare CR is no line end: a comment keeps it, a string holds it."""
    assert parse_lines("# a\rb\nm v=1") == [ParsedLine("m", {}, {"v": 1.0}, None)]
    assert one('m s="x\ry" 1').fields == {"s": "x\ry"}
    error = error_of('a s="x\ry" 1\nb v=')
    assert (error.line_number, error.column, error.line) == (2, 5, "b v=")


@pytest.mark.parametrize("text", ["", "\n", "# only\n# comments", "\r\n  \n"])
def test_nothing_to_read_is_an_empty_list(text: str) -> None:
    assert parse_lines(text) == []
    assert parse_lines(text, tolerant=True) == []


def test_one_bad_line_fails_the_whole_body_in_strict_mode() -> None:
    with pytest.raises(LineProtocolError) as info:
        parse_lines("a v=1\nb v=2\nc v=\nd v=4\n")
    assert info.value.line_number == 3


# --- error positions and messages --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line_number", "column", "reason"),
    [
        ("cpu,host=a usage=", 1, 18, "expected field value"),
        ("ok v=1\nok v=2\ncpu,host=a usage=", 3, 18, "expected field value"),
        ("cpu,host=a usage=\r\nok v=1", 1, 18, "expected field value"),
        ("m", 1, 2, "expected fields"),
        ("m ", 1, 3, "expected fields"),
        ("m,host=a", 1, 9, "expected fields"),
        ("host=a\\ value=1", 1, 16, "expected fields"),  # a trailing backslash escapes the space
        (",t=a v=1", 1, 1, "expected measurement"),
        ("m, v=1", 1, 3, "expected tag key"),
        ("m,t v=1", 1, 4, "expected '=' after tag key"),
        ("m,t= v=1", 1, 5, "expected tag value"),
        ("m,=a v=1", 1, 3, "expected tag key"),
        ("m v", 1, 4, "expected '=' after field key"),
        ("m =1", 1, 3, "expected field key"),
        ("m v=1,", 1, 7, "expected field key"),
        ("m v=1, w=2", 1, 7, "expected field key"),
        ("m v=1\rn v=2", 1, 6, "CR without LF"),
        ("m\fx v=1", 1, 2, "unexpected '\\x0c'"),
        ('ok v=1\nm s="two\nlines" 1 2\n', 3, 10, "expected end of line"),
        ('m s="a\nb",v=\n', 2, 6, "expected field value"),
        ("m v=1 123x", 1, 7, "invalid timestamp '123x'"),
    ],
)
def test_error_positions(text: str, line_number: int, column: int, reason: str) -> None:
    error = error_of(text)
    assert (error.line_number, error.column) == (line_number, column), str(error)
    assert error.reason.startswith(reason)


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        (f"m f={HUGE}i", 5, "integer out of range"),
        (f"m f={HUGE}u", 5, "unsigned integer out of range"),
        (f"m f=1 {HUGE}", 7, TIME_OUTSIDE_RANGE),
        (f"m,t=a f=1i,g={HUGE}i 1", 14, "integer out of range"),
    ],
)
def test_huge_numbers_are_located_errors(text: str, column: int, reason: str) -> None:
    """A number of any length is a LineProtocolError, never int()'s or float()'s own."""
    error = error_of("ok v=1\n" + text + "\n")
    assert (error.line_number, error.column, error.reason) == (2, column, reason)
    assert len(str(error)) < 300


@pytest.mark.parametrize("tail", ["x", ".5x", "e5x", "s2x"])
def test_a_long_run_of_digits_is_read_in_linear_time(tail: str) -> None:
    """A number that fails to match must not make the regex try every split of its digits."""
    text = "m f=" + "9" * 30_000 + tail
    started = time.perf_counter()
    error_of(text)
    parse_lines_tolerant(text)
    assert time.perf_counter() - started < 2


def test_error_message_is_one_line_naming_position_reason_and_line() -> None:
    error = error_of("a v=1\nb v=2\ncpu,host=a usage=\nd v=4")
    assert str(error) == "line 3, column 18: expected field value: 'cpu,host=a usage='"
    assert error.line == "cpu,host=a usage="
    assert error.field is None
    assert isinstance(error, ValueError)


def test_error_line_is_cut_at_200_characters_and_stays_one_line() -> None:
    error = error_of("m,t=" + "x" * 500 + " v=\tbad\n")
    assert error.line == "m,t=" + "x" * 196
    assert "\n" not in str(error) and "\t" not in str(error)


def test_error_survives_pickling() -> None:
    error = error_of("m v=")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line_number, copy.column, copy.line, copy.reason, str(copy)) == (
        error.line_number, error.column, error.line, error.reason, str(error),
    )  # fmt: skip


# --- round trips through the encoder ----------------------------------------------------


def as_read(line: ParsedLine) -> tuple[Any, ...]:
    """What the independent reader in tests/influx.py would say, for comparison."""
    types = {bool: "boolean", int: "integer", float: "float", str: "string"}
    return (
        line.measurement,
        line.tags,
        line.fields,
        {k: types[type(v)] for k, v in line.fields.items()},
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.line], ids=lambda c: c.id)
def test_golden_lines_read_back(case: Case) -> None:
    """Every golden line parses as the independent reader reads it, timestamps scaled."""
    line = one(case.line, precision=case.options.precision)
    expected = parse_line(case.line)
    field_types = {k: "integer" if t == "unsigned" else t for k, t in expected.field_types.items()}
    assert as_read(line) == (expected.measurement, expected.tags, expected.fields, field_types)
    scale = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}[case.options.precision]
    assert line.time_ns == (None if expected.timestamp is None else expected.timestamp * scale)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.line and c.id in {"types", "int64-bounds", "float-negative-zero",
                                               "float-exponent-small", "string-raw-newlines-kept",
                                               "unicode-unchanged", "field-key-specials",
                                               "tag-key-and-value-specials"}],
    ids=lambda c: c.id,
)  # fmt: skip
def test_unsanitized_golden_metrics_come_back_unchanged(case: Case) -> None:
    metric = case.metric
    assert one(case.line) == ParsedLine(
        metric.measurement, metric.tags, metric.fields, metric.time_ns
    )
    assert typed(one(case.line).fields) == typed(metric.fields)


def test_all_golden_lines_parse_as_one_body() -> None:
    body = "".join(c.line for c in CASES if c.line and c.options.precision == "ns")
    assert len(parse_lines(body)) == sum(1 for c in CASES if c.line and c.options.precision == "ns")


SAFE_TEXT = st.text(
    st.characters(exclude_categories=("Cs", "Cc")).filter(lambda c: c != "\\"), min_size=1
)
FIELD_VALUES = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=50),
)


@settings(max_examples=300, deadline=None)
@given(
    measurement=SAFE_TEXT.filter(lambda s: not s.startswith("#")),
    tags=st.dictionaries(SAFE_TEXT.filter(lambda s: s not in ("time", "_field", "_measurement")),
                         SAFE_TEXT, max_size=4),
    fields=st.dictionaries(SAFE_TEXT.filter(lambda s: s != "time"), FIELD_VALUES,
                           min_size=1, max_size=6),
    time_ns=st.none() | st.integers(MIN_TIME_NS, MAX_TIME_NS),
)  # fmt: skip
def test_encoded_metrics_read_back_exactly(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    time_ns: int | None,
) -> None:
    """Names without control characters or backslashes, and every value, come back as written."""
    line = LineEncoder().encode(Metric(measurement, tags, fields, time_ns))
    parsed = one(line)
    assert (parsed.measurement, parsed.tags, parsed.time_ns) == (measurement, tags, time_ns)
    assert typed(parsed.fields) == typed(fields)
    for key, value in fields.items():
        if isinstance(value, float):
            assert math.copysign(1, parsed.fields[key]) == math.copysign(1, value)  # type: ignore[arg-type]


ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    measurement=ANY_TEXT,
    tags=st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=4),
    fields=st.dictionaries(ANY_TEXT, FIELD_VALUES | st.floats(), max_size=5),
    time_ns=st.none() | st.integers(MIN_TIME_NS, MAX_TIME_NS),
)
def test_arbitrary_metrics_read_back_as_sanitized(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    time_ns: int | None,
) -> None:
    """Whatever the encoder writes parses back to its documented sanitizing of the metric."""
    line = LineEncoder().encode(Metric(measurement, tags, fields, time_ns))
    if not line:
        return
    parsed = one(line)
    expected = parse_line(line)  # the independent reader agrees on every part
    assert (parsed.measurement, parsed.tags, parsed.fields) == (
        expected.measurement, expected.tags, expected.fields,
    )  # fmt: skip
    name = _sanitize(measurement)
    assert parsed.measurement == ("_" + name[1:] if name.startswith("#") else name)
    written_tags = {_sanitize(k): _sanitize(v) for k, v in tags.items()}
    assume(
        len(set(written_tags)) == len(tags)
        and not set(written_tags) & {"time", "_field", "_measurement"}
    )
    assert parsed.tags == {k: v for k, v in written_tags.items() if k and v}
    assert parsed.time_ns == time_ns


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(
        SAFE_TEXT.filter(lambda s: s != "time"),
        st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                  st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
                  st.text(max_size=20)),
        min_size=1, max_size=6,
    )
)  # fmt: skip
def test_tolerant_mode_reads_typed_lines_like_strict_mode(fields: dict[str, Any]) -> None:
    """Typed lines mean the same in both modes (integral floats are written with `.0`)."""
    line = LineEncoder().encode(Metric("m", {"host": "a b"}, fields, T))
    assert parse_lines(line, tolerant=True) == parse_lines(line)
    assert typed(one(line, tolerant=True).fields) == typed(one(line).fields)


# --- tolerant mode -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("42", 42),
        ("-5", -5),
        ("+5", 5),
        ("007", 7),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", 9.223372036854776e18),  # beyond int64: a float, not clamped
        ("-9223372036854775809", -9.223372036854776e18),
        ("1" + "0" * 25, 1e25),
        ("0" * 5000 + "42", 42),
        ("0.975", 0.975),
        ("1.0", 1.0),
        ("1.0e10", 1e10),  # how Pharo prints large floats
        ("-2.5e-3", -0.0025),
        ("3.14s2", 3.14),  # a ScaledDecimal
        ("3s2", 3.0),
        ("12i", 12),
        ("7u", 7),
        ("true", True),
        ('"x y"', "x y"),
    ],
)
def test_tolerant_numbers(raw: str, value: Any) -> None:
    (got,) = one(f"pharo v={raw}", tolerant=True).fields.values()
    assert (type(got), got) == (type(value), value)


@pytest.mark.parametrize(
    ("text", "measurement", "tags"),
    [
        ("pharo,host=blog server uptime=1", "pharo", {"host": "blog server"}),
        ("pharo,host=a b c,env=x y uptime=1", "pharo", {"host": "a b c", "env": "x y"}),
        ("pharo,app=zen,blog,env=prod uptime=1", "pharo", {"app": "zen,blog", "env": "prod"}),
        (
            "pharo,host=my host,app=zen,blog uptime=1",
            "pharo",
            {"host": "my host", "app": "zen,blog"},
        ),
        ("my app,host=a b uptime=1", "my app", {"host": "a b"}),
        ("cpu load,total,host=a b uptime=1", "cpu load,total", {"host": "a b"}),
        ("pharo,host=,env=x uptime=1", "pharo", {"env": "x"}),  # an empty tag value is left out
        ("pharo,host= uptime=1", "pharo", {}),
        ("  pharo,host=a b   uptime=1  ", "pharo", {"host": "a b"}),
    ],
)
def test_tolerant_unescaped_tags(text: str, measurement: str, tags: dict[str, str]) -> None:
    line = one(text, tolerant=True)
    assert (line.measurement, line.tags, line.fields) == (measurement, tags, {"uptime": 1})


def test_tolerant_unescaped_tags_with_timestamp() -> None:
    line = one(f"pharo,host=blog server uptime=1,x=2.5 {T}", tolerant=True)
    assert line == ParsedLine("pharo", {"host": "blog server"}, {"uptime": 1, "x": 2.5}, T)


def test_tolerant_mode_leaves_out_values_that_are_not_numbers() -> None:
    text = "pharo uptime=5,status=running,ratio=(1/3),avg=NaN,inf=Infinity,note='x',n=7"
    lines, errors = parse_lines_tolerant(text)
    assert lines == [ParsedLine("pharo", {}, {"uptime": 5, "n": 7}, None)]
    assert [e.field for e in errors] == ["status", "ratio", "avg", "inf", "note"]
    assert [e.column for e in errors] == [23, 37, 47, 55, 69]
    assert str(errors[0]) == (
        "line 1, column 23: field 'status' left out: 'running' is not a number: " + repr(text)
    )


@pytest.mark.parametrize("digits", [LONG, HUGE, "-" + HUGE, "0" * 5000 + LONG])
def test_tolerant_mode_leaves_out_numbers_too_large_for_a_float(digits: str) -> None:
    for text in (f"pharo uptime={digits},memory=5", f"pharo,host=a b uptime={digits},memory=5"):
        lines, errors = parse_lines_tolerant(text)
        assert [ln.fields for ln in lines] == [{"memory": 5}]
        assert [(e.field, e.column) for e in errors] == [("uptime", text.index("uptime=") + 8)]
        assert "is out of range" in errors[0].reason


@pytest.mark.parametrize("text", [f"pharo uptime=1 {HUGE}", f"pharo,host=a b uptime=1 {HUGE}"])
def test_tolerant_mode_skips_a_line_with_a_huge_timestamp(text: str) -> None:
    lines, errors = parse_lines_tolerant(text + "\npharo uptime=2")
    assert [ln.fields for ln in lines] == [{"uptime": 2}]
    assert [(e.line_number, e.field) for e in errors] == [(1, None)]


def test_tolerant_mode_skips_bad_lines_and_says_where() -> None:
    text = (
        "pharo,host=a uptime=1\r"
        "zentity count=NaN\r"
        "a Set(#foo #bar)\r"
        "\r"
        "zentity,host=a count=3120\r"
        "<html>\r"
    )
    lines, errors = parse_lines_tolerant(text)
    assert [ln.measurement for ln in lines] == ["pharo", "zentity"]
    assert [(e.line_number, e.field) for e in errors] == [(2, None), (3, None), (6, None)]
    assert errors[0].reason == "no field has a readable value ('NaN' is not a number)"
    assert errors[2].line == "<html>"
    assert parse_lines(text, tolerant=True) == lines


def test_tolerant_mode_raises_only_when_no_line_could_be_read() -> None:
    text = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head></html>\n"
    with pytest.raises(LineProtocolError) as info:
        parse_lines(text, tolerant=True)
    assert (info.value.line_number, info.value.line) == (1, "<!DOCTYPE html>")
    lines, errors = parse_lines_tolerant(text)
    assert lines == [] and len(errors) == 2


def test_tolerant_mode_accepts_a_bare_cr_and_counts_lines_across_strings() -> None:
    text = 'a s="x\ny"\rb v=1\r\nc v=\nd v=2'
    lines, errors = parse_lines_tolerant(text)
    assert [ln.measurement for ln in lines] == ["a", "b", "d"]
    assert [(e.line_number, e.column) for e in errors] == [(4, 5)]


def test_tolerant_mode_is_linear_in_the_number_of_bad_lines() -> None:
    """Every error is located from the previous line, not from the start of the body."""
    body = "garbage line here\n" * 20_000 + "pharo uptime=1\n"
    started = time.perf_counter()
    lines, errors = parse_lines_tolerant(body)
    assert time.perf_counter() - started < 5
    assert len(lines) == 1 and len(errors) == 20_000
    assert errors[-1].line_number == 20_000


LP_ALPHABET = st.sampled_from(list('ab= ,"\\\n\r\t#-.0123456789eiutfTF') + ["é", "\x00"])
# Runs of digits on both sides of the limits: int64/uint64, float, int()'s 4300 digits.
DIGIT_RUNS = st.builds(
    lambda zeros, digit, count: "0" * zeros + digit * count,
    st.sampled_from([0, 1, 5000]),
    st.sampled_from("123456789"),
    st.sampled_from([1, 19, 20, 21, 308, 309, 310, 4300, 4301, 6000]),
)
HUGE_NUMBER_LINES = st.builds(
    "m{} f={}{}{}{}".format,
    st.sampled_from(["", ",t=a b"]),
    st.sampled_from(["", "-", "+"]),
    DIGIT_RUNS,
    st.sampled_from(["", "i", "u", ".5", "e3", "s2"]),
    st.sampled_from(["", " "]).flatmap(
        lambda sep: st.just("") if not sep else st.builds(sep.__add__, DIGIT_RUNS)
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    st.text(LP_ALPHABET, max_size=60)
    | st.text(max_size=60)
    | HUGE_NUMBER_LINES
    | st.lists(LP_ALPHABET | DIGIT_RUNS, max_size=20).map("".join)
)
def test_any_text_gives_lines_or_a_located_error(text: str) -> None:
    """Strict mode raises only LineProtocolError; tolerant mode never raises."""
    lines, errors = parse_lines_tolerant(text)
    try:
        strict = parse_lines(text)
    except LineProtocolError as failure:
        assert failure.line_number >= 1 and failure.column >= 1
        assert "\n" not in str(failure) and "\r" not in str(failure)
    else:
        assert len(strict) == len(lines)  # what strict mode reads, tolerant mode reads too
    for line in lines:
        assert line.fields and line.measurement
    for error in errors:
        assert 1 <= error.line_number <= text.count("\n") + text.count("\r") + 1


# --- InfluxDB's time range -----------------------------------------------------------------


def test_time_range_is_influxdbs() -> None:
    assert (MIN_TIME_NS, MAX_TIME_NS) == (-(2**63) + 2, 2**63 - 2)
    assert TIME_OUTSIDE_RANGE == "time outside range -9223372036854775806 - 9223372036854775806"


def test_time_outside_range_is_a_located_error_in_strict_mode() -> None:
    error = error_of("ok v=1\nts,k=max f=1i 9223372036854775807\n")
    assert (error.line_number, error.column, error.reason) == (2, 15, TIME_OUTSIDE_RANGE)


def test_tolerant_mode_skips_a_line_with_a_time_outside_range() -> None:
    lines, errors = parse_lines_tolerant("pharo uptime=1 9223372036854775807\npharo uptime=2\n")
    assert [line.fields for line in lines] == [{"uptime": 2}]
    [error] = errors
    assert (error.line_number, error.field, error.reason) == (1, None, TIME_OUTSIDE_RANGE)


# --- partial reading (strict, each bad line skipped) -------------------------------------


def test_partial_reading_keeps_the_good_lines_and_reports_each_bad_one() -> None:
    text = "good v=1\nbad v=\n# c\nts f=1i 9223372036854775807\nlater v=4 5\nworse\n"
    lines, errors = parse_lines_partial(text)
    assert [(line.measurement, line.time_ns) for line in lines] == [("good", None), ("later", 5)]
    assert [(e.line_number, e.column, e.line) for e in errors] == [
        (2, 7, "bad v="),
        (4, 9, "ts f=1i 9223372036854775807"),
        (6, 6, "worse"),
    ]
    assert errors[1].reason == TIME_OUTSIDE_RANGE


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('m s="abc\nnext v=1\n', ["next"]),  # unterminated: the bad line ends at its LF
        ('m s="a\nb" x\nnext v=1\n', ["next"]),  # a string read whole spans lines
        ("m v=1\r\nbad\r\nk v=2\r\n", ["m", "k"]),
        ("m v=1\rn v=2\nk v=3", ["k"]),  # a bare CR does not end a line
        ("bad v=", []),
        ("", []),
    ],
)
def test_partial_reading_resumes_after_the_bad_physical_line(text: str, kept: list[str]) -> None:
    lines, _ = parse_lines_partial(text)
    assert [line.measurement for line in lines] == kept


@given(st.lists(st.sampled_from(["m v=1", "bad v=", "n,t=a x=2i 7", "x", "# c", ""])))
def test_partial_reading_of_good_lines_is_strict_reading(pieces: list[str]) -> None:
    text = "\n".join(pieces)
    lines, errors = parse_lines_partial(text)
    good = "\n".join(p for p in pieces if p not in ("bad v=", "x"))
    assert lines == parse_lines(good)
    assert len(errors) == sum(p in ("bad v=", "x") for p in pieces)
