"""A Pharo VM simulator: images serving their VM statistics over HTTP.

For tests, benchmarks, the demo and docker-compose. `vm` is the pure model
(a Spur VM, or a classic one with ``vm="classic"``), `render` every format
an image serves, `faults` the misbehaviour and `app` the aiohttp side::

    runner, port = await start_simulator("127.0.0.1", 0, vms=10, seed=1)
    ...  # GET http://127.0.0.1:{port}/7/stats.json
    await runner.cleanup()
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
    "ENDPOINTS",
    "FAULTS",
    "FORMATS",
    "LEGACY_PARAMETER_COUNT",
    "MODERN_PARAMETER_COUNT",
    "SIMULATOR_KEY",
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
