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

__all__ = ["PythonConfig", "PythonTarget", "python_fields"]

_STARTED_NS = time.monotonic_ns()


class PythonConfig(InputConfig):
    """`count_objects` walks the heap (a few ms for a large one)."""

    measurement: MeasurementName = "python"
    count_objects: bool = True

    def build(self, context: InputContext) -> list[Target]:
        """One target: this interpreter."""
        return [PythonTarget(self)]


def python_fields(count_objects: bool = True) -> dict[str, FieldValue]:
    """Figures of the running interpreter; call it from the event loop thread."""
    fields: dict[str, FieldValue] = {}
    for generation, stats in enumerate(gc.get_stats()):
        fields[f"gc_collections_{generation}"] = stats["collections"]
        fields[f"gc_collected_{generation}"] = stats["collected"]
        fields[f"gc_uncollectable_{generation}"] = stats["uncollectable"]
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
