"""Memory of a running `telemon serve`: idle RSS, and RSS growth under scrapes.

    .venv/bin/python bench/memory.py [--repeats 3] [--warmup 1000] [--scrapes 10000]

(a) idle RSS: `telemon serve --listen 127.0.0.1:PORT` is started with no
    config file (so the default inputs, `process` and `python`) in an empty
    temporary working directory; once /healthz answers and /metrics holds a
    `process` line (one collection happened), VmRSS is read from
    /proc/PID/status, and again after a few idle seconds.
(b) RSS growth: the same server, and one whose config adds a lazy
    `[[inputs.fields]]` input with 10 callables (the default inputs are listed
    explicitly next to it), is scraped from this process with a keep-alive
    aiohttp ClientSession: VmRSS after a warm-up of 1,000 scrapes and after
    10,000 more; the growth is the difference.

(c) where the idle RSS goes: a fresh interpreter imports telemon's layers one
    after the other (asyncio, aiohttp.web, psutil, pydantic and its first
    model, telemon) and reads VmRSS after each.

Each measurement is repeated (a fresh server each time) and the median is
reported. Targets: idle RSS <= 45 MB, growth < 2 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TARGET_IDLE_MB = 45.0
TARGET_GROWTH_MB = 2.0
MB = 1024  # /proc figures are in KiB; 1 MB here = 1 MiB, as `ps`/`top` show

# Ten stdlib callables: importable from the telemon process without extra files.
FIELDS_CONFIG = """\
[[inputs.process]]
[[inputs.python]]

[[inputs.fields]]
  measurement = "app"
  [inputs.fields.tags]
    service = "bench"
  [inputs.fields.fields]
    time = "time:time"
    monotonic = "time:monotonic"
    perf_counter = "time:perf_counter"
    process_time = "time:process_time"
    time_ns = "time:time_ns"
    pid = "os:getpid"
    ppid = "os:getppid"
    cpus = "os:cpu_count"
    threads = "threading:active_count"
    gc_enabled = "gc:isenabled"
"""

CONFIGS = {"default inputs": None, "default + lazy fields": FIELDS_CONFIG}


def telemon_command() -> list[str]:
    """The console script next to this interpreter, else `python -m telemon`."""
    script = Path(sys.executable).parent / "telemon"
    if script.exists():
        return [str(script)]
    found = shutil.which("telemon")
    return [found] if found else [sys.executable, "-m", "telemon"]


class Telemon:
    """`telemon serve` in an empty temporary directory (optionally with a config)."""

    def __init__(self, config: str | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="telemon-mem-")
        self.port = _common.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [*telemon_command(), "serve", "--listen", f"127.0.0.1:{self.port}"]
        if config is not None:
            path = Path(self.tmp.name, "bench.toml")
            path.write_text(config, encoding="utf-8")
            cmd += ["--config", str(path)]
        env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
        self.log = open(Path(self.tmp.name, "stderr.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=self.tmp.name, env=env, stdout=subprocess.DEVNULL, stderr=self.log
        )

    def wait_collected(self, must_contain: bytes = b"process,") -> None:
        try:
            _common.wait_until(
                lambda: _common.http_get(self.base + "/healthz")[0] == 200,
                30, "/healthz", self.proc,
            )

            def collected() -> bool:
                status, body = _common.http_get(self.base + "/metrics")
                return status == 200 and any(
                    line.startswith(must_contain) for line in body.splitlines()
                )

            _common.wait_until(collected, 30, f"a {must_contain!r} line in /metrics", self.proc)
        except RuntimeError:
            self.log.flush()
            sys.stderr.write(Path(self.tmp.name, "stderr.log").read_text(errors="replace"))
            raise

    def rss(self) -> int:
        return _common.rss_kib(self.proc.pid)

    def stop(self) -> None:
        _common.stop_process(self.proc)
        self.log.close()
        self.tmp.cleanup()


# Steps of the import breakdown, run in a fresh interpreter (label, code).
IMPORT_STEPS = [
    ("python", "pass"),
    ("+ asyncio (with ssl)", "import asyncio, ssl"),
    ("+ aiohttp.web (client, connector, yarl, multidict)", "import aiohttp.web"),
    ("+ psutil", "import psutil"),
    ("+ pydantic (import)", "import pydantic"),
    # The least pydantic can cost: a model class whose schema is never built.
    ("+ pydantic (a model class, schema deferred, never validated)",
     "class _D(pydantic.BaseModel):\n    model_config = pydantic.ConfigDict(defer_build=True)\n"
     "    a: int = 1"),
    ("+ pydantic (first validated model)",
     "class _M(pydantic.BaseModel):\n    a: int = 1\n_M()"),
    ("+ telemon (all modules of `telemon serve`)", "import telemon.cli, telemon.server"),
    ("+ parse_config + create_app",
     "from telemon.config import parse_config\nfrom telemon.server import create_app\n"
     "create_app(parse_config({}))"),
]

_IMPORT_PROBE = """
import json, sys
def rss():
    with open('/proc/self/status') as f:
        return {l.split(':')[0]: int(l.split()[1]) for l in f
                if l.startswith(('VmRSS', 'RssAnon', 'RssFile'))}
out = []
for label, code in json.loads(sys.argv[1]):
    exec(code)
    out.append((label, rss()))
print(json.dumps(out))
"""


def import_breakdown() -> list[tuple[str, dict[str, int]]]:
    """VmRSS/RssAnon/RssFile (KiB) after each of IMPORT_STEPS, in a fresh interpreter."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    with tempfile.TemporaryDirectory(prefix="telemon-mem-") as tmp:
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE, json.dumps(IMPORT_STEPS)],
            capture_output=True, text=True, check=True, cwd=tmp, env=env,
        ).stdout
    return [(label, figures) for label, figures in json.loads(out)]


def idle_rss(settle: float) -> tuple[int, int, int]:
    """(VmRSS at the first collection, VmRSS after `settle` s, VmHWM) in KiB."""
    server = Telemon()
    try:
        server.wait_collected()
        first = server.rss()
        time.sleep(settle)
        return first, server.rss(), _common.rss_kib(server.proc.pid, "VmHWM")
    finally:
        server.stop()


async def scrape(url: str, count: int, concurrency: int) -> bytes:
    """`count` GETs over keep-alive connections; the last body (decompressed)."""
    import aiohttp

    remaining = count
    last = b""

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, last
        while remaining > 0:
            remaining -= 1
            async with session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
                last = body

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return last


_SCRAPES = re.compile(rb"^telemon(?:,\S*)? .*?\bscrapes=(\d+)i", re.M)


def growth(config: str | None, warmup: int, scrapes: int, concurrency: int,
           step: int) -> dict[str, object]:
    """RSS (KiB) before, after the warm-up, every `step` scrapes, and at the end."""
    server = Telemon(config)
    try:
        server.wait_collected(b"app," if config else b"process,")
        start = server.rss()
        url = server.base + "/metrics"
        started = time.perf_counter()
        asyncio.run(scrape(url, warmup, concurrency))
        after_warmup = server.rss()
        trend = [after_warmup]
        done = 0
        while done < scrapes:
            n = min(step, scrapes - done)
            body = asyncio.run(scrape(url, n, concurrency))
            done += n
            trend.append(server.rss())
        elapsed = time.perf_counter() - started
        counted = _SCRAPES.search(body)
        return {
            "start": start,
            "warm": after_warmup,
            "end": trend[-1],
            "max": max(trend),
            "trend": trend,
            "rate": (warmup + scrapes) / elapsed,
            "server_scrapes": int(counted.group(1)) if counted else -1,
            "lines": body.count(b"\n"),
        }
    finally:
        server.stop()


def mb(kib: float) -> str:
    return f"{kib / MB:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh servers per measurement")
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before 2nd read")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=2000, help="scrapes between RSS reads")
    parser.add_argument("--concurrency", type=int, default=10, help="keep-alive connections")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--skip-imports", action="store_true")
    args = parser.parse_args()

    _common.print_machine_info(extra=("psutil", "pydantic"))
    print(f"telemon command: {' '.join(telemon_command())}\n", flush=True)
    ok = True

    if not args.skip_idle:
        idle = []
        for i in range(args.repeats):
            first, settled, hwm = idle_rss(args.settle)
            idle.append((first, settled, hwm))
            print(f"idle run {i + 1}: VmRSS {mb(first)} at first collection, "
                  f"{mb(settled)} after {args.settle:g}s, VmHWM {mb(hwm)}", flush=True)
        first_med = _common.median([x[0] for x in idle])
        settled_med = _common.median([x[1] for x in idle])
        hwm_med = _common.median([x[2] for x in idle])
        met = settled_med / MB <= TARGET_IDLE_MB and first_med / MB <= TARGET_IDLE_MB
        ok &= met
        print()
        print(_common.markdown_table(
            ["idle `telemon serve` (default inputs)", "runs", "median", "target", "met"],
            [
                ["VmRSS at first collection", ", ".join(mb(x[0]) for x in idle), mb(first_med),
                 f"<= {TARGET_IDLE_MB:g} MB", "yes" if first_med / MB <= TARGET_IDLE_MB else "NO"],
                [f"VmRSS after {args.settle:g} s idle", ", ".join(mb(x[1]) for x in idle),
                 mb(settled_med), f"<= {TARGET_IDLE_MB:g} MB",
                 "yes" if settled_med / MB <= TARGET_IDLE_MB else "NO"],
                ["VmHWM (peak)", ", ".join(mb(x[2]) for x in idle), mb(hwm_med), "", ""],
            ],
        ))
        print(flush=True)

    if not args.skip_imports:
        runs = [import_breakdown() for _ in range(args.repeats)]
        rows = []
        previous = 0.0
        for i, (label, _) in enumerate(runs[0]):
            rss = _common.median([run[i][1]["VmRSS"] for run in runs])
            anon = _common.median([run[i][1]["RssAnon"] for run in runs])
            files = _common.median([run[i][1]["RssFile"] for run in runs])
            rows.append([label, mb(rss), f"{(rss - previous) / MB:+.1f} MB" if i else "",
                         mb(anon), mb(files)])
            previous = rss
        print(_common.markdown_table(
            ["where idle RSS goes (fresh interpreter)", "VmRSS", "step", "RssAnon", "RssFile"],
            rows,
        ))
        print(f"\n(medians of {args.repeats} interpreters; RssFile is mostly shared libraries)\n",
              flush=True)

    if not args.skip_growth:
        rows = []
        for name, config in CONFIGS.items():
            runs = []
            for i in range(args.repeats):
                res = growth(config, args.warmup, args.scrapes, args.concurrency, args.step)
                runs.append(res)
                trend = " ".join(f"{x / MB:.2f}" for x in res["trend"])  # type: ignore[attr-defined]
                print(f"{name}, run {i + 1}: start {mb(res['start'])}, after warm-up "  # type: ignore[arg-type]
                      f"{mb(res['warm'])}, after {args.scrapes} more {mb(res['end'])} "  # type: ignore[arg-type]
                      f"(every {args.step}: {trend} MB), {res['rate']:.0f} scrapes/s, "
                      f"server counted {res['server_scrapes']} scrapes, {res['lines']} lines",
                      flush=True)
            grow = [int(r["end"]) - int(r["warm"]) for r in runs]  # type: ignore[call-overload]
            grow_med = _common.median(grow)
            met = grow_med / MB < TARGET_GROWTH_MB
            ok &= met
            rows.append([
                name,
                mb(_common.median([int(r["warm"]) for r in runs])),  # type: ignore[call-overload]
                mb(_common.median([int(r["end"]) for r in runs])),  # type: ignore[call-overload]
                ", ".join(f"{g / MB:+.2f}" for g in grow),
                f"{grow_med / MB:+.2f} MB",
                f"< {TARGET_GROWTH_MB:g} MB",
                "yes" if met else "NO",
            ])
        print()
        print(_common.markdown_table(
            [f"RSS growth over {args.scrapes:,} scrapes", f"after {args.warmup:,} warm-up",
             "at the end", "growth per run (MB)", "median growth", "target", "met"],
            rows,
        ))
        print(f"\n(keep-alive aiohttp client, {args.concurrency} connections, "
              "Accept-Encoding: gzip as aiohttp sends it; medians of "
              f"{args.repeats} fresh servers; 1 MB = 1 MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
