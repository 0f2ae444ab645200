"""The line-protocol encoder: golden lines, stable field types, counters, template fast path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influx import CASES, Case

from telemon.lineprotocol import EncoderOptions, EncoderStats, LineEncoder, _template
from telemon.metric import Metric

T = 1_700_000_000_123_456_789
INT64_MAX = 2**63 - 1


def encode_each(encoder: LineEncoder, *fields: dict[str, Any], measurement: str = "m") -> list[str]:
    """Encode one metric per fields dict with the same encoder; the lines without time."""
    lines = [encoder.encode(Metric(measurement, {}, f, None)) for f in fields]
    return [line.rstrip("\n") for line in lines]


def checked_encode(encoder: LineEncoder, metric: Metric) -> str:
    """Encode on the checked path only: with no remembered series, no template is used."""
    encoder._series.clear()
    return encoder.encode(metric)


def spy_checked_path(encoder: LineEncoder) -> list[int]:
    """Count the encoder's calls to its checked path; returns the one-element counter."""
    calls = [0]
    checked = encoder._encode_fields

    def counting(measurement: str, values: Any) -> str:
        calls[0] += 1
        return checked(measurement, values)

    encoder._encode_fields = counting  # type: ignore[method-assign]
    return calls


# --- golden lines ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_line(case: Case) -> None:
    """The encoder writes exactly the expected line, also when the template takes over."""
    encoder = LineEncoder(case.options)
    assert [encoder.encode(case.metric) for _ in range(3)] == [case.line] * 3
    written = 3 if case.line else 0
    assert (encoder.stats.lines_written, encoder.stats.lines_dropped) == (written, 3 - written)


def test_golden_case_ids_are_unique() -> None:
    """Case ids name databases and test ids."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("a" * 65_536, "a" * 65_536),
        ("a" * 65_537, "a" * 65_536),
        ("€" * 30_000, "€" * 21_845),  # 3-byte characters: a cut one is dropped whole
        ("a" + "😀" * 20_000, "a" + "😀" * 16_383),
        ('\\"' * 40_000, '\\"' * 32_768),  # the limit applies before escaping
    ],
    ids=["exactly-64k", "64k-plus-1", "3-byte-chars", "4-byte-chars", "escapes"],
)
def test_long_strings_cut_at_64_kib(value: str, kept: str) -> None:
    """String values keep at most 64 KiB of UTF-8, never a partial character."""
    encoder = LineEncoder()
    line = encoder.encode(Metric("m", {}, {"s": value}, 1))
    escaped = kept.replace("\\", "\\\\").replace('"', '\\"')
    assert line == f'm s="{escaped}" 1\n'
    assert len(kept.encode()) <= 65_536
    assert encoder.stats.strings_truncated == (kept != value)


def test_encode_all_joins_lines_as_utf8() -> None:
    """encode_all is the concatenated lines, UTF-8, lone surrogates as `?`."""
    metrics = [
        Metric("m", {"h": "é"}, {"s": "x\ud800y"}, 1),
        Metric("m", {}, {"v": math.nan}, 2),
        Metric("m", {}, {"v": 1}, 3),
    ]
    assert LineEncoder().encode_all(metrics) == 'm,h=é s="x?y" 1\nm v=1i 3\n'.encode()


# --- field types stay stable -------------------------------------------------------------


def test_int_field_takes_integral_floats() -> None:
    """An int field writes later integral floats as ints."""
    assert encode_each(LineEncoder(), {"x": 1}, {"x": 2.0}, {"x": -0.0}) == [
        "m x=1i",
        "m x=2i",
        "m x=0i",
    ]


def test_int_field_drops_fractional_float() -> None:
    """An int field drops 1.5 and counts a type conflict; other fields are kept."""
    encoder = LineEncoder()
    lines = encode_each(encoder, {"x": 1}, {"x": 1.5, "y": 2}, {"x": 1.5})
    assert lines == ["m x=1i", "m y=2i", ""]
    assert encoder.stats.fields_type_conflict == 2
    assert encoder.stats.lines_dropped == 1


def test_float_field_takes_ints_as_floats() -> None:
    """A float field writes later ints (and bools) as floats."""
    lines = encode_each(LineEncoder(), {"x": 0.5}, {"x": 3}, {"x": True}, {"x": 2**70})
    assert lines == ["m x=0.5", "m x=3.0", "m x=1.0", "m x=1180591620717411300000"]


def test_float_field_drops_int_beyond_float_range() -> None:
    """An int too large for a float cannot be written to a float field."""
    encoder = LineEncoder()
    assert encode_each(encoder, {"x": 0.5}, {"x": 10**400}) == ["m x=0.5", ""]
    assert encoder.stats.fields_type_conflict == 1


@pytest.mark.parametrize(
    ("first", "later"),
    [("text", 1), ("text", 1.5), ("text", True), (1, "1"), (1.5, "1.5"), (True, "true")],
)
def test_strings_and_numbers_never_mix(first: Any, later: Any) -> None:
    """A string field drops numbers and bools; a number or bool field drops strings."""
    encoder = LineEncoder()
    lines = encode_each(encoder, {"x": first}, {"x": later})
    assert lines[0] != "" and lines[1] == ""
    assert encoder.stats.fields_type_conflict == 1


def test_bool_field_stays_bool() -> None:
    """A bool field drops numbers; an int field writes bools as 1i/0i."""
    encoder = LineEncoder()
    assert encode_each(encoder, {"b": True}, {"b": 1}, {"b": 0.0}, {"b": False}) == [
        "m b=true",
        "",
        "",
        "m b=false",
    ]
    assert encoder.stats.fields_type_conflict == 2
    assert encode_each(LineEncoder(), {"i": 7}, {"i": True}, {"i": False}) == [
        "m i=7i",
        "m i=1i",
        "m i=0i",
    ]


def test_uint_field_drops_negative_values() -> None:
    """With uint_support, a field first seen above int64 stays unsigned."""
    encoder = LineEncoder(EncoderOptions(uint_support=True))
    lines = encode_each(encoder, {"u": 2**64 - 1}, {"u": 5}, {"u": 7.0}, {"u": -1})
    assert lines == ["m u=18446744073709551615u", "m u=5u", "m u=7u", ""]
    assert encoder.stats.fields_type_conflict == 1


def test_types_are_per_measurement() -> None:
    """The same field key may have another type in another measurement."""
    encoder = LineEncoder()
    assert encode_each(encoder, {"x": 1}, measurement="a") == ["a x=1i"]
    assert encode_each(encoder, {"x": "s"}, measurement="b") == ['b x="s"']
    assert encoder.stats.fields_type_conflict == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("m", "x"), ("m", "x\x00")),
        (("m", "time"), ("m", "time_")),
        (("m", "x"), ("m", "x\\")),
        (("#m", "x"), ("_m", "x")),
        (("m", "x"), ("m\x7f", "x")),
        (("m", 'x"'), ("m", 'x\\"')),
    ],
    ids=["control-char", "reserved-key", "trailing-backslash", "hash", "measurement", "quote"],
)
def test_types_follow_the_written_names(first: tuple[str, str], second: tuple[str, str]) -> None:
    """Names that are written alike share a type, so InfluxDB never sees a conflict."""
    encoder = LineEncoder()
    line = encoder.encode(Metric(first[0], {}, {first[1]: 1}, None))
    assert encoder.encode(Metric(second[0], {}, {second[1]: "text"}, None)) == ""
    assert encoder.encode(Metric(second[0], {}, {second[1]: 2}, None)) == line.replace("1i", "2i")
    assert encoder.stats.fields_type_conflict == 1


def test_duplicate_written_key_in_one_line_is_written_once() -> None:
    """Two keys of one metric written alike: the first is written, the repeat dropped and
    counted, whatever the types, on the checked path and once the shape has a template."""
    encoder = LineEncoder()
    assert encoder.encode(Metric("m", {}, {"x": 1, "x\x00": "s"}, None)) == "m x=1i\n"
    for _ in range(3):
        assert encoder.encode(Metric("m", {}, {"x": 1, "x\x00": 2}, 5)) == "m x=1i 5\n"
    assert (encoder.stats.fields_invalid_key, encoder.stats.fields_type_conflict) == (4, 0)


def test_integer_type_float_writes_every_int_as_float() -> None:
    """integer_type = "float" makes new int fields floats (bools stay bools)."""
    encoder = LineEncoder(EncoderOptions(integer_type="float"))
    assert encode_each(encoder, {"n": 1, "b": True}, {"n": 2.5, "b": False}) == [
        "m n=1.0,b=true",
        "m n=2.5,b=false",
    ]


# --- counters ----------------------------------------------------------------------------


def test_stats_count_what_was_dropped_or_changed() -> None:
    """Every counter moves for its own reason, once per line."""
    encoder = LineEncoder()
    metrics = [
        Metric("m", {}, {"i": 1, "f": 0.5, "s": "x"}, 1),  # written
        Metric("m", {}, {"i": 2**64, "f": math.inf}, 2),  # clamped, non-finite
        Metric("m", {}, {"i": 1.5, "f": -math.nan, "s": "y" * 70_000}, 3),  # conflict, NaN, cut
        Metric("m", {}, {"d": Decimal(1), "l": [1], "b": b"x", "n": None}, 4),  # unsupported, None
        Metric("m", {"\x00": "x"}, {"\x01": 1, "ok": 1}, 5),  # 2 invalid keys
        Metric("m", {"\x00": "x"}, {"\x01": 1, "ok": 1}, 6),  # the same again
        Metric("m", {"a": "1", "a\\": "2"}, {"ok": 1}, 7),  # tag key written twice
        Metric("\\", {}, {"ok": 1}, 8),  # no measurement left
    ]
    for metric in metrics:
        encoder.encode(metric)
    assert encoder.stats == EncoderStats(
        lines_written=6,
        lines_dropped=2,
        fields_nonfinite=2,
        fields_type_conflict=1,
        fields_unsupported=3,
        fields_invalid_key=5,
        ints_clamped=1,
        strings_truncated=1,
    )


def test_stats_as_fields() -> None:
    """The counters become the fields of the self-metric, all ints."""
    stats = EncoderStats(lines_written=3, ints_clamped=1)
    fields = stats.as_fields()
    assert fields["lines_written"] == 3 and fields["ints_clamped"] == 1
    assert set(fields) == {
        "lines_written", "lines_dropped", "fields_nonfinite", "fields_type_conflict",
        "fields_unsupported", "fields_invalid_key", "ints_clamped", "strings_truncated",
    }  # fmt: skip
    assert (
        LineEncoder()
        .encode(Metric("telemon", {}, fields, 1))
        .startswith("telemon lines_written=3i,")
    )


# --- the template fast path --------------------------------------------------------------

FastPathScenario = tuple[EncoderOptions, dict[str, Any], Sequence[dict[str, Any]], int]

FAST_PATH_SCENARIOS: dict[str, FastPathScenario] = {
    "all-int": (
        EncoderOptions(),
        {"a": 1, "b": 2, "c%": 3},
        [
            {"a": 10, "b": -20, "c%": 0},
            {"a": INT64_MAX, "b": -(2**63), "c%": True},  # bounds; a bool is 1i either way
            {"a": 2**63, "b": 1, "c%": 1},  # overflow: falls back and is clamped
            {"a": 1, "b": -(2**63) - 1, "c%": 1},
            {"a": 3.0, "b": 1, "c%": 1},  # integral float into an int field
            {"a": 1.5, "b": 1, "c%": 1},  # dropped
            {"a": "1", "b": None, "c%": 1},  # dropped
            {"a": 4, "b": 5, "c%": 6},  # the whole-line template still fits: not checked
        ],
        5,
    ),
    "mixed": (
        EncoderOptions(),
        {"i": 1, "f": 0.5, "g": 1.0},
        [
            {"i": 2, "f": 0.25, "g": -0.0},
            {"i": 3, "f": 1e20, "g": 1.0},  # exponent
            {"i": 3, "f": 1e-7, "g": 1.0},
            {"i": 3, "f": math.nan, "g": 1.0},
            {"i": 3, "f": math.inf, "g": -math.inf},
            {"i": 3, "f": 7, "g": 1.0},  # an int into a float field
            {"i": 3, "f": 8, "g": 1.0},  # ... now in the template
            {"i": 3, "f": 2**60, "g": 1.0},  # an int a float cannot hold exactly
            {"i": 2**64, "f": 0.5, "g": 1.0},
            {"i": True, "f": 0.5, "g": 2.0},
            {"i": 4, "f": 0.5, "g": 123456789.125},  # the earlier whole-line template fits
        ],
        8,
    ),
    "integer-type-float": (
        EncoderOptions(integer_type="float"),
        {"a": 1, "b": 2},
        [
            {"a": 5, "b": -3},
            {"a": 2**53, "b": -(2**53)},  # the largest ints a float holds exactly
            {"a": 2**53 + 1, "b": 1},
            {"a": 2**60, "b": 10**20},
            {"a": 0, "b": True},
            {"a": 0.5, "b": 1},
        ],
        4,
    ),
    "float-field-ms": (
        EncoderOptions(precision="ms"),
        {"x": 1.5},
        [{"x": 2.5}, {"x": 12345.678}, {"x": 1e16}, {"x": 3}, {"x": 4}],
        2,
    ),
}


@pytest.mark.parametrize("name", FAST_PATH_SCENARIOS)
def test_template_matches_checked_path(name: str) -> None:
    """After two encodes the template writes exactly what the checked path writes."""
    options, warmup, values, fallbacks = FAST_PATH_SCENARIOS[name]
    fast, checked = LineEncoder(options), LineEncoder(options)
    metric = lambda fields: Metric("m", {"host": "a b", "z": "1"}, fields, T)  # noqa: E731
    for _ in range(2):
        assert fast.encode(metric(warmup)) == checked_encode(checked, metric(warmup))
    calls = spy_checked_path(fast)
    for fields in values:
        assert fast.encode(metric(fields)) == checked_encode(checked, metric(fields)), fields
    assert fast.stats == checked.stats
    assert calls[0] == fallbacks  # the others really went through the template


FIELD_VALUES = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.integers(min_value=-(2**54), max_value=2**54),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "s"]),
)


@settings(max_examples=300, deadline=None)
@given(
    options=st.builds(
        EncoderOptions,
        integer_type=st.sampled_from(["integer", "float"]),
        uint_support=st.booleans(),
    ),
    rows=st.lists(st.tuples(FIELD_VALUES, FIELD_VALUES, FIELD_VALUES), min_size=1, max_size=12),
)
def test_template_matches_checked_path_for_any_values(
    options: EncoderOptions, rows: list[tuple[Any, Any, Any]]
) -> None:
    """Whatever values arrive in which order, both paths write the same lines and counts."""
    fast, checked = LineEncoder(options), LineEncoder(options)
    for row in rows:
        metric = Metric("m", {"h": "x"}, dict(zip(("a", "b", "c"), row, strict=True)), T)
        assert fast.encode(metric) == checked_encode(checked, metric)
    assert fast.stats == checked.stats


def test_template_is_used_for_steady_metrics() -> None:
    """A steady int metric goes through the checked path only for its first line."""
    encoder = LineEncoder()
    calls = spy_checked_path(encoder)
    lines = [encoder.encode(Metric("m", {"h": "a"}, {"x": i, "y": -i}, i)) for i in range(10)]
    assert lines[9] == "m,h=a x=9i,y=-9i 9\n"
    assert calls[0] == 1


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_template_takes_exactly_the_floats_repr_writes_without_exponent(number: float) -> None:
    """The fast path's range test agrees with what repr() would write."""
    writable = math.isfinite(number) and "e" not in repr(number)
    assert float_template_fits(number) is writable


@pytest.mark.parametrize(
    "number",
    [1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, -0.0, 0.0, 5e-324, -1e-4, -1e16],
)
def test_float_range_edges(number: float) -> None:
    assert float_template_fits(number) is ("e" not in repr(number))


def float_template_fits(number: float) -> bool:
    """Whether the template of a series with one float field takes `number`."""
    template = _template({"x": "x"}, {"x": "f"}, ("x",), (0.5,))
    assert template is not None
    fits, text = template
    assert text == "x=%r"
    return bool(fits(number, 0))
