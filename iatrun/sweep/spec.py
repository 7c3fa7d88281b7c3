"""A sweep folder's ``sweep.yaml``: the grid and overrides it was made for, the provenance of
every run into it, and the config hash of every cell it lists (what ``iatrun report`` reports).

A new sweep creates the folder; a rerun of the same grid and overrides resumes it and adds its
cells to the list, so a grid run in parts (``--where``) reports every part so far; a rerun of
another grid or other overrides warns (:func:`grid_change`) and lists its own cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from iatrun.errors import IatrunError
from iatrun.files import stamp, unique_dir, write_text
from iatrun.provenance import collect
from iatrun.sweep.grid import Cell

SPEC = "sweep.yaml"  # the grid, the overrides, provenance and every cell's config hash
SPEC_LOCK_TIMEOUT_S = 60.0  # longest wait for another sweep rewriting sweep.yaml


def new_sweep_dir(name: str, results_dir: str | Path = "results") -> Path:
    """A fresh ``<results_dir>/sweeps/<grid>-<YYYYmmdd-HHMMSS>`` (-2, -3, … on a clash)."""
    return unique_dir(Path(results_dir) / "sweeps", f"{name}-{stamp()}")


def _provenance(grid: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """This run's entry of sweep.yaml's ``provenance:`` block (no device: each cell records its own)."""
    entry = {"grid": grid["name"], **collect()}
    entry["overrides"] = list(overrides)  # the sweep's own, whatever the command context says
    return entry


def check_sweep_out(path: str | Path) -> Path:
    """Refuse a sweep folder that is a file, holds something other than a sweep, or cannot be made."""
    from iatrun.files import check_new_dir

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IatrunError(f"--out {path} exists and is not a folder")
    # hidden files are ignored: a concurrent sweep may be writing sweep.yaml's temporary file
    visible = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    if visible and not (path / SPEC).is_file():
        raise IatrunError(f"--out {path} is not empty and is not a sweep folder")
    return path if path.exists() else check_new_dir(path)  # its parent takes new folders


def prepare_sweep_dir(
    path: str | Path, grid: Mapping[str, Any], overrides: Sequence[str], cells: Iterable[Cell]
) -> Path:
    """Create (or reuse, for resume) a sweep folder and write ``sweep.yaml``.

    ``provenance:`` records the first run that made the folder; every later run into it (a resume)
    is appended to its ``resumed:`` list. The rest of sweep.yaml is this run's grid and cells, except
    that a run of the same grid and overrides adds its cells to those already listed: a grid run in
    parts (``--where``) lists, and so reports, every part run so far.
    """
    path = check_sweep_out(path)
    spec = {
        "grid": grid["name"],
        "description": grid.get("description", ""),
        "overrides": list(overrides),
        "grid_spec": {k: v for k, v in grid.items() if k != "name"},
        "provenance": _provenance(grid, overrides),
        "cells": {c.key: c.config_hash for c in cells},
    }
    try:
        path.mkdir(parents=True, exist_ok=True)
        with _spec_lock(path):  # two sweeps started together must not lose a provenance entry
            old = _previous_spec(path)
            first = _previous_provenance(old)
            if first is None:  # a new folder (or one whose sweep.yaml has no readable block)
                spec["provenance"]["resumed"] = []
            else:
                first["resumed"].append(spec["provenance"])
                spec["provenance"] = first
            if old is not None and _same_grid(old, grid, overrides):  # another part of the same grid
                spec["cells"] = {**old["cells"], **spec["cells"]}
            write_text(path / SPEC, yaml.safe_dump(spec, sort_keys=False))
        (path / "cells").mkdir(exist_ok=True)
    except OSError as e:
        raise IatrunError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


@contextmanager
def _spec_lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    # hidden: not a visible file of the folder; held for milliseconds, so a long wait means a lock
    # file that cannot be opened, and its Timeout (an OSError) becomes "cannot write"
    with FileLock(str(path / f".{SPEC}.lock"), timeout=SPEC_LOCK_TIMEOUT_S):
        yield


def _previous_spec(path: Path) -> dict[str, Any] | None:
    """An existing sweep.yaml, or None (none yet, or unreadable)."""
    try:
        return read_spec(path)
    except IatrunError:
        return None


def _previous_provenance(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``provenance:`` block of an existing sweep.yaml, or None (none, or unreadable)."""
    block = old.get("provenance") if old is not None else None
    if not isinstance(block, dict):
        return None
    if not isinstance(block.get("resumed"), list):
        block["resumed"] = []
    return block


def grid_change(path: str | Path, grid: Mapping[str, Any], overrides: Sequence[str]) -> str | None:
    """The warning for a rerun into a sweep folder made for another grid or other overrides, or None.

    None as well for a new folder or an unreadable sweep.yaml. The order of the overrides does not
    matter; a grid file edited since (same name, other content) counts as another grid.
    """
    old = _previous_spec(Path(path))
    if old is None or _same_grid(old, grid, overrides):
        return None
    name, old_name = grid["name"], old.get("grid")
    old_over, new_over = [str(o) for o in old.get("overrides") or []], [str(o) for o in overrides]
    edited = " (its file edited since)" if old_name == name and not _same_file(old, grid) else ""
    return (
        f"warning: {path} was made for grid {old_name!r} with overrides {old_over}; "
        f"now grid {name!r}{edited} with overrides {new_over}: the report will mix cells finished by "
        "both runs (unchanged configs are kept, changed ones rerun, cells only the old grid has left out)"
    )


def _same_file(old: Mapping[str, Any], grid: Mapping[str, Any]) -> bool:
    """Whether sweep.yaml ``old`` was written for ``grid``: the same name and the same content."""
    content = {k: v for k, v in grid.items() if k != "name"}
    return old.get("grid") == grid["name"] and old.get("grid_spec") == content


def _same_grid(old: Mapping[str, Any], grid: Mapping[str, Any], overrides: Sequence[str]) -> bool:
    """Whether sweep.yaml ``old`` was written for ``grid`` with ``overrides`` (in any order)."""
    old_over = sorted(str(o) for o in old.get("overrides") or [])
    return _same_file(old, grid) and old_over == sorted(str(o) for o in overrides)


def read_spec(path: str | Path) -> dict[str, Any]:
    """A sweep folder's ``sweep.yaml``: grid, description, overrides, grid_spec, provenance (folders
    made before it have none), cells."""
    try:
        spec = yaml.safe_load((Path(path) / SPEC).read_text())
        if not isinstance(spec, dict) or not isinstance(spec.get("cells"), dict):
            raise TypeError
        return spec
    except (OSError, yaml.YAMLError, TypeError):
        raise IatrunError(f"{path} is not a sweep folder (no readable sweep.yaml)") from None


def check_sweep_dir(path: str | Path) -> dict[str, Any]:
    """The sweep.yaml of a folder ``iatrun report`` may write into; IatrunError when it has no
    readable sweep.yaml or no ``cells/`` folder (nothing is written either way)."""
    spec = read_spec(path)
    if not (Path(path) / "cells").is_dir():
        raise IatrunError(f"{path} is not a sweep folder (no cells/ folder)")
    return spec
