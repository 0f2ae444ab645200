"""The collector: scheduling, timeouts, backoff, snapshots, status lines, tags, lazy targets.

The collector only runs input targets; what a scrape adds around its lines (the
`telemon` line, the lazy targets' status lines, the self-lines cache) is the
agent's and is tested in test_agent.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from helpers import WAIT_S, FakeTarget, lines_of, status_of, wait_until

from telemon import Telemon
from telemon.collector import MAX_BACKOFF_S, Collector, TargetState
from telemon.inputs.base import InputError, Target
from telemon.inputs.fields import FieldsTarget
from telemon.lineprotocol import LineEncoder
from telemon.lpparse import parse_lines
from telemon.metric import FieldValue, Metric

COLLECTOR_LOGGER = "telemon.collector"


class CountingEncoder(LineEncoder):
    """Counts how often each measurement is encoded."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: dict[str, int] = {}

    def encode(self, metric: Metric) -> str:
        """Counts, then encodes as usual."""
        self.encoded[metric.measurement] = self.encoded.get(metric.measurement, 0) + 1
        return super().encode(metric)


def make(
    *targets: Target,
    input_name: str = "fake",
    interval: float = 3600.0,
    timeout: float = 5.0,
    tags: dict[str, str] | None = None,
    global_tags: dict[str, str] | None = None,
    encoder: LineEncoder | None = None,
) -> tuple[Collector, list[TargetState]]:
    """A collector over `targets`, all in one input."""
    states = [TargetState(input_name, t, interval, timeout, dict(tags or {})) for t in targets]
    return Collector(states, encoder or LineEncoder(), global_tags), states


def lazy_status(collector: Collector, state: TargetState) -> dict[str, FieldValue]:
    """A lazy target's `telemon_input` fields, without the duration."""
    fields = collector.status_metric(state, 0).fields
    del fields["duration_ms"]
    return fields


@pytest.fixture
async def running():
    """Collectors started by a test, stopped at teardown."""
    started: list[Collector] = []

    def start(collector: Collector) -> Collector:
        collector.start()
        started.append(collector)
        return collector

    yield start
    for collector in started:
        await collector.stop()


# --- snapshots and status lines of polled targets ------------------------------------------


async def test_snapshot_is_encoded_once_per_collection() -> None:
    """Snapshots without a new collection are the same bytes, encoded once."""
    target = FakeTarget()
    encoder = CountingEncoder()
    collector, [state] = make(target, encoder=encoder)
    await collector.collect(state)
    assert encoder.encoded == {"fake": 1, "telemon_input": 1}

    first = collector.snapshot()
    assert collector.snapshot() is first
    assert target.calls == 1 and encoder.encoded == {"fake": 1, "telemon_input": 1}
    [line] = lines_of(first, "fake")
    assert line.fields["value"] == 1

    target.value = 99
    await collector.collect(state)
    [line] = lines_of(collector.snapshot(), "fake")
    assert line.fields["value"] == 99


async def test_listeners_get_each_collection_once() -> None:
    """Each polled collection's lines (values and status) go to every listener once."""
    target = FakeTarget("t1")
    collector, [state] = make(target)
    pushed: list[bytes] = []
    collector.listeners.append(pushed.append)
    await collector.collect(state)
    await collector.collect(state)
    assert len(pushed) == 2
    assert [lines_of(body, "fake")[0].fields["calls"] for body in pushed] == [1, 2]
    assert status_of(pushed[1], target="t1")["collections"] == 2


async def test_status_line_reports_a_successful_collection() -> None:
    """A collected target has `telemon_input` with up, errors, collections, lines and duration."""
    target = FakeTarget("t1")
    collector, [state] = make(target, input_name="fake")
    await collector.collect(state)
    [line] = lines_of(collector.snapshot(), "telemon_input")
    assert line.tags == {"input": "fake", "target": "t1"}
    assert {k: v for k, v in line.fields.items() if k != "duration_ms"} == {
        "up": 1,
        "errors": 0,
        "collections": 1,
        "lines": 1,
        "values_dropped": 0,
    }
    assert isinstance(line.fields["duration_ms"], float) and line.fields["duration_ms"] >= 0
    assert state.health.up is True and state.health.last_success_ns is not None


async def test_lines_counts_lines_not_newlines_inside_string_values() -> None:
    """`lines` counts written lines, even when a string value holds a raw newline."""

    class Multiline(Target):
        async def collect(self, now_ns: int) -> list[Metric]:
            return [Metric("log", {}, {"message": "first\nsecond"}, now_ns)]

    collector, [state] = make(Multiline("multi"))
    await collector.collect(state)
    assert state.lines == 1
    assert status_of(collector.snapshot(), target="multi")["lines"] == 1


async def test_failed_target_serves_no_stale_values() -> None:
    """After a failure the target's lines vanish and its status says up=0i with the error count."""
    target = FakeTarget("flaky")
    collector, [state] = make(target)
    await collector.collect(state)
    assert len(lines_of(collector.snapshot(), "fake")) == 1

    target.error = InputError("connection refused")
    await collector.collect(state)
    body = collector.snapshot()
    assert lines_of(body, "fake") == []
    fields = status_of(body, target="flaky")
    assert (fields["up"], fields["errors"], fields["collections"], fields["lines"]) == (0, 1, 2, 0)
    assert state.health.last_error == "connection refused"

    await collector.collect(state)
    assert status_of(collector.snapshot(), target="flaky")["errors"] == 2


async def test_a_blocked_collection_leaves_the_last_snapshot_served(running) -> None:
    """While a collection is blocked, the snapshot holds the last finished one."""
    target = FakeTarget("slow")
    collector, [state] = make(target, interval=0.01)
    running(collector)
    await wait_until(lambda: state.health.up is True)
    target.gate = asyncio.Event()  # the next collection blocks
    target.entered.clear()
    await target.entered.wait()
    assert target.active == 1

    body = collector.snapshot()
    [line] = lines_of(body, "fake")
    assert line.fields["calls"] == target.calls - 1
    assert status_of(body, target="slow")["up"] == 1
    target.gate.set()


async def test_nothing_is_served_for_a_target_before_its_first_collection(running) -> None:
    """A target whose first collection has not finished has no lines, not even a status line."""
    target = FakeTarget("pending")
    target.gate = asyncio.Event()
    collector, [state] = make(target, interval=0.01)
    running(collector)
    await target.entered.wait()
    assert collector.snapshot() == b""
    assert state.health.up is None
    target.gate.set()


# --- timeouts, scheduling and stopping ------------------------------------------------------


async def test_timeout_marks_the_target_down() -> None:
    """A collection exceeding the target's timeout is cancelled and reported as timed out."""
    target = FakeTarget("stuck")
    target.gate = asyncio.Event()  # never set: only the timeout can end the collection
    collector, [state] = make(target, timeout=0.05)
    collecting = asyncio.create_task(collector.collect(state))
    await asyncio.wait([collecting], timeout=WAIT_S)  # without a timeout it would never end
    assert collecting.done()
    assert target.calls == 1 and target.active == 0  # cancelled, not left running
    assert state.health.up is False
    assert state.health.last_error == "timed out after 0.05s"
    body = collector.snapshot()
    assert lines_of(body, "fake") == []
    assert status_of(body, target="stuck")["up"] == 0


async def test_polls_of_one_target_never_overlap(running) -> None:
    """A collection slower than the interval delays the next one instead of overlapping it."""
    targets = [FakeTarget(f"t{i}") for i in range(3)]
    for target in targets:
        target.hold = 0.01  # five times the interval
    collector, _ = make(*targets, interval=0.002)
    running(collector)
    await wait_until(lambda: all(t.calls >= 5 for t in targets))
    assert [t.max_active for t in targets] == [1, 1, 1]


async def test_polling_repeats_at_the_interval(running) -> None:
    """A started collector collects each polled target again and again."""
    target = FakeTarget()
    collector, [state] = make(target, interval=0.005)
    running(collector)
    await wait_until(lambda: target.calls >= 4)
    assert state.health.collections >= 3


async def test_stop_cancels_polls_and_closes_targets() -> None:
    """`stop` cancels every polling task (a collection under way too) and releases the targets."""
    idle, busy = FakeTarget("idle"), FakeTarget("busy")
    collector, _ = make(idle, busy, interval=0.005)
    collector.start()
    await wait_until(lambda: idle.calls >= 2)
    busy.gate = asyncio.Event()  # never set: stop must cancel this collection
    busy.entered.clear()
    await busy.entered.wait()
    tasks = list(collector._tasks.values())
    assert len(tasks) == 2

    stopping = asyncio.create_task(collector.stop())
    await asyncio.wait([stopping], timeout=WAIT_S)  # a task left running would hang `stop`
    assert stopping.done()
    # The polling tasks are the only callers of `collect`: cancelled, nothing polls again.
    assert all(task.cancelled() for task in tasks)
    assert not collector._tasks
    assert busy.active == 0
    assert idle.closed and busy.closed


# --- backoff and failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "failures", "expected"),
    [
        (10.0, 0, 10.0),
        (10.0, 1, 10.0),
        (10.0, 2, 20.0),
        (10.0, 3, 40.0),
        (10.0, 5, 160.0),
        (10.0, 6, MAX_BACKOFF_S),
        (10.0, 1000, MAX_BACKOFF_S),
        (0.5, 10_000, MAX_BACKOFF_S),
        (600.0, 0, 600.0),
        (600.0, 8, 600.0),
    ],
)
def test_backoff_doubles_and_is_capped(interval: float, failures: int, expected: float) -> None:
    """`next_delay` doubles per consecutive failure, capped at the larger of interval and max."""
    state = TargetState("fake", FakeTarget(), interval, 1.0)
    state.health.consecutive_failures = failures
    assert state.next_delay() == expected


async def test_backoff_grows_while_failing_and_resets_on_success() -> None:
    """Consecutive failures lengthen the delay; one success brings it back to the interval."""
    target = FakeTarget()
    target.error = InputError("down")
    collector, [state] = make(target, interval=1.0)
    delays = []
    for _ in range(4):
        await collector.collect(state)
        delays.append(state.next_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0]
    target.error = None
    await collector.collect(state)
    assert state.next_delay() == 1.0
    assert state.health.consecutive_failures == 0 and state.health.failures == 4


async def test_failing_target_recovers_under_polling(running) -> None:
    """A polled target that fails a few times comes back up on its own."""
    target = FakeTarget("flaky")
    target.error = InputError("refused")
    collector, [state] = make(target, interval=0.002)
    running(collector)
    await wait_until(lambda: state.health.consecutive_failures >= 3)
    target.error = None
    await wait_until(lambda: state.health.up is True)
    body = collector.snapshot()
    assert len(lines_of(body, "fake")) == 1
    assert status_of(body, target="flaky")["errors"] >= 3


async def test_failures_and_recovery_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A failure is logged when it starts or changes; recovery is logged once."""
    caplog.set_level(logging.INFO, logger=COLLECTOR_LOGGER)
    target = FakeTarget("db")
    collector, [state] = make(target, input_name="fake")

    def messages() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == COLLECTOR_LOGGER]

    await collector.collect(state)
    assert messages() == []
    target.error = InputError("refused")
    await collector.collect(state)
    await collector.collect(state)
    target.error = InputError("reset by peer")
    await collector.collect(state)
    target.error = None
    await collector.collect(state)
    await collector.collect(state)
    assert messages() == [
        (logging.WARNING, "input fake target db: refused"),
        (logging.WARNING, "input fake target db: reset by peer"),
        (logging.INFO, "input fake target db recovered"),
    ]


async def test_a_lasting_partial_failure_is_not_logged_as_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A field that fails at every collection keeps the target down, with no 'recovered' lines."""
    caplog.set_level(logging.INFO, logger=COLLECTOR_LOGGER)

    class HalfBroken(FakeTarget):
        async def collect(self, now_ns: int) -> list[Metric]:
            self.note_partial_error("field x raised")
            return await super().collect(now_ns)

    target = HalfBroken("app")
    collector, [state] = make(target, input_name="fields")
    for _ in range(3):
        await collector.collect(state)
        assert state.health.up is False and state.health.last_error == "field x raised"
        assert state.body  # what it got is served
    assert not [r for r in caplog.records if "recovered" in r.getMessage()]


async def test_unexpected_exception_marks_down_and_polling_continues(running) -> None:
    """A bug in a target (ZeroDivisionError) marks it down without ending its poll loop."""
    target = FakeTarget("buggy")
    target.error = ZeroDivisionError("division by zero")
    collector, [state] = make(target, interval=0.002)
    running(collector)
    await wait_until(lambda: target.calls >= 3)
    assert state.health.up is False
    assert state.health.last_error == "unexpected ZeroDivisionError: division by zero"
    assert all(not task.done() for task in collector._tasks.values())
    target.error = None
    await wait_until(lambda: state.health.up is True)


async def test_one_failing_target_does_not_affect_the_others() -> None:
    """`collect_all` collects every target even when one of them raises."""
    good, bad = FakeTarget("good", "good_m"), FakeTarget("bad", "bad_m")
    bad.error = RuntimeError("boom")
    collector, _ = make(good, bad)
    await collector.collect_all()
    body = collector.snapshot()
    assert len(lines_of(body, "good_m")) == 1
    assert lines_of(body, "bad_m") == []
    assert status_of(body, target="good")["up"] == 1
    assert status_of(body, target="bad")["up"] == 0


# --- tags -----------------------------------------------------------------------------------


async def test_input_tags_override_and_global_tags_fill() -> None:
    """Input tags override the metric's tags; global tags only fill keys that are missing."""
    target = FakeTarget("tagged")
    target.tags = {"host": "metric-host", "region": "metric-region", "own": "x"}
    collector, [state] = make(
        target,
        input_name="fake",
        tags={"region": "input-region", "env": "prod"},
        global_tags={"host": "global-host", "dc": "eu1", "env": "global-env"},
    )
    await collector.collect(state)
    body = collector.snapshot()
    [line] = lines_of(body, "fake")
    assert line.tags == {
        "dc": "eu1",
        "env": "prod",
        "host": "metric-host",
        "n": "0",
        "own": "x",
        "region": "input-region",
    }
    [status_line] = lines_of(body, "telemon_input")
    assert status_line.tags == {
        "dc": "eu1",
        "env": "global-env",
        "host": "global-host",
        "input": "fake",
        "target": "tagged",
    }


# --- lazy targets ---------------------------------------------------------------------------


async def test_lazy_target_is_evaluated_per_render() -> None:
    """A lazy target is collected by every `render_lazy`, not by the scheduler."""
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return len(calls)

    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"n": count})
    collector, [state] = make(FieldsTarget(tm), input_name="fields")
    first, _ = await collector.render_lazy()
    second, _ = await collector.render_lazy()
    assert lines_of(first, tm.measurement)[0].fields == {"n": 1}
    assert lines_of(second, tm.measurement)[0].fields == {"n": 2}
    assert lazy_status(collector, state) == {
        "up": 1,
        "errors": 0,
        "collections": 2,
        "lines": 1,
        "values_dropped": 0,
    }
    assert collector.snapshot() == b""  # lazy lines are never part of the polled snapshot


async def test_render_lazy_says_when_a_lazy_target_changes_up() -> None:
    """The second answer of `render_lazy` is true when a lazy target went up or down."""
    broken = {"on": False}

    def flaky() -> int:
        if broken["on"]:
            raise ConnectionError("gone")
        return 1

    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"v": flaky})
    collector, _ = make(FieldsTarget(tm), input_name="fields")
    changes = []
    for on in (False, False, True, True, False):
        broken["on"] = on
        changes.append((await collector.render_lazy())[1])
    assert changes == [True, False, True, False, True]  # None -> up, up, down, down, up


async def test_lazy_metrics_evaluates_the_lazy_targets_as_metrics() -> None:
    """`lazy_metrics` (other formats) evaluates lazy targets; `polled_metrics` keeps the rest."""
    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"n": iter(range(1, 9)).__next__})
    polled = FakeTarget("polled")
    collector, states = make(polled, FieldsTarget(tm), global_tags={"dc": "eu"})
    await collector.collect(states[0])
    first = await collector.lazy_metrics()
    second = await collector.lazy_metrics()
    assert [(m.measurement, m.fields, m.tags) for m in first] == [
        (tm.measurement, {"n": 1}, {"dc": "eu"})
    ]
    assert second[0].fields == {"n": 2}
    assert [(m.measurement, m.fields["calls"]) for m in collector.polled_metrics()] == [("fake", 1)]
    assert polled.calls == 1


async def test_lazy_target_is_not_polled(running) -> None:
    """`start` creates no polling task for lazy targets."""
    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"n": 1})
    collector, [state] = make(FieldsTarget(tm), input_name="fields", interval=0.001)
    running(collector)
    assert not collector._tasks
    assert state.health.collections == 0


async def test_lazy_field_failure_marks_down_but_serves_other_fields() -> None:
    """A failing field gives up=0i and counts an error; the other fields are still served."""
    broken = {"on": True}

    def flaky() -> int:
        if broken["on"]:
            raise ConnectionError("pool exhausted")
        return 5

    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"flaky": flaky, "steady": lambda: 1})
    collector, [state] = make(FieldsTarget(tm), input_name="fields")
    body, _ = await collector.render_lazy()
    assert lines_of(body, tm.measurement)[0].fields == {"steady": 1}
    fields = lazy_status(collector, state)
    assert (fields["up"], fields["errors"], fields["lines"]) == (0, 1, 1)
    assert state.health.last_error == (
        f"field 'flaky' of '{tm.measurement}' raised ConnectionError: pool exhausted"
    )

    broken["on"] = False
    body, _ = await collector.render_lazy()
    assert lines_of(body, tm.measurement)[0].fields == {"flaky": 5, "steady": 1}
    fields = lazy_status(collector, state)
    assert (fields["up"], fields["errors"]) == (1, 1)


# --- lazy targets' direct path (no Metric objects) ----------------------------------------


class Flaky:
    """A field source answering a script of values and failures, one per call."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)

    def __call__(self) -> object:
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def scripted_fields() -> dict[str, object]:
    """The same values on every build: two plain renders (the numbers' line template is
    then known), then numbers the template must refuse, then failures, then text."""
    return {
        "n": Flaky(1, 2, 2**70, 4, 5, 6, 7),  # 2**70 is clamped by the checked path
        "ratio": Flaky(0.5, 0.75, 1e-7, float("nan"), 1.5, 2.5, 0.25),  # exponent; nan
        "count": Flaky(3, 4, 5, 6.0, ValueError("boom"), 8, True),  # int field meets 6.0, True
        "gone": Flaky(3, 3, 3, 3, [1], 3, "text"),  # unusable once, then a string
        "seven": lambda: 7,
    }


def collector_for(global_tags: dict[str, str]) -> tuple[Collector, TargetState, Telemon]:
    telemon = Telemon("app", {"svc": "blog", "host": "own"}, scripted_fields())
    state = TargetState("fields", FieldsTarget(telemon), 10, 5, {"input": "tag"})
    return Collector([state], LineEncoder(), global_tags), state, telemon


@pytest.mark.parametrize("global_tags", [{}, {"host": "global", "dc": "eu"}])
async def test_lazy_renders_keep_each_fields_type_and_count_what_they_leave_out(
    global_tags: dict[str, str],
) -> None:
    """Values a line template cannot write take the checked path: every field keeps
    its first type, what cannot be written is left out and counted, tags merge."""
    collector, state, telemon = collector_for(global_tags)
    kinds: dict[str, type] = {}
    for _ in range(8):
        body, _ = await collector.render_lazy()
        [line] = parse_lines(body.decode())
        assert line.tags == {**global_tags, "svc": "blog", "host": "own", "input": "tag"}
        for key, value in line.fields.items():
            assert type(value) is kinds.setdefault(key, type(value)), (key, value)
    assert kinds == {"n": int, "ratio": float, "count": int, "gone": int, "seven": int}
    assert telemon.errors > 0
    assert collector.encoder.losses.dropped(state.source) > 0
