"""Sweep results → cells.csv, tables in the paper's layout, figures, and report.md with the claims.

Everything here reads only the sweep folder, so `iatrun report DIR` rebuilds it at any time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from iatrun.report import paper
from iatrun.files import write_text
from iatrun.sweep.cells import cell_dir, key_state

# The headline metric of each task, as the paper reports it, and whether larger is better.
MAIN = {"fitting": ("heldout_mse", False), "memorization": ("accuracy_pct", True)}
BASELINE_COLUMN = {"fitting": "fitting_mse", "memorization": "memorization_accuracy_pct"}
CONFIG_COLUMNS = {
    "task": ("task", "name"),
    "model": ("model", "kind"),
    "basis_in": ("model", "basis_in"),
    "basis_out": ("model", "basis_out"),
    "mesh_ratio": ("model", "mesh_ratio"),
    "method": ("model", "method"),
    "width": ("model", "width"),
    "depth": ("model", "depth"),
    "steps": ("train", "steps"),
    "lr": ("train", "lr"),
    "seed": ("seed",),
}


# --- cells.csv ---------------------------------------------------------------------------------


def _get(cfg: dict, path: tuple) -> object:
    for p in path:
        if not isinstance(cfg, dict) or p not in cfg:
            return None
        cfg = cfg[p]
    return cfg


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
    return out


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per cell: state, the config values that matter and vary, and every metric."""
    spec = yaml.safe_load((Path(sweep_dir) / "sweep.yaml").read_text())
    rows, flats = [], []
    for key, digest in spec["cells"].items():
        state, detail = key_state(sweep_dir, key, digest)
        folder = cell_dir(sweep_dir, key)
        row: dict = {"key": key, "state": state}
        cfg, metrics = {}, {}
        if state == "done":
            cfg = yaml.safe_load((folder / "config.yaml").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
        elif state == "failed":
            row["error"] = detail
            try:
                cfg = json.loads((folder / "error.json").read_text()).get("config") or {}
            except (OSError, ValueError):
                cfg = {}
        else:
            row["error"] = detail
        for col, path in CONFIG_COLUMNS.items():
            row[col] = _get(cfg, path)
        if row["model"] not in (None, "iat", "decoupled"):
            row["basis_in"] = row["basis_out"] = row["mesh_ratio"] = row["method"] = None
        row["status"] = metrics.get("status", "failed" if state == "failed" else None)
        for k, v in metrics.items():
            if k != "status":
                row[k] = np.nan if v is None else v
        if "train_accuracy" in metrics and metrics["train_accuracy"] is not None:
            row["accuracy_pct"] = 100.0 * metrics["train_accuracy"]
        rows.append(row)
        flats.append(_flatten(cfg))
    df = pd.DataFrame(rows)
    for col in ("mesh_ratio", "width", "depth", "steps", "seed"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    # every other config value that varies across the cells gets a column too
    flat = pd.DataFrame(flats)
    known = {".".join(p) for p in CONFIG_COLUMNS.values()} | {"out"}
    for col in flat.columns:
        if col not in known and flat[col].astype(str).nunique() > 1:
            df[col] = flat[col]
    return df


def ok_cells(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["state"] == "done") & (df["status"] == "ok")] if len(df) else df


# --- tables ------------------------------------------------------------------------------------


def _basis_order(values) -> list[str]:
    from iatrun.nn.bases import BASES

    names = BASES.names()
    present = [v for v in values if isinstance(v, str)]
    return [b for b in names if b in present] + sorted(set(present) - set(names))


def main_mesh_ratio(iat: pd.DataFrame) -> int | None:
    """The mesh ratio the 6×6 tables use: 4 (the default) when present, else the most common."""
    ratios = iat["mesh_ratio"].dropna()
    if ratios.empty:
        return None
    return 4 if (ratios == 4).any() else int(ratios.mode().iloc[0])


def iat_cells(df: pd.DataFrame) -> pd.DataFrame:
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
    t = t.reindex(index=_basis_order(t.index), columns=_basis_order(t.columns))
    t.index.name, t.columns.name = "basis_in", None
    return t


def baselines_table(df: pd.DataFrame) -> pd.DataFrame:
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


def mesh_table(df: pd.DataFrame) -> pd.DataFrame:
    """Main metric (mean over seeds) against mesh ratio, per task and basis pair, with region counts."""
    ok = ok_cells(df)
    iat = ok[ok["model"] == "iat"] if not ok.empty else ok
    if iat.empty or iat["mesh_ratio"].nunique() < 2:
        return pd.DataFrame()
    rows = []
    for (task, bi, bo, r), g in iat.groupby(["task", "basis_in", "basis_out", "mesh_ratio"]):
        metric = MAIN[task][0]
        row = {
            "task": task,
            "pair": f"{bi}/{bo}",
            "mesh_ratio": int(r),
            "metric": metric,
            "mean": g[metric].mean(),
            "std": g[metric].std(),
            "seeds": len(g),
        }
        if "num_regions" in g:
            row["num_regions"] = g["num_regions"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def variant_table(df: pd.DataFrame) -> pd.DataFrame:
    """For sweeps over the IAT's evaluation (mesh / exact, coupled / decoupled): fitting metric by
    basis pair and variant, mean and std over seeds. Empty unless such variants are present."""
    ok = ok_cells(df)
    if ok.empty or "method" not in ok:
        return pd.DataFrame()
    sub = ok[ok["model"].isin(["iat", "decoupled"]) & (ok["task"] == "fitting")].copy()
    sub["variant"] = sub["model"] + "-" + sub["method"].astype(object).fillna("mesh")
    if sub["variant"].nunique() < 2:
        return pd.DataFrame()
    g = sub.groupby(["basis_in", "basis_out", "variant"])["heldout_mse"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(), "seeds": g.count()}).reset_index()
    out.insert(0, "pair", out.pop("basis_in") + "/" + out.pop("basis_out"))
    return out


def variant_verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Does exact beat discretized (coupled)? Does decoupling help (both exact)?"""
    ok = ok_cells(df)
    if ok.empty or "method" not in ok:
        return []
    sub = ok[ok["model"].isin(["iat", "decoupled"]) & (ok["task"] == "fitting")].copy()
    sub["variant"] = sub["model"] + "-" + sub["method"].astype(object).fillna("mesh")
    score = sub.assign(score=_score("fitting", sub["heldout_mse"]))
    wide = score.pivot_table(index=["seed", "basis_in", "basis_out"], columns="variant", values="score")
    out = []
    for better, worse, claim in (
        ("iat-exact", "iat-mesh", "Exact IAT-ReLU beats the discretized layer (coupled)"),
        ("decoupled-exact", "iat-exact", "Decoupling the activation pattern helps (both exact)"),
    ):
        if better not in wide or worse not in wide:
            continue
        per_seed = (wide[better] - wide[worse]).groupby(level="seed").mean().dropna().tolist()
        out.append(
            Verdict(
                claim,
                f"−log10 held-out MSE: {better} − {worse}, mean over pairs, per seed",
                f"mean {_fmt(np.mean(per_seed) if per_seed else np.nan)} over {len(per_seed)} seed(s)",
                decide(per_seed),
            )
        )
    return out


# --- the claims (SPEC §6) ----------------------------------------------------------------------


@dataclass
class Verdict:
    claim: str
    statistic: str
    ours: str
    verdict: str  # holds | fails | inconclusive


def decide(diffs: list[float]) -> str:
    """Per-seed differences, positive where the claim's direction holds.

    holds / fails when every seed agrees and the mean is more than two standard errors from 0
    (one seed: by its sign); otherwise the seeds' spread cannot separate the sides: inconclusive.
    """
    d = np.array([x for x in diffs if x is not None and np.isfinite(x)], dtype=float)
    if d.size == 0:
        return "inconclusive"
    if d.size == 1:
        return "holds" if d[0] > 0 else "fails" if d[0] < 0 else "inconclusive"
    se = d.std(ddof=1) / math.sqrt(d.size)
    if np.all(d > 0) and d.mean() > 2 * se:
        return "holds"
    if np.all(d < 0) and -d.mean() > 2 * se:
        return "fails"
    return "inconclusive"


def combine(verdicts: list[str]) -> str:
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if "fails" in verdicts:
        return "fails"
    return "inconclusive"


def _score(task: str, values):
    """Larger is better: accuracy as is, MSE as -log10."""
    v = np.asarray(values, dtype=float)
    return v if MAIN[task][1] else -np.log10(np.maximum(v, 1e-300))


def _per_seed(df: pd.DataFrame, task: str) -> dict[int, tuple[pd.DataFrame, dict]]:
    """seed → (pair table of the task's score, {activation: score})."""
    metric = MAIN[task][0]
    iat = iat_cells(df)
    ok = ok_cells(df)
    out = {}
    for seed in sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []:
        sub = iat[(iat["task"] == task) & (iat["seed"] == seed)] if not iat.empty else iat
        table = (
            sub.pivot_table(index="basis_in", columns="basis_out", values=metric)
            if not sub.empty
            else pd.DataFrame()
        )
        table = table.apply(lambda c: _score(task, c)) if not table.empty else table
        base = ok[(ok["task"] == task) & (ok["seed"] == seed)]
        acts = {m: float(_score(task, g[metric]).mean()) for m, g in base.groupby("model") if m != "iat"}
        if not table.empty or acts:
            out[seed] = (table, acts)
    return out


LOCAL = ["rect", "pwl", "pwq"]
ZERO_INTEGRAL = ["fourier", "pwl-w", "rect-w"]
WAVELETS = ["pwl-w", "rect-w"]


def _mean_of(table: pd.DataFrame, rows=None, cols=None) -> float:
    t = table
    if rows is not None:
        t = t.loc[[r for r in rows if r in t.index]]
    if cols is not None:
        t = t[[c for c in cols if c in t.columns]]
    return float(np.nanmean(t.values)) if t.size else np.nan


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def claims(df: pd.DataFrame) -> list[Verdict]:
    """Test SPEC §6's eight claims on the sweep's cells."""
    seeds = {t: _per_seed(df, t) for t in MAIN}
    out: list[Verdict] = []

    def per_task(fn: Callable[[pd.DataFrame, dict, str], float], tasks=tuple(MAIN)):
        res = {}
        for t in tasks:
            diffs = [fn(table, acts, t) for table, acts in seeds[t].values()]
            diffs = [d for d in diffs if d is not None and np.isfinite(d)]
            res[t] = (diffs, decide(diffs))
        return res

    def summary(res) -> str:
        return "; ".join(
            f"{t}: mean {_fmt(np.mean(d) if d else np.nan)} over {len(d)} seed(s)"
            for t, (d, _) in res.items()
        )

    # 1. rect/rect IAT-ReLU is ReLU: the metrics agree (score difference ≈ 0).
    def same(table, acts, t):
        if "rect" not in table.index or "rect" not in table.columns or "relu" not in acts:
            return None
        return float(table.loc["rect", "rect"] - acts["relu"])

    diffs = {t: [d for d in (same(tb, a, t) for tb, a in seeds[t].values()) if d is not None] for t in MAIN}
    verdicts = []
    for d in diffs.values():
        if not d:
            verdicts.append("inconclusive")
            continue
        small = max(abs(x) for x in d) < 0.01  # within 0.01 percentage points / 0.01 decades
        verdicts.append("holds" if small or decide([abs(x) for x in d]) != "holds" else "fails")
    out.append(
        Verdict(
            "1. rect/rect IAT-ReLU is the same as ReLU",
            "score(rect/rect) − score(relu) per seed (accuracy %, −log10 MSE); holds if ≈ 0",
            "; ".join(f"{t}: max |Δ| {max(map(abs, d)):.3g}" if d else f"{t}: n/a" for t, d in diffs.items()),
            combine(verdicts) if all(diffs.values()) else "inconclusive",
        )
    )

    # 2. zero-integral input rows beat local rows on memorisation.
    res = per_task(
        lambda tb, a, t: _mean_of(tb, ZERO_INTEGRAL) - _mean_of(tb, LOCAL) if not tb.empty else None,
        ("memorization",),
    )
    out.append(
        Verdict(
            "2. Zero-integral input bases beat local ones on memorisation (row means)",
            "mean accuracy of rows fourier, pwl-w, rect-w − rows rect, pwl, pwq",
            summary(res),
            res["memorization"][1],
        )
    )

    # 3. fourier is the best row across both tasks (mean rank of row means over the two tasks).
    def rank_gap(seed):
        ranks = []
        for t in MAIN:
            if seed not in seeds[t] or seeds[t][seed][0].empty:
                return None
            ranks.append(seeds[t][seed][0].mean(axis=1).rank(ascending=False))
        mean_rank = sum(ranks) / len(ranks)
        if "fourier" not in mean_rank:
            return None
        return float(mean_rank.drop("fourier").min() - mean_rank["fourier"])

    common = sorted(set(seeds["fitting"]) & set(seeds["memorization"]))
    gaps = [g for g in (rank_gap(s) for s in common) if g is not None]
    out.append(
        Verdict(
            "3. The fourier input basis is the best row overall across both tasks",
            "best other row's mean rank − fourier's mean rank (row means, ranked per task)",
            f"mean {_fmt(np.mean(gaps) if gaps else np.nan)} over {len(gaps)} seed(s)",
            decide(gaps),
        )
    )

    # 4. the best pair beats relu on both tasks.
    def best_vs_relu(t):
        mean_table = pair_table(df, t, MAIN[t][0])
        if mean_table.empty:
            return [], "inconclusive", ""
        s = mean_table.apply(lambda c: _score(t, c))
        bi, bo = s.stack().idxmax()
        d = [
            float(tb.loc[bi, bo] - a["relu"])
            for tb, a in seeds[t].values()
            if "relu" in a and bi in tb.index and bo in tb.columns
        ]
        return d, decide(d), f"{bi}/{bo}"

    parts, vs = [], []
    for t in MAIN:
        d, v, pair = best_vs_relu(t)
        parts.append(f"{t}: best {pair or 'n/a'}, Δ {_fmt(np.mean(d) if d else np.nan)}")
        vs.append(v)
    out.append(
        Verdict(
            "4. The best basis pair beats ReLU on both tasks",
            "score(best pair) − score(relu) per seed",
            "; ".join(parts),
            combine(vs),
        )
    )

    # 5. local output columns beat wavelet output columns.
    res = per_task(
        lambda tb, a, t: _mean_of(tb, cols=LOCAL) - _mean_of(tb, cols=WAVELETS) if not tb.empty else None
    )
    out.append(
        Verdict(
            "5. Local output bases beat the wavelet outputs (column means)",
            "mean score of columns rect, pwl, pwq − columns pwl-w, rect-w",
            summary(res),
            combine([v for _, v in res.values()]),
        )
    )

    out.append(_mesh_claim(df))

    # 7. tanh and sigmoid fit best of all but memorise worse than relu.
    def smooth_fit(tb, a, t):
        others = [v for k, v in a.items() if k not in ("tanh", "sigmoid")]
        if not tb.empty:
            others.append(float(np.nanmax(tb.values)))
        if "tanh" not in a or "sigmoid" not in a or not others:
            return None
        return min(a["tanh"], a["sigmoid"]) - max(others)

    def smooth_mem(tb, a, t):
        if not {"tanh", "sigmoid", "relu"} <= set(a):
            return None
        return a["relu"] - max(a["tanh"], a["sigmoid"])

    fit_res = per_task(smooth_fit, ("fitting",))
    mem_res = per_task(smooth_mem, ("memorization",))
    out.append(
        Verdict(
            "7. tanh and sigmoid fit smooth targets best, but memorise worse than ReLU",
            "fitting: −log10 MSE of the worse of tanh/sigmoid − the best other model; "
            "memorisation: accuracy relu − best of tanh/sigmoid",
            summary({**fit_res, **mem_res}),
            combine([fit_res["fitting"][1], mem_res["memorization"][1]]),
        )
    )

    out.append(_stability_claim(df))
    return out


def _mesh_claim(df: pd.DataFrame) -> Verdict:
    name = "6. A larger mesh ratio improves fitting but helps memorisation little"
    stat = (
        "fitting: Spearman ρ(r, −log10 MSE) per seed over IAT cells; "
        "memorisation: accuracy change from smallest to largest r (little: < 2 points)"
    )
    ok = ok_cells(df)
    iat = ok[(ok["model"] == "iat")] if not ok.empty else ok
    if iat.empty or iat["mesh_ratio"].nunique() < 2:
        return Verdict(name, stat, "no mesh-ratio data (run the `mesh` grid)", "inconclusive")
    from scipy.stats import spearmanr

    rho = []
    fit = iat[iat["task"] == "fitting"]
    for _, g in fit.groupby("seed"):
        if g["mesh_ratio"].nunique() > 1:
            rho.append(float(spearmanr(g["mesh_ratio"], _score("fitting", g["heldout_mse"])).statistic))
    mem = iat[iat["task"] == "memorization"]
    gains = []
    for _, g in mem.groupby(["seed", "basis_in", "basis_out"]):
        if g["mesh_ratio"].nunique() > 1:
            lo, hi = g.loc[g["mesh_ratio"].idxmin()], g.loc[g["mesh_ratio"].idxmax()]
            gains.append(float(hi["accuracy_pct"] - lo["accuracy_pct"]))
    fit_v = decide(rho)
    mem_v = ("holds" if abs(np.mean(gains)) < 2 else "fails") if gains else "inconclusive"
    ours = (
        f"fitting: mean ρ {_fmt(np.mean(rho) if rho else np.nan)} over {len(rho)} seed(s); "
        f"memorisation: mean gain {_fmt(np.mean(gains) if gains else np.nan)} points"
    )
    return Verdict(name, stat, ours, combine([fit_v, mem_v]))


def _stability_claim(df: pd.DataFrame) -> Verdict:
    from iatrun.nn.bases import BASES, properties

    ok = ok_cells(df)
    name = "8. Continuous bases train more stably than ReLU (fewer, smaller upward loss jumps)"
    stat = (
        "relu − mean over IAT cells with a continuous input basis, "
        "of jump count and of total relative jump size"
    )
    if ok.empty or "loss_jumps" not in ok:
        return Verdict(name, stat, "n/a", "inconclusive")
    cont = [b for b in BASES.names() if properties(b)["continuous"]]
    counts, totals = [], []
    for _, g in ok.groupby(["task", "seed"]):
        relu = g[g["model"] == "relu"]
        iat = g[(g["model"] == "iat") & g["basis_in"].isin(cont)]
        if relu.empty or iat.empty:
            continue
        counts.append(float(relu["loss_jumps"].mean() - iat["loss_jumps"].mean()))
        totals.append(float(relu["loss_jump_total"].mean() - iat["loss_jump_total"].mean()))
    ours = (
        f"jumps: mean Δ {_fmt(np.mean(counts) if counts else np.nan)}; "
        f"size: mean Δ {_fmt(np.mean(totals) if totals else np.nan)} over {len(counts)} task×seed"
    )
    return Verdict(name, stat, ours, combine([decide(counts), decide(totals)]))


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
    return float(spearmanr(a[keep], b[keep]).statistic) if keep.sum() >= 3 else float("nan")


# --- writing -----------------------------------------------------------------------------------


def _csv(path: Path, frame: pd.DataFrame, index: bool = True) -> None:
    write_text(path, frame.to_csv(index=index))


def _md_table(frame: pd.DataFrame, fmt: Callable[[float], str]) -> str:
    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.values]) + " |")
    return "\n".join(lines)


def _fmt_metric(task: str) -> Callable[[float], str]:
    if MAIN[task][1]:
        return lambda v: "—" if pd.isna(v) else f"{v:.1f}"
    return lambda v: "—" if pd.isna(v) else f"{v:.2e}"


def region_columns(df: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """Region count and exact Lipschitz constant of each finished fitting cell (1-D input)."""
    from iatrun.analysis.regions import summarize
    from iatrun.results import load_run

    if not len(df):
        return df
    for i, row in df.iterrows():
        if row["state"] == "done" and row["status"] == "ok" and row["task"] == "fitting":
            try:
                run = load_run(cell_dir(sweep_dir, row["key"]))
                s = summarize(run.model.double())
            except Exception:  # a network regions cannot analyse (tanh, norms): leave blank
                continue
            df.loc[i, "num_regions"] = s["num_regions"]
            df.loc[i, "lipschitz"] = s["lipschitz"]
    return df


def build(sweep_dir: str | Path) -> dict:
    """Write cells.csv, tables/, figures/ and report.md; return a summary for the terminal."""
    from iatrun.report import figures as sweep_plots

    sweep_dir = Path(sweep_dir)
    df = region_columns(collect(sweep_dir), sweep_dir)
    _csv(sweep_dir / "cells.csv", df, index=False)
    tables_dir, fig_dir = sweep_dir / "tables", sweep_dir / "figures"
    tables_dir.mkdir(exist_ok=True)
    fig_dir.mkdir(exist_ok=True)

    tables = {}
    for task in MAIN:
        metrics = (
            ["heldout_mse", "train_mse", "max_abs_error"]
            if task == "fitting"
            else ["accuracy_pct", "train_loss"]
        )
        for metric in metrics:
            mean, std = pair_table(df, task, metric), pair_table(df, task, metric, "std")
            if not mean.empty:
                _csv(tables_dir / f"{task}_{metric}.csv", mean)
                _csv(tables_dir / f"{task}_{metric}_std.csv", std)
                tables[(task, metric)] = (mean, std)
    base = baselines_table(df)
    _csv(tables_dir / "baselines.csv", base)
    mesh = mesh_table(df)
    if not mesh.empty:
        _csv(tables_dir / "mesh.csv", mesh, index=False)

    figures = []
    for task in MAIN:
        key = (task, MAIN[task][0])
        if key in tables:
            path = fig_dir / f"{task}_heatmap.png"
            sweep_plots.heatmap(tables[key][0], paper.table(task), task, MAIN[task][1], path)
            figures.append(path)
        path = fig_dir / f"{task}_curves.png"
        if sweep_plots.curves(df, sweep_dir, task, MAIN[task], path):
            figures.append(path)
    if not mesh.empty:
        path = fig_dir / "mesh.png"
        sweep_plots.mesh(mesh, path)
        figures.append(path)

    variants = variant_table(df)
    if not variants.empty:
        _csv(tables_dir / "variants.csv", variants, index=False)
    verdicts = claims(df)
    text = _report_md(sweep_dir, df, tables, base, mesh, verdicts, figures, variants)
    write_text(sweep_dir / "report.md", text)
    return {"cells": df, "verdicts": verdicts, "report": sweep_dir / "report.md"}


def _report_md(sweep_dir, df, tables, base, mesh, verdicts, figures, variants=None) -> str:
    spec = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    ok = ok_cells(df)
    seeds = sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []
    lines = [
        f"# iatrun sweep report: `{spec.get('grid')}`",
        "",
        f"{spec.get('description', '')}",
        "",
        f"- cells: {len(df)} ({int((df['state'] == 'done').sum())} finished, "
        f"{int(ok_cells(df).shape[0])} ok), seeds: {seeds}",
        f"- command-line overrides: {' '.join(spec.get('overrides') or []) or 'none'}",
    ]
    iat = iat_cells(df)
    if not iat.empty:
        lines.append(f"- IAT tables use mesh ratio r = {main_mesh_ratio(iat)}")
    lines += [
        "",
        "## The paper's claims (SPEC §6)",
        "",
        "| claim | statistic | ours | verdict |",
        "|---|---|---|---|",
    ]
    for v in verdicts:
        lines.append(f"| {v.claim} | {v.statistic} | {v.ours} | **{v.verdict}** |")
    for task in MAIN:
        metric = MAIN[task][0]
        if (task, metric) not in tables:
            continue
        mean, std = tables[(task, metric)]
        theirs = paper.table(task)
        rho = spearman(mean, theirs)
        unit = "training accuracy, %" if MAIN[task][1] else "held-out MSE"
        lines += [
            "",
            f"## {task} ({unit})",
            "",
            f"Spearman rank correlation with the paper's table: **{rho:.2f}**"
            if np.isfinite(rho)
            else "Spearman: n/a",
            "",
            "Paper:",
            "",
            _md_table(theirs, _fmt_metric(task)),
            "",
            "Ours (mean over seeds):",
            "",
            _md_table(mean, _fmt_metric(task)),
            "",
            "Ours (std over seeds):",
            "",
            _md_table(std, _fmt_metric(task)),
        ]
    if not base.empty:
        lines += [
            "",
            "## Scalar baselines",
            "",
            "Paper:",
            "",
            _md_table(paper.baselines(), lambda v: f"{v:.3g}"),
            "",
            "Ours:",
            "",
            _md_table(base, lambda v: "—" if pd.isna(v) else f"{v:.3g}"),
        ]
    if not mesh.empty:
        lines += [
            "",
            "## Mesh ratio",
            "",
            _md_table(
                mesh.set_index("task"),
                lambda v: v if isinstance(v, str) else ("—" if pd.isna(v) else f"{v:.3g}"),
            ),
        ]
    if variants is not None and not variants.empty:
        lines += [
            "",
            "## Exact and decoupled IAT-ReLU (fitting, held-out MSE)",
            "",
            _md_table(
                variants.set_index("pair"),
                lambda v: v if isinstance(v, str) else ("—" if pd.isna(v) else f"{v:.3g}"),
            ),
            "",
            "| question | statistic | ours | verdict |",
            "|---|---|---|---|",
        ]
        for v in variant_verdicts(df):
            lines.append(f"| {v.claim} | {v.statistic} | {v.ours} | **{v.verdict}** |")
    bad = df[(df["state"] != "done") | (df["status"] != "ok")]
    if len(bad):
        lines += [
            "",
            "## Cells that did not finish ok",
            "",
            "| cell | state | status | detail |",
            "|---|---|---|---|",
        ]
        for _, r in bad.iterrows():
            detail = (
                r.get("error")
                if isinstance(r.get("error"), str)
                else (
                    f"diverged at step {int(r['diverged_step'])}" if pd.notna(r.get("diverged_step")) else ""
                )
            )
            lines.append(f"| {r['key']} | {r['state']} | {r['status']} | {detail} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figures]
    return "\n".join(lines) + "\n"
