"""Shared fixtures. Real services are started once per session on free loopback ports.

The plain helpers the tests share (ports, polling, fake targets, certificates) are in
`helpers.py`; test modules import them from there, never from each other.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from dockerd import DockerEngine, run_dockerd, unmount_under
from helpers import FORMAT_PATHS, require_executable
from influx import InfluxDB, run_influxd
from prom import Prometheus, run_prometheus

from telemon.inputs.pharo_formats import FORMATS
from telemon.simulator.app import start_simulator


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A real InfluxDB 1.x (`influxd`) with a throwaway data dir, for the whole session."""
    binary = require_executable("influxd", "influxdb")
    with run_influxd(binary, tmp_path_factory.mktemp("influxd")) as client:
        yield client


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


# The real Smalltalk VM (issue 14), imported here so that this fixture is appended whole.
import squeakvm  # noqa: E402, I001
from helpers import unavailable  # noqa: E402


@pytest.fixture(scope="session")
def squeak_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[squeakvm.SqueakVM]:
    """A real Smalltalk VM: Debian's `squeakvm` headless on a patched copy of the Squeak
    image in `scratch`, serving its live VM figures on loopback (see squeakvm.py)."""
    vm = squeakvm.find_vm()
    if vm is None:
        unavailable(f"no {squeakvm.VM_GLOB} (Debian package `squeak-vm`)")
    if not squeakvm.IMAGE.is_file():
        unavailable(f"no {squeakvm.IMAGE} (Debian package `scratch`)")
    with squeakvm.run_squeak(vm, tmp_path_factory.mktemp("squeak")) as running:
        yield running


@pytest.fixture
async def simulators() -> AsyncIterator[list[str]]:
    """A Spur and a classic simulated VM: each format's URL of each."""
    runners = []
    urls = []
    for vm in ("spur", "classic"):
        runner, port = await start_simulator("127.0.0.1", 0, vms=1, seed=5, vm=vm)
        runners.append(runner)
        urls += [f"http://127.0.0.1:{port}{FORMAT_PATHS[f]}" for f in FORMATS]
    yield urls
    for runner in runners:
        await runner.cleanup()
