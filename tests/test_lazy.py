"""The `Telemon` API: lazily evaluated fields, timeouts, errors and its aiohttp handler."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid

import pytest
from aiohttp import web

import telemon
from telemon import Telemon

FIELDS_LOGGER = "telemon.fields"


def unique(prefix: str = "m") -> str:
    """A measurement name no other test uses (the log-once memory is process-wide)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def split_line(text: str) -> tuple[str, str, int]:
    """(measurement+tags, fields, timestamp) of a single line of line protocol."""
    assert text.endswith("\n") and text.count("\n") == 1, text
    head, rest = text[:-1].split(" ", 1)
    fields, stamp = rest.rsplit(" ", 1)
    return head, fields, int(stamp)


def field_map(text: str) -> dict[str, str]:
    """The field set of one line as key -> encoded value."""
    _, fields, _ = split_line(text)
    return dict(item.split("=", 1) for item in fields.split(","))


def test_public_api_example_renders_outside_a_loop() -> None:
    """The README example renders one line with the tag, the field and a current timestamp."""
    tm = telemon.Telemon(measurement="app")
    tm.tags["host"] = "telemon-1"
    tm.fields["meaning"] = lambda: 42
    before = time.time_ns()
    text = tm.render()
    after = time.time_ns()
    head, fields, stamp = split_line(text)
    assert head == "app,host=telemon-1"
    assert fields == "meaning=42i"
    assert before <= stamp <= after
    assert tm.errors == 0


async def test_sync_async_and_plain_fields() -> None:
    """Sync callables, async callables and plain values are all written with their types."""

    async def ratio() -> float:
        await asyncio.sleep(0)
        return 0.25

    name = unique()
    tm = Telemon(name, {"host": "a"}, {"count": lambda: 3, "ratio": ratio, "label": "x y"})
    tm.fields["ok"] = True
    tm.fields["plain_float"] = 1.5
    head, fields, _ = split_line(await tm.render_async())
    assert head == f"{name},host=a"
    assert fields == 'count=3i,ratio=0.25,label="x y",ok=true,plain_float=1.5'
    assert tm.errors == 0 and tm.last_error is None


async def test_fields_are_evaluated_at_every_render() -> None:
    """A callable is called again for each render, never cached."""
    calls = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    async def acounter() -> int:
        return len(calls) * 10

    tm = Telemon(unique(), fields={"n": counter, "a": acounter})
    assert field_map(await tm.render_async()) == {"n": "1i", "a": "10i"}
    assert field_map(await tm.render_async()) == {"n": "2i", "a": "20i"}
    assert len(calls) == 2


async def test_raising_field_is_left_out_and_counted() -> None:
    """A field that raises is dropped from that render; the others are unaffected."""

    def boom() -> int:
        raise ValueError("database is down")

    name = unique()
    tm = Telemon(name, fields={"before": 1, "bad": boom, "after": lambda: "z"})
    assert field_map(await tm.render_async()) == {"before": "1i", "after": '"z"'}
    assert tm.errors == 1
    assert tm.last_error == f"field 'bad' of '{name}' raised ValueError: database is down"


async def test_raising_async_field_is_left_out_and_counted() -> None:
    """An async field that raises is dropped and counted like a sync one."""

    async def boom() -> int:
        await asyncio.sleep(0)
        raise KeyError("gone")

    tm = Telemon(unique(), fields={"bad": boom, "good": 2})
    assert field_map(await tm.render_async()) == {"good": "2i"}
    assert tm.errors == 1
    assert "raised KeyError" in (tm.last_error or "")


async def test_async_field_times_out_and_is_cancelled() -> None:
    """An async field that never finishes is dropped after the timeout and its task cancelled."""
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> int:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    name = unique()
    tm = Telemon(name, fields={"stuck": stuck, "fine": lambda: 5}, timeout=0.05)
    started = time.monotonic()
    text = await tm.render_async()
    elapsed = time.monotonic() - started
    assert field_map(text) == {"fine": "5i"}
    assert 0.04 <= elapsed < 0.5
    assert tm.errors == 1
    assert tm.last_error == f"field 'stuck' of '{name}' timed out after 0.05s"
    await asyncio.wait_for(cancelled.wait(), 1.0)


async def test_slow_sync_field_moves_to_a_thread_and_comes_back() -> None:
    """A sync field that overran runs in a thread: renders stay fast and the value returns."""
    loop_thread = threading.get_ident()
    release = threading.Event()
    threads: list[int] = []

    def slow() -> int:
        threads.append(threading.get_ident())
        if len(threads) == 1:
            time.sleep(0.1)  # overruns the 0.05 s timeout once, in the loop thread
            return 1
        if len(threads) == 2:
            release.wait(5)  # stuck upstream, now in a worker thread
            return 2
        return 3

    name = unique()
    tm = Telemon(name, fields={"slow": slow, "fine": 7}, timeout=0.05)
    try:
        first = await tm.render_async()
        assert field_map(first) == {"fine": "7i"}
        assert tm.errors == 1
        assert tm.last_error == (
            f"field 'slow' of '{name}' took longer than 0.05s; now evaluated in a thread"
        )

        started = time.monotonic()
        second = await tm.render_async()
        assert time.monotonic() - started < 0.5
        assert field_map(second) == {"fine": "7i"}
        assert tm.errors == 2
        assert tm.last_error == f"field 'slow' of '{name}' timed out after 0.05s"
        assert len(threads) == 2 and threads[1] != loop_thread
    finally:
        release.set()

    values: list[str] = []

    async def comes_back() -> bool:
        values.append(field_map(await tm.render_async()).get("slow", ""))
        return values[-1] != ""

    deadline = time.monotonic() + 3
    while not await comes_back():
        assert time.monotonic() < deadline, values
    assert values[-1] in ("2i", "3i")
    # Once fast again, every render has the fresh value (still from a worker thread).
    assert field_map(await tm.render_async())["slow"] == "3i"
    assert all(ident != loop_thread for ident in threads[1:])


def test_sync_render_is_not_held_by_a_stuck_threaded_field() -> None:
    """`render()` outside a loop returns within the timeout even while a threaded field hangs."""
    release = threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.1)  # overruns once: the field is moved to a thread
            return 1
        release.wait(5)
        return 2

    tm = Telemon(unique(), fields={"slow": slow, "fine": 1}, timeout=0.05)
    safety = threading.Timer(2.0, release.set)
    safety.start()
    try:
        assert field_map(tm.render()) == {"fine": "1i"}
        started = time.monotonic()
        second = tm.render()
        elapsed = time.monotonic() - started
        assert field_map(second) == {"fine": "1i"}
        assert elapsed < 1.0, f"render() waited {elapsed:.2f}s for a field with a 0.05s timeout"
    finally:
        release.set()
        safety.cancel()


async def test_unusable_types_are_dropped_and_counted() -> None:
    """object(), bytes and lists are left out and counted; the usable fields stay."""
    name = unique()
    tm = Telemon(
        name,
        fields={"obj": object, "raw": lambda: b"x", "items": lambda: [1], "ok": lambda: 1},
    )
    assert field_map(await tm.render_async()) == {"ok": "1i"}
    assert tm.errors == 3
    assert tm.last_error == (
        f"field 'items' of '{name}' returned unusable list (want bool, int, float or str)"
    )


async def test_none_is_skipped_silently(caplog: pytest.LogCaptureFixture) -> None:
    """A field returning None is simply absent: no error, no log."""
    caplog.set_level(logging.DEBUG, logger=FIELDS_LOGGER)

    async def nothing() -> None:
        return None

    tm = Telemon(unique(), fields={"none": lambda: None, "anone": nothing, "ok": 1})
    assert field_map(await tm.render_async()) == {"ok": "1i"}
    assert tm.errors == 0
    assert tm.last_error is None
    assert [r for r in caplog.records if r.name == FIELDS_LOGGER] == []


async def test_nan_is_dropped_by_the_encoder() -> None:
    """NaN and infinities reach the encoder, which drops them and counts them there."""
    tm = Telemon(unique(), fields={"nan": lambda: math.nan, "inf": math.inf, "ok": 0.5})
    assert field_map(await tm.render_async()) == {"ok": "0.5"}
    assert tm.encoder.stats.fields_nonfinite == 2
    assert tm.errors == 0


async def test_only_unusable_fields_render_nothing() -> None:
    """With no usable field left, the render is empty rather than a broken line."""
    tm = Telemon(unique(), fields={"nan": math.nan, "obj": object})
    assert await tm.render_async() == ""
    assert tm.errors == 1


async def test_errors_accumulate_across_renders() -> None:
    """Every failed evaluation counts, even when the message is not logged again."""

    def boom() -> int:
        raise RuntimeError("nope")

    tm = Telemon(unique(), fields={"bad": boom, "obj": object, "ok": 1})
    for _ in range(3):
        await tm.render_async()
    assert tm.errors == 6


async def test_each_distinct_error_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Repeating the same failure logs one warning; a new failure logs a new one."""
    caplog.set_level(logging.WARNING, logger=FIELDS_LOGGER)
    message = {"text": "first"}

    def boom() -> int:
        raise RuntimeError(message["text"])

    name = unique()
    tm = Telemon(name, fields={"bad": boom, "ok": 1})
    for _ in range(3):
        await tm.render_async()
    message["text"] = "second"
    for _ in range(2):
        await tm.render_async()
    logged = [r.getMessage() for r in caplog.records if r.name == FIELDS_LOGGER]
    assert logged == [
        f"field 'bad' of '{name}' raised RuntimeError: first",
        f"field 'bad' of '{name}' raised RuntimeError: second",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == FIELDS_LOGGER)
    assert tm.errors == 5


async def test_field_order_is_preserved() -> None:
    """Fields are written in insertion order whatever their kind or finishing order."""
    gate = asyncio.Event()

    async def late() -> int:
        await gate.wait()
        return 1

    async def early() -> int:
        gate.set()
        return 2

    tm = Telemon(unique())
    tm.fields["zulu"] = late
    tm.fields["alpha"] = lambda: 3
    tm.fields["mike"] = early
    tm.fields["bravo"] = 4.5
    _, fields, _ = split_line(await tm.render_async())
    assert fields == "zulu=1i,alpha=3i,mike=2i,bravo=4.5"


def test_render_outside_a_loop_evaluates_async_fields() -> None:
    """`render()` without a running loop runs the async fields to completion."""

    async def fetched() -> int:
        await asyncio.sleep(0)
        return 11

    tm = Telemon(unique(), fields={"fetched": fetched, "sync": lambda: 1})
    assert field_map(tm.render()) == {"fetched": "11i", "sync": "1i"}
    assert field_map(tm.render()) == {"fetched": "11i", "sync": "1i"}
    assert tm.errors == 0


async def test_render_inside_a_loop_rejects_async_def_fields() -> None:
    """`render()` in a running loop raises a RuntimeError pointing to `render_async`."""

    async def fetched() -> int:
        return 1

    tm = Telemon(unique(), fields={"fetched": fetched})
    with pytest.raises(RuntimeError, match=r"render_async"):
        tm.render()


async def test_render_inside_a_loop_works_with_sync_fields() -> None:
    """`render()` in a running loop is fine when every field is synchronous."""
    tm = Telemon(unique(), fields={"a": lambda: 1, "b": "s"})
    assert field_map(tm.render()) == {"a": "1i", "b": '"s"'}


async def test_render_inside_a_loop_drops_callables_returning_awaitables() -> None:
    """A sync callable returning a coroutine is left out (and closed) under `render()` in a loop."""

    async def value() -> int:
        return 1

    name = unique()
    tm = Telemon(name, fields={"coro": lambda: value(), "ok": 2})
    assert field_map(tm.render()) == {"ok": "2i"}
    assert tm.errors == 1
    assert "render_async" in (tm.last_error or "")


async def test_handler_serves_line_protocol(aiohttp_client) -> None:
    """`tm.handler` mounted on an app answers GET and HEAD with a fresh render."""
    calls = []

    async def hits() -> int:
        calls.append(1)
        return len(calls)

    name = unique()
    tm = Telemon(name, {"host": "h1"}, {"hits": hits})
    app = web.Application()
    app.router.add_get("/metrics", tm.handler)
    client = await aiohttp_client(app)

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    head, fields, _ = split_line(await resp.text())
    assert (head, fields) == (f"{name},host=h1", "hits=1i")

    resp = await client.get("/metrics")
    assert field_map(await resp.text()) == {"hits": "2i"}

    resp = await client.head("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await resp.read() == b""

    resp = await client.post("/metrics")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]


async def test_handler_leaves_failing_fields_out(aiohttp_client) -> None:
    """A failing field does not turn the scrape into an error response."""

    def boom() -> int:
        raise OSError("disk")

    tm = Telemon(unique(), fields={"bad": boom, "good": 1})
    app = web.Application()
    app.router.add_get("/metrics", tm.handler)
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert field_map(await resp.text()) == {"good": "1i"}
    assert tm.errors == 1
