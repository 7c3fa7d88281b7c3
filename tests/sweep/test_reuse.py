"""``iatrun sweep --reuse DIR``: cells a source folder finished with the same config are copied, not
trained; their rates come too; anything that differs (config, artifacts level) is trained."""

import json

import pandas as pd
import yaml
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """The CLI's output with its line wrapping undone (rich wraps at the console width, so where a
    long temporary path falls decides where a message breaks)."""
    return " ".join(text.split())


BASE = "overrides: [model.width=8, model.depth=1, task.n_train=100, train.steps=12, train.lr=auto]\n"
SOURCE = (
    BASE
    + "seeds: [0]\nblocks:\n  - {task: fitting, model: iat, model.basis_in: [rect, pwl], "
    + "model.basis_out: pwq}\n"
)
# the target grid overlaps the source at r=4 (the default ratio), and adds r=2
TARGET = (
    BASE
    + "seeds: [0]\nblocks:\n  - {task: fitting, model: iat, model.basis_in: [pwl], model.basis_out: pwq, "
    + "model.mesh_ratio: [2, 4]}\n"
)


def _setup(tmp_path):
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "source.yaml").write_text(SOURCE)
    (conf / "target.yaml").write_text(TARGET)
    src = tmp_path / "src"
    conf_dir = ["--config-dir", str(tmp_path / "conf")]
    r = runner.invoke(app, ["sweep", "-q", "--grid", "source", *conf_dir, "--out", str(src)])
    assert r.exit_code == 0, r.output
    return ["--grid", "target", *conf_dir], src


def _trained(out):
    """Cell keys this folder trained itself (no reused_from in done.json)."""
    return sorted(
        p.parent.relative_to(out / "cells").as_posix()
        for p in (out / "cells").rglob("done.json")
        if "reused_from" not in json.loads(p.read_text())
    )


def test_the_shared_cell_and_its_rate_are_copied_and_the_rest_is_trained(tmp_path):
    args, src = _setup(tmp_path)
    out = tmp_path / "mesh"
    r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(out), "--reuse", str(src)])
    assert r.exit_code == 0, r.output
    assert "1 finished cells, 1 chosen rates" in flat(r.output)
    assert _trained(out) == ["fitting/iat-pwl-pwq-r2/seed0"]
    copied = out / "cells" / "fitting" / "iat-pwl-pwq-r4" / "seed0"
    source = src / "cells" / "fitting" / "iat-pwl-pwq-r4" / "seed0"
    marker = json.loads((copied / "done.json").read_text())
    assert marker["reused_from"] == "../src" and marker["reused_key"] == "fitting/iat-pwl-pwq-r4/seed0"
    assert yaml.safe_load((copied / "config.yaml").read_text())["out"] == str(copied)
    assert (copied / "metrics.json").read_text() == (source / "metrics.json").read_text()
    # the copied rate is the source's record, so the r=4 row reports the source's numbers
    df = pd.read_csv(out / "cells.csv").set_index("mesh_ratio")
    src_df = pd.read_csv(src / "cells.csv").set_index("basis_in")
    assert df.loc[4, "heldout_mse"] == src_df.loc["pwl", "heldout_mse"]
    assert df.loc[4, "lr_chosen"] == src_df.loc["pwl", "lr_chosen"]
    assert len(list((out / "tune").glob("*.json"))) == 2  # r=4 copied, r=2 chosen here
    report = (out / "report.md").read_text()
    assert "cells copied, not trained here (`--reuse`; provenance the source's): 1 from `../src`" in report
    assert "- device: cpu" in report and "dtype: float32 (all 2 cells)" in report


def test_a_different_artifacts_level_or_config_is_trained_not_copied(tmp_path):
    args, src = _setup(tmp_path)
    out = tmp_path / "lean"
    r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(out), "--reuse", str(src), "artifacts=lean"])
    assert r.exit_code == 0, r.output
    assert "0 finished cells" in flat(r.output) and len(_trained(out)) == 2
    out = tmp_path / "longer"
    r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(out), "--reuse", str(src), "train.steps=13"])
    assert r.exit_code == 0, r.output
    assert "0 finished cells, 0 chosen rates" in flat(r.output) and len(_trained(out)) == 2


def test_dry_run_counts_the_copies_and_writes_nothing(tmp_path):
    args, src = _setup(tmp_path)
    out = tmp_path / "mesh"
    r = runner.invoke(app, ["sweep", *args, "--out", str(out), "--reuse", str(src), "--dry-run", "seed=0,1"])
    assert r.exit_code == 0, r.output
    assert "1 cells would be copied, not trained, and the rates of 1 settings" in flat(r.output)
    # left to run: r=2 seeds 0 and 1 (a rate to choose), r=4 seed 1 (the source's rate, copied)
    assert "3 to run" in flat(r.output) and "auto for 2 setting(s): 1 to choose first" in flat(r.output)
    assert not out.exists()


def test_a_bad_source_is_refused_before_anything_is_written(tmp_path):
    args, src = _setup(tmp_path)
    out = tmp_path / "mesh"
    for bad, words in ((tmp_path / "nowhere", "not a sweep folder"), (out, "not a sweep folder")):
        r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(out), "--reuse", str(bad)])
        assert r.exit_code == 2 and words in flat(r.output) and not out.exists()
    r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(src), "--reuse", str(src)])
    assert r.exit_code == 2 and "the sweep folder itself" in flat(r.output)
    r = runner.invoke(app, ["sweep", "-q", *args, "--out", str(out), "--reuse", str(src), "--force"])
    assert r.exit_code == 2 and "cannot be combined" in flat(r.output) and not out.exists()
