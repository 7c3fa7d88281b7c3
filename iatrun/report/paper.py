"""The paper's published numbers (Tables 2–3 and the scalar baselines), shipped with the package."""

from __future__ import annotations

from importlib import resources

import pandas as pd

TABLES = {
    "memorization": "table2_memorization_accuracy.csv",  # accuracy in %
    "fitting": "table3_fitting_mse.csv",  # MSE
}


def table(task: str) -> pd.DataFrame:
    """The paper's 6×6 table for ``task``: rows basis_in, columns basis_out."""
    with resources.files("iatrun.data").joinpath("paper", TABLES[task]).open() as f:
        return pd.read_csv(f, index_col="basis_in")


def baselines() -> pd.DataFrame:
    """relu / tanh / sigmoid: memorization accuracy (%) and fitting MSE."""
    with resources.files("iatrun.data").joinpath("paper", "scalar_baselines.csv").open() as f:
        return pd.read_csv(f, index_col="activation")
