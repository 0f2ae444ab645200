"""`[[inputs.fields]]`: user-defined fields, evaluated at every scrape.

    [[inputs.fields]]
      measurement = "app"
      [inputs.fields.tags]
        service = "blog"
      [inputs.fields.fields]
        sessions = "myapp.metrics:session_count"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator

from telemon.inputs.base import InputConfig, InputContext, Target
from telemon.lazy import Telemon
from telemon.metric import Metric
from telemon.schema import FieldName, MeasurementName

__all__ = [
    "COUNTER_FIELDS",
    "REFERENCE",
    "SAMPLE_CONFIG",
    "FieldsConfig",
    "FieldsTarget",
    "resolve_callable",
]


def resolve_callable(path: Any) -> Callable[[], Any]:
    """The callable named by `"package.module:attribute"`."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"expected \"package.module:callable\", got {path!r}")
    module_name, attribute = path.split(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time error is a config error
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


ImportedCallable = Annotated[Callable[[], Any], BeforeValidator(resolve_callable)]


class FieldsConfig(InputConfig):
    """A measurement whose field values come from the named callables."""

    measurement: MeasurementName
    fields: dict[FieldName, ImportedCallable]

    def build(self, context: InputContext) -> list[Target]:
        """One lazy target evaluating every field at each scrape."""
        telemon = Telemon(self.measurement, fields=dict(self.fields), timeout=context.field_timeout)
        return [FieldsTarget(telemon)]


class FieldsTarget(Target):
    """Adapts a `Telemon` to the target interface; also used for embedding."""

    lazy = True

    def __init__(self, telemon: Telemon) -> None:
        super().__init__(telemon.measurement)
        self.telemon = telemon

    @property
    def partial_errors(self) -> int:
        """Field evaluations that failed (each left out of its render)."""
        return self.telemon.errors

    @property
    def last_partial_error(self) -> str | None:
        """Why the latest field evaluation failed."""
        return self.telemon.last_error

    async def collect(self, now_ns: int) -> list[Metric]:
        """The fields evaluated now; failing fields are left out (and counted)."""
        return [await self.telemon.collect(now_ns)]


# --- what the registry (inputs/__init__.py) reads: docs, counters ---------------------------

SAMPLE_CONFIG = """\
## Fields of your own, evaluated at every scrape: each value names a callable
## taking no arguments, as "package.module:function" (importable with the
## PYTHONPATH telemon runs with), that returns a bool, int, float or str (None
## leaves the field out of that scrape). A field that raises or times out
## (agent.field_timeout) is left out of that scrape and logged.
# [[inputs.fields]]
#   ## Measurement name (required).
#   measurement = "app"
#
#   ## Accepted as in every input but not used: fields are evaluated at every
#   ## scrape, each bounded by agent.field_timeout.
#   interval = "10s"
#   timeout = "5s"
#
#   ## Tags added to this table's lines.
#   [inputs.fields.tags]
#     service = "blog"
#
#   ## Field name = "package.module:callable", e.g. "myapp.metrics:sessions".
#   [inputs.fields.fields]
#     pid = "os:getpid"
#     clock = "time:time"
"""
"""This input's part of telemon.example.toml (`telemon config` prints the whole file)."""

REFERENCE = """**`[[inputs.fields]]`** - your own fields, evaluated at every scrape:

```toml
[[inputs.fields]]
  measurement = "app"
  [inputs.fields.tags]
    service = "blog"
  [inputs.fields.fields]
    sessions = "myapp.metrics:session_count"   # "package.module:callable"
```

Import paths are resolved at start-up; a bad one is a config error naming
`inputs.fields.0.fields.sessions`. Callables may be sync or `async def`.
"""
"""This input's part of the README's input reference (markdown)."""

COUNTER_FIELDS: tuple[str, ...] = ()
"""None: what the callables return is the user's to know (and their types are not declared)."""
