"""The report's tables on hand-made cell results."""

import numpy as np
import pandas as pd
import pytest
from _synthetic import BASES6, cells, mesh_sweep, variant_sweep

from iatrun.report import tables


def test_pair_table_is_in_the_paper_layout_with_mean_and_std():
    df = cells(lambda bi, bo, s: 80 + BASES6.index(bi) + s, lambda bi, bo, s: 1e-3)
    mean = tables.pair_table(df, "memorization", "accuracy_pct")
    std = tables.pair_table(df, "memorization", "accuracy_pct", "std")
    assert list(mean.index) == BASES6 and list(mean.columns) == BASES6
    assert mean.loc["pwq", "rect"] == pytest.approx(83.0)  # 80 + 2 + mean(0, 1, 2)
    assert std.loc["pwq", "rect"] == pytest.approx(1.0)
    base = tables.baselines_table(df)
    assert base.loc["relu", "memorization_accuracy_pct"] == 90.0 and base.loc["tanh", "fitting_mse"] == 4e-6


def test_spearman_against_itself_and_reversed():
    t = pd.DataFrame(np.arange(36.0).reshape(6, 6), index=BASES6, columns=BASES6)
    assert tables.spearman(t, t) == pytest.approx(1.0)
    assert tables.spearman(-t, t) == pytest.approx(-1.0)


def test_mesh_table_from_a_mesh_sweep():
    table = tables.mesh_table(mesh_sweep())
    assert sorted(table["mesh_ratio"].unique()) == [1, 2, 4, 8, 16]


def test_mesh_table_gives_the_fitting_interval_on_the_log_scale():
    from scipy import stats

    row = tables.mesh_table(mesh_sweep()).set_index(["task", "mesh_ratio"]).loc[("fitting", 2)]
    logs = np.log10([1e-3 / 2 * (1 + 0.01 * s) for s in (0, 1, 2)])
    lo, hi = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    assert row["scale"] == "log10"
    assert row["centre"] == pytest.approx(10 ** logs.mean(), rel=1e-12)
    assert row["centre"] < row["mean"]  # the geometric mean, below the arithmetic one
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((10**lo, 10**hi), rel=1e-12)
    mem = tables.mesh_table(mesh_sweep()).set_index(["task", "mesh_ratio"]).loc[("memorization", 8)]
    # every seed memorises 90.8 %: the interval collapses to it, on the linear scale
    assert (mem["scale"], mem["centre"], mem["ci_low"], mem["ci_high"]) == ("linear", 90.8, 90.8, 90.8)


def test_centre_is_geometric_for_an_mse_only():
    assert tables.centre(pd.Series([1e-2, 1e-4], name="heldout_mse")) == pytest.approx(1e-3)
    assert tables.centre(pd.Series([80.0, 90.0], name="accuracy_pct")) == pytest.approx(85.0)


def test_main_mesh_ratio_is_the_iat_models_default_when_present():
    assert tables.default_mesh_ratio() == 4
    df = mesh_sweep()
    assert tables.main_mesh_ratio(df) == 4
    # without the default, the most common ratio
    assert tables.main_mesh_ratio(df[df["mesh_ratio"] != 4].iloc[:-1]) == 1
    assert tables.main_mesh_ratio(df.iloc[:0]) is None


def test_variant_table_has_each_pair_and_variant():
    table = tables.variant_table(variant_sweep())
    assert set(table["variant"]) == {"iat-mesh", "iat-exact", "decoupled-exact"}
    row = table[(table["pair"] == "pwl/pwq") & (table["variant"] == "iat-exact")].iloc[0]
    assert row["mean"] == pytest.approx(5e-3 * 1.05) and row["seeds"] == 3


def test_spearman_of_a_constant_table_is_nan_without_a_warning():
    import warnings

    import numpy as np
    import pandas as pd

    from iatrun.report.tables import spearman

    flat = pd.DataFrame(np.full((2, 2), 0.5), index=["a", "b"], columns=["x", "y"])
    ranked = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["a", "b"], columns=["x", "y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(spearman(flat, ranked))
        assert spearman(ranked, ranked) == 1.0
