"""The command line without surprises: options anywhere, help with defaults, summary, demo."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

import telemon
from telemon.cli import _FAULT_HELP, _parser, main
from telemon.simulator.faults import FAULTS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "telemon.example.toml"
SUMMARY = f"{EXAMPLE}: ok: 2 inputs (2 targets), no outputs, no sink\n"


@pytest.fixture(autouse=True)
def no_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TELEMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./telemon.toml


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


# --- global options anywhere --------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-c", str(EXAMPLE), "check"],
        ["check", "-c", str(EXAMPLE)],
        ["check", str(EXAMPLE)],
        ["--config", str(EXAMPLE), "check"],
        [f"--config={EXAMPLE}", "check"],
        ["--log-level", "debug", "check", str(EXAMPLE)],
        ["check", "-c", str(EXAMPLE), str(EXAMPLE)],  # the same file twice is one file
    ],
    ids=["before", "after", "positional", "long-before", "equals", "log-level-before", "both"],
)
def test_config_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert run_main(capsys, *args) == (0, SUMMARY, "")


def test_two_different_files_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run_main(capsys, "check", "-c", "other.toml", str(EXAMPLE))
    assert (status, out) == (2, "")
    assert err == f"command line: FILE: {EXAMPLE} and -c other.toml: give one file\n"


def test_an_unknown_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(capsys, "chek", str(EXAMPLE))
    assert (status, out) == (2, "")
    assert err.splitlines()[-1] == (
        "telemon: error: unknown command 'chek'; did you mean 'check'?"
        " (commands: serve, once, check, simulate, demo, config, alerts)"
    )


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert run_main(capsys, flag) == (0, f"telemon {telemon.__version__}\n", "")


def test_bad_listen_option_named_as_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(capsys, "serve", "--listen", "127.0.0.1:99999")
    assert (status, out, err) == (2, "", "command line: --listen: port 99999 is not 0-65535\n")


# --- help ----------------------------------------------------------------------


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    found = {"telemon": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({f"telemon {n}": p for n, p in action.choices.items()})
            for choice in action._choices_actions:
                assert choice.help, f"command {choice.dest} has no help"
    return found


def test_every_option_has_help_with_its_default() -> None:
    for name, parser in _parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{where} has no help"
            if action.option_strings and action.nargs != 0 and action.dest not in ("tag",):
                # An option taking a value says what it is when not given.
                assert "default" in action.help, f"{where}: no default in {action.help!r}"
                if action.default not in (None, argparse.SUPPRESS):
                    assert str(action.default) in action.help, where


def test_once_help_says_when_it_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "once", "--help")
    assert status == 0
    assert "1 when one did not" in " ".join(out.split())


def test_simulate_help_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    assert tuple(_FAULT_HELP) == FAULTS
    status, out, _ = run_main(capsys, "simulate", "--help")
    assert status == 0
    listed = [line.split()[0] for line in out.split("faults (")[1].splitlines()[1:] if line]
    assert listed == list(FAULTS)
    text = " ".join(out.split())
    assert "--seed SEED the seed of the VMs' figures" in text
    assert "--listen HOST:PORT address to serve on (default 127.0.0.1:8079)" in text


# --- check's summary -------------------------------------------------------------

FULL = """\
[sink]
enabled = true

[[inputs.pharo]]
urls = ["http://127.0.0.1:1/metrics", "http://127.0.0.1:2/metrics", "http://127.0.0.1:3/x"]

[[inputs.process]]

[[inputs.python]]

[[outputs.influxdb]]
urls = ["http://127.0.0.1:8086", "http://127.0.0.1:8087"]
"""


def test_check_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "telemon.toml"
    path.write_text(FULL, encoding="utf-8")
    assert run_main(capsys, "check") == (
        0,
        "telemon.toml: ok: 3 inputs (5 targets), 1 output (2 URLs),"
        " sink on /telegraf /write /api/v2/write\n",
        "",
    )


FIVE_MISTAKES = """\
[agent]
precision = "1h"
omit_timestamp = true

[http]
listen = "127.0.0.1:99999"
tls_cert = "cert.pem"
gzip = "yes"

[[inputs.pharo]]
url = ["http://127.0.0.1:8079/metrics"]

[[outputs.influxdb]]

[[outputs.file]]
"""


def test_check_reports_every_mistake_in_one_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(FIVE_MISTAKES, encoding="utf-8")
    status, out, err = run_main(capsys, "check", str(path))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"{path}: agent.precision: Input should be 'ns', 'us', 'ms' or 's'",
        f"{path}: http.listen: port 99999 is not 0-65535",
        f'{path}: http.gzip: expected a boolean (true or false), got "yes"',
        f"{path}: inputs.pharo.0.urls: required key is missing",
        f"{path}: inputs.pharo.0.url: unknown key; did you mean 'urls'?",
        f"{path}: outputs.file: unknown output; known outputs: influxdb, influxdb_v2",
        f"{path}: http: TLS needs both tls_cert and tls_key",
        f"{path}: (file): outputs need timestamps: set agent.omit_timestamp = false",
    ]


# --- demo --------------------------------------------------------------------------


def test_demo_prints_its_urls_and_a_taken_port_says_what_to_do(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "telemon", "demo", "--listen", f"127.0.0.1:{port}"]
    demo = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert demo.stdout is not None
        lines = [demo.stdout.readline() for _ in range(5)]
        assert lines[0] == "telemon demo: telemon scraping 10 simulated Pharo VMs\n"
        assert lines[1:3] == [
            f"  status page  http://127.0.0.1:{port}/\n",
            f"  metrics      http://127.0.0.1:{port}/metrics\n",
        ]
        assert lines[3].startswith("  simulator    http://127.0.0.1:")
        assert lines[4] == "Stop with Ctrl-C.\n"
        for url in (f"http://127.0.0.1:{port}/", lines[3].split()[1]):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
        taken = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=60)  # fmt: skip
        assert taken.returncode == 1
        assert taken.stderr.rstrip().endswith(
            f"cannot listen on 127.0.0.1:{port}: Address already in use; pick another address"
            f" with --listen, e.g. telemon demo --listen 127.0.0.1:{port + 1}"
        )
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=30)
    assert demo.returncode == 0


def test_serve_on_a_taken_port_says_how_to_pick_another(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "telemon", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(
        f"cannot listen on 127.0.0.1:{port}: Address already in use; pick another address with"
        f" --listen (or [http] listen), e.g. telemon serve --listen 127.0.0.1:{port + 1}"
    )
