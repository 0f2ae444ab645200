"""The `telemon` command, run for real in subprocesses.

Every test runs `python -m telemon` (the console script's entry point) in a
temporary working directory with `TELEMON_CONFIG` unset, so no file of the
developer's is picked up.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, wait_until_blocking

import telemon

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "telemon.example.toml"
TELEMON = [sys.executable, "-m", "telemon"]
RUN_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


# --- helpers -----------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of the subprocesses: no TELEMON_CONFIG, no stray PYTHONPATH."""
    environment = {k: v for k, v in os.environ.items() if k != "TELEMON_CONFIG"}
    environment.pop("PYTHONPATH", None)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def run(
    *args: str, cwd: Path, env: dict[str, str], command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or TELEMON), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def no_such_process_pattern() -> str:
    """A regex no command line matches (it does not even match itself)."""
    return f"telemon-test-no-such-process-[x]{{3}}-{uuid.uuid4().hex}"


_KEY = r"(?:[^,= \\]|\\.)+"
_MEASUREMENT = r"(?:[^, \\]|\\.)+"
_STRING = r'"(?:[^"\\]|\\.)*"'
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FIELD_VALUE = rf"(?:{_STRING}|[-+]?\d+[iu]|{_NUMBER}|true|false|TRUE|FALSE|True|False|t|f|T|F)"
_LINE = re.compile(
    rf"(?P<measurement>{_MEASUREMENT})"
    rf"(?P<tags>(?:,{_KEY}={_KEY})*)"
    rf" (?P<fields>{_KEY}={_FIELD_VALUE}(?:,{_KEY}={_FIELD_VALUE})*)"
    r"(?: (?P<time>-?\d+))?"
)
_PAIR = re.compile(rf"({_KEY})=({_STRING}|{_KEY})")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _field_value(text: str) -> Any:
    if text.startswith('"'):
        return _unescape(text[1:-1])
    if text[-1] in "iu":
        return int(text[:-1])
    if text in ("t", "T", "true", "True", "TRUE"):
        return True
    if text in ("f", "F", "false", "False", "FALSE"):
        return False
    return float(text)


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, Any], int | None]:
    """(measurement, tags, fields, timestamp) of one line of line protocol."""
    match = _LINE.fullmatch(line)
    assert match, f"not line protocol: {line!r}"
    tags = {_unescape(k): _unescape(v) for k, v in _PAIR.findall(match["tags"])}
    fields = {_unescape(k): _field_value(v) for k, v in _PAIR.findall(match["fields"])}
    timestamp = int(match["time"]) if match["time"] else None
    return _unescape(match["measurement"]), tags, fields, timestamp


def parse_lines(text: str) -> list[tuple[str, dict[str, str], dict[str, Any], int | None]]:
    assert text.endswith("\n"), "line protocol output must end with a newline"
    return [parse_line(line) for line in text.splitlines()]


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - test URL
        return response.status, response.read().decode("utf-8")


class Server:
    """A `telemon serve` subprocess; always stopped by the fixture."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def assert_running(self) -> None:
        """Fail at once, with its stderr, if the process has exited."""
        if self.proc.poll() is not None:
            _, stderr = self.proc.communicate()
            pytest.fail(f"telemon exited with {self.proc.returncode}: {stderr}")

    def wait_healthy(self) -> None:
        """Poll /healthz until it answers (or fail if the process exits)."""

        def healthy() -> bool:
            self.assert_running()
            return get(f"{self.base}/healthz", timeout=1.0) == (200, "ok\n")

        wait_until_blocking(
            healthy, timeout=START_TIMEOUT_S, what="telemon answering /healthz", retry_on=(OSError,)
        )

    def metrics_with(self, *measurements: str, collected: tuple[str, ...] = ()) -> str:
        """The /metrics body, once it holds every measurement named and every
        input in `collected` has finished a collection (successful or not)."""

        def body_with_data() -> str:
            status, body = get(f"{self.base}/metrics")
            assert status == 200
            lines = parse_lines(body)
            seen = {measurement for measurement, *_ in lines}
            done = {
                tags["input"]
                for measurement, tags, fields, _ in lines
                if measurement == "telemon_input" and fields["collections"] >= 1
            }
            assert set(measurements) <= seen and set(collected) <= done, body
            return body

        return wait_until_blocking(
            body_with_data, timeout=START_TIMEOUT_S, what="/metrics with the expected data"
        )

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Send `sig`; (exit code, stdout, stderr)."""
        self.proc.send_signal(sig)
        stdout, stderr = self.proc.communicate(timeout=STOP_TIMEOUT_S)
        return self.proc.returncode, stdout, stderr


@pytest.fixture
def serve(tmp_path: Path, env: dict[str, str]) -> Iterator[Any]:
    """Starts `telemon ARGS...` listening on a free port; kills what is left at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, port: int | None = None) -> Server:
        port = port or free_port()
        proc = subprocess.Popen(
            [*TELEMON, *args, "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return Server(proc, port)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=STOP_TIMEOUT_S)


# --- check -------------------------------------------------------------------


def test_check_example_file(tmp_path: Path, env: dict[str, str]) -> None:
    result = run("check", "-c", str(EXAMPLE), cwd=tmp_path, env=env)
    summary = f"{EXAMPLE}: ok: 2 inputs (2 targets), no outputs, no sink\n"
    assert (result.returncode, result.stdout, result.stderr) == (0, summary, "")


def test_check_without_file_uses_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    result = run("check", cwd=tmp_path, env=env)
    summary = "<defaults>: ok: 2 inputs (2 targets), no outputs, no sink\n"
    assert (result.returncode, result.stdout, result.stderr) == (0, summary, "")


BAD_CONFIG = """\
bogus = 1

[global_tags]
time = "now"

[agent]
interval = "10x"
precision = "1m"

[http]
listen = "nowhere"

[[inputs.process]]
pattern = "pharo(vm"

[[inputs.process]]
patern = "typo"

[[inputs.procstat]]
pattern = "pharo"
"""


def test_check_bad_file_lists_every_problem(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "bad.toml", BAD_CONFIG)
    result = run("check", "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert_no_traceback(result.stderr)
    expected = [
        f"{path}: bogus: unknown key",
        f"{path}: global_tags.time: tag key 'time' is reserved by InfluxDB",
        f"{path}: agent.interval: invalid duration '10x': use units ns, us, ms, s, m, h (\"10s\")",
        f"{path}: agent.precision: Input should be 'ns', 'us', 'ms' or 's'",
        f"{path}: http.listen: 'nowhere' has no port: expected \"HOST:PORT\"",
        f"{path}: inputs.process.0.pattern: "
        "invalid regular expression: missing ), unterminated subpattern at position 5",
        f"{path}: inputs.process.1.patern: unknown key; did you mean 'pattern'?",
        f"{path}: inputs.procstat: unknown input; "
        "known inputs: cgroup, docker, fields, pharo, process, python; did you mean 'process'?",
    ]
    lines = result.stderr.splitlines()
    assert sorted(lines) == sorted(expected)
    assert result.stderr.endswith("\n")


def test_check_missing_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "missing.toml"
    result = run("check", "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr == f"{path}: (file): cannot read: No such file or directory\n"


def test_check_invalid_toml(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "broken.toml", "[agent]\ninterval = 10s\n")
    result = run("check", "--config", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: (file): not valid TOML: ")
    assert "line 2" in line


def test_check_fields_import_error(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(
        tmp_path / "fields.toml",
        '[[inputs.fields]]\nmeasurement = "app"\n'
        '[inputs.fields.fields]\nsessions = "telemon_no_such_module:sessions"\n',
    )
    result = run("check", "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}: inputs.fields.0.fields.sessions: cannot import 'telemon_no_such_module': "
        "ModuleNotFoundError: No module named 'telemon_no_such_module'"
    ]


def test_config_lookup_env_var_then_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    """$TELEMON_CONFIG is used before ./telemon.toml, and --config before both."""
    write(tmp_path / "telemon.toml", "[agent]\ninterval = 'cwd'\n")
    from_env = write(tmp_path / "env.toml", "[agent]\ninterval = 'env'\n")
    good = write(tmp_path / "good.toml", "[agent]\ninterval = '1s'\n")

    result = run("check", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr.split(":")[0]) == (2, "telemon.toml")
    assert "'cwd'" in result.stderr

    env_with_var = {**env, "TELEMON_CONFIG": str(from_env)}
    result = run("check", cwd=tmp_path, env=env_with_var)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{from_env}: agent.interval: invalid duration 'env'")

    result = run("check", "-c", str(good), cwd=tmp_path, env=env_with_var)
    assert (result.returncode, result.stderr) == (0, "")


# --- --version ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(TELEMON, id="python-m-telemon"),
        pytest.param([str(Path(sys.executable).with_name("telemon"))], id="console-script"),
    ],
)
def test_version(command: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    result = run("--version", cwd=tmp_path, env=env, command=command)
    assert (result.returncode, result.stdout) == (0, f"telemon {telemon.__version__}\n")


# --- once --------------------------------------------------------------------


def test_once_default_inputs(tmp_path: Path, env: dict[str, str]) -> None:
    with subprocess.Popen(
        [*TELEMON, "once"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert (proc.returncode, stderr) == (0, "")
    lines = parse_lines(stdout)
    by_measurement = {measurement: (tags, fields, ts) for measurement, tags, fields, ts in lines}
    assert sorted(m for m, *_ in lines) == ["process", "python"]

    tags, fields, ts = by_measurement["process"]
    assert fields["pid"] == proc.pid
    assert tags["process_name"]
    assert isinstance(fields["memory_rss"], int) and fields["memory_rss"] > 0
    assert isinstance(fields["cpu_time_user"], float)
    assert ts is not None and abs(ts - time.time_ns()) < 600 * 10**9

    tags, fields, _ = by_measurement["python"]
    assert tags["python_version"] == platform.python_version()
    assert isinstance(fields["gc_collections_0"], int)
    assert isinstance(fields["threads"], int) and fields["threads"] >= 1


def test_once_tags_every_line_like_serve(tmp_path: Path, env: dict[str, str]) -> None:
    result = run("once", "--tag", "site=eu 1", "--tag", "k=v", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    lines = parse_lines(result.stdout)
    assert sorted(m for m, *_ in lines) == ["process", "python"]
    assert all((tags["site"], tags["k"]) == ("eu 1", "v") for _, tags, _, _ in lines)


def test_once_failing_input(tmp_path: Path, env: dict[str, str]) -> None:
    pattern = no_such_process_pattern()
    path = write(
        tmp_path / "telemon.toml",
        f"[[inputs.process]]\npattern = '{pattern}'\n\n[[inputs.python]]\n",
    )
    result = run("once", "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert_no_traceback(result.stderr)
    (error,) = result.stderr.splitlines()
    assert "no process matches" in error and pattern in error
    assert [m for m, *_ in parse_lines(result.stdout)] == ["python"]


FIELDS_MODULE = """\
def sessions():
    return 42

def load():
    return 0.5

def version():
    return 'v1 "beta", ok'

def healthy():
    return True

def nothing():
    return None

def broken():
    raise RuntimeError("database is down")
"""


def test_once_fields_from_a_module(tmp_path: Path, env: dict[str, str]) -> None:
    module_dir = tmp_path / "site"
    module_dir.mkdir()
    write(module_dir / "telemon_test_app_metrics.py", FIELDS_MODULE)
    path = write(
        tmp_path / "telemon.toml",
        """\
[global_tags]
dc = "eu-1"

[[inputs.fields]]
measurement = "app"
[inputs.fields.tags]
service = "blog"
[inputs.fields.fields]
sessions = "telemon_test_app_metrics:sessions"
load = "telemon_test_app_metrics:load"
version = "telemon_test_app_metrics:version"
healthy = "telemon_test_app_metrics:healthy"
nothing = "telemon_test_app_metrics:nothing"
""",
    )
    result = run("once", "-c", str(path), cwd=tmp_path, env={**env, "PYTHONPATH": str(module_dir)})
    assert (result.returncode, result.stderr) == (0, "")
    (line,) = result.stdout.splitlines()
    assert line.startswith(
        'app,dc=eu-1,service=blog sessions=42i,load=0.5,version="v1 \\"beta\\", ok",healthy=true '
    )
    measurement, tags, fields, ts = parse_line(line)
    assert (measurement, tags) == ("app", {"dc": "eu-1", "service": "blog"})
    assert fields == {"sessions": 42, "load": 0.5, "version": 'v1 "beta", ok', "healthy": True}
    assert [type(v) for v in fields.values()] == [int, float, str, bool]
    assert ts is not None


def test_once_failing_field(tmp_path: Path, env: dict[str, str]) -> None:
    module_dir = tmp_path / "site"
    module_dir.mkdir()
    write(module_dir / "telemon_test_app_metrics.py", FIELDS_MODULE)
    path = write(
        tmp_path / "telemon.toml",
        """\
[[inputs.fields]]
measurement = "app"
[inputs.fields.fields]
broken = "telemon_test_app_metrics:broken"
sessions = "telemon_test_app_metrics:sessions"
""",
    )
    result = run("once", "-c", str(path), cwd=tmp_path, env={**env, "PYTHONPATH": str(module_dir)})
    assert result.returncode == 1
    assert_no_traceback(result.stderr)
    (error,) = result.stderr.splitlines()
    assert "'broken'" in error and "RuntimeError: database is down" in error
    ((measurement, _, fields, _),) = parse_lines(result.stdout)
    assert (measurement, fields) == ("app", {"sessions": 42})


def test_once_bad_config(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "telemon.toml", "[agent]\ntimeout = 0\n")
    result = run("once", "-c", str(path), cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"{path}: agent.timeout: duration must be positive, got 0\n"


# --- serve -------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [pytest.param(["serve"], id="serve"), pytest.param([], id="no-command")]
)
def test_serve_tags_every_line_and_stops_on_sigterm(serve: Any, command: list[str]) -> None:
    server = serve(*command, "--tag", "k=v", "--tag", "team=a b")
    server.wait_healthy()
    body = server.metrics_with("process", "python")
    lines = parse_lines(body)
    assert {"process", "python", "telemon_input", "telemon"} <= {m for m, *_ in lines}
    for measurement, tags, _, _ in lines:
        assert (tags.get("k"), tags.get("team")) == ("v", "a b"), measurement

    code, stdout, stderr = server.stop(signal.SIGTERM)
    assert code == 0
    assert stdout == ""
    assert_no_traceback(stderr)
    assert f"serving http://127.0.0.1:{server.port}/metrics" in stderr


def test_serve_stops_on_sigint(serve: Any) -> None:
    server = serve("serve")
    server.wait_healthy()
    code, _, stderr = server.stop(signal.SIGINT)
    assert code == 0
    assert_no_traceback(stderr)


def _wait_for_line(server: Server, predicate: Callable[[list[Any]], bool]) -> list[Any]:
    def lines_meeting_predicate() -> list[Any]:
        server.assert_running()
        lines = parse_lines(get(f"{server.base}/metrics")[1])
        return lines if predicate(lines) else []

    # OSError: between the old process and the new one
    return wait_until_blocking(
        lines_meeting_predicate,
        timeout=START_TIMEOUT_S,
        what="the expected lines",
        retry_on=(OSError,),
    )


def _tagged(value: str) -> Callable[[list[Any]], bool]:
    return lambda lines: any(tags.get("site") == value for _, tags, _, _ in lines)


def test_sighup_restarts_with_the_new_configuration(serve: Any, tmp_path: Path) -> None:
    """As Telegraf does: SIGHUP reloads the file; same process, new tags."""
    path = write(tmp_path / "telemon.toml", "[global_tags]\nsite = 'old'\n[[inputs.python]]\n")
    server = serve("serve", "-c", str(path))
    server.wait_healthy()
    _wait_for_line(server, _tagged("old"))
    write(path, "[global_tags]\nsite = 'new'\n[[inputs.python]]\n")
    server.proc.send_signal(signal.SIGHUP)
    lines = _wait_for_line(server, _tagged("new"))
    assert not _tagged("old")(lines)
    code, _, stderr = server.stop(signal.SIGTERM)
    assert code == 0
    assert_no_traceback(stderr)
    assert "SIGHUP: configuration valid, restarting with it" in stderr
    assert stderr.count(" serving http://") == 2  # the same PID served twice


def test_sighup_with_a_broken_file_keeps_the_running_configuration(
    serve: Any, tmp_path: Path
) -> None:
    path = write(tmp_path / "telemon.toml", "[global_tags]\nsite = 'old'\n[[inputs.python]]\n")
    server = serve("serve", "-c", str(path))
    server.wait_healthy()
    write(path, "[global_tags]\nsite = 'new'\n[[inputs.python]]\ninterval = 'soon'\n")
    server.proc.send_signal(signal.SIGHUP)
    _wait_for_line(server, _tagged("old"))
    code, _, stderr = server.stop(signal.SIGTERM)
    assert code == 0
    assert_no_traceback(stderr)
    (refused,) = [line for line in stderr.splitlines() if " ERROR " in line]
    reason = f"still running the old one: {path}: inputs.python.0.interval: "
    assert "SIGHUP: configuration refused, " + reason in refused
    assert stderr.count(" serving http://") == 1


def test_serve_port_taken(serve: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve("serve", port=port)
        _, stderr = server.proc.communicate(timeout=RUN_TIMEOUT_S)
    assert server.proc.returncode == 1
    assert_no_traceback(stderr)
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr
    assert f"cannot listen on 127.0.0.1:{port}" in errors[0]
    assert "in use" in errors[0].lower()
    assert all(" INFO " in line for line in stderr.splitlines() if line not in errors), stderr
    assert "serving" not in stderr  # said only once the socket is bound


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        pytest.param(
            "[agent]\ninterval = '10x'\n",
            [],
            [
                "{path}: agent.interval: invalid duration '10x': use units ns, us, ms, s, m, h "
                '("10s")'
            ],
            id="bad-file",
        ),
        pytest.param(
            "[inputs.process]\n",
            [],
            ["{path}: inputs.process: expected an array of tables: write [[inputs.process]],"
             " not [inputs.process]"],
            id="table-instead-of-array",
        ),
        pytest.param(
            "",
            ["--tag", "novalue"],
            ["command line: --tag: expected KEY=VALUE, got 'novalue'"],
            id="tag-without-value",
        ),
        # A wrongly typed table and a command-line override of it: still a
        # config error, not a TypeError traceback.
        pytest.param(
            "global_tags = 'dc=eu'\n",
            ["--tag", "k=v"],
            ["{path}: global_tags: expected a table, got \"dc=eu\""],
            id="global_tags-not-a-table-with-tag",
        ),
        pytest.param(
            "http = 8080\n",
            [],
            ["{path}: http: expected a table, got 8080"],
            id="http-not-a-table-with-listen",
        ),
    ],
)
def test_serve_bad_config_exits_2(
    tmp_path: Path, env: dict[str, str], config: str, args: list[str], expected: list[str]
) -> None:
    path = write(tmp_path / "telemon.toml", config)
    result = run(
        "serve",
        "-c",
        str(path),
        "--listen",
        f"127.0.0.1:{free_port()}",
        *args,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_no_traceback(result.stderr)
    assert result.stderr.splitlines() == [e.format(path=path) for e in expected]


def test_serve_bad_listen_flag(tmp_path: Path, env: dict[str, str]) -> None:
    result = run("serve", "--listen", "nowhere", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    # Said of the option, not of the file or the defaults it overrides.
    assert result.stderr == (
        "command line: --listen: 'nowhere' has no port: expected \"HOST:PORT\"\n"
    )


@pytest.mark.parametrize("command", ["demo", "simulate"])
def test_bare_port_is_refused_not_bound_to_every_interface(
    tmp_path: Path, env: dict[str, str], command: str
) -> None:
    """`--listen 8080` would expose the simulator on every interface: HOST:PORT as in [http]."""
    result = run(command, "--listen", "8080", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    assert result.stderr == (
        "command line: --listen: '8080' has no host: write \"127.0.0.1:8080\""
        " (\":8080\" is every interface)\n"
    )


def test_serve_log_level(serve: Any) -> None:
    server = serve("serve", "--log-level", "warning")
    server.wait_healthy()
    code, _, stderr = server.stop()
    assert (code, stderr) == (0, "")


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    assert stderr.endswith("\n")
    entries = []
    for line in stderr.splitlines():
        entry = json.loads(line)  # fails on any line that is not JSON
        assert isinstance(entry, dict)
        assert {"time", "level", "logger", "message"} <= entry.keys()
        entries.append(entry)
    return entries


def test_serve_log_format_json(serve: Any, tmp_path: Path) -> None:
    pattern = no_such_process_pattern()
    config = write(
        tmp_path / "telemon.toml",
        f"[[inputs.process]]\npattern = '{pattern}'\n\n[[inputs.python]]\n",
    )
    server = serve("serve", "-c", str(config), "--log-format", "json", "--log-level", "debug")
    server.wait_healthy()
    server.metrics_with("python", collected=("process", "python"))
    code, _, stderr = server.stop()
    assert code == 0
    entries = _json_lines(stderr)
    levels = {entry["level"] for entry in entries}
    assert {"info", "warning"} <= levels
    assert any("no process matches" in entry["message"] for entry in entries)


def test_serve_log_format_json_on_error(serve: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = serve("serve", "--log-format", "json", port=taken.getsockname()[1])
        _, stderr = server.proc.communicate(timeout=RUN_TIMEOUT_S)
    assert server.proc.returncode == 1
    entries = _json_lines(stderr)
    assert [e["level"] for e in entries if e["level"] == "error"] == ["error"]
