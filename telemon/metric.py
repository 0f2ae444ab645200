"""The value type every input produces and the encoder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FieldValue", "Metric"]

FieldValue = bool | int | float | str
"""What a field may hold; anything else is dropped by the encoder."""


@dataclass(slots=True)
class Metric:
    """One line of line protocol before it is encoded.

    >>> Metric("pharo", {"host": "a"}, {"uptime": 12}, time_ns=0)
    Metric(measurement='pharo', tags={'host': 'a'}, fields={'uptime': 12}, time_ns=0)
    """

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    time_ns: int | None = None
