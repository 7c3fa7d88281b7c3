"""Tables and the claims logic on hand-made cell results."""

import numpy as np
import pandas as pd
import pytest

from iatrun.report import build as report
from iatrun.nn.bases import BASES

BASES6 = BASES.names()[:6]


def cells(acc, mse, seeds=(0, 1, 2), relu=(90.0, 1e-3), tanh=(85.0, 4e-6), sigmoid=(84.0, 3e-6), jitter=0.0):
    """A synthetic sweep: acc(bi, bo, seed) and mse(bi, bo, seed) give each IAT cell's result."""
    rng = np.random.default_rng(0)
    rows = []
    for s in seeds:
        for bi in BASES6:
            for bo in BASES6:
                common = dict(
                    state="done",
                    status="ok",
                    model="iat",
                    basis_in=bi,
                    basis_out=bo,
                    mesh_ratio=4,
                    method=None,
                    seed=s,
                    loss_jumps=1,
                    loss_jump_total=0.1,
                )
                rows.append(
                    dict(
                        common,
                        key=f"m/{bi}-{bo}/{s}",
                        task="memorization",
                        accuracy_pct=acc(bi, bo, s) + jitter * rng.normal(),
                    )
                )
                rows.append(dict(common, key=f"f/{bi}-{bo}/{s}", task="fitting", heldout_mse=mse(bi, bo, s)))
        for name, (a, m) in (("relu", relu), ("tanh", tanh), ("sigmoid", sigmoid)):
            common = dict(
                state="done", status="ok", model=name, seed=s, loss_jumps=5, loss_jump_total=2.0 + s
            )
            rows.append(dict(common, key=f"m/{name}/{s}", task="memorization", accuracy_pct=a))
            rows.append(dict(common, key=f"f/{name}/{s}", task="fitting", heldout_mse=m))
    return pd.DataFrame(rows)


def by_number(verdicts):
    return {int(v.claim.split(".")[0]): v.verdict for v in verdicts}


def test_pair_table_is_in_the_paper_layout_with_mean_and_std():
    df = cells(lambda bi, bo, s: 80 + BASES6.index(bi) + s, lambda bi, bo, s: 1e-3)
    mean = report.pair_table(df, "memorization", "accuracy_pct")
    std = report.pair_table(df, "memorization", "accuracy_pct", "std")
    assert list(mean.index) == BASES6 and list(mean.columns) == BASES6
    assert mean.loc["pwq", "rect"] == pytest.approx(83.0)  # 80 + 2 + mean(0, 1, 2)
    assert std.loc["pwq", "rect"] == pytest.approx(1.0)
    base = report.baselines_table(df)
    assert base.loc["relu", "memorization_accuracy_pct"] == 90.0 and base.loc["tanh", "fitting_mse"] == 4e-6


def test_claims_hold_on_a_paper_like_sweep():
    zero = {"fourier", "pwl-w", "rect-w"}

    def acc(bi, bo, s):
        a = (
            85
            + (6 if bi in zero else 0)
            + (3 if bi == "fourier" else 0)
            + (2 if bo in ("rect", "pwl", "pwq") else 0)
        )
        return 90.0 if (bi, bo) == ("rect", "rect") else a + 0.1 * s

    def mse(bi, bo, s):
        m = 1e-4 * (0.5 if bi == "fourier" else 1.0) * (1.0 if bo in ("rect", "pwl", "pwq") else 3.0)
        return 1e-3 if (bi, bo) == ("rect", "rect") else m * (1 + 0.01 * s)

    v = by_number(report.claims(cells(acc, mse)))
    assert v == {
        1: "holds",
        2: "holds",
        3: "holds",
        4: "holds",
        5: "holds",
        6: "inconclusive",
        7: "holds",
        8: "holds",
    }


def test_claims_fail_and_inconclusive():
    # local rows clearly better on memorisation: claim 2 fails
    df = cells(lambda bi, bo, s: 95.0 if bi in ("rect", "pwl", "pwq") else 80.0, lambda bi, bo, s: 1e-3)
    assert by_number(report.claims(df))[2] == "fails"
    # a tiny difference drowned in seed noise: inconclusive
    rng = np.random.default_rng(1)
    noise = {(bi, s): rng.normal(0, 3) for bi in BASES6 for s in range(3)}
    df = cells(
        lambda bi, bo, s: 85.0 + (0.1 if bi == "fourier" else 0) + noise[(bi, s)], lambda bi, bo, s: 1e-3
    )
    assert by_number(report.claims(df))[2] == "inconclusive"


def test_decide_rules():
    assert report.decide([1.0, 1.1, 0.9]) == "holds"
    assert report.decide([-1.0, -1.1, -0.9]) == "fails"
    assert report.decide([1.0, -0.5, 0.2]) == "inconclusive"
    assert report.decide([0.01, 5.0]) == "inconclusive"  # same sign but within two standard errors
    assert report.decide([0.3]) == "holds" and report.decide([]) == "inconclusive"
    assert report.combine(["holds", "inconclusive"]) == "inconclusive"
    assert report.combine(["holds", "fails"]) == "fails"


def test_spearman_against_itself_and_reversed():
    t = pd.DataFrame(np.arange(36.0).reshape(6, 6), index=BASES6, columns=BASES6)
    assert report.spearman(t, t) == pytest.approx(1.0)
    assert report.spearman(-t, t) == pytest.approx(-1.0)


def test_mesh_claim_from_a_mesh_sweep():
    rows = []
    for s in (0, 1, 2):
        for r in (1, 2, 4, 8, 16):
            base = dict(state="done", status="ok", model="iat", basis_in="pwq", basis_out="pwq")
            base.update(mesh_ratio=r, seed=s)
            rows.append(dict(base, key=f"f{r}{s}", task="fitting", heldout_mse=1e-3 / r * (1 + 0.01 * s)))
            rows.append(dict(base, key=f"m{r}{s}", task="memorization", accuracy_pct=90 + 0.1 * r))
    df = pd.DataFrame(rows)
    assert report._mesh_claim(df).verdict == "holds"
    table = report.mesh_table(df)
    assert sorted(table["mesh_ratio"].unique()) == [1, 2, 4, 8, 16]


def test_exact_and_decoupled_variants():
    rows = []
    for s in (0, 1, 2):
        for bi in ("pwl", "fourier"):
            for model, method, mse in (
                ("iat", "mesh", 1e-2),
                ("iat", "exact", 5e-3),
                ("decoupled", "exact", 8e-3),
            ):
                rows.append(
                    dict(
                        key=f"{model}{method}{bi}{s}",
                        state="done",
                        status="ok",
                        task="fitting",
                        model=model,
                        method=method,
                        basis_in=bi,
                        basis_out="pwq",
                        mesh_ratio=4,
                        seed=s,
                        heldout_mse=mse * (1 + 0.05 * s),
                    )
                )
    df = pd.DataFrame(rows)
    table = report.variant_table(df)
    assert set(table["variant"]) == {"iat-mesh", "iat-exact", "decoupled-exact"}
    row = table[(table["pair"] == "pwl/pwq") & (table["variant"] == "iat-exact")].iloc[0]
    assert row["mean"] == pytest.approx(5e-3 * 1.05) and row["seeds"] == 3
    verdicts = {v.claim.split(" ")[0]: v.verdict for v in report.variant_verdicts(df)}
    assert verdicts == {"Exact": "holds", "Decoupling": "fails"}
