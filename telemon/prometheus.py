"""The Prometheus text exposition format (0.0.4).

Pure: no I/O, no clock. `render_prometheus` turns `Metric`s into one body:

* Names, HELP texts and unit conversions are `promnames`' (Prometheus's
  conventions from the `catalog`, or Telegraf's ``<measurement>_<field>``).
  Names and label names keep ``[a-zA-Z0-9_]`` (and ``:`` in metric names);
  every other character becomes ``_``, ``_`` is trimmed at both ends (as
  Telegraf does, which also keeps the reserved ``__`` prefix out), and a name
  starting with a digit gets a leading ``_``.
* Tags are labels; empty tag values are left out (Prometheus reads an empty
  label as no label). Bools are 1/0; ints are written exactly; floats by
  repr; NaN and infinities are left out; string fields are left out, or with
  `string_as_label` become labels of every sample of their metric.
* Each name gets ``# HELP`` and ``# TYPE`` once, before its samples, which are
  contiguous; a name + label set seen twice keeps the last value.
* `COUNTERS` (in `catalog`) says which fields are cumulative (``counter``);
  the rest are ``gauge``.

`render_steps` gives the bytes in steps (a generator: the caller lets others
run between two steps), from each metric's sample text prepared once and kept
in a `SampleCache` while the metric is served again: a scrape of a large store
that did not change joins prepared text.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from telemon.catalog import COUNTERS, is_counter
from telemon.metric import FieldValue, Metric
from telemon.promnames import PrometheusNames, label_name, metric_name

__all__ = [
    "CONTENT_TYPE",
    "COUNTERS",
    "PrometheusNames",
    "SampleCache",
    "is_counter",
    "label_name",
    "metric_name",
    "render_prometheus",
    "render_steps",
    "wants_prometheus",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What Prometheus and Telegraf's inputs.prometheus expect for the text format."""

_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_OPENMETRICS = "application/openmetrics-text"

Labels = tuple[tuple[str, str], ...]


def format_value(value: FieldValue) -> str | None:
    """The sample value text, or None for what Prometheus should not see (strings, NaN, Inf)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def render_prometheus(
    metrics: Sequence[Metric],
    *,
    timestamps: bool = False,
    string_as_label: bool = False,
    names: PrometheusNames | None = None,
) -> bytes:
    """The Prometheus text format for `metrics`; timestamps (ms) only when asked."""
    steps = render_steps(
        metrics, timestamps=timestamps, string_as_label=string_as_label, names=names
    )
    while True:
        try:
            next(steps)
        except StopIteration as done:
            body: bytes = done.value
            return body


def _labels(metric: Metric, string_as_label: bool, names: PrometheusNames) -> Labels:
    """Sorted label pairs; a label name seen twice keeps the first value (tag keys sorted)."""
    pairs = sorted(metric.tags.items())
    if string_as_label:
        # As Telegraf: string fields come after the tags and win over them.
        strings = sorted((k, v) for k, v in metric.fields.items() if isinstance(v, str))
        pairs = strings + pairs
    labels: dict[str, str] = {}
    for key, value in pairs:
        name = names.label(key)
        if not name or not value:
            continue
        if name not in labels:
            labels[name] = value
        elif names.naming == "prometheus":  # Telegraf's naming keeps the first
            labels = _numbered_labels(pairs, names)
            break
    return tuple(sorted(labels.items()))


def _numbered_labels(pairs: list[tuple[str, str]], names: PrometheusNames) -> dict[str, str]:
    """The labels when two keys give one name (``containerName`` and ``container_name``):
    a key that is its label name as it is keeps it (telemon's own tags do), the others
    get numbered names, so no value is lost."""
    labels: dict[str, str] = {}
    others: list[tuple[str, str, str]] = []
    for key, value in pairs:
        name = names.label(key)
        if not name or not value:
            continue
        if key == name and name not in labels:
            labels[name] = value
        else:
            others.append((key, name, value))
    for key, name, value in others:
        numbered, number = name, 2
        while numbered in labels:
            numbered, number = f"{name}_{number}", number + 1
        if numbered != name:
            names.note_label_clash(key, numbered, name)
        labels[numbered] = value
    return labels


# --- in steps, from prepared samples ------------------------------------------------------

Prepared = tuple[int, int, int | None, str, tuple[str, ...]]
"""A metric's samples: the ids of its tags and fields and its time as prepared, its
labels' text (``{...}`` or nothing), then for each sample in field order, flat: its
name, its value text and newline, its name's HELP and TYPE lines (names and headers
shared between metrics, the labels between samples). Tuples of numbers and strings: the
garbage collector stops tracking them, so a large store's prepared samples do not
lengthen its full collections (one took 380 ms at 100k series with an object per
metric)."""

_DEFAULT_NAMES = PrometheusNames()


@dataclass
class SampleCache:
    """Prepared samples of the metrics of the last complete rendering, by identity.

    Metrics handed to a scrape are snapshots nobody changes (the sink builds a
    new one when its series changes, a poll builds new ones): a metric met
    again with the same tags and fields objects and time is served as prepared.
    `held` keeps those metrics, tags and fields alive, so that no other object
    takes their ids. Holds one rendering's metrics; the options and names they were
    prepared with.
    """

    options: tuple[bool, bool, PrometheusNames | None] = (False, False, None)
    samples: dict[int, Prepared] = field(default_factory=dict)
    held: list[object] = field(default_factory=list)


def render_steps(
    metrics: Sequence[Metric],
    *,
    timestamps: bool = False,
    string_as_label: bool = False,
    cache: SampleCache | None = None,
    step: int = 1000,
    names: PrometheusNames | None = None,
) -> Generator[None, None, bytes]:
    """`render_prometheus`'s bytes, yielding after about every `step` samples.

    Metrics met in `cache` are not prepared again; once done, `cache` holds
    this rendering's metrics (an abandoned rendering leaves it as it was).
    """
    cache = cache if cache is not None else SampleCache()
    names = names or _DEFAULT_NAMES
    options = (timestamps, string_as_label, names)
    old = cache.samples if cache.options == options else {}
    prepared: dict[int, Prepared] = {}
    held: list[object] = []
    families: dict[str, dict[str, str]] = {}
    headers: dict[str, str] = {}
    done = 0
    for metric in metrics:
        entry = old.get(id(metric))
        if entry is None or not _same(entry, metric):
            entry = _prepare(metric, timestamps, string_as_label, names)
        if prepared.setdefault(id(metric), entry) is entry:
            held += (metric, metric.tags, metric.fields)
        braced, texts = entry[3], iter(entry[4])
        for name, value, header in zip(texts, texts, texts, strict=True):
            samples = families.get(name)
            if samples is None:
                samples = families[name] = {}
                headers[name] = header
            samples[braced] = value
        done += len(entry[4]) // 3 + 1
        if done >= step:
            done = 0
            yield
    chunks: list[bytes] = []
    parts: list[str] = []
    for name, samples in families.items():
        parts.append(headers[name])
        for braced, value in samples.items():
            parts += (name, braced, value)
            if len(parts) >= 3 * step:
                chunks.append("".join(parts).encode("utf-8", "replace"))
                parts.clear()
                yield
    chunks.append("".join(parts).encode("utf-8", "replace"))
    cache.options, cache.samples, cache.held = options, prepared, held
    return b"".join(chunks)


def _same(entry: Prepared, metric: Metric) -> bool:
    """Whether `entry` was prepared from `metric` as it is (held: ids are still theirs)."""
    return (
        entry[0] == id(metric.tags) and entry[1] == id(metric.fields) and entry[2] == metric.time_ns
    )


def _prepare(
    metric: Metric, timestamps: bool, string_as_label: bool, names: PrometheusNames
) -> Prepared:
    """`metric`'s samples as `render_prometheus` writes them."""
    labels = _labels(metric, string_as_label, names)
    inner = ",".join(f'{k}="{v.translate(_LABEL_ESCAPES)}"' for k, v in labels)
    braced = "{" + inner + "}" if labels else ""
    time_ms = metric.time_ns // 1_000_000 if timestamps and metric.time_ns is not None else None
    suffix = f" {time_ms}\n" if time_ms is not None else "\n"
    samples: list[str] = []
    for key, value in metric.fields.items():
        if isinstance(value, str):
            continue
        family = names.family(metric.measurement, key)
        if not family.name:
            continue
        if (family.divisor != 1 or family.offset) and not isinstance(value, bool):
            value = family.convert(value)
        text = format_value(value)
        if text is not None:
            samples += (family.name, f" {text}{suffix}", family.header)
    return id(metric.tags), id(metric.fields), metric.time_ns, braced, tuple(samples)


def wants_prometheus(format_param: str | None, accept: str | None) -> bool:
    """True for ``?format=prometheus``, or an Accept listing the 0.0.4 text or OpenMetrics.

    ``?format=influx`` forces line protocol; no Accept, ``*/*`` and anything else
    keep line protocol. Raises ValueError for an unknown ``format``.
    """
    if format_param is not None:
        if format_param not in ("influx", "prometheus"):
            raise ValueError(f"unknown format {format_param!r}: use influx or prometheus")
        return format_param == "prometheus"
    return any(_is_prometheus_range(item) for item in (accept or "").split(","))


def _is_prometheus_range(media_range: str) -> bool:
    """A media range naming the Prometheus text format (or OpenMetrics) with q > 0."""
    media_type, *raw_params = (part.strip() for part in media_range.split(";"))
    params = {}
    for param in raw_params:
        key, _, value = param.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    if _quality(params.get("q", "1")) <= 0:
        return False
    media_type = media_type.lower()
    return media_type == _OPENMETRICS or (
        media_type == "text/plain" and params.get("version") == "0.0.4"
    )


def _quality(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
