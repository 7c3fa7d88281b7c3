"""A table cell is one setting: extra config axes split the report into variants, or are refused."""

import numpy as np
import pandas as pd
import pytest
from _synthetic import BASES6, cells, mesh_sweep, sweep_folder, variant_sweep, variants

from iatrun.errors import IatrunError
from iatrun.report import build, split
from iatrun.report.budget import calibrated


def _acc(offset):
    return lambda bi, bo, s: 80.0 + offset + BASES6.index(bi) + 0.5 * s


def _mse(scale):
    return lambda bi, bo, s: scale * (1 + BASES6.index(bi)) * (1 + 0.1 * s)


def _table(folder, name):
    return pd.read_csv(folder / "tables" / name, index_col=0)


def test_two_learning_rates_split_the_tables_and_each_holds_its_own_mean(tmp_path, monkeypatch):
    df = variants("lr", [1e-3, 3e-3], [_acc(0), _acc(6)], [_mse(1e-3), _mse(4e-3)])
    df.loc[df["model"] == "relu", "accuracy_pct"] += np.where(
        df.loc[df["model"] == "relu", "lr"] == 1e-3, 0, 2
    )
    folder = sweep_folder(tmp_path / "sw", df, monkeypatch)
    summary = build.build(folder)
    names = {p.name for p in (folder / "tables").iterdir()}
    assert {
        "memorization_accuracy_pct__lr-0.001.csv",
        "memorization_accuracy_pct__lr-0.003.csv",
        "fitting_heldout_mse_std__lr-0.003.csv",
        "baselines__lr-0.001.csv",
        "memorization_vs_relu__lr-0.003.csv",  # each rate's pairs against relu at that rate
    } <= names
    report = (folder / "report.md").read_text()
    assert "[`tables/fitting_vs_relu__lr-0.001.csv`](tables/fitting_vs_relu__lr-0.001.csv)" in report
    assert "memorization_accuracy_pct.csv" not in names and "baselines.csv" not in names
    # pwq/rect at lr 3e-3: 80 + 6 + 2 + 0.5 * mean(0, 1, 2) = 88.5; pooled over both rates it would be 85.5
    slow, fast = (_table(folder, f"memorization_accuracy_pct__lr-{r}.csv") for r in ("0.001", "0.003"))
    assert fast.loc["pwq", "rect"] == pytest.approx(88.5) and slow.loc["pwq", "rect"] == pytest.approx(82.5)
    mse = _table(folder, "fitting_heldout_mse__lr-0.003.csv")
    assert mse.loc["fourier", "pwl"] == pytest.approx(4e-3 * 4 * 1.1)  # mean of (1, 1.1, 1.2)
    base = _table(folder, "baselines__lr-0.003.csv")
    assert base.loc["relu", "memorization_accuracy_pct"] == pytest.approx(92.0)
    assert _table(folder, "baselines__lr-0.001.csv").loc["relu", "memorization_accuracy_pct"] == 90.0
    report = (folder / "report.md").read_text()
    assert "## Variant lr=0.001" in report and "## Variant lr=0.003" in report
    assert report.count("### The paper's claims (SPEC §6)") == 2
    assert "beyond the tables' axes the cells vary `train.lr` (0.001, 0.003)" in report
    # the terminal's verdict lines name their variant
    assert len(summary["verdicts"]) == 16 and summary["verdicts"][8].claim.startswith("lr=0.003: 1.")


def test_baselines_without_the_axis_key_are_shared_by_every_variant():
    """The study's shape: IAT cells vary norm × wavelets, baselines only norm (they lack wavelets)."""
    parts = []
    for norm in ("none", "layer"):
        for wav in ("single", "dyadic"):
            df = cells(_acc(0), _mse(1e-3), seeds=(0,))
            df["norm"], df["model.wavelets"] = norm, np.where(df["model"] == "iat", wav, None)
            df["key"] += f"/{norm}/{wav}"
            parts.append(df if wav == "single" else df[df["model"] == "iat"])
    df = pd.concat(parts, ignore_index=True)
    axes, split_ = split.split(df)
    assert axes == ["norm", "model.wavelets"]
    names = [v.name for v, _ in split_]
    assert names == ["norm-layer_wavelets-dyadic", "norm-layer_wavelets-single"] + [
        "norm-none_wavelets-dyadic",
        "norm-none_wavelets-single",
    ]
    variant, sub = split_[0]
    assert variant.label == "norm=layer, wavelets=dyadic"
    iat, base = sub[sub["model"] == "iat"], sub[sub["model"] != "iat"]
    assert len(iat) == 72 and set(iat["model.wavelets"]) == {"dyadic"} and set(iat["norm"]) == {"layer"}
    assert len(base) == 6 and set(base["norm"]) == {"layer"}  # relu, tanh, sigmoid × 2 tasks
    # the same baseline cells sit in both wavelet variants of their norm
    assert set(base["key"]) == set(split_[1][1].query("model != 'iat'")["key"])


def test_a_baseline_whose_value_no_full_cell_has_opens_its_own_variants():
    """A study run in parts: the norm=none baselines finished, none of the norm=none IAT cells did."""
    a = cells(_acc(0), _mse(1e-3), seeds=(0,))
    a["norm"], a["model.wavelets"] = "gain", np.where(a["model"] == "iat", "single", None)
    b = a[a["model"] != "iat"].assign(norm="none", key=lambda d: d["key"] + "/none")
    c = a[a["model"] == "iat"].assign(**{"model.wavelets": "dyadic", "key": lambda d: d["key"] + "/d"})
    _, split_ = split.split(pd.concat([a, b, c], ignore_index=True))
    assert [v.label for v, _ in split_] == [
        "norm=gain, wavelets=dyadic",
        "norm=gain, wavelets=single",
        "norm=none, wavelets=dyadic",
        "norm=none, wavelets=single",
    ]
    assert (split_[2][1]["model"] != "iat").all() and len(split_[2][1]) == 6


def test_settings_that_change_with_the_tables_axes_are_not_axes():
    df = cells(_acc(0), _mse(1e-3))  # steps, width, depth, points differ between the two tasks
    df["lr"], df["lr_chosen"] = "auto", np.linspace(1e-4, 1e-2, len(df))  # a metric, not an axis
    df["lr_at_edge"] = df.index % 2 == 0
    assert split.extra_axes(df) == [] and split.split(df) == ([], [])
    assert split.extra_axes(mesh_sweep()) == [] and split.extra_axes(variant_sweep()) == []


def test_variant_names_are_file_safe_and_collisions_use_the_full_key():
    df = variants("task.target", ["multi sine/2", "chirp"], [_acc(0), _acc(1)])
    df["model.target"] = df["task.target"]  # two axes whose last parts collide
    axes, split_ = split.split(df)
    assert [v.name for v, _ in split_] == [
        "model.target-chirp_task.target-chirp",
        "model.target-multi~20sine~2f2_task.target-multi~20sine~2f2",
    ]
    assert split.value_label(1000.0) == "1000" and split.value_label(np.bool_(True)) == "true"


def _unchanged(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_too_many_variants_are_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    rates = [round(1e-4 * 1.5**i, 8) for i in range(13)]
    df = variants("lr", rates, [_acc(i) for i in range(13)], seeds=(0,), bases=BASES6[:2])
    folder = sweep_folder(tmp_path / "sw", df, monkeypatch)
    (folder / "report.md").write_text("an earlier report")
    (folder / "tables").mkdir()
    (folder / "tables" / "baselines.csv").write_text("earlier")
    before = _unchanged(folder)
    with pytest.raises(IatrunError) as err:
        build.build(folder)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert "train.lr (13 values)" in msg and "13 variants, more than 12" in msg
    assert _unchanged(folder) == before


def test_cells_that_lack_an_axis_another_cell_of_their_setting_has_are_refused(tmp_path, monkeypatch):
    a = cells(_acc(0), _mse(1e-3), seeds=(0,))
    b = a.assign(**{"model.foo": 1.0, "key": a["key"] + "/foo"})
    b.loc[b["model"] != "iat", "model.foo"] = 2.0  # baselines vary it: an axis
    extra = b[b["model"] != "iat"].assign(**{"model.foo": 1.0, "key": lambda d: d["key"] + "1"})
    df = pd.concat([a.assign(**{"model.foo": np.nan}), b, extra], ignore_index=True)
    folder = sweep_folder(tmp_path / "sw", df, monkeypatch)
    with pytest.raises(IatrunError, match=r"^cannot split the tables along model.foo: .* lack model.foo"):
        build.build(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.yaml"]


def test_a_single_setting_sweep_keeps_its_file_names_and_gets_no_study(tmp_path, monkeypatch):
    folder = sweep_folder(tmp_path / "sw", cells(_acc(0), _mse(1e-3)), monkeypatch, figures=True)
    summary = build.build(folder)
    assert sorted(p.name for p in (folder / "tables").iterdir()) == [
        "baselines.csv",
        "fitting_heldout_mse.csv",
        "fitting_heldout_mse_std.csv",
        "fitting_vs_relu.csv",
        "memorization_accuracy_pct.csv",
        "memorization_accuracy_pct_std.csv",
        "memorization_vs_relu.csv",
    ]
    assert {p.name for p in (folder / "figures").iterdir()} >= {
        "fitting_heatmap.png",
        "memorization_heatmap.png",
    }
    assert not (folder / "study.md").exists() and summary["study"] is None
    report = (folder / "report.md").read_text()
    assert "Variant" not in report and "__" not in report
    assert "## The paper's claims (SPEC §6)" in report and len(summary["verdicts"]) == 8
    # the caption says what the table rests on
    cal = calibrated("memorization")  # what the synthetic cells ran at
    assert (
        f"Ours (mean over 3 seeds: 0, 1, 2; steps {cal['steps']}, width {cal['width']}, "
        f"depth {cal['depth']}, training points {cal['points']}; lr 0.003; norm gain):" in report
    )


def test_a_later_report_removes_the_files_of_an_earlier_split(tmp_path, monkeypatch):
    df = variants("norm", ["none", "layer"], [_acc(0), _acc(1)])
    folder = sweep_folder(tmp_path / "sw", df, monkeypatch, figures=True)
    build.build(folder)
    assert (folder / "study.md").is_file() and (
        folder / "figures" / "fitting_heatmap__norm-none.png"
    ).is_file()
    (folder / "tables" / "notes.csv").write_text("mine")  # not the report's: kept
    sweep_folder(folder, df[df["norm"] == "none"], monkeypatch)
    build.build(folder)
    assert not (folder / "study.md").exists()
    assert not list(folder.rglob("*__*")) and (folder / "tables" / "baselines.csv").is_file()
    assert (folder / "tables" / "notes.csv").read_text() == "mine"
