"""Claims read from the cells rather than the 6×6 tables: mesh ratio (claim 6), training
stability (claim 8), and the exact / decoupled questions. Verdicts as in :mod:`iatrun.report.claims`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.scores import part, score, signed
from iatrun.report.stats import PARTIAL, Verdict, of_parts, paired_t, rule, tested, untested

LITTLE = 2.0  # claim 6: "helps memorisation little": a gain below 2 points


def _mesh_cells(df: pd.DataFrame, task: str) -> pd.DataFrame:
    ok = ok_cells(df)
    if ok.empty or "mesh_ratio" not in ok:
        return ok
    iat = ok[(ok["model"] == "iat") & (ok["task"] == task)]
    if "method" in iat:
        iat = iat[iat["method"].astype(object).fillna("mesh") == "mesh"]
    # rect/rect is ReLU at every r (claim 1): the grid's control, not a pair the claim is about
    return iat[~((iat["basis_in"] == "rect") & (iat["basis_out"] == "rect"))]


def _mesh_fitting(iat: pd.DataFrame) -> Verdict:
    """Per seed, the mean over pairs of Spearman ρ(r, −log10 MSE) within each pair (pooling pairs
    would rank their differences, not the effect of r)."""
    from scipy.stats import spearmanr

    rho = []
    for _, s in iat.groupby("seed"):
        per_pair = [
            float(spearmanr(p["mesh_ratio"], score("fitting", p["heldout_mse"])).statistic)
            for _, p in s.groupby(["basis_in", "basis_out"])
            if p["mesh_ratio"].nunique() > 1
        ]
        per_pair = [r for r in per_pair if np.isfinite(r)]  # a pair with one MSE at every r has no ρ
        if per_pair:
            rho.append(float(np.mean(per_pair)))
    test = paired_t(rho)
    return tested("fitting", test, "ρ", rule(test), ours=f"mean ρ {signed(test.effect)}")


def _mesh_memorization(iat: pd.DataFrame) -> Verdict:
    """Accuracy at the largest r − at the smallest, mean over pairs, per seed; holds below LITTLE."""
    gains = []
    for _, s in iat.groupby("seed"):
        acc = "accuracy_pct"
        g = [
            float(p.loc[p["mesh_ratio"].idxmax(), acc] - p.loc[p["mesh_ratio"].idxmin(), acc])
            for _, p in s.groupby(["basis_in", "basis_out"])
            if p["mesh_ratio"].nunique() > 1
        ]
        if g:
            gains.append(float(np.mean(g)))
    test = paired_t(gains, null=LITTLE)
    verdict = rule(test, threshold=LITTLE, larger=False)
    return tested("memorization", test, "points", verdict, ours=f"mean gain {signed(test.effect)} points")


def _mesh_gaps(iat: pd.DataFrame) -> str:
    """Why ``iat`` cannot test claim 6 ('' when it can): fewer than 2 mesh ratios, or a pair that
    lacks a ratio another pair has (the verdict would rest on some pairs at some ratios only)."""
    if iat.empty or iat["mesh_ratio"].nunique() < 2:
        return "fewer than 2 mesh ratios"
    ratios = set(iat["mesh_ratio"].dropna().astype(int))
    lacking = []
    for (bi, bo), p in iat.groupby(["basis_in", "basis_out"]):
        missing = sorted(ratios - set(p["mesh_ratio"].dropna().astype(int)))
        if missing:
            lacking.append(f"{bi}/{bo} lacks r = {', '.join(map(str, missing))}")
    return "; ".join(lacking)


def _mesh_scope(iat: pd.DataFrame) -> str:
    """What a claim 6 verdict rests on: the pairs and the mesh ratios."""
    pairs = sorted({f"{bi}/{bo}" for bi, bo in zip(iat["basis_in"], iat["basis_out"], strict=True)})
    ratios = sorted(set(iat["mesh_ratio"].dropna().astype(int)))
    return f"{len(pairs)} pair(s) ({', '.join(pairs)}) at r = {', '.join(map(str, ratios))}"


def claim_mesh_ratio(df: pd.DataFrame) -> Verdict:
    """Claim 6: a larger mesh ratio improves fitting but helps memorisation little. Tested per task
    only where every pair has every mesh ratio that any pair has."""
    parts = []
    for t, fn, unit in (("fitting", _mesh_fitting, "ρ"), ("memorization", _mesh_memorization, "points")):
        iat = _mesh_cells(df, t)
        gaps = _mesh_gaps(iat)
        if gaps:
            parts.append(untested(t, PARTIAL, unit, gaps))
            continue
        v = fn(iat)
        parts.append(replace(v, ours=f"{v.ours}; {_mesh_scope(iat)}"))
    return of_parts(
        "6. A larger mesh ratio improves fitting but helps memorisation little",
        "fitting: Spearman ρ(r, −log10 MSE) within each pair, mean over pairs, per seed (holds if > 0; "
        "rect/rect, ReLU at every r, left out); memorisation: "
        f"accuracy gain from smallest to largest r, mean over pairs (holds if < {LITTLE:g} points; "
        f"p against {LITTLE:g})",
        parts,
    )


def _jump_parts(ok: pd.DataFrame, task: str, cont: list[str]) -> list[Verdict]:
    """relu − continuous-input IAT cells (mean), per seed, of jump count and of total jump size;
    untested unless every continuous input row of the table is there with every output column."""
    from iatrun.report.scores import all_bases

    g = ok[ok["task"] == task] if not ok.empty else ok
    relu = g[g["model"] == "relu"] if not g.empty else g
    iat = g[(g["model"] == "iat") & g["basis_in"].isin(cont)] if not g.empty else g
    pairs = set(zip(iat["basis_in"], iat["basis_out"], strict=True)) if not iat.empty else set()
    rows_whole = all((i, o) in pairs for i in cont for o in all_bases())
    out = []
    for col, label, unit in (("loss_jumps", "jumps", "jumps"), ("loss_jump_total", "size", "Σ rel. rise")):
        if relu.empty or not rows_whole or col not in g:
            out.append(untested(f"{task} {label}", PARTIAL, unit))
            continue
        data = {
            s: (pd.DataFrame(), {"relu": r[col].mean(), "iat": iat[iat["seed"] == s][col].mean()})
            for s, r in relu.groupby("seed")
            if (iat["seed"] == s).any()
        }
        out.append(part(f"{task} {label}", data, lambda tb, a: (a["relu"], a["iat"]), unit=unit))
    return out


def claim_stability(df: pd.DataFrame) -> Verdict:
    """Claim 8: continuous input bases train with fewer, smaller upward loss jumps than relu."""
    from iatrun.nn.bases import BASES

    ok, cont = ok_cells(df), BASES.names(continuous=True, dyadic_of=None)
    return of_parts(
        "8. Continuous bases train more stably than ReLU (fewer, smaller upward loss jumps)",
        "relu − mean over IAT cells with a continuous input basis, per task and seed, "
        "of jump count and of total relative jump size",
        [p for t in MAIN for p in _jump_parts(ok, t, cont)],
    )


def variant_verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Does exact beat discretized (coupled)? Does decoupling help (both exact)? At the sweep's own
    budget, whatever it is (these compare two evaluations of one network, not the paper's claims)."""
    from iatrun.report.tables import variant_cells

    sub = variant_cells(df)
    if sub.empty:
        return []
    scored = sub.assign(score=score("fitting", sub["heldout_mse"]))
    wide = scored.pivot_table(index=["seed", "basis_in", "basis_out"], columns="variant", values="score")
    out = []
    for better, worse, claim in (
        ("iat-exact", "iat-mesh", "Exact IAT-ReLU beats the discretized layer (coupled)"),
        ("decoupled-exact", "iat-exact", "Decoupling the activation pattern helps (both exact)"),
    ):
        if better not in wide or worse not in wide:
            continue
        per_seed = (wide[better] - wide[worse]).groupby(level="seed").mean().dropna().tolist()
        test = paired_t(per_seed)
        out.append(
            tested(
                claim,
                test,
                "decades",
                rule(test),
                f"−log10 held-out MSE: {better} − {worse}, mean over pairs, per seed",
                f"mean {signed(test.effect)} over {test.n} seed(s)",
            )
        )
    return out
