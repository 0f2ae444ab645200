"""What tests/test_grafana.py (InfluxQL) and tests/test_grafana_prometheus.py (PromQL)
share: walking a dashboard model, and the data both fill their stores with (application
figures for `[[inputs.fields]]`, a Pharo image and a busy container on a real dockerd)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "APP_FIELDS",
    "PHARO_CONTAINER_SCRIPT",
    "PHARO_LABELS",
    "WORKER_SCRIPT",
    "datasource_refs",
    "entity_count",
    "entity_memory",
    "panels_of",
]


def panels_of(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_refs(node: Any) -> Iterator[Any]:
    """Every value of a "datasource" key anywhere in the model."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


_entities: list[int] = []


def entity_count() -> int:
    """An application figure for `[[inputs.fields]]` (the seed's "zEntity Count")."""
    _entities.append(len(_entities))
    return len(_entities)


def entity_memory() -> int:
    """Another one (the seed's "zEntity Memory"), in bytes."""
    return 4096 * len(_entities) + 65536


APP_FIELDS = {"entities": f"{__name__}:entity_count", "entityMemory": f"{__name__}:entity_memory"}
"""`[[inputs.fields]]` fields calling the two figures above."""

# A stand-in for a Pharo image in a container: busybox httpd serving Telemon's
# line (its own host tag, as the Telemon package writes it: it replaces telemon's; no
# types, no timestamp), its counters rising five times a second.
PHARO_CONTAINER_SCRIPT = r"""busybox mkdir -p /www
httpd -p 8079 -h /www
n=0
while true; do
  n=$((n+1))
  echo "pharo,host=pharo-0 uptime=$((n*200)),oldSpace=$((120000000+n*4096)),youngSpace=2400000,\
memory=$((130000000+n*4096)),memoryFree=$((20000000-n*1024)),fullGCs=$((n/10)),\
fullGCTime=$((n*4)),incrGCs=$((n*3)),incrGCTime=$((n*2)),tenureCount=$((n*50))" > /www/m.tmp
  busybox mv /www/m.tmp /www/metrics
  sleep 0.2
done"""
PHARO_LABELS = {
    "telemon.pharo.port": "8079",
    "telemon.pharo.path": "/metrics",
    "telemon.pharo.format": "influx",
}
# Reads and writes, so the block I/O panel has more than zeros to show.
WORKER_SCRIPT = (
    "while true; do dd if=/dev/zero of=/blob bs=64k count=16 conv=fsync 2>/dev/null; "
    "cat /blob > /dev/null; sleep 0.1; done"
)
