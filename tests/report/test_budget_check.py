"""budget-check.md: does a declared budget rank settings as the calibrated one does?"""

import pandas as pd
import pytest
from _synthetic import budget as budget_columns

from iatrun.report import budget
from iatrun.report.budget_check import budget_check_md, checks

PAIRS = [("fourier", "pwq"), ("pwl", "rect-w"), ("pwq", "fourier"), ("rect", "rect")]


def _cells(full_mse, small_mse, small_budget):
    """Four fitting pairs at the calibrated budget and at ``small_budget``, seed 0."""
    rows = []
    for (bi, bo), a, b in zip(PAIRS, full_mse, small_mse):
        common = dict(state="done", status="ok", task="fitting", model="iat", basis_in=bi, basis_out=bo)
        common.update(mesh_ratio=4, method=None, seed=0)
        rows.append(dict(common, **budget_columns("fitting"), key=f"f/{bi}-{bo}/full", heldout_mse=a))
        rows.append(
            dict(common, **budget_columns("fitting", **small_budget), key=f"f/{bi}-{bo}/s", heldout_mse=b)
        )
    return pd.DataFrame(rows)


def test_the_check_is_the_spearman_correlation_of_the_two_budgets_metrics():
    study = budget.declared()["study"]["fitting"]
    # ranks 1 2 3 4 against 1 3 2 4: rho = 1 - 6 * (1 + 1) / (4 * (16 - 1)) = 0.8
    df = _cells([1e-3, 2e-3, 3e-3, 4e-3], [1e-2, 3e-2, 2e-2, 4e-2], study)
    (found,) = checks(df)
    assert (found.task, found.budget, len(found.pairs)) == ("fitting", "study", 4)
    assert found.rho == pytest.approx(0.8) and found.meets
    assert found.p == pytest.approx(0.2, abs=1e-9)  # scipy's t approximation: t = 0.8 sqrt(2 / 0.36)
    text = budget_check_md("study-check", [found])
    assert "| fitting | study | 4 | 0.800 | 0.2 | yes |" in text
    assert "| pwl/rect-w | 0.002 | 2 | 0.03 | 3 |" in text  # the metric and its rank at each budget


def test_a_reversed_order_fails_the_bar_and_an_undeclared_budget_is_no_check():
    study = budget.declared()["study"]["fitting"]
    (found,) = checks(_cells([1e-3, 2e-3, 3e-3, 4e-3], [4e-3, 3e-3, 2e-3, 1e-3], study))
    assert found.rho == pytest.approx(-1.0) and not found.meets
    assert checks(_cells([1e-3, 2e-3, 3e-3, 4e-3], [1e-3] * 4, {"steps": 999})) == []
