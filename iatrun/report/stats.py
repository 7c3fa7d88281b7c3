"""The statistics behind a verdict: a paired t test on per-seed differences, and the verdict rule.

Every claim is tested on *paired* differences, one per seed: the same seed (the same initial
weights and data) trained with the two settings a claim compares, differenced in the claim's
units (accuracy points, or decades of MSE as −log10), signed so that positive favours the claim.

**The test: a one-sample (paired) t test and its t confidence interval.** For n seeds with mean m
and sample standard deviation s, the 95 % interval is m ± t₀.₉₇₅,ₙ₋₁ · s/√n and the two-sided p
is that of t = m / (s/√n) on n − 1 degrees of freedom (``scipy.stats.t``, ``ttest_1samp``).
Why this one: a sweep has 3–5 seeds, and at that size

* the Wilcoxon signed-rank test cannot reach p < 0.05 two-sided at all: its smallest p is
  2/2ⁿ (0.25, 0.125, 0.0625 for n = 3, 4, 5), so it could never call a claim;
* a bootstrap interval has only nⁿ resamples (27 for n = 3), is too narrow at small n (it ignores
  the uncertainty of s) and does not reach its nominal coverage;
* the t interval is exact at any n when the differences are normal, and is the usual choice for
  small paired samples.

What it assumes: the per-seed differences are independent draws from one normal distribution.
Seeds are independent initialisations, so independence holds; normality cannot be checked with
3–5 values, and the interval is only approximately right when the differences are skewed or have
outliers. The data set is the same for every seed (the task's data seed is fixed), so the interval
is about the spread over initialisations, not over data sets. With n = 2 the interval is valid but
very wide (t₀.₉₇₅,₁ = 12.7); with one seed there is no interval. If every seed gives exactly the
same difference (s = 0), the interval collapses to that value and p is 0 (or 1 when it is 0):
deterministic results, which only hand-made or bit-identical cells produce.

**The rule.** ``holds`` when the interval lies wholly on the claim's side of the threshold (0 for
"A beats B"), ``fails`` when it lies wholly on the other side, ``inconclusive`` when it straddles
it; fewer than two seeds give ``inconclusive (one seed)`` and none ``not tested: no data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.95  # the confidence level of every interval

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
ONE_SEED = "inconclusive (one seed)"
NO_DATA = "not tested: no data"
PARTIAL = "not tested: partial grid"
TOY = "not tested: toy budget"
FEW_SEEDS = "not tested: needs ≥ 3 seeds (selection and evaluation)"
RATES_DIFFER = "not tested: rates differ"


@dataclass(frozen=True)
class Test:
    """The paired test of one set of per-seed differences."""

    n: int  # seeds (finite differences)
    effect: float  # their mean
    ci_low: float  # the LEVEL t interval of the mean (NaN with fewer than two seeds)
    ci_high: float
    p: float  # two-sided p of the t test against ``null`` (NaN with fewer than two seeds)


def finite(values) -> np.ndarray:
    """The finite numbers among ``values`` (None and NaN dropped)."""
    d = np.array([x for x in values if x is not None], dtype=float)
    return d[np.isfinite(d)]


def paired_t(diffs, null: float = 0.0, level: float = LEVEL) -> Test:
    """Mean of the per-seed differences, its t confidence interval and the p of H0: mean = null."""
    from scipy import stats

    d = finite(diffs)
    n = int(d.size)
    nan = float("nan")
    if n == 0:
        return Test(0, nan, nan, nan, nan)
    m = float(d.mean())
    if n < 2:
        return Test(1, m, nan, nan, nan)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    tiny = 1e-12 * max(1.0, abs(m))
    if se <= tiny:  # identical differences (up to rounding): a degenerate interval
        if abs(m - null) <= tiny:
            return Test(n, m, null, null, 1.0)
        return Test(n, m, m, m, 0.0)
    lo, hi = stats.t.interval(level, n - 1, loc=m, scale=se)
    p = float(stats.ttest_1samp(d, null).pvalue)
    return Test(n, m, float(lo), float(hi), p)


def rule(test: Test, threshold: float = 0.0, larger: bool = True) -> str:
    """The verdict: the interval wholly above ``threshold`` holds (below, when ``larger`` is False
    and the claim wants small values), wholly on the other side fails, otherwise inconclusive."""
    if test.n == 0:
        return NO_DATA
    if test.n < 2:
        return ONE_SEED
    lo, hi = test.ci_low - threshold, test.ci_high - threshold
    if not larger:
        lo, hi = -hi, -lo
    if lo > 0:
        return HOLDS
    if hi < 0:
        return FAILS
    return INCONCLUSIVE


def decide(diffs) -> str:
    """The verdict on per-seed differences that are positive where the claim holds."""
    return rule(paired_t(diffs))


def not_tested(verdict: str) -> bool:
    return verdict.startswith("not tested")


def combine(verdicts: list[str]) -> str:
    """The verdict of a claim made of parts: every part holds: holds; any part fails: fails;
    otherwise the first part that was not tested, else inconclusive (one seed), else inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if FAILS in verdicts:
        return FAILS
    for v in verdicts:
        if not_tested(v):
            return v
    if ONE_SEED in verdicts:
        return ONE_SEED
    return INCONCLUSIVE if verdicts else NO_DATA


@dataclass
class Verdict:
    """One claim (or one part of a claim): its statistic, our values, the test and the verdict.

    ``effect`` is the mean per-seed difference in ``unit``, ``ci_low``/``ci_high`` its 95 % t
    interval, ``p`` the two-sided p of the paired t test, ``n`` the seeds it rests on. A claim tested
    per task (or per measure) keeps one Verdict per part in ``parts``; its own numbers are then NaN
    and ``n`` is the smallest ``n`` of its parts.
    """

    claim: str
    statistic: str
    ours: str
    verdict: str
    unit: str = ""
    effect: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p: float = float("nan")
    n: int = 0
    parts: list[Verdict] = field(default_factory=list)
    withheld: str = ""  # the verdict the numbers gave, where a toy budget withholds it


def tested(claim: str, test: Test, unit: str, verdict: str, statistic: str = "", ours: str = "") -> Verdict:
    """A Verdict carrying ``test``'s numbers."""
    return Verdict(
        claim, statistic, ours, verdict, unit, test.effect, test.ci_low, test.ci_high, test.p, test.n
    )


def untested(claim: str, verdict: str, unit: str = "", ours: str = "n/a") -> Verdict:
    """A part that could not be tested (``verdict`` says why)."""
    return Verdict(claim, "", ours, verdict, unit)


def of_parts(claim: str, statistic: str, parts: list[Verdict], ours: str = "") -> Verdict:
    """A claim made of parts: the combined verdict; a single part lends the claim its numbers."""
    ours = ours or "; ".join(f"{p.claim}: {p.ours}" for p in parts)
    if len(parts) == 1:
        (p,) = parts
        return Verdict(claim, statistic, ours, p.verdict, p.unit, p.effect, p.ci_low, p.ci_high, p.p, p.n)
    n = min((p.n for p in parts), default=0)
    return Verdict(claim, statistic, ours, combine([p.verdict for p in parts]), n=n, parts=list(parts))
