"""Launchers: a sweep's pending cells as a submitit job array (SLURM, or local processes).

A launcher is a YAML file in ``conf/launcher/`` or in the user's ``--config-dir``/launcher/; its
``cluster`` picks submitit's backend and every other key is a submitit parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from iatrun.errors import IatrunError
from iatrun.sweep.cells import run_cell
from iatrun.sweep.grid import Cell


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
