"""A pure, fast InfluxDB line-protocol encoder that never writes a bad line.

No I/O and no clock: the encoder turns `Metric`s into text, counts what it
had to drop or change in `EncoderStats`, which callers export, and reports
each value it did not write to `losses` (`telemon.fieldtypes.Losses`, which
logs the first of each kind per source).

Sanitizing names, keys and tag values (line protocol cannot carry them all):

* TAB, LF, FF and CR become the two characters ``\\t``, ``\\n``, ``\\f``,
  ``\\r`` (as Telegraf's serializer writes them); other control characters
  (U+0000-U+001F, U+007F) are removed.
* Backslashes directly before a comma, ``=``, a space, a double quote or the
  end of the string are removed: no parser can read them back (InfluxDB 1.x
  reads ``\\"`` in a measurement or field key as ``"``, Telegraf as ``\\"``).
* Lone surrogates (which UTF-8 cannot encode) become ``?``, as `encode_all`
  writes them.
* A measurement that starts with ``#`` (a comment line) gets ``_`` instead.
* The tag keys ``time``, ``_field`` and ``_measurement`` and the field key
  ``time`` are reserved by InfluxDB; they get a trailing ``_``.
* Empty tag values are omitted; a tag or field whose key is empty after
  sanitizing is dropped and counted, and so is a tag or field whose written
  key repeats another's in the same line (InfluxDB rejects duplicate tags and
  keeps only one of two fields). Tags are sorted by written key.

Field values: bool, int (``i``; ``u`` above int64 with ``uint_support``,
else clamped), float (shortest round-trip digits, never an exponent) and str
(quoted, at most 64 KiB, raw newlines kept). NaN and infinities are dropped.
Field types come from `telemon.fieldtypes`: declared by the inputs that know
them, else fixed by a field's first value. Later values are converted to the
field's type when that loses nothing, or dropped, so InfluxDB never sees a
type conflict (names that are written alike share the type). Every value not
written is counted per source and logged once in `losses`.
"""

from __future__ import annotations

import math
import operator
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Literal

from telemon.fieldtypes import KIND_NAMES, FieldTypes, Losses
from telemon.metric import Metric

__all__ = [
    "CONTENT_TYPE",
    "EncoderOptions",
    "EncoderStats",
    "LineEncoder",
    "Precision",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "format_float",
    "truncate_string",
]

CONTENT_TYPE = "text/plain; charset=utf-8"
"""What Telegraf's inputs.http expects for `data_format = "influx"`."""

Precision = Literal["ns", "us", "ms", "s"]
IntegerType = Literal["integer", "float"]

PRECISION_DIVISORS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
MAX_STRING_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# InfluxDB refuses timestamps at the very ends of int64 (1.x: "time outside range");
# the range is symmetric: MIN_TIME_NS == -MAX_TIME_NS.
MIN_TIME_NS, MAX_TIME_NS = INT64_MIN + 2, INT64_MAX - 1
UINT64_MAX = 2**64 - 1

_CONTROL_NAMED = {"\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNREADABLE_BACKSLASHES = re.compile(r'\\+(?=[,= "]|$)')
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_NEEDS_SANITIZING = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_RESERVED_TAG_KEYS = frozenset({"time", "_field", "_measurement"})
_RESERVED_FIELD_KEYS = frozenset({"time"})
_CACHE_LIMIT = 20_000


def _sanitize(text: str) -> str:
    """Make `text` representable in a name, key or tag value (see module doc)."""
    if not _NEEDS_SANITIZING.search(text):
        return text
    text = _CONTROL.sub(lambda m: _CONTROL_NAMED.get(m.group(), ""), text)
    text = _SURROGATES.sub("?", text)
    return _UNREADABLE_BACKSLASHES.sub("", text)


def escape_measurement(name: str) -> str:
    """Sanitize and escape a measurement name ("" when nothing is left)."""
    name = _sanitize(name)
    if name.startswith("#"):
        name = "_" + name[1:]
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Sanitize and escape a tag key, tag value or field key."""
    return _sanitize(text).translate(_KEY_ESCAPES)


def truncate_string(value: str) -> str:
    """Cut a string field value at 64 KiB of UTF-8 (the same object if shorter)."""
    if len(value) <= MAX_STRING_BYTES // 4:
        return value
    raw = value.encode("utf-8", "replace")
    if len(raw) <= MAX_STRING_BYTES:
        return value
    return raw[:MAX_STRING_BYTES].decode("utf-8", "ignore")


def escape_string(value: str) -> str:
    """Quote a string field value; raw newlines stay (parsers accept them)."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def format_float(value: float) -> str:
    """Shortest round-trip digits without an exponent (as Telegraf writes)."""
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text


@dataclass(slots=True)
class EncoderStats:
    """What the encoder had to drop or change; exported as self-metrics."""

    lines_written: int = 0
    lines_dropped: int = 0
    fields_nonfinite: int = 0
    fields_type_conflict: int = 0
    fields_unsupported: int = 0
    fields_invalid_key: int = 0
    ints_clamped: int = 0
    strings_truncated: int = 0

    def as_fields(self) -> dict[str, int]:
        """The counters as a field dict, for the `telemon` measurement."""
        return {name: getattr(self, name) for name in _STATS_NAMES}


_STATS_NAMES = tuple(f.name for f in fields(EncoderStats))


@dataclass(frozen=True, slots=True)
class EncoderOptions:
    """How numbers and timestamps are written (the `[agent]` settings)."""

    precision: Precision = "ns"
    omit_timestamp: bool = False
    integer_type: IntegerType = "integer"
    uint_support: bool = False


class LineEncoder:
    """Encodes metrics to line protocol and remembers each field's type.

    >>> enc = LineEncoder()
    >>> enc.encode(Metric("m", {"host": "a b"}, {"n": 1, "x": 0.5}, 10))
    'm,host=a\\\\ b n=1i,x=0.5 10\\n'
    """

    def __init__(self, options: EncoderOptions | None = None) -> None:
        self.options = options or EncoderOptions()
        self.stats = EncoderStats()
        self._divisor = PRECISION_DIVISORS[self.options.precision]
        self._ns = self._divisor == 1
        self._ints_as_floats = self.options.integer_type == "float"
        self._omit_timestamp = self.options.omit_timestamp
        self.types = FieldTypes()
        self._change: str | None = None  # how `_as_kind` changed the value it wrote
        self.losses = Losses()
        self._series: dict[_SeriesKey, _Series] = {}
        self._field_keys: dict[str, str] = {}

    def encode(self, metric: Metric) -> str:
        """One line ending in a newline, or "" when nothing could be written."""
        fields = metric.fields
        tags = metric.tags
        key = (metric.measurement, *tags, *tags.values(), None, *fields)
        try:
            series = self._series[key]
        except KeyError:
            return self._encode_checked(key, metric, None)
        # A series seen before: one `%` into its line template when every value
        # fits the template (checked at C speed for all-integer series) and the
        # time is in InfluxDB's range (|t| < 2**63 - 1); else the checked path.
        time_ns = metric.time_ns
        try:
            if self._ns:
                values = (*fields.values(), time_ns)
            else:
                values = (*fields.values(), time_ns // self._divisor)  # type: ignore[operator]
            if series.fits(*values) and abs(time_ns) <= MAX_TIME_NS:  # type: ignore[arg-type]
                self.stats.lines_written += 1
                return series.line % values
        except (struct.error, TypeError):  # a value the template cannot write
            pass
        return self._encode_checked(key, metric, series)

    def encode_all(self, metrics: Iterable[Metric]) -> bytes:
        """Encode many metrics into one UTF-8 body."""
        encode = self.encode
        return "".join([encode(m) for m in metrics]).encode("utf-8", "replace")

    def _encode_checked(self, key: _SeriesKey, metric: Metric, series: _Series | None) -> str:
        """Every value converted to its field's type and every loss noted; then the
        series' line template is fitted to these values for the next lines."""
        if series is None:
            header, dropped_tags = self._header(metric.measurement, tuple(metric.tags.items()))
        else:
            header, dropped_tags = series.header, series.dropped_tags
        field_text = self._encode_fields(metric.measurement, metric.fields)
        fitted = self._fit(metric, header, dropped_tags)
        if fitted is not None:
            _remember(self._series, key, fitted)
        elif series is None:
            _remember(self._series, key, _Series(header, dropped_tags))
        if dropped_tags:
            self.stats.fields_invalid_key += dropped_tags
            self._lost(
                metric.measurement, "(tags)", f"{dropped_tags} tag(s) with an empty or repeated key"
            )
        time_ns = metric.time_ns
        if time_ns is not None and not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            self._lost(metric.measurement, "(line)", f"time {time_ns} outside InfluxDB's range")
            field_text = ""
        elif not header:
            self._lost(metric.measurement, "(line)", "the measurement name is empty as written")
        if not header or not field_text:
            self.stats.lines_dropped += 1
            return ""
        self.stats.lines_written += 1
        if time_ns is None or self._omit_timestamp:
            return f"{header} {field_text}\n"
        return f"{header} {field_text} {time_ns // self._divisor}\n"

    def _fit(self, metric: Metric, header: str, dropped_tags: int) -> _Series | None:
        """The series with a line template for values like `metric`'s, if there is one
        (else a template fitted before stays: the field types it was made for stay)."""
        if not header or dropped_tags:
            return None
        fields = metric.fields
        kinds = self._kinds(metric.measurement)
        template = _template(self._field_keys, kinds, tuple(fields), tuple(fields.values()))
        if template is None:
            return None
        fits, field_template = template
        # The omitted timestamp is still passed (and checked): "%.0s" writes nothing.
        stamp = "%.0s" if self._omit_timestamp else " %d"
        line = f"{header.replace('%', '%%')} {field_template}{stamp}\n"
        return _Series(header, dropped_tags, fits, line)

    def _header(self, measurement: str, tags: tuple[tuple[str, str], ...]) -> tuple[str, int]:
        """Measurement and tags sorted by written key ("" if unusable), and tags dropped."""
        name = escape_measurement(measurement)
        if not name:
            return "", 0
        parts, last, dropped = [name], "", 0
        for ekey, _, evalue in sorted((_tag_key(k), k, escape_key(v)) for k, v in tags):
            if not ekey or (evalue and ekey == last):
                dropped += 1  # no key left, or the same written key twice
            elif evalue:
                parts.append(f"{ekey}={evalue}")
                last = ekey
        return ",".join(parts), dropped

    def _kinds(self, measurement: str) -> dict[str, str]:
        """Field types by written key, per written measurement name."""
        return self.types.table(escape_measurement(measurement))

    def declare(self, measurement: str, kinds: Mapping[str, str]) -> list[str]:
        """Fix the types of known fields (kinds as in `fieldtypes.Kind`), as written
        with these options; answers the fields declared before with another type."""
        written = {}
        for key, kind in kinds.items():
            if self._ints_as_floats and kind in ("i", "u"):
                kind = "f"
            elif kind == "u" and not self.options.uint_support:
                kind = "i"
            written[_field_key(key)] = kind
        self._series.clear()  # templates were fitted to the kinds before
        return self.types.declare(escape_measurement(measurement), written)

    def admit(self, measurement: str, fields: Mapping[str, Any]) -> str | None:
        """None when every value can be written as its field's type (then the fields
        nobody fixed yet take these values' types); else why not, as InfluxDB says it.

        Strict, as a database is: the value's own type must be the field's type.
        """
        kinds = self._kinds(measurement)
        new: dict[str, str] = {}
        for key, value in fields.items():
            ekey = _field_key(key)
            kind, normalized = self._classify(value)
            if kind == "?" or (kind == "f" and not math.isfinite(normalized)):
                return f'invalid field "{key}": unsupported value {type(value).__name__}'
            kind = self._first_kind(kind, normalized)
            known = kinds.get(ekey) or new.get(ekey)
            if known is not None and known != kind:
                return (
                    f'field type conflict: input field "{key}" on measurement "{measurement}"'
                    f" is type {KIND_NAMES[kind]}, already exists as type {KIND_NAMES[known]}"
                )
            new[ekey] = kind
        for ekey, kind in new.items():
            kinds.setdefault(ekey, kind)
        return None

    def _encode_fields(self, measurement: str, values: Mapping[str, Any]) -> str:
        """The checked path: converts each value to its field's type."""
        kinds = self._kinds(measurement)
        keys = self._field_keys
        parts, written = [], set()
        for key, value in values.items():
            ekey = keys.get(key)
            if ekey is None:
                ekey = _remember(keys, key, _field_key(key))
            if not ekey or ekey in written:  # no key left, or the same written key twice
                self.stats.fields_invalid_key += 1
                reason = "the key repeats another's as written" if ekey else "empty key"
                self.losses.note(measurement, key, reason)
                continue
            text = self._convert(measurement, kinds, ekey, value)
            if text is not None:
                parts.append(f"{ekey}={text}")
                written.add(ekey)
        return ",".join(parts)

    def _convert(self, measurement: str, kinds: dict[str, str], key: str, value: Any) -> str | None:
        """Encode a value, keeping the field's earlier type; None drops it (noted in `losses`)."""
        if value is None:
            return None
        known = kinds.get(key)
        kind, normalized = self._classify(value)
        if kind == "?":
            self.stats.fields_unsupported += 1
            self._lost(measurement, key, f"unsupported value type {type(value).__name__}")
            return None
        if kind == "f" and not math.isfinite(normalized):
            self.stats.fields_nonfinite += 1
            self._lost(measurement, key, f"not a finite number ({normalized})")
            return None
        target = known or self._first_kind(kind, normalized)
        text = self._as_kind(target, kind, normalized)
        if text is None:
            self.stats.fields_type_conflict += 1
            how = (
                "declared"
                if self.types.is_declared(escape_measurement(measurement), key)
                else "first written"
            )
            self._lost(
                measurement,
                key,
                f"field type conflict: a {type(value).__name__} value for a field {how}"
                f" as {KIND_NAMES[target]}",
            )
            return None
        if known is None:
            kinds[key] = target
        if self._change is not None:  # written, but not as given: said once, not counted
            self.losses.note(measurement, key, self._change, counted=False)
            self._change = None
        return text

    def _lost(self, measurement: str, key: str, reason: str) -> None:
        self.losses.note(measurement, key, reason)

    def _classify(self, value: Any) -> tuple[str, Any]:
        if isinstance(value, bool):
            return "b", value
        if isinstance(value, int):
            return "i", int(value)
        if isinstance(value, float):
            return "f", float(value)
        if isinstance(value, str):
            return "s", str(value)
        try:
            return "i", operator.index(value)
        except TypeError:
            return "?", value

    def _first_kind(self, kind: str, value: Any) -> str:
        if kind == "i":
            if self._ints_as_floats:
                return "f"
            if self.options.uint_support and value > INT64_MAX:
                return "u"
        if kind == "f" and self._ints_as_floats:
            return "f"
        return kind

    def _as_kind(self, target: str, kind: str, value: Any) -> str | None:
        """Write `value` (of `kind`) as a field of type `target`, or None."""
        if target == kind == "b":
            return "true" if value else "false"
        if target == kind == "s":
            cut = truncate_string(value)
            if cut is not value:
                self.stats.strings_truncated += 1
                self._change = f"string cut at {MAX_STRING_BYTES} bytes"
            return escape_string(cut)
        if kind == "b":
            kind, value = "i", int(value)
        if kind not in ("i", "f") or target not in ("i", "u", "f"):
            return None
        if target == "f":
            try:
                return format_float(float(value))
            except OverflowError:
                return None
        if kind == "f":
            if not float(value).is_integer():
                return None
            value = int(value)
        low, high, suffix = (0, UINT64_MAX, "u") if target == "u" else (INT64_MIN, INT64_MAX, "i")
        if target == "u" and value < 0:
            return None
        if not low <= value <= high:
            self.stats.ints_clamped += 1
            self._change = f"{value} is out of range: written as {min(max(value, low), high)}"
            value = min(max(value, low), high)
        return f"{value}{suffix}"


_SeriesKey = tuple[Any, ...]
"""The measurement, then the tag items, then the field names, in one flat tuple
(items are pairs, names are strings: the parts cannot be confused)."""


def _never(*values: Any) -> bool:
    """The check of a series without a line template: every line takes the checked path."""
    return False


class _Series:
    """What is known of one series (measurement, tags, field names) once it was seen.

    Its header (measurement and tags as written) and, when its values can be
    written by a single `%`, the whole line's template with `fits`, which
    answers whether a line's values (the fields, then the timestamp) are
    written by the template exactly as the checked path writes them (false or
    `struct.error` otherwise).
    """

    __slots__ = ("dropped_tags", "fits", "header", "line")

    def __init__(
        self,
        header: str,
        dropped_tags: int,
        fits: Callable[..., object] = _never,
        line: str = "",
    ) -> None:
        self.header = header
        self.dropped_tags = dropped_tags
        self.fits = fits
        self.line = line


_TEMPLATE_SPECS = {("i", int): "%di", ("f", float): "%r", ("f", int): "%d.0"}
_EXACT_FLOAT_INTS = (-(2**53), 2**53)
"""Ints that a float holds exactly: for them `%d.0` is repr(float(n))."""


def _template(
    field_keys: dict[str, str],
    kinds: dict[str, str],
    names: tuple[str, ...],
    values: tuple[Any, ...],
) -> tuple[Callable[..., object], str] | None:
    """The check and the %-template of fields like these, or None when their values
    need per-value checks (no fields, a key written twice or not at all, a bool, a
    string, an unsigned or a field of no known type)."""
    parts, types, int_range = [], [], (INT64_MIN, INT64_MAX)
    if not names:
        return None  # a line needs a field
    if len({field_keys.get(name) for name in names}) < len(names):
        return None  # names written alike: the checked path drops the repeats
    for name, value in zip(names, values, strict=True):
        ekey, vtype = field_keys.get(name), type(value)
        spec = _TEMPLATE_SPECS.get((kinds.get(ekey or "", ""), vtype))
        if not ekey or spec is None:
            return None
        if spec == "%d.0":
            int_range = _EXACT_FLOAT_INTS
        parts.append(ekey.replace("%", "%%") + "=" + spec)
        types.append(vtype)
    if all(t is int for t in types) and int_range == (INT64_MIN, INT64_MAX):
        # The usual series, all int64: type and range checked at C speed by packing
        # the values and the timestamp; a bool passes and is written as 1i/0i, the
        # conversion the checked path makes.
        return struct.Struct(f"{len(types) + 1}n").pack, ",".join(parts)
    return _mixed_fits(tuple(types), int_range), ",".join(parts)


def _mixed_fits(types: tuple[type, ...], int_range: tuple[int, int]) -> Callable[..., bool]:
    """The check of a template with floats: exact types, ints in `int_range`, and
    floats that repr() writes without an exponent (nan and inf fail it too)."""
    line_types = (*types, int)  # the fields, then the timestamp
    low, high = int_range
    ints = _getter([i for i, t in enumerate(types) if t is int])
    floats = _getter([i for i, t in enumerate(types) if t is float])

    def fits(*values: Any) -> bool:
        if tuple(map(type, values)) != line_types:
            return False
        if ints is not None:
            chosen = ints(values)
            if min(chosen) < low or max(chosen) > high:
                return False
        if floats is not None:
            for number in floats(values):
                # repr() writes an exponent exactly outside this range.
                if not (1e-4 <= abs(number) < 1e16 or number == 0.0):
                    return False
        return True

    return fits


def _getter(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]] | None:
    if not positions:
        return None
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    return operator.itemgetter(*positions)


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _tag_key(key: str) -> str:
    return _reserved_key(key, _RESERVED_TAG_KEYS)


def _field_key(key: str) -> str:
    return _reserved_key(key, _RESERVED_FIELD_KEYS)


def _reserved_key(key: str, reserved: frozenset[str]) -> str:
    # Sanitized first: "time\x00" and "time\\" would otherwise be written as "time".
    key = _sanitize(key)
    return (key + "_" if key in reserved else key).translate(_KEY_ESCAPES)
