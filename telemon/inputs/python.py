"""`[[inputs.python]]`: the Python VM telemon runs in.

The Python counterpart of Telemon's default Pharo VM fields: garbage
collections per generation, tracked objects, threads, asyncio tasks, uptime.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import threading
import time

from telemon.inputs.base import InputConfig, InputContext, Target
from telemon.metric import FieldValue, Metric
from telemon.schema import MeasurementName

__all__ = [
    "COUNTER_FIELDS",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "PythonConfig",
    "PythonTarget",
    "python_fields",
]

_STARTED_NS = time.monotonic_ns()
# What `gc.get_stats()` reports per generation; CPython has three generations.
_GC_STATS = ("collections", "collected", "uncollectable")
_GC_GENERATIONS = range(3)


class PythonConfig(InputConfig):
    """`count_objects` walks the heap (a few ms for a large one)."""

    measurement: MeasurementName = "python"
    count_objects: bool = True

    def build(self, context: InputContext) -> list[Target]:
        """One target: this interpreter."""
        return [PythonTarget(self)]

    def field_types(self) -> dict[str, dict[str, str]]:
        """Every field is a count (uptime in ms): integers."""
        names = [f"gc_{stat}_{n}" for stat in _GC_STATS for n in _GC_GENERATIONS]
        names += ["threads", "asyncio_tasks", "uptime"]
        if self.count_objects:
            names.append("objects_tracked")
        return {self.measurement: dict.fromkeys(names, "i")}


def python_fields(count_objects: bool = True) -> dict[str, FieldValue]:
    """Figures of the running interpreter; call it from the event loop thread."""
    fields: dict[str, FieldValue] = {}
    for generation, stats in enumerate(gc.get_stats()):
        for stat in _GC_STATS:
            fields[f"gc_{stat}_{generation}"] = stats[stat]
    if count_objects:
        fields["objects_tracked"] = len(gc.get_objects())
    fields["threads"] = threading.active_count()
    try:
        fields["asyncio_tasks"] = len(asyncio.all_tasks())
    except RuntimeError:
        pass  # no running loop (e.g. called from a plain script)
    fields["uptime"] = (time.monotonic_ns() - _STARTED_NS) // 1_000_000
    return fields


class PythonTarget(Target):
    """Collects one `python` line."""

    def __init__(self, config: PythonConfig) -> None:
        super().__init__("self")
        self.config = config
        self._tags = {
            "implementation": platform.python_implementation().lower(),
            "python_version": platform.python_version(),
        }

    async def collect(self, now_ns: int) -> list[Metric]:
        """The interpreter's figures now."""
        fields = python_fields(self.config.count_objects)
        return [Metric(self.config.measurement, dict(self._tags), fields, now_ns)]


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## The Python VM telemon runs in: garbage collections per generation, tracked
## objects, threads, asyncio tasks, uptime.
[[inputs.python]]
  ## Collection interval and timeout of this table (default: the agent's).
  # interval = "10s"
  # timeout = "5s"

  ## Measurement name.
  # measurement = "python"

  ## Count the objects tracked by the garbage collector (walks the heap:
  ## a few milliseconds for a large one).
  # count_objects = true

  ## Tags added to this table's lines.
  # [inputs.python.tags]
  #   role = "exporter"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = """**`[[inputs.python]]`** - the Python VM telemon runs in, the counterpart of
Telemon's default Pharo VM fields. Measurement `python` (`measurement`
renames it), tags
`implementation` and `python_version`; fields `gc_collections_N`,
`gc_collected_N`, `gc_uncollectable_N` per generation, `objects_tracked`
(off with `count_objects = false`), `threads`, `asyncio_tasks`, `uptime` (ms).
"""
"""This input's part of the README's input reference (markdown)."""

COUNTER_FIELDS: tuple[str, ...] = (r"gc_(collections|collected|uncollectable)_\d+",)
"""Patterns of this input's cumulative field names (in any measurement: it can be renamed)."""
