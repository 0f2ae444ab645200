"""The Grafana folder: provisioning YAML, dashboard JSON, and every query against real data.

Without Grafana: the files are checked as Grafana reads them (Classic JSON
model, schemaVersion 39, provisioned datasource uid), and every InfluxQL query
of every panel - after the substitutions Grafana's InfluxDB datasource makes -
runs against a real InfluxDB 1.x holding what a real telemon served: the
Pharo simulator, the process, python and fields inputs and the outputs'
counters, scraped over HTTP a few times and written as they came. The values
of the template variables come from running the variables' own queries, as
Grafana does when it loads a dashboard.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
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
from helpers import wait_until
from influx import InfluxDB, parse_line

from telemon.config import parse_config
from telemon.server import create_app
from telemon.simulator.app import start_simulator

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "influxdb.yaml"
PROVIDERS_YAML = GRAFANA / "provisioning" / "dashboards" / "telemon.yaml"
COMPOSE = ROOT / "docker" / "docker-compose.yml"

DATASOURCE_UID = "telemon-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
# The docker-compose file mounts grafana/provisioning and grafana/dashboards here.
PROVISIONING_MOUNT = "/etc/grafana/provisioning"
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
UIDS = {
    "containers.json": "telemon-containers",
    "pharo-vm.json": "telemon-pharo-vm",
    "telemon.json": "telemon-self",
}
SCHEMA_VERSION = 39

# What the test substitutes for Grafana's macros. Data spans a few seconds, so
# $__interval is 1s: derivatives need two intervals with points.
TIME_FILTER = "time > now() - 1h"
INTERVAL_S = 1
MACROS = {
    "timeFilter": TIME_FILTER,
    "__interval": f"{INTERVAL_S}s",
    "__interval_ms": str(INTERVAL_S * 1000),
}

HOST = "telemon-ci"
SCRAPE_DEADLINE_S = 30.0
SCRAPE_PAUSE_S = 0.2
DISTINCT_SECONDS = 3  # of data per measurement: 2+ complete 1s intervals for derivatives

# Telegraf's inputs.docker measurements (telemon's [[inputs.docker]] writes the same).
DOCKER_MEASUREMENTS = (
    "docker_container_cpu",
    "docker_container_mem",
    "docker_container_net",
    "docker_container_blkio",
)


def load(name: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return model


def dashboard_files() -> list[str]:
    return sorted(path.name for path in DASHBOARDS.glob("*.json"))




def queries_of(name: str) -> list[tuple[str, int, str, str]]:
    """(file, panel id, refId, query) of every target, for parametrizing."""
    return [
        (name, panel["id"], target["refId"], target["query"])
        for panel in panels_of(load(name))
        for target in panel.get("targets", [])
    ]


ALL_QUERIES = [query for name in sorted(UIDS) for query in queries_of(name)]
ALL_VARIABLES = [
    (name, variable["name"])
    for name in sorted(UIDS)
    for variable in load(name)["templating"]["list"]
]


# --- Grafana's substitution for the InfluxDB datasource (InfluxQL) --------------------

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def escape_regex(value: str) -> str:
    """Grafana's `escapeRegex`: backslash before each regex special character and `/`."""
    return _REGEX_SPECIAL.sub(lambda match: "\\" + match.group(0), value)


@dataclass(frozen=True)
class Variable:
    """A template variable's definition and the values its query gave."""

    name: str
    multi: bool
    values: tuple[str, ...]

    def formatted(self) -> str:
        """The text Grafana puts in a query with every value selected (All)."""
        if not self.multi:
            return self.values[0]
        escaped = [escape_regex(value) for value in self.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query: str, variables: dict[str, Variable]) -> str:
    """`query` with macros and template variables replaced; KeyError for an unknown name."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name in MACROS:
            return MACROS[name]
        if name not in variables:
            raise KeyError(f"{name!r} is neither a macro nor a variable of the dashboard")
        return variables[name].formatted()

    return _VARIABLE.sub(replace, query)


def test_interpolate_as_grafana_does() -> None:
    """All of a multi-value variable is a regex alternation of escaped values; one is bare."""
    variables = {
        "host": Variable("host", True, ("a.b", "c/d")),
        "one": Variable("one", True, ("x+y",)),
        "plain": Variable("plain", False, ("v.1",)),
    }
    query = '"h" =~ /^$host$/ AND "o" =~ /^${one}$/ AND "p" = \'[[plain]]\' AND $timeFilter'
    assert interpolate(query, variables) == (
        '"h" =~ /^(a\\.b|c\\/d)$/ AND "o" =~ /^x\\+y$/ AND "p" = \'v.1\' AND ' + TIME_FILTER
    )
    assert interpolate("GROUP BY time($__interval) $__interval_ms", {}) == "GROUP BY time(1s) 1000"
    with pytest.raises(KeyError, match="nope"):
        interpolate("$nope", variables)


# --- the provisioning files ----------------------------------------------------------


def test_datasource_provisioning() -> None:
    """One InfluxQL datasource at http://influxdb:8086, its uid fixed, its database from the env."""
    config = yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "influxdb"
    assert source["access"] == "proxy"
    assert source["url"] == "http://influxdb:8086"
    assert source["isDefault"] is True
    json_data = source["jsonData"]
    assert json_data.get("version", "InfluxQL") == "InfluxQL"
    assert json_data["httpMode"] in ("GET", "POST")
    # Grafana expands $VAR and ${VAR} in values (os.ExpandEnv); it has no ${VAR:-default}.
    assert json_data["dbName"] == source["database"] == "${INFLUXDB_DB}"
    assert re.fullmatch(r"\d+s", json_data["timeInterval"])


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    """A file provider on the folder where docker-compose mounts grafana/dashboards."""
    config = yaml.safe_load(PROVIDERS_YAML.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file" and provider["name"]
    assert provider["options"]["path"] == DASHBOARDS_MOUNT
    assert not provider["options"].get("foldersFromFilesStructure")
    assert provider["allowUiUpdates"] is False


# --- the dashboard files ------------------------------------------------------------


def test_every_dashboard_is_known() -> None:
    """The folder holds exactly the dashboards with the stable uids below."""
    assert dashboard_files() == sorted(UIDS)


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
    assert model["title"] and "telemon" in model["tags"]
    assert model["time"]["from"].startswith("now-")


def test_dashboard_uids_and_titles_are_unique() -> None:
    models = [load(name) for name in sorted(UIDS)]
    assert len({model["uid"] for model in models}) == len(models)
    assert len({model["title"] for model in models}) == len(models)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_ids_and_grid(name: str) -> None:
    """Unique integer ids; each gridPos inside the 24 columns; no two panels overlap."""
    panels = list(panels_of(load(name)))
    ids = [panel["id"] for panel in panels]
    assert all(type(i) is int for i in ids)
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        assert all(type(v) is int for v in (x, y, w, h)), panel["id"]
        assert 1 <= w <= 24 and h >= 1 and x >= 0 and y >= 0, panel["id"]
        assert x + w <= 24, panel["id"]
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in cells, f"panels {cells.get(cell)} and {panel['id']} overlap"
            cells[cell] = panel["id"]




@pytest.mark.parametrize("name", sorted(UIDS))
def test_only_the_provisioned_datasource(name: str) -> None:
    """Panels, targets and variables all name the provisioned datasource by uid."""
    model = load(name)
    refs = list(datasource_refs(model))
    assert refs and all(ref == DATASOURCE for ref in refs), refs
    for panel in panels_of(model):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
    for variable in model["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE
        assert variable["type"] == "query"
        assert variable["query"].startswith("SHOW TAG VALUES FROM ")


@pytest.mark.parametrize("name", sorted(UIDS))
def test_targets_are_raw_influxql(name: str) -> None:
    """Raw InfluxQL with $timeFilter; aliases only name tags the query groups by."""
    for panel in panels_of(load(name)):
        targets = panel.get("targets", [])
        assert len({target["refId"] for target in targets}) == len(targets)
        for target in targets:
            query = target["query"]
            assert target["rawQuery"] is True and target["resultFormat"] == "time_series"
            assert query.startswith("SELECT ") and "$timeFilter" in query, query
            group_by = query.rsplit("GROUP BY", 1)[-1] if "GROUP BY" in query else ""
            for tag in re.findall(r"\$tag_(\w+)", target.get("alias", "")):
                assert f'"{tag}"' in group_by, (panel["title"], tag)
            if "GROUP BY time(" in query:
                # Grafana's InfluxQL rule: grouping by time needs an aggregate on every field.
                assert re.search(r"\b(mean|max|min|last|sum|count)\(", query), query


@pytest.mark.parametrize("name", sorted(UIDS))
def test_variables(name: str) -> None:
    """Multi-value with All, chained only to variables defined before them."""
    defined: list[str] = []
    for variable in load(name)["templating"]["list"]:
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["refresh"] in (1, 2)
        used = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(variable["query"])}
        assert used <= set(defined), (variable["name"], used)
        defined.append(variable["name"])


def test_compose_mounts_the_grafana_folders() -> None:
    """docker-compose mounts the folders where the provisioning files expect them."""
    if not COMPOSE.is_file():
        pytest.skip(f"{COMPOSE.relative_to(ROOT)} is not written yet")
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if isinstance(v, str)}
    assert mounts[PROVISIONING_MOUNT] == "../grafana/provisioning"
    assert mounts[DASHBOARDS_MOUNT] == "../grafana/dashboards"
    # The datasource's database is ${INFLUXDB_DB} of Grafana's environment, the
    # database InfluxDB creates and Telegraf writes to.
    database = compose["services"]["influxdb"]["environment"]["INFLUXDB_DB"]
    assert grafana["environment"]["INFLUXDB_DB"] == database
    assert database.endswith(":-telemon}")


# --- real data: a telemon scraped over HTTP, written into InfluxDB --------------------







@dataclass
class Scraped:
    """A database holding what a real telemon served over a few scrapes."""

    influxdb: InfluxDB
    db: str
    scrapes: int = 0
    # Distinct seconds with points, per measurement ("pharo@container": pharo
    # lines carrying a container_name tag).
    seconds: dict[str, set[int]] = field(default_factory=dict)
    variables: dict[str, dict[str, Variable]] = field(default_factory=dict)

    def series(self, query: str) -> list[dict[str, Any]]:
        return self.influxdb.series(self.db, query)

    def variables_of(self, name: str) -> dict[str, Variable]:
        """The dashboard's variables, each resolved by its own query (after the ones before)."""
        if name not in self.variables:
            resolved: dict[str, Variable] = {}
            for spec in load(name)["templating"]["list"]:
                query = interpolate(spec["query"], resolved)
                rows = [row for s in self.series(query) for row in s["values"]]
                values = tuple(sorted({row[1] for row in rows}))
                resolved[spec["name"]] = Variable(spec["name"], spec["multi"], values)
            self.variables[name] = resolved
        return self.variables[name]

    def record(self, body: bytes) -> None:
        for line in body.decode().splitlines():
            parsed = parse_line(line)
            assert parsed.timestamp is not None
            second = parsed.timestamp // 1_000_000_000
            self.seconds.setdefault(parsed.measurement, set()).add(second)
            if parsed.measurement == "pharo" and "container_name" in parsed.tags:
                self.seconds.setdefault("pharo@container", set()).add(second)


async def scrape_into(scraped: Scraped, url: str, required: tuple[str, ...]) -> None:
    """GET `url` until every required measurement has points in several seconds; write each body."""
    async with aiohttp.ClientSession() as session:

        async def enough_seconds() -> bool:
            async with session.get(url) as response:
                assert response.status == 200
                body = await response.read()
            status, text = await asyncio.to_thread(scraped.influxdb.write, scraped.db, body)
            assert status == 204, text
            scraped.scrapes += 1
            scraped.record(body)
            return all(len(scraped.seconds.get(m, ())) >= DISTINCT_SECONDS for m in required)

        await wait_until(
            enough_seconds,
            timeout=SCRAPE_DEADLINE_S,
            every=SCRAPE_PAUSE_S,
            what=f"points of {', '.join(required)} in {DISTINCT_SECONDS} distinct seconds",
            retry_on=(),  # a refused scrape or write fails at once
        )


async def serve_and_scrape(
    scraped: Scraped, config: dict[str, Any], required: tuple[str, ...]
) -> None:
    """Run telemon with `config` on a real port and scrape its /metrics into the database."""
    base = {"global_tags": {"host": HOST}, "agent": {"interval": "250ms"}}
    runner = web.AppRunner(create_app(parse_config({**base, **config})))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        await scrape_into(scraped, f"http://{host}:{port}/metrics", required)
    finally:
        await runner.cleanup()


# The simulated images, by instance name and path on the simulator.
INSTANCES = {"blog": "/metrics", "shop": "/1/stats.json", "wiki": "/2/vm/parameters"}
FAILING_PATH = "/3/stats.json?fault=500"


async def run_telemon(scraped: Scraped, push_db: str) -> None:
    """Simulator + telemon with the pharo, process, python and fields inputs and an output."""
    simulator, sim_port = await start_simulator("127.0.0.1", 0, vms=4, seed=11)
    base = f"http://127.0.0.1:{sim_port}"
    urls = {base + path: name for name, path in INSTANCES.items()}
    fields = APP_FIELDS
    config = {
        "inputs": {
            "pharo": [
                {"urls": list(urls), "instances": urls},
                # Always failing: the telemon dashboard has a target down to show.
                {"urls": [base + FAILING_PATH]},
            ],
            "process": [{}],
            "python": [{}],
            "fields": [{"measurement": "app", "tags": {"service": "blog"}, "fields": fields}],
        },
        "outputs": {
            "influxdb": [
                {"urls": [scraped.influxdb.url], "database": push_db, "flush_interval": "250ms"}
            ]
        },
    }
    required = ("pharo", "app", "process", "python", "telemon_input", "telemon", "telemon_output")
    try:
        await serve_and_scrape(scraped, config, required)
    finally:
        await simulator.cleanup()


@pytest.fixture(scope="module")
def scraped(influxdb: InfluxDB) -> Scraped:
    """A fresh database filled from a real telemon's /metrics (its own event loop)."""
    run = uuid.uuid4().hex[:8]
    result = Scraped(influxdb, influxdb.create_database(f"grafana_{run}"))
    asyncio.run(run_telemon(result, f"grafana_push_{run}"))
    return result




@pytest.fixture(scope="module")
def scraped_docker(influxdb: InfluxDB, docker_engine: DockerEngine) -> Scraped:
    """A database filled from a telemon watching two containers, one a Pharo stand-in."""
    run = uuid.uuid4().hex[:8]
    prefix = f"tm-grafana-{run}"
    docker_engine.run(PHARO_CONTAINER_SCRIPT, name=f"{prefix}-pharo", labels=PHARO_LABELS)
    docker_engine.run(WORKER_SCRIPT, name=f"{prefix}-worker")
    result = Scraped(influxdb, influxdb.create_database(f"grafana_docker_{run}"))
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
    required = (*DOCKER_MEASUREMENTS, "pharo@container")
    try:
        asyncio.run(serve_and_scrape(result, config, required))
    finally:
        docker_engine.remove(f"{prefix}-pharo", f"{prefix}-worker")
    return result


def data_for(request: pytest.FixtureRequest, name: str) -> Scraped:
    """The database a dashboard's queries run against."""
    fixture = "scraped_docker" if name == "containers.json" else "scraped"
    result: Scraped = request.getfixturevalue(fixture)
    return result


@pytest.mark.parametrize(("name", "variable"), ALL_VARIABLES)
def test_variable_query_gives_values(
    request: pytest.FixtureRequest, name: str, variable: str
) -> None:
    """Each variable's SHOW TAG VALUES query, run as Grafana runs it, lists values."""
    assert data_for(request, name).variables_of(name)[variable].values


def test_pharo_variables_list_hosts_and_instances(scraped: Scraped) -> None:
    """host holds the global tag and the tag Telemon's own lines carry; instance the names."""
    variables = scraped.variables_of("pharo-vm.json")
    # The simulator's /metrics serves Telemon's lines, tagged host=pharo-0 by the image.
    assert variables["host"].values == tuple(sorted({HOST, "pharo-0"}))
    assert set(variables["instance"].values) == set(INSTANCES)


def test_container_variable_lists_the_watched_containers(scraped_docker: Scraped) -> None:
    variables = scraped_docker.variables_of("containers.json")
    assert variables["host"].values == (HOST,)
    [pharo, worker] = variables["container"].values
    assert pharo.endswith("-pharo") and worker.endswith("-worker")


@pytest.mark.parametrize(
    ("name", "panel_id", "ref_id", "query"),
    ALL_QUERIES,
    ids=[f"{name}-{panel}-{ref}" for name, panel, ref, _ in ALL_QUERIES],
)
def test_panel_query_returns_data(
    request: pytest.FixtureRequest, name: str, panel_id: int, ref_id: str, query: str
) -> None:
    """Every target's query, substituted as Grafana does, gives a series with values."""
    scraped = data_for(request, name)
    q = interpolate(query, scraped.variables_of(name))
    series = scraped.series(q)
    assert series, f"no series for {q}"
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    assert values, f"only nulls for {q}"


def panel_targets(name: str, kind: str, title: str, scraped: Scraped) -> list[str]:
    """The queries of the panel of type `kind` titled `title`, substituted."""
    [panel] = [p for p in panels_of(load(name)) if (p["type"], p["title"]) == (kind, title)]
    variables = scraped.variables_of(name)
    return [interpolate(target["query"], variables) for target in panel["targets"]]


def panel_query(name: str, kind: str, title: str, scraped: Scraped) -> str:
    [query] = panel_targets(name, kind, title, scraped)
    return query


def test_used_memory_is_memory_minus_free(scraped: Scraped) -> None:
    """The "Used memory" stat is memory - memoryFree of each instance's latest point."""
    used = scraped.series(panel_query("pharo-vm.json", "stat", "Used memory", scraped))
    raw = scraped.series(
        f'SELECT last("memory") AS "memory", last("memoryFree") AS "free" FROM "pharo" '
        f'WHERE {TIME_FILTER} GROUP BY "instance"'
    )
    expected = {s["tags"]["instance"]: s["values"][0][1] - s["values"][0][2] for s in raw}
    got = {s["tags"]["instance"]: s["values"][0][1] for s in used}
    assert got == expected
    assert all(value > 0 for value in got.values())


def test_targets_up_and_down(scraped: Scraped) -> None:
    """The stats count the failing target as down and every other target as up."""
    targets = scraped.series(
        f'SELECT last("up") FROM "telemon_input" WHERE {TIME_FILTER} GROUP BY "input", "target"'
    )
    [[down]] = [
        row[1:]
        for s in scraped.series(panel_query("telemon.json", "stat", "Targets down", scraped))
        for row in s["values"]
    ]
    [[up]] = [
        row[1:]
        for s in scraped.series(panel_query("telemon.json", "stat", "Targets up", scraped))
        for row in s["values"]
    ]
    assert down == 1
    assert up == len(targets) - 1 > 0


def test_gc_rates_are_per_minute_and_non_negative(scraped: Scraped) -> None:
    """The GC panel's derivatives are rates per minute of rising counters."""
    rates = scraped.series(panel_query("pharo-vm.json", "timeseries", "GCs per minute", scraped))
    values = [row[2] for s in rates for row in s["values"] if row[2] is not None]
    assert values and min(values) >= 0
    assert max(values) > 0  # the simulated VMs scavenge several times a second


def test_pharo_vm_beside_its_container(scraped_docker: Scraped) -> None:
    """Both targets of the panel give a series for the Pharo container, by container_name."""
    container, vm = (
        {s["tags"]["container_name"] for s in scraped_docker.series(query) if s["values"]}
        for query in panel_targets(
            "containers.json", "timeseries", "Pharo VM beside its container", scraped_docker
        )
    )
    [pharo] = [name for name in container if name.endswith("-pharo")]
    assert vm == {pharo}
