"""The example file and the README's input reference are assembled from the inputs' modules.

Adding an input is its module (with `SAMPLE_CONFIG`, `REFERENCE`, `COUNTER_FIELDS`)
and one line in `InputsConfig`: these tests fail until the example file and the
README carry its parts (`telemon config > telemon.example.toml`, `telemon config
--readme README.md`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import telemon.inputs
from telemon.docs import (
    README_BEGIN,
    README_END,
    example_config,
    inputs_reference,
    with_inputs_reference,
)
from telemon.inputs import InputConfig, InputsConfig
from telemon.prometheus import COUNTERS, is_counter

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "telemon.example.toml"
README = ROOT / "README.md"
TELEMON = [sys.executable, "-m", "telemon"]
INPUTS = InputsConfig.registry()


def test_example_file_is_the_assembled_one() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_config(), (
        "telemon.example.toml is out of date: run `telemon config > telemon.example.toml`"
    )


def test_telemon_config_prints_the_example_file() -> None:
    done = subprocess.run([*TELEMON, "config"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", INPUTS, ids=[spec.name for spec in INPUTS])
def test_each_input_brings_its_own_parts(spec: telemon.inputs.RegisteredInput) -> None:
    """Its sample is in the example file, its reference in the README, under its name."""
    assert spec.sample in example_config()
    assert re.search(rf"^(# )?\[\[inputs\.{spec.name}\]\]$", spec.sample, re.MULTILINE)
    assert spec.sample.startswith("## ") and spec.sample.endswith("\n")
    assert spec.reference.startswith(f"**`[[inputs.{spec.name}]]`**")
    assert spec.reference in README.read_text(encoding="utf-8")


def test_every_input_module_is_registered() -> None:
    """A module with an input config model but no registry line is a forgotten input."""
    registered = {spec.config for spec in INPUTS}
    found = set()
    for module_info in pkgutil.iter_modules(telemon.inputs.__path__, "telemon.inputs."):
        module = importlib.import_module(module_info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, InputConfig) and obj is not InputConfig:
                if obj.__module__ == module.__name__:
                    found.add(obj)
    assert found == registered


def test_readme_input_reference_is_the_assembled_one() -> None:
    readme = README.read_text(encoding="utf-8")
    assert inputs_reference() in readme, (
        "README.md's input reference is out of date: run `telemon config --readme README.md`"
    )
    section = readme[readme.index("### Inputs\n") : readme.index("### Self-metrics")]
    assert section == f"### Inputs\n\n{inputs_reference()}\n"


def test_telemon_config_readme_rewrites_the_section(tmp_path: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    stale = tmp_path / "README.md"
    begin, end = readme.index(README_BEGIN), readme.index(README_END)
    stale.write_text(readme[:begin] + README_BEGIN + "\nold text\n" + readme[end:], "utf-8")
    done = subprocess.run(
        [*TELEMON, "config", "--readme", str(stale)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert stale.read_text(encoding="utf-8") == readme


def test_telemon_config_readme_without_markers_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "README.md"
    plain.write_text("# a readme\n", encoding="utf-8")
    done = subprocess.run(
        [*TELEMON, "config", "--readme", str(plain)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.startswith("telemon config --readme: expected one ")
    assert done.stderr.count("\n") == 1
    assert plain.read_text(encoding="utf-8") == "# a readme\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("no markers\n", id="none"),
        pytest.param(f"{README_END}\n{README_BEGIN}\n", id="reversed"),
        pytest.param(f"{README_BEGIN}\n{README_BEGIN}\n{README_END}\n", id="twice"),
    ],
)
def test_with_inputs_reference_needs_one_pair_of_markers(text: str) -> None:
    with pytest.raises(ValueError, match="expected one"):
        with_inputs_reference(text)


def test_counters_are_the_inputs_own() -> None:
    """COUNTERS["*"] is every input's COUNTER_FIELDS; renamed measurements keep them."""
    assert COUNTERS["*"] == tuple(p for spec in INPUTS for p in spec.counters)
    for field in ("fullGCs", "bytesAllocated", "gc_collected_2", "cpu_time_user", "rx_bytes"):
        assert is_counter("renamed", field), field
    for field in ("memory", "gc_collected_x", "cpu_usage", "rx_bytes_total"):
        assert not is_counter("renamed", field), field
