"""Does a declared budget rank settings as the calibrated budget does? (``budget-check.md``)

A declared budget (``conf/budget/<name>.yaml``, e.g. the protocol study's) may stand in for the
calibrated one only where it orders the settings alike. A sweep that runs the same settings at
both — the ``study-check`` grid — gets, per task and declared budget, the Spearman rank
correlation (:func:`scipy.stats.spearmanr`, ties ranked by their mean rank) of the task's main
metric (held-out MSE, training accuracy) over the settings it has at both, with its two-sided p,
and whether it reaches :data:`BAR`. A setting is a model, its bases, mesh ratio, method, norm,
wavelet family and seed; the budget's own keys (steps, width, depth, points) and the learning rate
(each budget tunes its own) are what may differ.

This module computes and writes; whether a budget counts as validated is recorded by hand in its
YAML file (``validated``, ``spearman``), so a verdict never rests on an unreviewed check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from iatrun.report.budget import BUDGET, _column, calibrated, claim_cells, declared
from iatrun.report.collect import MAIN

BAR = 0.6  # the rank correlation a declared budget needs, per task
SETTING = ("model", "basis_in", "basis_out", "mesh_ratio", "method", "norm", "model.wavelets", "seed")


@dataclass(frozen=True)
class Check:
    task: str
    budget: str  # the declared budget's name
    pairs: pd.DataFrame  # one row per setting: setting, calibrated, declared (the metric at each)
    rho: float | None  # None below 3 settings
    p: float | None

    @property
    def meets(self) -> bool:
        return self.rho is not None and self.rho >= BAR


def _at(cells: pd.DataFrame, task: str, want: dict) -> pd.Series:
    """Which of ``cells`` run exactly at the budget ``want`` (steps, width, depth, points)."""
    hit = pd.Series(True, index=cells.index)
    for key in BUDGET:
        hit &= _column(cells, key, task) == want.get(key)
    return hit


def _settings(cells: pd.DataFrame) -> pd.Series:
    """A label per cell: the model (or its basis pair) and every other setting key that varies."""
    present = [k for k in SETTING[3:] if k in cells]
    varying = [k for k in present if cells[k].dropna().astype(str).nunique() > 1]

    def label(row: pd.Series) -> str:
        parts = [
            f"{row['basis_in']}/{row['basis_out']}" if row.get("model") == "iat" else str(row.get("model"))
        ]
        parts += [f"{k.split('.')[-1]} {row[k]}" for k in varying if not pd.isna(row[k])]
        return ", ".join(parts)

    return cells.apply(label, axis=1) if len(cells) else pd.Series(dtype=str)


def checks(df: pd.DataFrame) -> list[Check]:
    """Every (task, declared budget) for which the sweep has settings at both budgets."""
    out = []
    for task, (metric, _) in MAIN.items():
        cells = claim_cells(df, task)
        if cells.empty or metric not in cells:
            continue
        cells = cells[pd.to_numeric(cells[metric], errors="coerce").notna()]
        full = cells[_at(cells, task, calibrated(task))]
        for name, spec in declared().items():
            want = spec.get(task)
            if not isinstance(want, dict) or full.empty:
                continue
            small = cells[_at(cells, task, want)]
            if small.empty:
                continue
            both = pd.concat([full, small])
            labels = _settings(both)
            a = pd.Series(
                full[metric].astype(float).values, index=labels.loc[full.index].values, name="calibrated"
            )
            b = pd.Series(
                small[metric].astype(float).values, index=labels.loc[small.index].values, name="declared"
            )
            pairs = pd.concat([a, b], axis=1, join="inner").rename_axis("setting").reset_index()
            rho = p = None
            if len(pairs) >= 3:
                from scipy.stats import spearmanr

                res = spearmanr(pairs["calibrated"], pairs["declared"])
                rho, p = float(res.statistic), float(res.pvalue)
            out.append(Check(task, name, pairs, rho, p))
    return out


def budget_check_md(name: str, found: list[Check]) -> str:
    lines = [
        f"# Budget check: `{name}`",
        "",
        "Does each declared budget (`conf/budget/<name>.yaml`) rank the settings as the calibrated "
        "budget does? Spearman ρ of the task's main metric over the settings run at both "
        f"(`scipy.stats.spearmanr`, ties at their mean rank); a declared budget needs ρ ≥ {BAR} per task. "
        "The YAML file records the figure and `validated` once it has been reviewed.",
        "",
        "| task | declared budget | settings | Spearman ρ | p (two-sided) | ρ ≥ " + f"{BAR} |",
        "|---|---|---|---|---|---|",
    ]
    for c in found:
        rho = "n/a (fewer than 3 settings)" if c.rho is None else f"{c.rho:.3f}"
        p = "n/a" if c.p is None else f"{c.p:.3g}"
        lines.append(
            f"| {c.task} | {c.budget} | {len(c.pairs)} | {rho} | {p} | {'yes' if c.meets else 'no'} |"
        )
    for c in found:
        metric = MAIN[c.task][0]
        lines += ["", f"## {c.task}: {metric}, calibrated against {c.budget}", ""]
        lines += ["| setting | calibrated | rank | declared | rank |", "|---|---|---|---|---|"]
        ranks = c.pairs[["calibrated", "declared"]].rank()
        for i, row in c.pairs.iterrows():
            lines.append(
                f"| {row['setting']} | {row['calibrated']:.4g} | {ranks.loc[i, 'calibrated']:g} "
                f"| {row['declared']:.4g} | {ranks.loc[i, 'declared']:g} |"
            )
        ties = c.pairs[c.pairs.duplicated(["calibrated", "declared"], keep=False)]
        if len(ties):
            lines += [
                "",
                f"Equal metrics at both budgets: {', '.join(ties['setting'])} (each enters ρ as a setting "
                "of its own, at tied ranks; rect/rect IAT-ReLU is ReLU).",
            ]
    return "\n".join(lines) + "\n"
