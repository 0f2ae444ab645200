"""Prometheus alert rules for Pharo VMs, their containers and telemon itself.

Every threshold, window and `for` is a field of `AlertSettings`, the one place a user
changes them (`telemon alerts --set NAME=VALUE`); `render_rules(settings)` writes the
rule file. The committed `alerts/telemon.rules.yml` is `render_rules(AlertSettings())`.

The rules are written for the scrape config of docker/prometheus.yml, `honor_labels:
true`: a Pharo sample keeps its `instance` tag (the VM's name), telemon's own samples
get telemon's address (`honor_labels=False` renders them for Prometheus's default, where
the VM's name is `exported_instance`). No rule aggregates labels away: an alert names
one VM, or one telemon. Counters are only read through `rate()`, `increase()` and
`resets()`, so a VM or telemon restart (counters back to zero) fires nothing; the one
exception is the engine's restart count, which a container's restart does not reset.

A VM's used memory is `pharo_memory_bytes - pharo_memory_free_bytes`: every format has
both (the original Telemon's `influx` serves no usedMemory), and the PromQL dashboards
chart the same difference.

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

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

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
# Prometheus holds a duration in a Go time.Duration: int64 nanoseconds, about 292 years.
_MAX_DURATION_S = (2**63 - 1) / 1e9
# A label matcher list as PromQL writes it inside braces: name op "value", ...
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"\s*'
_SELECTOR = re.compile(rf"(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?")


class SettingError(ValueError):
    """A setting that cannot be used; the message is one line naming it."""


def duration_seconds(text: str) -> float:
    """A Prometheus duration (`1h30m`, `90s`, `500ms`) in seconds; ValueError otherwise,
    also for one longer than Prometheus can hold (about 292 years)."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m, 1d)")
    # Integer milliseconds: exact for any number of digits, unlike floats.
    units_ms = (round(unit * 1000) for unit in _UNIT_S)
    ms = sum(int(n) * unit for n, unit in zip(match.groups(), units_ms, strict=True) if n)
    if ms / 1000 > _MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than Prometheus's longest duration (about 292y)")
    return ms / 1000


def _duration(text: str) -> str:
    duration_seconds(text)
    return text


def _window(text: str) -> str:
    if duration_seconds(text) <= 0:
        raise ValueError("a window must be longer than 0s")
    return text


def _doubled_window(text: str) -> str:
    """A window the rules also look back twice over (PharoMemoryLeak's two windows)."""
    _window(text)
    if 2 * duration_seconds(text) > _MAX_DURATION_S:
        raise ValueError(f"twice {text!r} is longer than Prometheus's longest duration")
    return text


def _doubled(text: str) -> str:
    """Twice the duration `text`, as a Prometheus duration."""
    ms = round(2 * duration_seconds(text) * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _gc_offset(s: AlertSettings) -> str:
    """How far back PharoFullGCsFrequent's baseline ends: its window plus its `for`."""
    ms = round((duration_seconds(s.full_gc_window) + duration_seconds(s.full_gc_for)) * 1000)
    for unit, ms_per in (("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms % ms_per == 0:
            return f"{ms // ms_per}{unit}"
    raise AssertionError("unreachable: every ms count is a whole number of ms")


def _selector(text: str) -> str:
    if _SELECTOR.fullmatch(text) is None:
        raise ValueError('label matchers as inside PromQL braces, e.g. job="telemon"')
    return text.strip().rstrip(",").strip()


Duration = Annotated[str, AfterValidator(_duration)]
"""How long a condition must hold (`for`): a Prometheus duration, `0s` allowed."""
Window = Annotated[str, AfterValidator(_window)]
"""A range a rule looks back over: a Prometheus duration longer than zero."""
DoubledWindow = Annotated[str, AfterValidator(_doubled_window)]
"""A window the rules also look back twice over."""
Ratio = Annotated[float, Field(gt=0, le=1)]


class AlertSettings(BaseModel):
    """Every threshold, window and `for` of the alert rules, with their defaults."""

    # allow_inf_nan: `inf`, `nan` or `1e400` (a float's infinity) would render rules that
    # never fire or always do.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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
    scrape_interval: Window = Field(
        default="10s",
        description="your scrape interval of telemon (docker/prometheus.yml's): the step of"
        " the subqueries that read used memory (PharoMemoryLeak) and restart counts"
        " (ContainerRestarting) sample by sample; a longer step skips samples",
    )
    runbook_base: str = Field(
        default="alerts/README.md",
        description="where the runbook is published; each alert's `runbook_url` is this"
        " plus `#alertname` in lower case (set it to the README's URL where you host it)",
    )
    pharo_target_down_for: Duration = Field(
        default="2m", description="PharoTargetDown: how long polls of a Pharo target keep failing"
    )
    pharo_target_gone_window: Window = Field(
        default="15m",
        description="PharoTargetGone: how far back a Pharo target's telemon_input_up is"
        " looked for once it is no longer served (the alert clears after it)",
    )
    pharo_target_gone_for: Duration = Field(
        default="2m",
        description="PharoTargetGone: how long the target stays gone while telemon is up"
        " (shorter than pharo_target_gone_window)",
    )
    heap_used_ratio: Ratio = Field(
        default=0.95,
        description="PharoHeapNearlyFull: share of the heap in use ((memory - memoryFree)/memory)",
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
    leak_window: DoubledWindow = Field(
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

    @model_validator(mode="after")
    def _gone_within_its_window(self) -> AlertSettings:
        # PharoTargetGone is active for the window after the series went: a `for` as
        # long never lets it fire.
        window = duration_seconds(self.pharo_target_gone_window)
        if duration_seconds(self.pharo_target_gone_for) >= window:
            raise ValueError(
                f"pharo_target_gone_for={self.pharo_target_gone_for!r} must be shorter than"
                f" pharo_target_gone_window={self.pharo_target_gone_window!r}, or"
                " PharoTargetGone never fires"
            )
        gc_offset = duration_seconds(self.full_gc_window) + duration_seconds(self.full_gc_for)
        if gc_offset > _MAX_DURATION_S:
            raise ValueError(
                "full_gc_window plus full_gc_for is longer than Prometheus's longest duration"
            )
        return self


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
    heap = m("pharo_memory_bytes")
    # The arithmetic drops __name__ and keeps every other label, as a series would.
    used = f'({heap} - {m("pharo_memory_free_bytes")})'
    full_gcs = m("pharo_full_gcs_total")
    leak_w = s.leak_window
    trough = f"min_over_time({used}[{leak_w}:{s.scrape_interval}]"
    # A VM's samples and its container's come from one telemon, and a discovered VM's carry
    # its engine's host as the container's do (two hosts may run a same-named container);
    # with honor_labels the VM's `instance` is its own name, no longer telemon's address.
    join = "job, engine_host, container_name"
    join = join if s.honor_labels else f"job, instance, {join.removeprefix('job, ')}"
    input_up = m("telemon_input_up", 'input="pharo"')
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
            "PharoTargetGone",
            f"max_over_time({input_up}[{s.pharo_target_gone_window}])\n"
            f"unless {input_up}\n"
            f'and on (job, instance) {m("up")} == 1',
            s.pharo_target_gone_for,
            "warning",
            f"Pharo target {_label('target')} is no longer polled by telemon",
            f"telemon {TELEMON} has stopped serving telemon_input_up for {_label('target')}"
            f" while it is up: the docker input no longer finds that container (stopped,"
            " removed, its label or network changed) or the target left telemon's"
            " configuration. Check `docker ps -a` on the engine and the container's exit"
            " code and logs; the alert clears"
            f" {s.pharo_target_gone_window} after the target went.",
        ),
        Rule(
            group,
            "PharoHeapNearlyFull",
            f"{used} / {heap} > {_num(s.heap_used_ratio)}",
            s.heap_nearly_full_for,
            "warning",
            f"Pharo VM {VM} uses {PERCENT} of its heap",
            f"The used share of {VM}'s heap (pharo_memory_bytes - pharo_memory_free_bytes,"
            " over pharo_memory_bytes)"
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
            f"(\n  {trough})\n/\n"
            f"  {trough} offset {leak_w})\n"
            f") > {_num(1 + s.leak_growth_ratio)}\n"
            f"and increase({full_gcs}[{leak_w}]) > 0\n"
            f"and increase({full_gcs}[{leak_w}] offset {leak_w}) > 0\n"
            # A restart resets the counters (every format has them, not an uptime): both
            # windows after it before the troughs are compared.
            f"and resets({full_gcs}[{_doubled(leak_w)}]) == 0",
            s.leak_for,
            "warning",
            f"Pharo VM {VM}'s memory after full GCs keeps growing",
            f"The least used memory of {VM} over the last {leak_w} (what full GCs leave"
            f" alive) is {VALUE} times that of the {leak_w} before, with full GCs in both,"
            f" and has kept growing for {s.leak_for}: objects stay reachable that should"
            " not (caches without bounds, sessions never expired, registries of"
            " listeners). Graph pharo_memory_bytes - pharo_memory_free_bytes: its troughs climb."
            " Inspect the"
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
            " the allocation rate (pharo_bytes_allocated_total).",
        ),
        Rule(
            group,
            "PharoFullGCsFrequent",
            f"increase({full_gcs}[{s.full_gc_window}]) >= {s.full_gc_min_count}\nand\n"
            f"rate({full_gcs}[{s.full_gc_window}])\n"
            # The usual rate: the median of the window's rates over the history there is
            # (a rate over the whole baseline would call a young VM's steady rate a storm),
            # from before the window and the `for`: a storm takes over the baseline only
            # once it fills half the history before them, not while the alert is pending.
            f"  > {_num(s.full_gc_factor)} * quantile_over_time(0.5,\n"
            f"    rate({full_gcs}[{s.full_gc_window}])"
            f"[{s.full_gc_baseline}:{s.full_gc_window}] offset {_gc_offset(s)}\n  )",
            s.full_gc_for,
            "warning",
            f"Pharo VM {VM} runs full GCs over {_num(s.full_gc_factor)} times as often as usual",
            f"{VM} ran {COUNT} full GCs in the last {s.full_gc_window}, over"
            f" {_num(s.full_gc_factor)} times its usual rate (the median over the"
            f" {s.full_gc_baseline} before, or the history there is)."
            " Full GCs stop the VM: look at the heap's use (a heap that cannot grow,"
            " PharoHeapNearlyFull), a leak (PharoMemoryLeak), and code calling"
            " `Smalltalk garbageCollect` in a loop.",
        ),
    ]


def _container_rules(s: AlertSettings) -> list[Rule]:
    m = _series(s)
    group = "telemon-containers"
    ratio = _num(s.container_memory_ratio)
    restarts = m("docker_container_status_restart_count_total")
    count = (
        f"max without (container_status) ({restarts})"
        f"[{s.container_restart_window}:{s.scrape_interval}]"
    )
    return [
        Rule(
            group,
            "ContainerRestarting",
            # The count's series carries container_status: a stop or a restart starts a new
            # series, whose first value MetricsQL's increase() would count. One count per
            # container (the max across statuses), its spread over the window from whatever
            # samples there are: the docker input serves a crash-looping container only
            # while it runs, so its count has gaps. A container recreated under its name
            # (its count from zero) is a reset and stays silent.
            f"(\n  max_over_time({count})\n  - min_over_time({count})\n)"
            f" >= {s.container_restarts}\nand resets({count}) == 0",
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
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across settings: its message names them
            raise SettingError(message) from None
        name = str(error["loc"][0])
        raise SettingError(f"{name}={values.get(name, '')!r}: {message}") from None


def settings_table(names: Sequence[str] | None = None) -> str:
    """The settings as a Markdown table: name, default, meaning."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in AlertSettings.model_fields.items():
        if names is None or name in names:
            rows.append(f"| `{name}` | `{field.default}` | {field.description} |")
    return "\n".join(rows) + "\n"
