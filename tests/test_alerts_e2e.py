"""The alert rules end to end: a real Prometheus and a real vmalert (on a real
VictoriaMetrics) evaluate alerts/'s rules on a real telemon polling simulated Pharo VMs.

One simulator runs six VMs: `healthy` stays so, `down` starts answering 503, `leak`
leaks memory, `storm` storms with full GCs; `leak_influx` leaks too, polled in the original
Telemon's influx format (no used memory), and so does `leak_classic`, a classic VM polled
at `/vm/parameters` (no uptime). telemon polls them every second; Prometheus
and VictoriaMetrics scrape it every second with the scrape job of docker/prometheus.yml
(the one alerts/README.md documents); Prometheus and vmalert evaluate every second the
rules `telemon alerts` renders with short windows and `for` (TEST_SETTINGS). Each
misbehaving VM's alert reaches `firing` within its `for` plus two evaluation intervals of
becoming active, on both; the healthy VM never has an alert.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from helpers import require_executable, wait_until
from prom import Prometheus, run_prometheus
from victoria import VictoriaMetrics, VMAlert, run_victoria, run_vmalert

from telemon.alerts import duration_seconds, render_rules, settings_from
from telemon.config import parse_config
from telemon.server import create_app
from telemon.simulator.app import start_simulator
from telemon.simulator.conditions import DOWN, GC_STORM, HEALTHY, LEAK

ROOT = Path(__file__).resolve().parent.parent
SCRAPE_CONFIG = ROOT / "docker" / "prometheus.yml"
INTERVAL_S = 1.0  # telemon's polls, the scrapes and the rule evaluations
EVALUATION_S = INTERVAL_S
POLL_S = 0.2  # how often the test asks both servers for their alerts
FOR = "2s"
# Short windows, as `telemon alerts --set` writes them: a leak's full GCs come every 2-3 s
# (both leak windows must hold one), a storm's every 0.4-0.8 s.
TEST_SETTINGS = [
    *(f"{name}={FOR}" for name in ("pharo_target_down_for", "leak_for", "gc_time_for")),
    f"full_gc_for={FOR}",
    "leak_window=8s",
    f"scrape_interval={INTERVAL_S:g}s",
    "leak_growth_ratio=0.02",
    "gc_time_window=3s",
    "full_gc_window=3s",
    "full_gc_baseline=60s",
    "full_gc_min_count=3",
]
SETTINGS = settings_from(TEST_SETTINGS)
CONDITIONS = {
    "healthy": HEALTHY,
    "down": DOWN,
    "leak": LEAK,
    "storm": GC_STORM,
    "leak_influx": LEAK,
    "leak_classic": LEAK,
}
"""VM name (its `instance`) -> the condition it is switched to."""
PATHS = {"leak_influx": "metrics"}
"""VM name -> the simulator's path telemon polls, when not `vm/parameters`."""
CLASSIC = ("leak_classic",)
"""The VMs that are classic VMs (the others are Spur VMs)."""
WARM_UP_SAMPLES = 6  # scrapes of every VM before the switch: the baselines' history
LAG_S = 3 * INTERVAL_S  # a poll, a scrape and an evaluation
# Alert -> seconds of misbehaviour before it is active (pending): its windows filled
# (a leak's two windows, each with a full GC, which comes every 2-3 s), plus LAG_S.
EXPECTED = {
    ("down", "PharoTargetDown"): LAG_S,
    **{
        (vm, "PharoMemoryLeak"): 2 * duration_seconds(SETTINGS.leak_window) + 3 + LAG_S
        for vm in ("leak", "leak_influx", "leak_classic")
    },
    ("storm", "PharoGCTimeHigh"): duration_seconds(SETTINGS.gc_time_window) + LAG_S,
    ("storm", "PharoFullGCsFrequent"): duration_seconds(SETTINGS.full_gc_window) + LAG_S,
}
FIRING_WITHIN_S = duration_seconds(FOR) + 2 * EVALUATION_S
SLACK_S = 10.0  # a loaded machine: the overall wait only, not the firing bound

Key = tuple[str, str]  # (VM, alert name)
Labels = dict[str, str]
Shown = tuple[Key, str, str, str]  # an alert: (VM, name), state, activeAt, its summary


def vm_of(labels: Labels, base: str) -> str:
    """The VM an alert is about: its `instance` (honor_labels), or for telemon's own
    series (PharoTargetDown's telemon_input_up) the VM whose URL is the `target`."""
    instance = labels.get("instance", "")
    if instance in CONDITIONS:
        return instance
    return polled_urls(base).get(labels.get("target", ""), instance)


def polled_urls(base: str) -> dict[str, str]:
    """The URL telemon polls for each VM -> the VM's name."""
    return {
        f"{base}/{n}/{PATHS.get(name, 'vm/parameters')}": name
        for n, name in enumerate(CONDITIONS)
    }


@dataclass
class Seen:
    """What one server showed of the alerts: when each first fired, and its activeAt."""

    server: str
    fired_at: dict[Key, float] = field(default_factory=dict)
    active_at: dict[Key, float] = field(default_factory=dict)
    healthy: set[str] = field(default_factory=set)  # alerts ever shown for the healthy VM
    shown: set[Key] = field(default_factory=set)  # every alert ever shown, for the report
    summary: dict[Key, str] = field(default_factory=dict)

    def note(self, alerts: list[Shown]) -> None:
        now = time.time()
        for key, state, active, summary in alerts:
            self.shown.add(key)
            self.summary[key] = summary
            if key[0] == "healthy":
                self.healthy.add(f"{key[1]} ({state})")
            if state == "firing" and key not in self.fired_at:
                self.fired_at[key] = now
                self.active_at[key] = datetime.fromisoformat(active).timestamp()


# --- the stack ------------------------------------------------------------------------------


@pytest.fixture
async def simulated() -> AsyncIterator[tuple[str, int]]:
    """A simulator of the VMs, all healthy: (base URL, port)."""
    classic = [n for n, name in enumerate(CONDITIONS) if name in CLASSIC]
    runner, port = await start_simulator(vms=len(CONDITIONS), seed=17, classic_vms=classic)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        await runner.cleanup()


@pytest.fixture
async def telemon(simulated: tuple[str, int]) -> AsyncIterator[str]:
    """A telemon polling each VM every second under its name; its `host:port`."""
    urls = polled_urls(simulated[0])
    config = parse_config(
        {
            "agent": {"interval": f"{INTERVAL_S:g}s"},
            "inputs": {"pharo": [{"urls": list(urls), "instances": urls, "timeout": "1s"}]},
        }
    )
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def scrape_job() -> dict[str, Any]:
    """The documented scrape job (docker/prometheus.yml), targets aside."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    assert job["honor_labels"] is True, "alerts/README.md documents honor_labels: true"
    return dict(job)


def victoria_scrape_config(directory: Path, target: str) -> Path:
    """The same job for VictoriaMetrics' own scraper (`-promscrape.config`)."""
    job = scrape_job() | {"static_configs": [{"targets": [target]}]}
    interval = f"{INTERVAL_S:g}s"
    config = {"global": {"scrape_interval": interval, "scrape_timeout": interval}}
    path = directory / "scrape.yml"
    path.write_text(yaml.safe_dump(config | {"scrape_configs": [job]}), encoding="utf-8")
    return path


# --- reading alerts -------------------------------------------------------------------------


async def prometheus_alerts(prometheus: Prometheus, base: str) -> list[Shown]:
    data = await prometheus.api("alerts")
    return [
        (
            (vm_of(a["labels"], base), a["labels"]["alertname"]),
            a["state"],
            a["activeAt"],
            a["annotations"].get("summary", ""),
        )
        for a in data["alerts"]
    ]


async def vmalert_alerts(vmalert: VMAlert, base: str) -> list[Shown]:
    return [
        (
            (vm_of(a["labels"], base), a["name"]),
            a["state"],
            a["activeAt"],
            (a.get("annotations") or {}).get("summary", ""),
        )
        for a in await vmalert.alert_list()
    ]


async def samples_of_every_vm(query: Callable[[str], Awaitable[list[dict[str, Any]]]]) -> bool:
    """Each VM has WARM_UP_SAMPLES scrapes stored (of a figure every format has)."""
    expr = f'count_over_time(pharo_memory_bytes{{job="telemon"}}[1m]) >= {WARM_UP_SAMPLES}'
    return {r["metric"].get("instance") for r in await query(expr)} >= set(CONDITIONS)


async def switch(base: str) -> None:
    """Each VM into its condition, through the simulator's control endpoint."""
    async with aiohttp.ClientSession() as session:
        for n, (name, condition) in enumerate(CONDITIONS.items()):
            url = f"{base}/{n}/condition"
            async with session.post(url, params={"condition": condition}) as response:
                assert response.status == 200, f"{name}: {await response.text()}"
                assert (await response.text()).strip() == condition


# --- the test -------------------------------------------------------------------------------


async def test_alerts_fire_on_prometheus_and_vmalert(
    tmp_path: Path, simulated: tuple[str, int], telemon: str
) -> None:
    binary = require_executable("prometheus", "prometheus")
    rules = tmp_path / "telemon.rules.yml"
    rules.write_text(render_rules(SETTINGS), encoding="utf-8")
    scrape = victoria_scrape_config(tmp_path, telemon)
    (tmp_path / "prometheus").mkdir()
    with (
        run_prometheus(
            binary, tmp_path / "prometheus", telemon, rule_files=[rules], job=scrape_job()
        ) as prometheus,
        run_victoria(tmp_path / "vm", flags=[f"-promscrape.config={scrape}"]) as victoria,
        run_vmalert(
            tmp_path / "vmalert",
            [rules],
            victoria.url,
            evaluation_interval=f"{EVALUATION_S:g}s",
        ) as vmalert,
    ):
        await _run(simulated[0], prometheus, victoria, vmalert)


async def _run(
    base: str, prometheus: Prometheus, victoria: VictoriaMetrics, vmalert: VMAlert
) -> None:
    for name, query in (("prometheus", prometheus.query), ("victoria-metrics", victoria.query)):
        await wait_until(
            partial(samples_of_every_vm, query), timeout=30, every=POLL_S,
            what=f"{name} holding {WARM_UP_SAMPLES} scrapes of each VM",
        )  # fmt: skip
    seen = {"prometheus": Seen("prometheus"), "vmalert": Seen("vmalert")}
    readers = {"prometheus": lambda: prometheus_alerts(prometheus, base),
               "vmalert": lambda: vmalert_alerts(vmalert, base)}  # fmt: skip
    switched = time.time()
    await switch(base)

    async def all_fired() -> bool:
        for name, read in readers.items():
            seen[name].note(await read())
        return all(set(EXPECTED) <= set(s.fired_at) for s in seen.values())

    deadline = max(EXPECTED.values()) + duration_seconds(FOR) + 2 * EVALUATION_S + SLACK_S
    try:
        await wait_until(all_fired, timeout=deadline, every=POLL_S, what="every alert firing")
    finally:
        report = _report(seen, switched)
        print(report)
    for s in seen.values():
        assert not s.healthy, f"{s.server}: alerts for the healthy VM: {s.healthy}\n{report}"
        for key, needed in EXPECTED.items():
            pending = s.active_at[key] - switched
            firing = s.fired_at[key] - s.active_at[key]
            # Active once its windows hold the misbehaviour (give or take a late scrape
            # and VictoriaMetrics' ingestion), firing within `for` and two evaluations.
            assert pending <= needed + 2 * INTERVAL_S, f"{s.server} {key}: active late\n{report}"
            assert firing <= FIRING_WITHIN_S + POLL_S, f"{s.server} {key}: fired late\n{report}"
            # The templates rendered: the summary names the VM (or the URL polled).
            vm, summary = key[0], s.summary[key]
            assert vm in summary or f"/{list(CONDITIONS).index(vm)}/" in summary, summary
            assert "{{" not in summary and "<no value>" not in summary, summary
    receiver = vmalert.receiver
    assert receiver is not None
    await wait_until(
        lambda: {name for _, name in EXPECTED} <= receiver.names(),
        every=POLL_S, what="vmalert notifying each alert",
    )  # fmt: skip


def _report(seen: dict[str, Seen], switched: float) -> str:
    lines = ["seconds after the switch: active -> seen firing"]
    for s in seen.values():
        for key in sorted(EXPECTED):
            what = f"  {s.server:<10} {key[0]:<12} {key[1]:<22}"
            if key in s.fired_at:
                active, fired = s.active_at[key] - switched, s.fired_at[key] - switched
                lines.append(f"{what} {active:5.1f} -> {fired:5.1f}")
            else:
                lines.append(f"{what} never fired")
        others = sorted(f"{vm} {name}" for vm, name in s.shown - set(EXPECTED))
        lines.append(f"  {s.server:<10} also shown: {', '.join(others) or 'none'}")
    return "\n".join(lines)
