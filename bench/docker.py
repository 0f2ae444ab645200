"""Poll 50 running containers on a real Docker Engine: one round's wall and CPU time.

    .venv/bin/python bench/docker.py [--containers 50] [--rounds 5] [--endpoint unix:///var/run/docker.sock]

Needs a running engine (dockerd from Debian's docker.io) and the `local/busybox`
image (tests/dockerd.py makes it; so does `bench/docker.py` if it is missing).
Starts N `sleep` containers, then times rounds of telemon's `[[inputs.docker]]`
target (info, list, inspect + one-shot stats per container, concurrently) and,
in the same run, two peers on the same containers:

* the same target asking for stats the way Telegraf's inputs.docker does
  (`stream=false` without `one-shot`: the daemon waits for two 1 s samples);
* `docker stats --no-stream` (the CLI, same two-sample wait).

Target from the issue: one round of 50 containers under 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import print_machine_info  # noqa: E402
from dockerd import DockerEngine  # noqa: E402

from telemon.inputs.base import InputContext  # noqa: E402
from telemon.inputs.docker import DockerConfig, DockerTarget  # noqa: E402

TARGET_WALL_S = 1.5


class TelegrafStyleTarget(DockerTarget):
    """The same target, asking for stats without one-shot (as Telegraf does)."""

    def _stats_params(self) -> dict[str, str]:
        return {"stream": "false"}


async def time_rounds(
    target: DockerTarget, rounds: int, containers: int
) -> list[tuple[float, float]]:
    """(wall s, CPU s) per round; checks every container was read."""
    results = []
    await target.collect(time.time_ns())  # warm: negotiation, connections, first CPU sample
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        metrics = await target.collect(time.time_ns())
        results.append((time.perf_counter() - wall, time.process_time() - cpu))
        seen = {
            m.tags["container_name"] for m in metrics if m.measurement == "docker_container_mem"
        }
        assert len(seen) == containers, f"read {len(seen)} of {containers} containers"
    await target.aclose()
    return results


def cli_rounds(engine: DockerEngine, prefix: str, rounds: int) -> list[float]:
    walls = []
    for _ in range(rounds):
        started = time.perf_counter()
        names = engine.cli("ps", "-q", "--filter", f"name={prefix}").split()
        engine.cli("stats", "--no-stream", *names)
        walls.append(time.perf_counter() - started)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoint", default="unix:///var/run/docker.sock")
    args = parser.parse_args()
    engine = DockerEngine(Path(args.endpoint.removeprefix("unix://")), "docker")
    engine.ensure_busybox()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    print_machine_info()
    print(f"starting {args.containers} containers ...", flush=True)
    for n in range(args.containers):
        engine.run("sleep 3600", name=f"{prefix}-{n:03d}")
    try:
        config = DockerConfig(endpoint=args.endpoint, container_name_include=[f"{prefix}-*"])
        ours = asyncio.run(
            time_rounds(DockerTarget(config, InputContext()), args.rounds, args.containers)
        )
        telegraf = asyncio.run(
            time_rounds(TelegrafStyleTarget(config, InputContext()), args.rounds, args.containers)
        )
        cli = cli_rounds(engine, prefix, args.rounds)
    finally:
        engine.remove_test_containers()
    report(args.containers, ours, telegraf, cli)


def report(
    containers: int,
    ours: list[tuple[float, float]],
    telegraf: list[tuple[float, float]],
    cli: list[float],
) -> None:
    ours_wall = statistics.median(w for w, _ in ours)
    ours_cpu = statistics.median(c for _, c in ours)
    telegraf_wall = statistics.median(w for w, _ in telegraf)
    cli_wall = statistics.median(cli)
    print(f"\n{containers} running containers, median of {len(ours)} rounds")
    print("| who | round wall s | telemon CPU s per round | CPU ms per container |")
    print("|---|---:|---:|---:|")
    print(
        f"| telemon (one-shot) | {ours_wall:.3f} | {ours_cpu:.3f} | "
        f"{ours_cpu / containers * 1000:.2f} |"
    )
    telegraf_cpu = statistics.median(c for _, c in telegraf)
    print(
        f"| telemon asking as Telegraf does (no one-shot) | {telegraf_wall:.3f} | "
        f"{telegraf_cpu:.3f} | {telegraf_cpu / containers * 1000:.2f} |"
    )
    print(f"| `docker stats --no-stream` | {cli_wall:.3f} | - | - |")
    print(f"\nrounds (wall s): {', '.join(f'{w:.3f}' for w, _ in ours)}")
    print(
        f"speed-up vs Telegraf-style: {telegraf_wall / ours_wall:.2f}x; "
        f"vs CLI: {cli_wall / ours_wall:.2f}x"
    )
    verdict = "met" if ours_wall < TARGET_WALL_S else "NOT met"
    print(f"target: one round under {TARGET_WALL_S} s: {verdict}")


if __name__ == "__main__":
    main()
