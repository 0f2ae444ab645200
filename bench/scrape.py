"""Requests/s of `/metrics`: telemon vs. a fixed-bytes ceiling vs. prometheus_client.

    .venv/bin/python bench/scrape.py [--rounds 3] [--duration 5] [--connections 10] [--pin]

Three aiohttp servers, each in its own subprocess (this script re-invoked with
`--serve KIND --port N`), all serving the same payload: 20 `pharo` series x 10
fields (tags host, instance) + one measurement of 10 lazily evaluated fields:

* telemon    - `telemon.server.create_app` with an agent holding a fake
               polled `pharo` target (its 20 metrics are collected and encoded
               by the real collector) and an embedded `Telemon` whose 10 sync
               callables are evaluated at every scrape; `inputs = {}`.
* ceiling    - an aiohttp handler returning telemon's body as fixed bytes
               (same size, same bytes): the best any aiohttp handler can do here.
* prometheus - 200 labelled gauges + 10 `Gauge.set_function` gauges (the same
               callables) in their own `CollectorRegistry`, with
               `prometheus_client.generate_latest()` called per request.

wrk (`wrk -t1 -cC -dDs URL`) runs from this process's child, never inside a
server. The servers are measured in alternation (the order rotates each round)
and the median requests/s of the rounds is reported.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SERIES = 20
PHARO_FIELDS = (
    "uptime", "oldSpace", "youngSpace", "memory", "memoryFree",
    "fullGCs", "fullGCTime", "incrGCs", "incrGCTime", "tenureCount",
)
KINDS = ("telemon", "ceiling", "prometheus")
TARGET_CEILING_RATIO = 0.75
TARGET_PROMETHEUS_RATIO = 10.0


# --------------------------------------------------------------------------
# The payload, shared by the telemon and prometheus servers.

def pharo_values(series: int, tick: int) -> dict[str, int]:
    """Plausible figures of one Pharo VM (ints, as Telemon's Pharo side sends)."""
    base = 1_000_003 * (series + 1)
    return {
        "uptime": 3_600_000 + 10_000 * tick + series,
        "oldSpace": 180_000_000 + base,
        "youngSpace": 12_000_000 + base // 7,
        "memory": 210_000_000 + base,
        "memoryFree": 30_000_000 - base // 3,
        "fullGCs": 42 + tick + series,
        "fullGCTime": 1_234 + 3 * tick + series,
        "incrGCs": 98_765 + 17 * tick + series,
        "incrGCTime": 45_678 + 5 * tick + series,
        "tenureCount": 321 + tick + series,
    }


_START = time.monotonic()
_requests = itertools.count()
_state = {"sessions": 137, "queue": 4, "hits": 912_345, "misses": 4_321}


def lazy_fields() -> dict[str, object]:
    """Ten sync callables, as an application would register them."""
    return {
        "requests": lambda: next(_requests),
        "sessions": lambda: _state["sessions"],
        "queue_depth": lambda: _state["queue"],
        "cache_hits": lambda: _state["hits"],
        "cache_misses": lambda: _state["misses"],
        "cache_ratio": lambda: _state["hits"] / (_state["hits"] + _state["misses"]),
        "uptime_s": lambda: time.monotonic() - _START,
        "pid": os.getpid,
        "threads": lambda: 4,
        "healthy": lambda: 1,
    }


# --------------------------------------------------------------------------
# The servers (run in their own subprocess).

def serve_telemon(port: int) -> None:
    from aiohttp import web

    from telemon.agent import Agent
    from telemon.config import parse_config
    from telemon.inputs.base import Target
    from telemon.lazy import Telemon
    from telemon.metric import Metric
    from telemon.server import create_app

    class FakePharo(Target):
        """A polled target standing for 20 Pharo VMs (no I/O)."""

        def __init__(self) -> None:
            super().__init__("fake-pharo")
            self.tick = 0

        async def collect(self, now_ns: int) -> list[Metric]:
            self.tick += 1
            return [
                Metric(
                    "pharo",
                    {"host": "pharo-host", "instance": f"image-{i:02d}"},
                    pharo_values(i, self.tick),
                    now_ns,
                )
                for i in range(SERIES)
            ]

    config = parse_config({"inputs": {}, "http": {"listen": f"127.0.0.1:{port}"}})
    telemon = Telemon("app", {"host": "app-host"}, lazy_fields())
    agent = Agent(config, [telemon], targets=[("pharo", FakePharo())])
    app = create_app(config, agent=agent)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_ceiling(port: int, body_file: str) -> None:
    from aiohttp import web

    body = Path(body_file).read_bytes()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_prometheus(port: int) -> None:
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry(auto_describe=True)
    gauges = {
        name: Gauge(f"pharo_{name}", f"Pharo VM {name}", ["host", "instance"], registry=registry)
        for name in PHARO_FIELDS
    }
    for i in range(SERIES):
        for name, value in pharo_values(i, 1).items():
            gauges[name].labels(host="pharo-host", instance=f"image-{i:02d}").set(value)
    for name, fn in lazy_fields().items():
        Gauge(f"app_{name}", f"app {name}", registry=registry).set_function(fn)  # type: ignore[arg-type]

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --------------------------------------------------------------------------
# The driver.

class Server:
    def __init__(self, kind: str, pin: int | None, body_file: str | None = None) -> None:
        self.kind = kind
        self.port = _common.free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        cmd = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        if body_file:
            cmd += ["--body-file", body_file]
        self.proc = subprocess.Popen(cmd, preexec_fn=_affinity(pin))

    def wait_ready(self, must_contain: bytes = b"") -> bytes:
        body = b""

        def ready() -> bool:
            nonlocal body
            status, body = _common.http_get(self.url)
            return status == 200 and must_contain in body

        _common.wait_until(ready, 30, f"{self.kind} on {self.url}", self.proc)
        return body

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        return _common.cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        _common.stop_process(self.proc)


def _affinity(cpu: int | None):  # type: ignore[no-untyped-def]
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_LAT = re.compile(r"Latency\s+([\d.]+)(us|ms|s)\b")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read")


def run_wrk(url: str, duration: int, connections: int, pin: int | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, preexec_fn=_affinity(pin)
    ).stdout
    rps = _RPS.search(out)
    if rps is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    errors = 0
    if m := _NON2XX.search(out):
        errors += int(m.group(1))
    if m := _SOCKERR.search(out):
        errors += sum(int(g) for g in m.groups())
    latency_ms = float("nan")
    if m := _LAT.search(out):
        latency_ms = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    requests = int(m.group(1)) if (m := _TOTAL.search(out)) else 0
    return {"rps": float(rps.group(1)), "errors": errors, "latency_ms": latency_ms,
            "requests": requests}


def count_line_protocol(body: bytes) -> dict[str, int]:
    """Field values per measurement in a line-protocol body."""
    counts: dict[str, int] = {}
    for line in body.decode().splitlines():
        if not line:
            continue
        measurement = line.split(",", 1)[0].split(" ", 1)[0]
        fields = line.split(" ")[1]  # no escaped spaces in this payload
        counts[measurement] = counts.get(measurement, 0) + fields.count("=")
    return counts


def count_prometheus(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of wrk per server first (0: none)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the servers to CPU 0 and wrk to CPU 1 (less noise, 2+ cores)")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--body-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        {"telemon": lambda: serve_telemon(args.port),
         "ceiling": lambda: serve_ceiling(args.port, args.body_file),
         "prometheus": lambda: serve_prometheus(args.port)}[args.serve]()
        return 0

    server_cpu, wrk_cpu = (0, 1) if args.pin else (None, None)
    _common.print_machine_info(extra=("prometheus_client",), wrk=True)
    print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds"
          f"{', servers on CPU 0 and wrk on CPU 1' if args.pin else ''}\n", flush=True)

    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="telemon-bench-") as tmp:
        try:
            servers["telemon"] = Server("telemon", server_cpu)
            body = servers["telemon"].wait_ready(b"\napp,")
            if not body.startswith(b"pharo,"):
                body = servers["telemon"].wait_ready(b"pharo,")
            body_file = os.path.join(tmp, "body")
            Path(body_file).write_bytes(body)
            servers["ceiling"] = Server("ceiling", server_cpu, body_file)
            servers["prometheus"] = Server("prometheus", server_cpu)
            ceiling_body = servers["ceiling"].wait_ready()
            prom_body = servers["prometheus"].wait_ready()
            sizes = {
                "telemon": len(body), "ceiling": len(ceiling_body), "prometheus": len(prom_body)
            }
            lp = count_line_protocol(body)
            payload = lp.get("pharo", 0) + lp.get("app", 0)
            values = {
                "telemon": payload, "ceiling": payload, "prometheus": count_prometheus(prom_body)
            }
            print(f"telemon body: {len(body)} bytes, {len(body.splitlines())} lines, "
                  f"field values per measurement: {lp}")
            print(f"prometheus body: {len(prom_body)} bytes, {values['prometheus']} samples\n",
                  flush=True)
            assert ceiling_body == body, "the ceiling must serve telemon's bytes"
            assert payload == SERIES * len(PHARO_FIELDS) + 10, lp
            assert values["prometheus"] == payload, values

            for kind in KINDS if args.warmup > 0 else ():  # warm-up, not counted
                run_wrk(servers[kind].url, args.warmup, args.connections, wrk_cpu)

            results: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
            for r in range(args.rounds):
                order = KINDS[r % 3:] + KINDS[: r % 3]
                for kind in order:
                    cpu_before = servers[kind].cpu_seconds()
                    res = run_wrk(servers[kind].url, args.duration, args.connections, wrk_cpu)
                    cpu = servers[kind].cpu_seconds() - cpu_before
                    res["cpu_us"] = cpu / max(res["requests"], 1) * 1e6
                    results[kind].append(res)
                    print(f"round {r + 1}: {kind:<10} {res['rps']:9.1f} req/s  "
                          f"avg latency {res['latency_ms']:.2f} ms  "
                          f"server CPU {res['cpu_us']:.0f} us/req  "
                          f"errors {res['errors']:.0f}",
                          flush=True)
            _, final_body = _common.http_get(servers["telemon"].url)
        finally:
            for server in servers.values():
                server.stop()

    med = {k: _common.median([r["rps"] for r in results[k]]) for k in KINDS}
    lat = {k: _common.median([r["latency_ms"] for r in results[k]]) for k in KINDS}
    errors = {k: sum(r["errors"] for r in results[k]) for k in KINDS}
    cpu_us = {k: _common.median([r["cpu_us"] for r in results[k]]) for k in KINDS}
    # Ratios of the same round (measured minutes apart at most) are less
    # exposed to the machine's load changing between rounds.
    round_ratio_c = [
        t["rps"] / c["rps"] for t, c in zip(results["telemon"], results["ceiling"], strict=True)
    ]
    round_ratio_p = [
        t["rps"] / p["rps"] for t, p in zip(results["telemon"], results["prometheus"], strict=True)
    ]
    print()
    rows = []
    for kind in KINDS:
        runs = ", ".join(f"{r['rps']:.0f}" for r in results[kind])
        rows.append([
            kind, f"{sizes[kind]:,}", values[kind], runs, f"{med[kind]:,.0f}",
            f"{lat[kind]:.2f}", f"{cpu_us[kind]:.0f}", f"{errors[kind]:.0f}",
        ])
    print(_common.markdown_table(
        ["server", "body bytes", "values", "req/s per round", "median req/s",
         "median latency ms", "server CPU us/req", "errors"],
        rows,
    ))
    print()
    r_ceiling = med["telemon"] / med["ceiling"]
    r_prom = med["telemon"] / med["prometheus"]
    cpu_c = cpu_us["ceiling"] / cpu_us["telemon"]
    cpu_p = cpu_us["prometheus"] / cpu_us["telemon"]
    print(_common.markdown_table(
        ["ratio", "of median req/s", "per round", "inverse CPU us/req", "target", "met"],
        [
            ["telemon / ceiling", f"{r_ceiling:.2f}",
             ", ".join(f"{x:.2f}" for x in round_ratio_c), f"{cpu_c:.2f}",
             f">= {TARGET_CEILING_RATIO}", "yes" if r_ceiling >= TARGET_CEILING_RATIO else "NO"],
            ["telemon / prometheus_client", f"{r_prom:.1f}",
             ", ".join(f"{x:.1f}" for x in round_ratio_p), f"{cpu_p:.1f}",
             f">= {TARGET_PROMETHEUS_RATIO:g}",
             "yes" if r_prom >= TARGET_PROMETHEUS_RATIO else "NO"],
        ],
    ))
    print("\n(`met` judges the ratio of median req/s. `inverse CPU us/req` divides the servers'"
          "\nCPU time per request, which load from other processes disturbs less.)")
    print(f"\n(telemon body grew to {len(final_body)} bytes by the end: its `scrapes` counter)")
    return 0 if r_ceiling >= TARGET_CEILING_RATIO and r_prom >= TARGET_PROMETHEUS_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
