"""The Docker deployment: docker/Dockerfile, docker-compose.yml, telegraf.conf, telemon.toml.

The static checks read the files; the slow ones build the image on a real
Docker Engine (from a base made with debootstrap: no registry is needed), run
it, and bring up telemon and the simulated Pharo VM with docker-compose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerd import TEST_LABEL, DockerEngine
from helpers import free_port, require_executable, unavailable, wait_until_blocking

from telemon.config import Config, load_config, parse_config
from telemon.inputs import InputsConfig

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
SOCKET = "/var/run/docker.sock"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"telemon:{VERSION}"
BASE_IMAGE = "local/python:bookworm"
BASE_CACHE = Path(os.environ.get("TELEMON_TEST_CACHE", "/var/cache/telemon-tests"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_BUDGET = 30 * 1000 * 1000  # bytes telemon may add on top of its base image
# ${VAR}, ${VAR:-default}, ${VAR:?message} as compose and Telegraf expand them.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$", re.IGNORECASE)
NOT_ANSWERING = (OSError, ValueError)  # what a container that is still starting raises


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/docker-compose.yml as YAML."""
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _telemon_toml() -> dict[str, Any]:
    return tomllib.loads((DOCKER / "telemon.toml").read_text())


def _stack_config() -> Config:
    """docker/telemon.toml through telemon's own validation."""
    if "docker" not in InputsConfig.model_fields:
        pytest.skip("[[inputs.docker]] is not registered in telemon.inputs yet")
    return load_config(DOCKER / "telemon.toml")


def _simulator(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The service labelled for Pharo discovery."""
    found = [
        (name, service)
        for name, service in _services(compose).items()
        if "telemon.pharo.port" in (service.get("labels") or {})
    ]
    assert len(found) == 1, found
    return found[0]


def _listen_port(command: list[str]) -> int:
    listen = command[command.index("--listen") + 1]
    host, _, port = listen.rpartition(":")
    assert host == "0.0.0.0", f"{listen}: must listen on every interface of the container"
    return int(port)


def _healthcheck_url(service: dict[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^'\"\s]+", test)
    assert match, test
    return match.group(0)


def _expand(value: str) -> str:
    """`value` with each ${VAR:-default} replaced by its default (else empty)."""
    return ENV_REF.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "", value)


def _mount(volume: str) -> tuple[str, str, str]:
    """(source, target, mode) of a short-syntax volume, defaults expanded."""
    source, target, *mode = _expand(volume).split(":")
    return source, target, ":".join(mode)


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            values[key.strip()] = value.strip()
    return values


# --- telemon.toml and telegraf.conf -----------------------------------------------------


def test_stack_telemon_config_is_valid() -> None:
    """docker/telemon.toml is a telemon config: inputs python, process, docker with discovery."""
    config = _stack_config()
    assert config.http.listen == ("0.0.0.0", 8080)
    assert config.global_tags.get("host")
    assert config.inputs.python and config.inputs.process
    (docker,) = config.inputs.docker
    assert docker.discover_pharo is True
    assert docker.endpoint == f"unix://{SOCKET}"


def test_stack_telemon_config_without_docker_input_is_valid() -> None:
    """Everything but the docker table validates even before that input exists."""
    data = _telemon_toml()
    data["inputs"].pop("docker")
    config = parse_config(data, "docker/telemon.toml")
    assert config.http.listen == ("0.0.0.0", 8080)


def test_image_default_config_listens_on_every_interface() -> None:
    """The config baked into the image serves 0.0.0.0:8080 with the default inputs."""
    config = load_config(DOCKER / "default.toml")
    assert config.http.listen == ("0.0.0.0", 8080)
    assert config.inputs.process and config.inputs.python


def test_telegraf_scrapes_what_telemon_serves(compose: dict[str, Any]) -> None:
    """inputs.http reaches the telemon service at the port and path telemon.toml serves."""
    telegraf = tomllib.loads((DOCKER / "telegraf.conf").read_text())
    http = _telemon_toml()["http"]
    host, _, port = http["listen"].rpartition(":")
    (scrape,) = telegraf["inputs"]["http"]
    assert scrape["urls"] == [f"http://telemon:{port}{http['path']}"]
    assert scrape["data_format"] == "influx"
    # Telegraf rounds to 1s unless told otherwise: distinct points would merge.
    assert telegraf["agent"]["precision"] in ("1ns", "1us", "1ms")
    services = _services(compose)
    assert "telemon" in services
    assert f"{port}" in [str(p).split(":")[-1] for p in services["telemon"]["ports"]]
    (output,) = telegraf["outputs"]["influxdb"]
    assert output["urls"] == ["http://influxdb:8086"]
    assert "influxdb" in services


def test_telegraf_env_references_are_set_by_compose(compose: dict[str, Any]) -> None:
    """Each ${VAR} telegraf.conf uses (outside comments) is in the telegraf service's env."""
    text = (DOCKER / "telegraf.conf").read_text()
    used = {
        m.group(1)
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        for m in ENV_REF.finditer(line)
    }
    environment = _services(compose)["telegraf"].get("environment") or {}
    assert used <= set(environment), used - set(environment)


# --- docker-compose.yml --------------------------------------------------------------------


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    """No `latest`, no missing tag; telemon's own image carries the project's version."""
    for name, service in _services(compose).items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        if "build" in service:
            assert image == IMAGE, f"{name}: built images are tagged {IMAGE}"


def test_telemon_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    """build: context .. and docker/Dockerfile, the same for the simulator."""
    for name, service in _services(compose).items():
        if "build" in service:
            build = service["build"]
            context = (DOCKER / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).is_file(), name
    assert "build" in _services(compose)["telemon"]


def test_only_telemon_mounts_the_docker_socket_read_only(compose: dict[str, Any]) -> None:
    """The socket is mounted read-only, into telemon alone, with the socket's group added."""
    mounting = {}
    for name, service in _services(compose).items():
        for volume in service.get("volumes") or ():
            source, target, mode = _mount(volume)
            if target.endswith("docker.sock") or source.endswith("docker.sock"):
                mounting[name] = (source, target, mode)
    assert mounting == {"telemon": (SOCKET, SOCKET, "ro")}
    assert _services(compose)["telemon"]["group_add"] == ["${DOCKER_GID:-999}"]


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """Each service says how it is healthy, in exec form."""
    for name, service in _services(compose).items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
        assert service["healthcheck"].get("interval"), name


def test_depends_on_wait_for_health(compose: dict[str, Any]) -> None:
    """Dependencies are waited for (healthy), not merely started."""
    services = _services(compose)
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name}: {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name}: {dependency}"
    assert set(services["telegraf"]["depends_on"]) == {"telemon", "influxdb"}
    assert set(services["grafana"]["depends_on"]) == {"influxdb"}


def test_telemon_ports_and_config_mount(compose: dict[str, Any]) -> None:
    """telemon reads ./telemon.toml, publishes and health-checks the port it listens on."""
    telemon = _services(compose)["telemon"]
    assert "./telemon.toml:/etc/telemon/telemon.toml:ro" in telemon["volumes"]
    assert telemon["command"][:3] == ["serve", "-c", "/etc/telemon/telemon.toml"]
    port = int(_telemon_toml()["http"]["listen"].rpartition(":")[2])
    assert [str(p).rsplit(":", 1)[1] for p in telemon["ports"]] == [str(port)]
    assert _healthcheck_url(telemon) == f"http://127.0.0.1:{port}/healthz"


def test_simulator_label_matches_its_port(compose: dict[str, Any]) -> None:
    """The simulator listens, exposes and is health-checked on the port its label names."""
    name, simulator = _simulator(compose)
    assert simulator["command"][0] == "simulate"
    port = _listen_port(simulator["command"])
    labels = simulator["labels"]
    assert labels["telemon.pharo.port"] == str(port)
    assert labels.get("telemon.pharo.path", "/metrics").startswith("/")
    assert labels.get("telemon.pharo.format", "auto") in (
        "auto",
        "influx",
        "json",
        "labels",
        "parameters",
        "report",
    )
    assert [str(p) for p in simulator["expose"]] == [str(port)]
    assert _healthcheck_url(simulator).startswith(f"http://127.0.0.1:{port}/")
    assert name in _services(compose)["telemon"]["depends_on"]


def test_grafana_mounts_the_provisioning_read_only(compose: dict[str, Any]) -> None:
    """grafana/provisioning and grafana/dashboards, read-only, where Grafana reads them."""
    volumes = _services(compose)["grafana"]["volumes"]
    expected = {
        "../grafana/provisioning": "/etc/grafana/provisioning",
        "../grafana/dashboards": "/var/lib/grafana/dashboards",
    }
    for source, target in expected.items():
        assert f"{source}:{target}:ro" in volumes
        folder = (DOCKER / source).resolve()
        if (ROOT / "grafana").exists():
            assert folder.is_dir(), folder


def test_named_volumes_keep_the_data(compose: dict[str, Any]) -> None:
    """InfluxDB's and Grafana's data live in declared named volumes."""
    declared = set(compose.get("volumes") or {})
    services = _services(compose)
    for name, target in (("influxdb", "/var/lib/influxdb"), ("grafana", "/var/lib/grafana")):
        sources = [s for s, t, _ in map(_mount, services[name]["volumes"]) if t == target]
        assert sources and sources[0] in declared, name


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    """Passwords and tokens come from the environment, required, never with a default."""
    seen = 0
    for name, service in _services(compose).items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            if SECRET_KEY.search(key):
                seen += 1
                match = ENV_REF.fullmatch(str(value))
                assert match and match.group(2) in (None, ":?", "?"), f"{name}: {key}={value}"
    assert seen, "the Grafana admin password at least"
    assert not re.search(r"(?i)password\s*=\s*\"[^$]", (DOCKER / "telegraf.conf").read_text())


def test_env_example_lists_every_variable(compose: dict[str, Any]) -> None:
    """docker/.env.example names each variable the compose file reads."""
    used = {m.group(1) for m in ENV_REF.finditer(COMPOSE_FILE.read_text())}
    assert used <= set(_env_example()), used - set(_env_example())


def test_compose_config_validates() -> None:
    """docker-compose accepts the file with .env.example, and refuses it without a password."""
    binary = require_executable("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}

    def config(env_file: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--env-file", env_file, "-f", str(COMPOSE_FILE), "config", "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    done = config(str(ENV_EXAMPLE))
    assert done.returncode == 0, done.stderr
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        done = config(empty.name)
    assert done.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in done.stderr


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def _dockerfile() -> list[str]:
    """The instructions of docker/Dockerfile, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_final_stage() -> None:
    """Slim final stage: the base argument, a numeric non-root user, health check, entrypoint."""
    lines = _dockerfile()
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(starts) == 2
    assert all(lines[i].split()[1] == "${BASE_IMAGE}" for i in starts)
    assert lines[0].startswith("ARG BASE_IMAGE=python:3.")
    final = lines[starts[1] :]
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    assert all(part.isdigit() and int(part) != 0 for part in user.split(":")), user
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "curl" not in health and "TELEMON_HEALTH_URL" in health
    assert any("TELEMON_HEALTH_URL=http://127.0.0.1:8080/healthz" in line for line in final)
    assert 'ENTRYPOINT ["telemon"]' in final
    assert 'CMD ["serve", "-c", "/etc/telemon/telemon.toml"]' in final
    # The CA and pip stay in the builder stage.
    assert not any("PIP_CERT" in line or "/tmp/ca" in line for line in final)


def _allowed() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    """An allow-list: every COPY source is allowed; .venv, .git and tests are not sent."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*"
    allowed = _allowed()
    for line in _dockerfile():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                source = source.rstrip("/")
                assert any(source == a or source.startswith(a + "/") for a in allowed), source
    for private in (".venv", ".git", "tests", "bench"):
        assert not any(private == a or a.startswith(private + "/") for a in allowed)


# --- the image, built and run on a real engine (slow) ----------------------------------------


def _base_rootfs() -> Path:
    """A tarball of Debian bookworm (minbase + python3, python3-venv), cached on disk."""
    tarball = BASE_CACHE / "python-bookworm-minbase.tar"
    if tarball.is_file():
        return tarball
    debootstrap = require_executable("debootstrap", "debootstrap")
    if os.geteuid() != 0:
        unavailable("debootstrap needs root to build the local base image")
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="tm-rootfs-", dir="/var/tmp"))
    try:
        done = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv",
                "bookworm",
                str(root),
                "http://deb.debian.org/debian",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"debootstrap: {(done.stdout + done.stderr)[-3000:]}"
        # Written aside and renamed: a concurrent run never reads half a tarball.
        with tempfile.NamedTemporaryFile(dir=BASE_CACHE, suffix=".partial", delete=False) as out:
            subprocess.run(["tar", "-C", str(root), "-c", "."], stdout=out, check=True)
        Path(out.name).rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def _ensure_base(engine: DockerEngine) -> None:
    if not engine.cli("images", "-q", BASE_IMAGE).strip():
        engine.cli("import", str(_base_rootfs()), BASE_IMAGE, timeout=300)


def _build_context(directory: Path) -> Path:
    """What .dockerignore lets through, copied (plus the host's CA bundle for pip)."""
    context = directory / "context"
    context.mkdir()
    shutil.copy(ROOT / ".dockerignore", context)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pem", "*.crt")
    for allowed in _allowed():
        source, target = ROOT / allowed, context / allowed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy(source, target)
    if HOST_CA.is_file():
        shutil.copy(HOST_CA, context / "docker" / "ca" / HOST_CA.name)
    return context


@pytest.fixture(scope="module")
def image(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """telemon's image built from docker/Dockerfile on a local base (no registry)."""
    started = time.monotonic()
    _ensure_base(docker_engine)
    based = time.monotonic()
    context = _build_context(tmp_path_factory.mktemp("image"))
    args = ["build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    if HOST_CA.is_file():
        args += ["--build-arg", f"PIP_CERT={HOST_CA.name}"]
    previous = docker_engine.cli("images", "-q", IMAGE).strip()
    docker_engine.cli(*args, "-f", "docker/Dockerfile", "-t", IMAGE, str(context), timeout=900)
    if previous and previous != docker_engine.cli("images", "-q", IMAGE).strip():
        docker_engine.cli("rmi", previous, check=False)  # the build it replaced, now untagged
    # Builder stages of earlier builds, newest first: keep the newest as the cache.
    stages = docker_engine.cli(
        "images", "-q", "--filter", "dangling=true", "--filter", "label=telemon.stage=build"
    ).split()
    if len(stages) > 1:
        docker_engine.cli("rmi", *stages[1:], check=False)
    print(f"base image {based - started:.1f}s, build {time.monotonic() - based:.1f}s")
    return IMAGE


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _added_bytes(engine: DockerEngine, image: str, base: str) -> int:
    """Bytes of the layers `image` adds on top of `base` (docker history)."""

    def sizes(name: str) -> list[int]:
        out = engine.cli("history", "--no-trunc", "--human=false", "--format", "{{.Size}}", name)
        return [int(line) for line in out.split()]

    mine, theirs = sizes(image), sizes(base)
    return sum(mine[: len(mine) - len(theirs)])


@pytest.mark.slow
def test_image_runs_healthy_as_non_root(docker_engine: DockerEngine, image: str) -> None:
    """The image serves /healthz and /metrics, in and outside the container, as uid 10001."""
    engine = docker_engine
    container = engine.cli(
        "run",
        "-d",
        "--label",
        f"{TEST_LABEL}={engine.run_id}",
        "--health-interval",
        "1s",
        "--health-start-period",
        "0s",
        "-p",
        "127.0.0.1::8080",
        image,
    ).strip()
    try:
        inspect = json.loads(engine.cli("inspect", container))[0]
        assert inspect["Config"]["User"] == "10001:10001"
        assert inspect["Config"]["Entrypoint"] == ["telemon"]
        assert "telemon.stage" not in (inspect["Config"]["Labels"] or {})
        assert engine.cli("exec", container, "id", "-u").strip() == "10001"
        port = int(engine.cli("port", container, "8080/tcp").split(":")[-1])
        host = f"http://127.0.0.1:{port}"
        healthz = wait_until_blocking(
            lambda: _get(f"{host}/healthz"),
            what="/healthz from the host",
            timeout=60,
            every=0.5,
            retry_on=NOT_ANSWERING,
        )
        assert healthz == "ok\n"
        metrics = _get(f"{host}/metrics").splitlines()
        assert any(line.startswith("python,") for line in metrics), metrics[:5]
        inside = engine.cli(
            "exec",
            container,
            "python",
            "-c",
            "import urllib.request as u; b = 'http://127.0.0.1:8080';"
            "print(u.urlopen(b + '/healthz').read().decode(), end='');"
            "print(u.urlopen(b + '/metrics').read().decode())",
        )
        assert inside.startswith("ok\n") and "\nprocess," in inside, inside[:300]

        def health() -> bool:
            state = json.loads(engine.cli("inspect", container))[0]["State"]
            assert state["Running"], state
            return bool(state["Health"]["Status"] == "healthy")

        wait_until_blocking(
            health, what="HEALTHCHECK healthy", timeout=30, every=0.5, retry_on=NOT_ANSWERING
        )
        # Nothing of the builder stage: no pip, no CA bundle.
        engine.cli("exec", container, "sh", "-c", "test ! -e /opt/venv/bin/pip -a ! -e /tmp/ca")
    finally:
        engine.remove(container)
    added = _added_bytes(engine, image, BASE_IMAGE)
    print(f"{image} adds {added / 1e6:.1f} MB to {BASE_IMAGE}")
    assert added <= IMAGE_BUDGET


@pytest.fixture
def stack(docker_engine: DockerEngine, image: str) -> Iterator[tuple[str, dict[str, str]]]:
    """telemon and the simulator brought up by docker-compose; (telemon's URL, env)."""
    binary = require_executable("docker-compose", "docker-compose")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in _env_example()},
        "DOCKER_HOST": docker_engine.endpoint,
        "DOCKER_SOCKET": str(docker_engine.socket),
        "DOCKER_GID": str(docker_engine.socket.stat().st_gid),
        "TELEMON_PORT": str(port),
        "TELEMON_HOST": "compose-test",
    }
    command = [
        binary,
        "--env-file",
        str(ENV_EXAMPLE),
        "-f",
        str(COMPOSE_FILE),
        "-p",
        f"telemontest{docker_engine.run_id}",
    ]

    def run(*args: str) -> None:
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]

    try:
        run("up", "-d", "--no-build", "telemon")
        yield f"http://127.0.0.1:{port}", env
    finally:
        logs = subprocess.run(
            [*command, "logs", "--tail", "20"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        print(logs.stdout[-4000:])
        run("down", "-v", "--remove-orphans", "--timeout", "5")


@pytest.mark.slow
def test_compose_stack_discovers_the_simulated_pharo_vm(stack: tuple[str, dict[str, str]]) -> None:
    """In the compose stack telemon finds the labelled simulator and serves its pharo lines."""
    url, env = stack

    def pharo_lines() -> list[str]:
        lines = _get(f"{url}/metrics").splitlines()
        return [line for line in lines if line.startswith("pharo,")]

    lines = wait_until_blocking(
        pharo_lines,
        what="pharo lines of the discovered simulator",
        timeout=90,
        every=0.5,
        retry_on=NOT_ANSWERING,
    )
    assert "uptime=" in lines[0] and "oldSpace=" in lines[0], lines[0]
    metrics = _get(f"{url}/metrics")
    python = [line for line in metrics.splitlines() if line.startswith("python,")]
    assert python and f"host={env['TELEMON_HOST']}" in python[0], python
    docker_up = [
        line
        for line in metrics.splitlines()
        if line.startswith("telemon_input,") and ",input=docker," in line
    ]
    assert docker_up and " up=1i," in docker_up[0], docker_up
