"""Shared fixtures. Real services are started once per session on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
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
