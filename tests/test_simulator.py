"""The Pharo VM simulator: the model's invariants, the formats, the HTTP app and its faults."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import Clocks, free_port, wait_until
from pytest_aiohttp import AiohttpClient

from telemon.simulator import (
    ENDPOINTS,
    FAULTS,
    LEGACY_PARAMETER_COUNT,
    MODERN_PARAMETER_COUNT,
    SIMULATOR_KEY,
    Param,
    SimulatedVM,
    VMSnapshot,
    create_simulator_app,
    start_simulator,
)
from telemon.simulator.render import (
    TELEMON_FIELDS,
    ReportViews,
    label_values,
    named_values,
    render_influx,
    render_json,
    render_labels,
    render_parameters,
    render_report,
    telemon_fields,
)
from telemon.simulator.snapshot import COUNTER_PARAMETERS, NIL_PARAMETERS, ParameterValue
from telemon.simulator.vm import EDEN_SIZE, NEW_SPACE_SIZE

SEED_EXAMPLE = (
    "pharo,host=telemon-1 uptime=2023314,oldSpace=139036448,youngSpace=5649200,"
    "memory=147988480,memoryFree=140242128,fullGCs=4,fullGCTime=660,incrGCs=14291,"
    "incrGCTime=12899,tenureCount=696589"
)
TELEMON_LINE = re.compile(
    r"pharo,host=(?P<host>[^ ,]+) "
    + ",".join(f"{name}=(?P<{name}>-?\\d+)" for name in TELEMON_FIELDS)
)
REFERENCE_REPORT = """\
uptime\t\t\t0h41m3s
memory\t\t\t147,988,480 bytes
\told\t\t\t139,036,448 bytes (94.0%)
\tyoung\t\t5,649,200 bytes (3.8%)
\tused\t\t138,795,520 bytes (93.8%)
\tfree\t\t9,192,960 bytes (6.2%)
GCs\t\t\t\t14,295 (172ms between GCs)
\tfull\t\t\t4 totalling 660ms (0.0% uptime), avg 165.0ms
\tincr\t\t14,291 totalling 12,899ms (0.5% uptime), avg 0.9ms
\ttenures\t\t696,589 (avg 0 GCs/tenure)
Since last view\t1,204 (98ms between GCs)
\tuptime\t\t118.3s
\tfull\t\t\t0 totalling 0ms (0.0% uptime)
\tincr\t\t1,204 totalling 1,003ms (0.8% uptime), avg 0.8ms
\ttenures\t\t52,113 (avg 0 GCs/tenure)
"""
"""The statisticsReport example of reference/pharo-vm.md."""


def run(vm: SimulatedVM, steps: int, dt: float, start: float = 0.0) -> list[VMSnapshot]:
    """Snapshots of `vm` after each of `steps` clock moves of `dt` seconds."""
    return [vm.at(start + dt * (i + 1)) for i in range(steps)]


def snapshot_of(uptime_ms: int, **params: int) -> VMSnapshot:
    """A hand-made snapshot: parameters by `Param` name (lower case), the rest 0."""
    values: list[ParameterValue] = [0] * MODERN_PARAMETER_COUNT
    for name, value in params.items():
        values[Param[name.upper()] - 1] = value
    return VMSnapshot(uptime_ms, tuple(values))


def shape(text: str) -> list[str]:
    """`text` with every number replaced by N: what a parser keys on."""
    return re.sub(r"\d[\d,]*(\.\d+)?", "N", text).splitlines()


# The model


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_counters_never_decrease_and_uptime_follows_the_clock(seed: int) -> None:
    """Over irregular steps, every total is monotonic and uptime tracks the clock."""
    vm = SimulatedVM(seed, now=0.0, uptime=600.0)
    clock, previous = 0.0, vm.snapshot()
    for i in range(800):
        clock += (0.05, 1.0, 7.5, 45.0)[i % 4]
        snapshot = vm.at(clock)
        assert snapshot.uptime_ms == pytest.approx(600_000 + clock * 1000, abs=1)
        assert snapshot.uptime_ms > previous.uptime_ms
        for n in COUNTER_PARAMETERS:
            assert snapshot.get(n) >= previous.get(n), Param(n).name
        last_gc = snapshot.get(Param.LAST_GC_AT)
        assert previous.get(Param.LAST_GC_AT) <= last_gc <= snapshot.uptime_ms
        assert snapshot.get(Param.IDLE_MICROSECONDS) <= snapshot.uptime_ms * 1000
        previous = snapshot


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_memory_figures_are_consistent(seed: int) -> None:
    """memory = old + new space; free is Pharo's formula; nothing negative or oversized."""
    for s in run(SimulatedVM(seed, uptime=30.0), 3000, 2.5):
        old, young, memory = s.get(Param.OLD_SPACE), s.get(Param.YOUNG_SPACE), s.get(Param.MEMORY)
        free_old, eden = s.get(Param.FREE_OLD_SPACE), s.get(Param.EDEN_SIZE)
        assert memory == old + NEW_SPACE_SIZE
        assert eden == EDEN_SIZE
        assert s.memory_free == free_old + eden - young
        assert s.memory_used == young + old - s.memory_free
        assert 0 <= young <= eden
        assert 0 <= free_old <= old
        assert 0 <= s.memory_free <= memory
        assert 0 < s.memory_used <= memory
        assert telemon_fields(s)["memoryFree"] == s.memory_free


def test_full_gcs_are_rare_and_shrink_old_space() -> None:
    """Scavenges many times a second, full GCs every few minutes; these free old space."""
    snapshots = run(SimulatedVM(4, uptime=10.0), 4 * 3600, 1.0)
    gcs = snapshots[-1].get(Param.FULL_GCS) - snapshots[0].get(Param.FULL_GCS)
    scavenges = snapshots[-1].get(Param.INCR_GCS) - snapshots[0].get(Param.INCR_GCS)
    assert gcs >= 3
    assert scavenges > 200 * gcs
    shrunk = grown = 0
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        in_use = [s.get(Param.OLD_SPACE) - s.get(Param.FREE_OLD_SPACE) for s in (before, after)]
        if after.get(Param.FULL_GCS) > before.get(Param.FULL_GCS):
            assert in_use[1] < in_use[0] * 0.9
            shrunk += after.get(Param.OLD_SPACE) < before.get(Param.OLD_SPACE)
        else:
            assert in_use[1] >= in_use[0]  # tenuring only adds between full GCs
            grown += after.get(Param.OLD_SPACE) > before.get(Param.OLD_SPACE)
    assert shrunk >= 1
    assert grown >= 1
    assert snapshots[-1].get(Param.SHRINK_REQUESTS) > snapshots[0].get(Param.SHRINK_REQUESTS)
    assert snapshots[-1].get(Param.TENURE_COUNT) > snapshots[0].get(Param.TENURE_COUNT)


def test_same_seed_and_clock_give_the_same_vm() -> None:
    """Deterministic: the seed and the clock values decide everything."""
    clocks = [0.5, 3.0, 3.0, 70.0, 71.25]
    vm, again = SimulatedVM(11, uptime=100.0), SimulatedVM(11, uptime=100.0)
    first = [vm.at(t) for t in clocks]
    assert [again.at(t) for t in clocks] == first
    assert SimulatedVM(12, uptime=100.0).at(70.0) != first[3]


def test_a_clock_going_back_is_ignored() -> None:
    """advance() to an earlier clock value changes nothing."""
    vm = SimulatedVM(1, now=50.0)
    later = vm.at(60.0)
    assert vm.at(55.0) == later


def test_restart_resets_uptime_and_counters() -> None:
    """A restarted image starts from zero; parameter 20 moves to the new boot time."""
    vm = SimulatedVM(2, now=0.0, uptime=7200.0)
    before = vm.at(100.0)
    vm.restart(130.0)
    after = vm.snapshot()
    assert vm.restarts == 1
    assert after.uptime_ms == 0
    assert after.get(Param.INCR_GCS) == 0
    assert after.get(Param.FULL_GCS) <= 2  # the image load's own
    boot = Param.START_MICROSECONDS
    assert after.get(boot) == before.get(boot) + 7_330_000_000  # 7200 s + 130 s later
    assert vm.at(131.0).uptime_ms == 1000


def test_parameters_answer_85_values_with_nils() -> None:
    """A modern VM: 85 elements, nil exactly where Spur leaves them unused."""
    parameters = SimulatedVM(3, uptime=60.0).parameters()
    assert len(parameters) == MODERN_PARAMETER_COUNT
    for n, value in enumerate(parameters, start=1):
        if n in NIL_PARAMETERS:
            assert value is None, n
        elif n in (Param.GC_GROWTH_RATIO, Param.AVG_LIVE_STACK_PAGES):
            assert isinstance(value, float), n  # the VM answers Floats there
        else:
            assert isinstance(value, int), n
    assert parameters[Param.WORD_SIZE - 1] == 8
    assert SimulatedVM(3).parameters()[Param.SEGMENT_ALLOCATION_MAX_PAUSE - 1] == 0


def test_an_older_vm_answers_40_parameters() -> None:
    """parameter_count=40 emulates an old VM: the same first 40 values, nothing after."""
    modern = SimulatedVM(3, uptime=60.0).parameters()
    legacy = SimulatedVM(3, uptime=60.0, parameter_count=LEGACY_PARAMETER_COUNT).parameters()
    assert legacy == modern[:LEGACY_PARAMETER_COUNT]
    with pytest.raises(ValueError, match="parameter_count"):
        SimulatedVM(parameter_count=86)


# The formats


def test_the_seed_example_has_the_telemon_shape() -> None:
    """The pattern the next tests use matches the original Telemon output."""
    assert TELEMON_LINE.fullmatch(SEED_EXAMPLE)


def test_influx_is_exactly_the_original_telemon_line() -> None:
    """Measurement pharo, the ten fields in order, bare integers, no timestamp, one line."""
    snapshot = SimulatedVM(1, uptime=2023.0).snapshot()
    text = render_influx(snapshot, tags={"host": "telemon-1"})
    match = TELEMON_LINE.fullmatch(text)
    assert match is not None, text
    assert {name: int(match[name]) for name in TELEMON_FIELDS} == telemon_fields(snapshot)
    assert "\n" not in text and "i," not in text and not text.endswith("i")


def test_influx_user_fields_follow_sorted_and_an_app_line_may_follow() -> None:
    """User fields come after the ten, sorted by key; the app measurement is a second line."""
    snapshot = SimulatedVM(1).snapshot()
    text = render_influx(
        snapshot,
        tags={"host": "h"},
        fields={"newMeaning": 84, "meaning": 42, "ratio": 0.5},
        app_measurement="blog",
    )
    pharo, blog = text.split("\n")
    tenures = snapshot.get(Param.TENURE_COUNT)
    assert pharo.endswith(f",tenureCount={tenures},meaning=42,newMeaning=84,ratio=0.5")
    assert blog == (
        f"blog entityCount={snapshot.entity_count},entityMemory={snapshot.entity_memory}"
    )


def test_influx_does_not_escape() -> None:
    """Like the original: a space or comma in a tag value goes out raw."""
    text = render_influx(SimulatedVM().snapshot(), measurement="my app", tags={"host": "a b,c"})
    assert text.startswith("my app,host=a b,c uptime=")


def test_json_is_an_object_of_named_values_with_a_nested_object() -> None:
    """Compact JSON; the ten Telemon values at the top, the JIT figures nested."""
    snapshot = SimulatedVM(6, uptime=300.0).snapshot()
    text = render_json(snapshot)
    data = json.loads(text)
    assert ": " not in text
    assert data == named_values(snapshot)
    assert {name: data[name] for name in TELEMON_FIELDS} == telemon_fields(snapshot)
    assert data["jit"]["compiledMethods"] == snapshot.get(Param.JIT_COMPILED_METHODS)
    assert data["freeOldSpace"] + data["edenSize"] - data["youngSpace"] == data["memoryFree"]


def test_labels_are_label_value_unit_objects() -> None:
    """A JSON list of {"label", "value", "unit"}, bytes and ms where they apply."""
    snapshot = SimulatedVM(6, uptime=300.0).snapshot()
    data = json.loads(render_labels(snapshot))
    assert data == label_values(snapshot)
    assert all(set(entry) == {"label", "value", "unit"} for entry in data)
    by_label = {entry["label"]: entry for entry in data}
    assert by_label["oldSpace"] == {
        "label": "oldSpace",
        "value": snapshot.get(Param.OLD_SPACE),
        "unit": "bytes",
    }
    assert by_label["uptime"]["unit"] == "ms"
    assert [entry["label"] for entry in data[:10]] == list(TELEMON_FIELDS)


@pytest.mark.parametrize("count", [MODERN_PARAMETER_COUNT, LEGACY_PARAMETER_COUNT])
def test_parameters_are_a_json_array_with_nulls(count: int) -> None:
    """getParameters as JSON: null for nil, as long as the VM's list."""
    snapshot = SimulatedVM(2, uptime=60.0, parameter_count=count).snapshot()
    data = json.loads(render_parameters(snapshot))
    assert len(data) == count
    assert data == snapshot.parameters()
    assert data[3] is None and data[4] is None
    assert data[0] == snapshot.get(Param.OLD_SPACE)


def test_report_has_the_reference_shape() -> None:
    """Same lines, labels and tabs as the reference; "Since last view" on the second view."""
    vm = SimulatedVM(8, now=0.0, uptime=2463.0)
    first = vm.at(0.0)
    second = vm.at(118.3)
    reference = shape(REFERENCE_REPORT)
    assert shape(render_report(first)) == reference[:10]
    since = shape(render_report(second, first))
    if second.get(Param.FULL_GCS) == first.get(Param.FULL_GCS):
        assert since == reference
    else:  # a full GC in between: the block's full line gains its avg
        assert since[:12] == reference[:12] and since[13:] == reference[13:]


def test_report_prints_like_smalltalk() -> None:
    """roundTo: quirks (4.1000000000000005), avg parts left out when a count is 0."""
    snapshot = snapshot_of(
        2_463_000,
        memory=1_000_000,
        old_space=910_000,
        young_space=41_000,
        free_old_space=100_000,
        eden_size=50_000,
        incr_gcs=14_291,
        incr_gc_time=12_899,
    )
    assert render_report(snapshot) == (
        "uptime\t\t\t0h41m3s\n"
        "memory\t\t\t1,000,000 bytes\n"
        "\told\t\t\t910,000 bytes (91.0%)\n"
        "\tyoung\t\t41,000 bytes (4.1000000000000005%)\n"
        "\tused\t\t842,000 bytes (84.2%)\n"
        "\tfree\t\t109,000 bytes (10.9%)\n"
        "GCs\t\t\t\t14,291 (172ms between GCs)\n"
        "\tfull\t\t\t0 totalling 0ms (0.0% uptime)\n"
        "\tincr\t\t14,291 totalling 12,899ms (0.5% uptime), avg 0.9ms\n"
        "\ttenures\t\t0\n"
    )


def test_report_since_last_view_counts_the_difference() -> None:
    """The block holds the differences since `previous`; `newline` may be CR as in Pharo."""
    previous = snapshot_of(
        1_000_000,
        memory=1,
        full_gcs=3,
        full_gc_time=400,
        incr_gcs=1000,
        incr_gc_time=900,
        tenure_count=5000,
    )
    current = snapshot_of(
        1_118_300,
        memory=1,
        full_gcs=4,
        full_gc_time=560,
        incr_gcs=2204,
        incr_gc_time=1903,
        tenure_count=57113,
    )
    lines = render_report(current, previous, newline="\r").split("\r")
    assert lines[10:] == [
        "Since last view\t1,205 (98ms between GCs)",
        "\tuptime\t\t118.30000000000001s",
        "\tfull\t\t\t1 totalling 160ms (0.1% uptime), avg 160.0ms",
        "\tincr\t\t1,204 totalling 1,003ms (0.8% uptime), avg 0.8ms",
        "\ttenures\t\t52,113 (avg 0 GCs/tenure)",
        "",
    ]


def test_report_views_are_per_viewer_and_start_over_after_a_restart() -> None:
    """Each viewer's first view has no "Since last view"; a restarted VM starts afresh."""
    vm, views = SimulatedVM(1, now=0.0), ReportViews()
    assert "Since last view" not in views.render("a", vm.at(1.0))
    assert "Since last view" in views.render("a", vm.at(2.0))
    assert "Since last view" not in views.render("b", vm.at(3.0))
    vm.restart(4.0)
    assert "Since last view" not in views.render("a", vm.at(5.0))
    assert "Since last view" in views.render("a", vm.at(6.0))


def test_report_views_are_bounded() -> None:
    """Past `limit` viewers, the oldest is forgotten."""
    vm, views = SimulatedVM(), ReportViews(limit=2)
    for viewer in ("a", "b", "c"):
        views.render(viewer, vm.snapshot())
    assert "Since last view" not in views.render("a", vm.snapshot())
    assert "Since last view" in views.render("c", vm.snapshot())


# The HTTP app

JSON_FORMATS = {"json", "labels", "parameters"}
Client = TestClient[web.Request, web.Application]


async def client_for(aiohttp_client: AiohttpClient, **options: Any) -> Client:
    """A test client for a simulator on a clock that stands still (options as
    create_simulator_app's)."""
    options.setdefault("clock", Clocks(monotonic_s=1000.0).monotonic)
    return await aiohttp_client(create_simulator_app(**options))


@pytest.mark.parametrize("prefix", ["", "/2"])
@pytest.mark.parametrize(("path", "fmt"), ENDPOINTS.items())
async def test_every_endpoint_serves_its_format(
    aiohttp_client: AiohttpClient, prefix: str, path: str, fmt: str
) -> None:
    """Each path answers 200 with its format's content type and body, for VM 0 and VM n."""
    client = await client_for(aiohttp_client, vms=3)
    response = await client.get(prefix + path)
    assert response.status == 200
    text = await response.text()
    if fmt in JSON_FORMATS:
        assert response.content_type == "application/json"
        json.loads(text)
    else:
        assert response.content_type == "text/plain"
    if fmt == "influx":
        assert TELEMON_LINE.fullmatch(text)
    if fmt == "report":
        assert text.startswith("uptime\t\t\t")


async def test_index_lists_the_paths_and_healthz_answers(aiohttp_client: AiohttpClient) -> None:
    """Without a format, / is an HTML index of the endpoints; /healthz says ok."""
    client = await client_for(aiohttp_client, vms=20)
    response = await client.get("/")
    assert response.content_type == "text/html"
    page = await response.text()
    assert all(f'href="{path}"' in page for path in ENDPOINTS)
    assert "/19/metrics" in page
    vm_page = await (await client.get("/7/")).text()
    assert 'href="/7/stats.json"' in vm_page
    health = await client.get("/healthz")
    assert (health.status, await health.text()) == (200, "ok\n")


@pytest.mark.parametrize("root", ["/", "/1/", "/1"])
async def test_format_option_makes_the_root_serve_it(
    aiohttp_client: AiohttpClient, root: str
) -> None:
    """fmt= makes / (and /<n>/) one URL for one format."""
    client = await client_for(aiohttp_client, vms=2, fmt="labels")
    response = await client.get(root)
    assert response.content_type == "application/json"
    assert json.loads(await response.text())[0]["label"] == "uptime"


async def test_vms_at_prefixes_are_distinct(aiohttp_client: AiohttpClient) -> None:
    """/<n>/ is VM n, with its own state; the bare paths are VM 0; no VM beyond the fleet."""
    client = await client_for(aiohttp_client, vms=3, seed=4)
    bodies = [await (await client.get(f"{p}/vm/parameters")).text() for p in ("", "/0", "/1", "/2")]
    assert bodies[0] == bodies[1]
    assert len(set(bodies[1:])) == 3
    response = await client.get("/3/metrics")
    assert response.status == 404


async def test_the_injected_clock_drives_uptime(aiohttp_client: AiohttpClient) -> None:
    """Moving the clock by 90 s moves every VM's uptime by 90,000 ms."""
    clocks = Clocks(monotonic_s=1000.0)
    client = await client_for(aiohttp_client, vms=2, clock=clocks.monotonic)

    async def uptime(path: str) -> int:
        return int(json.loads(await (await client.get(path)).text())["uptime"])

    before = [await uptime("/stats.json"), await uptime("/1/stats.json")]
    clocks.advance(90.0)
    after = [await uptime("/stats.json"), await uptime("/1/stats.json")]
    assert [b - a for a, b in zip(before, after, strict=True)] == [pytest.approx(90_000, abs=1)] * 2


async def test_report_since_last_view_per_client(aiohttp_client: AiohttpClient) -> None:
    """Over HTTP, each client (address or ?client=) gets its own previous view."""
    client = await client_for(aiohttp_client)
    texts = [
        await (await client.get(p)).text()
        for p in ("/vm/report", "/vm/report", "/vm/report?client=other")
    ]
    assert ["Since last view" in text for text in texts] == [False, True, False]


async def test_older_vm_and_app_line_options(aiohttp_client: AiohttpClient) -> None:
    """parameter_count=40 and app_measurement reach the served bodies."""
    client = await client_for(aiohttp_client, parameter_count=40, app_measurement="blog")
    assert len(json.loads(await (await client.get("/vm/parameters")).text())) == 40
    lines = (await (await client.get("/metrics")).text()).split("\n")
    assert len(lines) == 2 and lines[1].startswith("blog entityCount=")


async def test_only_get_is_allowed(aiohttp_client: AiohttpClient) -> None:
    """Like TmMetricsDelegate: other methods get 405."""
    client = await client_for(aiohttp_client)
    assert (await client.post("/metrics")).status == 405
    assert (await client.head("/metrics")).status == 200


# Faults


async def test_fault_500_is_an_html_error_page(aiohttp_client: AiohttpClient) -> None:
    """500 with an HTML body."""
    client = await client_for(aiohttp_client)
    response = await client.get("/stats.json?fault=500")
    assert (response.status, response.content_type) == (500, "text/html")
    assert "<html>" in await response.text()


async def test_fault_truncate_breaks_off_the_body(aiohttp_client: AiohttpClient) -> None:
    """Content-Length announces the whole body; the connection closes halfway."""
    client = await client_for(aiohttp_client)
    response = await client.get("/metrics?fault=truncate")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_fault_garbage_is_random_bytes(aiohttp_client: AiohttpClient) -> None:
    """200, the usual content type, bytes that are no format at all."""
    client = await client_for(aiohttp_client)
    response = await client.get("/stats.json?fault=garbage")
    assert (response.status, response.content_type) == (200, "application/json")
    body = await response.read()
    assert len(body) >= 64
    with pytest.raises(ValueError):
        json.loads(body)


async def test_fault_html_is_a_login_page(aiohttp_client: AiohttpClient) -> None:
    """200 text/html, as a proxy's sign-in page would be."""
    client = await client_for(aiohttp_client)
    response = await client.get("/metrics?fault=html")
    assert (response.status, response.content_type) == (200, "text/html")
    assert "<form" in await response.text()


@pytest.mark.parametrize(("query", "size"), [("", 8 * 1024 * 1024), ("&size=3000000", 3_000_000)])
async def test_fault_huge_is_megabytes(
    aiohttp_client: AiohttpClient, query: str, size: int
) -> None:
    """A body of several MB (8 MiB unless ?size=), still the right format."""
    client = await client_for(aiohttp_client)
    response = await client.get(f"/stats.json?fault=huge{query}")
    body = await response.read()
    assert len(body) == size
    json.loads(body)


async def test_fault_wrongtype_labels_json_as_html(aiohttp_client: AiohttpClient) -> None:
    """The JSON body, sent as text/html."""
    client = await client_for(aiohttp_client)
    response = await client.get("/stats.json?fault=wrongtype")
    assert response.content_type == "text/html"
    assert "uptime" in json.loads(await response.text())


async def test_fault_empty_is_an_empty_200(aiohttp_client: AiohttpClient) -> None:
    """200 and no body."""
    client = await client_for(aiohttp_client)
    response = await client.get("/vm/report?fault=empty")
    assert (response.status, await response.read()) == (200, b"")


async def test_fault_restart_resets_that_vm(aiohttp_client: AiohttpClient) -> None:
    """The VM restarts before answering: uptime 0, counters reset; other VMs untouched."""
    client = await client_for(aiohttp_client, vms=2)
    old = json.loads(await (await client.get("/1/stats.json")).text())
    new = json.loads(await (await client.get("/1/stats.json?fault=restart")).text())
    assert old["uptime"] >= 600_000
    assert new["uptime"] == 0
    assert new["incrGCs"] == 0
    other = json.loads(await (await client.get("/stats.json")).text())
    assert other["uptime"] >= 600_000


async def test_fault_slow_answers_after_the_delay(aiohttp_client: AiohttpClient) -> None:
    """?delay= seconds later, the normal answer."""
    client = await client_for(aiohttp_client)
    started = time.monotonic()
    response = await client.get("/metrics?fault=slow&delay=0.2")
    assert response.status == 200
    assert TELEMON_LINE.fullmatch(await response.text())
    assert time.monotonic() - started >= 0.2


async def test_fault_hang_never_answers(aiohttp_client: AiohttpClient) -> None:
    """The client gives up; the handler notices and the app keeps serving."""
    client = await client_for(aiohttp_client)
    with pytest.raises(TimeoutError):
        await client.get("/metrics?fault=hang", timeout=aiohttp.ClientTimeout(total=0.2))
    assert (await client.get("/healthz")).status == 200


async def test_hanging_requests_do_not_hold_up_shutdown() -> None:
    """Stopping the simulator answers requests that hang or sleep with 503 (without that
    release, shutdown would wait its timeout and then drop their connections)."""
    runner, port = await start_simulator("127.0.0.1", 0)
    simulator = runner.app[SIMULATOR_KEY]
    async with aiohttp.ClientSession() as session:
        requests = [
            asyncio.create_task(session.get(f"http://127.0.0.1:{port}/metrics?fault={fault}"))
            for fault in ("hang", "slow&delay=600")
        ]
        await wait_until(lambda: simulator.requests == 2)  # both are waiting in the handler
        await runner.cleanup()
        for response in await asyncio.gather(*requests):
            assert response.status == 503
            response.release()


async def test_global_fault_applies_to_data_paths_only(aiohttp_client: AiohttpClient) -> None:
    """fault= hits every data request; ?fault=none lifts it; /healthz and the index are spared."""
    client = await client_for(aiohttp_client, fault="500")
    assert (await client.get("/metrics")).status == 500
    assert (await client.get("/vm/parameters")).status == 500
    assert (await client.get("/metrics?fault=none")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/")).status == 200


@pytest.mark.parametrize("query", ["fault=nope", "fault=slow&delay=soon", "fault=huge&size=-1"])
async def test_bad_fault_queries_are_400(aiohttp_client: AiohttpClient, query: str) -> None:
    """An unknown fault or a bad number is the client's mistake."""
    client = await client_for(aiohttp_client)
    assert (await client.get(f"/metrics?{query}")).status == 400


def test_bad_options_are_refused() -> None:
    """An unknown format or fault, or no VMs at all, fails at construction."""
    with pytest.raises(ValueError, match="format"):
        create_simulator_app(fmt="xml")
    with pytest.raises(ValueError, match="fault"):
        create_simulator_app(fault="explode")
    with pytest.raises(ValueError, match="at least one"):
        create_simulator_app(vms=0)
    assert set(FAULTS) >= {
        "hang",
        "slow",
        "500",
        "truncate",
        "garbage",
        "huge",
        "wrongtype",
        "empty",
        "restart",
    }


async def test_a_fleet_of_a_thousand_vms(aiohttp_client: AiohttpClient) -> None:
    """1,000 VMs in one process, each its own (created in the background at startup)."""
    client = await client_for(aiohttp_client, vms=1000)
    texts = [await (await client.get(f"/{n}/metrics")).text() for n in (0, 499, 999)]
    matches = [TELEMON_LINE.fullmatch(text) for text in texts]
    assert len({match["uptime"] for match in matches if match}) == 3
    assert client.app[SIMULATOR_KEY].fleet.count == 1000


async def test_start_simulator_serves_in_the_running_loop() -> None:
    """start_simulator binds a free port and answers; cleanup stops it."""
    runner, port = await start_simulator("127.0.0.1", 0, vms=2, fmt="json")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/1/") as response:
                assert "oldSpace" in await response.json()
    finally:
        await runner.cleanup()


async def test_run_simulator_serves_until_terminated() -> None:
    """The blocking entry point the CLI calls: serves, then exits on SIGTERM."""
    port = free_port()
    code = (
        "from telemon.simulator import run_simulator; "
        f"run_simulator('127.0.0.1', {port}, fmt='influx', fault=None, vms=2, seed=3)"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        text = await wait_until(
            lambda: _get(f"http://127.0.0.1:{port}/1/"),
            what="the simulator answering",
            retry_on=(aiohttp.ClientConnectionError,),
            every=0.05,
        )
        assert TELEMON_LINE.fullmatch(text)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()
