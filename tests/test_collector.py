"""The collector: snapshots, self-metrics, scheduling, timeouts, backoff and tags."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import pytest

import telemon.collector as collector_module
from telemon import Telemon
from telemon.collector import MAX_BACKOFF_S, Collector, TargetState
from telemon.inputs.base import InputError, Target
from telemon.inputs.fields import FieldsTarget
from telemon.lineprotocol import LineEncoder
from telemon.metric import Metric

COLLECTOR_LOGGER = "telemon.collector"


class FakeTarget(Target):
    """A target whose result is chosen by the test: metrics, an exception, or a wait."""

    def __init__(self, name: str = "fake", measurement: str = "fake") -> None:
        super().__init__(name)
        self.measurement = measurement
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.tags: dict[str, str] = {}
        self.value: int = 1
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.hold: float = 0.0
        self.closed = False

    async def collect(self, now_ns: int) -> list[Metric]:
        """Counts the call, then waits, raises or returns one metric as configured."""
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.hold:
                await asyncio.sleep(self.hold)
            if self.error is not None:
                raise self.error
            fields = {"value": self.value, "calls": self.calls}
            return [Metric(self.measurement, dict(self.tags), fields, now_ns)]
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        """Remembers that the collector released it."""
        self.closed = True


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


def lines(body: bytes) -> list[str]:
    """The lines of a rendered body."""
    return body.decode().splitlines()


def lines_of(body: bytes, measurement: str) -> list[str]:
    """The lines of one measurement (matched up to its first comma or space)."""
    return [line for line in lines(body) if line.split(",", 1)[0].split(" ", 1)[0] == measurement]


def fields_of(line: str) -> dict[str, str]:
    """The field set of one line (no spaces inside tags or values)."""
    return dict(item.split("=", 1) for item in line.split(" ")[1].split(","))


def tags_of(line: str) -> dict[str, str]:
    """The tag set of one line (no escaped characters)."""
    head = line.split(" ")[0]
    return dict(item.split("=", 1) for item in head.split(",")[1:])


def status(body: bytes, target: str) -> dict[str, str]:
    """The `telemon_input` fields of `target`."""
    found = [x for x in lines_of(body, "telemon_input") if tags_of(x).get("target") == target]
    assert len(found) == 1, body
    return fields_of(found[0])


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll `predicate` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.002)


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


async def test_snapshot_is_encoded_once_per_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Renders without a new collection reuse the bytes; only the `telemon` line changes."""
    monkeypatch.setattr(collector_module, "SELF_METRICS_MAX_AGE_S", 0.0)
    target = FakeTarget()
    encoder = CountingEncoder()
    collector, [state] = make(target, encoder=encoder)
    await collector.collect(state)
    assert encoder.encoded == {"fake": 1, "telemon_input": 1}

    first = await collector.render()
    second = await collector.render()
    assert target.calls == 1
    assert encoder.encoded["fake"] == 1 and encoder.encoded["telemon_input"] == 1
    assert encoder.encoded["telemon"] == 2
    assert lines_of(first, "fake") == lines_of(second, "fake")
    assert len(lines_of(first, "fake")) == 1
    without_self = [x for x in lines(first) if not x.startswith("telemon ")]
    assert without_self == [x for x in lines(second) if not x.startswith("telemon ")]
    assert fields_of(lines_of(first, "telemon")[0])["scrapes"] == "1i"
    assert fields_of(lines_of(second, "telemon")[0])["scrapes"] == "2i"

    target.value = 99
    await collector.collect(state)
    third = await collector.render()
    assert fields_of(lines_of(third, "fake")[0])["value"] == "99i"


async def test_status_line_reports_a_successful_collection() -> None:
    """A collected target has `telemon_input` with up, errors, collections, lines and duration."""
    target = FakeTarget("t1")
    collector, [state] = make(target, input_name="fake")
    await collector.collect(state)
    body = await collector.render()
    [line] = lines_of(body, "telemon_input")
    assert tags_of(line) == {"input": "fake", "target": "t1"}
    fields = fields_of(line)
    assert fields["up"] == "1i"
    assert fields["errors"] == "0i"
    assert fields["collections"] == "1i"
    assert fields["lines"] == "1i"
    assert float(fields["duration_ms"]) >= 0
    assert state.health.up is True and state.health.last_success_ns is not None


async def test_lines_counts_lines_not_newlines_inside_string_values() -> None:
    """`lines` counts written lines, even when a string value holds a raw newline."""

    class Multiline(Target):
        async def collect(self, now_ns: int) -> list[Metric]:
            return [Metric("log", {}, {"message": "first\nsecond"}, now_ns)]

    collector, [state] = make(Multiline("multi"))
    await collector.collect(state)
    assert state.lines == 1
    assert status(await collector.render(), "multi")["lines"] == "1i"


async def test_failed_target_serves_no_stale_values() -> None:
    """After a failure the target's lines vanish and its status says up=0i with the error count."""
    target = FakeTarget("flaky")
    collector, [state] = make(target)
    await collector.collect(state)
    assert len(lines_of(await collector.render(), "fake")) == 1

    target.error = InputError("connection refused")
    await collector.collect(state)
    body = await collector.render()
    assert lines_of(body, "fake") == []
    fields = status(body, "flaky")
    assert fields["up"] == "0i"
    assert fields["errors"] == "1i"
    assert fields["collections"] == "2i"
    assert fields["lines"] == "0i"
    assert state.health.last_error == "connection refused"

    await collector.collect(state)
    assert status(await collector.render(), "flaky")["errors"] == "2i"


async def test_slow_target_does_not_delay_a_scrape(running) -> None:
    """While a collection is blocked, a scrape answers at once with the last snapshot."""
    target = FakeTarget("slow")
    collector, [state] = make(target, interval=0.01)
    running(collector)
    await wait_until(lambda: state.health.up is True)
    target.gate = asyncio.Event()  # the next collection blocks
    target.entered.clear()
    await asyncio.wait_for(target.entered.wait(), 2)
    assert target.active == 1

    body = await asyncio.wait_for(collector.render(), 0.5)
    [line] = lines_of(body, "fake")
    assert fields_of(line)["calls"] == str(target.calls - 1) + "i"
    assert status(body, "slow")["up"] == "1i"
    target.gate.set()


async def test_first_scrape_does_not_wait_for_the_first_collection(running) -> None:
    """A scrape before any collection finished answers immediately without the target's lines."""
    target = FakeTarget("pending")
    target.gate = asyncio.Event()
    collector, [state] = make(target, interval=0.01)
    running(collector)
    await asyncio.wait_for(target.entered.wait(), 2)
    body = await asyncio.wait_for(collector.render(), 0.5)
    assert lines_of(body, "fake") == []
    assert state.health.up is None
    target.gate.set()


async def test_timeout_marks_the_target_down() -> None:
    """A collection exceeding the target's timeout is abandoned and reported as timed out."""
    target = FakeTarget("stuck")
    target.gate = asyncio.Event()  # never set
    collector, [state] = make(target, timeout=0.05)
    started = time.monotonic()
    await collector.collect(state)
    assert time.monotonic() - started < 1
    assert state.health.up is False
    assert state.health.last_error == "timed out after 0.05s"
    assert target.active == 0  # the collection was cancelled, not left running
    body = await collector.render()
    assert lines_of(body, "fake") == []
    assert status(body, "stuck")["up"] == "0i"


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
    """`stop` ends the polling tasks and releases every target."""
    target = FakeTarget()
    collector, _ = make(target, interval=0.005)
    collector.start()
    await wait_until(lambda: target.calls >= 2)
    await collector.stop()
    calls = target.calls
    assert target.closed
    for _ in range(5):
        await asyncio.sleep(0.005)
    assert target.calls == calls


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
    await wait_until(lambda: state.health.up is True, timeout=5)
    body = await collector.render()
    assert len(lines_of(body, "fake")) == 1
    assert int(status(body, "flaky")["errors"].rstrip("i")) >= 3


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
    await wait_until(lambda: state.health.up is True, timeout=5)


async def test_one_failing_target_does_not_affect_the_others() -> None:
    """`collect_all` collects every target even when one of them raises."""
    good, bad = FakeTarget("good", "good_m"), FakeTarget("bad", "bad_m")
    bad.error = RuntimeError("boom")
    collector, _ = make(good, bad)
    await collector.collect_all()
    body = await collector.render()
    assert len(lines_of(body, "good_m")) == 1
    assert lines_of(body, "bad_m") == []
    assert status(body, "good")["up"] == "1i"
    assert status(body, "bad")["up"] == "0i"


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
    body = await collector.render()
    [line] = lines_of(body, "fake")
    assert tags_of(line) == {
        "dc": "eu1",
        "env": "prod",
        "host": "metric-host",
        "own": "x",
        "region": "input-region",
    }
    [status_line] = lines_of(body, "telemon_input")
    assert tags_of(status_line) == {
        "dc": "eu1",
        "env": "global-env",
        "host": "global-host",
        "input": "fake",
        "target": "tagged",
    }
    [self_line] = lines_of(body, "telemon")
    assert tags_of(self_line) == {"dc": "eu1", "env": "global-env", "host": "global-host"}


async def test_lazy_target_is_evaluated_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lazy target is collected by every render, not by the scheduler."""
    monkeypatch.setattr(collector_module, "SELF_METRICS_MAX_AGE_S", 0.0)
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return len(calls)

    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"n": count})
    target = FieldsTarget(tm)
    collector, [state] = make(target, input_name="fields")
    first = await collector.render()
    second = await collector.render()
    assert fields_of(lines_of(first, tm.measurement)[0]) == {"n": "1i"}
    assert fields_of(lines_of(second, tm.measurement)[0]) == {"n": "2i"}
    assert status(second, tm.measurement) | {"duration_ms": ""} == {
        "up": "1i",
        "errors": "0i",
        "collections": "2i",
        "lines": "1i",
        "duration_ms": "",
    }


async def test_self_lines_are_reencoded_at_most_once_a_second() -> None:
    """Back-to-back scrapes share the self-metrics lines; the lazy values stay fresh."""
    tm = Telemon(f"lazy_{uuid.uuid4().hex[:8]}", fields={"n": iter(range(1, 100)).__next__})
    collector, _ = make(FieldsTarget(tm), input_name="fields")
    first, second = await collector.render(), await collector.render()
    assert fields_of(lines_of(second, tm.measurement)[0]) == {"n": "2i"}
    assert lines_of(first, "telemon") == lines_of(second, "telemon")
    assert fields_of(lines_of(second, "telemon")[0])["scrapes"] == "1i"


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
    body = await collector.render()
    assert fields_of(lines_of(body, tm.measurement)[0]) == {"steady": "1i"}
    fields = status(body, tm.measurement)
    assert (fields["up"], fields["errors"], fields["lines"]) == ("0i", "1i", "1i")
    assert state.health.last_error == (
        f"field 'flaky' of '{tm.measurement}' raised ConnectionError: pool exhausted"
    )

    broken["on"] = False
    body = await collector.render()
    assert fields_of(lines_of(body, tm.measurement)[0]) == {"flaky": "5i", "steady": "1i"}
    fields = status(body, tm.measurement)
    assert (fields["up"], fields["errors"]) == ("1i", "1i")


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


def collector_for(global_tags: dict[str, str], direct: bool) -> tuple[Collector, Telemon]:
    telemon = Telemon("app", {"svc": "blog", "host": "own"}, scripted_fields())
    target = FieldsTarget(telemon)
    if not direct:
        target.encode_now = lambda *args: None  # type: ignore[method-assign]
    state = TargetState("fields", target, 10, 5, {"input": "tag"})
    return Collector([state], LineEncoder(), global_tags), telemon


@pytest.mark.parametrize("global_tags", [{}, {"host": "global", "dc": "eu"}])
async def test_direct_lazy_path_writes_what_metrics_would(global_tags: dict[str, str]) -> None:
    direct, direct_telemon = collector_for(global_tags, direct=True)
    checked, checked_telemon = collector_for(global_tags, direct=False)
    for _ in range(8):
        ours = [line.rsplit(" ", 1)[0] for line in lines_of(await direct.render(), "app")]
        theirs = [line.rsplit(" ", 1)[0] for line in lines_of(await checked.render(), "app")]
        assert ours == theirs
    assert direct_telemon.errors == checked_telemon.errors > 0
    assert direct.encoder.stats == checked.encoder.stats
    ours_status, theirs_status = (
        status(await direct.render(), "app"),
        status(await checked.render(), "app"),
    )
    del ours_status["duration_ms"], theirs_status["duration_ms"]
    assert ours_status == theirs_status
