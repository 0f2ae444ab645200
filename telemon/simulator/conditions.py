"""What ails a simulated VM: the conditions a test switches at runtime, and their rates.

- ``healthy``: the default; full GCs every 2-30 minutes, GC about 1 % of the time.
- ``leak``: live data grows by `LEAK_BYTES_PER_S` (60 MiB a minute). Full
  GCs come every 2-3 s (20-26 a minute), each freeing little: used memory
  just after each full GC keeps rising. The first one (within seconds of
  the switch) sizes old space to the live data; from then on the heap grows
  with it only by what it must (`LEAK_HEADROOM` stays free), so the used
  share of the heap approaches 1. GC takes 3-14 % of the time (at most
  `LEAK_MAX_GC_SHARE`, hours into a leak).
- ``gc_storm``: a full GC every `GC_STORM_PERIOD_S` (0.4-0.8 s, about 100 a
  minute), taking `GC_STORM_SHARE` (55-75 %) of the time.
- ``down``: the VM runs on, healthy, but every data request for it answers
  503 (the HTTP side, `app`): a target down, then back when the condition
  is lifted (no restart: counters carry on).

Switching keeps every counter monotonic; only a restart starts them over.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CONDITIONS",
    "DOWN",
    "GC_STORM",
    "GC_STORM_PERIOD_S",
    "GC_STORM_SHARE",
    "HEALTHY",
    "LEAK",
    "LEAK_BYTES_PER_S",
    "LEAK_CHURN_BYTES_PER_S",
    "LEAK_FLOATING",
    "LEAK_HEADROOM",
    "LEAK_MAX_GC_SHARE",
    "Condition",
    "parse_condition",
]

MIB = 1024 * 1024

Condition = Literal["healthy", "leak", "gc_storm", "down"]
HEALTHY: Condition = "healthy"
LEAK: Condition = "leak"
GC_STORM: Condition = "gc_storm"
DOWN: Condition = "down"
CONDITIONS: tuple[Condition, ...] = (HEALTHY, LEAK, GC_STORM, DOWN)

LEAK_BYTES_PER_S = 1 * MIB
"""Live data a leaking VM gains a second (each step within +-20 %): 60 MiB a minute."""
LEAK_CHURN_BYTES_PER_S = MIB // 4
"""Short-lived data it tenures besides: what its full GCs still free."""
LEAK_HEADROOM = 3 * MIB
"""Free old space a leaking VM has after a full GC: its heap grows by what the leak took."""
LEAK_FLOATING = 256 * 1024
"""At most this much garbage survives a leaking VM's full GC: small beside a period's leak."""
LEAK_MAX_GC_SHARE = 0.4
"""A leaking VM's full GC takes at most this share of the time since the previous one
(a leak of an hour or more: its heap is gigabytes)."""
GC_STORM_PERIOD_S = (0.4, 0.8)
"""Seconds between two full GCs of a storm (uniform)."""
GC_STORM_SHARE = (0.55, 0.75)
"""Share of the time between two storm full GCs that the second one takes (uniform)."""


def parse_condition(text: str) -> Condition:
    """`text` as a condition; ValueError with a one-line reason otherwise."""
    name = text.strip().lower()
    for condition in CONDITIONS:
        if condition == name:
            return condition
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise ValueError(f"unknown condition {shown!r}; one of {', '.join(CONDITIONS)}")
