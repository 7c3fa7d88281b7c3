"""The command line's closed choices and its completions, without importing torch.

``--help`` lists a closed choice (``[rect|pwl|...]``) and the shell completes it; the names are
written here because building the command line must not import the registries (torch), and a
test keeps them equal to the registries. Open choices (tasks and models, which a ``--config-dir``
may add to; grids; launchers; devices such as ``cuda:1``) stay strings and are completed from
the config folders as they are on disk.
"""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from iatrun.plotstyle import FORMATS, HEATMAP_SCALES

BASES = ("rect", "pwl", "pwq", "fourier", "pwl-w", "rect-w", "pwl-wd", "rect-wd")
METHODS = ("mesh", "exact")
DTYPES = ("float32", "float64")
ENGINES = ("auto", "batched", "serial")
DEVICES = ("auto", "cpu", "cuda")


def _choice(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    return enum.Enum(name, {v: v for v in values}, type=str)


Basis = _choice("Basis", BASES)
Method = _choice("Method", METHODS)
Dtype = _choice("Dtype", DTYPES)
Engine = _choice("Engine", ENGINES)
PlotFormat = _choice("PlotFormat", FORMATS)
HeatmapScale = _choice("HeatmapScale", HEATMAP_SCALES)


def value(v):
    """A choice's string (an enum member's value), anything else unchanged."""
    return v.value if isinstance(v, enum.Enum) else v


def flag(*names: str, help: str) -> bool:  # noqa: A002 - Typer's keyword
    """A switch that is off unless given."""
    return typer.Option(False, *names, help=help)


def _config_names(group: str) -> list[str]:
    from iatrun.config import config_dir

    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def _starting(names: list[str], incomplete: str) -> list[str]:
    return [n for n in names if n.startswith(incomplete)]


def complete_task(incomplete: str) -> list[str]:
    return _starting(_config_names("task"), incomplete)


def complete_model(incomplete: str) -> list[str]:
    return _starting(_config_names("model"), incomplete)


def complete_grid(incomplete: str) -> list[str]:
    return _starting(_config_names("sweep"), incomplete)


def complete_launcher(incomplete: str) -> list[str]:
    return _starting(["none", *_config_names("launcher")], incomplete)


def complete_device(incomplete: str) -> list[str]:
    return _starting(list(DEVICES), incomplete)
