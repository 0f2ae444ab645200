"""Read InfluxDB line protocol: exactly (strict) or as the original Telemon wrote it (tolerant).

Pure functions: no I/O, no clock, no logging.

Strict mode is the line protocol InfluxDB and Telegraf accept:

* ``measurement[,tag=value...] field=value[,field=value...] [timestamp]``, lines
  ending in LF or CRLF; blank lines and ``#`` comments are skipped; spaces and
  tabs may lead, trail and separate the three sections.
* Escapes: ``\\,`` and ``\\ `` in measurements; ``\\,``, ``\\=`` and ``\\ `` in
  tag keys, tag values and field keys. A backslash before any other character
  stays literal and takes that character with it (``a\\\\`` is two backslashes).
  An unescaped ``=`` is allowed in measurements and tag values.
* Field values: floats (``1``, ``-1.5``, ``.5``, ``5.``, ``1e-3``; a number
  without suffix is a float), ``123i`` (int64), ``123u`` (uint64),
  ``t T true True TRUE f F false False FALSE``, and double-quoted strings in
  which ``\\"`` and ``\\\\`` are unescaped, other backslashes stay literal
  (as InfluxDB reads them) and raw newlines are part of the value.
  NaN and infinities cannot be written; ``1e999`` is out of range, and so
  is an integer of any length beyond its type's range.
* The timestamp is an integer in `precision` units, returned in nanoseconds;
  in nanoseconds it must lie within InfluxDB's range, `MIN_TIME_NS` to
  `MAX_TIME_NS` (int64 but its two lowest values and its highest): InfluxDB
  refuses the rest with ``time outside range``, and so does strict mode.
* A repeated tag key is an error (``duplicate tags``, InfluxDB's words); a
  repeated field key keeps the last value (as InfluxDB keeps it).
* With ``unsigned=False`` (`parse_lines_partial`, `iter_lines_partial`) a
  ``u`` value is an error (`UNSIGNED_OFF`): InfluxDB 1.x, built without uint
  support, refuses it (``invalid number``), and a sink whose encoder writes no
  unsigned integers could only serve it changed.

Tolerant mode reads what the original Telemon Pharo package served (no type
suffixes, no escaping, no timestamp) and anything strict mode reads:

* A repeated tag key keeps the last value.

* A number without suffix that is only digits (optional sign) is an int
  (a float when outside int64, see `int64_or_float`); any other number is a
  float. ``3.14s2`` (a Smalltalk ScaledDecimal) is read as the float 3.14.
  A number too large for a float is left out like any unreadable value.
* A line strict mode cannot read is read again as one physical line whose
  tags may hold unescaped spaces and commas: the field set is its last
  space-separated run of ``key=value`` pairs, optionally followed by an integer
  timestamp; a comma piece without ``=`` continues the previous tag value.
* A field whose value is not a number, boolean or quoted string (``ok``,
  ``NaN``, ``(1/3)``) is left out and reported; an empty tag value drops the tag.
* A bare CR also ends a line (Smalltalk's ``cr``).
* A line that still cannot be read is skipped whole and reported; the good
  lines are returned (see `parse_lines_tolerant`). A timestamp outside
  InfluxDB's range makes a line unreadable.

`parse_lines_partial` reads strictly but, as InfluxDB does with a written
body, skips each bad line (reporting it) and goes on with the next physical
line: the good lines of a body are kept. `iter_lines_partial` does the same
in batches (a large body never exists as one list of parsed lines) and can
refuse lines past `Limits` (bytes, fields), as unreadable lines whose reason
starts with `LIMIT_EXCEEDED`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

from telemon.lineprotocol import MAX_TIME_NS, MIN_TIME_NS
from telemon.metric import FieldValue

__all__ = [
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "PRECISION_MULTIPLIERS",
    "TIME_OUTSIDE_RANGE",
    "DUPLICATE_TAGS",
    "UNSIGNED_OFF",
    "LineProtocolError",
    "ParsedLine",
    "LIMIT_EXCEEDED",
    "Limits",
    "int64_or_float",
    "iter_lines_partial",
    "parse_lines",
    "parse_lines_partial",
    "parse_lines_tolerant",
    "unescape_key",
    "unescape_measurement",
]

PRECISION_MULTIPLIERS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
}
"""Timestamp units and their size in nanoseconds."""

MAX_EXCERPT = 200
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
MAX_INT_DIGITS = len(str(UINT64_MAX))
"""Significant digits of the widest integer type; more are out of range for every type."""
TIME_OUTSIDE_RANGE = f"time outside range {MIN_TIME_NS} - {MAX_TIME_NS}"
"""InfluxDB 1.x's reason for a timestamp it will not store (its own words)."""
LIMIT_EXCEEDED = "line exceeds"
"""How the reason of a line refused for `Limits` starts."""
DUPLICATE_TAGS = "duplicate tags"
"""InfluxDB 1.x's reason for a line naming a tag key twice (its own words)."""
UNSIGNED_OFF = "invalid number: unsigned integers are not accepted"
"""The reason of a ``u`` value read with ``unsigned=False`` (InfluxDB 1.x: ``invalid number``)."""

_WS = re.compile(r"[ \t]*")
_SEPARATOR = re.compile(r"[ \t]+")
# Possessive (`++`, `*+`): a repeated alternation otherwise keeps backtracking
# state for every character, about 130 bytes each (an 8 MiB string took 1 GB).
_MEASUREMENT = re.compile(r"(?:[^\\ ,\t\n\r\f]|\\[^\t\n\r\f])++")
_KEY = re.compile(r"(?:[^\\ ,=\t\n\r\f]|\\[^\t\n\r\f])++")
_TAG_VALUE = re.compile(r"(?:[^\\ ,\t\n\r\f]|\\[^\t\n\r\f])++")
_STRING = re.compile(r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.DOTALL)
_BARE = re.compile(r"[^ ,\t\n\r\f]+")
_TOKEN = re.compile(r"[^ \t\r\n]+")
_LF = re.compile(r"\r?\n")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PAIR = re.compile(r"\\(.)", re.DOTALL)

# `\d+(?:\.\d*)?`, not `\d+\.?\d*`: two ways to split a run of digits make a failed
# match (``999...9x``) quadratic in its length, minutes for a pushed body.
_FLOAT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"-?\d+i")
_UINT = re.compile(r"\d+u")
_INTEGRAL = re.compile(r"[+-]?\d+")
_LOOSE_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SCALED_DECIMAL = re.compile(r"([+-]?\d+(?:\.\d+)?)s\d*")
_TIMESTAMP = re.compile(r"-?\d+")
_BOOLS = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}

_DropSink = Callable[[int, str, str], None]
"""Records a left-out field: (position, field key, reason)."""

_MEASUREMENT_ESCAPES = ", "
_KEY_ESCAPES = ",= "
_STRING_ESCAPES = '"\\'


class LineProtocolError(ValueError):
    """A line that cannot be read; ``str()`` is one line naming where and why.

    `line_number` and `column` are 1-based physical positions (a raw newline
    inside a string starts a new line); `column` is where reading stopped, one
    past the end when the line ended too early. `line` is that physical line,
    cut at 200 characters. In tolerant mode `field` names a field whose value
    was left out of an otherwise good line; it is None when the line was skipped.
    """

    def __init__(
        self, line_number: int, column: int, line: str, reason: str, field: str | None = None
    ) -> None:
        self.line_number = line_number
        self.column = column
        self.line = line[:MAX_EXCERPT]
        self.reason = reason
        self.field = field
        super().__init__(f"line {line_number}, column {column}: {reason}: {self.line!r}")

    def __reduce__(self) -> tuple[type, tuple[int, int, str, str, str | None]]:
        return type(self), (self.line_number, self.column, self.line, self.reason, self.field)


@dataclass(slots=True)
class ParsedLine:
    """One line read back: what a `Metric` holds."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int | None


def parse_lines(text: str, *, tolerant: bool = False, precision: str = "ns") -> list[ParsedLine]:
    """Every line of `text`; raises `LineProtocolError` for the first bad one.

    With `tolerant`, bad lines are skipped (see `parse_lines_tolerant`) and the
    error is raised only when lines were skipped and none could be read.
    """
    if not tolerant:
        return _Reader(text, _multiplier(precision), tolerant=False).read_all()[0]
    lines, errors = parse_lines_tolerant(text, precision=precision)
    skipped = [error for error in errors if error.field is None]
    if skipped and not lines:
        raise skipped[0]
    return lines


def parse_lines_tolerant(
    text: str, *, precision: str = "ns"
) -> tuple[list[ParsedLine], list[LineProtocolError]]:
    """The lines tolerant mode could read, and one error per skipped line or value.

    An error whose `field` is None is a skipped line; otherwise it names a
    field left out of a line that was kept. Never raises `LineProtocolError`.
    """
    return _Reader(text, _multiplier(precision), tolerant=True).read_all()


def parse_lines_partial(
    text: str, *, precision: str = "ns", unsigned: bool = True
) -> tuple[list[ParsedLine], list[LineProtocolError]]:
    """The lines strict mode reads, and one error per line it cannot read.

    A bad line is skipped up to the end of the physical line where reading
    stopped; reading goes on after it. Never raises `LineProtocolError`.
    Without `unsigned`, a ``u`` value makes its line unreadable (`UNSIGNED_OFF`).
    """
    reader = _Reader(text, _multiplier(precision), tolerant=False, partial=True, unsigned=unsigned)
    return reader.read_all()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one line, checked while reading it (None: unbounded).

    `max_line_bytes` counts the line's characters without its line break:
    its bytes when the text holds one character per byte (the sink decodes
    bodies as latin-1 for that); `max_fields` counts field keys as written
    (repeats included). A longer physical line is refused before it is read,
    so its fields never exist.
    """

    max_line_bytes: int | None = None
    max_fields: int | None = None


def iter_lines_partial(
    text: str,
    *,
    precision: str = "ns",
    limits: Limits | None = None,
    batch: int = 500,
    unsigned: bool = True,
) -> Iterator[tuple[list[ParsedLine], list[LineProtocolError]]]:
    """`parse_lines_partial` in batches of at most `batch` records (lines, errors, and
    the blank and comment lines between them)."""
    reader = _Reader(
        text,
        _multiplier(precision),
        tolerant=False,
        partial=True,
        limits=limits,
        unsigned=unsigned,
    )
    return reader.read_batches(batch)


def unescape_measurement(written: str) -> str:
    """A measurement as strict mode reads it back from its `written` (escaped) form."""
    return _unescape(written, _MEASUREMENT_ESCAPES)


def unescape_key(written: str) -> str:
    """A tag key, tag value or field key as strict mode reads it back from `written`."""
    return _unescape(written, _KEY_ESCAPES)


def int64_or_float(raw: str) -> int | float:
    """An integer of unknown type (optional sign, digits): an int within int64, else a float.

    Beyond int64 a float keeps the magnitude, where an int would be clamped by
    the encoder. The float is infinite when the number is too large for one.
    Any number of digits is safe: ``int()`` refuses more than 4300 and
    ``float(int)`` overflows past about 309, so neither is asked to.
    """
    value = _bounded_int(raw)
    if value is not None and INT64_MIN <= value <= INT64_MAX:
        return value
    return float(raw)


def _bounded_int(raw: str) -> int | None:
    """`raw` (optional sign, digits) as an int; None when no 64-bit type could hold it.

    Leading zeros do not count (``000...01i`` is 1), so a body cannot make
    ``int()`` raise by padding a number past its digit limit.
    """
    sign = raw[:1] if raw[:1] in "+-" else ""
    digits = raw[len(sign) :].lstrip("0")
    if len(digits) > MAX_INT_DIGITS:
        return None
    return int(sign + (digits or "0"))


def _multiplier(precision: str) -> int:
    try:
        return PRECISION_MULTIPLIERS[precision]
    except KeyError:
        known = ", ".join(PRECISION_MULTIPLIERS)
        raise ValueError(f"unknown precision {precision!r} (one of {known})") from None


class _Fail(Exception):
    """Reading stopped at `pos` (an absolute offset) for `reason`."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(reason)
        self.pos = pos
        self.reason = reason


class _Skip:
    """A tolerant-mode value that is left out (its field is reported)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _fail(pos: int, reason: str) -> NoReturn:
    raise _Fail(pos, reason)


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _line_end(text: str, pos: int, breaks: re.Pattern[str]) -> int:
    """Where the physical line holding `pos` ends (at its line break)."""
    match = breaks.search(text, pos)
    return match.start() if match else len(text)


def _unescape(raw: str, specials: str) -> str:
    """Drop the backslash of escaped `specials`; other pairs stay as written."""
    if "\\" not in raw:
        return raw
    return _PAIR.sub(lambda m: m[1] if m[1] in specials else m[0], raw)


class _Reader:
    """Reads records one after another, keeping track of physical lines."""

    def __init__(
        self,
        text: str,
        multiplier: int,
        *,
        tolerant: bool,
        partial: bool = False,
        limits: Limits | None = None,
        unsigned: bool = True,
    ) -> None:
        self.text = text
        self.limits = limits or Limits()
        self.unsigned = unsigned
        self.multiplier = multiplier
        self.tolerant = tolerant
        self.partial = partial  # strict, but a bad line is reported and skipped
        # Strict mode ends lines only at LF, as Telegraf does; a bare CR is an error there.
        self.breaks = _LINE_BREAK if tolerant else _LF
        self.line_number = 1  # of the physical line that starts at `line_start`
        self.line_start = 0
        self.drops: list[tuple[int, str, str]] = []  # (pos, field key, reason)

    def read_all(self) -> tuple[list[ParsedLine], list[LineProtocolError]]:
        lines: list[ParsedLine] = []
        errors: list[LineProtocolError] = []
        for some_lines, some_errors in self.read_batches(len(self.text) + 1):
            lines += some_lines
            errors += some_errors
        return lines, errors

    def read_batches(
        self, batch: int
    ) -> Iterator[tuple[list[ParsedLine], list[LineProtocolError]]]:
        """`read_all` in pieces of at most `batch` records (blank and comment lines count:
        a body of empty lines is read in pieces too)."""
        lines: list[ParsedLine] = []
        errors: list[LineProtocolError] = []
        pos = 0
        records = 0
        while pos < len(self.text):
            parsed, end = self._next(pos, errors)
            if parsed is not None:
                lines.append(parsed)
            self._advance(end)
            pos = end
            records += 1
            if records >= batch:
                yield lines, errors
                lines, errors, records = [], [], 0
        if lines or errors:
            yield lines, errors

    def _next(self, pos: int, errors: list[LineProtocolError]) -> tuple[ParsedLine | None, int]:
        """The record starting at `pos` (None for blank, comment or skipped) and its end."""
        self.drops = []
        try:
            parsed, end = self._record(pos)
        except _Fail as fail:
            if self.tolerant:
                return self._fallback(pos, fail, errors)
            error = self._error(fail.pos, fail.reason)
            if not self.partial:
                raise error from None
            errors.append(error)
            # Resume after the line where reading stopped: a string that began
            # on an earlier line and was read whole does not end the bad line.
            return None, self._after_break(_line_end(self.text, fail.pos, self.breaks))
        errors.extend(self._dropped(*drop) for drop in self.drops)
        return parsed, end

    def _fallback(
        self, pos: int, fail: _Fail, errors: list[LineProtocolError]
    ) -> tuple[ParsedLine | None, int]:
        """Read the physical line loosely; skip it (with the strict error) if that fails too."""
        end = _line_end(self.text, pos, self.breaks)
        self.drops = []
        parsed = _read_loosely(self.text[pos:end], self.multiplier, self._drop_at(pos))
        if parsed is None:
            errors.append(self._error(fail.pos, fail.reason))
        else:
            errors.extend(self._dropped(*drop) for drop in self.drops)
        return parsed, self._after_break(end)

    def _drop_at(self, offset: int) -> _DropSink:
        def drop(pos: int, key: str, reason: str) -> None:
            self.drops.append((offset + pos, key, reason))

        return drop

    def _advance(self, end: int) -> None:
        """Count the physical lines between the current line start and `end`."""
        for match in self.breaks.finditer(self.text, self.line_start, end):
            self.line_number += 1
            self.line_start = match.end()

    def _dropped(self, pos: int, key: str, reason: str) -> LineProtocolError:
        """The report of a field left out of a line that was kept."""
        return self._error(pos, f"field {key!r} left out: {reason}", key)

    def _error(self, pos: int, reason: str, field: str | None = None) -> LineProtocolError:
        """An error located by physical line and column."""
        if pos > 0 and self.text[pos - 1 : pos + 1] == "\r\n":
            pos -= 1  # the LF of a CRLF: the line ended at the CR
        number, start = self.line_number, self.line_start
        for match in self.breaks.finditer(self.text, start, pos):
            number, start = number + 1, match.end()
        # Only the excerpt is copied: the line may be megabytes long.
        end = min(_line_end(self.text, start, self.breaks), start + MAX_EXCERPT)
        return LineProtocolError(number, pos - start + 1, self.text[start:end], reason, field)

    def _after_break(self, pos: int) -> int:
        """The position after the line break at `pos` (CRLF, LF or, tolerant, CR)."""
        text = self.text
        if text.startswith("\r\n", pos):
            return pos + 2
        if text.startswith("\n", pos) or (self.tolerant and text.startswith("\r", pos)):
            return pos + 1
        return pos

    def _at_line_end(self, pos: int) -> bool:
        text = self.text
        return (
            pos == len(text)
            or text[pos] == "\n"
            or text.startswith("\r\n", pos)
            or (self.tolerant and text[pos] == "\r")
        )

    def _record(self, pos: int) -> tuple[ParsedLine | None, int]:
        """One line from `pos` through its line break; None for blank and comment lines."""
        text = self.text
        pos = _skip_ws(text, pos)
        if self._at_line_end(pos):
            return None, self._after_break(pos)
        if text[pos] == "#":
            return None, self._after_break(_line_end(text, pos, self.breaks))
        start = pos
        max_bytes = self.limits.max_line_bytes
        if max_bytes is not None:
            # Chars never outnumber UTF-8 bytes: a physical line this long is too
            # long, whatever it holds; it is refused before its fields exist.
            physical = text.find("\n", pos)
            if (len(text) if physical < 0 else physical) - pos > max_bytes:
                _fail(pos, f"{LIMIT_EXCEEDED} max_line_bytes ({max_bytes})")
        measurement, tags, pos = self._header(pos)
        pos = self._separator(pos, "expected fields")
        fields, pos = self._fields(pos)
        time_ns, pos = self._timestamp(pos)
        if max_bytes is not None and pos - start > max_bytes:
            # Raw newlines in strings made the line longer than its first physical line.
            _fail(pos, f"{LIMIT_EXCEEDED} max_line_bytes ({max_bytes})")
        return ParsedLine(measurement, tags, fields, time_ns), self._after_break(pos)

    def _header(self, pos: int) -> tuple[str, dict[str, str], int]:
        text = self.text
        match = _MEASUREMENT.match(text, pos)
        if match is None:
            _fail(pos, self._unexpected(pos) if text[pos] == "\r" else "expected measurement")
        measurement = _unescape(match[0], _MEASUREMENT_ESCAPES)
        pos = match.end()
        tags: dict[str, str] = {}
        while text.startswith(",", pos):
            pos = self._tag(pos + 1, tags)
        return measurement, tags, pos

    def _tag(self, pos: int, tags: dict[str, str]) -> int:
        text = self.text
        key = _KEY.match(text, pos)
        if key is None:
            _fail(pos, "expected tag key")
        pos = key.end()
        if not text.startswith("=", pos):
            _fail(pos, "expected '=' after tag key")
        value = _TAG_VALUE.match(text, pos + 1)
        if value is None:
            if self.tolerant:
                return pos + 1  # an empty tag value: leave the tag out
            _fail(pos + 1, "expected tag value")
        name = _unescape(key[0], _KEY_ESCAPES)
        if name in tags and not self.tolerant:
            # InfluxDB refuses the line; keeping either value would store another series.
            _fail(key.start(), DUPLICATE_TAGS)
        tags[name] = _unescape(value[0], _KEY_ESCAPES)
        return value.end()

    def _separator(self, pos: int, reason: str) -> int:
        match = _SEPARATOR.match(self.text, pos)
        if match is None:
            _fail(pos, reason if self._at_line_end(pos) else self._unexpected(pos))
        if self._at_line_end(match.end()):
            _fail(match.end(), reason)
        return match.end()

    def _unexpected(self, pos: int) -> str:
        char = self.text[pos]
        if char == "\r":
            return "CR without LF (lines end in LF or CRLF)"
        return f"unexpected {char!r}"

    def _fields(self, pos: int) -> tuple[dict[str, FieldValue], int]:
        text = self.text
        start = pos
        fields: dict[str, FieldValue] = {}
        max_fields = self.limits.max_fields
        count = 0
        while True:
            count += 1
            if max_fields is not None and count > max_fields:
                _fail(pos, f"{LIMIT_EXCEEDED} max_fields_per_line ({max_fields})")
            key = _KEY.match(text, pos)
            if key is None:
                _fail(pos, "expected field key")
            pos = key.end()
            if not text.startswith("=", pos):
                _fail(pos, "expected '=' after field key")
            name = _unescape(key[0], _KEY_ESCAPES)
            value, end = self._value(pos + 1)
            if isinstance(value, _Skip):
                self.drops.append((pos + 1, name, value.reason))
            else:
                fields[name] = value
            pos = end
            if not text.startswith(",", pos):
                break
            pos += 1
        if not (self._at_line_end(pos) or text[pos] in " \t"):
            _fail(pos, self._unexpected(pos))
        if not fields:
            why = f" ({self.drops[0][2]})" if self.drops else ""
            _fail(start, "no field has a readable value" + why)
        return fields, pos

    def _value(self, pos: int) -> tuple[FieldValue | _Skip, int]:
        text = self.text
        if text.startswith('"', pos):
            match = _STRING.match(text, pos)
            if match is None:
                _fail(pos, "unterminated string")
            return _unescape(match[1], _STRING_ESCAPES), match.end()
        match = _BARE.match(text, pos)
        if match is None:
            _fail(pos, "expected field value")
        raw = match[0]
        if not self.unsigned and _UINT.fullmatch(raw):
            _fail(pos, UNSIGNED_OFF)
        value = _loose_scalar(raw) if self.tolerant else _strict_scalar(raw)
        if isinstance(value, _Fail):
            _fail(pos, value.reason)
        return value, match.end()

    def _timestamp(self, pos: int) -> tuple[int | None, int]:
        text = self.text
        pos = _skip_ws(text, pos)
        if self._at_line_end(pos):
            return None, pos
        token = _TOKEN.match(text, pos)
        if token is None:
            _fail(pos, self._unexpected(pos))
        time_ns = _scale_timestamp(token[0], self.multiplier)
        if isinstance(time_ns, str):
            _fail(pos, time_ns)
        end = _skip_ws(text, token.end())
        if not self._at_line_end(end):
            _fail(end, "expected end of line" if end > token.end() else self._unexpected(end))
        return time_ns, end


def _scale_timestamp(raw: str, multiplier: int) -> int | str:
    """The timestamp in ns, or the reason it is unreadable."""
    if not _TIMESTAMP.fullmatch(raw):
        return f"invalid timestamp {raw[:40]!r}"
    value = _bounded_int(raw)
    if value is None or not MIN_TIME_NS <= value * multiplier <= MAX_TIME_NS:
        return TIME_OUTSIDE_RANGE
    return value * multiplier


def _strict_scalar(raw: str) -> FieldValue | _Fail:
    """A non-string field value as InfluxDB reads it, or why it cannot be read."""
    flag = _BOOLS.get(raw)
    if flag is not None:
        return flag
    if _INT.fullmatch(raw):
        return _in_range(_bounded_int(raw[:-1]), INT64_MIN, INT64_MAX, "integer out of range")
    if _UINT.fullmatch(raw):
        return _in_range(_bounded_int(raw[:-1]), 0, UINT64_MAX, "unsigned integer out of range")
    if _FLOAT.fullmatch(raw):
        value = float(raw)
        return value if math.isfinite(value) else _Fail(0, "float out of range")
    return _Fail(0, f"invalid field value {raw[:40]!r}")


def _in_range(value: int | None, low: int, high: int, reason: str) -> int | _Fail:
    return value if value is not None and low <= value <= high else _Fail(0, reason)


def _loose_scalar(raw: str) -> FieldValue | _Skip:
    """A tolerant-mode field value; `_Skip` when it is not a number or boolean."""
    if _INTEGRAL.fullmatch(raw):
        value = int64_or_float(raw)
        return value if math.isfinite(value) else _Skip(f"{raw[:40]!r} is out of range")
    scaled = _SCALED_DECIMAL.fullmatch(raw)
    if scaled:
        raw = scaled[1]
    if _LOOSE_FLOAT.fullmatch(raw):
        number = float(raw)
        return number if math.isfinite(number) else _Skip(f"{raw[:40]!r} is out of range")
    strict = _strict_scalar(raw)
    if isinstance(strict, _Fail):
        return _Skip(f"{raw[:40]!r} is not a number")
    return strict


# --- the loose reading of one physical line (tolerant mode's fallback) ---------------

_UNESCAPED_SPACES = re.compile(r"(?<!\\)[ \t]+")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")


def _read_loosely(line: str, multiplier: int, drop: _DropSink) -> ParsedLine | None:
    """`line` with unescaped spaces and commas in its tags, or None."""
    stripped = line.rstrip(" \t")
    spans = [m.span() for m in _UNESCAPED_SPACES.finditer(stripped) if m.start() > 0]
    time_ns = None
    if len(spans) >= 2 and _TIMESTAMP.fullmatch(stripped[spans[-1][1] :]):
        scaled = _scale_timestamp(stripped[spans[-1][1] :], multiplier)
        if isinstance(scaled, str):
            return None
        time_ns, stripped = scaled, stripped[: spans[-1][0]]
        spans.pop()
    if not spans:
        return None
    header, field_start = stripped[: spans[-1][0]], spans[-1][1]
    fields = _loose_fields(stripped[field_start:], field_start, drop)
    parts = _loose_header(header.lstrip(" \t"))
    if fields is None or parts is None:
        return None
    return ParsedLine(parts[0], parts[1], fields, time_ns)


def _loose_fields(text: str, offset: int, drop: _DropSink) -> dict[str, FieldValue] | None:
    fields: dict[str, FieldValue] = {}
    pos = offset
    for piece in _UNESCAPED_COMMA.split(text):
        pair = _UNESCAPED_EQUALS.split(piece, maxsplit=1)
        if len(pair) != 2 or not pair[0]:
            return None
        key = _unescape(pair[0], _KEY_ESCAPES)
        value = _loose_value(pair[1])
        if isinstance(value, _Skip):
            drop(pos + len(pair[0]) + 1, key, value.reason)
        else:
            fields[key] = value
        pos += len(piece) + 1
    return fields or None


def _loose_value(raw: str) -> FieldValue | _Skip:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _unescape(raw[1:-1], _STRING_ESCAPES)
    if not raw:
        return _Skip("empty value")
    return _loose_scalar(raw)


def _loose_header(header: str) -> tuple[str, dict[str, str]] | None:
    """Measurement and tags; a comma piece without ``=`` continues the one before."""
    pieces = _UNESCAPED_COMMA.split(header)
    measurement = pieces[0]
    tags: list[list[str]] = []
    for piece in pieces[1:]:
        pair = _UNESCAPED_EQUALS.split(piece, maxsplit=1)
        if len(pair) == 2 and pair[0]:
            tags.append(pair)
        elif tags:
            tags[-1][1] += "," + piece
        else:
            measurement += "," + piece
    if not measurement:
        return None
    measurement = _unescape(measurement, _MEASUREMENT_ESCAPES)
    return measurement, {
        _unescape(k, _KEY_ESCAPES): _unescape(v, _KEY_ESCAPES) for k, v in tags if v
    }
