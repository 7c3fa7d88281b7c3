"""The budget a sweep ran at, against the calibrated one, and the report header's account of it.

The calibrated budget of a task is its default composed config (``task=<task> model=relu``):
``train.steps``, ``model.width``, ``model.depth`` and the training points (``task.n_train`` /
``task.n_points``). A cell with fewer steps, a smaller width or depth, or fewer points is a toy
cell, and a task with a toy cell gets no verdict (SPEC §6b: toy budgets get no verdict).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from iatrun.report.collect import MAIN, ok_cells

POINTS = {"fitting": "n_train", "memorization": "n_points"}  # the task's training-set size key
BUDGET = ("steps", "width", "depth", "points")  # compared against the calibrated budget
LABEL = {"steps": "steps", "width": "width", "depth": "depth", "points": "training points"}


@cache
def calibrated(task: str) -> dict:
    """The task's calibrated budget: {steps, width, depth, points} of its default config."""
    from iatrun.config import compose

    cfg = compose([f"task={task}", "model=relu"])
    return {
        "steps": cfg["train"]["steps"],
        "width": cfg["model"]["width"],
        "depth": cfg["model"]["depth"],
        "points": cfg["task"][POINTS[task]],
    }


def claim_cells(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The ok cells of ``task`` the claims read: relu/tanh/sigmoid and the IAT on the mesh."""
    ok = ok_cells(df)
    if ok.empty or "task" not in ok:
        return ok
    sub = ok[(ok["task"] == task) & (ok["model"] != "decoupled")]
    if "method" in sub:
        sub = sub[sub["method"].astype(object).fillna("mesh") == "mesh"]
    return sub


def _column(cells: pd.DataFrame, key: str, task: str) -> pd.Series:
    col = POINTS[task] if key == "points" else key
    if col not in cells:
        return pd.Series(np.nan, index=cells.index)
    return pd.to_numeric(cells[col], errors="coerce")


def toy_reasons(df: pd.DataFrame, task: str) -> list[str]:
    """Why ``task``'s cells are below the calibrated budget ("steps 60 < 4000"); [] if they are not."""
    cells = claim_cells(df, task)
    if cells.empty:
        return []
    cal, out = calibrated(task), []
    for key in BUDGET:
        vals = _column(cells, key, task)
        if vals.isna().any():
            out.append(f"{LABEL[key]} unknown")
        elif (vals < cal[key]).any():
            out.append(f"{LABEL[key]} {_values(vals[vals < cal[key]])} < {cal[key]}")
    return out


def toy_tasks(df: pd.DataFrame) -> dict[str, list[str]]:
    """task → the reasons its cells are a toy budget, for the tasks that are."""
    return {t: r for t in MAIN if (r := toy_reasons(df, t))}


def _one(v) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(v)


def _values(s: pd.Series) -> str:
    """The distinct values of a column, '/'-joined ("60", "0.001/0.003", "?")."""
    out = [_one(v) for v in sorted(set(s.dropna().tolist()), key=str)]
    return "/".join(out) if out else "?"


def budget_lines(df: pd.DataFrame) -> list[str]:
    """One header line per task: the budget as run, the learning rate(s), the norm, and whether
    that is the calibrated budget."""
    lines = []
    for task in MAIN:
        cells = claim_cells(df, task)
        if cells.empty:
            continue
        cal = calibrated(task)
        run = ", ".join(f"{LABEL[k]} {_values(_column(cells, k, task))}" for k in BUDGET)
        lr = _values(cells["lr"]) if "lr" in cells else "?"
        norm = _values(cells["norm"].fillna("none")) if "norm" in cells else "?"
        reasons = toy_reasons(df, task)
        status = (
            f"**below the calibrated budget** ({'; '.join(reasons)})"
            if reasons
            else "the calibrated budget (or above)"
        )
        calib = ", ".join(f"{LABEL[k]} {cal[k]}" for k in BUDGET)
        lines.append(f"- {task}: {run}; lr {lr}; norm {norm} — {status}; calibrated: {calib}")
    return lines
