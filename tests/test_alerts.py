"""The alert rules (alerts/): generated from one settings model, valid for `promtool`,
their unit tests pass and can fail, and the README documents every alert and setting.

End to end (a real Prometheus and vmalert on a real telemon) is test_alerts_e2e.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from helpers import require_executable
from victoria import VictoriaMetrics, run_victoria

from telemon.alerts import (
    ALERT_NAMES,
    AlertSettings,
    SettingError,
    duration_seconds,
    render_rules,
    rules,
    settings_from,
    settings_table,
)
from telemon.cli import main

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
RULES = ALERTS / "telemon.rules.yml"
README = ALERTS / "README.md"
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.test.yml"))
REGENERATE = "regenerate it: `python -m telemon alerts > alerts/telemon.rules.yml`"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_executable("promtool", "prometheus")


def run_promtool(binary: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (or vmalert) to its end, its output captured."""
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


# --- the committed file ---------------------------------------------------------------------


def test_committed_rules_are_the_default_rendering() -> None:
    assert RULES.read_text(encoding="utf-8") == render_rules(AlertSettings()), REGENERATE


def test_cli_prints_the_committed_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts"]) == 0
    assert capsys.readouterr().out == RULES.read_text(encoding="utf-8")


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in result.stdout


def test_promtool_checks_rules_with_every_setting_changed(
    promtool: str, tmp_path: Path
) -> None:
    """Other values render valid rules too: durations, ratios, counts, a regex selector."""
    changed = settings_from(
        [
            'selector=job=~"telemon|pharo", env!="dev"',
            "honor_labels=false",
            "runbook_base=https://wiki.example/alerts",
            *(f"{name}=90s" for name in AlertSettings.model_fields if name.endswith("_for")),
            *(f"{name}=2h30m" for name in ("leak_window", "full_gc_window", "drop_window")),
            "pharo_target_gone_window=1h",
            "scrape_interval=1m30s",
            "full_gc_baseline=1w",
            "gc_time_window=150s",
            "container_restart_window=1h",
            "heap_used_ratio=0.5",
            "leak_growth_ratio=0.25",
            "full_gc_factor=2.5",
            "full_gc_min_count=3",
        ]
    )
    text = render_rules(changed)
    assert 'resets(pharo_full_gcs_total{job=~"telemon|pharo", env!="dev"}[18000s]) == 0' in text
    assert '[2h30m:1m30s] offset 2h30m' in text
    assert "wiki.example/alerts#pharomemoryleak" in text
    assert "/ on (job, instance, engine_host, container_name) group_left ()" in text
    assert "/ on (job, engine_host, container_name) group_left ()" in RULES.read_text(
        encoding="utf-8"
    )
    assert text.count("for: 90s") == len(ALERT_NAMES)
    path = tmp_path / "changed.rules.yml"
    path.write_text(text, encoding="utf-8")
    result = run_promtool(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_takes_the_longest_duration_a_setting_takes(
    promtool: str, tmp_path: Path
) -> None:
    """The settings' bound on durations is Prometheus's (int64 nanoseconds): the longest
    a setting takes checks, a day more is refused before promtool would."""
    longest = [f"{name}=106751d" for name in AlertSettings.model_fields if name.endswith("_for")]
    path = tmp_path / "longest.rules.yml"
    gone = ["pharo_target_gone_window=106751d", "pharo_target_gone_for=106750d"]
    path.write_text(render_rules(settings_from([*longest, *gone, "leak_window=53375d"])))
    result = run_promtool(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    for too_long in ("leak_for=106752d", "leak_window=53376d"):
        with pytest.raises(SettingError, match="longer than Prometheus's longest duration"):
            settings_from([too_long])


def test_vmalert_accepts_the_rules(tmp_path: Path) -> None:
    """vmalert parses the expressions as MetricsQL and the annotations' templates itself
    (-dryRun); a template function it lacks is refused."""
    vmalert = require_executable("vmalert", "victoria-metrics")
    result = run_promtool(vmalert, "-dryRun", f"-rule={RULES}")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace("humanize ", "humanise "))
    result = run_promtool(vmalert, "-dryRun", f"-rule={broken}")
    assert result.returncode != 0 and 'function "humanise" not defined' in result.stderr


# --- the unit tests -------------------------------------------------------------------------


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert UNIT_TESTS, "no alerts/tests/*.test.yml"
    result = run_promtool(promtool, "test", "rules", *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test() -> None:
    """Each alert is expected to fire (exp_alerts) somewhere; silence alone proves little."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in UNIT_TESTS)
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:", text))
    assert firing == set(ALERT_NAMES)


@pytest.mark.parametrize(
    ("setting", "unit_test", "failing_test"),
    [
        # troughs rising 2 % an hour are taken for a leak
        ("leak_growth_ratio=0.01", "pharo_trends", "rising troughs fire; troughs rising slowly"),
        # a healthy sawtooth touching 98 % for two minutes fires
        ("heap_nearly_full_for=1m", "pharo", "a healthy sawtooth touching 98 % does not"),
        # 2 % of the time in GC fires
        ("gc_time_ratio=0.01", "pharo", "30 % of the time in GC fires; 2 % does not"),
        # 5 full GCs in 10 minutes fire
        ("full_gc_min_count=1", "pharo_trends", "a storm of full GCs after a quiet day fires"),
        # a container at 50 % of its limit fires
        ("container_memory_ratio=0.4", "containers", "a container's and a cgroup's working set"),
    ],
)
def test_unit_tests_fail_on_too_eager_rules(
    promtool: str, tmp_path: Path, setting: str, unit_test: str, failing_test: str
) -> None:
    """The unit tests hold the healthy cases: rules that fire on them fail the tests."""
    (tmp_path / "tests").mkdir()
    copy = shutil.copy(ALERTS / "tests" / f"{unit_test}.test.yml", tmp_path / "tests")
    (tmp_path / RULES.name).write_text(render_rules(settings_from([setting])), encoding="utf-8")
    result = run_promtool(promtool, "test", "rules", copy)
    assert result.returncode != 0, f"{setting}: the unit tests still pass"
    assert failing_test in result.stdout + result.stderr


# --- the rules' shape -----------------------------------------------------------------------


def test_every_rule_has_for_severity_and_annotations() -> None:
    names = [rule.name for rule in rules(AlertSettings())]
    assert len(names) == len(set(names))
    for rule in rules(AlertSettings()):
        assert rule.severity in ("warning", "critical")
        duration_seconds(rule.duration)
        assert rule.summary and rule.description
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule.name)


def test_counters_are_only_read_through_rate_increase_or_resets() -> None:
    """A VM or telemon restart sets counters back to zero: read raw, they would fire.
    The one exception is the engine's restart count, which a container's restart does
    not reset (its recreation does: the unit tests recreate one)."""
    raw_ok = "docker_container_status_restart_count_total"
    for rule in rules(AlertSettings()):
        for match in re.finditer(r"(\w+)?\(?([a-z_]+_total)\{", rule.expr):
            if match.group(2) != raw_ok:
                assert match.group(1) in ("rate", "increase", "resets"), (
                    f"{rule.name}: {match.group(0)}"
                )


def test_settings_reach_the_rules() -> None:
    text = render_rules(settings_from(["heap_used_ratio=0.875", "leak_window=20m"]))
    assert "pharo_memory_bytes{job=\"telemon\"} > 0.875" in text
    assert "[20m] offset 20m" in text
    assert 'resets(pharo_full_gcs_total{job="telemon"}[2400s]) == 0' in text
    assert "# Settings changed from the defaults: heap_used_ratio=0.875, leak_window=20m" in text
    bare = render_rules(settings_from(["selector="]))
    assert "(pharo_memory_bytes - pharo_memory_free_bytes) / pharo_memory_bytes > 0.95" in bare
    assert "{}" not in bare


# --- refused settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("heap_ratio=0.9", "unknown setting 'heap_ratio' (did you mean heap_used_ratio?)"),
        ("heap_used_ratio=1.5", "heap_used_ratio='1.5': Input should be less than or equal to 1"),
        ("gc_time_ratio=often", "gc_time_ratio='often': Input should be a valid number"),
        ("leak_window=0s", "leak_window='0s': a window must be longer than 0s"),
        ("leak_for=1 hour", "leak_for='1 hour': '1 hour' is not a Prometheus duration"),
        ("full_gc_min_count=0", "full_gc_min_count='0': Input should be greater than or equal"),
        ('selector=job="a"} or vector(1', "selector="),
        ("leak_for", "'leak_for': give NAME=VALUE"),
        # not finite: rules that would never fire, or always
        ("full_gc_factor=inf", "full_gc_factor='inf': Input should be a finite number"),
        ("leak_growth_ratio=nan", "leak_growth_ratio='nan': Input should be a finite number"),
        ("leak_growth_ratio=1e400", "leak_growth_ratio='1e400': Input should be a finite"),
        ("heap_used_ratio=-inf", "heap_used_ratio='-inf': Input should be a finite number"),
        # beyond Prometheus's range (promtool: "duration out of range")
        ("leak_for=9999999999999999999y", "leak_for='9999999999999999999y': '9999999999999999999y'"
         " is longer than Prometheus's longest duration"),
        ("drop_window=293y", "drop_window='293y': '293y' is longer than Prometheus's longest"),
        ("leak_window=200y", "leak_window='200y': twice '200y' is longer than Prometheus's"),
        ("pharo_target_gone_for=15m", "pharo_target_gone_for='15m' must be shorter than"
         " pharo_target_gone_window='15m', or PharoTargetGone never fires"),
    ],
)
def test_cli_refuses_a_setting_in_one_line(
    capsys: pytest.CaptureFixture[str], assignment: str, message: str
) -> None:
    assert main(["alerts", "--set", "leak_for=1h", "--set", assignment]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"telemon alerts: {message}")
    assert captured.err.count("\n") == 1


def test_settings_from_applies_each_assignment() -> None:
    settings = settings_from(["leak_for=1h", "full_gc_factor=3", "selector= job=\"x\" ,"])
    assert (settings.leak_for, settings.full_gc_factor, settings.selector) == ("1h", 3.0, 'job="x"')
    with pytest.raises(SettingError):
        settings_from(["nope=1"])


def test_duration_seconds() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("1d") == 86400
    assert duration_seconds("250ms") == 0.25
    assert duration_seconds("0s") == 0
    assert duration_seconds("292y") == 292 * 365 * 86400
    for bad in ("", "5", "1.5h", "m", "5M", "293y", "9999999999999999999y"):
        with pytest.raises(ValueError):
            duration_seconds(bad)


# --- the README -----------------------------------------------------------------------------


def test_readme_has_the_settings_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "--settings"]) == 0
    table = capsys.readouterr().out
    assert table == settings_table()
    assert table in README.read_text(encoding="utf-8"), (
        "alerts/README.md: paste `python -m telemon alerts --settings` under its settings comment"
    )


def test_readme_documents_every_alert() -> None:
    """A runbook section per alert (each runbook_url's anchor), naming its settings."""
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^### (\w+)$", text, re.MULTILINE)
    assert headings == list(ALERT_NAMES)
    sections = re.split(r"^### \w+$", text, flags=re.MULTILINE)[1:]
    for name, section in zip(headings, sections, strict=True):
        assert len(section.split()) > 40, f"{name}: a runbook paragraph"
        row = re.search(rf"^\| \[{name}\]\(#{name.lower()}\) \|.*$", text, re.MULTILINE)
        assert row, f"{name}: a row in the table of alerts"
        for setting in re.findall(r"`([a-z_]+)`", row.group(0).split("|")[-2]):
            assert setting in AlertSettings.model_fields, f"{name}: {setting}"
            assert f"`{setting}`" in section, f"{name}'s runbook names {setting}"
    described = {
        name
        for name, field in AlertSettings.model_fields.items()
        if any(alert in (field.description or "") for alert in ALERT_NAMES)
    }
    in_rows = set(re.findall(r"`([a-z_]+)`", "".join(re.findall(r"^\| \[.*$", text, re.M))))
    assert described <= in_rows


# --- on VictoriaMetrics (vmalert's MetricsQL) ------------------------------------------------

MINUTE_MS = 60_000
Values = list[float | None]  # a sample a minute from minute 0 (None: not served)
RESTART_COUNT = "docker_container_status_restart_count_total"
# containers.test.yml's series. shop restarts at 20 (one scrape sees it `restarting`), erp
# is stopped at 30 (its count now under container_status="exited"), crm is recreated at 20
# (its count from 0); loop is in a crash loop, served only while it runs: one sample in
# five, a restart between each.
RESTART_SERIES: dict[tuple[str, str], Values] = {
    ("shop", "running"): [2] * 20 + [None] + [3] * 29,
    ("shop", "restarting"): [None] * 20 + [3] + [None] * 29,
    ("erp", "running"): [4] * 30 + [None] * 20,
    ("erp", "exited"): [None] * 30 + [4] * 20,
    ("crm", "running"): [5] * 20 + [0] * 30,
    ("loop", "running"): [n // 5 if n % 5 == 2 else None for n in range(50)],
}
# minute -> the containers the rule's expression returns, with their value (the restarts).
# loop's three samples in the window count 2 restarts on Prometheus; VictoriaMetrics reads
# the subquery's first step from the sample before the window too (imported samples carry
# no staleness marker), so 3.
RESTARTS_SEEN = {
    19: {"loop": 3.0},
    22: {"shop": 1.0, "loop": 3.0},
    34: {"shop": 1.0, "loop": 3.0},
    40: {"loop": 3.0},
}
# pharo_full_gcs_total of VMs first scraped at minute 0: `young` runs a full GC a minute,
# steadily, for 3h; `storm` one every 10 minutes for 2h40m, then 4 a minute; `long` one
# every 10 minutes for 20 minutes, then 50 a minute for 25 minutes (as long a storm as
# the calm before it), then none
FULL_GC_SERIES: dict[str, Values] = {
    "young": [float(n) for n in range(181)],
    "storm": [n // 10 for n in range(161)] + [16.0 + 4 * n for n in range(1, 21)],
    "long": [n // 10 for n in range(21)] + [2.0 + 50 * min(n, 25) for n in range(1, 161)],
}


def _import_body(series: list[tuple[dict[str, str], Values]], start_ms: int) -> bytes:
    """`series` (labels with __name__, values) in /api/v1/import's JSON lines."""
    lines = []
    for metric, values in series:
        kept = [(n, v) for n, v in enumerate(values) if v is not None]
        stamps = [start_ms + n * MINUTE_MS for n, _ in kept]
        item = {"metric": metric, "values": [v for _, v in kept], "timestamps": stamps}
        lines.append(json.dumps(item))
    return ("\n".join(lines) + "\n").encode()


async def _import(victoria: VictoriaMetrics, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{victoria.url}/api/v1/import", data=body) as answer,
    ):
        assert answer.status == 204, await answer.text()
    await victoria.force_flush()


async def _query_at(
    victoria: VictoriaMetrics, expr: str, at_s: float, label: str
) -> dict[str, float]:
    """`label` -> value of the expression's series at `at_s`, asked as vmalert asks (step
    5m, its -datasource.queryStep default)."""
    data = await victoria.api("query", query=expr, time=f"{at_s:.3f}", step="5m")
    return {r["metric"][label]: float(r["value"][1]) for r in data["result"]}


def _start_ms(minutes: int) -> int:
    """A minute boundary `minutes` ago, so that every sample imported is in the past."""
    return (int(time.time()) // 60 - minutes) * MINUTE_MS


def _expr(name: str) -> str:
    [rule] = [r for r in rules(AlertSettings()) if r.name == name]
    return rule.expr


async def test_container_restarting_counts_on_victoria_metrics(tmp_path: Path) -> None:
    """vmalert evaluates the rule with MetricsQL, whose increase() counts the first value
    of a new series: a `docker stop` (a new container_status) would read as restarts.
    The rule's expression on VictoriaMetrics fires for shop's one restart, counted once,
    and for loop's restarts seen through gaps, and for nothing else; the increase() it
    replaced does not."""
    expr = _expr("ContainerRestarting")
    naive = f"sum without (container_status) (increase({RESTART_COUNT}[15m]))"
    start_ms = _start_ms(60)
    labels = {"__name__": RESTART_COUNT, "job": "telemon", "instance": "telemon:8080",
              "engine_host": "h1"}  # fmt: skip
    series = [
        (labels | {"container_name": name, "container_status": status}, values)
        for (name, status), values in RESTART_SERIES.items()
    ]
    with run_victoria(tmp_path / "vm") as victoria:
        await _import(victoria, _import_body(series, start_ms))
        for minute, expected in RESTARTS_SEEN.items():
            at_s = start_ms / 1000 + minute * 60
            seen = await _query_at(victoria, expr, at_s, "container_name")
            assert seen == expected, f"{minute}: {seen}"
        # what the fix is for: increase() counts shop's `restarting` series and erp's stop
        naive_seen = await _query_at(victoria, naive, start_ms / 1000 + 34 * 60, "container_name")
        assert naive_seen.get("erp", 0) >= 1 and naive_seen.get("shop", 0) > 1, naive_seen


async def test_full_gcs_frequent_on_victoria_metrics(tmp_path: Path) -> None:
    """The usual rate as MetricsQL computes it (the subquery, its explicit step): a VM
    first scraped 3h ago with a steady rate is silent, a storm after a quiet 2h40m fires,
    and so does one as long as the calm before it, to its end.
    (The rate over the whole day it replaced misfired on Prometheus only, which divides
    a partial window's increase by the whole window: pharo_trends.test.yml.)"""
    expr = _expr("PharoFullGCsFrequent")
    start_ms = _start_ms(240)
    series = [
        ({"__name__": "pharo_full_gcs_total", "job": "telemon", "instance": name}, values)
        for name, values in FULL_GC_SERIES.items()
    ]
    with run_victoria(tmp_path / "vm") as victoria:
        await _import(victoria, _import_body(series, start_ms))
        checks = ((30, {"long"}), (40, {"long"}), (45, {"long"}), (120, set()),
                  (160, set()), (180, {"storm"}))  # fmt: skip
        for minute, firing in checks:
            at_s = start_ms / 1000 + minute * 60
            assert set(await _query_at(victoria, expr, at_s, "instance")) == firing, minute
