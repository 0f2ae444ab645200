"""Shared fixtures. Real services are started once per session on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from dockerd import DockerEngine, run_dockerd, unmount_under
from influx import InfluxDB, run_influxd
from prom import Prometheus, run_prometheus


def require_executable(name: str, package: str) -> str:
    """The path of `name`; skips the test, or fails it when `CI` is set, if missing."""
    path = shutil.which(name)
    if path is None:
        _unavailable(f"`{name}` is not installed (Debian package `{package}`)")
    return path


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the real service is required", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A real InfluxDB 1.x (`influxd`) with a throwaway data dir, for the whole session."""
    binary = require_executable("influxd", "influxdb")
    with run_influxd(binary, tmp_path_factory.mktemp("influxd")) as client:
        yield client


# --- Prometheus (appended: move these imports to the top when convenient) ---------------


@pytest.fixture
def prometheus_for(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Prometheus]]:
    """A factory starting a real Prometheus (`prometheus`) that scrapes a target every 1s.

    `prometheus_for("127.0.0.1:PORT")` starts one; each stops after the test.
    """
    binary = require_executable("prometheus", "prometheus")
    with contextlib.ExitStack() as stack:

        def start(target: str) -> Prometheus:
            directory = tmp_path_factory.mktemp("prometheus")
            return stack.enter_context(run_prometheus(binary, directory, target))

        yield start


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A real Docker Engine: the one on /var/run/docker.sock, or a private `dockerd`.

    Containers the tests start carry a per-run label and are removed at the end.
    """
    dockerd = require_executable("dockerd", "docker.io")
    docker = require_executable("docker", "docker.io")
    require_executable("busybox", "busybox-static")
    # A short directory: dockerd's and containerd's socket paths must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="tmd-", dir="/tmp"))
    try:
        with run_dockerd(dockerd, docker, directory) as engine:
            engine.ensure_busybox()
            yield engine
    finally:
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
