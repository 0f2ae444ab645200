"""Helpers shared by the benchmark scripts (not part of telemon)."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from importlib import metadata

__all__ = [
    "cpu_seconds",
    "free_port",
    "http_get",
    "machine_info",
    "markdown_table",
    "median",
    "print_machine_info",
    "rss_kib",
    "stop_process",
    "wait_until",
]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of one GET; status 0 when the server does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_until(
    check: Callable[[], bool],
    timeout: float = 30.0,
    what: str = "condition",
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `check` every 50 ms; raise when it stays false or `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {what}")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process we started, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A `kB` figure of /proc/PID/status (VmRSS, VmHWM, RssAnon...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def _git_revision() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "--", "telemon"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (telemon/ modified)" if dirty else head


def machine_info(extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    info = [
        ("telemon revision", _git_revision()),
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("cpu", cpu_model()),
        ("cores", f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"),
        ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]
    for dist in ("telemon", "aiohttp", *extra):
        info.append((dist, _version(dist)))
    return info


def print_machine_info(extra: Sequence[str] = (), wrk: bool = False) -> None:
    info = machine_info(extra)
    if wrk:
        info.append(("wrk", _wrk_version()))
    print("Machine:")
    for key, value in info:
        print(f"- {key}: {value}")
    print()
    sys.stdout.flush()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured table; numbers right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells[1:]) and len(cells) > 1
        for i in range(len(header))
    ]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.rjust(widths[i]) if numeric[i] else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if numeric[i] else "-" * (w + 2) for i, w in enumerate(widths)
    ) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _looks_numeric(text: str) -> bool:
    text = text.replace(",", "").replace("x", "").replace("%", "").replace("+", "").strip()
    for suffix in (" MB", " MiB", " KiB", " kB", " B", "/s"):
        text = text.removesuffix(suffix)
    try:
        float(text)
    except ValueError:
        return False
    return True
