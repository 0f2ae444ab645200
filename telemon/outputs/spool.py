"""A bounded first-in first-out queue of line-protocol batches, on disk or in memory.

On disk each batch is one file named `SEQUENCE-LINES-CREATED.lp` (the sequence
number zero-padded, so names sort in order; CREATED is when the batch's lines
were collected, in ns since the epoch, so the age of what waits survives a
restart; a name without it, from an older telemon, takes the file's
modification time). A batch is written to a temporary name,
fsynced, then renamed, so a crash leaves whole batches or none; temporary
files found at start are removed. When a new batch does not fit in `max_bytes`,
the oldest batches are dropped (and counted) to make room; so they are when the
filesystem is full, one at a time until the new batch is written. The new
batch is dropped instead, and the spool kept rather than emptied for nothing,
when the spool's files and the free space together could not hold it, or when
dropping as many bytes as it holds (and a little more, for the filesystem's
blocks) did not make room: something else is filling the filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FILESYSTEM_FULL", "MAX_BYTES_REACHED", "TOO_LARGE", "Appended", "Batch", "Spool"]

_log = logging.getLogger("telemon.outputs")
_NAME = re.compile(r"(\d{20})-(\d+)(?:-(\d+))?\.lp")
_TEMP_PREFIX = ".tmp-"
_FULL_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Freeing this much more than a batch's size makes room for it on any
# filesystem (block rounding, the directory's growth) unless another writer
# takes the space.
_FULL_SLACK = 64 * 1024

MAX_BYTES_REACHED = "spool_max_bytes reached"
FILESYSTEM_FULL = "filesystem full"
TOO_LARGE = "a batch larger than spool_max_bytes"


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
class Appended:
    """What `Spool.append` did: whether it kept the batch, and what it dropped and why.

    `dropped` counts the lines dropped to take it (the oldest) plus its own when
    not kept; `reason` is one of MAX_BYTES_REACHED, FILESYSTEM_FULL, TOO_LARGE
    (the filesystem's when both limits dropped lines), None when none were dropped.
    """

    kept: bool
    dropped: int = 0
    reason: str | None = None


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
        if dropped := self._make_room(0):
            _log.warning(
                "spool %s: dropped the oldest %d lines left by the last run (%s)",
                directory, dropped, MAX_BYTES_REACHED,
            )  # fmt: skip

    def append(self, batch: Batch) -> Appended:
        """Queue `batch` last, dropping the oldest batches to make room (see the module).

        Raises OSError when the directory cannot take it for another reason than
        a full filesystem (unusable, read-only): dropping batches would not help.
        """
        size = len(batch.data)
        if size > self.max_bytes:
            self.dropped_lines += batch.lines
            return Appended(kept=False, dropped=batch.lines, reason=TOO_LARGE)
        dropped = self._make_room(size)
        reason = MAX_BYTES_REACHED if dropped else None
        seq, created = self._next_seq, batch.created_ns
        entry = _Entry(seq, batch.lines, size, created, f"{seq:020d}-{batch.lines}-{created}.lp")
        self._next_seq += 1
        if self.directory is None:
            self._memory[entry.seq] = batch.data
        else:
            kept, full_dropped = self._write_dropping_oldest(self.directory, entry.name, batch.data)
            if full_dropped or not kept:
                reason = FILESYSTEM_FULL
            dropped += full_dropped
            if not kept:
                self.dropped_lines += batch.lines
                return Appended(kept=False, dropped=dropped + batch.lines, reason=reason)
        self._add(entry)
        return Appended(kept=True, dropped=dropped, reason=reason)

    def _write_dropping_oldest(self, directory: Path, name: str, data: bytes) -> tuple[bool, int]:
        """Write one batch file, dropping the oldest while the filesystem is full.

        Returns whether it was written and the lines dropped for it (counted).
        """
        freed = dropped = 0
        while True:
            try:
                self._write(directory, name, data)
            except OSError as exc:
                if exc.errno not in _FULL_ERRORS:
                    raise
                if not self._room_possible(directory, len(data), freed):
                    return False, dropped
            else:
                return True, dropped
            oldest = self._entries[0]
            freed += oldest.size
            dropped += oldest.lines
            self.dropped_lines += oldest.lines
            self.pop()

    def _room_possible(self, directory: Path, size: int, freed: int) -> bool:
        """Whether dropping more of the oldest batches can make room for `size` bytes."""
        if not self._entries or freed >= size + _FULL_SLACK:
            return False
        fs = os.statvfs(directory)
        return fs.f_bavail * fs.f_frsize + self.bytes >= size

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
    try:
        _fsync_directory(directory)
    except OSError:
        # Not kept, so not left for the next start either: it is counted as dropped.
        with contextlib.suppress(OSError):
            (directory / name).unlink()
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
