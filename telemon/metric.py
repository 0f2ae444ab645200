"""The value type every input produces and the encoder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FieldValue", "Metric"]

FieldValue = bool | int | float | str
"""What a field may hold; anything else is dropped by the encoder."""


@dataclass(slots=True, init=False)
class Metric:
    """One line of line protocol before it is encoded.

    >>> Metric("pharo", {"host": "a"}, {"uptime": 12}, time_ns=0)
    Metric(measurement='pharo', tags={'host': 'a'}, fields={'uptime': 12}, time_ns=0)
    """

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    time_ns: int | None = None

    def __init__(
        self,
        measurement: str,
        tags: dict[str, str] | None = None,
        fields: dict[str, FieldValue] | None = None,
        time_ns: int | None = None,
    ) -> None:
        # Written out: the generated __init__ tests each default against a sentinel,
        # and every input builds a Metric per line.
        self.measurement = measurement
        self.tags = {} if tags is None else tags
        self.fields = {} if fields is None else fields
        self.time_ns = time_ns
