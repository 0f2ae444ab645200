"""Read the bodies Pharo images serve their VM figures in. Pure: no I/O, no clock, no logging.

Formats (`FORMATS`):

``influx``
    Line protocol as the original Telemon package writes it (no type
    suffixes, no escaping, no timestamp), read by `lpparse` in tolerant mode:
    one `Sample` per line with its measurement, tags and time (None when the
    line has none). Unreadable lines and values are skipped and reported.
``json``
    A JSON object of named values. Nested objects flatten to
    ``outer_inner``; strings, arrays and nulls are left out (objects like
    these carry names, paths and versions such as ``"12.0"``, not metrics).
``labels``
    A JSON array of ``{"label": ..., "value": ..., "unit": ...}`` objects
    (``name`` is read when ``label`` is missing). A label that is not a plain
    identifier becomes camelCase (``"Old space"`` -> ``oldSpace``). Values
    with a byte or time unit are converted to bytes and milliseconds (``KB``,
    ``MB``, ``GB`` count 1024s, as memory sizes do); other units leave the
    value as it is. A string value is read as a number (``"2,048"``) when the
    entry has a unit, and left out if it is not one; without a unit it is a
    string field (``{"label": "version", "value": "Pharo 12"}``): a labels
    list is explicitly a list of values, and only a unit promises a number.
``parameters``
    The JSON array ``Smalltalk vm getParameters`` answers: element N is VM
    parameter N, named by `PARAMETER_NAMES`; nulls, unnamed indices and
    non-numbers are left out. Older VMs answer fewer elements; an array of
    fewer than 11 (Telemon's ten need index 11) is not a parameter array.
    A classic (pre-Spur) VM's array (`is_classic`: 40 elements or fewer,
    parameters 4 and 5 set, parameter 2 not below parameter 1) is read by its
    own meanings (`CLASSIC_PARAMETERS`): parameters 1-3 are end addresses, so
    youngSpace = p2 - p1, memoryFree = p3 - p2 and usedMemory = p2; slots
    12-20 (unused there) and 38 are left out; parameter 34 counts
    allocations. Its GC times (8, 10) and GC clock (36) are taken as
    microseconds and converted to ms, rounded to the nearest: the last
    classic VMs, the Squeak 4.x interpreters (Debian's ``squeak-vm``), count
    microseconds there, and nothing in the array tells them from older
    interpreters that counted ms (these would read 1000 times too small).
``report``
    The text of ``Smalltalk vm statisticsReport``, read by label (see
    `REPORT_FIELDS`), in any Pharo version's layout: tabs or spaces, CR, LF
    or CRLF, thousands separators, long float percentages. Percentages and
    averages are left out (they derive from the counts). ``uptime`` has one
    second's resolution. The "Since last view" block gives ``sinceLastView_``
    fields and never touches the totals.

For every format but ``influx`` the result is one `Sample` with measurement
None, no tags and no time, passed through `as_figures`: each figure of
`pharo_figures.FIGURES` under its one name with its declared type (the
input does the same to ``influx`` lines of its measurement).

Booleans are kept only where the payload types them (JSON ``true``/``false``,
line-protocol booleans); NaN and infinities are always left out. An integer
beyond int64 is a float, as in line protocol (`int64_or_float`), except in a
report, whose values are counts: a report line with one is not read. A number
too large for a float is left out. A payload without any number is a
`FormatError`, the only exception any payload raises.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from telemon.inputs.pharo_figures import FIGURES, TELEMON_FIELDS, P, norm
from telemon.lpparse import INT64_MAX, INT64_MIN, int64_or_float, parse_lines_tolerant
from telemon.metric import FieldValue

__all__ = [
    "CLASSIC_PARAMETERS",
    "FORMATS",
    "PARAMETER_NAMES",
    "REPORT_FIELDS",
    "TELEMON_FIELDS",
    "FormatError",
    "SPUR_PARAMETERS",
    "Sample",
    "as_figures",
    "candidate_formats",
    "is_classic",
    "parse_auto",
    "parse_payload",
    "with_telemon_fields",
]

FORMATS: tuple[str, ...] = ("influx", "json", "labels", "parameters", "report")

SPUR_PARAMETERS: dict[str, P] = dict(
    sorted(((f.name, f.spur) for f in FIGURES.values() if f.spur), key=lambda i: i[1].index)
)
"""Field name -> where a Spur VM's `getParameters` has it, by index."""

CLASSIC_PARAMETERS: dict[str, P] = dict(
    sorted(((f.name, f.classic) for f in FIGURES.values() if f.classic), key=lambda i: i[1].index)
)
"""Field name -> where a classic VM's `getParameters` has it, by index."""

PARAMETER_NAMES: dict[int, str] = {
    source.index: name for name, source in SPUR_PARAMETERS.items() if source.minus is None
}
"""1-based Spur `getParameters` index -> field name. Flags, versions, per-GC
loop counters and reserved slots have no name and are left out."""

CLASSIC_MAX_PARAMETERS = 40
MIN_PARAMETERS = 11
SINCE_LAST_VIEW = "sinceLastView_"
MAX_JSON_DEPTH = 16
MAX_REASON = 160


class FormatError(ValueError):
    """A body that is not in the format; ``str()`` is the one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(_one_line(reason))


@dataclass(slots=True)
class Sample:
    """What one payload (or one of its lines) says; the input turns it into a `Metric`."""

    measurement: str | None
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    time_ns: int | None = None


Notes = list[str]
"""One-line notes about what a parser left out of a payload it could read."""


def parse_payload(fmt: str, text: str, *, problems: list[str] | None = None) -> list[Sample]:
    """The samples in `text` read as `fmt`; raises `FormatError`.

    Values and lines left out of a readable payload are described, one line
    each, in `problems` when a list is given.
    """
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise FormatError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    body = text.removeprefix("\ufeff")
    if not body.strip():
        raise FormatError("empty body")
    notes: Notes = []
    samples = parser(body, notes)
    if problems is not None:
        problems.extend(notes)
    return samples


def candidate_formats(content_type: str, text: str) -> list[str]:
    """The formats `parse_auto` tries, most likely first.

    The content decides, because servers often send JSON as ``text/plain``
    and the other way round; the Content-Type only adds ``json`` (first) for
    a body that is not an object or array, such as a JSON string.
    """
    body = text.lstrip("\ufeff \t\r\n")
    if body.startswith("{"):
        return ["json"]
    if body.startswith("["):
        first = body[1:].lstrip(" \t\r\n")[:1]
        return ["labels", "parameters"] if first == "{" else ["parameters", "labels"]
    texts = ["report", "influx"] if _REPORT_SNIFF.search(body[:4096]) else ["influx", "report"]
    if _is_json_type(content_type) or body.startswith('"'):
        return ["json", *texts]
    return texts


def parse_auto(
    content_type: str, text: str, *, problems: list[str] | None = None
) -> tuple[str, list[Sample]]:
    """(format used, samples); the `FormatError` names every format tried and why it failed."""
    if not text.removeprefix("\ufeff").strip():
        raise FormatError(f"empty body ({_describe(content_type, text)})")
    reasons = []
    for fmt in candidate_formats(content_type, text):
        try:
            return fmt, parse_payload(fmt, text, problems=problems)
        except FormatError as exc:
            reasons.append(f"{fmt}: {_shorten(str(exc))}")
    raise FormatError(
        f"no format could read the body ({_describe(content_type, text)}): " + "; ".join(reasons)
    )


def with_telemon_fields(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """`fields` with Telemon's ten names added where derivable, Telemon's first.

    Never changes a value the payload gave. Derived:

    * a figure's name from one of its aliases (``fullGCCount`` -> ``fullGCs``,
      ``freeSize`` -> ``memoryFree``, ``edenSpaceSize`` -> ``edenSize``; case,
      ``_`` and ``-`` do not matter); the alias stays;
    * ``memoryFree`` by Pharo's formula freeOldSpace + edenSize - youngSpace,
      else as youngSpace + oldSpace - usedMemory;
    * ``usedMemory`` = youngSpace + oldSpace - free, only where the formula
      gives free: the original Telemon's own ``memoryFree`` was computed
      differently, and its Grafana panels use memory - memoryFree.

    Order: Telemon's ten (those present), the rest in payload order, then
    the other figures named by an alias, then ``usedMemory`` if it was
    derived or named by an alias.
    """
    lookup = _Lookup(fields)
    pharo_free = _pharo_free(lookup)
    result: dict[str, FieldValue] = {}
    for name in TELEMON_FIELDS:
        value = fields[name] if name in fields else lookup.get(name)
        if value is None and name == "memoryFree":
            value = pharo_free if pharo_free is not None else _free_from_used(lookup)
        if value is not None:
            result[name] = value
    result.update((k, v) for k, v in fields.items() if k not in result)
    for name in _ALIASED:
        value = None if name in result else lookup.get(name)
        if value is not None:
            result[name] = value
    used = lookup.get("usedMemory") if pharo_free is None else _used(lookup, pharo_free)
    if "usedMemory" not in result and used is not None:
        result["usedMemory"] = used
    return result


def as_figures(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """`fields` with each figure of `FIGURES` under its one name and declared type.

    A key that is a figure's name written otherwise (``jit_compiledMethods``,
    ``Old_space``) takes the figure's name, unless the payload has that too;
    `with_telemon_fields` then adds names and derived values; a figure's
    value is converted to its declared kind: an integer figure's float is
    rounded to the nearest integer, halves up (1.007 ms -> 1), while within
    int64; a float figure's integer becomes a float; a number written as text
    becomes a number. Other keys and values are left as they are.
    """
    named: dict[str, FieldValue] = {}
    for key, value in fields.items():
        name = _canonical(key, fields)
        named[key if name in named else name] = value  # a second spelling stays as it is
    return {key: _declared(key, value) for key, value in with_telemon_fields(named).items()}


# --- with_telemon_fields and as_figures --------------------------------------------------

_ALIASES: dict[str, tuple[str, ...]] = {
    name: figure.aliases for name, figure in FIGURES.items() if figure.aliases
}
_ALIASED = tuple(name for name in _ALIASES if name not in TELEMON_FIELDS and name != "usedMemory")
_BY_NORM: dict[str, str] = {norm(name): name for name in FIGURES}


def _canonical(key: str, fields: Mapping[str, FieldValue]) -> str:
    """The figure `key` names in another spelling, else `key`."""
    if key in FIGURES:
        return key
    name = _BY_NORM.get(norm(key))
    return key if name is None or name in fields else name


def _declared(key: str, value: FieldValue) -> FieldValue:
    """`value` in the kind `FIGURES` declares for `key` (unchanged where that would lose it)."""
    figure = FIGURES.get(key)
    if figure is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = _number_text(value)
        if number is None:
            return value
        value = number
    if figure.kind == "f":
        return float(value) if isinstance(value, int) else value
    if isinstance(value, float) and math.isfinite(value):
        rounded = math.floor(value + 0.5)
        # Not -2**63 either: as a float, that is what a number beyond int64 became.
        return rounded if abs(rounded) <= INT64_MAX else value
    return value


class _Lookup:
    """Numeric payload values by Telemon name or alias, case- and separator-blind."""

    def __init__(self, fields: Mapping[str, FieldValue]) -> None:
        self.fields = fields
        self.by_norm: dict[str, int | float] = {}
        for key, value in fields.items():
            if _is_number(value):
                self.by_norm.setdefault(norm(key), value)

    def get(self, name: str) -> int | float | None:
        """The payload's number for `name`: its own key first, then an alias."""
        if name in self.fields:
            given = self.fields[name]
            return given if _is_number(given) else None
        for candidate in (name, *_ALIASES.get(name, ())):
            found = self.by_norm.get(norm(candidate))
            if found is not None:
                return found
        return None


def _pharo_free(lookup: _Lookup) -> int | float | None:
    """VirtualMachine>>freeSize: freeOldSpace + edenSize - youngSpace."""
    parts = [lookup.get(n) for n in ("freeOldSpace", "edenSize", "youngSpace")]
    if parts[0] is None or parts[1] is None or parts[2] is None:
        return None
    return _fit(parts[0] + parts[1] - parts[2])


def _free_from_used(lookup: _Lookup) -> int | float | None:
    parts = [lookup.get(n) for n in ("youngSpace", "oldSpace", "usedMemory")]
    if parts[0] is None or parts[1] is None or parts[2] is None:
        return None
    return _fit(parts[0] + parts[1] - parts[2])


def _used(lookup: _Lookup, free: int | float) -> int | float | None:
    """Pharo's used heap: youngSpace + oldSpace - free."""
    young, old = lookup.get("youngSpace"), lookup.get("oldSpace")
    return None if young is None or old is None else _fit(young + old - free)


def _fit(value: int | float) -> int | float | None:
    """A computed number as a field value: beyond int64 a float, None when not finite.

    Sums and unit conversions of in-range values can leave int64, and the
    encoder would clamp such an int to a wrong value.
    """
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    return value if math.isfinite(value) else None


def _is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float, not a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _require_number(fields: dict[str, FieldValue], what: str) -> None:
    if not any(_is_number(v) for v in fields.values()):
        raise FormatError(f"no values found ({what})")


# --- influx ----------------------------------------------------------------------------


def _parse_influx(body: str, notes: Notes) -> list[Sample]:
    lines, errors = parse_lines_tolerant(body)
    notes.extend(str(error) for error in errors)
    if not lines:
        skipped = [error for error in errors if error.field is None]
        if not skipped:
            raise FormatError("no values found (only comments and blank lines)")
        raise FormatError(f"no line could be read ({len(skipped)} skipped; first: {skipped[0]})")
    samples = [Sample(ln.measurement, ln.tags, ln.fields, ln.time_ns) for ln in lines]
    if not any(_is_number(v) for s in samples for v in s.fields.values()):
        raise FormatError("no values found (no line has a number)")
    return samples


# --- JSON: json, labels, parameters ----------------------------------------------------


def _load_json(body: str) -> Any:
    try:
        # Left to json, an integer of over 4300 digits raises a plain ValueError,
        # and one beyond int64 would be clamped by the encoder.
        return json.loads(body, parse_int=int64_or_float)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise FormatError("not JSON: nested too deeply") from None


def _kind(value: Any) -> str:
    """How a JSON value is named in messages, with an excerpt of strings."""
    if isinstance(value, str):
        return f"a JSON string ({_excerpt(value)})"
    names = {dict: "a JSON object", list: "a JSON array", bool: "a JSON boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "JSON null" if value is None else "a JSON number"


def _single(fields: dict[str, FieldValue], what: str) -> list[Sample]:
    _require_number(fields, what)
    return [Sample(None, {}, as_figures(fields), None)]


def _parse_json(body: str, notes: Notes) -> list[Sample]:
    value = _load_json(body)
    if not isinstance(value, dict):
        raise FormatError(f"{_kind(value)}, not an object")
    fields: dict[str, FieldValue] = {}
    _flatten(value, "", fields, notes, 0)
    return _single(fields, f"an object of {len(value)} keys, none a number")


def _flatten(
    obj: dict[str, Any], prefix: str, fields: dict[str, FieldValue], notes: Notes, depth: int
) -> None:
    """Numbers and booleans of `obj` into `fields`, nested keys joined by ``_``."""
    for key, value in obj.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            if depth < MAX_JSON_DEPTH:
                _flatten(value, name, fields, notes, depth + 1)
            else:
                notes.append(f"{name!r}: nested deeper than {MAX_JSON_DEPTH} levels, left out")
            continue
        converted = _json_number(value, name, notes)
        if converted is not None and key and name not in fields:
            fields[name] = converted


def _json_number(value: Any, name: str, notes: Notes) -> int | float | bool | None:
    """A JSON number or boolean as a field value, else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{name!r}: {value} left out (not a finite number)")
        return None
    figure = _BY_NORM.get(norm(name)) or _BY_NORM.get(norm(name.rsplit("_", 1)[-1]))
    if figure is None or value is None:
        return None  # not a figure (a version string, a list of names): not a value lost
    number = _number_text(value) if isinstance(value, str) else None
    if number is None:
        notes.append(f"{name!r}: {_kind(value)} where the figure {figure} is a number")
    return number


_NUMBER_TEXT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _number_text(text: str) -> int | float | None:
    """A number written as text (``"1452854"``, ``"147,988,480"``, ``"0.5"``), else None."""
    text = text.strip()
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    text = text.replace(",", "")
    value = int64_or_float(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    return value if math.isfinite(value) else None


def _parse_labels(body: str, notes: Notes) -> list[Sample]:
    value = _load_json(body)
    if not isinstance(value, list):
        raise FormatError(f"{_kind(value)}, not an array of label objects")
    if not any(isinstance(entry, dict) for entry in value):
        what = "an empty array" if not value else f"an array of {_kind(value[0])[2:]}s"
        raise FormatError(f"{what}, not of label objects")
    fields: dict[str, FieldValue] = {}
    for number, entry in enumerate(value, 1):
        item = _label_entry(entry, number, notes)
        if item is not None and item[0] not in fields:
            fields[item[0]] = item[1]
    return _single(fields, f"{len(value)} entries, none with a number")


def _label_entry(entry: Any, number: int, notes: Notes) -> tuple[str, FieldValue] | None:
    """(field name, value) of one labels entry, or None (noted when malformed)."""
    if not isinstance(entry, dict):
        notes.append(f"entry {number}: {_kind(entry)}, not a label object")
        return None
    label = entry.get("label", entry.get("name"))
    name = _field_name(label) if isinstance(label, str) else ""
    if not name:
        notes.append(f"entry {number}: no usable label")
        return None
    unit = entry.get("unit")
    unit = unit.strip() if isinstance(unit, str) else ""
    value = _label_value(entry.get("value"), unit)
    if isinstance(value, _Reject):
        notes.append(f"entry {number} ({name}): {value.reason}")
        return None
    return None if value is None else (name, value)


class _Reject:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _label_value(raw: Any, unit: str) -> FieldValue | _Reject | None:
    """A labels value converted to bytes or ms; None for null."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    number: int | float | None
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            return _Reject(f"{raw} is not a finite number")
        number = raw
    elif isinstance(raw, str):
        if not unit:
            return raw
        number = _number_text(raw)
    else:
        return _Reject(f"{_kind(raw)} is not a value")
    if number is None:
        return _Reject(f"{_excerpt(str(raw))} is not a number")
    scaled = _fit(_scale(number, unit))
    if scaled is None:
        return _Reject(f"{_excerpt(str(raw))} {unit} is out of range")
    return scaled


_UNIT_FACTORS: dict[str, int] = {
    **dict.fromkeys(("KB", "kB", "KiB"), 1024),
    **dict.fromkeys(("MB", "MiB"), 1024**2),
    **dict.fromkeys(("GB", "GiB"), 1024**3),
    **dict.fromkeys(("s", "sec", "seconds"), 1000),
    **dict.fromkeys(("min", "minutes"), 60_000),
    **dict.fromkeys(("h", "hours"), 3_600_000),
}
_UNIT_DIVISORS: dict[str, int] = {
    **dict.fromkeys(("us", "µs", "microseconds"), 1000),
    **dict.fromkeys(("ns", "nanoseconds"), 1_000_000),
}
"""Units converted to bytes or ms; bytes, ms and all others are kept as they are."""


def _scale(number: int | float, unit: str) -> int | float:
    """`number` in bytes or ms (an int stays an int when the result is whole)."""
    if unit in _UNIT_FACTORS:
        return number * _UNIT_FACTORS[unit]
    divisor = _UNIT_DIVISORS.get(unit)
    if divisor is None:
        return number
    if isinstance(number, int) and number % divisor == 0:
        return number // divisor
    return number / divisor


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9]+")


def _field_name(label: str) -> str:
    """A label in camelCase ("Full GCs" -> fullGCs, "Uptime" -> uptime, oldSpace as it is)."""
    label = label.strip()
    if _IDENTIFIER.fullmatch(label) and label[0].islower():
        return label
    words = _WORD.findall(label)
    if not words:
        return ""
    first = words[0]
    if not first[:2].isupper():  # keep acronyms such as JIT or GC as written
        first = first[0].lower() + first[1:]
    rest = "".join(word[0].upper() + word[1:] for word in words[1:])
    return str(first) + rest


def _parse_parameters(body: str, notes: Notes) -> list[Sample]:
    value = _load_json(body)
    if not isinstance(value, list):
        raise FormatError(f"{_kind(value)}, not an array")
    if value and all(isinstance(v, (dict, list)) for v in value):
        raise FormatError(f"an array of {_kind(value[0])[2:]}s, not of numbers")
    if len(value) < MIN_PARAMETERS:
        raise FormatError(f"an array of {len(value)} elements; getParameters answers 40 or more")
    sources = CLASSIC_PARAMETERS if is_classic(value) else SPUR_PARAMETERS
    fields: dict[str, FieldValue] = {}
    for name, source in sources.items():
        if source.index > len(value):
            break
        figure = _parameter(value, source)
        if isinstance(figure, _Reject):
            notes.append(f"parameter {source.index} ({name}): {figure.reason}")
        elif figure is not None:
            fields[name] = figure
    return _single(fields, f"{len(value)} elements, none a number at a named index")


def is_classic(parameters: list[Any]) -> bool:
    """A classic (pre-Spur) VM's `getParameters`: 40 elements or fewer, parameters
    4 and 5 (allocation counts, nil on Spur) set, parameter 2 (an end address)
    not below parameter 1. Spur's parameter 2 is the young space's size."""
    if not 5 <= len(parameters) <= CLASSIC_MAX_PARAMETERS:
        return False
    old_end, young_end, allocations, between = parameters[0], parameters[1], *parameters[3:5]
    return (
        all(_is_number(v) for v in (old_end, young_end, allocations, between))
        and young_end >= old_end
    )


def _parameter(parameters: list[Any], source: P) -> int | float | _Reject | None:
    """The figure `source` points at: an element, a difference, microseconds as ms."""
    raw = parameters[source.index - 1]
    if not _is_number(raw):
        return None if raw is None else _Reject(f"{_kind(raw)} left out")
    number: int | float | None = raw
    if source.minus is not None:
        base = parameters[source.minus - 1]
        number = _fit(raw - base) if _is_number(base) else None
    if number is not None and source.micro:
        number = (number + 500) // 1000 if isinstance(number, int) else _fit(number / 1000)
    return number


# --- report ----------------------------------------------------------------------------

_NUM = r"(-?\d{1,3}(?:,\d{3})+|-?\d+)"
_LABELS = (
    "Since last view",
    "root table",
    "m-cache",
    "i-cache",
    "uptime",
    "memory",
    "old",
    "young",
    "used",
    "free",
    "GCs",
    "full",
    "incr",
    "tenures",
    "sends",
)
_REPORT_LINE = re.compile(
    r"[ \t]*(" + "|".join(re.escape(label) for label in _LABELS) + r")[ \t]+(\S.*)",
    re.IGNORECASE,
)
_REPORT_SNIFF = re.compile(r"(?:^|[\r\n])[ \t]*(?:uptime|memory|GCs)[ \t]+\d", re.IGNORECASE)
_HMS = re.compile(r"(\d+)h(\d+)m(\d+)s")
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)s")
_BYTES = re.compile(_NUM + r" bytes")
_COUNT = re.compile(_NUM)
_GC_TOTAL = re.compile(_NUM + r"(?: \(" + _NUM + r"ms between GCs\))?")
_TOTALLING = re.compile(_NUM + r" totalling " + _NUM + r"ms")
_OVERFLOWS = re.compile(_NUM + r" overflows")

REPORT_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "uptime"): ("uptime",),
    ("", "memory"): ("memory",),
    ("memory", "old"): ("oldSpace",),
    ("memory", "young"): ("youngSpace",),
    ("memory", "used"): ("usedMemory",),
    ("memory", "free"): ("memoryFree",),
    ("memory", "root table"): ("rootTableOverflows",),
    ("", "gcs"): ("totalGCs", "msBetweenGCs"),
    ("gcs", "full"): ("fullGCs", "fullGCTime"),
    ("gcs", "incr"): ("incrGCs", "incrGCTime"),
    ("gcs", "tenures"): ("tenureCount",),
    ("gcs", "root table"): ("rootTableOverflows",),
    ("", "since last view"): ("sinceLastView_totalGCs", "sinceLastView_msBetweenGCs"),
    ("since last view", "uptime"): ("sinceLastView_uptime",),
    ("since last view", "full"): ("sinceLastView_fullGCs", "sinceLastView_fullGCTime"),
    ("since last view", "incr"): ("sinceLastView_incrGCs", "sinceLastView_incrGCTime"),
    ("since last view", "tenures"): ("sinceLastView_tenureCount",),
    ("", "sends"): ("sends",),
    ("sends", "full"): ("sendsFullLookups",),
    ("sends", "m-cache"): ("sendsMethodCacheHits",),
    ("sends", "i-cache"): ("sendsInlineCacheHits",),
}
"""(block, label) -> field names, all ints (times in ms, sizes in bytes).

A block is opened by its unindented label (memory, GCs, Since last view,
sends); "" is the top level. ``uptime`` ("0h41m3s", or "118.3s" in the since
block) is in ms; ``totalGCs``/``msBetweenGCs`` are the GCs line; the
``sinceLastView_`` fields are the differences since the previous report; the
sends block (older images) counts message sends and their cache hits.
"""

_SECTIONS = frozenset({"memory", "gcs", "since last view", "sends"})
_VALUE_PATTERNS: dict[str, re.Pattern[str]] = {
    **dict.fromkeys(("memory", "old", "young", "used", "free"), _BYTES),
    **dict.fromkeys(("gcs", "since last view"), _GC_TOTAL),
    **dict.fromkeys(("full", "incr"), _TOTALLING),
    **dict.fromkeys(("tenures", "sends", "m-cache", "i-cache"), _COUNT),
    "root table": _OVERFLOWS,
}
"""How each label's value starts; the sends block's ``full`` is a plain count."""


def _parse_report(body: str, notes: Notes) -> list[Sample]:
    fields: dict[str, FieldValue] = {}
    section = ""
    for number, line in enumerate(body.splitlines(), 1):
        match = _REPORT_LINE.fullmatch(line)
        if match is None:
            continue
        # Stripped here, not by a lazy `.*?[ \t]*`: that is quadratic in a run of spaces.
        label, text = match[1].lower(), match[2].rstrip(" \t")
        section, names = _report_names(section, label)
        values = _report_values(section, label, text)
        if values is None:
            notes.append(f"report line {number}: cannot read {label!r}: {_excerpt(text)}")
            continue
        for name, value in zip(names, values, strict=True):
            if value is not None:
                fields.setdefault(name, value)  # the first report wins over a repeated line
    return _single(fields, "no statisticsReport line such as uptime, memory or GCs")


_HOME_SECTIONS = {
    **dict.fromkeys(("old", "young", "used", "free"), "memory"),
    **dict.fromkeys(("full", "incr", "tenures", "root table"), "gcs"),
    **dict.fromkeys(("m-cache", "i-cache"), "sends"),
}
"""Where a label belongs when it shows up outside a block that has it."""


def _report_names(section: str, label: str) -> tuple[str, tuple[str, ...]]:
    """The block after this line, and the fields its label gives there."""
    if label in _SECTIONS:
        return label, REPORT_FIELDS["", label]
    if label == "uptime" and section != "since last view":
        return "", REPORT_FIELDS["", "uptime"]
    names = REPORT_FIELDS.get((section, label))
    return section, names or REPORT_FIELDS[_HOME_SECTIONS[label], label]


def _report_values(section: str, label: str, text: str) -> tuple[int | None, ...] | None:
    """The numbers of one report line (None for an optional part), or None if unreadable."""
    if label == "uptime":
        return _uptime_ms(text)
    pattern = _COUNT if (section, label) == ("sends", "full") else _VALUE_PATTERNS[label]
    match = pattern.match(text)
    if match is None:
        return None
    values: list[int | None] = []
    for group in match.groups():
        value = None if group is None else _count(group)  # None: an optional part left out
        if group is not None and value is None:
            return None
        values.append(value)
    return tuple(values)


def _count(text: str) -> int | None:
    """A report number (``147,988,480``); None beyond int64, where no VM count can be."""
    value = int64_or_float(text.replace(",", ""))
    return value if isinstance(value, int) else None


def _uptime_ms(text: str) -> tuple[int] | None:
    hms = _HMS.match(text)
    if hms:
        hours, minutes, seconds = (_count(g) for g in hms.groups())
        if hours is None or minutes is None or seconds is None:
            return None
        ms = ((hours * 60 + minutes) * 60 + seconds) * 1000
        return (ms,) if ms <= INT64_MAX else None
    seconds_only = _SECONDS.match(text)
    if seconds_only:
        ms_float = float(seconds_only[1]) * 1000
        # round() raises on infinity: an absurd uptime is an unreadable line, not a crash.
        return (round(ms_float),) if ms_float < INT64_MAX else None
    return None


# --- auto and messages -----------------------------------------------------------------

_PARSERS: dict[str, Callable[[str, Notes], list[Sample]]] = {
    "influx": _parse_influx,
    "json": _parse_json,
    "labels": _parse_labels,
    "parameters": _parse_parameters,
    "report": _parse_report,
}

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_START = re.compile(r"\s*(?:<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _describe(content_type: str, text: str) -> str:
    """The Content-Type, and the title of an HTML page (error pages say what went wrong)."""
    parts = [f"Content-Type {content_type!r}" if content_type else "no Content-Type"]
    if _HTML_START.match(text[:1024].removeprefix("\ufeff")) or "html" in content_type.lower():
        title = _TITLE.search(text[:8192])
        parts.append(f"an HTML page titled {_excerpt(title[1])}" if title else "an HTML page")
    return ", ".join(parts)


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _shorten(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n\u2028\u2029\x85]+", " ", text)
