"""One name, one type, one unit per Pharo figure (issue 14): the table, classic VMs, every format.

The golden payloads of classic arrays are in tests/data/pharo/ (parameters-legacy-40,
parameters-squeak-classic-40, labels-classic-microseconds); these tests check that every
format of one VM - Spur or classic - lands in the same fields with the same kinds, that no
value of one VM is lost to type locking, and the simulator's classic mode.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import FORMAT_PATHS, lines_of, scrape_once, status_of
from hypothesis import given, settings
from hypothesis import strategies as st

from telemon.inputs import pharo as pharo_input
from telemon.inputs.pharo import PharoConfig, samples_to_metrics
from telemon.inputs.pharo_figures import FIGURES, TELEMON_FIELDS, figure_kinds, figures_markdown
from telemon.inputs.pharo_formats import (
    CLASSIC_PARAMETERS,
    PARAMETER_NAMES,
    REPORT_FIELDS,
    SPUR_PARAMETERS,
    as_figures,
    is_classic,
    parse_payload,
)
from telemon.simulator import SimulatedVM, VMSnapshot
from telemon.simulator.app import start_simulator
from telemon.simulator.render import (
    render_influx,
    render_json,
    render_labels,
    render_parameters,
    render_report,
)
from telemon.simulator.snapshot import SQUEAK_EPOCH_OFFSET_S

RENDERERS = {
    "influx": render_influx,
    "json": render_json,
    "labels": render_labels,
    "parameters": render_parameters,
    "report": render_report,
}
DATA = Path(__file__).parent / "data" / "pharo"
REPORT_NAMES = frozenset(name for names in REPORT_FIELDS.values() for name in names)


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "b"
    return {int: "i", float: "f", str: "s"}[type(value)]


def classic_array(**values: Any) -> list[Any]:
    """A classic VM's 40 parameters: end addresses, allocation counts, `pN=...` overrides."""
    array: list[Any] = [0] * 40
    array[:5] = [10_000_000, 10_400_000, 12_000_000, 1500, 4000]
    for key, value in values.items():
        array[int(key[1:]) - 1] = value
    return array


def fields_by_format(snapshot: VMSnapshot) -> dict[str, dict[str, Any]]:
    """What telemon writes for each format of one snapshot (as the input converts it)."""
    # The wall clock at the snapshot: parameter 20 (start time, from 1901) plus the uptime.
    started_us = snapshot.get(20) - SQUEAK_EPOCH_OFFSET_S * 1_000_000
    clock_ns = started_us * 1000 + snapshot.uptime_ms * 1_000_000
    written = {}
    for fmt, render in RENDERERS.items():
        samples = parse_payload(fmt, render(snapshot))
        [metric] = samples_to_metrics(samples, "pharo", "vm:8079", clock_ns)
        written[fmt] = metric.fields
    return written


# --- the table ------------------------------------------------------------------------------


def test_the_table_starts_with_telemon_s_ten_and_declares_integers_and_a_few_floats() -> None:
    assert list(FIGURES)[:10] == list(TELEMON_FIELDS)
    assert TELEMON_FIELDS == (
        "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
        "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
    )  # fmt: skip
    kinds = figure_kinds()
    assert {name for name, kind in kinds.items() if kind == "f"} == {
        "gcGrowthRatio", "avgLiveStackPages",
    }  # fmt: skip
    assert set(kinds.values()) == {"i", "f"}


def test_every_name_a_format_gives_is_in_the_table() -> None:
    """The parsers' names come from the table: parameters, report labels, aliases."""
    assert set(PARAMETER_NAMES.values()) <= set(FIGURES)
    assert set(SPUR_PARAMETERS) <= set(FIGURES) and set(CLASSIC_PARAMETERS) <= set(FIGURES)
    assert REPORT_NAMES <= set(FIGURES)
    spellings = [re.sub(r"[^0-9a-z]", "", n.lower()) for n in FIGURES]
    assert len(set(spellings)) == len(spellings), "two figures differ only in case or separators"


def test_times_are_ms_sizes_bytes_and_no_name_says_another_unit() -> None:
    for figure in FIGURES.values():
        if figure.name.endswith("Time") or figure.name.endswith("Pause"):
            assert figure.unit == "ms", figure
        if figure.name.endswith("Microseconds"):
            assert figure.unit == "µs since 1901", figure  # the VM's start: a clock, not a time
    assert FIGURES["idleTime"].spur is not None and FIGURES["idleTime"].spur.micro


def test_the_input_declares_the_table() -> None:
    declared = PharoConfig(urls=["http://vm:8079/"], measurement="vm").field_types()
    assert declared == {"vm": figure_kinds()}
    assert pharo_input.TELEMON_FIELD_TYPES == figure_kinds()


def test_the_readme_table_is_generated_from_the_table() -> None:
    table = figures_markdown(REPORT_NAMES)
    assert table in pharo_input.REFERENCE
    for name in FIGURES:
        assert f"| `{name}` |" in table
    assert "| `youngSpace` | integer | bytes |" in table
    assert "p2 / p2 - p1" in table and "p8 / p8 (µs)" in table


# --- as_figures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ({"jit_compiledMethods": 5}, {"jitCompiledMethods": 5}),
        ({"JIT_COMPILED_BLOCKS": 2}, {"jitCompiledBlocks": 2}),
        ({"fullGCTime": 1.007}, {"fullGCTime": 1}),
        ({"incrGCTime": 2.5}, {"incrGCTime": 3}),  # halves up
        ({"uptime": 1452854.0}, {"uptime": 1452854}),
        ({"oldSpace": "2,048"}, {"oldSpace": 2048}),
        ({"gcGrowthRatio": 1}, {"gcGrowthRatio": 1.0}),
        ({"edenSpaceSize": 7}, {"edenSpaceSize": 7, "edenSize": 7}),  # an alias stays
        ({"jitCompiledMethods": 1, "jit_compiledMethods": 2},
         {"jitCompiledMethods": 1, "jit_compiledMethods": 2}),  # the payload's own name wins
        ({"averageGCPause": 1.007, "x": "y"}, {"averageGCPause": 1.007, "x": "y"}),  # not figures
        ({"oldSpace": 1e300}, {"oldSpace": 1e300}),  # beyond int64: left to the encoder to refuse
        ({"oldSpace": True, "memory": "lots"}, {"oldSpace": True, "memory": "lots"}),
    ],
)  # fmt: skip
def test_as_figures_names_and_converts(given: dict[str, Any], written: dict[str, Any]) -> None:
    result = as_figures(given)
    assert [(k, kind_of(v), v) for k, v in result.items()] == [
        (k, kind_of(v), v) for k, v in written.items()
    ]


# --- classic arrays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "classic"),
    [
        (classic_array(), True),
        (classic_array()[:11], True),  # an even older VM: fewer parameters, same meanings
        (classic_array(p4=None), False),  # Spur answers nil there
        (classic_array(p5=None), False),
        (classic_array(p2=9_000_000), False),  # Spur's p2 is a size, below p1
        (classic_array() + [68021], False),  # more than 40: not a classic interpreter
        (classic_array(p4="x"), False),
    ],
)
def test_a_classic_array_is_recognised(array: list[Any], classic: bool) -> None:
    assert is_classic(array) is classic


def test_a_classic_array_gives_sizes_not_addresses_and_ms_not_microseconds() -> None:
    array = classic_array(p7=3, p8=51_499, p9=120, p10=98_500, p11=77, p16=5, p34=1234, p36=9_000)
    (sample,) = parse_payload("parameters", json.dumps(array))
    fields = sample.fields
    assert fields["oldSpace"] == 10_000_000
    assert fields["youngSpace"] == 400_000  # p2 - p1, not the end address
    assert fields["memory"] == 12_000_000
    assert fields["memoryFree"] == 1_600_000  # p3 - p2
    assert fields["usedMemory"] == 10_400_000  # p2
    assert (fields["fullGCTime"], fields["incrGCTime"], fields["lastGCAt"]) == (51, 99, 9)
    assert fields["allocationsBeforeLastGC"] == 1234 and "bytesAllocated" not in fields
    assert fields["allocationsSinceGC"] == 1500 and fields["allocationsBetweenGCs"] == 4000
    left_out = {"idleTime", "compactionTime", "scavengeThreshold", "startMicroseconds",
                "lastIncrGCTime", "idleMicroseconds"}  # fmt: skip
    assert not left_out & set(fields)
    assert all(kind_of(v) == FIGURES[k].kind for k, v in fields.items())


def test_a_spur_array_keeps_its_meanings() -> None:
    array: list[Any] = [0] * 85
    array[:5] = [139_036_448, 5_649_200, 147_988_480, None, None]
    array[7], array[15], array[33], array[43], array[53] = 660, 1_812_345_678, 17, 7_340_032, 9
    (sample,) = parse_payload("parameters", json.dumps(array))
    fields = sample.fields
    assert (fields["youngSpace"], fields["fullGCTime"], fields["bytesAllocated"]) == (
        5_649_200, 660, 17,
    )  # fmt: skip
    assert fields["idleTime"] == 1_812_346  # the VM's microseconds, in ms
    assert fields["memoryFree"] == 9 + 7_340_032 - 5_649_200
    assert "allocationsBeforeLastGC" not in fields and "allocationsSinceGC" not in fields


# --- every format of one VM -------------------------------------------------------------------


@pytest.mark.parametrize("vm", ["spur", "classic"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_format_of_one_vm_gives_the_same_names_types_and_values(vm: Any, seed: int) -> None:
    """Whatever the format, a figure lands in the same field with the same kind and value."""
    snapshot = SimulatedVM(seed, uptime=3600.0, vm=vm).snapshot()
    written = fields_by_format(snapshot)
    kinds = figure_kinds()
    for fmt, fields in written.items():
        for key, value in fields.items():
            if key in kinds:
                assert kind_of(value) == kinds[key], (fmt, key, value)
    for name in TELEMON_FIELDS:
        values = {fmt: fields[name] for fmt, fields in written.items() if name in fields}
        assert len(set(values.values())) == 1, (name, values)
        no_clock = name == "uptime" and vm == "classic"  # a classic VM has no start time
        assert set(values) == set(written) - ({"parameters"} if no_clock else set()), name
    assert written["json"]["usedMemory"] == written["parameters"]["usedMemory"]
    assert written["report"]["usedMemory"] == written["parameters"]["usedMemory"]


def test_the_jit_counters_have_one_name_from_json_and_parameters() -> None:
    """The JSON's {"jit": {"compiledMethods": ...}} is jitCompiledMethods, as parameter 75."""
    snapshot = SimulatedVM(4, uptime=3600.0).snapshot()
    written = fields_by_format(snapshot)
    for name in ("jitCompiledMethods", "jitCompiledBlocks", "jittedMethods", "codeCompactions"):
        assert written["json"][name] == written["parameters"][name], name
    assert "jit_compiledMethods" not in written["json"]
    assert "jit_compiledBlocks" not in written["json"]
    assert written["json"]["jit_methods"] == written["json"]["jittedMethods"]  # an alias stays
    assert "idleTime" in written["json"] and "idleMicroseconds" not in written["json"]
    assert written["json"]["idleTime"] == written["parameters"]["idleTime"]


def test_labels_in_microseconds_give_integer_ms() -> None:
    """The classic VM's labels give GC times in `us`: written as integer ms."""
    snapshot = SimulatedVM(5, uptime=3600.0, vm="classic").snapshot()
    entries = {e["label"]: e for e in json.loads(render_labels(snapshot))}
    assert entries["fullGCTime"]["unit"] == entries["incrGCTime"]["unit"] == "us"
    fields = fields_by_format(snapshot)["labels"]
    for name in ("fullGCTime", "incrGCTime"):
        micro = entries[name]["value"]
        assert fields[name] == (micro + 500) // 1000 and isinstance(fields[name], int)


# --- the simulator's classic mode -------------------------------------------------------------


def test_a_classic_simulated_vm_answers_40_classic_parameters() -> None:
    vm = SimulatedVM(6, uptime=600.0, vm="classic")
    parameters = vm.parameters()
    assert len(parameters) == 40 and is_classic(parameters)
    assert parameters[39] == 4 and parameters[11:20] == [0] * 9
    later = vm.at(600.0).parameters()
    for n in (7, 8, 9, 10, 11):  # counters never go down
        assert later[n - 1] >= parameters[n - 1], n
    assert not is_classic(SimulatedVM(6, uptime=600.0).parameters())
    assert not is_classic(SimulatedVM(6, uptime=600.0, parameter_count=40).parameters())
    with pytest.raises(ValueError, match="unknown vm"):
        SimulatedVM(vm="cog")  # type: ignore[arg-type]


def test_a_classic_vm_s_report_has_cr_line_ends() -> None:
    snapshot = SimulatedVM(6, uptime=600.0, vm="classic").snapshot()
    text = render_report(snapshot)
    assert "\n" not in text and text.count("\r") >= 10 and text.endswith("\r")
    assert "\r" not in render_report(SimulatedVM(6, uptime=600.0).snapshot())


async def test_five_formats_of_one_classic_vm_in_one_table_lose_nothing(
    aiohttp_client: Any,
) -> None:
    """Issue 14's case: every format of one VM in one `[[inputs.pharo]]` table, auto format.

    The clock is frozen, so every endpoint serves the same state."""
    runner, port = await start_simulator(
        "127.0.0.1", 0, vms=2, seed=3, classic_vms={1}, clock=lambda: 0.0
    )
    try:
        urls = [f"http://127.0.0.1:{port}/1{path}" for path in FORMAT_PATHS.values()]
        instances = dict(zip(urls, FORMAT_PATHS, strict=True))
        table = {"urls": urls, "instances": instances}
        body = await scrape_once(aiohttp_client, {"pharo": [table]})
    finally:
        await runner.cleanup()
    lines = {line.tags["instance"]: line.fields for line in lines_of(body, "pharo")}
    assert set(lines) == set(FORMAT_PATHS)
    for url in urls:
        status = status_of(body, target=url)
        assert status["up"] == 1 and status.get("values_dropped", 0) == 0, (url, status)
    for name in TELEMON_FIELDS[1:]:
        assert len({lines[fmt][name] for fmt in FORMAT_PATHS}) == 1, name
    assert lines["labels"]["fullGCTime"] == lines["parameters"]["fullGCTime"]
    assert lines["parameters"]["youngSpace"] < lines["parameters"]["oldSpace"]
    assert lines["parameters"]["memoryFree"] == (
        lines["parameters"]["memory"] - lines["parameters"]["usedMemory"]
    )


async def test_the_demo_polls_spur_and_classic_vms(aiohttp_client: Any) -> None:
    """`telemon demo` serves every format of a Spur VM and of a classic VM."""
    from telemon.demo import demo_app
    from telemon.server import AGENT_KEY

    client = await aiohttp_client(demo_app("127.0.0.1:0"))
    await client.server.app[AGENT_KEY].collector.collect_all()
    body = await (await client.get("/metrics")).text()
    lines = {line.tags["instance"]: line.fields for line in lines_of(body, "pharo")}
    classic, spur = lines["demo-classic-parameters"], lines["demo-parameters"]
    assert "allocationsSinceGC" in classic and "bytesAllocated" not in classic
    assert "bytesAllocated" in spur and "allocationsSinceGC" not in spur
    assert classic["wordSize"] == 4 and classic["youngSpace"] < classic["oldSpace"]
    assert lines["demo-classic-labels"]["fullGCTime"] >= 0


@pytest.mark.parametrize(
    ("case", "count"),
    [
        ("parameters-pharo12-85", 67),  # and uptime, from parameter 20 and the clock: 68
        ("parameters-squeak-classic-40", 26),
        ("report-pharo12-first-view", 13),
        ("report-pharo12-since-last-view", 21),
    ],
)
def test_the_figure_counts_the_readme_gives(case: str, count: int) -> None:
    """The README says which formats give the most figures: these counts."""
    (path,) = (DATA / case).glob("payload.*")
    (sample,) = parse_payload(case.split("-")[0], path.read_text(encoding="utf-8"))
    assert len(sample.fields) == count
    assert len(CLASSIC_PARAMETERS) == 26 and len(SPUR_PARAMETERS) + 3 == 68
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "68 from Pharo 12's VM" in readme and "The report gives 13 (21 from" in readme


NAMES = st.sampled_from(
    ["uptime", "oldSpace", "old_space", "jit_compiledMethods", "jitCompiledMethods",
     "gcGrowthRatio", "edenSpaceSize", "memoryUsed", "x", "fullGCTime", "FULL_GC_TIME"]
)  # fmt: skip
VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.booleans(),
    st.sampled_from(["12", "1,024", "x", ""]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=8))
def test_as_figures_is_idempotent_and_gives_declared_kinds(fields: dict[str, Any]) -> None:
    result = as_figures(fields)
    assert as_figures(result) == result
    kinds = figure_kinds()
    for key, value in result.items():
        if key not in kinds:
            assert fields[key] is value  # not a figure: as the payload gave it
            continue
        in_range = isinstance(value, (int, float)) and abs(value) < 2**63 - 1024
        if in_range and not isinstance(value, bool):
            assert kind_of(value) == kinds[key], (key, value)
    assert len(result) >= len(fields)  # renamed or kept, never lost
