"""Writes grafana/dashboards/prometheus/*.json: the InfluxDB dashboards again, in PromQL.

Each PromQL dashboard is made from its InfluxDB twin in grafana/dashboards/: the same
panels (ids, titles, types, layout, options) and the same template variables, with the
queries, descriptions and datasource replaced, and units turned into the base units of
telemon's Prometheus names (ms -> s, percent -> ratio). Edit the InfluxDB dashboard's
layout or this file's queries, then run it again; tests/test_grafana_prometheus.py fails
while a file differs from what this script writes.

    python grafana/build_prometheus.py           # write the files
    python grafana/build_prometheus.py --check   # exit 1 and name the files that differ

The panels run against a Prometheus-type datasource chosen by the `datasource` variable,
the provisioned Prometheus by default (VictoriaMetrics answers the same queries). The
scrape config must keep telemon's labels (`honor_labels: true`): `instance` is the Pharo
target's name, not the scrape's address.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parent
INFLUX_DASHBOARDS = GRAFANA / "dashboards"
PROMETHEUS_DASHBOARDS = INFLUX_DASHBOARDS / "prometheus"

# grafana/provisioning/datasources/prometheus.yaml; victoriametrics.yaml is the other choice.
DEFAULT_DATASOURCE_UID = "telemon-prometheus"
DEFAULT_DATASOURCE_NAME = "telemon Prometheus"
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = {"type": "prometheus", "uid": "${" + DATASOURCE_VARIABLE + "}"}
TAG = "prometheus"
INFLUX_TAG = "influxdb"

# The InfluxDB panels' units and the units of the same figures in base units.
UNITS = {"ms": "s", "dtdurationms": "dtdurations", "percent": "percentunit"}
PERCENT = 100  # percent -> percentunit: limits and thresholds are divided by this

PER_MINUTE = "[$__rate_interval])) * 60"  # the tail of a per-minute rate


@dataclass(frozen=True)
class Query:
    """One target: a PromQL expression and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    description: str
    queries: tuple[Query, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable of the twin, filled by `label_values(...)`.

    `all_value` is what All stands for: `.*` for a label a series may lack (`host`, from
    global tags), `.+` for one it always has (so All keeps the series without it out).
    """

    name: str
    query: str
    all_value: str


@dataclass(frozen=True)
class Dashboard:
    twin: str  # the InfluxDB dashboard's file name in grafana/dashboards/
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: dict[int, Panel]  # by the twin's panel id; every non-row panel has one


# --- Pharo VM ---------------------------------------------------------------------------

VM = 'host=~"$host", instance=~"$instance"'
VM_LEGEND = "{{instance}} ({{host}})"
USED = f"pharo_memory_bytes{{{VM}}} - pharo_memory_free_bytes{{{VM}}}"


def _vm_rate(name: str, legend: str) -> Query:
    """Per minute, per Pharo VM, of the counter `name`."""
    return Query(f"sum by (host, instance) (rate({name}{{{VM}}}{PER_MINUTE}", legend)


PHARO_VM = Dashboard(
    twin="pharo-vm.json",
    uid="telemon-pharo-vm-prom",
    title="Pharo VM (Prometheus)",
    description=(
        "Pharo VM figures from telemon's [[inputs.pharo]] as Prometheus scrapes them: "
        "pharo_* samples, labels host and instance (the scrape config's honor_labels: true "
        "keeps telemon's instance, the Pharo target's name)."
    ),
    variables=(
        Variable("host", "label_values(pharo_memory_bytes, host)", ".*"),
        Variable("instance", 'label_values(pharo_memory_bytes{host=~"$host"}, instance)', ".+"),
    ),
    panels={
        2: Panel(
            "Time since the image started (pharo_uptime_seconds).",
            (Query(f"pharo_uptime_seconds{{{VM}}}", VM_LEGEND),),
        ),
        3: Panel(
            "Memory the VM has allocated for the heap (pharo_memory_bytes).",
            (Query(f"pharo_memory_bytes{{{VM}}}", VM_LEGEND),),
        ),
        4: Panel(
            "pharo_memory_bytes - pharo_memory_free_bytes, as the original Telemon dashboards "
            "chart it (every Pharo format serves both).",
            (Query(USED, VM_LEGEND),),
        ),
        5: Panel(
            "(pharo_memory_bytes - pharo_memory_free_bytes) / pharo_memory_bytes.",
            (Query(f"({USED}) / pharo_memory_bytes{{{VM}}}", VM_LEGEND),),
        ),
        7: Panel(
            "pharo_memory_bytes: the heap's size.",
            (Query(f"pharo_memory_bytes{{{VM}}}", VM_LEGEND),),
        ),
        8: Panel(
            "pharo_memory_bytes - pharo_memory_free_bytes.",
            (Query(USED, VM_LEGEND),),
        ),
        9: Panel(
            "pharo_memory_free_bytes.",
            (Query(f"pharo_memory_free_bytes{{{VM}}}", VM_LEGEND),),
        ),
        10: Panel(
            "pharo_old_space_bytes and pharo_young_space_bytes, stacked per instance.",
            (
                Query(f"pharo_old_space_bytes{{{VM}}}", VM_LEGEND + " old space"),
                Query(f"pharo_young_space_bytes{{{VM}}}", VM_LEGEND + " young space"),
            ),
        ),
        12: Panel(
            "Full and incremental (scavenge) GCs per minute: the rate of the counters "
            "pharo_full_gcs_total and pharo_incr_gcs_total.",
            (
                _vm_rate("pharo_full_gcs_total", VM_LEGEND + " full"),
                _vm_rate("pharo_incr_gcs_total", VM_LEGEND + " incremental"),
            ),
        ),
        13: Panel(
            "Seconds spent in full and incremental GCs per minute (rate of "
            "pharo_full_gc_time_seconds_total and pharo_incr_gc_time_seconds_total); "
            "60 s a minute would be all the time.",
            (
                _vm_rate("pharo_full_gc_time_seconds_total", VM_LEGEND + " full"),
                _vm_rate("pharo_incr_gc_time_seconds_total", VM_LEGEND + " incremental"),
            ),
        ),
        14: Panel(
            "Objects tenured to old space per minute (rate of pharo_tenure_count_total).",
            (_vm_rate("pharo_tenure_count_total", VM_LEGEND),),
        ),
        16: Panel(
            "pharo_uptime_seconds; a drop is a restart of the image.",
            (Query(f"pharo_uptime_seconds{{{VM}}}", VM_LEGEND),),
        ),
        17: Panel(
            "Every sample named app_*, the application's own figures from an "
            '[[inputs.fields]] table with measurement = "app" (the original Telemon\'s '
            "`tm fields at: ... put: [...]`). Another measurement name: edit the regex in "
            "this query.",
            (Query('{__name__=~"app_.+", host=~"$host"}', "{{host}} {{__name__}}"),),
        ),
    },
)


# --- Containers -------------------------------------------------------------------------

BOX = 'host=~"$host", container_name=~"$container"'
BOX_LEGEND = "{{container_name}}"
NET = 'network="total"'


def _box_rate(name: str, extra: str, legend: str) -> Query:
    """Per second, per container, of the counter `name` (`extra`: more matchers)."""
    return Query(
        f"sum by (container_name) (rate({name}{{{extra}, {BOX}}}[$__rate_interval]))", legend
    )


CONTAINERS = Dashboard(
    twin="containers.json",
    uid="telemon-containers-prom",
    title="Containers (Prometheus)",
    description=(
        "Docker containers as telemon's [[inputs.docker]] serves them to Prometheus "
        "(docker_container_* samples), and each Pharo VM beside its container."
    ),
    variables=(
        Variable("host", "label_values(docker_container_mem_usage_bytes, host)", ".*"),
        Variable(
            "container",
            'label_values(docker_container_mem_usage_bytes{host=~"$host"}, container_name)',
            ".+",
        ),
    ),
    panels={
        2: Panel(
            "CPU time per second of each container, the rate of "
            'docker_container_cpu_usage_seconds_total{cpu="cpu-total"}: 100% is one full core.',
            (_box_rate("docker_container_cpu_usage_seconds_total", 'cpu="cpu-total"', BOX_LEGEND),),
        ),
        3: Panel(
            "docker_container_mem_usage_ratio: memory usage as a share of the limit.",
            (Query(f"docker_container_mem_usage_ratio{{{BOX}}}", BOX_LEGEND),),
        ),
        4: Panel(
            "usage (cgroup memory, page cache included), working set (usage minus inactive "
            "file cache: what docker stats shows) and the limit: "
            "docker_container_mem_{usage,working_set,limit}_bytes.",
            (
                Query(f"docker_container_mem_usage_bytes{{{BOX}}}", BOX_LEGEND + " usage"),
                Query(
                    f"docker_container_mem_working_set_bytes{{{BOX}}}", BOX_LEGEND + " working set"
                ),
                Query(f"docker_container_mem_limit_bytes{{{BOX}}}", BOX_LEGEND + " limit"),
            ),
        ),
        5: Panel(
            "The container's memory usage as the Docker engine reports it, and the used memory "
            "(pharo_memory_bytes - pharo_memory_free_bytes) of the Pharo VM running in it: the "
            "pharo samples of containers discovered by label carry the container_name label.",
            (
                Query(
                    f"docker_container_mem_working_set_bytes{{{BOX}}}",
                    BOX_LEGEND + " container memory usage (working set)",
                ),
                Query(
                    # Joined to the container by its engine and name: an image's own
                    # `host` tag (Telemon's influx lines) replaces telemon's.
                    f'(pharo_memory_bytes{{container_name=~"$container"}}'
                    f' - pharo_memory_free_bytes{{container_name=~"$container"}})'
                    f" and on (job, engine_host, container_name)"
                    f" docker_container_mem_limit_bytes{{{BOX}}}",
                    BOX_LEGEND + " Pharo VM used memory",
                ),
            ),
        ),
        7: Panel(
            "Bytes received and sent per second (network=total): the rate of "
            "docker_container_net_rx_bytes_total and docker_container_net_tx_bytes_total.",
            (
                _box_rate("docker_container_net_rx_bytes_total", NET, BOX_LEGEND + " received"),
                _box_rate("docker_container_net_tx_bytes_total", NET, BOX_LEGEND + " sent"),
            ),
        ),
        8: Panel(
            "Bytes read and written per second (device=total): the rate of "
            "docker_container_blkio_io_service_bytes_recursive_{read,write}_bytes_total.",
            (
                _box_rate(
                    "docker_container_blkio_io_service_bytes_recursive_read_total",
                    'device="total"',
                    BOX_LEGEND + " read",
                ),
                _box_rate(
                    "docker_container_blkio_io_service_bytes_recursive_write_total",
                    'device="total"',
                    BOX_LEGEND + " write",
                ),
            ),
        ),
    },
)


# --- telemon ----------------------------------------------------------------------------

INPUT = 'host=~"$host", input=~"$input"'
HOST = 'host=~"$host"'
TARGET_LEGEND = "{{input}} {{target}} ({{host}})"
OUTPUT_LEGEND = "{{output}} {{url}}"
ENCODER = (
    ("telemon_lines_dropped_total", "lines dropped"),
    ("telemon_fields_nonfinite_total", "non-finite fields"),
    ("telemon_fields_type_conflict_total", "type conflicts"),
    ("telemon_fields_unsupported_total", "unsupported fields"),
    ("telemon_fields_invalid_key_total", "invalid keys"),
    ("telemon_ints_clamped_total", "ints clamped"),
    ("telemon_strings_truncated_total", "strings truncated"),
)


def _host_rate(name: str, legend: str) -> Query:
    """Per minute, per host, of telemon's counter `name`."""
    expr = f"sum by (host) (rate({name}{{{HOST}}}{PER_MINUTE}"
    return Query(expr, " ".join(("{{host}}", legend)).strip())


def _output_rate(name: str, legend: str) -> Query:
    """Per minute, per output, of an output's counter `name`."""
    return Query(
        f"sum by (host, output, url) (rate({name}{{{HOST}}}{PER_MINUTE}",
        OUTPUT_LEGEND + " " + legend,
    )


TELEMON = Dashboard(
    twin="telemon.json",
    uid="telemon-self-prom",
    title="telemon (Prometheus)",
    description=(
        "telemon's own metrics as Prometheus scrapes them: inputs up and down, collection "
        "durations and errors, scrapes, the encoder's counters and the outputs' spool."
    ),
    variables=(
        Variable("host", "label_values(telemon_input_up, host)", ".*"),
        Variable("input", 'label_values(telemon_input_up{host=~"$host"}, input)', ".+"),
    ),
    panels={
        2: Panel(
            "Targets whose last collection succeeded (telemon_input_up).",
            (Query(f"sum(telemon_input_up{{{INPUT}}})", "up"),),
        ),
        3: Panel(
            "Targets whose last collection failed (telemon_input_up 0): the reason is in "
            "telemon's log and on its index page.",
            (Query(f"sum(1 - telemon_input_up{{{INPUT}}})", "down"),),
        ),
        4: Panel(
            "Requests of the metrics path (Prometheus's scrapes and any other), per minute: "
            "the rate of telemon_scrapes_total.",
            (_host_rate("telemon_scrapes_total", ""),),
        ),
        5: Panel(
            "Lines left out because no field could be written, in the time range shown "
            "(increase of telemon_lines_dropped_total).",
            (
                Query(
                    f"sum by (host) (increase(telemon_lines_dropped_total{{{HOST}}}[$__range]))",
                    "{{host}}",
                ),
            ),
        ),
        6: Panel(
            "telemon_input_up of each target: up when its last collection succeeded.",
            (Query(f"telemon_input_up{{{INPUT}}}", TARGET_LEGEND),),
        ),
        7: Panel(
            "1 up, 0 down (the lowest value in each interval).",
            (
                Query(
                    f"min_over_time(telemon_input_up{{{INPUT}}}[$__rate_interval])", TARGET_LEGEND
                ),
            ),
        ),
        8: Panel(
            "How long each target's last collection took (telemon_input_duration_seconds).",
            (Query(f"telemon_input_duration_seconds{{{INPUT}}}", TARGET_LEGEND),),
        ),
        9: Panel(
            "Rate of telemon_input_errors_total: failed collections plus fields that failed "
            "inside successful ones.",
            (
                Query(
                    f"sum by (host, input, target) "
                    f"(rate(telemon_input_errors_total{{{INPUT}}}{PER_MINUTE}",
                    TARGET_LEGEND,
                ),
            ),
        ),
        10: Panel(
            "Lines each target's last collection gave (telemon_input_lines).",
            (Query(f"telemon_input_lines{{{INPUT}}}", TARGET_LEGEND),),
        ),
        11: Panel(
            "What the line encoder had to leave out or change, per minute (telemon_*_total); "
            "all zero in a healthy setup.",
            tuple(_host_rate(name, legend) for name, legend in ENCODER),
        ),
        13: Panel(
            "Lines written, spooled (database unreachable) and dropped, per minute "
            "(telemon_output_{written,spooled,dropped}_total).",
            (
                _output_rate("telemon_output_written_total", "written"),
                _output_rate("telemon_output_spooled_total", "spooled"),
                _output_rate("telemon_output_dropped_total", "dropped"),
            ),
        ),
        14: Panel(
            "Failed and retried write requests per minute "
            "(telemon_output_failed_total, telemon_output_retried_total).",
            (
                _output_rate("telemon_output_failed_total", "failed"),
                _output_rate("telemon_output_retried_total", "retried"),
            ),
        ),
        15: Panel(
            "Lines waiting in the spool to be written (telemon_output_spool_lines).",
            (Query(f"telemon_output_spool_lines{{{HOST}}}", OUTPUT_LEGEND + " spooled lines"),),
        ),
        16: Panel(
            "Size of the spool, bounded by spool_max_bytes (telemon_output_spool_bytes).",
            (Query(f"telemon_output_spool_bytes{{{HOST}}}", OUTPUT_LEGEND + " spool size"),),
        ),
    },
)

DASHBOARDS = (PHARO_VM, CONTAINERS, TELEMON)


# --- building ---------------------------------------------------------------------------


def is_instant(panel: dict[str, Any]) -> bool:
    """A figure shown now, not over time: a gauge, or a stat without its sparkline."""
    if panel["type"] == "gauge":
        return True
    return bool(panel["type"] == "stat" and panel["options"].get("graphMode") == "none")


def _target(ref_id: str, query: Query, instant: bool) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": query.expr,
        "format": "time_series",
        "instant": instant,
        "legendFormat": query.legend,
        "range": not instant,
        "refId": ref_id,
    }


def _base_units(defaults: dict[str, Any]) -> None:
    """The twin's unit turned into its base unit (percent limits and thresholds scaled)."""
    unit = defaults.get("unit")
    if unit not in UNITS:
        return
    defaults["unit"] = UNITS[unit]
    if unit != "percent":
        return
    for key in ("min", "max"):
        if key in defaults:
            defaults[key] = _ratio(defaults[key])
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step.get("value") is not None:
            step["value"] = _ratio(step["value"])


def _ratio(percent: float) -> float:
    """`percent` as a ratio, written 1 rather than 1.0 when whole."""
    ratio = percent / PERCENT
    return int(ratio) if ratio.is_integer() else ratio


def _panel(twin: dict[str, Any], spec: Panel) -> dict[str, Any]:
    panel = copy.deepcopy(twin)
    panel["datasource"] = DATASOURCE
    panel["description"] = spec.description
    instant = is_instant(panel)
    panel["targets"] = [
        _target(chr(ord("A") + i), query, instant) for i, query in enumerate(spec.queries)
    ]
    _base_units(panel.get("fieldConfig", {}).get("defaults", {}))
    return panel


def _datasource_variable() -> dict[str, Any]:
    return {
        "current": {
            "selected": False,
            "text": DEFAULT_DATASOURCE_NAME,
            "value": DEFAULT_DATASOURCE_UID,
        },
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": DATASOURCE_VARIABLE,
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def _variable(twin: dict[str, Any], spec: Variable) -> dict[str, Any]:
    variable = copy.deepcopy(twin)
    variable.update(
        {
            "allValue": spec.all_value,
            "datasource": DATASOURCE,
            "definition": spec.query,
            "query": spec.query,
            # label_values() looks at the series of the time range shown.
            "refresh": 2,
        }
    )
    return variable


def build(spec: Dashboard, twin: dict[str, Any]) -> dict[str, Any]:
    """The PromQL dashboard for `spec`, laid out as its InfluxDB `twin`."""
    model = copy.deepcopy(twin)
    model.update(uid=spec.uid, title=spec.title, description=spec.description)
    # Tagged `prometheus` instead of `influxdb`: each kind's links list its own kind.
    model["tags"] = [*(t for t in twin["tags"] if t != INFLUX_TAG), TAG]
    for link in model.get("links", []):
        link["tags"] = [*(t for t in link["tags"] if t != INFLUX_TAG), TAG]
        link["title"] = f"{link['title']} ({TAG})"
    twin_variables = {v["name"]: v for v in twin["templating"]["list"]}
    if [v.name for v in spec.variables] != list(twin_variables):
        raise ValueError(f"{spec.twin}: variables {list(twin_variables)} in the InfluxDB twin")
    model["templating"]["list"] = [
        _datasource_variable(),
        *(_variable(twin_variables[v.name], v) for v in spec.variables),
    ]
    panels = [p for p in model["panels"] if p["type"] != "row"]
    if {p["id"] for p in panels} != set(spec.panels):
        raise ValueError(f"{spec.twin}: panels {sorted(p['id'] for p in panels)} in the twin")
    model["panels"] = [
        p if p["type"] == "row" else _panel(p, spec.panels[p["id"]]) for p in model["panels"]
    ]
    return model


def render(model: dict[str, Any]) -> str:
    """The file's text, formatted as the InfluxDB dashboards are."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    """Each PromQL dashboard's path and text, from the InfluxDB dashboards on disk."""
    result = {}
    for spec in DASHBOARDS:
        twin = json.loads((INFLUX_DASHBOARDS / spec.twin).read_text(encoding="utf-8"))
        result[PROMETHEUS_DASHBOARDS / spec.twin] = render(build(spec, twin))
    return result


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: build_prometheus.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for path, text in files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'differs' if check else 'wrote'}: {path.relative_to(GRAFANA.parent)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
