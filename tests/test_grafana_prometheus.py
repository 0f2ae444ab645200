"""The PromQL dashboards (grafana/dashboards/prometheus/), their datasources, and every
query against real data.

The files are checked as Grafana reads them and against their InfluxDB twins (same
panels, titles, layout and variables), and grafana/build_prometheus.py must write them
unchanged. Then every PromQL query of every panel and variable - with Grafana's
variables substituted as Grafana's Prometheus datasource substitutes them - runs against
a real Prometheus and a real VictoriaMetrics, both scraping a real telemon with the
scrape job of docker/prometheus.yml (`honor_labels: true`; only the interval and the
target changed): the Pharo simulator, telemon's own inputs and an output for the Pharo
VM and telemon dashboards, containers on a real Docker Engine for the containers one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from aiohttp import web
from dockerd import DockerEngine
from grafana_models import (
    APP_FIELDS,
    PHARO_CONTAINER_SCRIPT,
    PHARO_LABELS,
    WORKER_SCRIPT,
    datasource_refs,
    panels_of,
)
from helpers import free_port, require_executable, stop_process, wait_for_service, wait_until
from influx import InfluxDB
from victoria import run_victoria

from telemon.config import parse_config
from telemon.server import create_app
from telemon.simulator.app import start_simulator

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
INFLUX_DASHBOARDS = GRAFANA / "dashboards"
DASHBOARDS = INFLUX_DASHBOARDS / "prometheus"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
SCRAPE_CONFIG = ROOT / "docker" / "prometheus.yml"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
TELEMON_TOML = ROOT / "docker" / "telemon.toml"

UIDS = {
    "containers.json": "telemon-containers-prom",
    "pharo-vm.json": "telemon-pharo-vm-prom",
    "telemon.json": "telemon-self-prom",
}
INFLUX_UIDS = {"telemon-containers", "telemon-pharo-vm", "telemon-self"}
PROMETHEUS_UID = "telemon-prometheus"
VICTORIA_UID = "telemon-victoriametrics"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
# The InfluxDB units whose figures telemon's Prometheus names give in base units.
BASE_UNITS = {"ms": "s", "dtdurationms": "dtdurations", "percent": "percentunit"}

BACKENDS = ("prometheus", "victoriametrics")
SCRAPE_S = 1  # the tests' scrape interval (the datasource's timeInterval)
# Grafana's $__interval: range / max data points, never below timeInterval. The data
# spans seconds, so it is timeInterval.
INTERVAL_S = SCRAPE_S
SAMPLES = 6  # per series before querying: rate() over $__rate_interval (4 s) has several
DATA_DEADLINE_S = 45.0
MAX_BODY = 16 * 1024 * 1024
HOST = "telemon-ci"


@cache
def _load_builder() -> ModuleType:
    """grafana/build_prometheus.py, a script outside the package."""
    path = GRAFANA / "build_prometheus.py"
    spec = importlib.util.spec_from_file_location("build_prometheus", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load(name: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return model


def load_twin(name: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads((INFLUX_DASHBOARDS / name).read_text(encoding="utf-8"))
    return model




def target_list(name: str, panel_id: int) -> list[dict[str, Any]]:
    """The targets of panel `panel_id` of dashboard `name`."""
    [panel] = [p for p in panels_of(load(name)) if p["id"] == panel_id]
    targets: list[dict[str, Any]] = panel["targets"]
    return targets


def query_variables(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in model["templating"]["list"] if v["type"] == "query"]


ALL_QUERIES = [
    (name, panel["id"], target["refId"])
    for name in sorted(UIDS)
    for panel in panels_of(load(name))
    for target in panel.get("targets", [])
]
ALL_VARIABLES = [
    (name, variable["name"]) for name in sorted(UIDS) for variable in query_variables(load(name))
]
# All of each variable as Grafana sends it (the allValue), and every value ticked one by one.
SELECTIONS = ("all", "listed")


# --- Grafana's substitution for the Prometheus datasource -------------------------------

_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def escape_regex(value: str) -> str:
    """Grafana's `prometheusSpecialRegexEscape`: each regex special character gets two
    backslashes (one for the PromQL string, one for the regex), a backslash four."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


@dataclass(frozen=True)
class Variable:
    """A template variable's definition and the values its query gave."""

    name: str
    values: tuple[str, ...]
    all_value: str | None

    def formatted(self, selection: str) -> str:
        """The text Grafana puts in a query: All (its allValue, unescaped) or the values."""
        if selection == "all" and self.all_value is not None:
            return self.all_value
        escaped = [escape_regex(value) for value in self.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class Window:
    """The time range a dashboard shows, as Grafana's macros give it."""

    start: float
    end: float

    def macros(self) -> dict[str, str]:
        span = max(1, round(self.end - self.start))
        return {
            "__interval": f"{INTERVAL_S}s",
            "__interval_ms": str(INTERVAL_S * 1000),
            # Grafana: max($__interval + scrape interval, 4 * scrape interval).
            "__rate_interval": f"{max(INTERVAL_S + SCRAPE_S, 4 * SCRAPE_S)}s",
            "__range": f"{span}s",
            "__range_s": str(span),
            "__range_ms": str(span * 1000),
        }


def interpolate(
    text: str, variables: dict[str, Variable], macros: dict[str, str], selection: str = "all"
) -> str:
    """`text` with macros and template variables replaced; KeyError for an unknown name."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name in macros:
            return macros[name]
        if name not in variables:
            raise KeyError(f"{name!r} is neither a macro nor a variable of the dashboard")
        return variables[name].formatted(selection)

    return _VARIABLE.sub(replace, text)


def test_interpolate_as_grafana_does() -> None:
    """All is the allValue as it is; values are escaped regexes, several an alternation."""
    variables = {
        "host": Variable("host", ("a.b", "c+d"), ".*"),
        "one": Variable("one", ("x\\y",), ".+"),
    }
    macros = Window(0, 10).macros()
    query = 'rate(m{h=~"$host", o=~"${one}"}[$__rate_interval]) [[host]] $__range'
    assert interpolate(query, variables, macros) == 'rate(m{h=~".*", o=~".+"}[4s]) .* 10s'
    assert interpolate(query, variables, macros, "listed") == (
        'rate(m{h=~"(a\\\\.b|c\\\\+d)", o=~"x\\\\\\\\y"}[4s]) (a\\\\.b|c\\\\+d) 10s'
    )
    with pytest.raises(KeyError, match="nope"):
        interpolate("$nope", variables, macros)


def test_escaped_values_match_themselves() -> None:
    """What Grafana writes, read as a PromQL string, is a regex matching the value only."""
    for value in ("http://127.0.0.1:80/3/stats.json?fault=500", "a|b", "x\\y", "(c)"):
        promql_string = json.loads('"' + escape_regex(value) + '"')  # same escapes as PromQL
        assert re.fullmatch(promql_string, value)
        assert not re.fullmatch(promql_string, value + "x")


# --- the builder, the files and their twins ---------------------------------------------


def test_files_are_what_the_builder_writes() -> None:
    """Run `python grafana/build_prometheus.py` after changing it or an InfluxDB dashboard."""
    builder = _load_builder()
    expected = builder.files()
    assert {path.name for path in expected} == set(UIDS)
    for path, text in expected.items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name}: run the builder"


def test_folder_holds_the_three_dashboards() -> None:
    """One PromQL dashboard per InfluxDB dashboard, with its file name."""
    assert sorted(path.name for path in DASHBOARDS.glob("*.json")) == sorted(UIDS)
    assert sorted(path.name for path in INFLUX_DASHBOARDS.glob("*.json")) == sorted(UIDS)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_model(name: str) -> None:
    """Classic model, schemaVersion 39, the stable uid, no import placeholders."""
    text = (DASHBOARDS / name).read_text(encoding="utf-8")
    model = json.loads(text)
    assert "__inputs" not in model and "__requires" not in model
    assert "${DS_" not in text
    assert model["uid"] == UIDS[name]
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,40}", model["uid"])
    assert model.get("id") is None
    assert model["schemaVersion"] == SCHEMA_VERSION
    assert {"telemon", "prometheus"} <= set(model["tags"])


def test_each_kinds_links_list_only_its_own_kind() -> None:
    """A link lists the dashboards carrying all its tags: InfluxDB's list InfluxDB's."""
    for name in sorted(UIDS):
        for model, kind, other in ((load(name), "prometheus", "influxdb"),
                                   (load_twin(name), "influxdb", "prometheus")):  # fmt: skip
            assert kind in model["tags"] and other not in model["tags"], model["title"]
            assert all(kind in link["tags"] for link in model["links"]), model["title"]


def test_uids_and_titles_distinct_from_the_influxdb_dashboards() -> None:
    """One Grafana folder holds all six: uids unique in the instance, titles in the folder."""
    models = [load(name) for name in sorted(UIDS)] + [load_twin(name) for name in sorted(UIDS)]
    assert {model["uid"] for model in models} == set(UIDS.values()) | INFLUX_UIDS
    assert len({model["title"] for model in models}) == len(models)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_same_panels_as_the_influxdb_twin(name: str) -> None:
    """Ids, types, titles and layout as the twin's; units in base units."""
    twin = {panel["id"]: panel for panel in panels_of(load_twin(name))}
    panels = {panel["id"]: panel for panel in panels_of(load(name))}
    assert panels.keys() == twin.keys()
    for panel_id, panel in panels.items():
        theirs = twin[panel_id]
        for key in ("type", "title", "gridPos"):
            assert panel[key] == theirs[key], (panel_id, key)
        unit = theirs.get("fieldConfig", {}).get("defaults", {}).get("unit")
        ours = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert ours == BASE_UNITS.get(unit, unit), (panel["title"], unit, ours)
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_ids_are_unique(name: str) -> None:
    ids = [panel["id"] for panel in panels_of(load(name))]
    assert all(type(i) is int for i in ids) and len(set(ids)) == len(ids)




@pytest.mark.parametrize("name", sorted(UIDS))
def test_every_panel_on_the_prometheus_datasource(name: str) -> None:
    """Panels, targets and variables use the `datasource` variable, Prometheus by default."""
    model = load(name)
    refs = list(datasource_refs(model))
    assert refs and all(ref == DATASOURCE for ref in refs), refs
    for panel in panels_of(model):
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE
            assert all(target["datasource"] == DATASOURCE for target in panel["targets"])
    [chooser] = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
    assert chooser["name"] == "datasource" and chooser["query"] == "prometheus"
    assert chooser["current"]["value"] == PROMETHEUS_UID
    assert model["templating"]["list"][0] is chooser  # defined before the variables using it


@pytest.mark.parametrize("name", sorted(UIDS))
def test_variables_are_the_twins(name: str) -> None:
    """The twin's variables by name and label, as label_values() queries; multi-value with
    All, chained only to variables defined before them."""
    twin = load_twin(name)["templating"]["list"]
    ours = query_variables(load(name))
    assert [(v["name"], v["label"]) for v in ours] == [(v["name"], v["label"]) for v in twin]
    defined: list[str] = []
    for variable in ours:
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["allValue"] in (".*", ".+")
        assert variable["refresh"] in (1, 2)
        assert _LABEL_VALUES.fullmatch(variable["query"]), variable["query"]
        used = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(variable["query"])}
        assert used <= set(defined), (variable["name"], used)
        defined.append(variable["name"])


_COUNTER = re.compile(r"\b\w+_total\b")
_RANGE_FUNCTION = re.compile(r"\b(rate|increase|\w+_over_time)\((.+?)\[([^\]]+)\]\)")
_SUM_BY = re.compile(r"\bsum by \(([^)]*)\)")


def all_targets(name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) of every target of dashboard `name`."""
    for panel in panels_of(load(name)):
        for target in panel.get("targets", []):
            yield panel, target


@pytest.mark.parametrize("name", sorted(UIDS))
def test_counters_only_through_rate_or_increase(name: str) -> None:
    """A `_total` is charted by its rate over $__rate_interval, or its increase over
    $__rate_interval or the time range shown ($__range); never as it is."""
    for _, target in all_targets(name):
        expr = target["expr"]
        windows = _RANGE_FUNCTION.findall(expr)
        for function, _, window in windows:
            assert window == "$__rate_interval" or (function, window) == ("increase", "$__range")
        counted = [
            counter
            for function, inner, _ in windows
            if function in ("rate", "increase")
            for counter in _COUNTER.findall(inner)
        ]
        assert sorted(_COUNTER.findall(expr)) == sorted(counted), expr


@pytest.mark.parametrize("name", sorted(UIDS))
def test_targets_as_grafana_runs_them(name: str) -> None:
    """Unique refIds; gauges and stats without a sparkline are instant queries; a legend
    names only labels a `sum by` keeps."""
    for panel in panels_of(load(name)):
        targets = panel.get("targets", [])
        assert len({target["refId"] for target in targets}) == len(targets)
    for panel, target in all_targets(name):
        instant = panel["type"] == "gauge" or (
            panel["type"] == "stat" and panel["options"]["graphMode"] == "none"
        )
        assert target["instant"] is instant and target["range"] is not instant
        by = _SUM_BY.search(target["expr"])
        if by:
            kept = {label.strip() for label in by.group(1).split(",")}
            assert set(_LEGEND_LABEL.findall(target["legendFormat"])) <= kept, target["expr"]


# --- provisioning and the scrape config -------------------------------------------------


def _datasources() -> dict[str, dict[str, Any]]:
    """Every provisioned datasource by uid, across the files."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(DATASOURCES.glob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert config["apiVersion"] == 1
        for source in config["datasources"]:
            assert source["uid"] not in found, source["uid"]
            found[source["uid"]] = source
    return found


def _scrape_job() -> dict[str, Any]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    return dict(job)


def test_datasources_side_by_side() -> None:
    """InfluxDB (the default), Prometheus and VictoriaMetrics, all of type prometheus but
    InfluxDB's, their minimum interval the scrape interval of docker/prometheus.yml."""
    sources = _datasources()
    assert {"telemon-influxdb", PROMETHEUS_UID, VICTORIA_UID} <= set(sources)
    assert [uid for uid, source in sources.items() if source.get("isDefault")] == [
        "telemon-influxdb"
    ]
    assert len({source["name"] for source in sources.values()}) == len(sources)
    interval = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))["global"]
    for uid, url in ((PROMETHEUS_UID, "http://prometheus:9090"), (VICTORIA_UID, None)):
        source = sources[uid]
        assert source["type"] == "prometheus" and source["access"] == "proxy"
        assert source["url"] == (url or "http://victoriametrics:8428")
        assert source["jsonData"]["timeInterval"] == interval["scrape_interval"]
        assert source["jsonData"]["httpMethod"] == "POST"


def test_dashboards_default_to_the_provisioned_prometheus() -> None:
    builder = _load_builder()
    sources = _datasources()
    assert builder.DEFAULT_DATASOURCE_UID == PROMETHEUS_UID
    assert sources[PROMETHEUS_UID]["name"] == builder.DEFAULT_DATASOURCE_NAME


def test_scrape_config_keeps_telemons_labels() -> None:
    """honor_labels, Prometheus's text format asked for, the compose stack's telemon."""
    job = _scrape_job()
    assert job["honor_labels"] is True
    assert job["params"] == {"format": ["prometheus"]}
    http = tomllib.loads(TELEMON_TOML.read_text(encoding="utf-8"))["http"]
    port = http["listen"].rpartition(":")[2]
    assert job["metrics_path"] == http.get("path", "/metrics")
    assert job["static_configs"] == [{"targets": [f"telemon:{port}"]}]


def test_promtool_accepts_the_scrape_config_and_the_rules_it_loads(tmp_path: Path) -> None:
    """As the compose stack mounts them: the config, and alerts/ beside it."""
    promtool = require_executable("promtool", "prometheus")
    shutil.copy(SCRAPE_CONFIG, tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "alerts", tmp_path / "alerts")
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout, done.stdout


def test_compose_mounts_the_alert_rules() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert "../alerts:/etc/prometheus/alerts:ro" in services["prometheus"]["volumes"]
    # VictoriaMetrics reads the same file but refuses fields it does not use by default.
    assert "-promscrape.config.strictParse=false" in services["victoriametrics"]["command"]


def test_compose_runs_both_scrapers_with_the_scrape_config() -> None:
    """The datasources' hosts are services of the stack, reading docker/prometheus.yml."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    mount = "./prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in services["prometheus"]["volumes"]
    assert mount in services["victoriametrics"]["volumes"]
    command = services["victoriametrics"]["command"]
    assert "-promscrape.config=/etc/prometheus/prometheus.yml" in command
    assert "-httpListenAddr=:8428" in command


# --- real servers: Prometheus and VictoriaMetrics scraping a real telemon --------------


class QueryError(AssertionError):
    """The server refused a query (its error text), or answered something unexpected."""


@dataclass(frozen=True)
class Backend:
    """A Prometheus-compatible HTTP API holding a scrape, and the window the data spans."""

    name: str
    url: str
    window: Window

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful GET /api/v1/<path> (bounded read)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as error:
            raise QueryError(f"{self.name}: {params}: {error.read(4096).decode()}") from None
        if len(body) > MAX_BODY:
            raise QueryError(f"{self.name}: answer larger than {MAX_BODY} bytes")
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise QueryError(f"{self.name}: {params}: {answer}")
        return answer["data"]

    def run(self, expr: str, instant: bool) -> list[dict[str, Any]]:
        """The query as Grafana sends it: instant at the range's end, or over the range."""
        if instant:
            data = self.api("query", query=expr, time=f"{self.window.end:.3f}")
        else:
            data = self.api(
                "query_range",
                query=expr,
                start=f"{self.window.start:.3f}",
                end=f"{self.window.end:.3f}",
                step=f"{INTERVAL_S}s",  # Grafana's step is $__interval
            )
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, query: str) -> tuple[str, ...]:
        """A `label_values([selector, ]label)` variable query, sorted as `sort: 1`."""
        match = _LABEL_VALUES.fullmatch(query)
        assert match, query
        selector, label = match.groups()
        params = {"start": f"{self.window.start:.3f}", "end": f"{self.window.end:.3f}"}
        if selector:
            params["match[]"] = selector
        return tuple(sorted(self.api(f"label/{label}/values", **params)))

    def samples_each(self, names: tuple[str, ...]) -> float:
        """The fewest samples any series of `names` has in the last minute (0: none yet)."""
        fewest = math.inf
        for name in names:
            result = self.api("query", query=f"min(count_over_time({name}[1m]))")["result"]
            fewest = min(fewest, float(result[0]["value"][1]) if result else 0.0)
        return fewest


def values_of(result: list[dict[str, Any]]) -> list[float]:
    """Every finite value of an instant vector or a matrix."""
    points = [s["value"] for s in result if "value" in s]
    points += [point for s in result for point in s.get("values", [])]
    return [v for v in (float(point[1]) for point in points) if math.isfinite(v)]


@dataclass
class Scrape:
    """Prometheus and VictoriaMetrics holding the same telemon's samples."""

    backends: dict[str, Backend]
    variables: dict[tuple[str, str, str], dict[str, Variable]]

    def variables_of(self, backend: str, name: str, selection: str) -> dict[str, Variable]:
        """The dashboard's variables, each filled by its own query after the ones before."""
        key = (backend, name, selection)
        if key not in self.variables:
            server = self.backends[backend]
            resolved: dict[str, Variable] = {}
            for spec in query_variables(load(name)):
                query = interpolate(spec["query"], resolved, server.window.macros(), selection)
                values = server.label_values(query)
                resolved[spec["name"]] = Variable(spec["name"], values, spec.get("allValue"))
            self.variables[key] = resolved
        return self.variables[key]

    def run_target(
        self, backend: str, name: str, target: dict[str, Any], selection: str = "all"
    ) -> tuple[str, list[dict[str, Any]]]:
        """A target of dashboard `name` substituted and run as Grafana does: (query, result)."""
        server = self.backends[backend]
        variables = self.variables_of(backend, name, selection)
        expr = interpolate(target["expr"], variables, server.window.macros(), selection)
        return expr, server.run(expr, target["instant"])

    def panel(self, backend: str, name: str, panel_id: int) -> list[list[dict[str, Any]]]:
        """The results of the panel's targets (every variable at All)."""
        return [self.run_target(backend, name, t)[1] for t in target_list(name, panel_id)]


def _scrape_config(target: str) -> dict[str, Any]:
    """docker/prometheus.yml's job, scraping `target` every SCRAPE_S seconds."""
    job = _scrape_job()
    job["static_configs"] = [{"targets": [target]}]
    interval = f"{SCRAPE_S}s"
    scrape_global = {"scrape_interval": interval, "scrape_timeout": interval}
    return {"global": scrape_global, "scrape_configs": [job]}


@contextlib.contextmanager
def run_prometheus(directory: Path, config: Path) -> Iterator[str]:
    """A real `prometheus` reading `config`; its URL. Stopped after."""
    binary = require_executable("prometheus", "prometheus")
    for attempt in range(1, 4):
        port = free_port()  # taken meanwhile: the next attempt takes another
        log = directory / f"prometheus{attempt}.log"
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / f'data{attempt}'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for_service(process, partial(_ready, f"{url}/-/ready"), "prometheus", log)
            except RuntimeError:
                if attempt == 3:
                    raise
                continue
            yield url
            return
        finally:
            stop_process(process)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:  # refused, or 503 while it starts
        return False


@contextlib.contextmanager
def scrapers(directory: Path, target: str) -> Iterator[dict[str, str]]:
    """Prometheus and VictoriaMetrics scraping `target` with the documented job."""
    config = directory / "prometheus.yml"
    config.write_text(json.dumps(_scrape_config(target), indent=2), encoding="utf-8")
    with (
        run_prometheus(directory, config) as prometheus,
        run_victoria(directory / "vm", flags=[f"-promscrape.config={config}"]) as victoria,
    ):
        yield {"prometheus": prometheus, "victoriametrics": victoria.url}


async def serve_until_scraped(
    config: dict[str, Any], port: int, urls: dict[str, str], required: tuple[str, ...]
) -> Window:
    """Run telemon with `config` on `port` until both scrapers hold SAMPLES of every
    series named in `required`; the window their samples span."""
    base = {"global_tags": {"host": HOST}, "agent": {"interval": "250ms"}}
    runner = web.AppRunner(create_app(parse_config({**base, **config})))
    await runner.setup()
    start = time.time()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        pending = Window(start, start)
        probes = [Backend(name, url, pending) for name, url in urls.items()]

        async def scraped() -> bool:
            counts = [await asyncio.to_thread(p.samples_each, required) for p in probes]
            return min(counts) >= SAMPLES

        await wait_until(
            scraped,
            timeout=DATA_DEADLINE_S,
            every=0.5,
            what=f"{SAMPLES} samples of every series of {', '.join(required)} in both scrapers",
        )
        return Window(start, time.time())
    finally:
        await runner.cleanup()








# The simulated images, by instance name and path on the simulator.
INSTANCES = {"blog": "/metrics", "shop": "/1/stats.json", "wiki": "/2/vm/parameters"}
FAILING_PATH = "/3/stats.json?fault=500"
PHARO_REQUIRED = (
    "pharo_memory_bytes",
    "pharo_full_gcs_total",
    "app_entities",
    "telemon_input_up",
    "telemon_scrapes_total",
    "telemon_output_written_total",
)


async def run_pharo_telemon(port: int, urls: dict[str, str], influxdb: InfluxDB, db: str) -> Window:
    """Simulator + telemon with the pharo, process, python and fields inputs and an output."""
    simulator, sim_port = await start_simulator("127.0.0.1", 0, vms=4, seed=11)
    base = f"http://127.0.0.1:{sim_port}"
    targets = {base + path: name for name, path in INSTANCES.items()}
    fields = APP_FIELDS
    config = {
        "inputs": {
            "pharo": [
                {"urls": list(targets), "instances": targets},
                # Always failing: the telemon dashboard has a target down to show.
                {"urls": [base + FAILING_PATH]},
            ],
            "process": [{}],
            "python": [{}],
            "fields": [{"measurement": "app", "tags": {"service": "blog"}, "fields": fields}],
        },
        "outputs": {
            "influxdb": [{"urls": [influxdb.url], "database": db, "flush_interval": "250ms"}]
        },
    }
    try:
        return await serve_until_scraped(config, port, urls, PHARO_REQUIRED)
    finally:
        await simulator.cleanup()


def _scrape(
    tmp_path_factory: pytest.TempPathFactory, serve: Callable[[int, dict[str, str]], Window]
) -> Iterator[Scrape]:
    port = free_port()
    directory = tmp_path_factory.mktemp("grafana-prometheus")
    with scrapers(directory, f"127.0.0.1:{port}") as urls:
        window = serve(port, urls)
        yield Scrape({name: Backend(name, url, window) for name, url in urls.items()}, {})


@pytest.fixture(scope="module")
def pharo_scrape(tmp_path_factory: pytest.TempPathFactory, influxdb: InfluxDB) -> Iterator[Scrape]:
    """Both scrapers holding what a telemon polling the simulator served."""
    db = influxdb.create_database(f"grafana_prom_{uuid.uuid4().hex[:8]}")

    def serve(port: int, urls: dict[str, str]) -> Window:
        return asyncio.run(run_pharo_telemon(port, urls, influxdb, db))

    yield from _scrape(tmp_path_factory, serve)


DOCKER_REQUIRED = (
    "docker_container_cpu_usage_seconds_total",
    "docker_container_mem_usage_bytes",
    "docker_container_net_rx_bytes_total",
    "docker_container_blkio_io_service_bytes_recursive_read_total",
    "pharo_memory_bytes",
)


@pytest.fixture(scope="module")
def docker_scrape(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine
) -> Iterator[Scrape]:
    """Both scrapers holding what a telemon watching two containers (one a Pharo
    stand-in) served."""
    prefix = f"tm-grafprom-{uuid.uuid4().hex[:8]}"
    docker_engine.run(PHARO_CONTAINER_SCRIPT, name=f"{prefix}-pharo", labels=PHARO_LABELS)
    docker_engine.run(WORKER_SCRIPT, name=f"{prefix}-worker")
    config = {
        "inputs": {
            "docker": [
                {
                    "endpoint": docker_engine.endpoint,
                    "container_name_include": [f"{prefix}-*"],
                    "discover_pharo": True,
                }
            ]
        }
    }
    try:
        yield from _scrape(
            tmp_path_factory,
            lambda port, urls: asyncio.run(
                serve_until_scraped(config, port, urls, DOCKER_REQUIRED)
            ),
        )
    finally:
        docker_engine.remove(f"{prefix}-pharo", f"{prefix}-worker")


def scrape_for(request: pytest.FixtureRequest, name: str) -> Scrape:
    fixture = "docker_scrape" if name == "containers.json" else "pharo_scrape"
    scrape: Scrape = request.getfixturevalue(fixture)
    return scrape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("name", "variable"), ALL_VARIABLES)
def test_variable_query_gives_values(
    request: pytest.FixtureRequest, name: str, variable: str, selection: str, backend: str
) -> None:
    """Each variable's label_values() query, run as Grafana runs it, lists values."""
    variables = scrape_for(request, name).variables_of(backend, name, selection)
    assert variables[variable].values


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(
    ("name", "panel_id", "ref_id"),
    ALL_QUERIES,
    ids=[f"{name}-{panel}-{ref}" for name, panel, ref in ALL_QUERIES],
)
def test_panel_query_returns_data(
    request: pytest.FixtureRequest,
    name: str,
    panel_id: int,
    ref_id: str,
    selection: str,
    backend: str,
) -> None:
    """Every target's query, substituted as Grafana does, gives a series with values."""
    [target] = [t for t in target_list(name, panel_id) if t["refId"] == ref_id]
    expr, result = scrape_for(request, name).run_target(backend, name, target, selection)
    assert result, f"{backend}: no series for {expr}"
    assert values_of(result), f"{backend}: no finite value for {expr}"


def legends(legend_format: str, result: list[dict[str, Any]]) -> list[str]:
    """The series' names as Grafana shows them: `{{label}}` replaced by its value."""

    def shown(metric: dict[str, str]) -> str:
        return _LEGEND_LABEL.sub(lambda m: metric.get(m.group(1), ""), legend_format)

    return sorted(shown(series["metric"]) for series in result)


@pytest.mark.parametrize(
    ("name", "panel_id", "ref_id"),
    ALL_QUERIES,
    ids=[f"{name}-{panel}-{ref}" for name, panel, ref in ALL_QUERIES],
)
def test_victoriametrics_gives_the_same_series(
    request: pytest.FixtureRequest, name: str, panel_id: int, ref_id: str
) -> None:
    """Same scrape, same query: VictoriaMetrics shows the series Prometheus does."""
    scrape = scrape_for(request, name)
    [target] = [t for t in target_list(name, panel_id) if t["refId"] == ref_id]
    prometheus, victoria = (
        legends(target["legendFormat"], scrape.run_target(backend, name, target)[1])
        for backend in BACKENDS
    )
    assert victoria == prometheus


# --- what the panels show ---------------------------------------------------------------


def _last(result: list[dict[str, Any]]) -> dict[str, float]:
    """Matrix -> {instance: its last value}."""
    return {s["metric"]["instance"]: float(s["values"][-1][1]) for s in result}


@pytest.mark.parametrize("backend", BACKENDS)
def test_pharo_labels_are_telemons(pharo_scrape: Scrape, backend: str) -> None:
    """With honor_labels, `instance` is the Pharo target's name, `host` telemon's tag."""
    variables = pharo_scrape.variables_of(backend, "pharo-vm.json", "all")
    # The simulator's /metrics serves Telemon's lines, tagged host=pharo-0 by the image.
    assert variables["host"].values == tuple(sorted({HOST, "pharo-0"}))
    assert set(variables["instance"].values) == set(INSTANCES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_used_memory_is_memory_minus_free(pharo_scrape: Scrape, backend: str) -> None:
    """The "Used memory" stat is memory - free of each instance, at each step."""
    [used] = pharo_scrape.panel(backend, "pharo-vm.json", 4)
    server = pharo_scrape.backends[backend]
    memory, free = (
        _last(server.run(name, False)) for name in ("pharo_memory_bytes", "pharo_memory_free_bytes")
    )
    got = _last(used)
    assert got == {instance: memory[instance] - free[instance] for instance in INSTANCES}
    assert all(value > 0 for value in got.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_targets_up_and_down(pharo_scrape: Scrape, backend: str) -> None:
    """The stats count the failing target as down and every other target as up."""
    [[up]], [[down]] = (
        pharo_scrape.panel(backend, "telemon.json", panel_id) for panel_id in (2, 3)
    )
    targets = pharo_scrape.backends[backend].run("telemon_input_up", True)
    assert float(down["value"][1]) == 1
    assert float(up["value"][1]) == len(targets) - 1 > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_rates_are_per_minute_and_non_negative(pharo_scrape: Scrape, backend: str) -> None:
    full, incremental = pharo_scrape.panel(backend, "pharo-vm.json", 12)
    values = values_of(full) + values_of(incremental)
    assert values and min(values) >= 0
    assert max(values_of(incremental)) > 0  # the simulated VMs scavenge several times a second


@pytest.mark.parametrize("backend", BACKENDS)
def test_pharo_vm_beside_its_container(docker_scrape: Scrape, backend: str) -> None:
    """Both targets of the panel give a series for the Pharo container, by container_name."""
    container, vm = (
        {s["metric"]["container_name"] for s in result if s["values"]}
        for result in docker_scrape.panel(backend, "containers.json", 5)
    )
    [pharo] = [name for name in container if name.endswith("-pharo")]
    assert vm == {pharo}
    variables = docker_scrape.variables_of(backend, "containers.json", "all")
    assert variables["host"].values == (HOST,)
    assert sorted(name.rsplit("-", 1)[1] for name in variables["container"].values) == [
        "pharo",
        "worker",
    ]
