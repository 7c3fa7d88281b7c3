"""The cell protocol: claim (lock) → state → train → finish, for every engine.

The sweep folder is the only shared state (its ``sweep.yaml``: :mod:`iatrun.sweep.spec`). Each cell
lives in ``cells/<key>/``, a run folder (:mod:`iatrun.results`) plus ``done.json``, written last and
atomically: a cell is finished exactly when ``done.json`` is present, parses, matches the cell's
config and its run folder is sound. A cell is claimed through an OS file lock in ``locks/``
(released by the kernel if the process dies), so two sweeps, two workers or a requeued SLURM task
pointed at one folder never run a cell twice.

Every engine and launcher goes through :func:`claimed` (which cells of a work item are this
process's to run) and ends a cell with :func:`finish_cell` or :func:`fail_cell`, so a cell folder
does not tell which engine trained it. ``--force`` goes through :func:`reset_cell`.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from iatrun.files import read_json, remove_stages, staged_dir, write_json
from iatrun.results import check_run, save_result
from iatrun.sweep.grid import Cell

DONE = "done.json"  # written last: the cell is complete
ERROR = "error.json"  # the cell crashed; rerun on resume


# --- cell state --------------------------------------------------------------------------------


def tune_dir(sweep_dir: str | Path) -> Path:
    """Where a sweep keeps each setting's learning-rate choice (:func:`iatrun.tune.ensure`)."""
    from iatrun.tune import TUNE_DIR

    return Path(sweep_dir) / TUNE_DIR


def cell_dir(sweep_dir: str | Path, key: str) -> Path:
    return Path(sweep_dir) / "cells" / key


def cell_state(sweep_dir: str | Path, cell: Cell) -> tuple[str, str]:
    """(state, detail): state is done | missing | failed | incomplete | stale."""
    return key_state(sweep_dir, cell.key, cell.config_hash)


def key_state(sweep_dir: str | Path, key: str, expected_hash: str | None) -> tuple[str, str]:
    """:func:`cell_state` by key; ``expected_hash`` None accepts any config."""
    folder = cell_dir(sweep_dir, key)
    if not folder.exists():
        return "missing", ""
    done = folder / DONE
    if not done.is_file():
        if (folder / ERROR).is_file():
            try:
                return "failed", read_json(folder / ERROR).get("error", "")
            except (OSError, ValueError):
                return "failed", "error.json unreadable"
        return "incomplete", "no done.json"
    try:
        marker = read_json(done)
    except (OSError, ValueError):
        return "incomplete", "done.json unreadable"
    if expected_hash is not None and marker.get("config_hash") != expected_hash:
        return "stale", "config changed since it ran"
    problem = check_run(folder)
    if problem:
        return "incomplete", problem
    return "done", marker.get("status", "")


def failed_config(sweep_dir: str | Path, key: str) -> dict[str, Any]:
    """The config a failed cell recorded in its ``error.json`` ({} if unreadable)."""
    try:
        return read_json(cell_dir(sweep_dir, key) / ERROR).get("config") or {}
    except (OSError, ValueError):
        return {}


# --- claiming ----------------------------------------------------------------------------------


def _lock_path(sweep_dir: str | Path, key: str) -> Path:
    return Path(sweep_dir) / "locks" / (key.replace("/", "__") + ".lock")


def claim(sweep_dir: str | Path, cell: Cell, wait: bool = False):
    """The cell's acquired file lock, or None if another process holds it (and not ``wait``)."""
    from filelock import FileLock, Timeout

    lock_file = _lock_path(sweep_dir, cell.key)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def claim_all(sweep_dir: str | Path, cells: Sequence[Cell], wait: bool = False) -> tuple[list, list, dict]:
    """Claim ``cells``: (the cells this process must train, rows for the others, the held locks by key).

    A cell another process holds gives a ``busy`` row (unless ``wait``), a finished one a ``done``
    row with ``ran: False`` (its lock is released at once). The caller releases the other locks.
    """
    todo: list[Cell] = []
    rows: list[dict] = []
    locks: dict[str, Any] = {}
    try:
        for cell in cells:
            lock = claim(sweep_dir, cell, wait=wait)
            if lock is None:
                rows.append({"key": cell.key, "state": "busy"})
                continue
            locks[cell.key] = lock
            state, detail = cell_state(sweep_dir, cell)
            if state == "done":
                rows.append({"key": cell.key, "state": "done", "status": detail, "ran": False})
                locks.pop(cell.key).release()
            else:
                todo.append(cell)
    except BaseException:
        for lock in locks.values():
            lock.release()
        raise
    return todo, rows, locks


@contextmanager
def claimed(sweep_dir: str | Path, cells: Sequence[Cell], wait: bool = False) -> Iterator[tuple[list, list]]:
    """:func:`claim_all` as a block: the locks are held until it ends, so finish the cells inside it."""
    todo, rows, locks = claim_all(sweep_dir, cells, wait=wait)
    try:
        yield todo, rows
    finally:
        for lock in locks.values():
            lock.release()


# --- running and ending a claimed cell ---------------------------------------------------------


def clear_cell(sweep_dir: str | Path, cell: Cell) -> dict:
    """Remove a failed, stale or half-written attempt (the caller holds the lock); the run config.

    The returned config is the cell's, with ``out`` set to its folder.
    """
    import shutil

    folder = cell_dir(sweep_dir, cell.key)
    if folder.exists():
        shutil.rmtree(folder)
    remove_stages(folder)  # staging folders of an attempt that was killed
    cfg = copy.deepcopy(cell.config)
    cfg["out"] = str(folder)
    return cfg


def execute_cell(sweep_dir: str | Path, cell: Cell) -> dict:
    """Train one claimed cell with the serial engine (:func:`iatrun.train.train`) and finish it."""
    from iatrun.checkpoint import checkpoint_path
    from iatrun.live import LiveLog
    from iatrun.train import train, trial
    from iatrun.tune import resolve

    cfg = clear_cell(sweep_dir, cell)  # the checkpoint beside the folder survives: a requeue resumes
    folder = cell_dir(sweep_dir, cell.key)
    ckpt = checkpoint_path(folder)
    start = time.time()
    try:
        chosen, record = resolve(cfg, trial, tune_dir(sweep_dir))
        live = LiveLog.for_run(cfg, folder, events_root=Path(sweep_dir), name=cell.key)
        result = train(chosen, checkpoint=ckpt, live=live).tuned(cfg, record)
    except Exception as e:  # a crashing cell is recorded; the sweep goes on
        return fail_cell(sweep_dir, cell, e)
    row = finish_cell(sweep_dir, cell, result, time.time() - start)
    if row["state"] == "done":
        ckpt.unlink(missing_ok=True)
        live.discard()
    return row


def finish_cell(sweep_dir: str | Path, cell: Cell, result, seconds: float) -> dict:
    """Write a trained cell's run folder (staged, then renamed), then ``done.json``; return its row.

    ``result`` is an :class:`iatrun.train.Result` whose ``config`` has ``out`` set (see
    :func:`clear_cell`); ``seconds`` (training time) is added to the time spent here in ``done.json``.
    """
    folder = cell_dir(sweep_dir, cell.key)
    start = time.time()
    try:
        result.metrics.update(region_metrics(result))
        with staged_dir(folder) as stage:
            save_result(result, stage, title=cell.key)
        status = result.metrics["status"]
        marker = {
            "status": status,
            "config_hash": cell.config_hash,
            "finished": datetime.now().isoformat(),
            "seconds": seconds + time.time() - start,
        }
        if getattr(result, "resumed_from", None):
            marker["resumed_from_step"] = result.resumed_from  # continued from a checkpoint
        write_json(folder / DONE, marker)
    except Exception as e:
        return fail_cell(sweep_dir, cell, e)
    return {"key": cell.key, "state": "done", "status": status, "ran": True, **result.metrics}


def region_metrics(result) -> dict:
    """A finished fitting cell's exact region count and Lipschitz constant (:mod:`iatrun.analysis.
    regions`), computed once here, in the worker that trained it, so the report only reads them;
    {} for a cell they do not apply to (memorisation, diverged) or cannot analyse (tanh, norms)."""
    import copy

    from iatrun.analysis.regions import summarize

    if result.task.name != "fitting" or result.metrics.get("status") != "ok":
        return {}
    try:
        s = summarize(copy.deepcopy(result.model).double())  # a copy: the saved model keeps its dtype
    except Exception:  # a network the region analysis does not cover
        return {}
    return {"num_regions": s["num_regions"], "lipschitz": s["lipschitz"]}


def fail_cell(sweep_dir: str | Path, cell: Cell, error: Exception) -> dict:
    """Record a crashed cell in ``error.json`` (call it inside the ``except``); return its row."""
    folder = cell_dir(sweep_dir, cell.key)
    folder.mkdir(parents=True, exist_ok=True)
    err = f"{type(error).__name__}: {error}"
    record = {"status": "failed", "error": err, "traceback": traceback.format_exc(), "config": cell.config}
    write_json(folder / ERROR, record)
    return {"key": cell.key, "state": "failed", "status": "failed", "error": err, "ran": True}


def run_cell(sweep_dir: str | Path, cell: Cell, wait: bool = False) -> dict:
    """Claim, run and mark one cell with the serial engine; return its summary row.

    With ``wait`` the call blocks until another holder of the cell is done.
    """
    with claimed(sweep_dir, [cell], wait=wait) as (todo, rows):
        return execute_cell(sweep_dir, todo[0]) if todo else rows[0]


def reset_cell(sweep_dir: str | Path, cell: Cell) -> None:
    """Make a finished cell pending again (``--force``), under its lock; a busy cell is left alone."""
    lock = claim(sweep_dir, cell)
    if lock is None:
        return
    try:
        (cell_dir(sweep_dir, cell.key) / DONE).unlink(missing_ok=True)
    finally:
        lock.release()
