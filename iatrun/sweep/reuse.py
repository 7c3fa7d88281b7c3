"""``iatrun sweep --reuse DIR``: finished cells and chosen rates taken from other sweep folders.

Grids overlap: the mesh-ratio grid's r = 4 cells and its relu baseline are cells of the paper grid,
to the last config key. A cell of this sweep whose config hash (:func:`iatrun.sweep.grid.config_hash`:
everything that decides its result) equals a finished cell's in a source folder is copied, not
trained again, and a setting whose rate a source chose (its tuning record, :func:`iatrun.tune.cached`)
gets that record. A copy is what a rerun would give on the same stack, so a report cannot tell the
difference except by the cell's ``done.json``, which names the sweep folder the cell came from
(``reused_from``, relative to this one) and its key there (``reused_key``); its ``provenance.json``
is the training run's, unchanged.

A source cell is taken only when it is sound (:func:`iatrun.sweep.cells.key_state` says done) and
was written with the same ``artifacts`` level, so a sweep that asks for model.pt never receives a
lean cell. Each copy is staged and renamed into place under the cell's lock, like a trained cell.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from iatrun.config import to_yaml
from iatrun.errors import IatrunError
from iatrun.files import read_json, staged_dir, write_json, write_text
from iatrun.results import CONFIG, check_run, read_config
from iatrun.sweep.cells import DONE, cell_dir, cell_state, claim, clear_cell, key_state, tune_dir
from iatrun.sweep.grid import Cell


def check_sources(sources: Sequence[Path], folder: Path, force: bool = False) -> list[Path]:
    """The ``--reuse`` folders, refused before any work if one is not a sweep folder or is ``folder``,
    or if ``force`` (which trains every cell again) asks for the opposite."""
    if force and sources:
        raise IatrunError("--force and --reuse cannot be combined (--force trains every cell again)")
    checked = []
    for src in sources:
        src = Path(src)
        if not (src / "cells").is_dir():
            raise IatrunError(f"--reuse {src}: not a sweep folder (no cells/ in it)")
        if src.resolve() == Path(folder).resolve():
            raise IatrunError(f"--reuse {src}: that is the sweep folder itself")
        checked.append(src)
    return checked


def _finished(source: Path) -> dict[str, tuple[Path, str]]:
    """config hash → (cell folder, its artifacts level) for every sound finished cell of ``source``
    (hidden folders, an attempt's staging, left out)."""
    found: dict[str, tuple[Path, str]] = {}
    cells = source / "cells"
    for done in sorted(cells.rglob(DONE)):
        key = done.parent.relative_to(cells).as_posix()
        if any(part.startswith(".") for part in key.split("/")) or key_state(source, key, None)[0] != "done":
            continue
        try:
            digest = read_json(done)["config_hash"]
            artifacts = str(read_config(done.parent).get("artifacts", "full"))
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            continue
        found.setdefault(digest, (done.parent, artifacts))
    return found


def matches(folder: Path, cells: Sequence[Cell], sources: Sequence[Path]) -> dict[str, tuple[Path, Path]]:
    """cell key → (the source cell folder to copy, its sweep folder), for each cell of ``cells`` not
    finished in ``folder`` that a source holds finished with the same config hash and artifacts level
    (first source wins)."""
    index: dict[str, tuple[Path, str, Path]] = {}
    for src in sources:
        for digest, (cell_folder, artifacts) in _finished(Path(src)).items():
            index.setdefault(digest, (cell_folder, artifacts, Path(src)))
    out: dict[str, tuple[Path, Path]] = {}
    if not index:  # nothing to copy: no cell's state need be read
        return out
    for cell in cells:
        found = index.get(cell.config_hash)
        if found is None or found[1] != str(cell.config.get("artifacts", "full")):
            continue
        if cell_state(folder, cell)[0] != "done":
            out[cell.key] = (found[0], found[2])
    return out


def rates(cells: Sequence[Cell], sources: Sequence[Path]) -> set[str]:
    """The setting hashes of ``cells`` left to ``train.lr=auto`` whose rate a source has chosen."""
    from iatrun.tune import cached, is_auto, setting_hash

    return {
        setting_hash(c.config)
        for c in cells
        if is_auto(c.config) and any(cached(c.config, tune_dir(src)) is not None for src in sources)
    }


def _copy_cell(folder: Path, cell: Cell, source: Path, sweep_source: Path) -> bool:
    """Copy one finished cell under its lock, as a trained cell is written (folder staged and renamed,
    then ``done.json``); False if another process holds the cell or the source is not what it was."""
    from iatrun.checkpoint import checkpoint_path

    lock = claim(folder, cell)
    if lock is None:
        return False
    try:
        if cell_state(folder, cell)[0] == "done":
            return False
        cfg = clear_cell(folder, cell)  # a failed or half-written attempt goes; cfg["out"] is the new home
        final = cell_dir(folder, cell.key)
        try:
            marker = read_json(source / DONE)
            if marker.get("config_hash") != cell.config_hash:
                return False  # the source was rerun with another config since it was indexed
            with staged_dir(final) as stage:
                shutil.copytree(source, stage, dirs_exist_ok=True, ignore=shutil.ignore_patterns(DONE))
                run_cfg = read_config(stage)
                run_cfg["out"] = cfg["out"]
                write_text(stage / CONFIG, to_yaml(run_cfg))
                problem = check_run(stage)
                if problem:
                    raise ValueError(f"{source}: {problem}")
            where = Path(os.path.relpath(sweep_source, folder)).as_posix()
            key = source.relative_to(sweep_source / "cells").as_posix()
            write_json(final / DONE, {**marker, "reused_from": where, "reused_key": key})
        except (OSError, ValueError, shutil.Error, yaml.YAMLError):
            shutil.rmtree(final, ignore_errors=True)  # the cell stays pending: it trains
            return False
        checkpoint_path(final).unlink(missing_ok=True)
        return True
    finally:
        lock.release()


def _copy_rates(folder: Path, cells: Sequence[Cell], sources: Sequence[Path]) -> int:
    """Copy each auto-rate setting's tuning record that ``folder`` lacks and a source holds, under the
    setting's tuning lock (:func:`iatrun.tune.ensure` holds it while it chooses)."""
    from iatrun.tune import cached, is_auto, locked, setting_hash

    copied = 0
    seen: set[str] = set()
    for cell in cells:
        cfg: Mapping[str, Any] = cell.config
        digest = setting_hash(cfg) if is_auto(cfg) else None
        if digest is None or digest in seen:
            continue
        seen.add(digest)
        src = next((s for s in sources if cached(cfg, tune_dir(s)) is not None), None)
        if src is None:
            continue
        with locked(tune_dir(folder) / f"{digest}.lock"):
            if cached(cfg, tune_dir(folder)) is None:
                write_text(
                    tune_dir(folder) / f"{digest}.json", (tune_dir(src) / f"{digest}.json").read_text()
                )
                copied += 1
    return copied


def reuse(folder: Path, cells: Sequence[Cell], sources: Sequence[Path]) -> tuple[int, int]:
    """Copy into ``folder`` what ``sources`` already hold for ``cells``: (cells copied, rates copied)."""
    if not sources:
        return 0, 0
    plan = matches(folder, cells, sources)
    copied = sum(_copy_cell(folder, c, *plan[c.key]) for c in cells if c.key in plan)
    return copied, _copy_rates(folder, cells, sources)
