"""`telemon serve` under abuse (issue 15, items 1, 4 and 9), in real subprocesses.

A burst of SIGHUPs, idle connections past the descriptor limit, SIGTERM while
an output holds unwritten lines. No timing is asserted: each test waits for
an event (a log line, an answer, a closed connection) with a poll loop. The
figures (how long, how many) are bench/abuse_signals.py's and
bench/abuse_connections.py's.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import pytest
from helpers import free_port, wait_until_blocking

from telemon.outputs.base import OutputRunner, RunOptions
from telemon.outputs.influxdb import InfluxDBSender
from telemon.outputs.spool import Spool
from telemon.server import RepeatedErrorFilter, default_max_connections

TELEMON = [sys.executable, "-m", "telemon"]
START_S = 30.0
STOP_S = 30.0
ACCEPT_ERROR = "socket.accept() out of system resource"


class Serve:
    """A `telemon serve` subprocess logging to a file; killed at the end if still running."""

    def __init__(self, cwd: Path, args: list[str], nofile: int | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "telemon.log"
        env = {k: v for k, v in os.environ.items() if k not in ("TELEMON_CONFIG", "PYTHONPATH")}

        def lower_limit() -> None:  # in the child, before exec: as `ulimit -n`
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log.open("w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [*TELEMON, "serve", *args, "--listen", f"127.0.0.1:{self.port}"],
                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=lower_limit,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        self.assert_running()
        with urllib.request.urlopen(self.base + path, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()

    def assert_running(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"telemon exited with {self.proc.returncode}:\n{self.text()[-3000:]}")

    def wait_healthy(self) -> None:
        wait_until_blocking(lambda: self.get("/healthz", 1.0)[0] == 200, timeout=START_S,
                            what="/healthz answering", retry_on=(OSError,))  # fmt: skip

    def wait_log(self, pattern: str) -> re.Match[str]:
        def found() -> re.Match[str]:
            self.assert_running()
            match = re.search(pattern, self.text())
            assert match, "not yet"
            return match

        return wait_until_blocking(found, timeout=START_S, what=f"a log line {pattern!r}")

    def terminate(self) -> str:
        """SIGTERM, wait for the exit (status 0), the log."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=STOP_S) == 0, self.text()
        return self.text()


class StartServe(Protocol):
    def __call__(self, *args: str, nofile: int | None = None) -> Serve: ...


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServe]:
    started: list[Serve] = []

    def start(*args: str, nofile: int | None = None) -> Serve:
        server = Serve(tmp_path, list(args), nofile)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=STOP_S)


# --- item 1: a burst of SIGHUPs ---------------------------------------------------------


def _write_generation(path: Path, generation: int) -> None:
    """The whole file at once, as editors and config managers write it."""
    temp = path.with_suffix(".tmp")
    temp.write_text(f'[global_tags]\ngen = "{generation}"\n[[inputs.python]]\n', encoding="utf-8")
    os.replace(temp, path)


def _generation(body: bytes) -> set[bytes]:
    return set(re.findall(rb",gen=(\d+)[ ,]", body))


def test_a_burst_of_sighups_leaves_one_telemon_serving_the_newest_file(
    serve: StartServe, tmp_path: Path
) -> None:
    path = tmp_path / "telemon.toml"
    _write_generation(path, 0)
    server = serve("-c", str(path))
    server.wait_healthy()
    _write_generation(path, 1)
    server.proc.send_signal(signal.SIGHUP)
    # The restart is under way: every SIGHUP from now on lands in some part of it.
    server.wait_log("SIGHUP: configuration valid, restarting")
    for generation in range(2, 12):
        _write_generation(path, generation)
        server.proc.send_signal(signal.SIGHUP)
    newest = b"11"

    def serving_the_newest() -> bool:
        return _generation(server.get("/metrics")[1]) == {newest}

    wait_until_blocking(serving_the_newest, timeout=START_S, what="gen=11 on every line",
                        retry_on=(OSError,))  # fmt: skip
    server.assert_running()  # the same process (PID) as started: it was never replaced
    assert server.get("/healthz")[0] == 200
    log = server.terminate()
    assert "Traceback" not in log
    assert log.count(" serving http://") >= 2  # restarted, in the same process


def test_sighup_keeps_the_listening_socket_and_its_port(serve: StartServe, tmp_path: Path) -> None:
    """Clients connecting during a restart wait in the socket's queue instead of being refused."""
    path = tmp_path / "telemon.toml"
    _write_generation(path, 0)
    server = serve("-c", str(path))
    server.wait_healthy()
    _write_generation(path, 1)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_log("SIGHUP: configuration valid, restarting")
    # Connecting now, before the restarted process listens again, is not refused.
    with socket.create_connection(("127.0.0.1", server.port), timeout=START_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(START_S)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    server.terminate()


# --- item 4: idle connections past the descriptor limit --------------------------------


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that send nothing, each waited for (so none overflows the queue)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(START_S)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def test_idle_connections_past_the_cap_leave_healthz_answering(serve: StartServe) -> None:
    """RLIMIT_NOFILE 512: the default cap is 256; 400 idle connections must not starve /healthz."""
    server = serve(nofile=512)
    server.wait_healthy()
    assert "(at most 256 connections)" in server.text()
    idle = _open_idle(server.port, 400)
    try:
        for _ in range(5):  # fresh connections, each past the cap
            assert server.get("/healthz")[0] == 200
        assert server.get("/metrics")[0] == 200
    finally:
        for sock in idle:
            sock.close()
    log = server.terminate()
    assert "Traceback" not in log
    assert log.count(ACCEPT_ERROR) <= 1
    assert log.count("connection cap reached (http.max_connections = 256)") == 1  # per 10 s


def _read_by_server(port: int, client: socket.socket) -> bool:
    """Whether telemon's end of `client`'s connection has read all it was sent (Linux)."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if (local_port, remote_port) == (port, client_port):
            return int(fields[4].split(":")[1], 16) == 0  # nothing left in its receive queue
    return False


def test_past_the_cap_with_every_connection_in_a_request_answers_503(
    serve: StartServe, tmp_path: Path
) -> None:
    """Busy connections are never closed to make room: the newcomer gets 503."""
    (tmp_path / "slowfield.py").write_text(
        "import asyncio\n\nasync def slow():\n    await asyncio.sleep(60)\n    return 1\n",
        encoding="utf-8",
    )
    (tmp_path / "telemon.toml").write_text(
        '[agent]\nfield_timeout = "60s"\n[http]\nmax_connections = 2\n'
        '[[inputs.fields]]\nmeasurement = "app"\n[inputs.fields.fields]\nslow = "slowfield:slow"\n',
        encoding="utf-8",
    )
    server = serve("-c", "telemon.toml")
    server.wait_healthy()
    busy = []
    try:
        for _ in range(2):  # two scrapes waiting for the slow field: both in a request
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=START_S)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append(sock)
        # Both requests read by telemon (else a newcomer may close one as still idle).
        for sock in busy:
            wait_until_blocking(partial(_read_by_server, server.port, sock), timeout=START_S,
                                what="the scrape's request read")  # fmt: skip

        def refused() -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=START_S) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = sock.recv(1000)
            assert answer.startswith(b"HTTP/1.1 503"), answer  # until both scrapes are in
            return answer

        answer = wait_until_blocking(refused, timeout=START_S, what="a 503 past the cap")
        assert answer.endswith(b"too many connections\n")
    finally:
        for sock in busy:
            sock.close()
    log = server.terminate()
    assert "every connection is in a request; answering 503" in log


def test_a_cap_above_the_descriptor_limit_logs_accept_errors_once(
    serve: StartServe, tmp_path: Path
) -> None:
    """accept() failing for every waiting connection is one log line per 10 s, no traceback."""
    (tmp_path / "telemon.toml").write_text(
        "[http]\nmax_connections = 10000\n[[inputs.python]]\n", encoding="utf-8"
    )
    server = serve("-c", "telemon.toml", nofile=64)
    server.wait_healthy()
    assert "is not below the open-file limit (64)" in server.text()
    idle = []
    try:
        for _ in range(100):  # past the limit: the kernel queues a few, then drops the rest
            sock = socket.socket()
            sock.setblocking(False)
            assert sock.connect_ex(("127.0.0.1", server.port)) in (0, errno.EINPROGRESS)
            idle.append(sock)
        server.wait_log(re.escape(ACCEPT_ERROR))
    finally:
        for sock in idle:
            sock.close()
    log = server.terminate()
    assert "Traceback" not in log
    assert log.count(ACCEPT_ERROR) <= 2  # the run may cross one 10 s boundary


def test_idle_timeout_closes_connections_that_send_nothing(
    serve: StartServe, tmp_path: Path
) -> None:
    (tmp_path / "telemon.toml").write_text(
        '[http]\nidle_timeout = "1s"\n[[inputs.python]]\n', encoding="utf-8"
    )
    server = serve("-c", "telemon.toml")
    server.wait_healthy()
    with socket.create_connection(("127.0.0.1", server.port), timeout=START_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert sock.recv(100) == b""  # closed by telemon (the timeout is the test's guard)
    server.terminate()


# --- item 9: lines held at SIGTERM ------------------------------------------------------


def _output_config(tmp_path: Path, spool_dir: Path | None) -> Path:
    dead = free_port()  # nothing listens there: every write is refused
    spool = f'  spool_dir = "{spool_dir}"\n' if spool_dir else ""
    path = tmp_path / "telemon.toml"
    path.write_text(
        '[agent]\ninterval = "1s"\n[[inputs.python]]\n'
        f'[[outputs.influxdb]]\n  urls = ["http://127.0.0.1:{dead}"]\n'
        f'  flush_interval = "1h"\n{spool}',
        encoding="utf-8",
    )
    return path


def _wait_for_pending_lines(server: Serve) -> None:
    """Until the output holds lines collected since its first (failed) flush."""
    server.wait_healthy()

    def pending() -> bool:
        body = server.get("/metrics")[1]
        match = re.search(rb"^telemon_output,.* .*pending_lines=(\d+)i", body, re.MULTILINE)
        return match is not None and int(match[1]) > 0

    wait_until_blocking(pending, timeout=START_S, what="lines pending in the output")


def test_sigterm_logs_the_count_of_lines_lost_without_a_spool_dir(
    serve: StartServe, tmp_path: Path
) -> None:
    server = serve("-c", str(_output_config(tmp_path, None)))
    _wait_for_pending_lines(server)
    log = server.terminate()
    match = re.search(r"stopping with (\d+) lines unwritten .*: (\d+) lines lost", log)
    assert match, log
    assert int(match[2]) >= int(match[1]) > 0
    assert "telemon stopping (SIGTERM)" in log
    assert log.rstrip().endswith("telemon stopped"), log


def test_sigterm_spools_the_lines_held_with_a_spool_dir(serve: StartServe, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = serve("-c", str(_output_config(tmp_path, spool)))
    _wait_for_pending_lines(server)
    log = server.terminate()
    match = re.search(r"stopping with (\d+) lines unwritten: 0 written, (\d+) spooled in", log)
    assert match, log
    spooled = sum(len(file.read_bytes().splitlines()) for file in spool.rglob("*.lp"))
    assert spooled == int(match[2]) > 0
    assert "lost" not in log


# --- issue 16: what serve logs ----------------------------------------------------------


def test_port_0_logs_the_port_bound_and_sigterm_logs_stopping_and_stopped(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TELEMON_CONFIG", "PYTHONPATH")}
    log_path = tmp_path / "telemon.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [*TELEMON, "serve", "--listen", "127.0.0.1:0"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:

        def bound_port() -> int:
            assert proc.poll() is None, log_path.read_text(encoding="utf-8")
            match = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", log_path.read_text())
            return int(match[1]) if match else 0

        port = wait_until_blocking(bound_port, timeout=START_S, what="the serving line")
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:  # noqa: S310
            assert answer.read() == b"ok\n"
        proc.send_signal(signal.SIGHUP)  # the restarted process keeps the socket, so the port

        def ports_served() -> list[str]:
            assert proc.poll() is None, log_path.read_text(encoding="utf-8")
            found = re.findall(r"serving http://127\.0\.0\.1:(\d+)/", log_path.read_text())
            return found if len(found) == 2 else []

        first, second = wait_until_blocking(ports_served, timeout=START_S, what="two starts")
        assert first == second == str(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log_path.read_text(encoding="utf-8").splitlines()
    assert lines[-2].endswith("telemon stopping (SIGTERM)")
    assert lines[-1].endswith("telemon stopped")


# --- the pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "cap"), [(1024, 768), (512, 256), (128, 16), (65536, 49152), (1 << 40, 786432)]
)
def test_default_max_connections_leaves_descriptors_free(limit: int, cap: int) -> None:
    assert default_max_connections(limit) == cap


class _Loop:
    """What RepeatedErrorFilter calls on the loop: the default handler, recorded."""

    def __init__(self) -> None:
        self.passed: list[dict[str, Any]] = []

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.passed.append(context)


def test_repeated_accept_errors_are_one_line_per_period_and_others_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    errors = RepeatedErrorFilter(every_s=10.0, clock=lambda: now[0])
    loop = _Loop()
    failed = {"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")}
    other = {"message": "Task exception was never retrieved", "exception": ValueError("x")}
    with caplog.at_level(logging.ERROR, logger="telemon"):
        for _ in range(1000):
            errors(loop, failed)  # type: ignore[arg-type]
        errors(loop, other)  # type: ignore[arg-type]
        now[0] += 10.0
        errors(loop, failed)  # type: ignore[arg-type]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith(ACCEPT_ERROR) and "more" not in lines[0]
    assert lines[1].endswith("(999 more in the last 10 s)")
    assert loop.passed == [other]


class _PushSource:
    """A LineSource whose push holds one sink line (a LineSource is what the agent is)."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[bytes], None]] = []

    async def push_lines(self) -> bytes:
        return b"pushed,host=a value=1i 1700000000000000000\n"


async def test_the_last_push_is_spooled_at_stop(tmp_path: Path) -> None:
    """Lines pushed since the last flush (the sink's) are written or spooled at stop too."""
    source = _PushSource()
    sender = InfluxDBSender(f"http://127.0.0.1:{free_port()}", "db", timeout=5.0)  # refused
    options = RunOptions(flush_interval=3600.0, batch_size=1000, max_retry_interval=60.0,
                         timeout=5.0)  # fmt: skip
    runner = OutputRunner(source, sender, Spool(tmp_path, 1 << 20), options)
    await runner.take_last_push()
    await runner.stop()
    spooled = b"".join(file.read_bytes() for file in sorted(tmp_path.glob("*.lp")))
    assert spooled == b"pushed,host=a value=1i 1700000000000000000\n"
