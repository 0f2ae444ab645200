"""The docker input's engine from `$DOCKER_HOST` (left out, or Telegraf's `endpoint = "ENV"`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dockerd import DockerEngine

from telemon.config import ConfigError, parse_config
from telemon.inputs.docker import LOCAL_ENDPOINT


def endpoint(table: dict[str, str]) -> str:
    return parse_config({"inputs": {"docker": [table]}}).inputs.docker[0].endpoint


@pytest.mark.parametrize("table", [{}, {"endpoint": "ENV"}], ids=["left-out", "ENV"])
def test_docker_host_names_the_engine(
    monkeypatch: pytest.MonkeyPatch, table: dict[str, str]
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert endpoint(table) == LOCAL_ENDPOINT
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2375")
    assert endpoint(table) == "tcp://10.1.2.3:2375"
    monkeypatch.setenv("DOCKER_HOST", "  ")  # set but blank: as unset
    assert endpoint(table) == LOCAL_ENDPOINT


def test_an_endpoint_written_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2375")
    assert endpoint({"endpoint": "unix:///run/podman.sock"}) == "unix:///run/podman.sock"


def test_a_bad_docker_host_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@build-box")
    with pytest.raises(ConfigError) as info:
        parse_config({"inputs": {"docker": [{}]}}, "t.toml")
    assert info.value.lines() == [
        "t.toml: inputs.docker.0.endpoint: from DOCKER_HOST: 'ssh://build-box':"
        " use unix:///path, tcp://host:port or http(s)://host:port"
    ]


def test_once_reads_the_engine_docker_host_names(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = tmp_path / "telemon.toml"
    config.write_text('[[inputs.docker]]\nendpoint = "ENV"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    env["DOCKER_HOST"] = docker_engine.endpoint
    done = subprocess.run(
        [sys.executable, "-m", "telemon", "once", "-c", str(config)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, "")
    engine_lines = [line for line in done.stdout.splitlines() if line.startswith("docker,")]
    assert len(engine_lines) == 1 and ",n_containers=" in engine_lines[0]
