"""What the tests share, in one place: ports, services, polling, certificates, fake
targets and reading a served body.

Test modules import from here (and from the service modules `influx`, `prom`,
`dockerd`), never from each other; `conftest.py` builds its fixtures on these.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from aiohttp.test_utils import TestClient

from telemon.inputs.base import Target
from telemon.lpparse import ParsedLine, parse_lines
from telemon.metric import FieldValue, Metric
from telemon.simulator.app import ENDPOINTS

__all__ = [
    "T0_NS",
    "WAIT_S",
    "FORMAT_PATHS",
    "Clocks",
    "FakeTarget",
    "StaticTarget",
    "basic_auth",
    "free_port",
    "lines_of",
    "load_docker_sample",
    "log_tail",
    "make_certificate",
    "require_executable",
    "scrape_once",
    "status_of",
    "stop_process",
    "unavailable",
    "wait_for_service",
    "wait_until",
    "wait_until_blocking",
    "without_self_line",
]

T = TypeVar("T")
DATA = Path(__file__).parent / "data"
T0_NS = 1_700_000_000_000_000_000  # a fixed wall-clock start, 2023-11-14
WAIT_S = 10.0  # how long a poll loop waits for a condition before it fails the test
SERVICE_START_S = 30.0
SERVICE_POLL_S = 0.05
FORMAT_PATHS = {fmt: path for path, fmt in ENDPOINTS.items()}
"""The simulator's path of each Pharo format (under `/` for VM 0, `/<n>` for VM n)."""


# --- ports, executables and service processes ---------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when `CI` is set (CI must run every real service)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so it is required", pytrace=False)
    pytest.skip(reason)


def require_executable(name: str, package: str) -> str:
    """The path of `name`; skips the test, or fails it when `CI` is set, if missing."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"`{name}` is not installed (Debian package `{package}`)")
    return path


def wait_for_service(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    name: str,
    log: Path,
    error: type[Exception] = RuntimeError,
) -> None:
    """Poll `ready` until true; raise `error` with the log's tail if the process exits or stalls."""
    deadline = time.monotonic() + SERVICE_START_S
    while time.monotonic() < deadline:
        try:
            process.wait(timeout=SERVICE_POLL_S)  # the pause between polls
        except subprocess.TimeoutExpired:
            pass  # still running: ask it
        else:
            raise error(f"{name} exited with {process.returncode}:\n{log_tail(log)}")
        if ready():
            return
    raise error(f"{name} not ready within {SERVICE_START_S}s:\n{log_tail(log)}")


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a service, killing it if it does not stop within 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a service's log, for failure messages."""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# --- polling: wait for a condition, never for a time ----------------------------------------


async def wait_until(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = WAIT_S,
    every: float = 0.005,
    what: str = "the condition",
    retry_on: tuple[type[Exception], ...] = (AssertionError,),
) -> T:
    """Call `check` (plain or async) until it answers something true, and answer that.

    A `retry_on` exception counts as "not yet"; past `timeout` the test fails
    naming `what` and the last answer or exception.
    """
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            answer = check()
            last = await answer if inspect.isawaitable(answer) else answer
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            _give_up(what, timeout, last)
        await asyncio.sleep(every)


def wait_until_blocking(
    check: Callable[[], T],
    *,
    timeout: float = WAIT_S,
    every: float = 0.05,
    what: str = "the condition",
    retry_on: tuple[type[Exception], ...] = (AssertionError,),
) -> T:
    """`wait_until` for code outside an event loop (subprocesses, containers)."""
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            last = check()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            _give_up(what, timeout, last)
        time.sleep(every)


def _give_up(what: str, timeout: float, last: object) -> NoReturn:
    message = f"{what}: not reached within {timeout:g}s (last: {last!r})"
    if isinstance(last, BaseException):
        raise AssertionError(message) from last
    raise AssertionError(message)


# --- certificates and recorded data -------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost / 127.0.0.1, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subprocess.run(
        [*command, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def load_docker_sample(name: str) -> Any:
    """A recorded Docker Engine answer from tests/data/docker."""
    return json.loads((DATA / "docker" / name).read_text(encoding="utf-8"))


# --- time that moves only when told --------------------------------------------------------


class Clocks:
    """A monotonic clock (s) and a wall clock (ns) that move only when told: pass
    `clocks.monotonic` or `clocks.wall_ns` where the code takes a clock."""

    def __init__(self, monotonic_s: float = 100.0, wall_ns: int = T0_NS) -> None:
        self.mono = monotonic_s
        self.wall = wall_ns

    def monotonic(self) -> float:
        """Seconds, as `time.monotonic` counts them."""
        return self.mono

    def wall_ns(self) -> int:
        """Nanoseconds since the epoch, as `time.time_ns` counts them."""
        return self.wall

    def advance(self, seconds: float) -> None:
        """Move both clocks on."""
        self.mono += seconds
        self.wall += int(seconds * 1e9)


# --- targets whose behaviour the test chooses ---------------------------------------------


class FakeTarget(Target):
    """A polled target whose outcome the test chooses: lines, an exception, or a wait.

    Each collection gives `count` lines `<measurement>,n=<i> value=<value>i,calls=<calls>i`
    (plus `tags`); `gate` holds a collection until set, `hold` makes it that slow.
    """

    def __init__(self, name: str = "fake", measurement: str = "fake", count: int = 1) -> None:
        super().__init__(name)
        self.measurement = measurement
        self.count = count
        self.tags: dict[str, str] = {}
        self.value = 1
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.hold = 0.0
        self.entered = asyncio.Event()  # set when a collection starts
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.closed = False

    async def collect(self, now_ns: int) -> list[Metric]:
        """Counts the call, then waits, raises or answers as configured."""
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.hold:
                await asyncio.sleep(self.hold)  # a slow target, not a wait for a condition
            if self.error is not None:
                raise self.error
            fields: dict[str, FieldValue] = {"value": self.value, "calls": self.calls}
            return [
                Metric(self.measurement, {**self.tags, "n": str(i)}, dict(fields), now_ns)
                for i in range(self.count)
            ]
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        """Remembers that it was released."""
        self.closed = True


class StaticTarget(Target):
    """A target giving copies of the same metrics, stamped now, at every collection."""

    def __init__(self, *metrics: Metric, name: str = "static", lazy: bool = False) -> None:
        super().__init__(name)
        self.metrics = metrics
        self.lazy = lazy

    async def collect(self, now_ns: int) -> list[Metric]:
        """Copies of the metrics, stamped now."""
        return [Metric(m.measurement, dict(m.tags), dict(m.fields), now_ns) for m in self.metrics]


# --- a served body ------------------------------------------------------------------------


def lines_of(body: bytes | str, measurement: str) -> list[ParsedLine]:
    """The body's lines of one measurement, parsed."""
    text = body.decode() if isinstance(body, bytes) else body
    return [line for line in parse_lines(text) if line.measurement == measurement]


def status_of(
    body: bytes | str, measurement: str = "telemon_input", **tags: str
) -> dict[str, FieldValue]:
    """The fields of the one `measurement` line carrying `tags` (a status line by default)."""
    found = [
        line.fields
        for line in lines_of(body, measurement)
        if all(line.tags.get(k) == v for k, v in tags.items())
    ]
    assert len(found) == 1, f"{measurement} {tags}: {found}\n{body!r}"
    return found[0]


def without_self_line(body: bytes) -> list[bytes]:
    """The body's lines except the `telemon` line (its scrape counter changes every time)."""
    return [line for line in body.splitlines() if not line.startswith(b"telemon ")]


def basic_auth(user: str, password: str) -> str:
    """A Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def scrape_once(aiohttp_client: Any, inputs: dict[str, Any], **extra: Any) -> str:
    """Build telemon with `inputs`, collect every target once, answer one /metrics body."""
    # Imported here: conftest imports this module, and the services' fixtures need no agent.
    from telemon.agent import Agent
    from telemon.config import parse_config
    from telemon.server import create_app

    config = parse_config({"inputs": inputs, **extra})
    agent = Agent(config)
    await agent.collector.collect_all()
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config, agent=agent))
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()
