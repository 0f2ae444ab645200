"""A pure, fast InfluxDB line-protocol encoder that never writes a bad line.

No I/O, no clock, no logging: the encoder turns `Metric`s into text and
counts what it had to drop or change in `EncoderStats`, which callers export.

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
# InfluxDB refuses timestamps at the very ends of int64 (1.x: "time outside range").
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
        self._ints_as_floats = self.options.integer_type == "float"
        self._omit_timestamp = self.options.omit_timestamp
        self.types = FieldTypes()
        self.losses = Losses()
        self._shapes: dict[_ShapeKey, _Shape] = {}
        self._whole_lines: dict[_ShapeKey, tuple[_Plan, str]] = {}
        self._field_keys: dict[str, str] = {}

    def encode(self, metric: Metric) -> str:
        """One line ending in a newline, or "" when nothing could be written."""
        fields = metric.fields
        key = (metric.measurement, *metric.tags.items(), *fields)
        whole = self._whole_lines.get(key)
        if whole is not None and metric.time_ns is not None:
            # The common case in one step: a known shape, values its template fits.
            values = (*fields.values(), metric.time_ns // self._divisor)
            if whole[0].fits_line(values):
                self.stats.lines_written += 1
                return whole[1] % values
        values = tuple(fields.values())
        shape = self._shapes.get(key)
        field_text = shape[1].format(values) if shape and shape[1] else None
        if shape is None or field_text is None:
            field_text = self._encode_fields(metric.measurement, fields)
            shape = self._reshape(key, metric, shape, values)
        header, _, dropped_tags = shape
        if dropped_tags:
            self.stats.fields_invalid_key += dropped_tags
            self._lost(metric.measurement, "(tags)", f"{dropped_tags} tag(s) with an empty or repeated key")
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
        if metric.time_ns is None or self._omit_timestamp:
            return f"{header} {field_text}\n"
        return f"{header} {field_text} {metric.time_ns // self._divisor}\n"

    def encode_known(
        self,
        measurement: str,
        tags: Mapping[str, str],
        names: tuple[str, ...],
        values: tuple[Any, ...],
        time_ns: int,
    ) -> str | None:
        """The line for a shape written before, without building a `Metric`.

        For callers that hold the field names and values apart (lazy fields).
        None when the shape has no template yet or `values` need the checked
        path: then build the `Metric` and call `encode`.
        """
        whole = self._whole_lines.get((measurement, *tags.items(), *names))
        if whole is None:
            return None
        values = (*values, time_ns // self._divisor)
        if not whole[0].fits_line(values):
            return None
        self.stats.lines_written += 1
        return whole[1] % values

    def encode_all(self, metrics: Iterable[Metric]) -> bytes:
        """Encode many metrics into one UTF-8 body."""
        encode = self.encode
        return "".join([encode(m) for m in metrics]).encode("utf-8", "replace")

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

    def _reshape(
        self, key: _ShapeKey, metric: Metric, shape: _Shape | None, values: tuple[Any, ...]
    ) -> _Shape:
        """A new shape (no plan yet), or the known one with a plan fitted to `values`."""
        if shape is None:
            header, dropped = self._header(metric.measurement, tuple(metric.tags.items()))
            shape = (header, None, dropped)
            _remember(self._shapes, key, shape)
            return shape
        kinds = self._kinds(metric.measurement)
        plan = _Plan.build(self._field_keys, kinds, tuple(metric.fields), values)
        shape = self._shapes[key] = (shape[0], plan, shape[2])
        header, _, dropped = shape
        if plan is not None and plan.types and header and not dropped:
            if not self._omit_timestamp:
                line = header.replace("%", "%%") + " " + plan.template + " %d\n"
                _remember(self._whole_lines, key, (plan, line))
        return shape

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
            how = "declared" if self.types.is_declared(escape_measurement(measurement), key) else "first written"
            self._lost(
                measurement,
                key,
                f"field type conflict: a {type(value).__name__} value for a field {how}"
                f" as {KIND_NAMES[target]}",
            )
            return None
        if known is None:
            kinds[key] = target
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
            value = min(max(value, low), high)
        return f"{value}{suffix}"


_ShapeKey = tuple[Any, ...]
"""The measurement, then the tag items, then the field names, in one flat tuple
(items are pairs, names are strings: the parts cannot be confused)."""
_Shape = tuple[str, "_Plan | None", int]
"""The header, the fields' template (once known) and how many tags it dropped."""


class _Plan:
    """A ready %-template for one shape of metric (its keys and value types).

    Inputs send the same fields with the same types every time, so after one
    checked encoding the fields are written by a single `%` format. `format`
    answers None when a value needs the checked path (a new type, an int
    outside int64 or, in a float field, beyond 2**53, a float that would
    print an exponent, NaN or inf).
    """

    __slots__ = ("floats", "high", "ints", "line_types", "low", "pack_line", "template", "types")

    def __init__(
        self,
        template: str,
        types: tuple[type, ...],
        int_range: tuple[int, int] = (INT64_MIN, INT64_MAX),
    ) -> None:
        self.template = template
        self.types = types
        self.line_types = (*types, int)  # the fields, then the timestamp
        self.low, self.high = int_range
        ints = [i for i, t in enumerate(types) if t is int]
        floats = [i for i, t in enumerate(types) if t is float]
        # All-int shapes (the usual case) are type- and range-checked at C
        # speed by packing them as int64; a bool passes and is written as
        # 1i/0i, the same conversion the checked path makes.
        all_int64 = len(ints) == len(types) and int_range == (INT64_MIN, INT64_MAX)
        # The values and the timestamp in one call (the timestamp is an int64 too).
        self.pack_line = struct.Struct(f"{len(types) + 1}q").pack if all_int64 else None
        self.ints = _getter(ints)
        self.floats = _getter(floats)

    @classmethod
    def build(
        cls,
        field_keys: dict[str, str],
        kinds: dict[str, str],
        names: tuple[str, ...],
        values: tuple[Any, ...],
    ) -> _Plan | None:
        """The plan for these fields, or None when they need per-value checks."""
        parts, types, int_range = [], [], (INT64_MIN, INT64_MAX)
        if len({field_keys.get(name) for name in names}) < len(names):
            return None  # names written alike: the checked path drops the repeats
        for name, value in zip(names, values, strict=True):
            ekey, vtype = field_keys.get(name), type(value)
            if not ekey:
                return None
            kind = kinds.get(ekey, "")
            if (kind, vtype) not in _TEMPLATE_SPECS:
                return None
            if (kind, vtype) == ("f", int):
                int_range = _EXACT_FLOAT_INTS
            parts.append(ekey.replace("%", "%%") + "=" + _TEMPLATE_SPECS[kind, vtype])
            types.append(vtype)
        return cls(",".join(parts), tuple(types), int_range)

    def fits_line(self, values: tuple[Any, ...]) -> bool:
        """True when the line template writes `values` (the fields, then the timestamp)
        exactly as the checked path would."""
        if self.pack_line is not None:
            try:
                self.pack_line(*values)
            except struct.error:
                return False
            return True
        if tuple(map(type, values)) != self.line_types:
            return False
        if self.ints is not None:
            ints = self.ints(values)
            if min(ints) < self.low or max(ints) > self.high:
                return False
        if self.floats is not None:
            for number in self.floats(values):
                # repr() writes an exponent exactly outside this range (and
                # nan/inf fail both tests): checked without formatting twice.
                if not (1e-4 <= abs(number) < 1e16 or number == 0.0):
                    return False
        return True

    def format(self, values: tuple[Any, ...]) -> str | None:
        """The field text for `values`, or None when they need checking."""
        return self.template % values if self.fits_line((*values, 0)) else None


_TEMPLATE_SPECS = {("i", int): "%di", ("f", float): "%r", ("f", int): "%d.0"}
_EXACT_FLOAT_INTS = (-(2**53), 2**53)
"""Ints that a float holds exactly: for them `%d.0` is repr(float(n))."""


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
