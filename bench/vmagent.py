"""vmagent's cost of scraping telemon: CPU per scrape and per sample.

    .venv/bin/python bench/vmagent.py [--telemons 6] [--vms 1,10,100] [--interval 1s]
                                      [--poll 10s] [--window 40] [--rounds 3]

For each case, a child process (this script re-invoked with `--serve`) serves
`--telemons` real telemons (`telemon.server.create_app`), each polling its own share
of a simulated fleet (`telemon.simulator`, K VMs per telemon, every `--poll`: the
child's load is kept low, and vmagent parses and sends every sample whether it changed
or not), so each telemon serves about 16 series per VM plus its own. A real `vmagent` scrapes
them every `--interval` (Prometheus text, as its Accept header asks) and remote-writes
to a real `victoria-metrics` (both from tests/victoria.py, on loopback).

After a warm-up (every target scraped twice), the CPU time of the vmagent process
(utime + stime from /proc) is taken over `--window` seconds, with the scrapes and
samples it counted (`vm_promscrape_scraped_samples_count` / `_sum` from its
/metrics). An idle vmagent (no targets) over the same window gives the background
cost, subtracted before dividing; a least-squares line splits the cost per scrape into
a fixed part and a part per sample. VictoriaMetrics' CPU per row it inserted (idle
subtracted likewise) is shown beside. Cases alternate within each round; medians of
the rounds are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import (  # noqa: E402
    cpu_seconds,
    http_get,
    markdown_table,
    print_machine_info,
    stop_process,
    wait_until,
)
from victoria import VictoriaMetrics, VMAgent, run_victoria, run_vmagent  # noqa: E402

SCRAPES = "vm_promscrape_scraped_samples_count"
SAMPLES = "vm_promscrape_scraped_samples_sum"
ROWS = 'vm_rows_inserted_total{type="promremotewrite"}'
SERIES_PER_VM = 10  # at least this many series per polled VM, whatever the names


# --- the telemons, in a child process -------------------------------------------------------


async def serve(telemons: int, vms: int, poll: str) -> None:
    """Serve the telemons and their fleet; print their addresses (one JSON line)."""
    from aiohttp import web

    from telemon.config import parse_config
    from telemon.server import create_app
    from telemon.simulator.app import start_simulator

    simulator, port = await start_simulator(vms=telemons * vms, seed=1)
    runners = [simulator]
    addresses = []
    for number in range(telemons):
        urls = [f"http://127.0.0.1:{port}/{number * vms + n}/metrics" for n in range(vms)]
        config = parse_config(
            {
                "global_tags": {"shard": f"s{number}"},
                "agent": {"interval": poll},
                "inputs": {
                    "pharo": [
                        {"urls": urls, "instances": {u: f"vm-{i}" for i, u in enumerate(urls)}}
                    ]
                },
            }
        )
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        addresses.append(f"127.0.0.1:{runner.addresses[0][1]}")
    print(json.dumps(addresses), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for runner in reversed(runners):
        await runner.cleanup()


@contextmanager
def telemon_fleet(telemons: int, vms: int, poll: str) -> Iterator[list[str]]:
    """The child serving the telemons; answers their `host:port` once each serves its VMs."""
    command = [sys.executable, __file__, "--serve", "--telemons", str(telemons)]
    command += ["--vms", str(vms), "--poll", poll]
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        addresses: list[str] = json.loads(child.stdout.readline() or "[]")
        if len(addresses) != telemons:
            raise RuntimeError(f"the telemons did not start (exit {child.poll()})")
        for address in addresses:
            wait_until(lambda a=address: samples_served(a) >= SERIES_PER_VM * vms,
                       timeout=120, what=f"{address} serving {vms} VMs", proc=child)  # fmt: skip
        yield addresses
    finally:
        stop_process(child)


def samples_served(address: str) -> int:
    status, body = http_get(f"http://{address}/metrics?format=prometheus")
    if status != 200:
        return 0
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


# --- measuring -------------------------------------------------------------------------------


def own_metrics(url: str) -> dict[str, float]:
    """A VictoriaMetrics process's /metrics as {`name{labels}`: value}."""
    status, body = http_get(f"{url}/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"{url}/metrics answered {status}")
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


@dataclass(frozen=True)
class Reading:
    """Counters of a window: vmagent's and VictoriaMetrics' CPU, scrapes, samples, rows."""

    agent_cpu: float
    vm_cpu: float
    scrapes: float
    samples: float
    rows: float

    def __sub__(self, other: Reading) -> Reading:
        return Reading(*(a - b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, ...]:
        return (self.agent_cpu, self.vm_cpu, self.scrapes, self.samples, self.rows)


def read(agent: VMAgent, vm: VictoriaMetrics) -> Reading:
    mine, theirs = own_metrics(agent.url), own_metrics(vm.url)
    return Reading(
        cpu_seconds(agent.pid),
        cpu_seconds(vm.pid),
        mine.get(SCRAPES, 0.0),
        mine.get(SAMPLES, 0.0),
        theirs.get(ROWS, 0.0),
    )


def measure(targets: list[str], interval: str, window: float, directory: Path) -> Reading:
    """The counters' growth over `window` seconds, after every target was scraped twice."""
    with ExitStack() as stack:
        vm = stack.enter_context(run_victoria(directory / "vm"))
        agent = stack.enter_context(
            run_vmagent(directory / "vmagent", targets, vm.write_url, interval=interval)
        )
        wait_until(lambda: own_metrics(agent.url).get(SCRAPES, 0) >= 2 * len(targets),
                   timeout=120, what="every target scraped twice")  # fmt: skip
        before = read(agent, vm)
        time.sleep(window)  # a fixed measuring window, not a wait for an event
        return read(agent, vm) - before


# --- the run ---------------------------------------------------------------------------------


def run_case(vms: int, args: argparse.Namespace) -> Reading:
    with tempfile.TemporaryDirectory(prefix="bench-vmagent-") as tmp:
        if vms == 0:
            return measure([], args.interval, args.window, Path(tmp))
        with telemon_fleet(args.telemons, vms, args.poll) as targets:
            return measure(targets, args.interval, args.window, Path(tmp))


def report(args: argparse.Namespace, results: dict[int, list[Reading]]) -> None:
    idle = statistics.median(r.agent_cpu for r in results[0]) / args.window  # CPU s per s
    vm_idle = statistics.median(r.vm_cpu for r in results[0]) / args.window
    rows, fit = [], []
    for vms in args.vms:
        readings = results[vms]

        def med(value: Callable[[Reading], float], readings: list[Reading] = readings) -> float:
            return statistics.median(value(r) for r in readings)

        net = med(lambda r: r.agent_cpu - idle * args.window)
        scrapes, samples = med(lambda r: r.scrapes), med(lambda r: r.samples)
        fit.append((samples / scrapes, net / scrapes))
        vm_net = med(lambda r: (r.vm_cpu - vm_idle * args.window) / r.rows if r.rows else 0.0)
        rows.append(
            (
                args.telemons,
                f"{samples / scrapes:,.0f}",
                f"{scrapes:,.0f}",
                f"{samples:,.0f}",
                f"{med(lambda r: r.agent_cpu):.2f}",
                f"{net / scrapes * 1000:.3f}",
                f"{net / samples * 1e6:.2f}",
                f"{vm_net * 1e6:.2f}",
            )
        )
    print(f"\nIdle (no targets), subtracted: vmagent {idle * 1000:.1f} ms CPU per second,"
          f" victoria-metrics {vm_idle * 1000:.1f} ms.\n")  # fmt: skip
    header = (
        "telemons",
        "samples/scrape",
        "scrapes",
        "samples",
        "vmagent CPU s",
        "vmagent CPU ms/scrape",
        "vmagent CPU us/sample",
        "VM CPU us/row",
    )
    print(markdown_table(header, rows))
    if len(fit) >= 2:
        slope, intercept = statistics.linear_regression(*zip(*fit, strict=True))
        print(f"\nLeast squares over the cases: vmagent CPU per scrape = {intercept * 1000:.2f} ms"
              f" + {slope * 1e6:.2f} us per sample.")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--telemons", type=int, default=6)
    parser.add_argument("--vms", default="1,10,100", help="VMs per telemon, one case each")
    parser.add_argument("--interval", default="1s", help="vmagent's scrape interval")
    parser.add_argument("--poll", default="10s", help="telemon's poll interval")
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.telemons, int(args.vms), args.poll))
        return 0
    missing = [b for b in ("victoria-metrics", "vmagent") if shutil.which(b) is None]
    if missing:
        print(f"needs {', '.join(missing)} (Debian package victoria-metrics)", file=sys.stderr)
        return 2
    args.vms = [int(v) for v in args.vms.split(",")]
    print_machine_info()
    print(f"{args.telemons} telemons, {args.vms} VMs each, scrape interval {args.interval},"
          f" poll {args.poll}, window {args.window:g} s, {args.rounds} rounds\n")  # fmt: skip
    results: dict[int, list[Reading]] = {vms: [] for vms in [0, *args.vms]}
    for number in range(1, args.rounds + 1):
        cases = [0, *args.vms]
        shift = number % len(cases)
        for vms in cases[shift:] + cases[:shift]:  # the order rotates each round
            got = run_case(vms, args)
            results[vms].append(got)
            print(f"round {number}, {vms:>3} VMs/telemon: vmagent {got.agent_cpu:.2f} s CPU,"
                  f" {got.scrapes:.0f} scrapes, {got.samples:.0f} samples,"
                  f" VM {got.vm_cpu:.2f} s CPU, {got.rows:.0f} rows", flush=True)  # fmt: skip
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
