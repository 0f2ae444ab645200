"""Abuse replay, issue 15 item 3: the field-type table under a stream of new names.

    .venv/bin/python bench/abuse_types.py [--rounds 20] [--lines 20000]

A real `telemon serve` with the sink on and `ttl = "1s"` gets, each round, one
POST of `--lines` lines with names never seen before (`rNm{i},h=x fld{i}=1i`),
one GET /metrics, then 2.2 s of nothing (the series expire). VmRSS is read
after every round; held means the last round's RSS is within 10 MB of the
first's (the store is empty again each time, so only the type table and the
encoder's caches can grow).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    free_port,
    http_get,
    print_machine_info,
    stop_process,
    wait_until,
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    print_machine_info()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "t.toml")
        config.write_text(
            f'[http]\nlisten = "127.0.0.1:{port}"\n[sink]\nenabled = true\nttl = "1s"\n'
            "max_series = 100000\n[[inputs.python]]\n"
        )
        telemon = Path(sys.executable).parent / "telemon"
        proc = subprocess.Popen([str(telemon), "serve", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_get(base + "/healthz")[0] == 200, proc=proc)
            sizes = []
            for round_ in range(args.rounds):
                start = round_ * args.lines
                body = "".join(
                    f"r{n}m{round_},h=x fld{n}=1i\n" for n in range(start, start + args.lines)
                ).encode()
                request = urllib.request.Request(base + "/write", data=body, method="POST")
                with urllib.request.urlopen(request) as answer:
                    assert answer.status == 204, answer.status
                urllib.request.urlopen(base + "/metrics").read()
                time.sleep(2.2)  # the series expire (ttl 1s)
                sizes.append(rss_mb(proc.pid))
                print(f"round {round_ + 1}: VmRSS {sizes[-1]:.1f} MB", flush=True)
        finally:
            stop_process(proc)
    growth = sizes[-1] - sizes[0]
    held = growth <= 10
    print(f"\n| rounds | lines/round | VmRSS after round 1 | after round {args.rounds} |"
          " growth | target | held |")
    print("|---:|---:|---:|---:|---:|---|---|")
    print(f"| {args.rounds} | {args.lines:,} | {sizes[0]:.1f} MB | {sizes[-1]:.1f} MB |"
          f" {growth:+.1f} MB | <= 10 MB | {'yes' if held else 'NO'} |")  # fmt: skip
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
