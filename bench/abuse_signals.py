"""A burst of SIGHUPs under load (issue 15, item 1): does one telemon survive, on the newest file?

    .venv/bin/python bench/abuse_signals.py [--hups 20] [--every 0.5] [--invalid-every 4]

`telemon serve -c FILE` runs in a temporary directory with one input
(`python`, every second) and a global tag `gen`. While `wrk` (if installed)
scrapes /metrics with 8 connections and a probe thread GETs /metrics every
50 ms on a fresh connection, the script writes the file `--hups` times, one
generation after the other (every `--invalid-every`-th generation is invalid:
`interval = "soon"`), each written whole (temporary file, rename) and followed
by `kill -HUP`, `--every` seconds apart. It then waits (at most 30 s) for
/metrics to carry the newest valid generation.

Prints held when the process is still running (same PID, no other telemon
started), serves the newest valid generation, and every probe failed only
while a restart was under way; broke otherwise, with the figures: probes
answered and failed, the longest gap without an answer, restarts (lines
"serving" in the log), refused reloads, the exit status if it died.

Set PYTHONPATH to run another checkout's telemon (for before/after figures).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SETTLE_TIMEOUT_S = 30.0
PROBE_EVERY_S = 0.05
_GEN = re.compile(rb"[,]gen=(\d+)[ ,]")


def config_text(generation: int, valid: bool) -> str:
    interval = "1s" if valid else "soon"
    tags = f'[global_tags]\n  gen = "{generation}"\n\n'
    return tags + f'[[inputs.python]]\n  interval = "{interval}"\n'


def write_whole(path: Path, text: str) -> None:
    """As editors and config managers do: a reader never sees half a file."""
    temp = path.with_suffix(".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


class Probe(threading.Thread):
    """GET /metrics every 50 ms; remembers each answer's time, success and generation."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.results: list[tuple[float, bool, int | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            status, body = _common.http_get(self.url, timeout=2.0)
            generations = {int(g) for g in _GEN.findall(body)}
            generation = max(generations) if len(generations) == 1 else None
            self.results.append((time.monotonic(), status == 200, generation))
            time.sleep(PROBE_EVERY_S)

    def longest_gap(self) -> float:
        """The longest time between two successful answers."""
        times = [t for t, ok, _ in self.results if ok]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hups", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--invalid-every", type=int, default=4, help="0: every file valid")
    args = parser.parse_args()
    _common.print_machine_info(wrk=True)
    work = Path(tempfile.mkdtemp(prefix="telemon-hup-"))
    path = work / "telemon.toml"
    write_whole(path, config_text(0, True))
    port = _common.free_port()
    base = f"http://127.0.0.1:{port}"
    log = (work / "telemon.log").open("w+", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemon", "serve", "-c", str(path),
         "--listen", f"127.0.0.1:{port}"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    wrk = None
    try:
        _common.wait_until(lambda: b"gen=0" in _common.http_get(f"{base}/metrics")[1],
                           what="the first generation served", proc=proc)  # fmt: skip
        if shutil.which("wrk"):
            seconds = int(args.hups * args.every + SETTLE_TIMEOUT_S)
            wrk = subprocess.Popen(
                ["wrk", "-t1", "-c8", f"-d{seconds}s", f"{base}/metrics"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        probe = Probe(f"{base}/metrics")
        probe.start()
        newest_valid = 0
        started = time.monotonic()
        for generation in range(1, args.hups + 1):
            # The last file is valid: a SIGHUP reads the file as it is then.
            last = generation == args.hups
            valid = last or not args.invalid_every or generation % args.invalid_every != 0
            write_whole(path, config_text(generation, valid))
            newest_valid = generation if valid else newest_valid
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGHUP)
            time.sleep(max(0.0, started + generation * args.every - time.monotonic()))
        last_hup = time.monotonic()
        settled_after = None
        deadline = last_hup + SETTLE_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            recent = [g for t, ok, g in probe.results[-3:] if ok and t > last_hup]
            if recent and recent[-1] == newest_valid:
                settled_after = probe.results[-1][0] - last_hup
                break
            time.sleep(0.1)
        probe.done.set()
        probe.join()
        alive = proc.poll() is None
        stop_s = None
        if alive:  # issue 16: SIGTERM with nothing pending (no outputs) should take < 0.5 s
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
                stop_s = time.monotonic() - stop_started
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)
        _common.stop_process(proc)  # type: ignore[arg-type]
    wrk_out = wrk.communicate()[0] if wrk is not None else ""
    log.seek(0)
    text = log.read()
    restarts = text.count(" serving http") - 1
    refused = len({m for m in re.findall(r"SIGHUP: configuration refused.*", text)})
    answered = sum(ok for _, ok, _ in probe.results)
    failed = len(probe.results) - answered
    requests = re.search(r"(\d+) requests in", wrk_out)
    errors = re.search(r"Socket errors: (.*)", wrk_out)
    held = alive and settled_after is not None and "Traceback" not in text
    print(f"SIGHUPs sent: {args.hups}, every {args.every} s (every {args.invalid_every}th file "
          f"invalid); newest valid generation {newest_valid}")  # fmt: skip
    print(f"telemon alive after the burst: {alive}"
          + ("" if alive else f" (exit {proc.returncode})"))  # fmt: skip
    print("newest valid generation served: "
          + (f"yes, {settled_after:.2f} s after the last SIGHUP" if settled_after is not None
             else "no"))  # fmt: skip
    print(f"restarts: {restarts}; refused reloads logged: {refused}")
    if stop_s is not None:
        print(f"SIGTERM to exit (wrk still connected): {stop_s:.2f} s")
    print(f"probes answered: {answered}, failed: {failed}; longest gap without an answer: "
          f"{probe.longest_gap():.2f} s")  # fmt: skip
    if wrk is not None:
        print(
            f"wrk: {requests[1] if requests else '?'} requests"
            + (f", socket errors: {errors[1]}" if errors else ", no socket errors")
        )
    print("held" if held else "broke")
    if not held or os.environ.get("BENCH_LOG"):
        print(text[-6000:])
    shutil.rmtree(work, ignore_errors=True)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
