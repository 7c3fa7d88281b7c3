"""study.md: each claim's verdict under every variant, the tally, Spearman with the paper and its
transpose, and the header's account of what the study rests on."""

import json

import numpy as np
import pytest
import yaml
from _synthetic import BASES6, sweep_folder, variants
from scipy import stats

from iatrun.report import build, paper, study
from iatrun.report.stats import Verdict
from iatrun.sweep.cells import cell_dir

ZERO = ("fourier", "pwl-w", "rect-w")  # the zero-integral rows claim 2 compares with the local ones
LOCAL = ("rect", "pwl", "pwq")


def _row_means(acc, rows, s):
    return np.mean([acc(bi, bo, s) for bi in rows for bo in BASES6])


def _wiggle(bi, bo):
    i, j = BASES6.index(bi), BASES6.index(bo)
    return 0.1 * ((3 * i + 5 * j) % 7)


def _holds(bi, bo, s):  # zero-integral rows 10 + 0.5 s points above the local ones
    return 85.0 + _wiggle(bi, bo) + (10.0 + 0.5 * s if bi in ZERO else 0.0)


def _fails(bi, bo, s):  # zero-integral rows 5 + 0.5 s points below
    return 85.0 + _wiggle(bo, bi) - (5.0 + 0.5 * s if bi in ZERO else 0.0)


def _mse(bi, bo, s):
    return 1e-4 * (1 + BASES6.index(bi) + 2 * BASES6.index(bo)) * (1 + 0.05 * s)


def _study(tmp_path, monkeypatch, df, **spec):
    folder = sweep_folder(tmp_path / "sw", df, monkeypatch, spec=spec)
    summary = build.build(folder)
    assert summary["study"] == folder / "study.md"
    return folder, (folder / "study.md").read_text()


def _row(text, start):
    (line,) = [x for x in text.splitlines() if x.startswith(f"| {start}")]
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_a_claim_that_holds_in_one_variant_and_fails_in_the_other(tmp_path, monkeypatch):
    df = variants("norm", ["none", "layer"], [_holds, _fails], [_mse, _mse])
    _, text = _study(tmp_path, monkeypatch, df)
    head = _row(text, "claim")
    assert head == ["claim", "norm=layer", "norm=none", "holds under k of K"]
    two = _row(text, "2. Zero-integral")
    for col, acc, word in ((2, _holds, "holds"), (1, _fails, "fails")):
        diffs = [_row_means(acc, ZERO, s) - _row_means(acc, LOCAL, s) for s in (0, 1, 2)]
        m = np.mean(diffs)
        lo, hi = stats.t.interval(0.95, 2, loc=m, scale=stats.sem(diffs))
        assert two[col] == f"**{word}** {m:+.3g} [{lo:+.3g}, {hi:+.3g}] points"
    assert two[3] == "holds under 1 of 2"
    # claim 6 needs the mesh grid: not tested anywhere, and K says so
    assert _row(text, "6. A larger mesh")[1:] == ["not tested: partial grid"] * 2 + [
        "not tested under any variant"
    ]


def test_spearman_with_the_paper_and_its_transpose_are_scipys(tmp_path, monkeypatch):
    df = variants("norm", ["none", "layer"], [_holds, _fails], [_mse, _mse])
    gone = (
        (df["norm"] == "layer")
        & (df["task"] == "fitting")
        & (df["basis_in"] == "pwl")
        & (df["basis_out"] == "pwq")
    )
    _, text = _study(tmp_path, monkeypatch, df[~gone])
    theirs = paper.table("memorization").loc[BASES6, BASES6].to_numpy()
    for norm, acc in (("none", _holds), ("layer", _fails)):
        ours = np.array([[np.mean([acc(bi, bo, s) for s in (0, 1, 2)]) for bo in BASES6] for bi in BASES6])
        rho = stats.spearmanr(ours.ravel(), theirs.ravel()).statistic
        rho_t = stats.spearmanr(ours.ravel(), theirs.T.ravel()).statistic
        assert abs(rho - rho_t) > 0.05  # the two differ: the test can tell them apart
        assert _row(text, f"norm={norm} | memorization") == [
            f"norm={norm}",
            "memorization",
            f"{rho:.2f}",
            f"{rho_t:.2f}",
        ]
    # a table without all 36 cells gets no correlation, and says why
    fit = _row(text, "norm=layer | fitting")
    assert fit[2:] == ["withheld: partial table (35 of 36 cells)"] * 2
    mean = paper.table("fitting")
    assert study.spearman_pair(mean, "fitting") == (
        pytest.approx(1.0),
        pytest.approx(stats.spearmanr(mean.to_numpy().ravel(), mean.to_numpy().T.ravel()).statistic),
    )


def test_the_header_states_seeds_rates_devices_and_commits(tmp_path, monkeypatch):
    df = variants("norm", ["none", "layer"], [_holds, _fails], [_mse, _mse])
    df["lr"] = "auto"
    df["lr_chosen"] = np.where(df["norm"] == "none", 1e-3, 3e-3)
    df["lr_at_edge"] = (df["norm"] == "none") & (df["model"] == "relu")  # 6 cells: 2 tasks × 3 seeds
    folder = tmp_path / "sw"
    for key in df["key"]:
        prov = {"device": "cuda:0", "device_name": "NVIDIA H100", "dtype": "float32"}
        prov.update(commit="0123456789abcdef", dirty=key.endswith("/layer"))
        cell_dir(folder, key).mkdir(parents=True)
        (cell_dir(folder, key) / "provenance.json").write_text(json.dumps(prov))
    first = cell_dir(folder, df["key"].iloc[0]) / "config.yaml"
    first.write_text(yaml.safe_dump({"train": {"lr": "auto", "tune": {"seeds": [1000]}}}))
    spec = {"provenance": {"commit": "0123456789abcdef", "resumed": [{"commit": "fedcba9876543210"}]}}
    folder, text = _study(tmp_path, monkeypatch, df, **spec)
    assert (
        "reported seeds: [0, 1, 2]; learning rates chosen on the selection seeds [1000], never reported"
        in text
    )
    assert "- device: cuda:0 (NVIDIA H100) (all 468 cells); dtype: float32 (all 468 cells)" in text
    assert "`0123456789ab` (234 cells), `0123456789ab` (tree dirty) (234 cells)" in text
    assert "sweep.yaml: made at `0123456789ab`, resumed at `fedcba987654`" in text
    none = _row(text, "norm=none | `")
    assert none[2:] == [
        "234 (234)",
        "0, 1, 2",
        "lr chosen per setting (auto): 0.001, 6 of 234 at the grid's edge",
    ]
    assert "most verdicts are expected to be inconclusive" in text
    # report.md's captions say the same per table
    report = (folder / "report.md").read_text()
    assert "lr chosen per setting (auto): 0.003, 0 of 108 at the grid's edge; norm layer):" in report


def test_a_verdict_cell_and_the_tally():
    holds = Verdict("2", "", "", "holds", "points", 3.0, 2.0, 4.0, 0.01, 3)
    toy = Verdict("2", "", "", "not tested: toy budget", withheld="inconclusive")
    one = Verdict("2", "", "", "inconclusive (one seed)", "points", 1.0, n=1)
    assert study.verdict_cell(holds) == "**holds** +3 [+2, +4] points"
    assert study.verdict_cell(toy) == "not tested: toy budget (the numbers: inconclusive)"
    assert study.verdict_cell(one) == "**inconclusive (one seed)** +1 points"
    assert study.tally([holds, toy, one]) == "holds under 1 of 2 (1 not tested)"
