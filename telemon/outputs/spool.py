"""A bounded first-in first-out queue of line-protocol batches, on disk or in memory.

On disk each batch is one file named `SEQUENCE-LINES-CREATED.lp` (the sequence
number zero-padded, so names sort in order; CREATED is when the batch's lines
were collected, in ns since the epoch, so the age of what waits survives a
restart; a name without it, from an older telemon, takes the file's
modification time). A batch is written to a temporary name,
fsynced, then renamed, so a crash leaves whole batches or none; temporary
files found at start are removed. When a new batch does not fit in `max_bytes`,
the oldest batches are dropped (and counted) to make room.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Batch", "Spool"]

_log = logging.getLogger("telemon.outputs")
_NAME = re.compile(r"(\d{20})-(\d+)(?:-(\d+))?\.lp")
_TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class Batch:
    """Line-protocol bytes holding `lines` lines; `seq` orders batches in a spool.

    `created_ns` is when the oldest of its lines was collected (ns since the epoch).
    """

    data: bytes
    lines: int
    seq: int = 0
    created_ns: int = 0


@dataclass(frozen=True, slots=True)
class _Entry:
    seq: int
    lines: int
    size: int
    created_ns: int
    name: str  # of its file


class Spool:
    """Batches waiting to be written, oldest first; `directory` None keeps them in memory."""

    def __init__(self, directory: Path | None, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.bytes = 0
        self.lines = 0
        self.dropped_lines = 0
        self._entries: deque[_Entry] = deque()
        self._memory: dict[int, bytes] = {}
        self._next_seq = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load(directory)

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, directory: Path) -> None:
        """Index the batches a previous run left, in order; remove half-written ones."""
        found = []
        for path in directory.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                path.unlink(missing_ok=True)
            elif match := _NAME.fullmatch(path.name):
                stat = path.stat()
                created = int(match[3]) if match[3] else stat.st_mtime_ns
                entry = _Entry(int(match[1]), int(match[2]), stat.st_size, created, path.name)
                found.append(entry)
        for entry in sorted(found, key=lambda e: e.seq):
            self._add(entry)
        self._next_seq = max((e.seq for e in found), default=-1) + 1
        # A smaller bound than the last run's: drop the oldest now.
        self._make_room(0)

    def append(self, batch: Batch) -> int:
        """Queue `batch` last; returns the lines dropped (the oldest, or `batch` if too big)."""
        size = len(batch.data)
        if size > self.max_bytes:
            self.dropped_lines += batch.lines
            return batch.lines
        dropped = self._make_room(size)
        seq, created = self._next_seq, batch.created_ns
        entry = _Entry(seq, batch.lines, size, created, f"{seq:020d}-{batch.lines}-{created}.lp")
        self._next_seq += 1
        if self.directory is None:
            self._memory[entry.seq] = batch.data
        else:
            self._write(self.directory, entry.name, batch.data)
        self._add(entry)
        return dropped

    @staticmethod
    def _write(directory: Path, name: str, data: bytes) -> None:
        """Write one batch file; raises OSError (disk full, directory unusable)."""
        try:
            _write_atomically(directory, name, data)
        except FileNotFoundError:
            # Removed while running (a cleaner of old files, an operator): the
            # spool goes on in a new one rather than failing until a restart.
            directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(directory, name, data)

    def peek(self) -> Batch | None:
        """The oldest batch, or None; an unreadable file is dropped (counted) and skipped."""
        while self._entries:
            entry = self._entries[0]
            if self.directory is None:
                return Batch(self._memory[entry.seq], entry.lines, entry.seq, entry.created_ns)
            try:
                data = (self.directory / entry.name).read_bytes()
            except OSError as exc:
                _log.error("spool: cannot read %s: %s; dropping it", entry.name, exc)
                self.dropped_lines += entry.lines
                self.pop()
                continue
            return Batch(data, entry.lines, entry.seq, entry.created_ns)
        return None

    @property
    def oldest_ns(self) -> int | None:
        """When the oldest batch's lines were collected (ns since the epoch); None when empty."""
        return self._entries[0].created_ns if self._entries else None

    def pop(self) -> None:
        """Forget the oldest batch (written, or dropped)."""
        entry = self._entries.popleft()
        self.bytes -= entry.size
        self.lines -= entry.lines
        if self.directory is None:
            del self._memory[entry.seq]
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / entry.name).unlink()

    def _add(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self.bytes += entry.size
        self.lines += entry.lines

    def _make_room(self, size: int) -> int:
        """Drop the oldest batches until `size` more bytes fit; returns the lines dropped."""
        dropped = 0
        while self._entries and self.bytes + size > self.max_bytes:
            dropped += self._entries[0].lines
            self.pop()
        self.dropped_lines += dropped
        return dropped


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: the file is whole or absent after a crash."""
    temp = directory / f"{_TEMP_PREFIX}{name}"
    try:
        with temp.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, directory / name)
    except OSError:
        # A half-written file on a full disk would keep the space the next batch needs.
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
