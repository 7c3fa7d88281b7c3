"""Each basis pair against relu: the question the tables are read for, answered pair by pair.

For every pair of a task's 6×6 table, the per-seed difference of its score and relu's (the same
seed: the same initial weights and data; each at the rate it trained at), in the claims' units
(decades of held-out MSE as −log10, or accuracy points), positive where the pair is better; the
paired t test of :mod:`iatrun.report.stats` on it. Read one at a time, a table of 36 such tests
at 95 % finds about 1.8 "differences" by chance alone, so the pairs are also judged together: the
p values are adjusted for the number of pairs tested with the Benjamini–Hochberg procedure
(``scipy.stats.false_discovery_control``, which controls the expected share of false findings
among the pairs called different), and a pair is called **better** or **worse** only when its
adjusted p is below 0.05. On a toy budget there is no verdict at all. A seed is paired only
where both have an ok cell: a seed that diverged or failed is left out, and ``n`` says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from iatrun.report import paper
from iatrun.report.budget import toy_tasks
from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.scores import score
from iatrun.report.stats import LEVEL, NO_DATA, ONE_SEED, TOY, paired_t
from iatrun.report.tables import basis_order, iat_cells

UNITS = {"fitting": "decades", "memorization": "points"}
BETTER, WORSE = "better", "worse"
COLUMNS = ["basis_in", "basis_out", "n", "effect", "ci_low", "ci_high", "p", "p_adjusted", "verdict"]


def versus_relu(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per basis pair of ``task`` (``COLUMNS``, in the tables' order): n seeds paired with
    relu, the mean difference, its t interval, p, the Benjamini–Hochberg p over the task's pairs
    with an interval, and the verdict on that adjusted p. Empty without IAT or relu cells."""
    from scipy.stats import false_discovery_control

    metric = MAIN[task][0]
    iat = iat_cells(df)
    iat = iat[iat["task"] == task] if not iat.empty else iat
    ok = ok_cells(df)
    relu = ok[(ok["model"] == "relu") & (ok["task"] == task)] if not ok.empty else ok
    if iat.empty or relu.empty or metric not in iat or metric not in relu:
        return pd.DataFrame(columns=COLUMNS)
    base = _by_seed(task, relu, metric)
    rows = []
    for (bi, bo), pair in iat.groupby(["basis_in", "basis_out"]):
        mine = _by_seed(task, pair, metric)
        both = mine.index.intersection(base.index)
        t = paired_t((mine[both] - base[both]).to_numpy())
        rows.append(
            dict(basis_in=bi, basis_out=bo, n=t.n, effect=t.effect, ci_low=t.ci_low, ci_high=t.ci_high, p=t.p)
        )
    out = pd.DataFrame(rows, columns=COLUMNS)
    tested = out["p"].notna()
    if tested.any():
        out.loc[tested, "p_adjusted"] = false_discovery_control(out.loc[tested, "p"].to_numpy(float))
    toy = task in toy_tasks(df)
    out["verdict"] = [_verdict(row, toy) for row in out.itertuples()]
    order = {b: i for i, b in enumerate(basis_order(set(out["basis_in"]) | set(out["basis_out"])))}
    out = out.sort_values(["basis_in", "basis_out"], key=lambda s: s.map(order), kind="stable")
    return out.reset_index(drop=True)


def _by_seed(task: str, cells: pd.DataFrame, metric: str) -> pd.Series:
    """seed → score (the mean of its cells' scores where a seed has more than one, as the claims do)."""
    scores = pd.Series(score(task, cells[metric]), index=cells["seed"].astype(int).to_numpy())
    return scores.groupby(level=0).mean()


def _verdict(row, toy: bool) -> str:
    if toy:
        return TOY
    if row.n < 2:
        return ONE_SEED if row.n == 1 else NO_DATA
    if not np.isfinite(row.p_adjusted) or row.p_adjusted >= 1 - LEVEL:
        return "inconclusive"
    return BETTER if row.effect > 0 else WORSE


def versus_md(df: pd.DataFrame, task: str, table: str, out: pd.DataFrame | None = None) -> list[str]:
    """report.md's account of ``versus_relu``: how many intervals exclude zero (and how many would
    by chance), what survives the correction, and the pairs whose interval excludes zero.
    ``table``: where the full table is written (a path relative to the report); ``out``: the
    :func:`versus_relu` frame when the caller has it already."""
    out = versus_relu(df, task) if out is None else out
    if out.empty:
        return []
    unit = UNITS[task]
    scored = "training accuracy, %" if MAIN[task][1] else "−log10 held-out MSE"
    lines = [
        "",
        f"**Each pair against relu** (paired t over seeds on {scored}, pair − relu, each at the rate it "
        f"trained at; positive: the pair is better; Benjamini–Hochberg over the pairs tested; every pair "
        f"in [`{table}`]({table})):",
        "",
    ]
    if task in toy_tasks(df):
        return lines + [f"- {TOY}: no pair is called better or worse."]
    tested = out[out["p"].notna()]
    if tested.empty:
        return lines + ["- no pair has two seeds paired with relu: nothing is tested."]
    apart = tested[(tested["ci_low"] > 0) | (tested["ci_high"] < 0)]
    better, worse = int((apart["effect"] > 0).sum()), int((apart["effect"] < 0).sum())
    chance = (1 - LEVEL) * len(tested)
    lines.append(
        f"- intervals that exclude zero: {len(apart)} of {len(tested)} ({better} better, {worse} worse); "
        f"about {chance:.1f} expected by chance at {LEVEL:.0%}"
    )
    theirs = paper.table(task)
    pairs = {(i, c) for i in theirs.index for c in theirs.columns}
    if pairs - set(zip(tested["basis_in"], tested["basis_out"], strict=True)):
        lines.append(
            f"- a partial table: {len(tested)} of the paper's {theirs.size} pairs tested, so the "
            "correction is over these and will change as the others are added"
        )
    found = tested[tested["verdict"].isin([BETTER, WORSE])]
    smallest = f"smallest adjusted p {tested['p_adjusted'].min():.2g}"
    if found.empty:
        lines.append(f"- after the correction: no pair is better or worse than relu ({smallest})")
    else:
        named = ", ".join(f"{r.basis_in}/{r.basis_out} ({r.verdict})" for r in found.itertuples())
        lines.append(f"- after the correction: {named}")
    if not apart.empty:
        lines += [
            "",
            f"| pair | effect ({unit}) | {LEVEL:.0%} CI | p | adjusted p | verdict |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.basis_in}/{r.basis_out} | {r.effect:+.3g} | [{r.ci_low:+.3g}, {r.ci_high:+.3g}] | "
            f"{r.p:.2g} | {r.p_adjusted:.2g} | {r.verdict} |"
            for r in apart.itertuples()
        ]
    return lines
