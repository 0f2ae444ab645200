"""Prometheus alert rules for Pharo VMs, their containers and telemon itself.

Every threshold, window and `for` is a field of `AlertSettings`, the one place a user
changes them (`telemon alerts --set NAME=VALUE`); `render_rules(settings)` writes the
rule file. The committed `alerts/telemon.rules.yml` is `render_rules(AlertSettings())`.

The rules are written for the scrape config of docker/prometheus.yml, `honor_labels:
true`: a Pharo sample keeps its `instance` tag (the VM's name), telemon's own samples
get telemon's address (`honor_labels=False` renders them for Prometheus's default, where
the VM's name is `exported_instance`). No rule aggregates labels away: an alert names
one VM, or one telemon. Counters are only read through `rate()` and `increase()`, so a VM or
telemon restart (counters back to zero) fires nothing.

The YAML is written here (no YAML library): every string is a JSON string, which YAML
reads as a double-quoted scalar, and each expression a `|` block.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ALERT_NAMES",
    "AlertSettings",
    "Rule",
    "SettingError",
    "duration_seconds",
    "render_rules",
    "rules",
    "settings_from",
    "settings_table",
]

_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_UNIT_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
# A label matcher list as PromQL writes it inside braces: name op "value", ...
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"\s*'
_SELECTOR = re.compile(rf"(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?")


class SettingError(ValueError):
    """A setting that cannot be used; the message is one line naming it."""


def duration_seconds(text: str) -> float:
    """A Prometheus duration (`1h30m`, `90s`, `500ms`) in seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m, 1d)")
    return sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_S, strict=True) if n)


def _duration(text: str) -> str:
    duration_seconds(text)
    return text


def _window(text: str) -> str:
    if duration_seconds(text) <= 0:
        raise ValueError("a window must be longer than 0s")
    return text


def _selector(text: str) -> str:
    if _SELECTOR.fullmatch(text) is None:
        raise ValueError('label matchers as inside PromQL braces, e.g. job="telemon"')
    return text.strip().rstrip(",").strip()


Duration = Annotated[str, AfterValidator(_duration)]
"""How long a condition must hold (`for`): a Prometheus duration, `0s` allowed."""
Window = Annotated[str, AfterValidator(_window)]
"""A range a rule looks back over: a Prometheus duration longer than zero."""
Ratio = Annotated[float, Field(gt=0, le=1)]


class AlertSettings(BaseModel):
    """Every threshold, window and `for` of the alert rules, with their defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: Annotated[str, AfterValidator(_selector)] = Field(
        default='job="telemon"',
        description="label matchers every rule puts on telemon's series: the scrape job(s)"
        " of your telemons (empty: every series of those names)",
    )
    honor_labels: bool = Field(
        default=True,
        description="as in your scrape config: true (docker/prometheus.yml, the Grafana"
        " dashboards) keeps a Pharo sample's `instance` tag, the VM's name; false stores it"
        " as `exported_instance` and `instance` is telemon's address",
    )
    runbook_base: str = Field(
        default="alerts/README.md",
        description="where the runbook is published; each alert's `runbook_url` is this"
        " plus `#alertname` in lower case (set it to the README's URL where you host it)",
    )
    pharo_target_down_for: Duration = Field(
        default="2m", description="PharoTargetDown: how long polls of a Pharo target keep failing"
    )
    heap_used_ratio: Ratio = Field(
        default=0.95,
        description="PharoHeapNearlyFull: share of the heap in use (usedMemory/memory)",
    )
    heap_nearly_full_for: Duration = Field(
        default="15m", description="PharoHeapNearlyFull: how long the heap stays that full"
    )
    max_old_space_ratio: Ratio = Field(
        default=0.9, description="PharoMemoryNearMaxOldSpace: used memory as a share of maxOldSpace"
    )
    max_old_space_for: Duration = Field(
        default="5m", description="PharoMemoryNearMaxOldSpace: `for`"
    )
    pharo_container_limit_ratio: Ratio = Field(
        default=0.8,
        description="PharoMemoryNearContainerLimit: the VM's used memory as a share of its"
        " container's memory limit",
    )
    pharo_container_limit_for: Duration = Field(
        default="5m", description="PharoMemoryNearContainerLimit: `for`"
    )
    leak_window: Window = Field(
        default="1h",
        description="PharoMemoryLeak: the window whose least used memory (what full GCs"
        " leave) is compared with the window before it",
    )
    leak_growth_ratio: Annotated[float, Field(gt=0)] = Field(
        default=0.1,
        description="PharoMemoryLeak: growth of that least used memory from one window to"
        " the next (0.1: 10 %)",
    )
    leak_for: Duration = Field(
        default="30m", description="PharoMemoryLeak: how long the growth must go on"
    )
    gc_time_window: Window = Field(
        default="5m",
        description="PharoGCTimeHigh: the window the share of time in GC is taken over",
    )
    gc_time_ratio: Ratio = Field(
        default=0.25, description="PharoGCTimeHigh: share of the time in full and incremental GCs"
    )
    gc_time_for: Duration = Field(default="10m", description="PharoGCTimeHigh: `for`")
    full_gc_window: Window = Field(
        default="10m", description="PharoFullGCsFrequent: the recent window full GCs are counted in"
    )
    full_gc_baseline: Window = Field(
        default="1d",
        description="PharoFullGCsFrequent: the window before it that gives the usual rate",
    )
    full_gc_factor: Annotated[float, Field(gt=1)] = Field(
        default=4.0, description="PharoFullGCsFrequent: the recent rate over the usual rate"
    )
    full_gc_min_count: Annotated[int, Field(ge=1)] = Field(
        default=6,
        description="PharoFullGCsFrequent: the fewest full GCs in the recent window"
        " (a VM that full-GCs rarely is not alerted on for two of them)",
    )
    full_gc_for: Duration = Field(default="10m", description="PharoFullGCsFrequent: `for`")
    container_restart_window: Window = Field(
        default="15m", description="ContainerRestarting: the window restarts are counted in"
    )
    container_restarts: Annotated[int, Field(ge=1)] = Field(
        default=1, description="ContainerRestarting: the fewest restarts in that window"
    )
    container_restart_for: Duration = Field(default="1m", description="ContainerRestarting: `for`")
    container_memory_ratio: Ratio = Field(
        default=0.9,
        description="ContainerMemoryNearLimit: a container's (or cgroup's) working set as a"
        " share of its memory limit",
    )
    container_memory_for: Duration = Field(
        default="5m", description="ContainerMemoryNearLimit: `for`"
    )
    telemon_down_for: Duration = Field(
        default="2m", description="TelemonDown: how long Prometheus fails to scrape telemon"
    )
    input_down_for: Duration = Field(
        default="5m", description="TelemonInputDown: how long polls of another input's target fail"
    )
    output_down_for: Duration = Field(
        default="5m", description="TelemonOutputDown: how long an output's writes keep failing"
    )
    spooling_for: Duration = Field(
        default="15m", description="TelemonOutputSpooling: how long lines stay in an output's spool"
    )
    drop_window: Window = Field(
        default="10m",
        description="TelemonOutputDroppingLines, TelemonValuesDropped,"
        " TelemonSinkRefusingLines: the window losses are counted in",
    )
    drop_for: Duration = Field(
        default="1m",
        description="TelemonOutputDroppingLines, TelemonValuesDropped,"
        " TelemonSinkRefusingLines: `for`",
    )


# --- the rules ------------------------------------------------------------------------------

Severity = Literal["warning", "critical"]
VM = "{{ or $labels.exported_instance $labels.instance }}"
"""The VM's name: its `instance` tag, stored as `exported_instance` without honor_labels."""
TELEMON = "{{ $labels.instance }}"
VALUE = "{{ $value | humanize }}"
PERCENT = "{{ $value | humanizePercentage }}"
COUNT = '{{ printf "%.0f" $value }}'
"""A count from increase(): Prometheus extrapolates it to the window (1.1 restarts)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule as written in the file."""

    group: str
    name: str
    expr: str
    duration: str  # `for`
    severity: Severity
    summary: str
    description: str


def _label(name: str) -> str:
    return "{{ $labels." + name + " }}"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def _num(value: float) -> str:
    return f"{value:g}"


def _series(s: AlertSettings) -> Callable[..., str]:
    """`name{selector,extra}`: a series selector with the settings' matchers."""

    def series(name: str, extra: str = "") -> str:
        matchers = ",".join(m for m in (s.selector, extra) if m)
        return f"{name}{{{matchers}}}" if matchers else name

    return series


def _pharo_rules(s: AlertSettings) -> list[Rule]:
    m = _series(s)
    group = "telemon-pharo"
    used, heap = m("pharo_used_memory_bytes"), m("pharo_memory_bytes")
    full_gcs = m("pharo_full_gcs_total")
    leak_w = s.leak_window
    guard_s = _num(2 * duration_seconds(leak_w))
    # A VM's samples and its container's come from one telemon; with honor_labels the
    # VM's `instance` is its own name, no longer telemon's address.
    join = "job, container_name" if s.honor_labels else "job, instance, container_name"
    return [
        Rule(
            group,
            "PharoTargetDown",
            m("telemon_input_up", 'input="pharo"') + " == 0",
            s.pharo_target_down_for,
            "critical",
            f"Pharo target {_label('target')} does not answer telemon",
            f"Every poll of {_label('target')} by telemon {TELEMON} has failed for"
            f" {s.pharo_target_down_for}. telemon's log names each failed poll's error, and"
            " its status page (/) the last one; then check that the image runs, that its"
            " HTTP endpoint answers from telemon's host, and the container's state.",
        ),
        Rule(
            group,
            "PharoHeapNearlyFull",
            f"{used} / {heap} > {_num(s.heap_used_ratio)}",
            s.heap_nearly_full_for,
            "warning",
            f"Pharo VM {VM} uses {PERCENT} of its heap",
            f"The used share of {VM}'s heap (pharo_used_memory_bytes / pharo_memory_bytes)"
            f" has stayed over {_pct(s.heap_used_ratio)} for {s.heap_nearly_full_for}: the"
            " heap no longer grows with the data, so full GCs come one after the other."
            " Look at the full GC rate, the used memory after full GCs (PharoMemoryLeak),"
            " pharo_max_old_space_bytes and the container's memory limit.",
        ),
        Rule(
            group,
            "PharoMemoryNearMaxOldSpace",
            f'{used} / ({m("pharo_max_old_space_bytes")} > 0) > {_num(s.max_old_space_ratio)}',
            s.max_old_space_for,
            "critical",
            f"Pharo VM {VM} uses {PERCENT} of its maxOldSpace",
            f"{VM}'s used memory is over {_pct(s.max_old_space_ratio)} of the old space limit"
            " the image set (maxOldSpace, VM parameter 67): past it, allocations fail with"
            " an out-of-memory error. Find what holds the memory (a leak?) or raise the"
            " limit.",
        ),
        Rule(
            group,
            "PharoMemoryNearContainerLimit",
            f"{used}\n  / on ({join}) group_left ()\n"
            f'max by ({join}) ({m("docker_container_mem_limit_bytes")})'
            f"\n> {_num(s.pharo_container_limit_ratio)}",
            s.pharo_container_limit_for,
            "critical",
            f"Pharo VM {VM} uses {PERCENT} of its container's memory limit",
            f"The heap in use of {VM} (container {_label('container_name')}) is over"
            f" {_pct(s.pharo_container_limit_ratio)} of the container's memory limit: the"
            " VM itself, its plugins and buffers need the rest, and the kernel kills the"
            " container at the limit. Raise the limit or find what holds the memory.",
        ),
        Rule(
            group,
            "PharoMemoryLeak",
            f"(\n  min_over_time({used}[{leak_w}])\n/\n"
            f"  min_over_time({used}[{leak_w}] offset {leak_w})\n"
            f") > {_num(1 + s.leak_growth_ratio)}\n"
            f"and increase({full_gcs}[{leak_w}]) > 0\n"
            f"and increase({full_gcs}[{leak_w}] offset {leak_w}) > 0\n"
            f'and {m("pharo_uptime_seconds")} > {guard_s}',
            s.leak_for,
            "warning",
            f"Pharo VM {VM}'s memory after full GCs keeps growing",
            f"The least used memory of {VM} over the last {leak_w} (what full GCs leave"
            f" alive) is {VALUE} times that of the {leak_w} before, with full GCs in both,"
            f" and has kept growing for {s.leak_for}: objects stay reachable that should"
            " not (caches without bounds, sessions never expired, registries of"
            " listeners). Graph pharo_used_memory_bytes: its troughs climb. Inspect the"
            " image (e.g. SpaceTally, pointersTo) before it runs out of memory.",
        ),
        Rule(
            group,
            "PharoGCTimeHigh",
            f'rate({m("pharo_full_gc_time_seconds_total")}[{s.gc_time_window}])\n'
            f'+ rate({m("pharo_incr_gc_time_seconds_total")}[{s.gc_time_window}])\n'
            f"> {_num(s.gc_time_ratio)}",
            s.gc_time_for,
            "warning",
            f"Pharo VM {VM} spends {PERCENT} of its time in GC",
            f"{VM} has spent over {_pct(s.gc_time_ratio)} of the time in garbage collection"
            f" (full and incremental, over {s.gc_time_window}) for {s.gc_time_for}: it"
            " answers slowly. Look at which kind dominates (pharo_full_gc_time_seconds_total"
            " or pharo_incr_gc_time_seconds_total), the full GC rate, the heap's use and"
            " the allocation rate (pharo_bytes_allocated_bytes_total).",
        ),
        Rule(
            group,
            "PharoFullGCsFrequent",
            f"increase({full_gcs}[{s.full_gc_window}]) >= {s.full_gc_min_count}\nand\n"
            f"rate({full_gcs}[{s.full_gc_window}])\n"
            f"  > {_num(s.full_gc_factor)} * rate({full_gcs}[{s.full_gc_baseline}]"
            f" offset {s.full_gc_window})",
            s.full_gc_for,
            "warning",
            f"Pharo VM {VM} runs full GCs over {_num(s.full_gc_factor)} times as often as usual",
            f"{VM} ran {COUNT} full GCs in the last {s.full_gc_window}, over"
            f" {_num(s.full_gc_factor)} times its rate of the {s.full_gc_baseline} before."
            " Full GCs stop the VM: look at the heap's use (a heap that cannot grow,"
            " PharoHeapNearlyFull), a leak (PharoMemoryLeak), and code calling"
            " `Smalltalk garbageCollect` in a loop.",
        ),
    ]


def _container_rules(s: AlertSettings) -> list[Rule]:
    m = _series(s)
    group = "telemon-containers"
    ratio = _num(s.container_memory_ratio)
    return [
        Rule(
            group,
            "ContainerRestarting",
            "sum without (container_status) (\n"
            f'  increase({m("docker_container_status_restart_count_total")}'
            f"[{s.container_restart_window}])\n) >= {s.container_restarts}",
            s.container_restart_for,
            "warning",
            f"Container {_label('container_name')} is restarting:"
            f" {COUNT} restart(s) in {s.container_restart_window}",
            f"The engine restarted {_label('container_name')} ({_label('container_image')},"
            f" on {_label('engine_host')}) {COUNT} times in {s.container_restart_window}."
            " Look at its logs (`docker logs`), its last exit code"
            " (docker_container_status_exitcode) and whether the kernel killed it for"
            " memory (docker_container_status_oomkilled).",
        ),
        Rule(
            group,
            "ContainerMemoryNearLimit",
            f'{m("docker_container_mem_working_set_bytes")}'
            f' / {m("docker_container_mem_limit_bytes")} > {ratio}\nor\n'
            f'{m("cgroup_memory_working_set_bytes")}'
            f' / {m("cgroup_memory_limit_bytes")} > {ratio}',
            s.container_memory_for,
            "warning",
            "Container {{ or $labels.container_name $labels.cgroup }} uses"
            f" {PERCENT} of its memory limit",
            "The working set of {{ or $labels.container_name $labels.cgroup }} (what the"
            f" kernel's OOM killer counts) has been over {_pct(s.container_memory_ratio)} of"
            f" its memory limit for {s.container_memory_for}; at the limit the kernel kills"
            " it. For a Pharo container compare with the VM's heap (pharo_memory_bytes);"
            " raise the limit or find what grows.",
        ),
    ]


def _telemon_rules(s: AlertSettings) -> list[Rule]:
    m = _series(s)
    group = "telemon-self"
    window = s.drop_window
    output = f"{_label('output')} output {_label('url')}"
    return [
        Rule(
            group,
            "TelemonDown",
            f'{m("up")} == 0',
            s.telemon_down_for,
            "critical",
            f"telemon {TELEMON} cannot be scraped",
            f"Prometheus has failed to scrape telemon {TELEMON} (job {_label('job')}) for"
            f" {s.telemon_down_for}: none of the VMs it polls is watched. Check that the"
            " process or container runs (`telemon check` its configuration), that it"
            " listens on that address, and the scrape error on Prometheus's targets page.",
        ),
        Rule(
            group,
            "TelemonInputDown",
            m("telemon_input_up", 'input!="pharo"') + " == 0",
            s.input_down_for,
            "warning",
            f"telemon's {_label('input')} input cannot read {_label('target')}",
            f"Every poll of {_label('target')} by the {_label('input')} input of telemon"
            f" {TELEMON} has failed for {s.input_down_for}. telemon's log names the error"
            " (a Docker socket not mounted or not readable, a cgroup path gone, a process"
            " that exited).",
        ),
        Rule(
            group,
            "TelemonOutputDown",
            f'{m("telemon_output_up")} == 0',
            s.output_down_for,
            "critical",
            f"telemon {TELEMON} cannot write to {output}",
            f"The writes of telemon {TELEMON} to {output} have failed for"
            f" {s.output_down_for}; lines wait in its spool until it is full, then are"
            " dropped. telemon's log names the server's answer; check the server, the"
            " credentials and the database, and telemon_output_spool_lines.",
        ),
        Rule(
            group,
            "TelemonOutputSpooling",
            f'{m("telemon_output_spool_lines")} > 0',
            s.spooling_for,
            "warning",
            f"telemon {TELEMON} holds {VALUE} lines for {output}",
            f"Lines have waited in the spool of {output} for {s.spooling_for}: the server"
            " takes them slower than telemon makes them, or not at all. Look at"
            " telemon_output_up, telemon_output_oldest_unwritten_seconds and the server's"
            " load; once the spool is full, lines are dropped.",
        ),
        Rule(
            group,
            "TelemonOutputDroppingLines",
            f'increase({m("telemon_output_dropped_total")}[{window}]) > 0',
            s.drop_for,
            "warning",
            f"telemon {TELEMON} gave up {COUNT} lines for {output}",
            f"{output} dropped {COUNT} lines in {window}: the server refused them (its log"
            " and telemon's say why, e.g. a field type conflict) or the spool was full"
            " while the server was unreachable. Those lines are lost.",
        ),
        Rule(
            group,
            "TelemonValuesDropped",
            f'increase({m("telemon_input_values_dropped_total")}[{window}]) > 0\nor\n'
            f'increase({m("telemon_values_dropped_total")}[{window}]) > 0\nor\n'
            f'increase({m("telemon_sink_values_dropped_total")}[{window}]) > 0',
            s.drop_for,
            "warning",
            f"telemon {TELEMON} is not writing some values",
            f"telemon {TELEMON} dropped {COUNT} values in {window}, of"
            " {{ if $labels.input }}the target {{ $labels.target }} of its"
            " {{ $labels.input }} input{{ else }}its own lines or the sink's{{ end }}."
            " telemon's log names each dropped field once: a type"
            " other than the field's first, NaN or infinity, an invalid name. Fix the"
            " source, or declare the field's type.",
        ),
        Rule(
            group,
            "TelemonSinkRefusingLines",
            f'increase({m("telemon_sink_refused_lines_total")}[{window}]) > 0\nor\n'
            f'increase({m("telemon_sink_refused_bodies_total")}[{window}]) > 0',
            s.drop_for,
            "warning",
            f"telemon {TELEMON}'s sink refuses writes",
            f"The write sink of telemon {TELEMON} refused {COUNT} lines (or whole requests)"
            f" in {window}; the writer (Telegraf's outputs.http, an InfluxDB client) was"
            " told so and those lines are not served. telemon_sink_refused_*_total say"
            " why (type conflict, max_series or max_bytes reached, a line too large,"
            " not line protocol...) and telemon's log shows the first of each.",
        ),
    ]


def rules(settings: AlertSettings) -> list[Rule]:
    """Every alerting rule, in file order."""
    return [*_pharo_rules(settings), *_container_rules(settings), *_telemon_rules(settings)]


ALERT_NAMES: tuple[str, ...] = tuple(rule.name for rule in rules(AlertSettings()))


# --- the file -------------------------------------------------------------------------------


def render_rules(settings: AlertSettings) -> str:
    """The Prometheus rule file (YAML) of `settings`."""
    changed = _changed(settings)
    lines = [
        "# Alert rules for Pharo VMs, their containers and telemon, generated by",
        "# `telemon alerts`; each threshold and duration is a setting: see alerts/README.md.",
        f"# Settings changed from the defaults: {changed or 'none'}",
        "groups:",
    ]
    current = ""
    for rule in rules(settings):
        if rule.group != current:
            current = rule.group
            lines += [f"  - name: {json.dumps(current)}", "    rules:"]
        lines += _rule_lines(rule, settings.runbook_base)
    return "\n".join(lines) + "\n"


def _rule_lines(rule: Rule, runbook_base: str) -> list[str]:
    expr = [f"          {line}" if line else "" for line in rule.expr.splitlines()]
    return [
        f"      - alert: {rule.name}",
        "        expr: |-",
        *expr,
        f"        for: {rule.duration}",
        "        labels:",
        f"          severity: {rule.severity}",
        "        annotations:",
        f"          summary: {json.dumps(rule.summary)}",
        f"          description: {json.dumps(rule.description)}",
        f"          runbook_url: {json.dumps(f'{runbook_base}#{rule.name.lower()}')}",
    ]


def _changed(settings: AlertSettings) -> str:
    default = AlertSettings()
    return ", ".join(
        f"{name}={getattr(settings, name)}"
        for name in AlertSettings.model_fields
        if getattr(settings, name) != getattr(default, name)
    )


# --- settings from NAME=VALUE ---------------------------------------------------------------


def settings_from(assignments: Iterable[str]) -> AlertSettings:
    """`AlertSettings` with each `NAME=VALUE` applied; SettingError (one line) otherwise."""
    values: dict[str, str] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        name = name.strip()
        if not sep:
            raise SettingError(f"{assignment!r}: give NAME=VALUE")
        if name not in AlertSettings.model_fields:
            close = difflib.get_close_matches(name, AlertSettings.model_fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingError(
                f"unknown setting {name!r}{hint}; `telemon alerts --settings` lists them"
            )
        values[name] = value.strip()
    try:
        return AlertSettings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        raise SettingError(f"{name}={values.get(name, '')!r}: {message}") from None


def settings_table(names: Sequence[str] | None = None) -> str:
    """The settings as a Markdown table: name, default, meaning."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in AlertSettings.model_fields.items():
        if names is None or name in names:
            rows.append(f"| `{name}` | `{field.default}` | {field.description} |")
    return "\n".join(rows) + "\n"
