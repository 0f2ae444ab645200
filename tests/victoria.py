"""Real VictoriaMetrics processes for the tests: `victoria-metrics`, `vmagent` and `vmalert`
on free loopback ports with throwaway directories, and a small async client for each.

Start them with the `run_*` context managers (they stop the process after); under `CI`
a missing binary fails the test (`require_executable`). Each process is ready when its
`/health` answers; nothing here sleeps for a time.

    with (
        run_victoria(tmp_path / "vm") as vm,
        run_vmagent(tmp_path / "agent", ["127.0.0.1:8080"], vm.write_url) as agent,
    ):
        await wait_until(agent.scraped)  # a set of `host:port`, true once one is scraped
        series = await vm.export('{job="telemon"}')

    with run_vmalert(tmp_path / "alert", [rules], vm.url, remote_write_url=vm.url) as vmalert:

        async def firing() -> bool:
            return await vmalert.alert_state("PharoDown") == "firing"

        await wait_until(firing, every=0.25)  # poll a real server gently
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from helpers import free_port, require_executable, stop_process, wait_for_service

__all__ = [
    "AlertReceiver",
    "Exported",
    "ServiceStartupError",
    "VMAgent",
    "VMAlert",
    "VictoriaMetrics",
    "VictoriaService",
    "run_victoria",
    "run_vmagent",
    "run_vmalert",
    "scrape_config",
]

PACKAGE = "victoria-metrics"  # Debian ships the three binaries in one package
MAX_BODY = 64 * 1024 * 1024  # an answer larger than this is a bug in the test, not data
HTTP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it
ALERT_STATES = ("inactive", "pending", "firing")  # the later wins when a name repeats
S = TypeVar("S", bound="VictoriaService")


class ServiceStartupError(RuntimeError):
    """A VictoriaMetrics process exited or never became healthy."""


@dataclass(frozen=True, slots=True)
class Exported:
    """One series of `/api/v1/export`: its labels (with `__name__`) and its samples."""

    labels: dict[str, str]
    values: list[float]
    timestamps_ms: list[int]

    @property
    def name(self) -> str:
        """The metric name."""
        return self.labels["__name__"]


# --- one process ----------------------------------------------------------------------------


class VictoriaService:
    """One VictoriaMetrics-family process on a fixed loopback URL and directory.

    `start()` again after `stop()` or `kill()` brings it back on the same port and data.
    """

    name = "service"

    def __init__(self, binary: str, directory: Path, flags: Sequence[str] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.url = f"http://127.0.0.1:{free_port()}"
        self.flags = list(flags)
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        """The running process's id (for CPU figures)."""
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def args(self) -> list[str]:
        """The command line, binary first."""
        return [self.binary, f"-httpListenAddr={self.url.removeprefix('http://')}", *self.flags]

    def start(self) -> None:
        """Spawn the process and wait until `/health` answers 200."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_service(self.process, self._healthy, self.name, self.log, ServiceStartupError)

    def stop(self) -> None:
        """SIGTERM and wait: it flushes what it holds (VictoriaMetrics loses the last
        second of acknowledged samples on SIGKILL)."""
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost host: nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:  # refused while it starts, or 503
            return False

    async def get(self, path: str, **params: str) -> bytes:
        """The body of a successful `GET path` (bounded), or AssertionError."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)) as session,
            session.get(f"{self.url}{path}", params=params) as response,
        ):
            body = await _read_bounded(response)
        if response.status != 200:
            raise AssertionError(f"{self.name} {path} {params}: {response.status} {body[:500]!r}")
        return body

    async def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful Prometheus-style `GET /api/v1/<path>`."""
        answer = json.loads(await self.get(f"/api/v1/{path}", **params))
        if answer.get("status") != "success":
            raise AssertionError(f"{self.name} {path} {params}: {answer}")
        return answer["data"]

    async def own_metrics(self) -> dict[str, float]:
        """The process's own `/metrics`, as {`name{labels}` exactly as written: value}."""
        text = (await self.get("/metrics")).decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                samples[series] = float(value)
        return samples


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await response.content.read(1 << 16):
        size += len(chunk)
        if size > MAX_BODY:
            raise AssertionError(f"{response.url}: answer larger than {MAX_BODY} bytes")
        parts.append(chunk)
    return b"".join(parts)


# --- VictoriaMetrics ------------------------------------------------------------------------


class VictoriaMetrics(VictoriaService):
    """`victoria-metrics` single node: fresh samples are queryable at once
    (`-search.latencyOffset=0s`, no response cache); with `dedup_interval` it keeps one
    sample per series and interval, as replicated scrapers need."""

    name = "victoria-metrics"

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        dedup_interval: str | None = None,
        flags: Sequence[str] = (),
    ) -> None:
        dedup = [f"-dedup.minScrapeInterval={dedup_interval}"] if dedup_interval else []
        own = [
            f"-storageDataPath={directory / 'data'}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        super().__init__(binary, directory, [*own, *dedup, *flags])

    @property
    def write_url(self) -> str:
        """Where Prometheus remote write goes (vmagent's and vmalert's `-remoteWrite.url`)."""
        return f"{self.url}/api/v1/write"

    async def force_flush(self) -> None:
        """Make every sample received so far searchable (it buffers them for a moment)."""
        await self.get("/internal/force_flush")

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of `expr` (now, or at unix time `at`)."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = await self.api("query", **params)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def series(
        self, match: str, start: float | None = None, end: float | None = None
    ) -> list[dict[str, str]]:
        """The label sets (with `__name__`) of the series matching `match`."""
        data: list[dict[str, str]] = await self.api("series", **_window(match, start, end))
        return data

    async def export(
        self, match: str, start: float | None = None, end: float | None = None
    ) -> list[Exported]:
        """Every stored sample of the matching series (unix seconds window), duplicates kept
        unless deduplication is on."""
        body = await self.get("/api/v1/export", **_window(match, start, end))
        exported = []
        for line in body.decode().splitlines():
            if line:
                item = json.loads(line)
                exported.append(Exported(item["metric"], item["values"], item["timestamps"]))
        return exported


def _window(match: str, start: float | None, end: float | None) -> dict[str, str]:
    params = {"match[]": match}
    if start is not None:
        params["start"] = f"{start:.3f}"
    if end is not None:
        params["end"] = f"{end:.3f}"
    return params


# --- vmagent ---------------------------------------------------------------------------------


def scrape_config(targets: Sequence[str], interval: str = "1s", job: str = "telemon") -> str:
    """A `-promscrape.config` scraping each `host:port` at `/metrics` (JSON is valid YAML).

    telemon answers vmagent's Accept header (text format 0.0.4) in Prometheus text."""
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    return json.dumps(config, indent=2)


class VMAgent(VictoriaService):
    """`vmagent` scraping what `config` (a scrape config's text) lists and remote-writing
    to `remote_write_url`; in a cluster of `members` scrapers it is number `member`, and
    each target is scraped by `replication` of them."""

    name = "vmagent"

    def __init__(
        self,
        binary: str,
        directory: Path,
        config: str,
        remote_write_url: str,
        *,
        members: int = 1,
        member: int = 0,
        replication: int = 1,
        flags: Sequence[str] = (),
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "scrape.yml"
        config_path.write_text(config, encoding="utf-8")
        own = [
            f"-promscrape.config={config_path}",
            f"-remoteWrite.url={remote_write_url}",
            f"-remoteWrite.tmpDataPath={directory / 'remote-write'}",
            "-loggerLevel=WARN",
        ]
        cluster = (
            [
                f"-promscrape.cluster.membersCount={members}",
                f"-promscrape.cluster.memberNum={member}",
                f"-promscrape.cluster.replicationFactor={replication}",
            ]
            if members > 1
            else []
        )
        super().__init__(binary, directory, [*own, *cluster, *flags])

    async def targets(self) -> list[dict[str, Any]]:
        """The targets this member scrapes (`/api/v1/targets`' activeTargets); in a
        cluster, those of the other members are not listed."""
        data = await self.api("targets", state="active")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    async def scraped(self) -> set[str]:
        """`host:port` of each target this member scraped successfully at least once."""
        return {
            t["labels"]["instance"]
            for t in await self.targets()
            if t["health"] == "up" and t["lastSamplesScraped"] > 0
        }


# --- vmalert ---------------------------------------------------------------------------------


class AlertReceiver:
    """A stand-in Alertmanager on loopback: records each alert vmalert posts
    (`/api/v2/alerts`), so that tests can also see notifications. vmalert 1.79 has no
    blackhole notifier and needs at least one `-notifier.url`."""

    MAX_REQUEST = 1 << 20

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= receiver.MAX_REQUEST:
                    self.send_response(413)
                else:
                    receiver._record(self.rfile.read(length))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, body: bytes) -> None:
        alerts = json.loads(body)
        with self._lock:
            self.received.extend(alerts if isinstance(alerts, list) else [alerts])

    def names(self) -> set[str]:
        """`alertname` of every alert received so far."""
        with self._lock:
            return {a.get("labels", {}).get("alertname", "") for a in self.received}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class VMAlert(VictoriaService):
    """`vmalert` evaluating `rules` (files) against `datasource_url` every
    `evaluation_interval`, notifying `notifier_url`; with `remote_write_url` it writes
    its `ALERTS`/recording series there, with `remote_read_url` it restores alert state.
    Both are base URLs (`VictoriaMetrics.url`): vmalert appends the API path itself."""

    name = "vmalert"
    receiver: AlertReceiver | None = None  # the stand-in Alertmanager run_vmalert started

    def __init__(
        self,
        binary: str,
        directory: Path,
        rules: Sequence[Path],
        datasource_url: str,
        notifier_url: str,
        *,
        evaluation_interval: str = "1s",
        remote_write_url: str | None = None,
        remote_read_url: str | None = None,
        flags: Sequence[str] = (),
    ) -> None:
        own = [
            *(f"-rule={rule}" for rule in rules),
            f"-datasource.url={datasource_url}",
            f"-notifier.url={notifier_url}",
            f"-evaluationInterval={evaluation_interval}",
            "-loggerLevel=WARN",
        ]
        if remote_write_url:
            own += [f"-remoteWrite.url={remote_write_url}", "-remoteWrite.flushInterval=100ms"]
        if remote_read_url:
            own.append(f"-remoteRead.url={remote_read_url}")
        super().__init__(binary, directory, [*own, *flags])

    async def alert_list(self) -> list[dict[str, Any]]:
        """`/api/v1/alerts`: the pending and firing alerts (name, state, labels, ...)."""
        data = await self.api("alerts")
        alerts: list[dict[str, Any]] = data.get("alerts") or []
        return alerts

    async def alerts(self) -> dict[str, str]:
        """Alert name -> state (`pending` or `firing`; `firing` wins among several
        instances of one rule). A rule with no active alert is absent."""
        states: dict[str, str] = {}
        for alert in await self.alert_list():
            name, state = alert["name"], alert["state"]
            if ALERT_STATES.index(state) >= ALERT_STATES.index(states.get(name, "inactive")):
                states[name] = state
        return states

    async def alert_state(self, name: str) -> str:
        """`inactive`, `pending` or `firing`: the state of the rule `name` now."""
        return (await self.alerts()).get(name, "inactive")

    async def rule_groups(self) -> list[dict[str, Any]]:
        """`/api/v1/rules`: the loaded groups with their rules and last evaluation."""
        data = await self.api("rules")
        groups: list[dict[str, Any]] = data["groups"]
        return groups


# --- starting them --------------------------------------------------------------------------


@contextmanager
def _running(make: Callable[[], S]) -> Iterator[S]:
    """Start `make()`'s service, on a new port if the chosen one was taken; stop it after."""
    for attempt in range(1, START_ATTEMPTS + 1):
        service = make()
        try:
            service.start()
        except ServiceStartupError:
            service.stop()
            if attempt == START_ATTEMPTS:
                raise
            continue
        try:
            yield service
        finally:
            service.stop()
        return


@contextmanager
def run_victoria(
    directory: Path, *, dedup_interval: str | None = None, flags: Sequence[str] = ()
) -> Iterator[VictoriaMetrics]:
    """A `victoria-metrics` under `directory` (made if missing); stopped after."""
    binary = require_executable("victoria-metrics", PACKAGE)
    with _running(
        lambda: VictoriaMetrics(binary, directory, dedup_interval=dedup_interval, flags=flags)
    ) as server:
        yield server


@contextmanager
def run_vmagent(
    directory: Path,
    targets: Sequence[str],
    remote_write_url: str,
    *,
    interval: str = "1s",
    members: int = 1,
    member: int = 0,
    replication: int = 1,
    flags: Sequence[str] = (),
) -> Iterator[VMAgent]:
    """A `vmagent` scraping `targets` (`host:port`, job `telemon`) every `interval`;
    `members` > 1 makes it member `member` of a scraping cluster."""
    binary = require_executable("vmagent", PACKAGE)
    config = scrape_config(targets, interval)

    def make() -> VMAgent:
        return VMAgent(
            binary,
            directory,
            config,
            remote_write_url,
            members=members,
            member=member,
            replication=replication,
            flags=flags,
        )

    with _running(make) as agent:
        yield agent


@contextmanager
def run_vmalert(
    directory: Path,
    rules: Sequence[Path],
    datasource_url: str,
    *,
    evaluation_interval: str = "1s",
    remote_write_url: str | None = None,
    remote_read_url: str | None = None,
    notifier_url: str | None = None,
    flags: Sequence[str] = (),
) -> Iterator[VMAlert]:
    """A `vmalert` evaluating `rules` against `datasource_url` (a VictoriaMetrics URL);
    without `notifier_url` it notifies an `AlertReceiver`, found as `vmalert.receiver`."""
    binary = require_executable("vmalert", PACKAGE)
    receiver = AlertReceiver() if notifier_url is None else None
    try:

        def make() -> VMAlert:
            return VMAlert(
                binary,
                directory,
                rules,
                datasource_url,
                notifier_url or _url_of(receiver),
                evaluation_interval=evaluation_interval,
                remote_write_url=remote_write_url,
                remote_read_url=remote_read_url,
                flags=flags,
            )

        with _running(make) as vmalert:
            vmalert.receiver = receiver
            yield vmalert
    finally:
        if receiver is not None:
            receiver.close()


def _url_of(receiver: AlertReceiver | None) -> str:
    assert receiver is not None
    return receiver.url
