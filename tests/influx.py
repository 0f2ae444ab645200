"""Shared test pieces: a real InfluxDB 1.x (start/stop `influxd`, a small urllib
client), a reader for lines as InfluxDB parses them, and the golden line cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from helpers import free_port, stop_process, wait_for_service

from telemon.lineprotocol import EncoderOptions
from telemon.metric import Metric

__all__ = ["CASES", "Case", "InfluxDB", "Line", "StartupError", "parse_line", "run_influxd"]

_WRITE_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}

FieldValue = bool | int | float | str


class StartupError(RuntimeError):
    """influxd exited or never answered /ping."""


@dataclass(frozen=True, slots=True)
class InfluxDB:
    """Client for one running influxd (HTTP API v1)."""

    url: str

    def ping(self) -> int:
        """The HTTP status of GET /ping (204 when ready)."""
        return self._request("GET", "/ping")[0]

    def create_database(self, name: str) -> str:
        """Create database `name` (idempotent) and return the name."""
        _first_statement(
            *self._request("POST", "/query", {"q": f"CREATE DATABASE {quote_ident(name)}"})
        )
        return name

    def write(self, db: str, body: bytes, precision: str = "ns") -> tuple[int, str]:
        """POST line protocol; (status, response text). 204 means every line was stored."""
        params = {"db": db, "precision": _WRITE_PRECISION[precision]}
        return self._request("POST", "/write", params, body)

    def query(self, db: str, q: str, *, exact: bool = False) -> dict[str, Any]:
        """Run InfluxQL; times are ns integers. `exact` reads numbers as Decimal (keeps -0)."""
        status, text = self._request("GET", "/query", {"db": db, "q": q, "epoch": "ns"})
        if status != 200:
            raise AssertionError(f"{q!r}: InfluxDB answered {status}: {text}")
        number = Decimal if exact else None
        result: dict[str, Any] = json.loads(text, parse_int=number, parse_float=number)
        return result

    def series(self, db: str, q: str, *, exact: bool = False) -> list[dict[str, Any]]:
        """The series of a single-statement query ([] when it matched nothing)."""
        statement = self.query(db, q, exact=exact)["results"][0]
        if "error" in statement:
            raise AssertionError(f"{q!r}: {statement['error']}")
        series: list[dict[str, Any]] = statement.get("series", [])
        return series

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, str]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params or {})}"
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode("utf-8")


def _first_statement(status: int, text: str) -> dict[str, Any]:
    """The first statement's result; raises on any error."""
    statement: dict[str, Any] = json.loads(text)["results"][0] if status == 200 else {}
    if status != 200 or "error" in statement:
        raise AssertionError(f"InfluxDB answered {status}: {text}")
    return statement


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(directory: Path, http_port: int, rpc_port: int) -> Path:
    """An influxd config that keeps everything under `directory` and on loopback.

    Paths are written as JSON strings, which are valid TOML basic strings.
    """
    config = directory / "influxdb.conf"
    path = {name: json.dumps(str(directory / name)) for name in ("meta", "data", "wal")}
    config.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {path["meta"]}

[data]
  dir = {path["data"]}
  wal-dir = {path["wal"]}
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
""",
        encoding="utf-8",
    )
    return config


@contextmanager
def run_influxd(binary: str, directory: Path, attempts: int = 3) -> Iterator[InfluxDB]:
    """Start influxd on free ports under `directory`, yield a client, stop it."""
    for attempt in range(1, attempts + 1):
        workdir = directory / f"run{attempt}"
        workdir.mkdir()
        http_port, rpc_port = free_port(), free_port()
        config = write_config(workdir, http_port, rpc_port)
        with (workdir / "influxd.log").open("wb") as log:
            process = _spawn(binary, config, log)
            try:
                client = InfluxDB(f"http://127.0.0.1:{http_port}")
                try:
                    _wait_ready(process, client, workdir / "influxd.log")
                except StartupError:
                    if attempt == attempts:
                        raise
                    continue  # most likely a port was taken in between: new ports
                yield client
                return
            finally:
                stop_process(process)


def _spawn(binary: str, config: Path, log: Any) -> subprocess.Popen[bytes]:
    # INFLUXDB_* variables override the config file; keep them out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}
    return subprocess.Popen(
        [binary, "-config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_ready(process: subprocess.Popen[bytes], client: InfluxDB, log: Path) -> None:
    """Poll /ping until 204; fail early if the process exits."""
    wait_for_service(process, lambda: _answers(client), "influxd", log, StartupError)


def _answers(client: InfluxDB) -> bool:
    try:
        return client.ping() == 204
    except OSError:  # connection refused while it starts
        return False


# --- reading a line back -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """What a line says, read as the line-protocol docs and Telegraf's parsers read it."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    field_types: dict[str, str]
    timestamp: int | None


def parse_line(line: str) -> Line:
    """Read one line into its parts, independently of the encoder.

    Names unescape only ``\\,``, ``\\ `` and ``\\=``. InfluxDB 1.x also reads ``\\"`` in a
    measurement or field key as ``"``: a line it reads differently is ambiguous.
    """
    header, pos = _scan_token(line, 0, " ")
    parts = _split_unescaped(header, ",")
    measurement = _unescape_name(parts[0])
    tags = dict(_key_value(part) for part in parts[1:])
    fields, types, pos = _scan_fields(line, pos + 1)
    rest = line[pos:].strip()
    timestamp = int(rest) if rest else None
    return Line(measurement, tags, fields, types, timestamp)


def _scan_token(text: str, pos: int, stops: str) -> tuple[str, int]:
    """Raw text from `pos` to the first unescaped character of `stops`."""
    start = pos
    while pos < len(text) and text[pos] not in stops:
        pos += 2 if text[pos] == "\\" else 1
    return text[start:pos], pos


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, pos = [], 0
    while True:
        part, pos = _scan_token(text, pos, sep)
        parts.append(part)
        if pos >= len(text):
            return parts
        pos += 1


def _unescape_name(text: str) -> str:
    """Unescape `\\,`, `\\ ` and `\\=`; other backslashes stay."""
    out, pos = [], 0
    while pos < len(text):
        if text[pos] == "\\" and text[pos + 1 : pos + 2] in (",", " ", "="):
            pos += 1
        out.append(text[pos])
        pos += 1
    return "".join(out)


def _key_value(text: str) -> tuple[str, str]:
    key, pos = _scan_token(text, 0, "=")
    return _unescape_name(key), _unescape_name(text[pos + 1 :])


def _scan_fields(line: str, pos: int) -> tuple[dict[str, FieldValue], dict[str, str], int]:
    fields: dict[str, FieldValue] = {}
    types: dict[str, str] = {}
    while True:
        key, pos = _scan_token(line, pos, "=")
        name = _unescape_name(key)
        if line[pos + 1] == '"':
            text, pos = _scan_string(line, pos + 2)
            fields[name], types[name] = text, "string"
        else:
            text, pos = _scan_token(line, pos + 1, ", \n")
            fields[name], types[name] = _scalar(text)
        if line[pos : pos + 1] != ",":
            return fields, types, pos
        pos += 1


def _scan_string(line: str, pos: int) -> tuple[str, int]:
    """A quoted string field body starting at `pos`; returns it and the index after the quote."""
    out = []
    while line[pos] != '"':
        if line[pos] == "\\" and line[pos + 1] in '\\"':
            pos += 1
        out.append(line[pos])
        pos += 1
    return "".join(out), pos + 1


def _scalar(text: str) -> tuple[FieldValue, str]:
    if text.endswith("i"):
        return int(text[:-1]), "integer"
    if text.endswith("u"):
        return int(text[:-1]), "unsigned"
    if text in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return text[0] in "tT", "boolean"
    return float(text), "float"


# --- golden cases (tests/data/lineprotocol/cases.json) ---------------------------------

CASES_FILE = Path(__file__).parent / "data" / "lineprotocol" / "cases.json"


@dataclass(frozen=True, slots=True)
class Case:
    """A metric, the encoder options and the exact line they must give."""

    id: str
    metric: Metric
    options: EncoderOptions
    line: str


def decode_value(raw: Any) -> Any:
    """JSON value to field value: {"float": "nan"} and {"int": "1180..."} carry what JSON cannot."""
    if isinstance(raw, dict):
        ((kind, text),) = raw.items()
        return {"float": float, "int": int}[kind](text)
    return raw


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """Every case in the file, in file order."""
    cases = []
    for raw in json.loads(path.read_text(encoding="utf-8"))["cases"]:
        spec = raw["metric"]
        fields = {key: decode_value(value) for key, value in spec["fields"].items()}
        metric = Metric(spec["measurement"], spec["tags"], fields, spec["time_ns"])
        cases.append(Case(raw["id"], metric, EncoderOptions(**raw.get("options", {})), raw["line"]))
    return cases


CASES = load_cases()
