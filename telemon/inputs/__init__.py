"""The inputs: one module per `[[inputs.NAME]]` table, registered here.

Registering an input is one line in `InputsConfig`. Its module carries, beside
its config model (with `field_types`), three constants the rest of telemon
reads through `InputsConfig.registry()`:

* `SAMPLE_CONFIG`: its tables in telemon.example.toml, every option at its
  default (`telemon config` prints the whole file);
* `REFERENCE`: its part of the README's input reference (markdown);
* `COUNTER_FIELDS`: patterns of its cumulative field names, typed `counter`
  in the Prometheus exposition.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import get_args

from pydantic import Field

from telemon.inputs.base import InputConfig, InputContext, InputError, Target
from telemon.inputs.cgroup import CgroupConfig
from telemon.inputs.docker import DockerConfig
from telemon.inputs.fields import FieldsConfig
from telemon.inputs.pharo import PharoConfig
from telemon.inputs.process import ProcessConfig
from telemon.inputs.python import PythonConfig
from telemon.schema import Model

__all__ = [
    "InputConfig",
    "InputContext",
    "InputError",
    "InputsConfig",
    "RegisteredInput",
    "Target",
]


@dataclass(frozen=True, slots=True)
class RegisteredInput:
    """One input as the docs and the exposition see it: its name, model and module constants."""

    name: str
    config: type[InputConfig]
    sample: str
    """Its `SAMPLE_CONFIG`."""
    reference: str
    """Its `REFERENCE`."""
    counters: tuple[str, ...]
    """Its `COUNTER_FIELDS`."""
    measurement_counters: dict[str, tuple[str, ...]]
    """Its `MEASUREMENT_COUNTERS`, if it has any (cumulative fields of its own
    measurements, by their default names)."""


class InputsConfig(Model):
    """`[inputs]`: each key is an input name holding a list of its tables."""

    cgroup: list[CgroupConfig] = Field(default_factory=list)
    docker: list[DockerConfig] = Field(default_factory=list)
    fields: list[FieldsConfig] = Field(default_factory=list)
    pharo: list[PharoConfig] = Field(default_factory=list)
    process: list[ProcessConfig] = Field(default_factory=list)
    python: list[PythonConfig] = Field(default_factory=list)

    @classmethod
    def defaults(cls) -> InputsConfig:
        """What runs without a config file: telemon's own process and VM."""
        return cls(process=[ProcessConfig()], python=[PythonConfig()])

    def configured(self) -> list[tuple[str, InputConfig]]:
        """Every table as (input name, config), in file order per input."""
        return [
            (name, config) for name in type(self).model_fields for config in getattr(self, name)
        ]

    @classmethod
    def registry(cls) -> tuple[RegisteredInput, ...]:
        """Every registered input, in the order of the fields above."""
        fields = cls.model_fields.items()
        return tuple(_registered(name, field.annotation) for name, field in fields)


def _registered(name: str, annotation: object) -> RegisteredInput:
    """The input whose tables are `list[Model]`, with the constants of Model's module."""
    (model,) = get_args(annotation)
    module = sys.modules[model.__module__]
    try:
        sample, reference = str(module.SAMPLE_CONFIG), str(module.REFERENCE)
        counters = tuple(module.COUNTER_FIELDS)
    except AttributeError as exc:  # a new input's module without its documentation
        raise TypeError(f"input {name}: {exc}") from None
    by_measurement = dict(getattr(module, "MEASUREMENT_COUNTERS", {}))
    return RegisteredInput(name, model, sample, reference, counters, by_measurement)
