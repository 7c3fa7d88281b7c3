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


@cache
def declared() -> dict[str, dict]:
    """The named budgets below the calibrated one (``conf/budget/<name>.yaml``): per task its steps,
    width, depth and points, and whether it has been ``validated`` against the calibrated budget."""
    import yaml

    from iatrun.config import config_dir

    files = sorted((config_dir() / "budget").glob("*.yaml"))
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in files}


def validated(spec: dict, task: str) -> bool:
    """Whether a declared budget is validated for ``task``: ``validated: true`` (every task) or
    ``validated: {task: true, ...}`` (per task; a task left out is not)."""
    v = spec.get("validated")
    return v is True or (isinstance(v, dict) and v.get(task) is True)


def named(cells: pd.DataFrame, task: str) -> tuple[str, dict] | None:
    """The declared budget that every one of ``cells`` (of ``task``) runs at exactly, if there is one."""
    for name, spec in declared().items():
        want = spec.get(task)
        if isinstance(want, dict) and all((_column(cells, k, task) == want.get(k)).all() for k in BUDGET):
            return name, spec
    return None


def toy_reasons(df: pd.DataFrame, task: str) -> list[str]:
    """Why ``task``'s cells are a toy budget ("steps 60 < 8000"); [] if they are not: at or above the
    calibrated budget, or exactly at a declared budget whose ``validated`` is true."""
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
    if out and (found := named(cells, task)):
        name, spec = found
        if validated(spec, task):
            return []
        out = [f"the {name} budget, not validated against the calibrated one (conf/budget/{name}.yaml)"]
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


def _edge_count(cells: pd.DataFrame) -> int:
    """How many cells' chosen rate is still at an edge of the tuning grid (metric ``lr_at_edge``)."""
    if "lr_at_edge" not in cells:
        return 0
    return int(cells["lr_at_edge"].map(lambda v: isinstance(v, bool | np.bool_) and bool(v)).sum())


def rate_as_run(cells: pd.DataFrame) -> pd.Series:
    """Each cell's learning rate as it trained: the chosen one where ``lr`` is ``auto``, else ``lr``
    (NaN where neither is known)."""
    lr = cells["lr"] if "lr" in cells else pd.Series(np.nan, index=cells.index)
    chosen = cells["lr_chosen"] if "lr_chosen" in cells else pd.Series(np.nan, index=cells.index)
    return pd.to_numeric(lr.mask(lr.astype(str) == "auto", chosen), errors="coerce")


def lr_text(cells: pd.DataFrame) -> str:
    """The learning rate(s) as run: ``lr 0.003``, or for ``train.lr: auto`` the rates chosen per
    setting and how many cells' choice is at the tuning grid's edge."""
    if "lr" not in cells:
        return "lr ?"
    auto = cells["lr"].astype(str) == "auto"
    parts = [f"lr {_values(cells.loc[~auto, 'lr'])}"] if (~auto).any() or cells.empty else []
    if auto.any():
        chosen = rate_as_run(cells.loc[auto])
        text = "lr chosen per setting (auto)"
        if chosen.notna().any():
            lo, hi = _one(float(chosen.min())), _one(float(chosen.max()))
            text += f": {lo}" if lo == hi else f": {lo} to {hi}"
        text += f", {_edge_count(cells.loc[auto])} of {int(auto.sum())} at the grid's edge"
        parts.append(text)
    return "; ".join(parts)


def protocol(cells: pd.DataFrame, task: str) -> str:
    """What ``cells`` of ``task`` ran at: budget, learning rate, norm and (where recorded) wavelets:
    ``steps 4000, width 128, depth 3, training points 1000; lr 0.003; norm gain; wavelets single``."""
    run = ", ".join(f"{LABEL[k]} {_values(_column(cells, k, task))}" for k in BUDGET)
    norm = _values(cells["norm"].fillna("none")) if "norm" in cells else "?"
    out = f"{run}; {lr_text(cells)}; norm {norm}"
    if "model.wavelets" in cells and cells["model.wavelets"].notna().any():
        out += f"; wavelets {_values(cells['model.wavelets'])}"
    return out


def _at_or_validated(cells: pd.DataFrame, task: str) -> str:
    found = named(cells, task)
    if found is None:
        return "the calibrated budget (or above)"
    name, spec = found
    rho = (spec.get("spearman") or {}).get(task)
    return (
        f"the {name} budget, validated against the calibrated one (Spearman {rho}; conf/budget/{name}.yaml)"
    )


def budget_lines(df: pd.DataFrame) -> list[str]:
    """One header line per task: the budget as run, the learning rate(s), the norm, the wavelets,
    and whether that is the calibrated budget."""
    lines = []
    for task in MAIN:
        cells = claim_cells(df, task)
        if cells.empty:
            continue
        cal = calibrated(task)
        reasons = toy_reasons(df, task)
        status = (
            f"**below the calibrated budget** ({'; '.join(reasons)})"
            if reasons
            else _at_or_validated(cells, task)
        )
        calib = ", ".join(f"{LABEL[k]} {cal[k]}" for k in BUDGET)
        lines.append(f"- {task}: {protocol(cells, task)} — {status}; calibrated: {calib}")
    return lines
