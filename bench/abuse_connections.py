"""Idle connections past the descriptor limit (issue 15, item 4): does /healthz still answer?

    .venv/bin/python bench/abuse_connections.py [--nofile 1024] [--connections 1100]
        [--probe-seconds 20] [--close-wait 30]

`telemon serve` (inputs process and python; `[http] max_connections` when
given, else its default) runs with its open-file
limit lowered to `--nofile` (soft and hard, set in the child before exec, as
`ulimit -n 1024` does). The script opens `--connections` TCP connections that
send nothing, then for `--probe-seconds` GETs /healthz and /metrics four
times a second, each on a fresh connection with a 2 s timeout. Afterwards it
waits (at most `--close-wait` s) until telemon has closed the idle
connections, and counts the log: lines, bytes and accept() errors.

Prints held when every /healthz probe was answered, the log has at most one
accept() error line per 10 s, and the idle connections were closed within
the wait; broke otherwise, with the figures.

Set PYTHONPATH to run another checkout's telemon (for before/after figures).
"""

from __future__ import annotations

import argparse
import errno
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

ACCEPT_ERROR = "socket.accept() out of system resource"
PROBE_EVERY_S = 0.25
BATCH = 32


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections that send nothing, opened 32 at a time.

    After each 32 the script waits (at most 0.2 s) for telemon to accept
    them, so that they reach telemon instead of overflowing the kernel's
    accept queue (as clients that retry their handshake do).
    """
    sockets = []
    for start in range(0, count, BATCH):
        for _ in range(min(BATCH, count - start)):
            sock = socket.socket()
            sock.setblocking(False)
            if sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS):
                sockets.append(sock)
            else:
                sock.close()
        deadline = time.monotonic() + 0.2
        while accept_queue(port) >= BATCH // 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    return sockets


def _tcp_entries() -> list[list[str]]:
    entries = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        entries += [line.split() for line in lines]
    return entries


def _local_port(entry: list[str]) -> int:
    return int(entry[1].rsplit(":", 1)[1], 16)


def accept_queue(port: int) -> int:
    """Connections waiting in the accept queue of the socket listening on `port` (Linux)."""
    for entry in _tcp_entries():
        if entry[3] == "0A" and _local_port(entry) == port:  # LISTEN: rx_queue is the queue
            return int(entry[4].split(":")[1], 16)
    return 0


def server_connections(port: int) -> int:
    """Connections established to `port`, accepted or in the accept queue (Linux).

    Counted on the server's side: past the accept queue, the kernel may answer
    a handshake it then forgets (SYN cookies), so a client may think itself
    connected to nothing.
    """
    return sum(e[3] == "01" and _local_port(e) == port for e in _tcp_entries())


def probe(url: str) -> bool:
    return _common.http_get(url, timeout=2.0)[0] == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--probe-seconds", type=float, default=20.0)
    parser.add_argument("--close-wait", type=float, default=30.0)
    parser.add_argument(
        "--max-connections", type=int, help="[http] max_connections (above --nofile: EMFILE)"
    )
    args = parser.parse_args()
    _common.print_machine_info()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 200), hard))
    work = Path(tempfile.mkdtemp(prefix="telemon-conn-"))
    port = _common.free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "telemon.log"
    log = log_path.open("w", encoding="utf-8")

    def lower_limit() -> None:  # in the child, before exec: as `ulimit -n`
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    config = []
    if args.max_connections:
        (work / "telemon.toml").write_text(
            f"[http]\nmax_connections = {args.max_connections}\n"
            "[[inputs.process]]\n[[inputs.python]]\n",
            encoding="utf-8",
        )
        config = ["-c", "telemon.toml"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemon", "serve", *config, "--listen", f"127.0.0.1:{port}"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lower_limit,
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        _common.wait_until(lambda: probe(f"{base}/healthz"), what="/healthz", proc=proc)
        opened_at = time.monotonic()
        idle = open_idle(port, args.connections)
        results: dict[str, list[bool]] = {"/healthz": [], "/metrics": []}
        deadline = time.monotonic() + args.probe_seconds
        closed_after = None
        most = 0
        while time.monotonic() < deadline and proc.poll() is None:
            for path, answers in results.items():
                answers.append(probe(base + path))
            held_now = server_connections(port)
            most = max(most, held_now)
            if held_now == 0 and closed_after is None:
                closed_after = time.monotonic() - opened_at
            time.sleep(PROBE_EVERY_S)
        open_after_probes = server_connections(port)
        close_deadline = time.monotonic() + args.close_wait
        while closed_after is None and time.monotonic() < close_deadline:
            if server_connections(port) == 0:
                closed_after = time.monotonic() - opened_at
            time.sleep(0.5)
        alive = proc.poll() is None
        log_seconds = time.monotonic() - opened_at
    finally:
        for sock in idle:
            sock.close()
        _common.stop_process(proc)  # type: ignore[arg-type]
        log.close()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    accept_lines = sum(ACCEPT_ERROR in line for line in text.splitlines())
    tracebacks = text.count("Traceback")
    allowed_accept_lines = int(log_seconds // 10) + 1
    health_ok = sum(results["/healthz"])
    metrics_ok = sum(results["/metrics"])
    held = (
        alive
        and health_ok == len(results["/healthz"])
        and accept_lines <= allowed_accept_lines
        and closed_after is not None
    )
    print(f"open-file limit {args.nofile}; {len(idle)} idle connections opened")
    print(f"/healthz answered {health_ok} of {len(results['/healthz'])} probes; "
          f"/metrics {metrics_ok} of {len(results['/metrics'])}")  # fmt: skip
    print(f"connections established to telemon: at most {most}, {open_after_probes} after "
          f"{args.probe_seconds:g} s; "
          + (f"all closed {closed_after:.1f} s after they were opened" if closed_after is not None
             else f"not all closed within {args.probe_seconds + args.close_wait:g} s"))  # fmt: skip
    print(f"log over {log_seconds:.0f} s: {len(text.splitlines())} lines, {len(text)} bytes, "
          f"{accept_lines} accept() error lines (at most {allowed_accept_lines} allowed), "
          f"{tracebacks} tracebacks")  # fmt: skip
    cap = [line for line in text.splitlines() if "connection cap" in line]
    if cap:
        print(f"cap lines: {len(cap)}; first: {cap[0][:200]}")
    print(f"telemon alive: {alive}")
    print("held" if held else "broke")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
