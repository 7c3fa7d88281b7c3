"""Per-seed scores the claims compare, the basis groups they name, and what a claim's grid needs.

A score is larger-is-better in the claim's units: accuracy in % (differences in points) or
−log10 MSE (differences in decades).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.stats import PARTIAL, Verdict, paired_t, rule, tested, untested
from iatrun.report.tables import iat_cells

# seed → (pair table of a task's score, {activation: score}), see per_seed
Seeds = dict[int, tuple[pd.DataFrame, dict]]

UNIT = {"fitting": "decades", "memorization": "points"}  # of a score difference


# --- basis groups, from the registry so that a newly registered basis is counted ----------------
# (iatrun.nn is imported inside the functions: it pulls in torch, which the tables do not need)


def all_bases() -> list[str]:
    """Every registered table basis (dyadic family members excluded): a complete table's rows and columns."""
    from iatrun.nn.bases import BASES

    return BASES.names(dyadic_of=None)


def local_bases() -> list[str]:
    """Bases that are neither global nor zero-integral (rect, pwl, pwq)."""
    from iatrun.nn.bases import BASES

    return BASES.names(global_=False, zero_integral=False, dyadic_of=None)


def zero_integral_bases() -> list[str]:
    """Bases whose functions integrate to zero (fourier, pwl-w, rect-w)."""
    from iatrun.nn.bases import BASES

    return BASES.names(zero_integral=True, dyadic_of=None)


def wavelet_bases() -> list[str]:
    """Zero-integral bases that are local (pwl-w, rect-w)."""
    from iatrun.nn.bases import BASES

    return BASES.names(global_=False, zero_integral=True, dyadic_of=None)


# --- per-seed scores ---------------------------------------------------------------------------


def score(task: str, values):
    """Larger is better: accuracy as is, MSE as -log10."""
    v = np.asarray(values, dtype=float)
    return v if MAIN[task][1] else -np.log10(np.maximum(v, 1e-300))


def per_seed(df: pd.DataFrame, task: str) -> Seeds:
    """seed → (pair table of the task's score, {activation: score})."""
    metric = MAIN[task][0]
    iat = iat_cells(df)
    ok = ok_cells(df)
    out = {}
    for seed in sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []:
        sub = iat[(iat["task"] == task) & (iat["seed"] == seed)] if not iat.empty else iat
        table = (
            sub.pivot_table(index="basis_in", columns="basis_out", values=metric)
            if not sub.empty and metric in sub
            else pd.DataFrame()
        )
        table = table.apply(lambda c: score(task, c)) if not table.empty else table
        base = ok[(ok["task"] == task) & (ok["seed"] == seed)]
        acts = {
            m: float(score(task, g[metric]).mean())
            for m, g in base.groupby("model")
            if m not in ("iat", "decoupled") and metric in g
        }
        acts = {m: v for m, v in acts.items() if np.isfinite(v)}
        if not table.empty or acts:
            out[seed] = (table, acts)
    return out


def mean_of(table: pd.DataFrame, rows=None, cols=None) -> float:
    """Mean of the table's cells in ``rows`` × ``cols`` (None: all)."""
    t = table
    if rows is not None:
        t = t.loc[[r for r in rows if r in t.index]]
    if cols is not None:
        t = t[[c for c in cols if c in t.columns]]
    return float(np.nanmean(t.values)) if t.size else np.nan


def complete(table: pd.DataFrame, rows, cols) -> bool:
    """Every cell of ``rows`` × ``cols`` is in the table and finite."""
    rows, cols = list(rows), list(cols)
    if not rows or not cols:
        return True
    if table.empty or not set(rows) <= set(table.index) or not set(cols) <= set(table.columns):
        return False
    return bool(np.isfinite(table.loc[rows, cols].to_numpy(dtype=float)).all())


def has(seed_data: tuple[pd.DataFrame, dict], rows=(), cols=(), acts=()) -> bool:
    """One seed has every required pair (``rows`` × ``cols``) and activation."""
    table, a = seed_data
    return complete(table, rows, cols) and set(acts) <= set(a)


def in_grid(seeds: Seeds, rows=(), cols=(), acts=()) -> bool:
    """The grid has the required pairs and activations: each in some seed (a cell that failed in
    one seed only drops that seed; one that is in no seed makes the grid partial)."""
    rows, cols = list(rows), list(cols)
    for r in rows:
        for c in cols:
            if not any(
                r in tb.index and c in tb.columns and np.isfinite(tb.loc[r, c]) for tb, _ in seeds.values()
            ):
                return False
    return all(any(x in a for _, a in seeds.values()) for x in acts)


def side_fmt(task: str):
    """How a mean score is shown: accuracy in %, fitting as the MSE of the mean −log10 MSE."""
    if MAIN[task][1]:
        return lambda x: f"{x:.1f} %"
    return lambda x: f"MSE {10.0**-x:.2e}"


# --- one tested part of a claim -------------------------------------------------------------------


def signed(x: float) -> str:
    """A signed number to 3 significant digits, or n/a."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def seed_list(seeds) -> str:
    """ "seed 0" / "seeds 1, 2"."""
    seeds = list(seeds)
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"


def part(
    label: str,
    data: Seeds,
    sides: Callable[[pd.DataFrame, dict], tuple[float, float]],
    need: tuple = ((), (), ()),
    fmt: Callable[[float], str] = "{:.3g}".format,
    unit: str = "",
    judge: Callable | None = None,
) -> Verdict:
    """One tested part: ``sides(table, acts)`` gives (a, b) per seed that has ``need`` (rows, cols,
    activations), the test is on a − b; ``judge(test, diffs)`` overrides the rule (claim 1)."""
    rows, cols, acts = need
    if not data or not in_grid(data, rows, cols, acts):
        return untested(label, PARTIAL, unit)
    pairs = [sides(tb, a) for tb, a in data.values() if has((tb, a), rows, cols, acts)]
    pairs = [(x, y) for x, y in pairs if np.isfinite(x) and np.isfinite(y)]
    diffs = [x - y for x, y in pairs]
    test = paired_t(diffs)
    verdict = judge(test, diffs) if judge else rule(test)
    ours = "n/a"
    if pairs:
        a, b = np.mean(pairs, axis=0)
        ours = f"{fmt(a)} vs {fmt(b)}"
    return tested(label, test, unit, verdict, ours=ours)
