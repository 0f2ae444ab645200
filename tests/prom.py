"""A real Prometheus server for the tests: start/stop `prometheus` scraping one target, and a
small async client for its HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from helpers import free_port, stop_process, wait_for_service

__all__ = ["Prometheus", "PrometheusStartupError", "run_prometheus"]

SCRAPE_INTERVAL = "1s"


class PrometheusStartupError(RuntimeError):
    """prometheus exited or never became ready."""


@dataclass(frozen=True, slots=True)
class Prometheus:
    """Client for one running Prometheus (HTTP API v1), usable inside the event loop."""

    url: str
    target: str

    async def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful `GET /api/v1/<path>`."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/{path}", params=params) as resp,
        ):
            answer = await resp.json()
        if answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: Prometheus answered {answer}")
        return answer["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now: [{"metric": {...}, "value": [ts, "text"]}]."""
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def target_health(self) -> dict[str, Any]:
        """The active target's entry in /api/v1/targets (health, lastError, ...)."""
        data = await self.api("targets", state="active")
        targets = [t for t in data["activeTargets"] if self.target in t["scrapeUrl"]]
        assert len(targets) == 1, f"target {self.target} not (yet) discovered: {targets}"
        return dict(targets[0])


def write_config(
    directory: Path,
    target: str,
    metrics_path: str,
    rule_files: Sequence[Path] = (),
    job: dict[str, Any] | None = None,
) -> Path:
    """A prometheus.yml scraping `target` every second (JSON is valid YAML), with `job`'s
    scrape settings if given, evaluating `rule_files` every second."""
    scrape = dict(job) if job else {"job_name": "telemon", "metrics_path": metrics_path}
    scrape["static_configs"] = [{"targets": [target]}]
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [scrape],
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@contextmanager
def run_prometheus(
    binary: str,
    directory: Path,
    target: str,
    metrics_path: str = "/metrics",
    attempts: int = 3,
    *,
    rule_files: Sequence[Path] = (),
    job: dict[str, Any] | None = None,
) -> Iterator[Prometheus]:
    """Start prometheus on a free port under `directory` scraping `target` (with `job`'s
    scrape settings if given) and evaluating `rule_files`; stop it after."""
    for attempt in range(1, attempts + 1):
        workdir = directory / f"run{attempt}"
        workdir.mkdir()
        port = free_port()
        config = write_config(workdir, target, metrics_path, rule_files, job)
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log:
            process = _spawn(binary, config, workdir / "data", port, log)
            try:
                try:
                    _wait_ready(process, f"http://127.0.0.1:{port}", log_path)
                except PrometheusStartupError:
                    if attempt == attempts:
                        raise
                    continue  # most likely the port was taken in between: a new one
                yield Prometheus(f"http://127.0.0.1:{port}", target)
                return
            finally:
                stop_process(process)


def _spawn(binary: str, config: Path, data: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll /-/ready until 200; fail early if the process exits."""
    wait_for_service(process, lambda: _ready(url), "prometheus", log, PrometheusStartupError)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):  # refused or 503 while it starts
        return False
