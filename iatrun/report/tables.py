"""The sweep's tables: basis pairs in the paper's layout, scalar baselines, mesh ratio, IAT variants."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd

from iatrun.report.collect import BASELINE_COLUMN, MAIN, ok_cells
from iatrun.report.stats import paired_t


def basis_order(values) -> list[str]:
    """The basis names among ``values`` in registry order, unknown names after them, sorted."""
    from iatrun.nn.bases import BASES

    names = BASES.names(dyadic_of=None)
    present = [v for v in values if isinstance(v, str)]
    return [b for b in names if b in present] + sorted(set(present) - set(names))


def default_mesh_ratio() -> int:
    """The mesh ratio an ``iat`` model gets when its config names none."""
    from iatrun.nn.models import MODELS

    return inspect.signature(MODELS.get("iat")).parameters["mesh_ratio"].default


def main_mesh_ratio(iat: pd.DataFrame) -> int | None:
    """The mesh ratio the 6×6 tables use: the default when present, else the most common."""
    ratios = iat["mesh_ratio"].dropna()
    if ratios.empty:
        return None
    default = default_mesh_ratio()
    return default if (ratios == default).any() else int(ratios.mode().iloc[0])


def iat_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The ok cells of the coupled, discretized IAT at the main mesh ratio (the paper's tables)."""
    ok = ok_cells(df)
    if ok.empty or "model" not in ok:
        return ok
    iat = ok[ok["model"] == "iat"]
    if "method" in iat:
        iat = iat[iat["method"].astype(object).fillna("mesh") == "mesh"]
    r = main_mesh_ratio(iat)
    return iat[iat["mesh_ratio"] == r] if r is not None else iat


def pair_table(df: pd.DataFrame, task: str, metric: str, agg: str = "mean") -> pd.DataFrame:
    """basis_in × basis_out table of ``metric`` for ``task`` (mean or std over seeds)."""
    iat = iat_cells(df)
    iat = iat[iat["task"] == task] if not iat.empty else iat
    if iat.empty or metric not in iat:
        return pd.DataFrame()
    t = iat.pivot_table(index="basis_in", columns="basis_out", values=metric, aggfunc=agg)
    t = t.reindex(index=basis_order(t.index), columns=basis_order(t.columns))
    t.index.name, t.columns.name = "basis_in", None
    return t


def baselines_table(df: pd.DataFrame) -> pd.DataFrame:
    """relu / tanh / sigmoid: each task's main metric, mean and std over seeds."""
    ok = ok_cells(df)
    rows = {}
    for act in ("relu", "tanh", "sigmoid"):
        sub = ok[ok["model"] == act] if not ok.empty else ok
        row = {}
        for task, (metric, _) in MAIN.items():
            vals = sub[sub["task"] == task][metric] if metric in sub else pd.Series(dtype=float)
            row[BASELINE_COLUMN[task]] = vals.mean() if len(vals) else np.nan
            row[BASELINE_COLUMN[task] + "_std"] = vals.std() if len(vals) > 1 else np.nan
        if any(not math.isnan(v) for v in row.values()):
            rows[act] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "activation"
    return out


def on_log10(metric: str) -> bool:
    """Whether ``metric``'s seeds are averaged and tested on log10 (an MSE) rather than as they are."""
    return metric.endswith("mse")


def centre(values: pd.Series) -> float:
    """The centre :func:`mesh_table` plots: the geometric mean of an MSE, the mean of anything else."""
    v = values.to_numpy(dtype=float)
    return float(10.0 ** np.log10(v).mean()) if on_log10(str(values.name)) else float(v.mean())


def mesh_table(df: pd.DataFrame) -> pd.DataFrame:
    """Main metric against mesh ratio, per task and basis pair: its mean and standard deviation over
    seeds, and a centre with its 95 % t interval over seeds on the scale the claims test (log10 for
    an MSE, so the centre is the geometric mean and the interval stays positive), with region counts."""
    ok = ok_cells(df)
    iat = ok[ok["model"] == "iat"] if not ok.empty else ok
    if iat.empty or iat["mesh_ratio"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    for (task, bi, bo, r), g in iat.groupby(["task", "basis_in", "basis_out", "mesh_ratio"]):
        metric = MAIN[task][0]
        values = g[metric].to_numpy(dtype=float)
        log = on_log10(metric)
        test = paired_t(np.log10(values) if log else values)
        back = (lambda v: 10.0**v) if log else (lambda v: v)
        row = {
            "task": task,
            "pair": f"{bi}/{bo}",
            "mesh_ratio": int(r),
            "metric": metric,
            "mean": values.mean(),
            "std": g[metric].std(),
            "centre": back(test.effect),
            "ci_low": back(test.ci_low),
            "ci_high": back(test.ci_high),
            "scale": "log10" if log else "linear",
            "seeds": len(g),
        }
        if "num_regions" in g:
            row["num_regions"] = g["num_regions"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def variant_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The ok fitting cells of iat and decoupled models, with a ``variant`` column (model-method)."""
    ok = ok_cells(df)
    if ok.empty or "method" not in ok:
        return pd.DataFrame()
    sub = ok[ok["model"].isin(["iat", "decoupled"]) & (ok["task"] == "fitting")].copy()
    sub["variant"] = sub["model"] + "-" + sub["method"].astype(object).fillna("mesh")
    return sub


def variant_table(df: pd.DataFrame) -> pd.DataFrame:
    """For sweeps over the IAT's evaluation (mesh / exact, coupled / decoupled): fitting metric by
    basis pair and variant, mean and std over seeds. Empty unless such variants are present."""
    sub = variant_cells(df)
    if sub.empty or sub["variant"].nunique() < 2:
        return pd.DataFrame()
    g = sub.groupby(["basis_in", "basis_out", "variant"])["heldout_mse"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(), "seeds": g.count()}).reset_index()
    out.insert(0, "pair", out.pop("basis_in") + "/" + out.pop("basis_out"))
    return out


def spearman(ours: pd.DataFrame, theirs: pd.DataFrame) -> float:
    """Rank correlation of two basis tables over the cells both have."""
    from scipy.stats import spearmanr

    rows = [r for r in theirs.index if r in ours.index]
    cols = [c for c in theirs.columns if c in ours.columns]
    if len(rows) * len(cols) < 3:
        return float("nan")
    a = ours.loc[rows, cols].values.ravel()
    b = theirs.loc[rows, cols].values.ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # too few cells, or a constant table: no ranking to correlate
    return float(spearmanr(a, b).statistic)
