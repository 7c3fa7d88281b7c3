"""The paired t test and the verdict rule, checked against hand computations."""

import math

import pytest

from iatrun.report import stats

T975_DF4 = 2.7764451051977987  # t quantile 0.975 on 4 degrees of freedom (tables: 2.776)


def test_mean_and_t_interval_of_a_textbook_example():
    d = [1.2, 0.8, 1.5, 0.9, 1.1]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)  # sum of squares 0.30 → sd √0.075
    assert mean == pytest.approx(1.1) and sd == pytest.approx(math.sqrt(0.075))
    half = T975_DF4 * sd / math.sqrt(5)
    t = stats.paired_t(d)
    assert t.n == 5
    assert t.effect == pytest.approx(1.1, abs=1e-12)
    assert t.ci_low == pytest.approx(1.1 - half, abs=1e-6)  # 0.759956
    assert t.ci_high == pytest.approx(1.1 + half, abs=1e-6)  # 1.440044
    assert t.ci_low == pytest.approx(0.759956, abs=1e-6)
    assert stats.rule(t) == "holds"


def test_p_value_against_the_closed_form_for_two_degrees_of_freedom():
    # n = 3, d = [1, 2, 4]: mean 7/3, s² = 7/3, se = √7/3, t = √7. On 2 degrees of freedom the
    # t distribution's two-sided tail is 1 − |t|/√(t² + 2), so p = 1 − √7/3 ≈ 0.1181.
    t = stats.paired_t([1.0, 2.0, 4.0])
    assert t.p == pytest.approx(1 - math.sqrt(7) / 3, abs=1e-9)
    assert stats.rule(t) == "inconclusive"  # p > 0.05: the interval holds zero
    assert t.ci_low < 0 < t.ci_high
    # the same closed form against a null of 1: t = (7/3 − 1)/(√7/3) = 4/√7
    t1 = stats.paired_t([1.0, 2.0, 4.0], null=1.0)
    tt = 4 / math.sqrt(7)
    assert t1.p == pytest.approx(1 - tt / math.sqrt(tt**2 + 2), abs=1e-9)


def test_an_interval_straddling_zero_is_inconclusive_though_every_seed_agrees():
    d = [0.1, 5.0, 0.2]
    assert all(x > 0 for x in d)
    t = stats.paired_t(d)
    assert t.ci_low < 0 < t.ci_high  # really straddles: mean 1.77 ± 4.30 · 1.62
    assert t.ci_low == pytest.approx(-5.2, abs=0.1)
    assert stats.rule(t) == "inconclusive" and stats.decide(d) == "inconclusive"
    # the old rule (every seed agrees, mean > 2 se) would also refuse here; a tighter set holds
    assert stats.decide([4.9, 5.0, 5.1]) == "holds" and stats.decide([-4.9, -5.0, -5.1]) == "fails"


def test_few_seeds_and_degenerate_intervals():
    one = stats.paired_t([0.7])
    assert (one.n, one.effect) == (1, 0.7) and math.isnan(one.ci_low) and math.isnan(one.p)
    assert stats.rule(one) == "inconclusive (one seed)"
    assert stats.rule(stats.paired_t([])) == "not tested: no data"
    assert stats.rule(stats.paired_t([None, float("nan"), 0.5])) == "inconclusive (one seed)"
    # two seeds: an interval on 1 degree of freedom (t = 12.706), very wide
    two = stats.paired_t([1.0, 3.0])
    assert two.ci_high - two.ci_low == pytest.approx(2 * 12.706204736 * 1.0, abs=1e-6)
    # identical differences: the interval collapses to the value
    same = stats.paired_t([2.0, 2.0, 2.0])
    assert (same.ci_low, same.ci_high, same.p) == (2.0, 2.0, 0.0) and stats.rule(same) == "holds"
    zero = stats.paired_t([0.0, 0.0, 0.0])
    assert zero.p == 1.0 and stats.rule(zero) == "inconclusive"


def test_rule_against_a_threshold_for_claims_that_want_small_values():
    gain = stats.paired_t([0.5, 0.7, 0.6], null=2.0)  # clearly below a 2-point margin
    assert stats.rule(gain, threshold=2.0, larger=False) == "holds"
    big = stats.paired_t([5.0, 5.5, 6.0], null=2.0)
    assert stats.rule(big, threshold=2.0, larger=False) == "fails"
    near = stats.paired_t([1.0, 3.0, 2.0], null=2.0)
    assert stats.rule(near, threshold=2.0, larger=False) == "inconclusive"


def test_a_claim_of_parts_carries_the_smallest_n_and_a_single_part_its_numbers():
    a = stats.tested("fitting", stats.paired_t([1.0, 1.1, 0.9]), "decades", "holds", ours="x")
    b = stats.tested("memorization", stats.paired_t([1.0, -1.0]), "points", "inconclusive", ours="y")
    both = stats.of_parts("4. c", "s", [a, b])
    assert both.verdict == "inconclusive" and both.n == 2 and math.isnan(both.effect)
    assert both.ours == "fitting: x; memorization: y" and both.parts == [a, b]
    single = stats.of_parts("2. c", "s", [a])
    assert (single.effect, single.n, single.unit, single.parts) == (a.effect, 3, "decades", [])
