"""Reading Pharo payloads: golden cases in tests/data/pharo/, each format, auto-detection."""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemon.inputs.pharo_formats import (
    FORMATS,
    PARAMETER_NAMES,
    TELEMON_FIELDS,
    FormatError,
    Sample,
    candidate_formats,
    parse_auto,
    parse_payload,
    with_telemon_fields,
)

INT64_MAX = 2**63 - 1
HUGE = "9" * 5000  # past int()'s 4300-digit limit
LONG = "9" * 400  # past float(int)'s range, within int()'s limit
DATA = Path(__file__).parent / "data" / "pharo"
CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir())


def payload_of(case: str) -> str:
    """The payload's exact text (bytes decoded as UTF-8, line ends untouched)."""
    (path,) = (DATA / case).glob("payload.*")
    return path.read_bytes().decode("utf-8")


def expected_of(case: str) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((DATA / case / "expected.json").read_text("utf-8"))
    return expected


def as_json(samples: list[Sample]) -> list[dict[str, Any]]:
    return [
        {"measurement": s.measurement, "tags": s.tags, "fields": s.fields, "time_ns": s.time_ns}
        for s in samples
    ]


def typed(fields: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Fields with types, in order: 1 == 1.0 == True in Python, but not in InfluxDB."""
    return [(k, type(v).__name__, v) for k, v in fields.items()]


def assert_same_samples(got: list[Sample], expected: list[dict[str, Any]]) -> None:
    assert as_json(got) == expected
    for sample, want in zip(got, expected, strict=True):
        assert typed(sample.fields) == typed(want["fields"])


def fields_of(fmt: str, text: str) -> dict[str, Any]:
    (sample,) = parse_payload(fmt, text)
    return sample.fields


def reason(fmt: str, text: str) -> str:
    with pytest.raises(FormatError) as info:
        parse_payload(fmt, text)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


# --- golden cases: one folder per payload ------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str) -> None:
    """The payload parses (or fails) as expected.json says, explicitly and with auto."""
    expected, text = expected_of(case), payload_of(case)
    problems: list[str] = []
    if "error" in expected:
        assert expected["error"] in reason(expected["format"], text)
    else:
        samples = parse_payload(expected["format"], text, problems=problems)
        assert_same_samples(samples, expected["samples"])
        assert len(problems) == expected["problems"], problems
        assert all("\n" not in p and "\r" not in p for p in problems)
    if expected["auto"] is None:
        with pytest.raises(FormatError) as info:
            parse_auto(expected["content_type"], text)
        assert "\n" not in str(info.value)
        for part in expected["auto_error"]:
            assert part in str(info.value)
    else:
        fmt, samples = parse_auto(expected["content_type"], text)
        assert fmt == expected["auto"]
        assert_same_samples(samples, expected["samples"])


def test_golden_cases_are_well_formed_and_cover_every_format() -> None:
    """A new regression case is a folder with one payload.* and an expected.json."""
    keys = {"description", "format", "content_type", "auto"}
    parsed, detected = set(), set()
    for case in CASES:
        files = sorted(p.name for p in (DATA / case).iterdir())
        assert len(files) == 2 and files[0] == "expected.json" and files[1].startswith("payload.")
        expected = expected_of(case)
        assert keys <= set(expected) and expected["format"] in FORMATS
        assert ("samples" in expected) != ("error" in expected)
        assert (expected["auto"] is None) == ("auto_error" in expected)
        if "samples" in expected:
            parsed.add(expected["format"])
        if expected["auto"]:
            detected.add(expected["auto"])
    assert parsed == detected == set(FORMATS)


def test_report_and_parameters_of_one_vm_state_agree() -> None:
    """The same VM state, served as statisticsReport and as getParameters."""
    report = fields_of("report", payload_of("report-pharo12-first-view"))
    parameters = fields_of("parameters", payload_of("parameters-pharo12-85"))
    shared = [*TELEMON_FIELDS[1:], "usedMemory"]
    assert {k: report[k] for k in shared} == {k: parameters[k] for k in shared}
    assert "uptime" not in parameters  # only the clock knows it
    assert report["uptime"] == 2023314 // 1000 * 1000  # the report prints whole seconds


# --- names --------------------------------------------------------------------------------


def test_telemon_fields_are_the_original_ten_in_order() -> None:
    assert TELEMON_FIELDS == (
        "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
        "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
    )  # fmt: skip


def test_parameter_names_follow_the_reference_table() -> None:
    assert [PARAMETER_NAMES[i] for i in (1, 2, 3, 7, 8, 9, 10, 11)] == [
        "oldSpace", "youngSpace", "memory", "fullGCs", "fullGCTime",
        "incrGCs", "incrGCTime", "tenureCount",
    ]  # fmt: skip
    assert PARAMETER_NAMES[44] == "edenSize" and PARAMETER_NAMES[54] == "freeOldSpace"
    assert PARAMETER_NAMES[56] == "processSwitches" and PARAMETER_NAMES[75] == "jitCompiledMethods"
    unnamed = {4, 5, 12, 13, 14, 15, 17, 27, 28, 29, 30, 33, 37, 48, 50, 51, 65, 70, 71, 79}
    assert set(PARAMETER_NAMES) == set(range(1, 86)) - unnamed
    assert len(set(PARAMETER_NAMES.values())) == len(PARAMETER_NAMES)
    assert list(PARAMETER_NAMES) == sorted(PARAMETER_NAMES)


# --- parameters ---------------------------------------------------------------------------


def parameters(count: int, **values: Any) -> str:
    """A getParameters array of `count` elements, index N set by `pN=...`, others 0."""
    array: list[Any] = [0] * count
    for key, value in values.items():
        array[int(key[1:]) - 1] = value
    return json.dumps(array)


def test_parameters_map_indices_to_names_and_drop_nulls() -> None:
    fields = fields_of("parameters", parameters(40, p1=100, p4=None, p7=2, p22=None, p40=8))
    assert fields["oldSpace"] == 100 and fields["fullGCs"] == 2 and fields["wordSize"] == 8
    assert "rootTableOverflows" not in fields and len(fields) == 26  # 27 named <= 40, 1 null


def test_parameters_from_an_old_vm_stop_at_its_last_index() -> None:
    fields = fields_of("parameters", parameters(11, p4=None, p11=5))
    assert list(fields) == list(TELEMON_FIELDS[1:4]) + list(TELEMON_FIELDS[5:]) + [
        "tenuringThreshold"
    ]


def test_parameters_keep_floats_and_leave_out_what_is_not_a_number() -> None:
    problems: list[str] = []
    text = parameters(60, p1=1.5, p2=True, p3="12", p55=0.33, p56=[1])
    (sample,) = parse_payload("parameters", text, problems=problems)
    # oldSpace is an integer figure (rounded), gcGrowthRatio a float one
    assert typed(sample.fields)[0] == ("oldSpace", "int", 2)
    assert sample.fields["gcGrowthRatio"] == 0.33
    assert "youngSpace" not in sample.fields and "memory" not in sample.fields
    assert problems == [
        "parameter 2 (youngSpace): a JSON boolean left out",
        "parameter 3 (memory): a JSON string ('12') left out",
        "parameter 56 (processSwitches): a JSON array left out",
    ]


def test_parameters_derive_pharo_free_and_used_memory() -> None:
    text = parameters(85, p1=1000, p2=300, p3=2000, p44=400, p54=150)
    fields = fields_of("parameters", text)
    assert fields["memoryFree"] == 150 + 400 - 300
    assert fields["usedMemory"] == 300 + 1000 - 250


def test_parameters_beyond_int64_are_floats_and_too_large_are_left_out() -> None:
    problems: list[str] = []
    text = parameters(40, p1=2**64 - 1, p2=INT64_MAX, p3=-(2**63) - 1).replace("0]", HUGE + "]")
    (sample,) = parse_payload("parameters", text, problems=problems)
    assert typed(sample.fields)[:3] == [
        ("oldSpace", "float", 1.8446744073709552e19),
        ("youngSpace", "int", INT64_MAX),
        ("memory", "float", -9.223372036854776e18),
    ]
    assert "wordSize" not in sample.fields
    assert problems == ["parameter 40 (wordSize): a JSON number left out"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2, 3]", "an array of 3 elements; getParameters answers 40 or more"),
        ("[]", "an array of 0 elements"),
        ('{"a": 1}', "a JSON object, not an array"),
        ('[{"label": "x", "value": 1}]', "an array of JSON objects, not of numbers"),
        (json.dumps([None] * 50), "no values found (50 elements, none a number at a named index)"),
        ("[1, 2,", "not JSON: Expecting value at line 1, column 7"),
    ],
)
def test_parameters_errors(text: str, message: str) -> None:
    assert message in reason("parameters", text)


# --- report -------------------------------------------------------------------------------


def pharo_round_to(value: Fraction, step: float | int) -> float | int:
    """Number>>roundTo: (rounded half away from zero, times the step)."""
    scaled = value / Fraction(step)
    count = math.floor(abs(scaled) + Fraction(1, 2)) * (1 if scaled >= 0 else -1)
    return count * step


def pct(part: int, whole: int) -> str:
    return repr(pharo_round_to(Fraction(part * 100, whole), 0.1))


def render_report(vm: dict[str, int], last: dict[str, int] | None = None) -> str:
    """VirtualMachine>>statisticsReport (Pharo 8-13), printed as Pharo prints it."""
    up, mem = vm["uptime"], vm["memory"]
    free = vm["freeOld"] + vm["eden"] - vm["young"]
    used = vm["young"] + vm["old"] - free
    seconds = up // 1000
    lines = [
        f"uptime\t\t\t{seconds // 3600}h{seconds // 60 % 60}m{seconds % 60}s",
        f"memory\t\t\t{mem:,} bytes",
        f"\told\t\t\t{vm['old']:,} bytes ({pct(vm['old'], mem)}%)",
        f"\tyoung\t\t{vm['young']:,} bytes ({pct(vm['young'], mem)}%)",
        f"\tused\t\t{used:,} bytes ({pct(used, mem)}%)",
        f"\tfree\t\t{free:,} bytes ({pct(free, mem)}%)",
        *gc_lines("GCs\t\t\t\t", vm, up),
    ]
    if last is not None:
        delta = {k: vm[k] - last[k] for k in ("uptime", *GC_KEYS)}
        lines += gc_lines("Since last view\t", delta, delta["uptime"], since=True)
    return "".join(line + "\r" for line in lines)


GC_KEYS = ("fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenures")


def gc_lines(title: str, gc: dict[str, int], up: int, since: bool = False) -> list[str]:
    full, full_ms, incr, incr_ms, tenures = (gc[k] for k in GC_KEYS)
    between = f" ({pharo_round_to(Fraction(up, full + incr), 1)}ms between GCs)"
    lines = [f"{title}{full + incr:,}" + (between if full + incr else "")]
    if since:
        lines.append(f"\tuptime\t\t{pharo_round_to(Fraction(up / 1000.0), 0.1)!r}s")
    full_avg = f", avg {pharo_round_to(Fraction(full_ms, full), 0.1)!r}ms" if full else ""
    lines.append(f"\tfull\t\t\t{full} totalling {full_ms:,}ms ({pct(full_ms, up)}% uptime)")
    lines[-1] += full_avg
    incr_avg = f"{pharo_round_to(Fraction(incr_ms, incr), 0.1)!r}ms" if incr else ""
    lines.append(f"\tincr\t\t{incr} totalling {incr_ms:,}ms ({pct(incr_ms, up)}% uptime), avg ")
    lines[-1] += incr_avg
    lines.append(
        f"\ttenures\t\t{tenures:,}" + (f" (avg {incr // tenures} GCs/tenure)" if tenures else "")
    )
    return lines


VM_STATES = st.fixed_dictionaries(
    {
        "uptime": st.integers(1000, 10**10),
        "old": st.integers(10**6, 10**12),
        "young": st.integers(0, 10**8),
        "eden": st.integers(10**8, 2 * 10**8),
        "freeOld": st.integers(0, 10**9),
        "memory": st.integers(10**12, 10**13),
        "fullGCs": st.integers(0, 10**4),
        "fullGCTime": st.integers(0, 10**7),
        "incrGCs": st.integers(1, 10**8),
        "incrGCTime": st.integers(0, 10**8),
        "tenures": st.integers(0, 10**9),
    }
)


@settings(max_examples=200, deadline=None)
@given(vm=VM_STATES, earlier=st.none() | st.floats(0.0, 0.999))
def test_report_values_are_read_by_label(vm: dict[str, int], earlier: float | None) -> None:
    """Whatever the figures, the report gives them back (uptime to the second)."""
    last = None
    if earlier is not None:
        last = {k: int(vm[k] * earlier) for k in ("uptime", *GC_KEYS)}
        last["uptime"] = min(last["uptime"], vm["uptime"] - 1)
    fields = fields_of("report", render_report(vm, last))
    free = vm["freeOld"] + vm["eden"] - vm["young"]
    assert typed({k: fields[k] for k in TELEMON_FIELDS}) == typed(
        {
            "uptime": vm["uptime"] // 1000 * 1000,
            "oldSpace": vm["old"],
            "youngSpace": vm["young"],
            "memory": vm["memory"],
            "memoryFree": free,
            "fullGCs": vm["fullGCs"],
            "fullGCTime": vm["fullGCTime"],
            "incrGCs": vm["incrGCs"],
            "incrGCTime": vm["incrGCTime"],
            "tenureCount": vm["tenures"],
        }
    )
    assert fields["usedMemory"] == vm["young"] + vm["old"] - free
    since = {k: v for k, v in fields.items() if k.startswith("sinceLastView_")}
    if last is None:
        assert since == {}
    else:
        assert since["sinceLastView_incrGCs"] == vm["incrGCs"] - last["incrGCs"]
        assert since["sinceLastView_tenureCount"] == vm["tenures"] - last["tenures"]
        assert abs(since["sinceLastView_uptime"] - (vm["uptime"] - last["uptime"])) <= 50


def test_since_last_view_never_overwrites_the_totals() -> None:
    with_block = payload_of("report-pharo12-since-last-view")
    totals_only = with_block[: with_block.index("Since last view")]
    fields = fields_of("report", with_block)
    assert {k: v for k, v in fields.items() if not k.startswith("sinceLastView_")} == fields_of(
        "report", totals_only
    )


def test_report_lines_in_another_order_or_with_extras_read_the_same() -> None:
    """Parse by label: blocks moved, unknown lines added, CRLF line ends."""
    lines = payload_of("report-pharo12-first-view").split("\r")[:-1]
    moved = [*lines[6:], "\troot table\t17 overflows", "modules\t\t\t42 loaded", *lines[:6]]
    fields = fields_of("report", "\r\n".join(moved))
    assert fields == {**fields_of("report", payload_of("report-pharo12-first-view")),
                      "rootTableOverflows": 17}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("uptime\t\t\t0h41m3s", "uptime", 2_463_000),
        ("uptime\t\t\t26h0m0s", "uptime", 93_600_000),
        ("uptime 12.5s", "uptime", 12_500),
        ("memory\t\t\t-1,024 bytes", "memory", -1024),
        ("GCs\t\t\t\t0", "totalGCs", 0),
        (
            "\tfull\t\t\t1,234 totalling 1,234,567ms (9.100000000000001% uptime)",
            "fullGCTime",
            1234567,
        ),
        ("\tincr\t\t14291 totalling 12,899ms (0.6000000000000001% uptime), avg ", "incrGCs", 14291),
        ("\ttenures\t\t0", "tenureCount", 0),
        ("FULL  4 totalling 660ms", "fullGCs", 4),
    ],
)
def test_report_line_values(line: str, field: str, value: int) -> None:
    assert fields_of("report", line)[field] == value


@pytest.mark.parametrize(
    "line",
    [
        f"memory\t\t\t{HUGE} bytes",
        f"memory\t\t\t{LONG} bytes",
        "memory\t\t\t9,223,372,036,854,775,808 bytes",  # beyond int64: no VM has that many
        f"\tfull\t\t\t4 totalling {HUGE}ms",
        f"uptime\t\t\t{HUGE}h0m0s",
        "uptime\t\t\t2562047788015216h0m0s",  # each part fits int64, the total in ms does not
        f"uptime\t\t\t{LONG}s",
        f"uptime\t\t\t{HUGE}.5s",
    ],
)
def test_report_line_with_a_number_out_of_range_is_not_read(line: str) -> None:
    problems: list[str] = []
    (sample,) = parse_payload("report", f"{line}\rGCs\t\t\t\t3\r", problems=problems)
    assert sample.fields == {"totalGCs": 3}
    assert len(problems) == 1 and problems[0].startswith("report line 1: cannot read")
    assert len(problems[0]) < 200


def test_report_line_with_a_long_run_of_spaces_is_read_in_linear_time() -> None:
    started = time.perf_counter()
    assert "no values found" in reason("report", "memory 1" + " " * 30_000 + "x\n")
    assert time.perf_counter() - started < 2


def test_report_line_with_a_known_label_but_unreadable_value_is_reported() -> None:
    problems: list[str] = []
    (sample,) = parse_payload(
        "report", "memory\t\t\tlots\rGCs\t\t\t\t14,295 (142ms between GCs)\r", problems=problems
    )
    assert sample.fields == {"totalGCs": 14295, "msBetweenGCs": 142}
    assert problems == ["report line 1: cannot read 'memory': 'lots'"]


@pytest.mark.parametrize(
    "text",
    [
        "pharo uptime=1,memory=2",
        "<html><body>uptime: 3 days</body></html>",
        "uptime is great\nmemory leaks are not",
    ],
)
def test_text_that_is_not_a_report(text: str) -> None:
    assert "no values found (no statisticsReport line" in reason("report", text)


# --- json ---------------------------------------------------------------------------------


def test_json_flattens_nested_objects_with_underscores() -> None:
    text = '{"a": {"b": {"c": 1}, "d": 2.5}, "e": true, "f": null, "g": [1], "h": "1", "i": {}}'
    assert typed(fields_of("json", text)) == [
        ("a_b_c", "int", 1), ("a_d", "float", 2.5), ("e", "bool", True),
    ]  # fmt: skip


def test_json_keeps_the_first_of_two_keys_that_flatten_alike() -> None:
    assert fields_of("json", '{"a_b": 1, "a": {"b": 2}}') == {"a_b": 1}


def test_json_leaves_out_non_finite_numbers_and_says_so() -> None:
    problems: list[str] = []
    (sample,) = parse_payload(
        "json", '{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1}', problems=problems
    )
    assert sample.fields == {"d": 1}
    assert problems == [
        "'a': nan left out (not a finite number)",
        "'b': inf left out (not a finite number)",
        "'c': -inf left out (not a finite number)",
    ]


def test_json_integers_beyond_int64_are_floats_not_clamped() -> None:
    text = (
        '{"a": 18446744073709551615, "b": -9223372036854775809, "c": 9223372036854775807,'
        ' "d": -9223372036854775808, "e": {"f": 100000000000000000000000000}}'
    )
    assert typed(fields_of("json", text)) == [
        ("a", "float", 1.8446744073709552e19), ("b", "float", -9.223372036854776e18),
        ("c", "int", INT64_MAX), ("d", "int", -(2**63)), ("e_f", "float", 1e26),
    ]  # fmt: skip


@pytest.mark.parametrize("digits", [LONG, HUGE, "-" + HUGE])
def test_json_numbers_too_large_for_a_float_are_left_out_and_said_so(digits: str) -> None:
    problems: list[str] = []
    (sample,) = parse_payload("json", f'{{"big": {digits}, "ok": 1}}', problems=problems)
    assert sample.fields == {"ok": 1}
    assert problems == [f"'big': {float(digits)} left out (not a finite number)"]
    assert "no values found" in reason("json", f'{{"big": {digits}}}')


def test_json_nested_too_deep_is_left_out() -> None:
    deep = '{"x": ' * 30 + "1" + "}" * 30
    problems: list[str] = []
    with pytest.raises(FormatError):
        parse_payload("json", deep, problems=problems)
    assert "no values found" in reason("json", deep)
    assert fields_of("json", '{"ok": 1, "deep": ' + deep + "}") == {"ok": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty body"),
        (" \r\n\t", "empty body"),
        ("[1, 2]", "a JSON array, not an object"),
        ('"busy"', "a JSON string ('busy'), not an object"),
        ("42", "a JSON number, not an object"),
        ("null", "JSON null, not an object"),
        ("true", "a JSON boolean, not an object"),
        ("{}", "no values found (an object of 0 keys, none a number)"),
        ('{"version": "1452854"}', "no values found"),  # a string not naming a figure: no value
        ('{"uptime": 1452854, "oldSpace": 15', "not JSON: Expecting ',' delimiter at line 1"),
        ("{'uptime': 1}", "not JSON: Expecting property name enclosed in double quotes"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_json_errors(text: str, message: str) -> None:
    assert message in reason("json", text)


# --- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("oldSpace", "oldSpace"),
        ("old_space", "oldSpace"),  # a figure's name in another spelling is the figure's
        ("Uptime", "uptime"),
        ("Old space", "oldSpace"),
        ("Full GCs", "fullGCs"),
        ("Full GC time", "fullGCTime"),
        ("JIT compiled methods", "jitCompiledMethods"),
        ("GC count", "GCCount"),
        ("Memory (free)", "memoryFree"),
        ("  used memory  ", "usedMemory"),
        ("Old_space", "oldSpace"),
        ("heap-size", "heapSize"),
        ("2nd level", "2ndLevel"),
    ],
)
def test_label_names(label: str, name: str) -> None:
    text = json.dumps([{"label": label, "value": 1}])
    assert list(fields_of("labels", text)) == [name] or name in fields_of("labels", text)


@pytest.mark.parametrize(
    ("value", "unit", "result"),
    [
        (5, "bytes", 5),
        (5, "B", 5),
        (2, "KB", 2048),
        (2, "KiB", 2048),
        (1.5, "MB", 1572864.0),
        (1, "GB", 1073741824),
        (2, "s", 2000),
        (0.477, "s", 477.0),
        (3, "min", 180_000),
        (5000, "µs", 5),
        (1007, "us", 1.007),
        (2_000_000, "ns", 2),
        (7, "ms", 7),
        (7, "count", 7),
        (7, "%", 7),
        ("2,048", "KB", 2_097_152),
        ("160,432,128", "bytes", 160_432_128),
        ("12.5", "ms", 12.5),
        # beyond int64, given or by conversion: a float, as the encoder would clamp an int
        (2**64 - 1, "bytes", 1.8446744073709552e19),
        (2**64 - 1, "", 1.8446744073709552e19),
        ("18,446,744,073,709,551,615", "bytes", 1.8446744073709552e19),
        (2**62, "GB", float(2**92)),
        (2**64, "ns", 18446744073709.55),
        ("0" * 5000 + "5", "KB", 5120),
    ],
)
def test_label_units_convert_to_bytes_and_ms(value: Any, unit: str, result: Any) -> None:
    text = json.dumps([{"label": "x", "value": value, "unit": unit}])
    got = fields_of("labels", text)["x"]
    assert (type(got), got) == (type(result), result)


def test_label_values_strings_booleans_and_nulls() -> None:
    entries = [
        {"label": "n", "value": 1},
        {"label": "version", "value": "Pharo 12.0"},  # no unit: a string field
        {"label": "build", "value": "12.0"},  # no unit: a string too, not a number
        {"label": "state", "value": "up", "unit": "ms"},  # a unit promises a number
        {"label": "ok", "value": True},
        {"label": "gone", "value": None},
        {"label": "nested", "value": {"a": 1}},
        {"name": "byName", "value": 3},
        {"label": "", "value": 4},
        {"label": "!!!", "value": 4},
        {"value": 4},
        "oldSpace",
        {"label": "n", "value": 99},  # a repeated label: the first wins
    ]
    problems: list[str] = []
    (sample,) = parse_payload("labels", json.dumps(entries), problems=problems)
    assert typed(sample.fields) == [
        ("n", "int", 1), ("version", "str", "Pharo 12.0"), ("build", "str", "12.0"),
        ("ok", "bool", True), ("byName", "int", 3),
    ]  # fmt: skip
    assert problems == [
        "entry 4 (state): 'up' is not a number",
        "entry 7 (nested): a JSON object is not a value",
        "entry 9: no usable label",
        "entry 10: no usable label",
        "entry 11: no usable label",
        "entry 12: a JSON string ('oldSpace'), not a label object",
    ]


def test_label_numbers_too_large_are_left_out_and_said_so() -> None:
    entries = [
        f'{{"label": "a", "value": {LONG}}}',
        f'{{"label": "b", "value": {HUGE}, "unit": "bytes"}}',
        f'{{"label": "c", "value": "{HUGE}", "unit": "bytes"}}',
        f'{{"label": "d", "value": "-{LONG}", "unit": "ms"}}',
        '{"label": "e", "value": 1e308, "unit": "GB"}',
        '{"label": "ok", "value": 1}',
    ]
    problems: list[str] = []
    (sample,) = parse_payload("labels", "[" + ",".join(entries) + "]", problems=problems)
    assert sample.fields == {"ok": 1}
    assert problems == [
        "entry 1 (a): inf is not a finite number",
        "entry 2 (b): inf is not a finite number",
        f"entry 3 (c): '{HUGE[:57]}...' is not a number",
        f"entry 4 (d): '-{LONG[:56]}...' is not a number",
        "entry 5 (e): '1e+308' GB is out of range",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "an empty array, not of label objects"),
        ("[1, 2]", "an array of JSON numbers, not of label objects"),
        ('{"label": "x", "value": 1}', "a JSON object, not an array of label objects"),
        ('[{"label": "v", "value": "x"}]', "no values found (1 entries, none with a number)"),
        ('[{"label": "v", "value": true}]', "no values found"),
    ],
)
def test_labels_errors(text: str, message: str) -> None:
    assert message in reason("labels", text)


# --- influx -------------------------------------------------------------------------------


def test_influx_gives_one_sample_per_line_with_its_time() -> None:
    text = "pharo,host=a uptime=1\napp count=2i 1700000000000000000\n"
    assert parse_payload("influx", text) == [
        Sample("pharo", {"host": "a"}, {"uptime": 1}, None),
        Sample("app", {}, {"count": 2}, 1_700_000_000_000_000_000),
    ]


def test_influx_samples_are_not_completed_with_telemon_fields() -> None:
    """Derived names are for the input's own measurement; the input decides."""
    (sample,) = parse_payload("influx", "app freeOldSpace=1,edenSize=2,youngSpace=1")
    assert sample.fields == {"freeOldSpace": 1, "edenSize": 2, "youngSpace": 1}


def test_influx_skipped_lines_and_values_are_problems() -> None:
    problems: list[str] = []
    samples = parse_payload("influx", "pharo a=1,b=x\rbad\r", problems=problems)
    assert samples == [Sample("pharo", {}, {"a": 1}, None)]
    assert [p.split(":")[0] for p in problems] == ["line 1, column 13", "line 2, column 4"]


def test_influx_numbers_too_large_are_left_out_and_lines_skipped() -> None:
    problems: list[str] = []
    text = f"pharo uptime={LONG},memory=5\napp count={HUGE}i\napp count=1 {HUGE}\n"
    assert parse_payload("influx", text, problems=problems) == [
        Sample("pharo", {}, {"memory": 5}, None)
    ]
    assert [p.split(":")[0] for p in problems] == [
        "line 1, column 14", "line 2, column 5", "line 3, column 13",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# nothing\n", "no values found (only comments and blank lines)"),
        ('m s="x",b=true\n', "no values found (no line has a number)"),
        ("Not Found /metrics", "no line could be read (1 skipped; first: line 1, column 10:"),
    ],
)
def test_influx_errors(text: str, message: str) -> None:
    assert message in reason("influx", text)


# --- with_telemon_fields ------------------------------------------------------------------


def test_telemon_fields_come_first_in_order_then_the_payload_order() -> None:
    fields = {"z": 1, "tenureCount": 2, "a": 3, "uptime": 4, "oldSpace": 5}
    assert list(with_telemon_fields(fields)) == ["uptime", "oldSpace", "tenureCount", "z", "a"]


@pytest.mark.parametrize(
    ("given_fields", "added"),
    [
        ({"fullGCCount": 4, "totalFullGCTime": 660}, {"fullGCs": 4, "fullGCTime": 660}),
        ({"incrementalGCCount": 9, "totalIncrementalGCTime": 8}, {"incrGCs": 9, "incrGCTime": 8}),
        ({"youngSpaceSize": 1, "memorySize": 2, "tenures": 3},
         {"youngSpace": 1, "memory": 2, "tenureCount": 3}),
        ({"old_space": 7, "UPTIME": 8, "memory-free": 9},
         {"oldSpace": 7, "uptime": 8, "memoryFree": 9}),
        ({"memory_old": 1, "memory_young": 2, "memory_total": 3, "gc_full_count": 4},
         {"oldSpace": 1, "youngSpace": 2, "memory": 3, "fullGCs": 4}),
        ({"freeOldSpace": 150, "edenSize": 400, "youngSpace": 300, "oldSpace": 1000},
         {"memoryFree": 250, "usedMemory": 1050}),
        ({"freeOldSpaceSize": 150, "edenSpaceSize": 400, "youngSpaceSize": 300},
         {"youngSpace": 300, "memoryFree": 250, "freeOldSpace": 150, "edenSize": 400}),
        # no usedMemory without oldSpace
        ({"youngSpace": 300, "oldSpace": 1000, "usedMemory": 1050}, {"memoryFree": 250}),
        ({"freeSize": 7, "youngSpace": 1, "oldSpace": 2}, {"memoryFree": 7}),
        ({"oldSpace": 1.5, "youngSpace": 1, "usedMemory": 0.5}, {"memoryFree": 2.0}),
    ],
)  # fmt: skip
def test_telemon_names_derived(given_fields: dict[str, Any], added: dict[str, Any]) -> None:
    result = with_telemon_fields(given_fields)
    assert {k: result[k] for k in added} == added
    assert set(result) == set(given_fields) | set(added)


def test_derived_values_beyond_int64_are_floats_and_overflows_are_not_derived() -> None:
    ints = with_telemon_fields({"oldSpace": INT64_MAX, "youngSpace": 0,
                                "freeOldSpace": INT64_MAX, "edenSize": INT64_MAX})  # fmt: skip
    assert typed({k: ints[k] for k in ("memoryFree", "usedMemory")}) == [
        ("memoryFree", "float", 2.0 * INT64_MAX), ("usedMemory", "float", -float(INT64_MAX)),
    ]  # fmt: skip
    floats = with_telemon_fields({"oldSpace": 1e308, "youngSpace": 0.0,
                                  "freeOldSpace": 1e308, "edenSize": 1e308})  # fmt: skip
    assert "memoryFree" not in floats and "usedMemory" not in floats


def test_original_telemon_memory_free_gives_no_used_memory() -> None:
    """Telemon computed memoryFree its own way; Grafana uses memory - memoryFree."""
    fields = {"oldSpace": 139036448, "youngSpace": 5649200, "memory": 147988480,
              "memoryFree": 140242128}  # fmt: skip
    assert with_telemon_fields(fields) == fields


def test_booleans_strings_and_non_finite_values_derive_nothing() -> None:
    fields = {"fullGCCount": True, "tenures": "3", "freeSize": float("nan"), "upTime": None}
    assert with_telemon_fields(fields) == fields  # type: ignore[arg-type]


FIELD_NAMES = st.sampled_from(
    [*TELEMON_FIELDS, "usedMemory", "freeOldSpace", "edenSize", "fullGCCount", "freeSize",
     "old_space", "x", "y", "youngSpaceSize"]
)  # fmt: skip
VALUES = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES, VALUES, max_size=10))
def test_with_telemon_fields_never_overwrites_and_is_idempotent(fields: dict[str, Any]) -> None:
    result = with_telemon_fields(fields)
    for key, value in fields.items():
        assert result[key] is value
    assert with_telemon_fields(result) == result
    telemon = [k for k in result if k in TELEMON_FIELDS]
    assert telemon == [k for k in TELEMON_FIELDS if k in result]
    assert list(result)[: len(telemon)] == telemon
    for key in set(result) - set(fields):
        value = result[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert math.isfinite(value)


# --- auto ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "text", "formats"),
    [
        ("application/json", '{"uptime": 1}', ["json"]),
        ("text/plain", '  \r\n{"uptime": 1}', ["json"]),  # the content wins
        ("text/html", "\ufeff[1, 2]", ["parameters", "labels"]),
        ("application/json", '[ {"label": "x"}]', ["labels", "parameters"]),
        ("text/plain", "[\n\tnull,\n\t5]", ["parameters", "labels"]),
        ("text/plain", "pharo uptime=1", ["influx", "report"]),
        ("application/json", "pharo uptime=1", ["json", "influx", "report"]),
        ("application/vnd.pharo+json; charset=utf-8", "x", ["json", "influx", "report"]),
        ("text/plain", '"busy"', ["json", "influx", "report"]),
        ("text/plain", "uptime\t\t\t0h41m3s\rmemory\t\t\t1 bytes\r", ["report", "influx"]),
        ("", "\n  GCs 14,295\n", ["report", "influx"]),
        ("", "<html></html>", ["influx", "report"]),
        ("", "", ["influx", "report"]),
    ],
)
def test_candidate_formats(content_type: str, text: str, formats: list[str]) -> None:
    assert candidate_formats(content_type, text) == formats


def test_auto_uses_the_first_format_that_reads_the_body() -> None:
    problems: list[str] = []
    fmt, samples = parse_auto("application/json", "pharo uptime=1,x=y\n", problems=problems)
    assert (fmt, samples) == ("influx", [Sample("pharo", {}, {"uptime": 1}, None)])
    assert len(problems) == 1 and "field 'x' left out" in problems[0]


def test_auto_error_names_every_format_tried_on_one_line() -> None:
    body = "<!DOCTYPE html>\n<html>\n<head>\n<title>\n  Service\n Unavailable </title>\n"
    with pytest.raises(FormatError) as info:
        parse_auto("application/json; charset=utf-8", body)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "no format could read the body (Content-Type 'application/json; charset=utf-8', "
        "an HTML page titled 'Service Unavailable'): json: not JSON: Expecting value at line 1, "
        "column 1; influx: no line could be read (6 skipped; first: line 1, column 16: "
    )
    assert "; report: no values found (no statisticsReport line" in message


def test_auto_error_shortens_each_reason() -> None:
    body = "x" * 1000 + " y\n"
    with pytest.raises(FormatError) as info:
        parse_auto("text/plain", body)
    influx_reason = str(info.value).split("influx: ")[1].split("; report: ")[0]
    assert len(influx_reason) == 160 and influx_reason.endswith("...")


@pytest.mark.parametrize("text", ["", "\ufeff", " \r\n"])
def test_auto_empty_body(text: str) -> None:
    with pytest.raises(FormatError, match=r"^empty body \(Content-Type 'text/plain'\)$"):
        parse_auto("text/plain", text)
    with pytest.raises(FormatError, match=r"^empty body \(no Content-Type\)$"):
        parse_auto("", text)


def test_byte_order_mark_is_ignored() -> None:
    assert parse_payload("json", '\ufeff{"uptime": 1}')[0].fields == {"uptime": 1}
    assert parse_auto("text/plain", "\ufeffpharo uptime=1")[0] == "influx"


def test_unknown_format() -> None:
    assert "unknown format 'xml' (one of influx, json, labels, parameters, report)" in reason(
        "xml", "{}"
    )


def test_format_error_is_always_one_line() -> None:
    assert str(FormatError("a\nb\r\nc\u2028d")) == "a b c d"
    assert isinstance(FormatError("x"), ValueError)


class JSONNumber(str):
    """An integer's JSON text: json.dumps cannot write one of more than 4300 digits."""


def dumps(value: Any) -> str:
    """json.dumps, writing a `JSONNumber` as the number it holds."""
    if isinstance(value, JSONNumber):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


# Runs of digits on both sides of the limits: int64/uint64, float, int()'s 4300 digits.
DIGIT_RUNS = st.builds(
    lambda digit, count: digit * count,
    st.sampled_from("123456789"),
    st.sampled_from([1, 19, 20, 21, 308, 309, 310, 4300, 4301, 6000]),
)
HUGE_INTEGERS = st.builds(
    JSONNumber, st.builds("{}{}".format, st.sampled_from(["", "-"]), DIGIT_RUNS)
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | HUGE_INTEGERS | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)


LABEL_ENTRIES = st.lists(
    st.fixed_dictionaries(
        {"label": st.sampled_from(["memory", "Old space", "x"]), "value": JSON_VALUES},
        optional={"unit": st.sampled_from(["bytes", "KB", "GB", "ns", "s", ""])},
    ),
    min_size=1,
    max_size=4,
)
PARAMETER_ARRAYS = st.lists(
    st.integers(0, 10**6) | HUGE_INTEGERS | st.none(), min_size=11, max_size=45
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES | LABEL_ENTRIES | PARAMETER_ARRAYS, fmt=st.sampled_from(FORMATS))
def test_any_json_gives_samples_or_a_format_error(value: Any, fmt: str) -> None:
    check_any_body(fmt, dumps(value))


REPORT_LINES = st.builds(
    "{}\t\t{}{}{}".format,
    st.sampled_from(["uptime", "memory", "\told", "GCs", "\tfull", "\tincr", "\ttenures"]),
    st.sampled_from(["", "-"]),
    DIGIT_RUNS,
    st.sampled_from([" bytes", "h1m1s", "s", ".5s", " totalling 5ms", "", " (3ms between GCs)"]),
)
INFLUX_LINES = st.builds(
    "pharo{} uptime={}{}{}{}".format,
    st.sampled_from(["", ",host=a b"]),
    st.sampled_from(["", "-"]),
    DIGIT_RUNS,
    st.sampled_from(["", "i", "u", ".5", "e3", "s2"]),
    st.sampled_from(["", ",memory=5", " 1", ",memory=5 1"]) | st.builds(" {}".format, DIGIT_RUNS),
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=80)
    | st.lists(REPORT_LINES | INFLUX_LINES, min_size=1, max_size=4).map("\n".join),
    fmt=st.sampled_from(FORMATS),
)
def test_any_text_gives_samples_or_a_format_error(text: str, fmt: str) -> None:
    check_any_body(fmt, text)


def check_any_body(fmt: str, text: str) -> None:
    """Only FormatError escapes; results always hold a finite number; messages are one line."""
    problems: list[str] = []
    for auto in (False, True):
        try:
            if auto:
                used, samples = parse_auto("application/json", text, problems=problems)
            else:
                used, samples = fmt, parse_payload(fmt, text, problems=problems)
        except FormatError as error:
            assert "\n" not in str(error) and "\r" not in str(error)
            continue
        assert samples
        numbers = [
            v for s in samples for v in s.fields.values()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]  # fmt: skip
        assert numbers and all(math.isfinite(v) for v in numbers)
        # An int beyond int64 would be clamped by the encoder, so untyped numbers give a
        # float there; only line protocol's typed `123u` may go on to uint64.
        high = 2**64 - 1 if used == "influx" else INT64_MAX
        assert all(-(2**63) <= v <= high for v in numbers if isinstance(v, int))
    assert all("\n" not in p and "\r" not in p for p in problems)


def test_json_figures_given_as_text_are_read_and_others_are_noted() -> None:
    problems: list[str] = []
    [sample] = parse_payload(
        "json", '{"uptime": "1,452,854", "memory": [1, 2], "version": "Pharo 12"}',
        problems=problems,
    )
    assert sample.fields == {"uptime": 1452854}
    assert len(problems) == 1 and "'memory'" in problems[0]
