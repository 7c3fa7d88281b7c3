"""The paper's eight claims (SPEC §6) and the exact / decoupled questions, tested on a sweep's cells.

Each claim compares scores seed by seed (larger is better: accuracy in %, −log10 MSE) and reads
holds / fails / inconclusive from the per-seed differences (:func:`decide`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.tables import iat_cells, pair_table, variant_cells

# seed → (pair table of a task's score, {activation: score}), see _per_seed
Seeds = dict[int, tuple[pd.DataFrame, dict]]


@dataclass
class Verdict:
    """One claim's statistic, our value of it and the verdict."""

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
    """All parts hold: holds; any part fails: fails; else inconclusive."""
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if "fails" in verdicts:
        return "fails"
    return "inconclusive"


# --- basis groups, from the registry so that a newly registered basis is counted ----------------
# (iatrun.nn is imported inside the functions: it pulls in torch, which the tables do not need)


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


def _score(task: str, values):
    """Larger is better: accuracy as is, MSE as -log10."""
    v = np.asarray(values, dtype=float)
    return v if MAIN[task][1] else -np.log10(np.maximum(v, 1e-300))


def _per_seed(df: pd.DataFrame, task: str) -> Seeds:
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


def _mean_of(table: pd.DataFrame, rows=None, cols=None) -> float:
    t = table
    if rows is not None:
        t = t.loc[[r for r in rows if r in t.index]]
    if cols is not None:
        t = t[[c for c in cols if c in t.columns]]
    return float(np.nanmean(t.values)) if t.size else np.nan


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def _per_task(seeds: dict[str, Seeds], fn: Callable, tasks=tuple(MAIN)) -> dict:
    """task → (finite per-seed values of ``fn(table, acts, task)``, their verdict)."""
    res = {}
    for t in tasks:
        diffs = [fn(table, acts, t) for table, acts in seeds[t].values()]
        diffs = [d for d in diffs if d is not None and np.isfinite(d)]
        res[t] = (diffs, decide(diffs))
    return res


def _summary(res: dict) -> str:
    return "; ".join(
        f"{t}: mean {_fmt(np.mean(d) if d else np.nan)} over {len(d)} seed(s)" for t, (d, _) in res.items()
    )


# --- the claims, in SPEC §6's order --------------------------------------------------------------


def _rect_minus_relu(table: pd.DataFrame, acts: dict) -> float | None:
    if "rect" not in table.index or "rect" not in table.columns or "relu" not in acts:
        return None
    return float(table.loc["rect", "rect"] - acts["relu"])


def claim_rect_is_relu(seeds: dict[str, Seeds]) -> Verdict:
    """Claim 1: rect/rect IAT-ReLU is ReLU, so the metrics agree (score difference ≈ 0)."""
    diffs = {
        t: [d for d in (_rect_minus_relu(tb, a) for tb, a in seeds[t].values()) if d is not None]
        for t in MAIN
    }
    verdicts = []
    for d in diffs.values():
        if not d:
            verdicts.append("inconclusive")
            continue
        small = max(abs(x) for x in d) < 0.01  # within 0.01 percentage points / 0.01 decades
        verdicts.append("holds" if small or decide([abs(x) for x in d]) != "holds" else "fails")
    return Verdict(
        "1. rect/rect IAT-ReLU is the same as ReLU",
        "score(rect/rect) − score(relu) per seed (accuracy %, −log10 MSE); holds if ≈ 0",
        "; ".join(f"{t}: max |Δ| {max(map(abs, d)):.3g}" if d else f"{t}: n/a" for t, d in diffs.items()),
        combine(verdicts) if all(diffs.values()) else "inconclusive",
    )


def claim_zero_integral_rows(seeds: dict[str, Seeds]) -> Verdict:
    """Claim 2: zero-integral input rows beat local rows on memorisation."""
    zero, local = zero_integral_bases(), local_bases()
    res = _per_task(
        seeds,
        lambda tb, a, t: _mean_of(tb, zero) - _mean_of(tb, local) if not tb.empty else None,
        ("memorization",),
    )
    return Verdict(
        "2. Zero-integral input bases beat local ones on memorisation (row means)",
        f"mean accuracy of rows {', '.join(zero)} − rows {', '.join(local)}",
        _summary(res),
        res["memorization"][1],
    )


def _rank_gap(seeds: dict[str, Seeds], seed: int) -> float | None:
    """Best other row's mean rank − fourier's, ranking row means per task, for one seed."""
    ranks = []
    for t in MAIN:
        if seed not in seeds[t] or seeds[t][seed][0].empty:
            return None
        ranks.append(seeds[t][seed][0].mean(axis=1).rank(ascending=False))
    mean_rank = sum(ranks) / len(ranks)
    if "fourier" not in mean_rank:
        return None
    return float(mean_rank.drop("fourier").min() - mean_rank["fourier"])


def claim_fourier_row(seeds: dict[str, Seeds]) -> Verdict:
    """Claim 3: fourier is the best input row across both tasks (mean rank of row means)."""
    common = sorted(set(seeds["fitting"]) & set(seeds["memorization"]))
    gaps = [g for g in (_rank_gap(seeds, s) for s in common) if g is not None]
    return Verdict(
        "3. The fourier input basis is the best row overall across both tasks",
        "best other row's mean rank − fourier's mean rank (row means, ranked per task)",
        f"mean {_fmt(np.mean(gaps) if gaps else np.nan)} over {len(gaps)} seed(s)",
        decide(gaps),
    )


def _best_vs_relu(df: pd.DataFrame, seeds: dict[str, Seeds], t: str) -> tuple[list[float], str, str]:
    """Per-seed score(best pair) − score(relu) for task ``t``, its verdict and the best pair."""
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


def claim_best_pair_beats_relu(df: pd.DataFrame, seeds: dict[str, Seeds]) -> Verdict:
    """Claim 4: the best basis pair beats relu on both tasks."""
    parts, vs = [], []
    for t in MAIN:
        d, v, pair = _best_vs_relu(df, seeds, t)
        parts.append(f"{t}: best {pair or 'n/a'}, Δ {_fmt(np.mean(d) if d else np.nan)}")
        vs.append(v)
    return Verdict(
        "4. The best basis pair beats ReLU on both tasks",
        "score(best pair) − score(relu) per seed",
        "; ".join(parts),
        combine(vs),
    )


def claim_local_columns(seeds: dict[str, Seeds]) -> Verdict:
    """Claim 5: local output columns beat wavelet output columns on both tasks."""
    local, wavelets = local_bases(), wavelet_bases()
    res = _per_task(
        seeds,
        lambda tb, a, t: _mean_of(tb, cols=local) - _mean_of(tb, cols=wavelets) if not tb.empty else None,
    )
    return Verdict(
        "5. Local output bases beat the wavelet outputs (column means)",
        f"mean score of columns {', '.join(local)} − columns {', '.join(wavelets)}",
        _summary(res),
        combine([v for _, v in res.values()]),
    )


def claim_mesh_ratio(df: pd.DataFrame) -> Verdict:
    """Claim 6: a larger mesh ratio improves fitting but helps memorisation little."""
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


def _smooth_fit(tb: pd.DataFrame, a: dict, t: str) -> float | None:
    """The worse of tanh/sigmoid − the best other model (IAT pairs included)."""
    others = [v for k, v in a.items() if k not in ("tanh", "sigmoid")]
    if not tb.empty:
        others.append(float(np.nanmax(tb.values)))
    if "tanh" not in a or "sigmoid" not in a or not others:
        return None
    return min(a["tanh"], a["sigmoid"]) - max(others)


def _smooth_mem(tb: pd.DataFrame, a: dict, t: str) -> float | None:
    """relu − the better of tanh/sigmoid."""
    if not {"tanh", "sigmoid", "relu"} <= set(a):
        return None
    return a["relu"] - max(a["tanh"], a["sigmoid"])


def claim_smooth_activations(seeds: dict[str, Seeds]) -> Verdict:
    """Claim 7: tanh and sigmoid fit best of all but memorise worse than relu."""
    fit_res = _per_task(seeds, _smooth_fit, ("fitting",))
    mem_res = _per_task(seeds, _smooth_mem, ("memorization",))
    return Verdict(
        "7. tanh and sigmoid fit smooth targets best, but memorise worse than ReLU",
        "fitting: −log10 MSE of the worse of tanh/sigmoid − the best other model; "
        "memorisation: accuracy relu − best of tanh/sigmoid",
        _summary({**fit_res, **mem_res}),
        combine([fit_res["fitting"][1], mem_res["memorization"][1]]),
    )


def claim_stability(df: pd.DataFrame) -> Verdict:
    """Claim 8: continuous input bases train with fewer, smaller upward loss jumps than relu."""
    from iatrun.nn.bases import BASES

    ok = ok_cells(df)
    name = "8. Continuous bases train more stably than ReLU (fewer, smaller upward loss jumps)"
    stat = (
        "relu − mean over IAT cells with a continuous input basis, "
        "of jump count and of total relative jump size"
    )
    if ok.empty or "loss_jumps" not in ok:
        return Verdict(name, stat, "n/a", "inconclusive")
    cont = BASES.names(continuous=True, dyadic_of=None)
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


def claims(df: pd.DataFrame) -> list[Verdict]:
    """Test SPEC §6's eight claims on the sweep's cells."""
    seeds = {t: _per_seed(df, t) for t in MAIN}
    return [
        claim_rect_is_relu(seeds),
        claim_zero_integral_rows(seeds),
        claim_fourier_row(seeds),
        claim_best_pair_beats_relu(df, seeds),
        claim_local_columns(seeds),
        claim_mesh_ratio(df),
        claim_smooth_activations(seeds),
        claim_stability(df),
    ]


def variant_verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Does exact beat discretized (coupled)? Does decoupling help (both exact)?"""
    sub = variant_cells(df)
    if sub.empty:
        return []
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
