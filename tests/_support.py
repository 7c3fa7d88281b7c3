"""Helpers shared by the sweep tests: a tiny grid, the console script, result comparisons."""

import sys
from pathlib import Path

import pandas as pd

# Ten cells: 2 input x 2 output bases + relu, two seeds; `steps` sets how long each one takes.
GRID = """
seeds: [0, 1]
overrides: [model.width=8, model.depth=1, train.steps={steps}, task.n_train=64, task.holdout_factor=2]
blocks:
  - task: fitting
    model: iat
    model.basis_in: [rect, fourier]
    model.basis_out: [rect, pwq]
  - task: fitting
    model: relu
"""
N_CELLS = 10


def write_grids(root: Path) -> Path:
    """A --config-dir with grids `tiny` (30 steps a cell) and `slow` (300 steps)."""
    (root / "sweep").mkdir(parents=True)
    (root / "sweep" / "tiny.yaml").write_text(GRID.format(steps=30))
    (root / "sweep" / "slow.yaml").write_text(GRID.format(steps=300))
    return root


def exe() -> list[str]:
    """The installed console script (or ``python -m iatrun`` beside this interpreter)."""
    path = Path(sys.executable).with_name("iatrun")
    return [str(path)] if path.exists() else [sys.executable, "-m", "iatrun"]


def stable(folder: Path) -> pd.DataFrame:
    """cells.csv without the timing columns, which differ between runs."""
    df = pd.read_csv(folder / "cells.csv")
    return df.drop(columns=["wall_time_s", "steps_per_s"]).sort_values("key").reset_index(drop=True)


def tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted((folder / "tables").glob("*.csv"))}


# A stacked cell matches its serial run within 1e-4 relative in float32, not bit for bit, and its
# bits depend on which cells share its stack (docs/reliability.md): folders whose cells were stacked
# differently (array tasks, or a rerun of what a crash left) agree to this tolerance only.
STACKED_RTOL = 1e-4


def assert_same_results(a: Path, b: Path, rtol: float | None = None) -> None:
    """Two sweep folders hold the same cells, metrics and tables (within ``rtol`` relative where
    given; else pandas' default, and integer columns exactly). The per-pair tests against relu
    (``<task>_vs_relu.csv``) are compared on their pairs and seeds only: their effects are small
    differences of the cells' scores, which magnify a rounding apart in the cells far beyond it,
    and the cells themselves are compared above."""
    close = {} if rtol is None else {"rtol": rtol}
    pd.testing.assert_frame_equal(stable(a), stable(b), **close)
    ta, tb = tables(a), tables(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        if "_vs_relu" in name:
            keys = ["basis_in", "basis_out", "n"]
            pd.testing.assert_frame_equal(ta[name][keys], tb[name][keys])
        else:
            pd.testing.assert_frame_equal(ta[name], tb[name], **close)
