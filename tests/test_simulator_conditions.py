"""The simulator's conditions: a leak, a GC storm, a VM down; switched at runtime over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from helpers import Clocks, free_port, wait_until
from pytest_aiohttp import AiohttpClient

from telemon.simulator import (
    CONDITIONS,
    ENDPOINTS,
    SIMULATOR_KEY,
    Param,
    SimulatedVM,
    VMSnapshot,
    create_simulator_app,
)
from telemon.simulator.snapshot import COUNTER_PARAMETERS
from telemon.simulator.vm import EDEN_SIZE, NEW_SPACE_SIZE

MIB = 1024 * 1024
SEEDS = [0, 3, 7]


def sample(vm: SimulatedVM, seconds: float, dt: float, start: float = 0.0) -> list[VMSnapshot]:
    """`vm` read every `dt` seconds from clock value `start` for `seconds`."""
    return [vm.at(start + dt * i) for i in range(1, round(seconds / dt) + 1)]


def in_use(snapshot: VMSnapshot) -> int:
    """Old space in use, bytes."""
    return snapshot.get(Param.OLD_SPACE) - snapshot.get(Param.FREE_OLD_SPACE)


def after_full_gcs(snapshots: list[VMSnapshot]) -> list[int]:
    """Old space in use in each snapshot that shows a new full GC."""
    return [
        in_use(after)
        for before, after in zip(snapshots, snapshots[1:], strict=False)
        if after.get(Param.FULL_GCS) > before.get(Param.FULL_GCS)
    ]


def gc_share(first: VMSnapshot, last: VMSnapshot) -> float:
    """Share of the wall time between two snapshots spent in GC (full and incremental)."""
    gc_ms = last.full_gc_ms + last.incr_gc_ms - first.full_gc_ms - first.incr_gc_ms
    return gc_ms / (last.uptime_ms - first.uptime_ms)


def heap_use(snapshots: list[VMSnapshot]) -> float:
    """The mean share of the heap in use (memory - memoryFree) / memory."""
    return sum((s.memory - s.memory_free) / s.memory for s in snapshots) / len(snapshots)


# The model


@pytest.mark.parametrize("seed", SEEDS)
def test_a_leak_raises_used_memory_after_every_full_gc(seed: int) -> None:
    """Leaking, full GCs come every few seconds and each leaves more in use than the last
    (about 60 MiB a minute more); the heap grows and fills up. Healthy, what the rare
    full GCs leave hardly moves."""
    leaking = SimulatedVM(seed, now=0.0, uptime=3600.0, condition="leak")
    snapshots = sample(leaking, 60.0, 0.05)
    kept = after_full_gcs(snapshots)
    assert len(kept) >= 15  # several within any 30 s
    assert all(b > a for a, b in zip(kept, kept[1:], strict=False)), kept
    assert 40 <= (kept[-1] - kept[0]) / MIB <= 80  # in about a minute
    # The first full GC sizes the heap to the live data; from then on it grows with it.
    assert snapshots[-1].memory - snapshots[200].memory >= 30 * MIB
    assert heap_use(snapshots[200:]) >= 0.95

    healthy = SimulatedVM(seed, now=0.0, uptime=3600.0, condition="healthy")
    steady = sample(healthy, 4 * 3600.0, 2.0)
    kept = after_full_gcs(steady)
    assert len(kept) >= 3
    assert (max(kept) - min(kept)) / MIB < 0.5 * 4 * 60  # under 0.5 MiB a minute
    assert heap_use(steady) < 0.95


@pytest.mark.parametrize("seed", SEEDS)
def test_a_gc_storm_takes_most_of_the_time(seed: int) -> None:
    """In a storm, one full GC or more a second and GC 50-80 % of the time; healthy, a few %."""
    storming = SimulatedVM(seed, now=0.0, uptime=3600.0, condition="gc_storm")
    first, *_, last = [storming.snapshot(), *sample(storming, 30.0, 0.5)]
    assert last.get(Param.FULL_GCS) - first.get(Param.FULL_GCS) >= 30
    assert 0.5 <= gc_share(first, last) <= 0.8
    idle_ms = (last.get(Param.IDLE_MICROSECONDS) - first.get(Param.IDLE_MICROSECONDS)) / 1000
    busy_ms = last.full_gc_ms + last.incr_gc_ms - first.full_gc_ms - first.incr_gc_ms
    assert idle_ms + busy_ms <= last.uptime_ms - first.uptime_ms

    healthy = SimulatedVM(seed, now=0.0, uptime=3600.0)
    first, *_, last = [healthy.snapshot(), *sample(healthy, 30.0, 0.5)]
    assert last.get(Param.FULL_GCS) - first.get(Param.FULL_GCS) <= 1
    assert gc_share(first, last) < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_switching_conditions_never_sets_a_counter_back(seed: int) -> None:
    """Across every switch (irregular clock steps, up to 20 minutes in one condition), totals
    only grow, uptime follows the clock, the memory figures stay consistent and an ill VM's
    GC and idle time fit in the wall time; the same switches give the same VM."""
    switches = [*CONDITIONS, "leak", "healthy", "gc_storm", "leak", "gc_storm"] * 2

    def history() -> list[list[VMSnapshot]]:
        vm = SimulatedVM(seed, now=0.0, uptime=600.0)
        phases, clock = [[vm.snapshot()]], 0.0
        for i, condition in enumerate(switches):
            vm.set_condition(condition, clock)
            assert vm.condition == condition
            phase = [phases[-1][-1]]
            for _ in range(20):
                clock += (0.05, 0.3, 1.0, 2.5, 60.0)[i % 5]
                phase.append(vm.at(clock))
            phases.append(phase)
        return phases

    phases = history()
    snapshots = [s for phase in phases for s in phase[1:]]
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        for n in COUNTER_PARAMETERS:
            assert after.get(n) >= before.get(n), Param(n).name
        assert after.uptime_ms > before.uptime_ms
        assert before.get(Param.LAST_GC_AT) <= after.get(Param.LAST_GC_AT) <= after.uptime_ms
    for s in snapshots:
        old, young = s.get(Param.OLD_SPACE), s.get(Param.YOUNG_SPACE)
        assert s.get(Param.MEMORY) == old + NEW_SPACE_SIZE
        assert 0 <= young <= EDEN_SIZE
        assert 0 <= s.get(Param.FREE_OLD_SPACE) <= old
        assert 0 <= s.memory_free <= s.memory
        assert 0 < s.memory_used <= s.memory
    for condition, phase in zip(switches, phases[1:], strict=True):
        if condition in ("leak", "gc_storm"):
            first, last = phase[0], phase[-1]
            idle_us = last.get(Param.IDLE_MICROSECONDS) - first.get(Param.IDLE_MICROSECONDS)
            busy_ms = last.full_gc_ms + last.incr_gc_ms - first.full_gc_ms - first.incr_gc_ms
            assert idle_us / 1000 + busy_ms <= last.uptime_ms - first.uptime_ms + 1000, condition
    assert history() == phases


def test_a_restarted_vm_starts_from_zero_and_stays_ill() -> None:
    """restart() still resets uptime and counters; the leak goes on in the new image."""
    vm = SimulatedVM(2, now=0.0, uptime=7200.0, condition="leak")
    vm.advance(30.0)
    vm.restart(40.0)
    restarted = vm.snapshot()
    assert (restarted.uptime_ms, restarted.get(Param.INCR_GCS)) == (0, 0)
    assert restarted.get(Param.FULL_GCS) <= 2
    assert vm.condition == "leak"
    kept = after_full_gcs([restarted, *sample(vm, 30.0, 0.1, start=40.0)])
    assert len(kept) >= 5
    assert kept == sorted(kept)


def test_a_classic_vm_leaks_too() -> None:
    """A classic VM's figures (end addresses, microseconds) show the leak as well."""
    vm = SimulatedVM(5, now=0.0, uptime=3600.0, vm="classic", condition="leak")
    first, snapshots = vm.snapshot(), sample(vm, 40.0, 1.0)
    last = snapshots[-1]
    assert last.get(Param.FULL_GCS) - first.get(Param.FULL_GCS) >= 10
    assert last.memory - snapshots[9].memory >= 20 * MIB  # from 10 s to 40 s
    assert last.served(Param.FULL_GC_TIME) == pytest.approx(last.full_gc_ms * 1000, abs=1000)


def test_an_unknown_condition_is_refused_in_one_line() -> None:
    vm = SimulatedVM(1)
    with pytest.raises(ValueError, match="^unknown condition 'flu'; one of healthy, leak, gc"):
        vm.set_condition("flu", 1.0)
    assert vm.condition == "healthy"
    with pytest.raises(ValueError, match="unknown condition"):
        create_simulator_app(condition="flu")


# Over HTTP

Client = TestClient[web.Request, web.Application]


async def client_for(aiohttp_client: AiohttpClient, **options: Any) -> Client:
    """A test client for a simulator on a clock that stands still (options as
    create_simulator_app's)."""
    options.setdefault("clock", Clocks(monotonic_s=1000.0).monotonic)
    return await aiohttp_client(create_simulator_app(**options))


async def answer(response: aiohttp.ClientResponse) -> tuple[int, str]:
    return response.status, await response.text()


async def test_the_condition_is_switched_and_read_back(aiohttp_client: AiohttpClient) -> None:
    """POST /<n>/condition (query or body) switches that VM only; GET answers it."""
    client = await client_for(aiohttp_client, vms=3)
    assert await answer(await client.get("/condition")) == (200, "healthy\n")
    assert await answer(await client.post("/condition?condition=leak")) == (200, "leak\n")
    assert await answer(await client.get("/0/condition")) == (200, "leak\n")
    assert await answer(await client.get("/1/condition")) == (200, "healthy\n")
    assert await answer(await client.post("/1/condition", data="gc_storm\n")) == (
        200,
        "gc_storm\n",
    )
    assert await answer(await client.post("/2/condition", data={"condition": "down"})) == (
        200,
        "down\n",
    )
    fleet = client.app[SIMULATOR_KEY].fleet
    assert [fleet.condition_of(n) for n in range(3)] == ["leak", "gc_storm", "down"]
    page = await (await client.get("/1/")).text()
    assert "(spur, gc_storm)" in page and "POST /1/condition?condition=NAME" in page


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/condition?condition=flu", None, 400, "unknown condition 'flu'; one of healthy, leak"),
        ("/condition", "", 400, "no condition: give ?condition=NAME or NAME as the body"),
        ("/condition", "x" * 5000, 400, "the body is longer than a condition's name"),
        ("/4/condition?condition=leak", None, 404, "no VM 4: this simulator runs VMs 0-1"),
    ],
)
async def test_a_bad_switch_is_refused_in_one_line(
    aiohttp_client: AiohttpClient, path: str, body: str | None, status: int, reason: str
) -> None:
    """An unknown or missing name is 400 (naming every condition), a VM beyond the fleet 404;
    the VM stays as it was."""
    client = await client_for(aiohttp_client, vms=2)
    code, text = await answer(await client.post(path, data=body))
    assert code == status
    assert text.startswith(reason) and text.count("\n") == 1
    if status == 400:
        assert all(name in text for name in CONDITIONS)
    assert await answer(await client.get("/condition")) == (200, "healthy\n")


async def test_a_vm_down_answers_503_then_recovers(aiohttp_client: AiohttpClient) -> None:
    """down: every data path of that VM is 503 (faults or not); the others, /healthz and
    the condition endpoint answer. Back to healthy, its counters carry on."""
    clocks = Clocks(monotonic_s=1000.0)
    client = await client_for(aiohttp_client, vms=2, fmt="json", clock=clocks.monotonic)
    before = json.loads(await (await client.get("/1/stats.json")).text())
    await client.post("/1/condition?condition=down")
    for path in [*ENDPOINTS, "/", "/metrics?fault=none", "/metrics?fault=restart"]:
        code, text = await answer(await client.get(f"/1{path}"))
        assert (code, text) == (503, "pharo-1 is down (condition down)\n"), path
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert await answer(await client.get("/1/condition")) == (200, "down\n")
    clocks.advance(30.0)
    await client.post("/1/condition", data="healthy")
    after = json.loads(await (await client.get("/1/stats.json")).text())
    assert after["uptime"] - before["uptime"] == pytest.approx(30_000, abs=1)
    assert after["incrGCs"] >= before["incrGCs"]


async def test_every_vm_may_start_ill(aiohttp_client: AiohttpClient) -> None:
    """create_simulator_app(condition=...) for every VM from the start: over HTTP, a storm
    does a full GC a second or more, a leak grows the heap."""
    clocks = Clocks(monotonic_s=1000.0)
    client = await client_for(aiohttp_client, vms=2, condition="gc_storm", clock=clocks.monotonic)
    assert [await answer(await client.get(f"/{n}/condition")) for n in (0, 1)] == [
        (200, "gc_storm\n")
    ] * 2

    async def stats(vm: int) -> dict[str, int]:
        data: dict[str, int] = json.loads(await (await client.get(f"/{vm}/stats.json")).text())
        return data

    await client.post("/1/condition?condition=leak")
    clocks.advance(10.0)  # the leak's first full GC sizes the heap to the live data
    first = [await stats(0), await stats(1)]
    for _ in range(30):
        clocks.advance(1.0)
        last = [await stats(0), await stats(1)]
    assert last[0]["fullGCs"] - first[0]["fullGCs"] >= 30
    gc_ms = sum(last[0][k] - first[0][k] for k in ("fullGCTime", "incrGCTime"))
    assert 0.5 <= gc_ms / 30_000 <= 0.8
    assert last[1]["memory"] - first[1]["memory"] >= 20 * MIB


async def test_simulate_condition_option() -> None:
    """`telemon simulate --condition down`: every VM answers 503 until switched."""
    port = free_port()
    command = [sys.executable, "-m", "telemon", "simulate", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "--condition", "down", "--vms", "2"])
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> tuple[int, str]:
                async with session.get(base + path) as response:
                    return response.status, await response.text()

            status = await wait_until(
                lambda: get("/1/condition"),
                what="the simulator answering",
                retry_on=(aiohttp.ClientConnectionError,),
                every=0.05,
            )
            assert status == (200, "down\n")
            assert (await get("/1/metrics"))[0] == 503
            async with session.post(base + "/1/condition?condition=healthy") as response:
                assert response.status == 200
            assert (await get("/1/metrics"))[0] == 200
            assert (await get("/metrics"))[0] == 503
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
