"""A real Docker Engine for the tests: start `dockerd` on a private socket, make a
tiny `local/busybox` image without a registry, run labelled containers and
clean them up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import log_tail, stop_process, wait_for_service

__all__ = [
    "BUSYBOX_IMAGE",
    "DockerEngine",
    "EngineError",
    "run_dockerd",
    "run_tls_dockerd",
    "unmount_under",
]

BUSYBOX_IMAGE = "local/busybox:latest"
TEST_LABEL = "telemon.test"
_BUSYBOX_APPLETS = ("sh", "sleep", "yes", "dd", "head", "cat", "nc", "httpd", "wget", "true")


class EngineError(RuntimeError):
    """dockerd did not start, or a docker command failed."""


@dataclass
class DockerEngine:
    """One running engine, driven through the `docker` CLI on its socket."""

    socket: Path
    docker: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def endpoint(self) -> str:
        """The endpoint as telemon's config takes it."""
        return f"unix://{self.socket}"

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run `docker ARGS` against this engine; stdout."""
        done = subprocess.run(
            [self.docker, "-H", self.endpoint, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise EngineError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def answers(self) -> bool:
        """True once the daemon serves its API."""
        try:
            self.cli("version", "--format", "{{.Server.Version}}", timeout=5)
        except (EngineError, subprocess.TimeoutExpired):
            return False
        return True

    def ensure_busybox(self) -> str:
        """Import `local/busybox` from Debian's static busybox, once per engine."""
        if self.cli("images", "-q", BUSYBOX_IMAGE).strip():
            return BUSYBOX_IMAGE
        busybox = shutil.which("busybox")
        if busybox is None:
            raise EngineError("`busybox` is not installed (Debian package `busybox-static`)")
        with tempfile.TemporaryDirectory() as root:
            bin_dir = Path(root, "bin")
            bin_dir.mkdir()
            shutil.copy(busybox, bin_dir / "busybox")
            for applet in _BUSYBOX_APPLETS:
                (bin_dir / applet).symlink_to("busybox")
            archive = subprocess.run(
                ["tar", "-C", root, "-c", "."], capture_output=True, check=True
            ).stdout
            imported = subprocess.run(
                [self.docker, "-H", self.endpoint, "import", "-", BUSYBOX_IMAGE],
                input=archive,
                capture_output=True,
                check=False,
            )
            if imported.returncode != 0:
                raise EngineError(f"docker import: {imported.stderr.decode().strip()}")
        return BUSYBOX_IMAGE

    def run(
        self,
        command: str,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> str:
        """Start a busybox container running `sh -c COMMAND`; its full id."""
        args = ["run", "-d", "--label", f"{TEST_LABEL}={self.run_id}"]
        if name is not None:
            args += ["--name", name]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        args += [*options, self.ensure_busybox(), "sh", "-c", command]
        return self.cli(*args).strip()

    def remove(self, *containers: str) -> None:
        """Force-remove containers (running or not)."""
        if containers:
            self.cli("rm", "-f", *containers, check=False)

    def remove_test_containers(self) -> None:
        """Remove every container this test run started."""
        ids = self.cli("ps", "-aq", "--filter", f"label={TEST_LABEL}={self.run_id}").split()
        self.remove(*ids)

    def ps(self, *, all_states: bool = False) -> list[dict[str, Any]]:
        """`docker ps` as JSON objects."""
        args = ["ps", "--no-trunc", "--format", "{{json .}}"]
        if all_states:
            args.append("-a")
        return [json.loads(line) for line in self.cli(*args).splitlines() if line.strip()]

    def stats(self) -> dict[str, dict[str, Any]]:
        """`docker stats --no-stream` by container name (CPUPerc, MemUsage, ...)."""
        out = self.cli("stats", "--no-stream", "--no-trunc", "--format", "{{json .}}")
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {row["Name"]: row for row in rows}


@contextmanager
def run_dockerd(dockerd: str, docker: str, directory: Path) -> Iterator[DockerEngine]:
    """Use the engine already on /var/run/docker.sock, or start a private one under `directory`."""
    shared = DockerEngine(Path("/var/run/docker.sock"), docker)
    if shared.socket.exists() and shared.answers():
        try:
            yield shared
        finally:
            shared.remove_test_containers()
        return
    engine = DockerEngine(directory / "docker.sock", docker)
    log = directory / "dockerd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                dockerd,
                f"--host={engine.endpoint}",
                f"--data-root={directory / 'data'}",
                f"--exec-root={directory / 'exec'}",
                f"--pidfile={directory / 'dockerd.pid'}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_service(process, engine.answers, "dockerd", log, EngineError)
        yield engine
    finally:
        engine.remove_test_containers()
        stop_process(process)
        if process.returncode not in (0, None):
            print(f"dockerd exited with {process.returncode}:\n{log_tail(log)}")


@contextmanager
def run_tls_dockerd(
    dockerd: str, directory: Path, port: int, files: dict[str, Path]
) -> Iterator[None]:
    """A second, container-less dockerd answering only TLS clients with a trusted certificate."""
    log = directory / "dockerd-tls.log"
    # A bridge of its own: with --bridge=none dockerd deletes docker0, which the
    # other engine on this machine uses.
    bridge = f"tmtls{port}"[:15]
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    args = [
        dockerd,
        f"--host=tcp://127.0.0.1:{port}",
        "--tlsverify",
        f"--tlscacert={files['client_ca']}",
        f"--tlscert={files['server_cert']}",
        f"--tlskey={files['server_key']}",
        f"--data-root={directory / 'data'}",
        f"--exec-root={directory / 'exec'}",
        f"--pidfile={directory / 'dockerd.pid'}",
        f"--bridge={bridge}",
        "--iptables=false",
        "--ip-masq=false",
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)

    def answers() -> bool:
        return b"API listen on" in log.read_bytes()

    try:
        wait_for_service(process, answers, "dockerd (TLS)", log, EngineError)
        yield
    finally:
        stop_process(process)
        subprocess.run(["ip", "link", "delete", bridge], check=False, capture_output=True)


def unmount_under(directory: Path) -> None:
    """Lazily unmount what dockerd left mounted there (its network namespace file)."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{directory}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
