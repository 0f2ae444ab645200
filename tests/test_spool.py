"""The output spool, line splitting, batching and the retry policy (pure pieces)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemon.lineprotocol import EncoderOptions, LineEncoder
from telemon.lpparse import parse_lines
from telemon.metric import Metric
from telemon.outputs.base import backoff_delay, classify_status, make_batches, split_lines
from telemon.outputs.spool import MAX_BYTES_REACHED, TOO_LARGE, Appended, Batch, Spool


def batch(n: int, lines: int = 1) -> Batch:
    return Batch(f"m v={n}i {n}\n".encode() * lines, lines)


@pytest.fixture(params=["disk", "memory"])
def make_spool(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(max_bytes: int = 10_000) -> Spool:
        return Spool(tmp_path / "spool" if request.param == "disk" else None, max_bytes)

    return make


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (head := spool.peek()) is not None:
        out.append(head.data)
        spool.pop()
    return out


def test_fifo_order_and_counts(make_spool) -> None:  # type: ignore[no-untyped-def]
    spool = make_spool()
    for n in range(5):
        assert spool.append(batch(n, 2)) == Appended(kept=True)
    size = sum(len(batch(n, 2).data) for n in range(5))
    assert (len(spool), spool.lines, spool.bytes) == (5, 10, size)
    assert drain(spool) == [batch(n, 2).data for n in range(5)]
    assert (len(spool), spool.lines, spool.bytes) == (0, 0, 0)


def test_full_spool_drops_oldest_and_counts(make_spool) -> None:  # type: ignore[no-untyped-def]
    size = len(batch(0).data)
    spool = make_spool(max_bytes=3 * size)
    for n in range(3):
        assert spool.append(batch(n)) == Appended(kept=True)
    assert spool.append(batch(3)) == Appended(True, 1, MAX_BYTES_REACHED)
    assert spool.dropped_lines == 1
    assert drain(spool) == [batch(n).data for n in (1, 2, 3)]


def test_batch_larger_than_the_bound_is_dropped(make_spool) -> None:  # type: ignore[no-untyped-def]
    spool = make_spool(max_bytes=10)
    assert spool.append(batch(0, 5)) == Appended(False, 5, TOO_LARGE)
    assert (len(spool), spool.dropped_lines) == (0, 5)


def test_disk_spool_survives_a_restart_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    for n in range(12):
        spool.append(batch(n, 3))
    spool.pop()
    (tmp_path / ".tmp-00000000000000000099-1.lp").write_bytes(b"half a ba")  # a crash mid-write
    again = Spool(tmp_path, 10_000)
    assert (len(again), again.lines) == (11, 33)
    again.append(batch(99))
    assert drain(again) == [batch(n, 3).data for n in range(1, 12)] + [batch(99).data]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_disk_spool_with_a_smaller_bound_drops_oldest_at_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    for n in range(4):
        spool.append(batch(n))
    smaller = Spool(tmp_path, 2 * len(batch(0).data))
    assert smaller.dropped_lines == 2
    assert drain(smaller) == [batch(2).data, batch(3).data]


def test_files_are_whole_batches_named_by_sequence(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    spool.append(Batch(batch(7, 2).data, 2, created_ns=1_700_000_000_123_456_789))
    (path,) = tmp_path.iterdir()
    assert path.name == "00000000000000000000-2-1700000000123456789.lp"
    assert path.read_bytes() == batch(7, 2).data


def test_oldest_batch_time_is_kept(make_spool) -> None:  # type: ignore[no-untyped-def]
    spool = make_spool()
    assert spool.oldest_ns is None
    for created in (30, 10, 20):  # the order of the queue, not the smallest time
        spool.append(Batch(b"m v=1i 1\n", 1, created_ns=created))
    assert spool.oldest_ns == 30
    head = spool.peek()
    assert head is not None and head.created_ns == 30
    spool.pop()
    assert spool.oldest_ns == 10


def test_unreadable_batch_is_dropped_and_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    spool.append(batch(0))
    spool.append(batch(1))
    [first] = tmp_path.glob("00000000000000000000-*.lp")
    first.unlink()
    head = spool.peek()
    assert head is not None and head.data == batch(1).data
    assert spool.dropped_lines == 1


def test_removed_directory_is_made_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000)
    spool.append(batch(0))
    shutil.rmtree(tmp_path / "spool")
    assert spool.append(batch(1)) == Appended(kept=True)
    assert drain(spool) == [batch(1).data]  # batch 0 went with the directory
    assert spool.dropped_lines == 1


def test_failed_write_leaves_no_partial_file_and_no_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    spool.append(batch(0))
    # A directory where the next batch's file goes: the final rename fails.
    (tmp_path / "00000000000000000001-1-0.lp" / "in-the-way").mkdir(parents=True)
    with pytest.raises(OSError):
        spool.append(batch(1))
    assert (len(spool), spool.lines, spool.bytes) == (1, 1, len(batch(0).data))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    spool.append(batch(2))
    assert drain(spool) == [batch(0).data, batch(2).data]


# --- splitting bodies into lines -------------------------------------------------------

ENCODER = LineEncoder(EncoderOptions())


def test_split_keeps_raw_newlines_inside_strings() -> None:
    body = (
        b'm,t=a\\ "b s="x\ny",k="\\"\n" 1\n'
        b'q"k v="a\\\\" 2\n'
        b"\n"
        b'n,t="=x v=1 3'
    )
    assert split_lines(body) == [
        b'm,t=a\\ "b s="x\ny",k="\\"\n" 1\n',
        b'q"k v="a\\\\" 2\n',
        b'n,t="=x v=1 3\n',
    ]


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8),
            st.dictionaries(st.text(min_size=1, max_size=6), _TEXT, max_size=2),
            st.dictionaries(
                st.text(min_size=1, max_size=6),
                _TEXT | st.integers(-(2**63), 2**63 - 1) | st.booleans(),
                min_size=1,
                max_size=3,
            ),
        ),
        max_size=6,
    )
)
def test_split_gives_one_piece_per_encoded_metric(specs: list) -> None:  # type: ignore[type-arg]
    encoded = [ENCODER.encode(Metric(m, t, f, 1)) for m, t, f in specs]
    encoded = [line for line in encoded if line]
    pieces = split_lines("".join(encoded).encode())
    assert pieces == [line.encode() for line in encoded]
    for piece in pieces:
        assert len(parse_lines(piece.decode())) == 1


def test_make_batches() -> None:
    lines = [f"m v={n} {n}\n".encode() for n in range(5)]
    batches = list(make_batches(lines, 2))
    assert [b.lines for b in batches] == [2, 2, 1]
    assert b"".join(b.data for b in batches) == b"".join(lines)
    assert list(make_batches([], 2)) == []


# --- retry policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry"),
    [(400, False), (401, False), (403, False), (404, False), (413, False), (429, True),
     (500, True), (502, True), (503, True)],
)
def test_status_classes(status: int, retry: bool) -> None:
    error = classify_status(status, "{\"error\": \"x\"}")
    assert error is not None and error.retry is retry
    assert str(error).startswith(f"HTTP {status}: ")


def test_2xx_is_success_and_retry_after_is_read() -> None:
    assert classify_status(204, "") is None
    error = classify_status(429, "slow down", " 7 ")
    assert error is not None and error.retry_after == 7.0


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    for failures in range(1, 40):
        delay = backoff_delay(failures, 0.5, 30.0, rng.random())
        full = min(30.0, 0.5 * 2 ** (failures - 1))
        assert full / 2 <= delay <= full
    assert backoff_delay(100, 0.5, 30.0, 0.0) == 15.0
