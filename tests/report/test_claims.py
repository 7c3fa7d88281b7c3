"""The claims logic on hand-made cell results."""

import numpy as np
import pytest
import torch
from _synthetic import BASES6, cells, mesh_sweep, variant_sweep

from iatrun.nn import bases
from iatrun.report import claims
from iatrun.report.scores import per_seed


def by_number(verdicts):
    return {int(v.claim.split(".")[0]): v.verdict for v in verdicts}


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

    v = by_number(claims.claims(cells(acc, mse)))
    assert v == {
        1: "holds",
        2: "holds",
        3: "holds",
        4: "holds",
        5: "holds",
        6: "not tested: partial grid",  # no mesh ratios but the default
        7: "holds",
        8: "holds",
    }


def test_claims_fail_and_inconclusive():
    # local rows clearly better on memorisation: claim 2 fails
    df = cells(lambda bi, bo, s: 95.0 if bi in ("rect", "pwl", "pwq") else 80.0, lambda bi, bo, s: 1e-3)
    assert by_number(claims.claims(df))[2] == "fails"
    # a tiny difference drowned in seed noise: inconclusive
    rng = np.random.default_rng(1)
    noise = {(bi, s): rng.normal(0, 3) for bi in BASES6 for s in range(3)}
    df = cells(
        lambda bi, bo, s: 85.0 + (0.1 if bi == "fourier" else 0) + noise[(bi, s)], lambda bi, bo, s: 1e-3
    )
    assert by_number(claims.claims(df))[2] == "inconclusive"


def test_decide_rules():
    assert claims.decide([1.0, 1.1, 0.9]) == "holds"
    assert claims.decide([-1.0, -1.1, -0.9]) == "fails"
    assert claims.decide([1.0, -0.5, 0.2]) == "inconclusive"
    assert claims.decide([0.01, 5.0]) == "inconclusive"  # same sign, but the t interval holds zero
    assert claims.decide([0.3]) == "inconclusive (one seed)" and claims.decide([]) == "not tested: no data"
    assert claims.combine(["holds", "inconclusive"]) == "inconclusive"
    assert claims.combine(["holds", "fails"]) == "fails"
    assert claims.combine(["fails", "not tested: partial grid"]) == "fails"
    assert claims.combine(["holds", "not tested: partial grid"]) == "not tested: partial grid"
    assert claims.combine(["holds", "inconclusive (one seed)"]) == "inconclusive (one seed)"


def test_mesh_claim_from_a_mesh_sweep():
    assert claims.claim_mesh_ratio(mesh_sweep()).verdict == "holds"


def test_mesh_claim_ranks_r_within_each_pair_and_leaves_out_the_rect_control():
    """Two pairs a decade apart, each improving with r: within-pair ρ is 1 on every seed, while a
    ρ pooled over both pairs would be pulled down by their gap. rect/rect (constant in r) and a
    pair worse with r at a far lower MSE must not turn the verdict."""
    import pandas as pd

    df = mesh_sweep()
    other = df.assign(basis_in="fourier", key=df["key"] + "f")
    other.loc[other["task"] == "fitting", "heldout_mse"] *= 10  # a decade worse, same trend in r
    control = df.assign(basis_in="rect", basis_out="rect", key=df["key"] + "r")
    control.loc[control["task"] == "fitting", "heldout_mse"] = 1e-6  # best of all, flat in r
    v = claims.claim_mesh_ratio(pd.concat([df, other, control], ignore_index=True))
    fitting = next(p for p in v.parts if p.claim == "fitting")
    assert fitting.verdict == "holds" and fitting.effect == pytest.approx(1.0)


def test_mesh_claim_waits_until_every_pair_has_every_ratio():
    """A pair run at r = 4 only (its other ratios still to come) must not leave the verdict to the
    pairs that have them: claim 6 is untested, and says which pair lacks which ratios."""
    import pandas as pd

    df = mesh_sweep()
    late = df[df["mesh_ratio"] == 4].assign(basis_in="fourier", key=lambda d: d["key"] + "f")
    v = claims.claim_mesh_ratio(pd.concat([df, late], ignore_index=True))
    assert v.verdict == "not tested: partial grid"
    assert [p.ours for p in v.parts] == ["fourier/pwq lacks r = 1, 2, 8, 16"] * 2
    whole = claims.claim_mesh_ratio(df)
    assert [p.verdict for p in whole.parts] == ["holds", "holds"]
    assert whole.parts[0].ours.endswith("; 1 pair(s) (pwq/pwq) at r = 1, 2, 4, 8, 16")


def test_exact_and_decoupled_variants():
    verdicts = {v.claim.split(" ")[0]: v.verdict for v in claims.variant_verdicts(variant_sweep())}
    assert verdicts == {"Exact": "holds", "Decoupling": "fails"}


def test_basis_groups_and_their_statistic_texts():
    assert claims.local_bases() == ["rect", "pwl", "pwq"]
    assert claims.zero_integral_bases() == ["fourier", "pwl-w", "rect-w"]
    assert claims.wavelet_bases() == ["pwl-w", "rect-w"]
    texts = {
        int(v.claim.split(".")[0]): v.statistic
        for v in claims.claims(cells(lambda *_: 85.0, lambda *_: 1e-3))
    }
    assert texts[2] == "mean accuracy of rows fourier, pwl-w, rect-w − rows rect, pwl, pwq"
    assert texts[5] == "mean score of columns rect, pwl, pwq − columns pwl-w, rect-w"


def _flat(n, t):
    return torch.ones(len(t), n, dtype=t.dtype)


@pytest.fixture
def new_bases():
    """A local basis and a wavelet (local, zero-integral) registered for one test."""
    bases.register_basis(
        "test-local", continuous=True, smooth=True, global_=False, zero_integral=False, sup_norm=1.0
    )(_flat)
    bases.register_basis(
        "test-wave", continuous=True, smooth=True, global_=False, zero_integral=True, sup_norm=1.0
    )(_flat)
    try:
        yield ["test-local", "test-wave"]
    finally:
        bases.BASES.remove("test-local")
        bases.BASES.remove("test-wave")


def test_a_newly_registered_basis_is_counted_in_its_groups(new_bases):
    assert "test-local" in claims.local_bases() and "test-local" not in claims.zero_integral_bases()
    assert "test-wave" in claims.zero_integral_bases() and "test-wave" in claims.wavelet_bases()
    assert "test-wave" not in claims.local_bases()

    # Only the new bases differ: the test-wave row memorises better, the test-local column scores
    # better on both tasks. Claims 2 and 5 hold only if the new bases are counted.
    def acc(bi, bo, s):
        return 85.0 + (10.0 if bi == "test-wave" else 0.0) + (5.0 if bo == "test-local" else 0.0)

    def mse(bi, bo, s):
        return 1e-4 if bo == "test-local" else 1e-3

    verdicts = {
        int(v.claim.split(".")[0]): v for v in claims.claims(cells(acc, mse, bases=BASES6 + new_bases))
    }
    assert verdicts[2].verdict == "holds" and verdicts[5].verdict == "holds"
    assert verdicts[2].statistic == (
        "mean accuracy of rows fourier, pwl-w, rect-w, test-wave − rows rect, pwl, pwq, test-local"
    )
    assert verdicts[5].statistic == (
        "mean score of columns rect, pwl, pwq, test-local − columns pwl-w, rect-w, test-wave"
    )
    # 10 points on one of four zero-integral rows; the same on every seed: a zero-width interval
    v2 = verdicts[2]
    assert (v2.effect, v2.ci_low, v2.ci_high, v2.n, v2.unit) == (2.5, 2.5, 2.5, 3, "points")
    assert v2.ours == "memorization: 88.1 % vs 85.6 %"  # 85 + 10/4 + 5/8 against 85 + 5/8


def test_without_the_new_bases_those_sweeps_show_no_difference():
    # the same sweep over the six paper bases only: every row and column alike
    df = cells(lambda *_: 85.0, lambda *_: 1e-3)
    verdicts = by_number(claims.claims(df))
    assert verdicts[2] == "inconclusive" and verdicts[5] == "inconclusive"


def test_claim_7_fitting_needs_every_pair_while_memorisation_needs_only_the_baselines():
    """tanh/sigmoid "fit best of all": on the baselines alone the fitting part is untested, and the
    memorisation part (relu against tanh/sigmoid) is still tested."""
    df = cells(lambda bi, bo, s: 80.0, lambda bi, bo, s: 1e-3)
    baselines = df[df["model"] != "iat"]
    v = claims.claim_smooth_activations({t: per_seed(baselines, t) for t in ("fitting", "memorization")})
    parts = {p.claim: p.verdict for p in v.parts}
    assert parts["fitting"] == "not tested: partial grid"
    assert parts["memorization"] == "holds"  # relu 90 % against tanh 85 % and sigmoid 84 %
    full = claims.claim_smooth_activations({t: per_seed(df, t) for t in ("fitting", "memorization")})
    assert {p.claim: p.verdict for p in full.parts}["fitting"] == "holds"  # 3e-6 beats the pairs' 1e-3


def test_claim_8_needs_every_continuous_row_whole():
    """The continuous rows' mean against relu: tested on the whole table, not on one row of it (the
    paper grid run in parts has the fourier row long before the others)."""
    df = cells(lambda *_: 85.0, lambda *_: 1e-3)  # IAT cells jump once (0.1), relu 5 times (2 + seed)
    whole = {p.claim: p.verdict for p in claims.claim_stability(df).parts}
    assert whole == {f"{t} {k}": "holds" for t in ("fitting", "memorization") for k in ("jumps", "size")}
    one_row = df[(df["model"] != "iat") | (df["basis_in"] == "fourier")]
    v = claims.claim_stability(one_row)
    assert {p.verdict for p in v.parts} == {
        "not tested: partial grid"
    } and v.verdict == "not tested: partial grid"
    no_column = df[(df["model"] != "iat") | (df["basis_out"] != "rect-w")]
    assert claims.claim_stability(no_column).verdict == "not tested: partial grid"


def test_claim_1_is_not_tested_where_rect_rect_and_relu_trained_at_different_rates():
    df = cells(lambda bi, bo, s: 80.0 if (bi, bo) == ("rect", "rect") else 85.0, lambda *_: 1e-3)
    df["lr"], df["lr_chosen"] = "auto", 3e-3
    rect_mem = (df["task"] == "memorization") & (df["basis_in"] == "rect") & (df["basis_out"] == "rect")
    df.loc[rect_mem, "lr_chosen"] = 1e-2
    v = claims.claims(df)[0]
    parts = {p.claim: p for p in v.parts}
    assert parts["memorization"].verdict == "not tested: rates differ"
    assert "rect/rect at lr 0.01, relu at 0.003" in parts["memorization"].ours
    assert "80 % vs 90 %" in parts["memorization"].ours.replace(".0", "")  # the numbers stay shown
    assert parts["fitting"].verdict == "holds"  # the same rate there: tested (1e-3 against relu's 1e-3)
    assert v.verdict == "not tested: rates differ"
    df.loc[rect_mem, "lr_chosen"] = 3e-3  # the same rate: the 10-point gap is a failure of the claim
    assert {p.claim: p.verdict for p in claims.claims(df)[0].parts}["memorization"] == "fails"
