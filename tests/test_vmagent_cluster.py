"""Scrape sharding on vmagent: two real `vmagent`s in cluster mode scrape six real telemons
(each polling its own simulated Pharo VM) and remote-write to a real VictoriaMetrics.

- Sharded (`membersCount=2`, `memberNum` 0 and 1): every series each telemon serves
  arrives, each target is scraped by one member only and no sample is stored twice
  (VictoriaMetrics runs without deduplication, so a second scraper would show).
  Without replication, the death of a member is a gap for its targets.
- Replicated (`replicationFactor=2`, VictoriaMetrics with `-dedup.minScrapeInterval`
  equal to the scrape interval, as VictoriaMetrics documents): killing one member leaves
  no gap, every series keeps a sample at every scrape interval.

Metric names are never written here: what must arrive is what telemon serves.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import wait_until
from victoria import Exported, VictoriaMetrics, VMAgent, run_victoria, run_vmagent

from telemon.config import parse_config
from telemon.server import create_app
from telemon.simulator.app import start_simulator

TELEMONS = 6
INTERVAL = "1s"  # vmagent's scrape interval and telemon's poll interval
INTERVAL_S = 1.0
DEDUP = INTERVAL  # VictoriaMetrics keeps one sample per series and scrape interval
JOB = "telemon"
MATCH = f'{{job="{JOB}"}}'
DEADLINE_S = 30.0
POLL_S = 0.25  # a poll asks a real database: not too often
WINDOW_S = 5.0  # the stretch over which samples are counted
# A missed scrape shows as a gap of two intervals; a late one (loaded machine) as less.
MAX_GAP_S = 1.75 * INTERVAL_S

Series = frozenset[tuple[str, str]]  # a full label set, `__name__` included


# --- six telemons, each polling its own simulator --------------------------------------------


@pytest.fixture
async def telemons() -> AsyncIterator[list[str]]:
    """`host:port` of six telemons served in this process, each polling its own simulated
    VM every second; a `shard` global tag tells their series apart."""
    runners: list[web.AppRunner] = []
    addresses = []
    try:
        for number in range(TELEMONS):
            simulator, port = await start_simulator(vms=1, seed=number + 1)
            runners.append(simulator)
            config = parse_config(
                {
                    "global_tags": {"shard": f"s{number}"},
                    "agent": {"interval": INTERVAL},
                    "inputs": {"pharo": [{"urls": [f"http://127.0.0.1:{port}/metrics"]}]},
                }
            )
            runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            addresses.append(f"127.0.0.1:{runner.addresses[0][1]}")
        yield addresses
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


# --- what telemon serves, as vmagent stores it ------------------------------------------------

_SAMPLE = re.compile(r"([^\s{]+)(?:\{(.*)\})?\s+\S+(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([^=\s]+)="((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def as_stored(name: str, labels: dict[str, str], address: str) -> Series:
    """A served sample's series as vmagent writes it: its own `job` and `instance` added,
    a served `job`/`instance` kept as `exported_job`/`exported_instance`."""
    stored = {f"exported_{k}" if k in ("job", "instance") else k: v for k, v in labels.items()}
    return frozenset({**stored, "__name__": name, "job": JOB, "instance": address}.items())


async def served(addresses: Iterable[str]) -> set[Series]:
    """Every series the telemons serve now, as vmagent would store them."""
    series: set[Series] = set()
    async with aiohttp.ClientSession() as session:
        for address in addresses:
            url = f"http://{address}/metrics?format=prometheus"
            async with session.get(url) as response:
                assert response.status == 200
                text = await response.text()
            series |= {as_stored(n, labels, address) for n, labels in _samples(text)}
    return series


def _samples(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(name, labels) of each sample line of a Prometheus text exposition, names as written."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = {
            key: re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)
            for key, value in _LABEL.findall(match.group(2) or "")
        }
        yield match.group(1), labels


def by_series(exported: Iterable[Exported]) -> dict[Series, list[int]]:
    """Stored series -> their sample timestamps (ms), without vmagent's own per-target
    series (`up`, `scrape_*`), which telemon does not serve."""
    return {
        frozenset(e.labels.items()): sorted(e.timestamps_ms)
        for e in exported
        if e.name != "up" and not e.name.startswith("scrape_")
    }


async def stored(vm: VictoriaMetrics, since: float) -> dict[Series, list[int]]:
    """What VictoriaMetrics holds of the telemons since `since` (unix s)."""
    await vm.force_flush()
    return by_series(await vm.export(MATCH, since))


async def all_arrived(vm: VictoriaMetrics, expected: set[Series], since: float) -> bool:
    """True once every expected series has at least one sample since `since`."""
    missing = expected - set(await stored(vm, since))
    assert not missing, f"{len(missing)} series not (yet) stored, e.g. {sorted(missing)[:2]}"
    return True


async def samples_until(
    vm: VictoriaMetrics, series: set[Series], start: float, end: float
) -> dict[Series, list[int]]:
    """The samples in [start, end] once each of `series` has one at or after `end`."""

    async def reached() -> dict[Series, list[int]]:
        held = await stored(vm, start)
        late = [s for s in series if not held.get(s) or held[s][-1] < end * 1000]
        assert not late, f"{len(late)} series without a sample after the window yet"
        return {s: [t for t in ts if t <= end * 1000] for s, ts in held.items()}

    return await wait_until(
        reached, timeout=DEADLINE_S + WINDOW_S, every=POLL_S, what="samples past the window"
    )


def largest_gap_s(timestamps_ms: list[int], start: float, end: float) -> float:
    """The longest stretch of [start, end] (unix s) without a sample."""
    edges = [start * 1000, *timestamps_ms, end * 1000]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) / 1000


def instance_of(series: Series) -> str:
    return dict(series)["instance"]


async def shared_out(
    members: list[VMAgent], addresses: list[str], replication: int
) -> list[set[str]]:
    """Each member's targets, once each target is listed by `replication` members and
    scraped by all of them."""

    async def split() -> list[set[str]]:
        listed = [{t["labels"]["instance"] for t in await m.targets()} for m in members]
        scraped = [await m.scraped() for m in members]
        for address in addresses:
            count = sum(address in targets for targets in listed)
            assert count == replication, f"{address} listed by {count} members: {listed}"
        assert listed == scraped, f"listed {listed}, scraped {scraped}"
        return scraped

    return await wait_until(split, timeout=DEADLINE_S, every=POLL_S, what="targets shared out")


# --- the tests --------------------------------------------------------------------------------


def start_members(
    stack: ExitStack, tmp_path: Path, addresses: list[str], vm: VictoriaMetrics, replication: int
) -> list[VMAgent]:
    """Two vmagents of one scraping cluster, both given all the targets."""
    return [
        stack.enter_context(
            run_vmagent(
                tmp_path / f"vmagent{number}",
                addresses,
                vm.write_url,
                interval=INTERVAL,
                members=2,
                member=number,
                replication=replication,
            )
        )
        for number in range(2)
    ]


async def test_two_members_scrape_each_telemon_once(telemons: list[str], tmp_path: Path) -> None:
    began = time.time()
    with ExitStack() as stack:
        vm = stack.enter_context(run_victoria(tmp_path / "vm"))  # no deduplication
        members = start_members(stack, tmp_path, telemons, vm, replication=1)
        shares = await shared_out(members, telemons, replication=1)
        assert set().union(*shares) == set(telemons)

        expected = await served(telemons)
        assert {instance_of(s) for s in expected} == set(telemons)
        await wait_until(
            lambda: all_arrived(vm, expected, began),
            timeout=DEADLINE_S,
            every=POLL_S,
            what="every served series stored",
        )

        # One scraper per target: at most one sample per series and scrape interval.
        start = time.time()
        window = await samples_until(vm, expected, start, start + WINDOW_S)
        too_many = {s: ts for s, ts in window.items() if len(ts) > WINDOW_S / INTERVAL_S + 1}
        assert not too_many, f"stored twice: {list(too_many.items())[:2]}"
        gaps = {s: largest_gap_s(ts, start, start + WINDOW_S) for s, ts in window.items()}
        assert max(gaps.values()) < MAX_GAP_S, "a scrape was missed"

        # Nothing but what the telemons served (the series sets barely move).
        assert set(window) <= expected | await served(telemons)

        # Without replication, a member's death stops its targets: the gap the next test
        # must not see.
        dead = max(range(2), key=lambda n: len(shares[n]))
        members[dead].kill()
        killed = time.time()
        end = killed + 2 * MAX_GAP_S
        alive = {s for s in expected if instance_of(s) not in shares[dead]}
        if not alive:  # the hash gave every target to one member: no series to wait on
            await wait_until(lambda: time.time() > end, timeout=DEADLINE_S, every=POLL_S)
        after = await samples_until(vm, alive, killed, end)
        orphans = {s for s in expected if instance_of(s) in shares[dead]}
        assert orphans
        for series in orphans:
            assert largest_gap_s(after.get(series, []), killed, end) >= MAX_GAP_S


async def test_replicated_members_leave_no_gap(telemons: list[str], tmp_path: Path) -> None:
    began = time.time()
    with ExitStack() as stack:
        vm = stack.enter_context(run_victoria(tmp_path / "vm", dedup_interval=DEDUP))
        members = start_members(stack, tmp_path, telemons, vm, replication=2)
        assert await shared_out(members, telemons, replication=2) == [set(telemons)] * 2

        expected = await served(telemons)
        await wait_until(
            lambda: all_arrived(vm, expected, began),
            timeout=DEADLINE_S,
            every=POLL_S,
            what="every served series stored",
        )
        members[1].kill()
        killed = time.time()
        start, end = killed - 2 * INTERVAL_S, killed + WINDOW_S
        window = await samples_until(vm, expected, start, end)
        gaps = {s: largest_gap_s(window[s], start, end) for s in expected}
        worst = max(gaps, key=gaps.__getitem__)
        assert gaps[worst] < MAX_GAP_S, f"a gap of {gaps[worst]:.2f} s in {sorted(worst)}"
        # The survivor still scrapes every target.
        assert await members[0].scraped() == set(telemons)
