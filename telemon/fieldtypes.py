"""Which type each field is written with, and the values telemon could not write.

InfluxDB fixes a field's type with the first write into a shard and refuses
later values of another type. telemon keeps one table of field types for
everything it writes, whatever the source, so that the database never sees a
conflict:

* Inputs declare the types of the fields they know (Telemon's Pharo fields,
  docker's, telemon's own self-metrics), as client_python declares a
  metric's type instead of guessing it. A declared type wins: a value of
  another type is converted when that loses nothing (an int into a float
  field, an integral float into an int field) and refused otherwise, from any
  source, so that a pushed line can never lock a field against its input.
* A field nobody declared takes the type of its first value (first come).
  Those locks are kept for the 20,000 measurements used most recently (by
  an input's collection, a push to the sink or a scrape's encoding), so a
  stream of new names cannot grow memory without bound.

`Losses` counts every value that was not written, per source, and logs the
first of each (source, measurement, field, reason) at WARNING.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Literal

__all__ = ["KIND_NAMES", "Kind", "FieldTypes", "Losses"]

Kind = Literal["i", "u", "f", "b", "s"]
"""A field type by its line-protocol suffix: integer, unsigned, float, boolean, string."""

KIND_NAMES: dict[str, str] = {
    "i": "integer",
    "u": "unsigned",
    "f": "float",
    "b": "boolean",
    "s": "string",
}
"""InfluxDB's names of the kinds, as its error messages write them."""

_log = logging.getLogger("telemon.values")
MAX_REMEMBERED = 10_000
MAX_MEASUREMENTS = 20_000
"""Measurements whose first-come types are kept (the least recently used go first)."""
_DIGITS = re.compile(r"\d+")


class FieldTypes:
    """The field types by written measurement name and written field key."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, str]] = {}
        self._declared: dict[str, frozenset[str]] = {}

    def table(self, measurement: str) -> dict[str, str]:
        """The live kinds of one measurement (the encoder reads and fills it)."""
        tables = self._kinds
        kinds = tables.pop(measurement, None)
        if kinds is None:
            kinds = {}
            if len(tables) >= MAX_MEASUREMENTS:
                self._forget_least_used()
        tables[measurement] = kinds  # the most recently used last
        return kinds

    def _forget_least_used(self) -> None:
        """Bounded memory: the first-come types of the measurements used least recently
        go (a tenth at a time); declared types stay for good."""
        undeclared = [m for m in self._kinds if m not in self._declared]
        for measurement in undeclared[: max(1, len(undeclared) // 10)]:
            del self._kinds[measurement]

    def declare(self, measurement: str, kinds: Mapping[str, str]) -> list[str]:
        """Fix `kinds`; answers the keys already declared with another kind (left unchanged)."""
        table = self.table(measurement)
        declared = self._declared.get(measurement, frozenset())
        clashes = []
        for key, kind in kinds.items():
            if key in declared and table[key] != kind:
                clashes.append(key)
                continue
            table[key] = kind
        self._declared[measurement] = declared | frozenset(kinds.keys() - set(clashes))
        return clashes

    def is_declared(self, measurement: str, key: str) -> bool:
        """True when an input declared this field's type."""
        return key in self._declared.get(measurement, ())


class Losses:
    """Values not written: counted per source, the first of each kind logged.

    `source` names who is being encoded right now ("input pharo target
    blog", "sink"); callers set it before encoding a source's metrics.
    """

    def __init__(self) -> None:
        self.source = "telemon"
        self.by_source: dict[str, int] = {}
        self._logged: set[tuple[str, str, str, str]] = set()

    def note(self, measurement: str, key: str, reason: str, *, counted: bool = True) -> None:
        """Field `key` of `measurement` lost a value (or, not `counted`, had it changed)."""
        source = self.source
        if counted:
            self.by_source[source] = self.by_source.get(source, 0) + 1
        # Numbers in a reason (a value, a position) vary: one line per kind of loss.
        seen = (source, measurement, key, _DIGITS.sub("#", reason))
        if seen in self._logged:
            return
        if len(self._logged) >= MAX_REMEMBERED:
            self._logged.clear()  # bounded: at worst a reason is logged again
        self._logged.add(seen)
        verb = "not written" if counted else "changed"
        _log.warning(
            "%s: field %r of %r %s: %s", source, key, measurement, verb, _printable(reason)
        )

    def dropped(self, source: str) -> int:
        """How many values of `source` were not written."""
        return self.by_source.get(source, 0)

    def forget(self, source: str) -> None:
        """Drop a source that is gone (a discovered target), so the table stays bounded."""
        self.by_source.pop(source, None)


def _printable(text: str, limit: int = 300) -> str:
    """Upstream text fit for one log line: control characters escaped, length bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return text if len(text) <= limit else text[:limit] + "..."
