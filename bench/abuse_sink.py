"""The sink under abuse (issue 15, items 2 and 5), replayed on loopback, beside InfluxDB 1.6.7.

    .venv/bin/python bench/abuse_sink.py [--only NAME ...] [--no-influxd]

Each attack runs against a fresh telemon server (this script re-invoked with
`--serve PORT CONFIG_JSON`: `telemon.server.create_app` with the sink enabled
and `inputs = {}`, plus a ticker task that measures how late the event loop
runs and a `/lag` route that reports and resets its worst delay). Peak RSS
is the server's VmHWM (/proc) minus its RSS before the attack. The same
bodies go to a real `influxd` 1.6.7 (`/write?db=...`), started as
tests/influx.py's `run_influxd` does, for lines/s and its peak RSS.

Attacks (bounded loops; each prints held/broke with its figures):

* `big-body`: one 10 MiB body of 1.5 M tiny lines (`m f=1i`), then the
  same as 100k distinct series.
* `concurrent-4`, `concurrent-16`: 4 and 16 such bodies at once; the 16
  clients give up after 2 s, and the server's CPU over the next 2 s tells
  whether the work stopped.
* `strings`: 100 posts of one 8 MiB string each.
* `wide-line`: one 8.7 MB line of 800k fields, then scrapes.
* `full-store`: 100k series (the documented `max_series`), then 20 scrapes
  of line protocol and 5 of Prometheus text, one after another, and 4
  probes a second abandoned after 0.2 s for 5 s; the worst loop delay and
  the `/healthz` latency meanwhile.
* `prometheus`: 100k series, then Prometheus scrapes with `/healthz` probed
  every 20 ms meanwhile: the first scrape (every series prepared), 5 more of
  the unchanged store, 5 each after 10k series changed; the worst loop delay,
  the loop thread's CPU per tick and `/healthz` latency while scraping (the
  writes' apart) and RSS growth.

Goals: peak RSS growth per concurrent write <= 3 x max_body_size; writes past
max_concurrent_writes answered 503 with Retry-After; work stops when the
client goes away; store bounded by max_bytes; no single scrape blocks the loop
for more than 50 ms at the documented limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import _common  # noqa: E402

MIB = 1024 * 1024
MAX_BODY = 10 * MIB
LAG_TICK_S = 0.005
TINY_LINES = 1_497_965  # 10 MiB of `m f=1i\n`
SERIES = 100_000


# --- the server (child process) ------------------------------------------------------


def serve(port: int, config_json: str) -> None:
    """telemon's app on `port` with a loop-lag ticker and `/lag`."""
    from aiohttp import web

    from telemon.config import parse_config
    from telemon.server import create_app

    app = create_app(parse_config(json.loads(config_json)))
    worst = [0.0, 0.0]  # wall delay of a tick; CPU the loop's thread used meanwhile

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(LAG_TICK_S)
            worst[0] = max(worst[0], loop.time() - before - LAG_TICK_S)
            worst[1] = max(worst[1], time.thread_time() - cpu)

    async def lag(request: web.Request) -> web.Response:
        (wall, cpu), worst[:] = worst, [0.0, 0.0]
        return web.json_response({"worst_ms": wall * 1000, "busy_ms": cpu * 1000})

    async def start_ticker(app: web.Application) -> Any:
        task = asyncio.create_task(ticker())
        yield
        task.cancel()

    app.router.add_get("/lag", lag)
    app.cleanup_ctx.append(start_ticker)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@dataclass
class Server:
    """A telemon child process."""

    config: dict[str, Any]
    port: int = field(default_factory=_common.free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        cmd = [sys.executable, __file__, "--serve", str(self.port), json.dumps(self.config)]
        self.proc = subprocess.Popen(cmd)
        _common.wait_until(
            lambda: _common.http_get(f"{self.url}/healthz")[0] == 200,
            what="telemon",
            proc=self.proc,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        _common.stop_process(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mib(self, key: str = "VmRSS") -> float:
        return _common.rss_kib(self.pid, key) / 1024


def sink_config(**sink: Any) -> dict[str, Any]:
    return {"inputs": {}, "sink": {"enabled": True, "ttl": "600s", **sink}}


# --- HTTP from the bench ---------------------------------------------------------------


async def post(
    session: Any, url: str, body: bytes, timeout: float = 600
) -> tuple[int, str, dict[str, str]]:
    import aiohttp

    try:
        async with session.post(
            url, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, (await response.text())[:200], dict(response.headers)
    except TimeoutError:
        return 0, "gave up", {}


def tiny_body() -> bytes:
    return b"m f=1i\n" * TINY_LINES


def series_body(count: int = SERIES) -> bytes:
    return "".join(
        f"cpu,host=h{i},region=r{i % 7} usage_idle={i}.5,usage_user=3i,ok=true\n"
        for i in range(count)
    ).encode()


@dataclass
class Outcome:
    name: str
    held: bool
    figures: str
    rows: list[list[object]] = field(default_factory=list)

    def show(self) -> None:
        print(f"{'held' if self.held else 'BROKE'}: {self.name}: {self.figures}", flush=True)


# --- the attacks -----------------------------------------------------------------------


async def timed_write(url: str, body: bytes) -> tuple[float, int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        status, text, _ = await post(session, url, body)
        return time.perf_counter() - start, status, text


def big_body(influx: Any) -> Outcome:
    rows: list[list[object]] = []
    held = True
    for label, body, lines in [
        ("1.5 M tiny lines (one series)", tiny_body(), TINY_LINES),
        ("100k series", series_body(), SERIES),
    ]:
        with Server(sink_config(max_series=200_000)) as server:
            before = server.rss_mib()
            cpu = _common.cpu_seconds(server.pid)
            wall, status, text = asyncio.run(timed_write(f"{server.url}/write", body))
            cpu = _common.cpu_seconds(server.pid) - cpu
            growth = server.rss_mib("VmHWM") - before
            store = sink_field(server, "bytes") / MIB
            # What the write held beyond what it stored: the bound is per write.
            held &= status == 204 and growth - store <= 3 * MAX_BODY / MIB
            rows.append(["telemon", label, f"{len(body) / MIB:.1f}", status, f"{wall:.2f}",
                         f"{cpu:.2f}", f"{lines / wall:,.0f}", f"{growth:.0f}",
                         f"{store:.0f}"])  # fmt: skip
        if influx is not None:
            rows.append(influx_row(influx, label, body, lines))
    figures = "; ".join(f"{r[0]} {r[1]}: {r[6]} lines/s, +{r[7]} MiB" for r in rows)
    return Outcome("one 10 MiB body", held, figures, rows)


def sink_field(server: Server, name: str) -> int:
    """A field of the `telemon_sink` line the server serves."""
    from telemon.lpparse import parse_lines

    body = _common.http_get(f"{server.url}/metrics", timeout=60)[1].decode()
    [line] = [line for line in parse_lines(body) if line.measurement == "telemon_sink"]
    return int(line.fields[name])


def influx_row(influx: Any, label: str, body: bytes, lines: int) -> list[object]:
    db = influx.database()
    before = influx.rss_mib()
    influx.reset_peak()
    cpu = _common.cpu_seconds(influx.pid)
    start = time.perf_counter()
    status, text = influx.client.write(db, body)
    wall = time.perf_counter() - start
    cpu = _common.cpu_seconds(influx.pid) - cpu
    growth = influx.rss_mib("VmHWM") - before
    if status != 204:
        print(f"influxd answered {status}: {text.strip()[:200]}")
    return ["influxd 1.6.7", label, f"{len(body) / MIB:.1f}", status, f"{wall:.2f}",
            f"{cpu:.2f}", f"{lines / wall:,.0f}", f"{growth:.0f}", "-"]  # fmt: skip


async def concurrent_writes(url: str, body: bytes, count: int, give_up: float) -> list[int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(post(session, url, body, timeout=give_up) for _ in range(count))
        )
    for status, _, headers in answers:
        if status == 503:
            assert headers.get("Retry-After"), "503 without Retry-After"
    return [status for status, _, _ in answers]


def concurrent(count: int, give_up: float) -> Outcome:
    body = tiny_body()
    with Server(sink_config()) as server:
        before = server.rss_mib()
        statuses = asyncio.run(concurrent_writes(f"{server.url}/write", body, count, give_up))
        peak = server.rss_mib("VmHWM") - before
        cpu_before = _common.cpu_seconds(server.pid)
        time.sleep(2)
        cpu_after = _common.cpu_seconds(server.pid) - cpu_before
        writes = min(count, 4)  # max_concurrent_writes
        busy = statuses.count(503) >= count - 4  # max_concurrent_writes = 4
        held = peak <= writes * 3 * MAX_BODY / MIB and cpu_after < 0.5 and busy
        figures = (
            f"{count} x 10 MiB: answers {sorted(statuses)}; peak RSS +{peak:.0f} MiB"
            f" (goal <= {writes * 30} MiB); server CPU in the 2 s after: {cpu_after:.2f} s"
        )
    return Outcome(f"{count} concurrent writes", held, figures)


def strings(influx: Any) -> Outcome:
    body = b'big,i=%d s="' + b"x" * (8 * MIB) + b'"\n'
    held, figures = True, []
    # Refused by the default max_line_bytes; then let in, to see the store's bound.
    for setting in ({}, {"max_line_bytes": 16 * MIB}):
        with Server(sink_config(**setting)) as server:
            before = server.rss_mib()

            async def run(url: str) -> list[int]:
                import aiohttp

                async with aiohttp.ClientSession() as session:
                    return [(await post(session, url, body % i))[0] for i in range(100)]

            statuses = asyncio.run(run(f"{server.url}/write"))
            growth = server.rss_mib("VmHWM") - before
            now = server.rss_mib() - before
            store = sink_field(server, "bytes") / MIB
        held &= growth - store <= 3 * MAX_BODY / MIB
        figures.append(
            f"{setting or 'defaults'}: answers {sorted(set(statuses))}, peak RSS +{growth:.0f} MiB,"
            f" after +{now:.0f} MiB, store {store:.1f} MiB"
        )
    if influx is not None:
        status, text = influx.client.write(influx.database(), body % 0)
        figures.append(f"influxd answers {status} {text.strip()[:80]}")
    return Outcome("100 posts of an 8 MiB string", held, "; ".join(figures))


def scrape_times(url: str, count: int, accept: str | None = None) -> list[float]:
    import urllib.request

    times = []
    for _ in range(count):
        request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        times.append(time.perf_counter() - start)
    return times


def lag_ms(server: Server) -> tuple[float, float]:
    """The worst delay of the loop's 5 ms ticker since the last call, and the most CPU
    the loop's thread used within one tick (the delay also counts time the process
    waited for a core or for the GIL; the CPU is work that held the loop)."""
    lag = json.loads(_common.http_get(f"{server.url}/lag")[1])
    return float(lag["worst_ms"]), float(lag["busy_ms"])


def wide_line() -> Outcome:
    body = ("wide " + ",".join(f"f{i}=1" for i in range(800_000)) + "\n").encode()
    with Server(sink_config()) as server:
        _, status, text = asyncio.run(timed_write(f"{server.url}/write", body))
        lag_ms(server)
        times = scrape_times(f"{server.url}/metrics", 5)
        worst, busy = lag_ms(server)
    figures = (
        f"{len(body) / MIB:.1f} MiB line: {status} {text[:90]}; scrapes after:"
        f" {max(times) * 1000:.0f} ms at most, worst loop delay {worst:.0f} ms (busy {busy:.0f})"
    )
    return Outcome("one line of 800k fields", status == 400 and busy <= 50, figures)


async def abandoned_probes(url: str, seconds: float) -> int:
    import aiohttp

    abandoned = 0
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.2)) as response:
                    await response.read()
            except TimeoutError:
                abandoned += 1
            await asyncio.sleep(0.25)
    return abandoned


def full_store() -> Outcome:
    with Server(sink_config()) as server:
        status = asyncio.run(timed_write(f"{server.url}/write", series_body()))[1]
        lag_ms(server)
        size = len(_common.http_get(f"{server.url}/metrics", timeout=60)[1])
        lp = scrape_times(f"{server.url}/metrics", 20)
        lp_lag = lag_ms(server)
        prom = scrape_times(f"{server.url}/metrics", 5, accept="text/plain;version=0.0.4")
        prom_lag = lag_ms(server)
        health = scrape_times(f"{server.url}/healthz", 20)
        abandoned = asyncio.run(abandoned_probes(f"{server.url}/metrics?format=prometheus", 5))
        probe_lag = lag_ms(server)
        cpu_before = _common.cpu_seconds(server.pid)
        time.sleep(1)
        idle_cpu = _common.cpu_seconds(server.pid) - cpu_before
    busy = max(lp_lag[1], prom_lag[1], probe_lag[1])
    figures = (
        f"write {status}; /metrics {size / 1e6:.1f} MB; line protocol scrape median"
        f" {_common.median(lp) * 1000:.0f} ms, worst loop delay {lp_lag[0]:.0f} ms (busy"
        f" {lp_lag[1]:.0f}); Prometheus median {_common.median(prom) * 1000:.0f} ms, worst loop"
        f" delay {prom_lag[0]:.0f} ms (busy {prom_lag[1]:.0f}); /healthz at most"
        f" {max(health) * 1000:.0f} ms; {abandoned} abandoned Prometheus probes, worst loop"
        f" delay {probe_lag[0]:.0f} ms (busy {probe_lag[1]:.0f}), CPU 1 s later {idle_cpu:.2f} s"
    )
    return Outcome("scrapes at 100k series", status == 204 and busy <= 50, figures)


PROM_URL = "/metrics?format=prometheus"
CHANGED = 10_000


@dataclass
class Scrapes:
    """Scrapes' seconds; the worst loop delay and busy ms, and the slowest `/healthz`
    probe, while scraping; the worst loop delay and busy ms while writing."""

    times: list[float] = field(default_factory=list)
    lag: tuple[float, float] = (0.0, 0.0)
    health: float = 0.0
    write_lag: tuple[float, float] = (0.0, 0.0)


def _worse(a: tuple[float, float], b: dict[str, float]) -> tuple[float, float]:
    return max(a[0], b["worst_ms"]), max(a[1], b["busy_ms"])


async def probed_scrapes(base: str, bodies: list[bytes | None]) -> Scrapes:
    """Prometheus scrapes one after another (each after posting its body, if any), with
    `/healthz` probed every 20 ms meanwhile (the probes during writes not counted)."""
    import aiohttp

    found = Scrapes()
    scraping = False
    async with aiohttp.ClientSession() as session:
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                start = time.perf_counter()
                async with session.get(f"{base}/healthz") as response:
                    await response.read()
                if scraping:
                    found.health = max(found.health, time.perf_counter() - start)
                await asyncio.sleep(0.02)

        async def lag() -> dict[str, float]:
            async with session.get(f"{base}/lag") as response:
                return dict(await response.json())

        prober = asyncio.create_task(probe())
        for body in bodies:
            if body is not None:
                async with session.post(f"{base}/write", data=body) as response:
                    assert response.status == 204, response.status
            found.write_lag = _worse(found.write_lag, await lag())
            scraping = True
            start = time.perf_counter()
            async with session.get(f"{base}{PROM_URL}") as response:
                await response.read()
            found.times.append(time.perf_counter() - start)
            scraping = False
            found.lag = _worse(found.lag, await lag())
        done.set()
        await prober
    return found


def changed_body(round_: int) -> bytes:
    return "".join(
        f"cpu,host=h{i},region=r{i % 7} usage_idle={round_}.25,usage_user={round_}i,ok=false\n"
        for i in range(round_ * CHANGED, (round_ + 1) * CHANGED)
    ).encode()


def prometheus() -> Outcome:
    with Server(sink_config()) as server:
        status = asyncio.run(timed_write(f"{server.url}/write", series_body()))[1]
        rss = server.rss_mib()
        first = asyncio.run(probed_scrapes(server.url, [None]))
        rss_after = server.rss_mib()
        same = asyncio.run(probed_scrapes(server.url, [None] * 5))
        changed = asyncio.run(probed_scrapes(server.url, [changed_body(r) for r in range(5)]))
        size = len(_common.http_get(f"{server.url}{PROM_URL}", timeout=60)[1])
    # The delay, not the loop thread's CPU: rendering in a thread kept the loop
    # waiting for the GIL while its thread was idle.
    worst = max(first.lag[0], same.lag[0], changed.lag[0])
    figures = (
        f"write {status}; Prometheus body {size / 1e6:.1f} MB; first scrape"
        f" {_scrapes(first)}, RSS +{rss_after - rss:.0f} MiB; unchanged store: {_scrapes(same)};"
        f" after {CHANGED // 1000}k series changed: {_scrapes(changed)} (the writes of"
        f" {CHANGED // 1000}k lines: worst loop delay {changed.write_lag[0]:.0f} ms, busy"
        f" {changed.write_lag[1]:.0f})"
    )
    return Outcome("Prometheus scrapes at 100k series", status == 204 and worst <= 50, figures)


def _scrapes(found: Scrapes) -> str:
    return (
        f"median {_common.median(found.times) * 1000:.0f} ms, worst loop delay"
        f" {found.lag[0]:.0f} ms (busy {found.lag[1]:.0f}), /healthz at most"
        f" {found.health * 1000:.0f} ms"
    )


# --- InfluxDB ---------------------------------------------------------------------------


@dataclass
class Influx:
    client: Any
    pid: int
    count: int = 0

    def database(self) -> str:
        self.count += 1
        return str(self.client.create_database(f"abuse{self.count}"))

    def rss_mib(self, key: str = "VmRSS") -> float:
        return _common.rss_kib(self.pid, key) / 1024

    def reset_peak(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")  # VmHWM back to the current RSS


@contextmanager
def influxd() -> Iterator[Influx | None]:
    import shutil

    import psutil
    from influx import run_influxd

    binary = shutil.which("influxd")
    if binary is None:
        print("influxd not found: telemon only")
        yield None
        return
    with tempfile.TemporaryDirectory() as directory, run_influxd(binary, Path(directory)) as client:
        # Other influxd processes may run (tests): ours is the one using our directory.
        [pid] = [
            process.pid
            for process in psutil.process_iter(["name", "cmdline"])
            if process.info["name"] == "influxd" and directory in " ".join(process.info["cmdline"])
        ]
        yield Influx(client, pid)


ATTACKS: dict[str, Callable[[Any], Outcome]] = {
    "big-body": big_body,
    "concurrent-4": lambda influx: concurrent(4, give_up=600),
    "concurrent-16": lambda influx: concurrent(16, give_up=2),
    "strings": strings,
    "wide-line": lambda influx: wide_line(),
    "full-store": lambda influx: full_store(),
    "prometheus": lambda influx: prometheus(),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(ATTACKS), help="attacks to run")
    parser.add_argument("--no-influxd", action="store_true", help="telemon only")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0
    _common.print_machine_info()
    outcomes = []
    with influxd() if not args.no_influxd else _none() as influx:
        for name in args.only or ATTACKS:
            outcome = ATTACKS[name](influx)
            outcome.show()
            outcomes.append(outcome)
    rows = [row for outcome in outcomes for row in outcome.rows]
    if rows:
        header = ["server", "body", "MiB", "status", "wall s", "CPU s", "lines/s",
                  "peak RSS growth MiB", "store MiB"]  # fmt: skip
        print("\n" + _common.markdown_table(header, rows))
    print()
    for outcome in outcomes:
        print(f"- {'held' if outcome.held else 'BROKE'}: {outcome.name}: {outcome.figures}")
    return 0 if all(outcome.held for outcome in outcomes) else 1


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
