"""report.md: the verdict columns, the header's budget and reasons, Spearman and std withheld."""

import pandas as pd
import yaml
from _synthetic import BASES6, cells

from iatrun.report import build, claims, paper, tables
from iatrun.report.budget import calibrated
from iatrun.report.stats import Verdict


def _acc(bi, bo, s):
    return 80.0 + BASES6.index(bi) + 0.5 * BASES6.index(bo) + 0.1 * s


def _mse(bi, bo, s):
    return 1e-3 * (1 + BASES6.index(bi)) * (1 + 0.01 * s)


def _report(tmp_path, df) -> str:
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump({"grid": "synthetic", "description": "hand-made", "overrides": [], "cells": {}})
    )
    tabs = {}
    for task, (metric, _) in build.MAIN.items():
        mean, std = tables.pair_table(df, task, metric), tables.pair_table(df, task, metric, "std")
        if not mean.empty:
            count = int(tables.pair_table(df, task, metric, "count").max().max())
            tabs[(task, metric)] = (mean, std, count)
    base = tables.baselines_table(df)
    return build._report_md(tmp_path, df, tabs, base, pd.DataFrame(), claims.claims(df), [])


def _claim_rows(text: str) -> list[list[str]]:
    section = text.split("## The paper's claims (SPEC §6)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r.replace("\\|", "¦").strip("|").split(" | ")] for r in rows]


def test_every_verdict_row_has_effect_interval_p_and_seeds(tmp_path):
    text = _report(tmp_path, cells(_acc, _mse))
    rows = _claim_rows(text)
    assert rows[0] == ["claim", "statistic", "ours", "effect (mean)", "95% CI", "p", "n seeds", "verdict"]
    by = {r[0].split(".")[0]: r for r in rows[1:]}
    assert len(by) == 8 and text.count("| **") == 8
    # claim 2: zero-integral rows (mean basis index 4) against local rows (mean index 1): +3 points
    # on every seed, so a zero-width interval
    two = by["2"]
    assert two[3] == "+3 points" and two[4] == "[+3, +3]" and two[5] == "< 0.0001" and two[6] == "3"
    assert two[7] == "**holds**"
    # claim 4 (per task): one line per part, and the seeds it was tested on in "ours"
    four = by["4"]
    assert four[6] == "fitting: 2<br>memorization: 2"
    assert "(chosen on seed 0; tested on seeds 1, 2)" in four[2]
    assert four[7].startswith("**")
    # the header: seeds, the budget as run and that it is the calibrated one
    assert "seeds: [0, 1, 2]" in text
    cal = calibrated("fitting")  # the synthetic cells run at it
    assert (
        f"- fitting: steps {cal['steps']}, width {cal['width']}, depth {cal['depth']}, "
        f"training points {cal['points']}; lr 0.003; norm gain" in text
    )
    assert "the calibrated budget (or above)" in text and "toy budget" not in text


def test_a_toy_one_seed_sweep_says_why_and_withholds(tmp_path):
    text = _report(tmp_path, cells(_acc, _mse, seeds=(0,), steps=60, width=16))
    rows = _claim_rows(text)[1:]
    assert all(r[7] == "**not tested: toy budget**" for r in rows)
    cal = calibrated("fitting")
    assert f"**below the calibrated budget** (steps 60 < {cal['steps']}; width 16 < {cal['width']})" in text
    assert "`not tested: toy budget` (claims 1, 2, 3, 4, 5, 6, 7, 8): the cells ran below" in text
    assert "`inconclusive (one seed)`" in text  # what the numbers would give, also explained
    assert not any("holds" in r[7] or "fails" in r[7] for r in rows)
    # std tables from one seed say so instead of an empty table
    assert text.count("Ours (std over seeds):\n\nn/a (one seed)") == 2
    assert "Ours (std: n/a, one seed):" in text
    # the complete table still gets its Spearman, marked as toy
    assert "Spearman rank correlation with the paper's table: **" in text
    assert "(at a toy budget: see the header)" in text


def test_spearman_is_withheld_on_a_partial_table():
    mem = paper.table("memorization")
    full = build._task_md("memorization", mem, mem * 0, 3)
    assert "Spearman rank correlation with the paper's table: **1.00**" in full
    partial = mem.drop(index="pwl")
    text = "\n".join(build._task_md("memorization", partial, partial * 0, 3))
    assert "Spearman rank correlation with the paper's table: n/a: partial table" in text
    nan = mem.copy()
    nan.loc["rect", "rect"] = float("nan")  # a cell that failed in every seed
    assert "n/a: partial table" in "\n".join(build._task_md("memorization", nan, nan, 3))


def test_a_claim_of_parts_shows_each_parts_verdict():
    a = Verdict("fitting", "", "x", "holds", "decades", 0.5, 0.2, 0.8, 0.01, 3)
    b = Verdict("memorization", "", "y", "fails", "points", -2.0, -3.0, -1.0, 0.02, 3)
    row = build._verdict_row(Verdict("4. c", "s", "o", "fails", parts=[a, b], n=3))
    assert row == (
        "| 4. c | s | o | fitting: +0.5 decades<br>memorization: -2 points "
        "| fitting: [+0.2, +0.8]<br>memorization: [-3, -1] | fitting: 0.01<br>memorization: 0.02 "
        "| fitting: 3<br>memorization: 3 | **fails** (fitting: holds; memorization: fails) |"
    )
