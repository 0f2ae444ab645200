"""How a field is named in the Prometheus format: Prometheus's conventions, or Telegraf's.

``naming = "prometheus"`` (the default) follows Prometheus's naming guide, from
the `catalog`'s units and meanings:

* snake_case: ``pharo`` ``fullGCTime`` is ``pharo_full_gc_time...``; label
  names too;
* base units, named at the end: times in seconds (``_seconds``, converted
  from ms, µs and ns), sizes in ``_bytes``, shares as ``_ratio`` (percentages
  divided by 100), points in time as ``_timestamp_seconds`` since the Unix
  epoch (Pharo's start time counts from 1901);
* ``_total`` on counters, and never on anything else; a gauge never ends in
  ``_count``, ``_sum`` or ``_bucket`` (those belong to histograms);
* a HELP text saying what the figure is, in which unit, and which
  line-protocol field it is.

``naming = "telegraf"`` writes what Telegraf's ``outputs.prometheus_client``
writes for the same lines: ``<measurement>_<field>`` as is, values unconverted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from telemon.catalog import UNDECLARED, Catalog, FieldInfo, is_counter

__all__ = ["Family", "Naming", "PrometheusNames", "label_name", "metric_name", "snake_case"]

Naming = Literal["prometheus", "telegraf"]

_log = logging.getLogger(__name__)

NAMES_KEPT = 20_000
"""(measurement, field) names remembered (as the encoder's caches stop)."""

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_PLURAL_ACRONYM = re.compile(r"([A-Z]{2,})s(?![a-z])")  # GCs: one word, not G + Cs
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_REPEATED = re.compile(r"__+")
# Unit words some field names end with (Prometheus wants the base unit named once).
_UNIT_WORDS = re.compile(
    r"_(ms|us|ns|s|sec|secs|seconds|microseconds|milliseconds|nanoseconds|percent|pct)$"
    r"|(?<=_)(ms|us|ns)_"  # msBetweenGCs: the time between GCs
)
UNIX_FROM_1901_S = 2_177_452_800
"""Seconds from 1901-01-01 (the Smalltalk epoch of Pharo's parameter 20) to 1970-01-01."""


@dataclass(frozen=True, slots=True)
class _Conversion:
    suffix: str
    divisor: int = 1
    offset: int = 0
    unit: str = ""  # in HELP texts


_CONVERSIONS = {
    "ms": _Conversion("seconds", 1000, unit="seconds"),
    "ms clock": _Conversion("seconds", 1000, unit="seconds of the VM's clock"),
    "µs": _Conversion("seconds", 1_000_000, unit="seconds"),
    "ns": _Conversion("seconds", 1_000_000_000, unit="seconds"),
    "s": _Conversion("seconds", unit="seconds"),
    "bytes": _Conversion("bytes", unit="bytes"),
    "%": _Conversion("ratio", 100, unit="a ratio (1 is 100 %)"),
    "ratio": _Conversion("ratio"),
    "ns since the epoch": _Conversion(
        "timestamp_seconds", 1_000_000_000, unit="seconds since the Unix epoch"
    ),
    "µs since 1901": _Conversion(
        "timestamp_seconds", 1_000_000, -UNIX_FROM_1901_S, "seconds since the Unix epoch"
    ),
}
_AS_IS = _Conversion("")
_UNSAID = frozenset({"", "-", "count", "ratio", "1 or 0", "id", "code"})  # in HELP texts


@dataclass(frozen=True, slots=True)
class Family:
    """A field's sample name, its ``# HELP``/``# TYPE`` lines, and how its values convert."""

    name: str
    help: str
    kind: str
    divisor: int = 1
    offset: int = 0
    header: str = field(init=False)

    def __post_init__(self) -> None:
        header = f"# HELP {self.name} {self.help.translate(_HELP_ESCAPES)}\n"
        object.__setattr__(self, "header", f"{header}# TYPE {self.name} {self.kind}\n")

    def convert(self, value: int | float) -> int | float:
        """`value` in the sample's unit."""
        if self.divisor == 1 and not self.offset:
            return value
        return value / self.divisor + self.offset


def snake_case(name: str) -> str:
    """``fullGCTime`` -> ``full_gc_time``; ``sinceLastView_fullGCs`` ->
    ``since_last_view_full_gcs``."""
    name = _PLURAL_ACRONYM.sub(lambda match: match[1].capitalize() + "s", name)
    return _WORD_START.sub("_", name).lower()


def _sanitize(name: str, invalid: re.Pattern[str]) -> str:
    name = invalid.sub("_", name).strip("_")
    return "_" + name if name[:1].isdigit() else name


def metric_name(measurement: str, field_name: str) -> str:
    """Telegraf's ``<measurement>_<field>`` (``value``: the measurement), sanitized; "" if
    nothing is left."""
    raw = measurement if field_name == "value" else f"{measurement}_{field_name}"
    return _sanitize(raw, _INVALID_NAME)


def label_name(key: str, naming: Naming = "telegraf") -> str:
    """A tag key as a label name; "" if nothing is left."""
    if naming == "telegraf":
        return _sanitize(key, _INVALID_LABEL)
    return _REPEATED.sub("_", _sanitize(snake_case(key), _INVALID_LABEL))


class PrometheusNames:
    """Names, headers and conversions of fields, for one catalog and naming (remembered)."""

    def __init__(self, catalog: Catalog | None = None, naming: Naming = "prometheus") -> None:
        self.catalog = catalog or Catalog({})
        self.naming = naming
        self._families: dict[tuple[str, str], Family] = {}
        self._owners: dict[str, tuple[str, str]] = {}
        self._labels: dict[str, str] = {}
        self._clashes: set[tuple[str, str]] = set()

    def family(self, measurement: str, field_name: str) -> Family:
        """The family `field_name` of `measurement` belongs to (name "" if nothing is left)."""
        key = (measurement, field_name)
        found = self._families.get(key)
        if found is None:
            if len(self._families) >= NAMES_KEPT:
                self._families.clear()
                self._owners.clear()
            found = self._families[key] = self._claim(self._new_family(*key), key)
        return found

    def note_label_clash(self, key: str, numbered: str, name: str) -> None:
        """Log once that tag `key` is served as label `numbered`, `name` being taken."""
        if (key, numbered) not in self._clashes:
            if len(self._clashes) >= NAMES_KEPT:
                self._clashes.clear()
            self._clashes.add((key, numbered))
            _log.warning("tag %s is served as label %s: %s is another tag's", key, numbered, name)

    def _claim(self, family: Family, key: tuple[str, str]) -> Family:
        """`family`, or a numbered name when another field took its name first (``fooBar``
        and ``foo_bar``, or ``requests`` and a gauge ``requests_total``, would otherwise
        serve one sample and lose the other's value)."""
        if self.naming == "telegraf":
            return family  # as Telegraf: one name, the last value
        if not family.name or self._owners.setdefault(family.name, key) == key:
            return family
        stem, total = family.name, ""
        if family.kind == "counter":
            stem, total = stem.removesuffix("_total"), "_total"
        number = 2
        while f"{stem}_{number}{total}" in self._owners:
            number += 1
        name = f"{stem}_{number}{total}"
        self._owners[name] = key
        taken = self._owners[family.name]
        _log.warning(
            "Prometheus name %s of measurement %s field %s is taken by field %s of %s;"
            " served as %s",
            family.name, key[0], key[1], taken[1], taken[0], name,
        )  # fmt: skip
        return replace(family, name=name)

    def label(self, key: str) -> str:
        """A tag key's label name (remembered: few keys recur)."""
        found = self._labels.get(key)
        if found is None:
            if len(self._labels) >= NAMES_KEPT:
                self._labels.clear()
            found = self._labels[key] = label_name(key, self.naming)
        return found

    def _new_family(self, measurement: str, field_name: str) -> Family:
        info = self.catalog.info(measurement, field_name)
        counter = info.counter if info is not UNDECLARED else is_counter(measurement, field_name)
        kind = "counter" if counter else "gauge"
        if self.naming == "telegraf":
            name = metric_name(measurement, field_name)
            help_text = (
                _help(measurement, field_name, info, _AS_IS)
                if info.meaning
                else f"telemon metric {measurement} field {field_name}"
            )
            return Family(name, help_text, kind)
        conversion = _CONVERSIONS.get(info.unit, _AS_IS)
        name = _prometheus_name(measurement, field_name, conversion.suffix, counter)
        help_text = _help(measurement, field_name, info, conversion)
        return Family(name, help_text, kind, conversion.divisor, conversion.offset)


def _prometheus_name(measurement: str, field_name: str, suffix: str, counter: bool) -> str:
    raw = measurement if field_name == "value" else f"{measurement}_{snake_case(field_name)}"
    name = _REPEATED.sub("_", _sanitize(snake_case(raw), _INVALID_NAME))
    if not name:
        return ""
    name = name.removesuffix("_total")
    if suffix:
        name = _UNIT_WORDS.sub("", name)
        if f"_{suffix}_" not in f"{name}_":  # bytesAllocated: bytes named once
            name = f"{name}_{suffix}"
    if counter:
        return name + "_total"
    # Histograms' and summaries' suffixes: a gauge of a count is named by its plural.
    if name.endswith("_count"):
        name = name.removesuffix("_count")
        return name if name.endswith("s") else name + "s"
    if name.endswith(("_sum", "_bucket")):
        return name + "_value"
    return name


def _help(measurement: str, field_name: str, info: FieldInfo, conversion: _Conversion) -> str:
    meaning = info.meaning or "no meaning declared"
    unit = conversion.unit or ("" if info.unit in _UNSAID else info.unit)
    in_unit = f", in {unit}" if unit else ""
    source = f"line protocol: {measurement} {field_name}"
    return f"{meaning[:1].upper()}{meaning[1:]}{in_unit} ({source})"
