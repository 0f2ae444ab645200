"""Shared fixtures. Real services are started once per session on free loopback ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest
from influx import InfluxDB, run_influxd


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
