"""The inputs: one module per `[[inputs.NAME]]` table, registered here."""

from __future__ import annotations

from pydantic import Field

from telemon.inputs.base import InputConfig, InputContext, InputError, Target
from telemon.inputs.cgroup import CgroupConfig
from telemon.inputs.docker import DockerConfig
from telemon.inputs.fields import FieldsConfig
from telemon.inputs.pharo import PharoConfig
from telemon.inputs.process import ProcessConfig
from telemon.inputs.python import PythonConfig
from telemon.schema import Model

__all__ = ["InputConfig", "InputContext", "InputError", "InputsConfig", "Target"]


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
