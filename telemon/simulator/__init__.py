"""A Pharo VM simulator: images serving their VM statistics over HTTP.

For tests, benchmarks, the demo and docker-compose. `vm` is the pure model
(a Spur VM, or a classic one with ``vm="classic"``), `render` every format
an image serves, `faults` the misbehaviour and `app` the aiohttp side::

    runner, port = await start_simulator("127.0.0.1", 0, vms=10, seed=1)
    ...  # GET http://127.0.0.1:{port}/7/stats.json
    await runner.cleanup()

Conditions (`conditions`) make a VM ill for as long as a test wants, so
that alerts have something to fire on: ``create_simulator_app(condition=...)``
or ``telemon simulate --condition NAME`` for every VM from the start,
``POST /<n>/condition?condition=NAME`` (``/condition`` for VM 0; or NAME as
the body) for one VM from now on, ``GET`` of that path to read it back:

- ``healthy`` (the default): full GCs every 2-30 minutes, GC about 1 % of the
  time, old space growing and shrinking around a steady live size.
- ``leak``: the live data grows by 1 MiB/s (60 MiB a minute, each second
  within +-20 %), so the used memory after each full GC keeps rising; full
  GCs every 2-3 s (20-26 a minute), each freeing little; from the first
  (within seconds) the heap grows with the leak, keeping only 3 MiB free
  after a full GC, so used/heap approaches 1. GC takes 3-14 % of the time.
- ``gc_storm``: a full GC every 0.4-0.8 s (about 100 a minute), GC taking
  55-75 % (about 65 %) of the time; memory stays as healthy.
- ``down``: every data request for the VM answers 503 (a target down); the
  VM runs on, so after ``healthy`` its counters carry on.

Switching conditions never sets a counter back; only a restart does (and a
restarted VM keeps its condition).
"""

from __future__ import annotations

from telemon.simulator.app import (
    ENDPOINTS,
    SIMULATOR_KEY,
    Fleet,
    Simulator,
    create_simulator_app,
    run_simulator,
    start_simulator,
)
from telemon.simulator.conditions import CONDITIONS, Condition
from telemon.simulator.faults import FAULTS
from telemon.simulator.render import FORMATS
from telemon.simulator.snapshot import (
    LEGACY_PARAMETER_COUNT,
    MODERN_PARAMETER_COUNT,
    VM_KINDS,
    Param,
    VMKind,
    VMSnapshot,
)
from telemon.simulator.vm import SimulatedVM

__all__ = [
    "CONDITIONS",
    "ENDPOINTS",
    "FAULTS",
    "FORMATS",
    "LEGACY_PARAMETER_COUNT",
    "MODERN_PARAMETER_COUNT",
    "SIMULATOR_KEY",
    "Condition",
    "Fleet",
    "Param",
    "VM_KINDS",
    "SimulatedVM",
    "Simulator",
    "VMKind",
    "VMSnapshot",
    "create_simulator_app",
    "run_simulator",
    "start_simulator",
]
