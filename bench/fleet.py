"""Poll a fleet of simulated Pharo VMs: one round of 1,000 targets.

    .venv/bin/python bench/fleet.py [--targets 1000] [--rounds 5]

The simulator runs in its own process (`telemon simulate --vms N`); this
process builds telemon's real collector with one `[[inputs.pharo]]` table of
N URLs (the five formats in turn) and times rounds in which every target is
polled once, concurrently, as the scheduler would within one interval.
Reports wall time per round and telemon's CPU time per target.
Target from the issue: a round of 1,000 targets within 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, http_get, print_machine_info, stop_process, wait_until  # noqa: E402

from telemon.agent import Agent  # noqa: E402
from telemon.config import parse_config  # noqa: E402

PATHS = ("/metrics", "/stats.json", "/stats/labels", "/vm/parameters", "/vm/report")
TARGET_WALL_S = 2.0


def fleet_config(port: int, targets: int) -> dict[str, object]:
    """One pharo table polling `targets` simulated VMs, formats in turn."""
    urls = [f"http://127.0.0.1:{port}/{n}{PATHS[n % len(PATHS)]}" for n in range(1, targets + 1)]
    instances = {url: f"vm-{n:04d}" for n, url in enumerate(urls, start=1)}
    return {"inputs": {"pharo": [{"urls": urls, "instances": instances, "timeout": "10s"}]}}


async def measure(port: int, targets: int, rounds: int) -> list[tuple[float, float, int]]:
    """(wall s, CPU s, targets up) per round."""
    collector = Agent(parse_config(fleet_config(port, targets))).collector
    await collector.collect_all()  # warm-up: connections, parser caches
    results = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await collector.collect_all()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results.append((wall, cpu, sum(1 for s in collector.states if s.health.up)))
    await collector.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "telemon", "simulate", "--listen", f"127.0.0.1:{port}",
         "--vms", str(args.targets + 1), "--log-level", "warning"],
    )
    try:
        last = f"http://127.0.0.1:{port}/{args.targets}/stats.json"
        wait_until(lambda: http_get(last)[0] == 200, timeout=60)
        results = asyncio.run(measure(port, args.targets, args.rounds))
    finally:
        stop_process(simulator)
    print_machine_info()
    print(f"\n{args.targets} targets, {args.rounds} rounds (after one warm-up round)\n")
    print("| round | wall s | telemon CPU s | CPU ms per target | targets up |")
    print("|---|---:|---:|---:|---:|")
    for number, (wall, cpu, up) in enumerate(results, start=1):
        print(f"| {number} | {wall:.2f} | {cpu:.2f} | {cpu / args.targets * 1000:.2f} | {up} |")
    walls = [w for w, _, _ in results]
    cpu_per_target = statistics.median(c for _, c, _ in results) / args.targets * 1000
    print(f"\nmedian wall {statistics.median(walls):.2f} s (target <= {TARGET_WALL_S} s), "
          f"median CPU {cpu_per_target:.2f} ms per target")
    all_up = all(up == args.targets for _, _, up in results)
    return 0 if statistics.median(walls) <= TARGET_WALL_S and all_up else 1


if __name__ == "__main__":
    raise SystemExit(main())
