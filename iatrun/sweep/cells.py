"""Sweeps: named grids of `fit` cells, run serially, in worker processes or through submitit.

The sweep folder is the only shared state. Each cell lives in ``cells/<key>/``; its files are
staged and renamed into place, and ``done.json`` is written last, atomically: a cell is finished
exactly when ``done.json`` is present, parses, matches the cell's config and its files are sound.
A cell is claimed through a lock file, so two sweeps (or a requeued SLURM task) pointed at one
folder never run the same cell twice. Two engines train cells: ``serial`` (one
:func:`iatrun.train.train` per cell) and ``batched`` (stacks of cells as one network,
:mod:`iatrun.batched`); both finish a cell through :func:`finish_cell`, so this contract does not
depend on the engine.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import shutil
import time
import traceback
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from iatrun.errors import IatrunError

DONE = "done.json"  # written last: the cell is complete
ERROR = "error.json"  # the cell crashed; rerun on resume
CELL_FILES = ("config.yaml", "metrics.json", "curve.csv", "model.pt", "loss.png")
# Axis keys that name a cell by themselves; any other varying key is appended to the name.
_NAMED = ("task", "model", "model.basis_in", "model.basis_out", "model.mesh_ratio", "model.method", "seed")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep."""

    key: str  # stable folder name, e.g. "fitting/iat-fourier-pwq-r4/seed0"
    config: dict  # fully resolved config (its "out" is set when it runs)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A digest of everything that determines a cell's result (not where it is written)."""
    keep = {k: v for k, v in cfg.items() if k not in ("out", "results_dir", "device")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- grids -------------------------------------------------------------------------------------


def grid_dirs(user_dir: str | Path | None = None) -> list[Path]:
    from iatrun.config import config_dir

    dirs = [config_dir() / "sweep"]
    if user_dir is not None:
        dirs.insert(0, Path(user_dir) / "sweep")
    return dirs


def list_grids(user_dir: str | Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in grid_dirs(user_dir):
        names |= {p.stem for p in d.glob("*.yaml")}
    return sorted(names)


def load_grid(name: str, user_dir: str | Path | None = None) -> dict:
    """Read ``conf/sweep/<name>.yaml`` (a user's ``--config-dir`` is searched first)."""
    for d in grid_dirs(user_dir):
        path = d / f"{name}.yaml"
        if path.is_file():
            try:
                grid = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as e:
                raise IatrunError(f"grid file {path} is not valid YAML: {' '.join(str(e).split())}") from None
            bad = sorted(set(grid) - {"description", "seeds", "overrides", "blocks"})
            if bad or not isinstance(grid.get("blocks"), list):
                raise IatrunError(f"grid {name!r}: needs a 'blocks' list; unknown keys: {bad}")
            grid["name"] = name
            return grid
    from iatrun.registry import Registry

    known: Registry[None] = Registry("grid")
    for g in list_grids(user_dir):
        known.add(g, None)
    raise IatrunError(known.unknown_message(name))


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Hydra override syntax, sweeps included: ``k=a,b`` and ``k=range(0,3)`` give several values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise IatrunError(f"bad override: {' '.join(str(e).split(chr(10))[0].split())}") from None
    out = []
    for o in parsed:
        if o.is_sweep_override():
            values = [str(v) for v in o.sweep_string_iterator()]
        else:
            values = [o.get_value_element_as_str()]
        out.append((o.get_key_element(), values))
    return out


def _values(key: str, raw: Any) -> list[str]:
    from iatrun.nn.bases import BASES

    if raw == "all" and key in ("model.basis_in", "model.basis_out"):
        return BASES.names()  # every registered basis, user-registered ones included
    if isinstance(raw, list):
        return [_scalar(v) for v in raw]
    return [_scalar(raw)]


def _scalar(v: Any) -> str:
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def cell_key(axes: Mapping[str, str], varying: Sequence[str]) -> str:
    """``<task>/<model>[-<basis_in>-<basis_out>-r<r>][-<method>][-<extra><v>...]/seed<s>``."""
    model = axes.get("model", "model")
    part = [model]
    if "model.basis_in" in axes or "model.basis_out" in axes:
        part += [axes.get("model.basis_in", "_"), axes.get("model.basis_out", "_")]
    if "model.mesh_ratio" in axes:
        part.append(f"r{axes['model.mesh_ratio']}")
    if axes.get("model.method", "mesh") != "mesh":
        part.append(axes["model.method"])
    for k in varying:
        if k in axes:
            part.append(f"{k.rsplit('.', 1)[-1]}{axes[k]}")
    safe = "-".join(str(p) for p in part)
    for ch in "/\\ =,[]{}'\"":
        safe = safe.replace(ch, "_")
    return f"{axes.get('task', 'task')}/{safe}/seed{axes.get('seed', '0')}"


def expand(grid: Mapping[str, Any], overrides: Sequence[str] = (), user_dir=None) -> list[Cell]:
    """All cells of ``grid`` with command-line ``overrides`` applied, each fully composed.

    An override of a key that a block sweeps replaces that axis; an override of a key no block
    names applies to every cell (with several values it becomes a new axis of every block).
    Every cell's config is validated here, before anything runs.
    """
    from iatrun.config import compose
    from iatrun.train import prepare

    cli = parse_overrides(overrides)
    fixed = [str(o) for o in grid.get("overrides") or []]
    seeds = [str(s) for s in grid.get("seeds") or [0]]
    blocks = []
    named_anywhere = {k for b in grid["blocks"] for k in b}
    for block in grid["blocks"]:
        axes = {k: _values(k, v) for k, v in block.items()}
        for k, vals in cli:
            bare = k.lstrip("+~")
            if bare == "seed":
                continue
            if bare in axes or bare not in named_anywhere:
                axes[bare if bare in axes else k] = _values(bare, vals if len(vals) > 1 else vals[0])
        blocks.append(axes)
    for k, vals in cli:
        if k == "seed":
            seeds = vals
    varying = sorted({k for b in blocks for k, v in b.items() if k.lstrip("+~") not in _NAMED and len(v) > 1})
    cells: dict[str, Cell] = {}
    cache: dict[tuple, dict] = {}
    for axes in blocks:
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            ov = tuple(fixed + [f"{k}={v}" for k, v in chosen.items()])
            if ov not in cache:
                cfg = compose(list(ov), user_dir=user_dir)
                prepare(cfg)  # refuse a bad cell before any cell starts
                cache[ov] = cfg
            for s in seeds:
                cfg = copy.deepcopy(cache[ov])
                try:
                    cfg["seed"] = int(s)
                except ValueError:
                    raise IatrunError(f"seed must be an integer, got {s!r}") from None
                named = {k.lstrip("+~"): v for k, v in chosen.items()}
                named.setdefault("task", cfg["task"]["name"])
                named.setdefault("model", cfg["model"]["kind"])
                for opt in ("basis_in", "basis_out", "mesh_ratio", "method"):  # IAT-like models
                    if opt in cfg["model"]:
                        named.setdefault(f"model.{opt}", str(cfg["model"][opt]))
                named["seed"] = s
                key = cell_key(named, varying)
                cells.setdefault(key, Cell(key, cfg))
    return list(cells.values())


# --- cell state --------------------------------------------------------------------------------


def cell_dir(sweep_dir: Path, key: str) -> Path:
    return Path(sweep_dir) / "cells" / key


def _sound(folder: Path) -> str | None:
    """None if a finished cell's files are intact, else what is wrong."""
    for name in CELL_FILES:
        if not (folder / name).is_file():
            return f"{name} missing"
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        if "status" not in metrics:
            return "metrics.json has no status"
    except (OSError, ValueError):
        return "metrics.json unreadable"
    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        if not isinstance(cfg, dict) or "model" not in cfg:
            return "config.yaml is not a run config"
    except (OSError, yaml.YAMLError):
        return "config.yaml unreadable"
    lines = (folder / "curve.csv").read_text().splitlines()
    if len(lines) < 2 or lines[0] != "step,loss,lr":
        return "curve.csv empty or malformed"
    if not zipfile.is_zipfile(folder / "model.pt"):
        return "model.pt unreadable"
    return None


def cell_state(sweep_dir: Path, cell: Cell) -> tuple[str, str]:
    """(state, detail): state is done | missing | failed | incomplete | stale."""
    return key_state(sweep_dir, cell.key, cell.config_hash)


def key_state(sweep_dir: Path, key: str, expected_hash: str | None) -> tuple[str, str]:
    """:func:`cell_state` by key; ``expected_hash`` None accepts any config."""
    folder = cell_dir(sweep_dir, key)
    if not folder.exists():
        return "missing", ""
    done = folder / DONE
    if not done.is_file():
        if (folder / ERROR).is_file():
            try:
                return "failed", json.loads((folder / ERROR).read_text()).get("error", "")
            except (OSError, ValueError):
                return "failed", "error.json unreadable"
        return "incomplete", "no done.json"
    try:
        marker = json.loads(done.read_text())
    except (OSError, ValueError):
        return "incomplete", "done.json unreadable"
    if expected_hash is not None and marker.get("config_hash") != expected_hash:
        return "stale", "config changed since it ran"
    problem = _sound(folder)
    if problem:
        return "incomplete", problem
    return "done", marker.get("status", "")


# --- running cells -----------------------------------------------------------------------------


def _lock_path(sweep_dir: Path, key: str) -> Path:
    return Path(sweep_dir) / "locks" / (key.replace("/", "__") + ".lock")


def run_cell(sweep_dir: str | Path, cell: Cell, threads: int | None = None, wait: bool = False) -> dict:
    """Claim, run and mark one cell; return a summary row {key, state, status, metrics...}.

    The claim is an OS file lock (released by the kernel if the process dies), so a cell is
    never run by two processes at once. With ``wait`` the call blocks until the holder is done.
    """
    lock = claim(sweep_dir, cell, wait=wait)
    if lock is None:
        return {"key": cell.key, "state": "busy"}
    try:
        state, detail = cell_state(Path(sweep_dir), cell)
        if state == "done":
            return {"key": cell.key, "state": "done", "status": detail, "ran": False}
        return execute_cell(Path(sweep_dir), cell, threads)
    finally:
        lock.release()


def claim(sweep_dir: str | Path, cell: Cell, wait: bool = False):
    """The cell's acquired file lock, or None if another process holds it (and not ``wait``)."""
    from filelock import FileLock, Timeout

    lock_file = _lock_path(Path(sweep_dir), cell.key)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def clear_cell(sweep_dir: Path, cell: Cell) -> dict:
    """Remove a failed, stale or half-written attempt (the caller holds the lock); the run config.

    The returned config is the cell's, with ``out`` set to its folder.
    """
    folder = cell_dir(sweep_dir, cell.key)
    if folder.exists():
        shutil.rmtree(folder)
    if folder.parent.is_dir():  # staging folders of an attempt that was killed
        for stale in folder.parent.glob(f".{folder.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
    cfg = copy.deepcopy(cell.config)
    cfg["out"] = str(folder)
    return cfg


def execute_cell(sweep_dir: Path, cell: Cell, threads: int | None = None) -> dict:
    """Train one claimed cell with the serial engine (:func:`iatrun.train.train`) and finish it."""
    import torch

    from iatrun.train import train

    if threads:
        torch.set_num_threads(threads)
    cfg = clear_cell(sweep_dir, cell)
    start = time.time()
    try:
        result = train(cfg)
    except Exception as e:  # a crashing cell is recorded; the sweep goes on
        return fail_cell(sweep_dir, cell, e)
    return finish_cell(sweep_dir, cell, result, time.time() - start)


def finish_cell(sweep_dir: Path, cell: Cell, result, seconds: float) -> dict:
    """Write a trained cell's folder (staged, then renamed), then ``done.json``; return its row.

    Both engines end here, so a cell folder does not tell which engine trained it. ``result`` is
    an :class:`iatrun.train.Result` whose ``config`` has ``out`` set (see :func:`clear_cell`);
    ``seconds`` (training time) is added to the time spent here in ``done.json``.
    """
    from iatrun.config import to_yaml
    from iatrun.results import staged_dir, write_json
    from iatrun.train import save_run

    folder = cell_dir(sweep_dir, cell.key)
    start = time.time()
    try:
        with staged_dir(folder) as stage:
            save_run(result, stage, to_yaml(dict(result.config)), title=cell.key)
        status = result.metrics["status"]
        write_json(
            folder / DONE,
            {
                "status": status,
                "config_hash": cell.config_hash,
                "finished": datetime.now().isoformat(),
                "seconds": seconds + time.time() - start,
            },
        )
    except Exception as e:
        return fail_cell(sweep_dir, cell, e)
    return {"key": cell.key, "state": "done", "status": status, "ran": True, **result.metrics}


def fail_cell(sweep_dir: Path, cell: Cell, error: Exception) -> dict:
    """Record a crashed cell in ``error.json`` (call it inside the ``except``); return its row."""
    from iatrun.results import write_json

    folder = cell_dir(sweep_dir, cell.key)
    folder.mkdir(parents=True, exist_ok=True)
    err = f"{type(error).__name__}: {error}"
    write_json(
        folder / ERROR,
        {"status": "failed", "error": err, "traceback": traceback.format_exc(), "config": cell.config},
    )
    return {"key": cell.key, "state": "failed", "status": "failed", "error": err, "ran": True}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


ENGINES = ("auto", "batched", "serial")


def _run_item(sweep_dir: Path, item: Sequence[Cell], threads: int | None = None) -> list[dict]:
    """Run one work item: a single cell (serial engine) or a stack (iatrun.batched)."""
    if len(item) == 1:
        return [run_cell(sweep_dir, item[0], threads)]
    from iatrun.batched import run_stack

    return run_stack(sweep_dir, item, threads)


def run_cells(
    sweep_dir: Path,
    cells: Sequence[Cell],
    jobs: int = 1,
    on_start: Callable[[Cell], None] | None = None,
    on_done: Callable[[dict], None] | None = None,
    engine: str = "serial",
    stack_size: int | None = None,
) -> list[dict]:
    """Run ``cells`` (serially or in ``jobs`` worker processes); report each as it lands.

    ``engine`` is ``serial`` (one cell at a time), ``batched`` or ``auto`` (stacks of cells that
    share shapes and budget trained as one network, see :mod:`iatrun.batched`, which also gives
    the rule ``auto`` follows and how stacks are cut for ``jobs``). Cells claimed by another
    process are waited for afterwards, and run here (serially) if that process died without
    finishing them.
    """
    if engine not in ENGINES:
        raise IatrunError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    if engine == "serial":
        items: list[list[Cell]] = [[c] for c in cells]
    else:
        from iatrun.batched import plan

        items = plan(cells, engine=engine, jobs=jobs, stack_size=stack_size)
    rows: list[dict] = []
    busy: list[Cell] = []
    by_key = {c.key: c for c in cells}

    def land(row: dict) -> None:
        if row["state"] == "busy":
            busy.append(by_key[row["key"]])
            return
        rows.append(row)
        if on_done:
            on_done(row)

    def start(item: Sequence[Cell]) -> None:
        for cell in item if on_start else ():
            on_start(cell)

    if jobs <= 1:
        for item in items:
            start(item)
            for row in _run_item(sweep_dir, item):
                land(row)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(
            jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        ) as pool:
            pending = {}
            queue = list(items)
            try:
                while queue or pending:
                    while queue and len(pending) < jobs:
                        item = queue.pop(0)
                        start(item)
                        pending[pool.submit(_run_item, sweep_dir, item, threads)] = item
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        pending.pop(fut)
                        for row in fut.result():
                            land(row)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    for cell in busy:  # claimed elsewhere: wait for that claim, then run it if still unfinished
        land(run_cell(sweep_dir, cell, wait=True))
    return rows


# --- the sweep folder --------------------------------------------------------------------------


def new_sweep_dir(name: str, results_dir: str | Path = "results") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(results_dir) / "sweeps"
    for i in range(1, 1000):
        path = root / (f"{name}-{stamp}" if i == 1 else f"{name}-{stamp}-{i}")
        if not path.exists():
            return path
    raise IatrunError(f"too many sweeps named {name}-{stamp}")


def prepare_sweep_dir(
    path: Path, grid: Mapping[str, Any], overrides: Sequence[str], cells: Iterable[Cell]
) -> Path:
    """Create (or reuse, for resume) a sweep folder and write ``sweep.yaml``."""
    from iatrun.results import write_text

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IatrunError(f"--out {path} exists and is not a folder")
    # hidden files are ignored: a concurrent sweep may be writing sweep.yaml's temporary file
    visible = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    if visible and not (path / "sweep.yaml").is_file():
        raise IatrunError(f"--out {path} is not empty and is not a sweep folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IatrunError(f"cannot write to {path}: {e.strerror or e}") from None
    spec = {
        "grid": grid["name"],
        "description": grid.get("description", ""),
        "overrides": list(overrides),
        "grid_spec": {k: v for k, v in grid.items() if k != "name"},
        "cells": {c.key: c.config_hash for c in cells},
    }
    try:
        write_text(path / "sweep.yaml", yaml.safe_dump(spec, sort_keys=False))
        (path / "cells").mkdir(exist_ok=True)
    except OSError as e:
        raise IatrunError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


def load_sweep_cells(path: Path) -> list[str]:
    """The cell keys a sweep folder was made for (from its sweep.yaml)."""
    try:
        spec = yaml.safe_load((Path(path) / "sweep.yaml").read_text())
        return list(spec["cells"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raise IatrunError(f"{path} is not a sweep folder (no readable sweep.yaml)") from None


# --- submitit (SLURM or local processes) -------------------------------------------------------


class CellJob:
    """One cell as a submitit job; on pre-emption or timeout it requeues itself (see README).

    Requeueing reruns the same cell: the half-written attempt is discarded and the cell's lock
    and done marker keep it from ever being counted twice.
    """

    def __call__(self, sweep_dir: str, cell: Cell) -> dict:
        return run_cell(sweep_dir, cell, wait=True)

    def checkpoint(self, sweep_dir: str, cell: Cell):
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), sweep_dir, cell)


def launcher_config(name: str, user_dir=None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read ``conf/launcher/<name>.yaml``."""
    from iatrun.config import config_dir

    dirs = ([Path(user_dir) / "launcher"] if user_dir else []) + [config_dir() / "launcher"]
    for d in dirs:
        if (d / f"{name}.yaml").is_file():
            cfg = yaml.safe_load((d / f"{name}.yaml").read_text()) or {}
            cfg.update(overrides or {})
            return cfg
    known = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
    raise IatrunError(f"unknown launcher {name!r} (known: none, {', '.join(known)})")


def run_submitit(
    sweep_dir: Path,
    cells: Sequence[Cell],
    launcher: Mapping[str, Any],
    on_done: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Submit ``cells`` as one job array (SLURM, or local processes) and wait for them."""
    import submitit

    params = dict(launcher)
    cluster = params.pop("cluster")
    executor = submitit.AutoExecutor(folder=str(Path(sweep_dir) / ".submitit" / "%j"), cluster=cluster)
    executor.update_parameters(**params)
    jobs = executor.map_array(CellJob(), [str(sweep_dir)] * len(cells), list(cells))
    by_job = {j.job_id: c for j, c in zip(jobs, cells)}
    rows = []
    for job in submitit.helpers.as_completed(jobs):
        cell = by_job[job.job_id]
        try:
            row = job.result()
        except Exception as e:  # the job itself died (killed, node lost): recorded, rerun on resume
            row = {
                "key": cell.key,
                "state": "failed",
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
            }
        rows.append(row)
        if on_done:
            on_done(row)
    return rows
