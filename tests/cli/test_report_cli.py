"""`iatrun report`'s guard and `iatrun sweep`'s warning on a rerun made for another grid."""

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()

# One cell, ten steps: the smallest sweep there is.
ONE = """
seeds: [0]
overrides: [model.width=4, model.depth=1, train.steps=10, task.n_train=32, task.holdout_factor=2]
blocks:
  - task: fitting
    model: relu
"""


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sweep(conf: Path, out: Path, *args: str, grid: str = "one"):
    return runner.invoke(
        app, ["sweep", "-q", "--grid", grid, "--config-dir", str(conf), "--out", str(out), *args]
    )


def warnings(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    root = tmp_path_factory.mktemp("conf")
    (root / "sweep").mkdir()
    (root / "sweep" / "one.yaml").write_text(ONE)
    (root / "sweep" / "other.yaml").write_text(ONE.replace("train.steps=10", "train.steps=12"))
    return root


@pytest.fixture(scope="module")
def swept(tmp_path_factory, conf, one_thread):
    out = tmp_path_factory.mktemp("sw") / "sw"
    res = sweep(conf, out)
    assert res.exit_code == 0, res.output
    assert warnings(res) == []
    return out


@pytest.mark.parametrize("broken", ["no cells/", "no sweep.yaml", "unreadable sweep.yaml"])
def test_report_refuses_a_folder_that_is_not_a_sweep_and_writes_nothing(swept, tmp_path, broken):
    folder = tmp_path / "f"
    shutil.copytree(swept, folder)
    for name in ("cells.csv", "report.md"):
        (folder / name).unlink()  # what report would write first
    shutil.rmtree(folder / "tables")
    shutil.rmtree(folder / "figures")
    (folder / "dummy.txt").write_text("mine, keep it\n")
    if broken == "no cells/":
        shutil.rmtree(folder / "cells")
    elif broken == "no sweep.yaml":
        (folder / "sweep.yaml").unlink()
    else:
        (folder / "sweep.yaml").write_text("cells: [not, a, mapping]\n")
    before = files(folder)
    res = runner.invoke(app, ["report", str(folder)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    needle = "no cells/ folder" if broken == "no cells/" else "no readable sweep.yaml"
    assert lines[0] == f"error: {folder} is not a sweep folder ({needle})"
    assert "Traceback" not in res.output
    assert files(folder) == before  # byte for byte, and nothing added
    assert not (folder / "cells.csv").exists() and not (folder / "tables").exists()


def test_report_still_rebuilds_a_sound_sweep_folder(swept, tmp_path):
    folder = tmp_path / "f"
    shutil.copytree(swept, folder)
    (folder / "cells.csv").unlink()
    res = runner.invoke(app, ["report", str(folder)])
    assert res.exit_code == 0, res.output
    assert (folder / "cells.csv").read_text().count("fitting/relu/seed0") == 1


def test_a_rerun_warns_once_for_other_overrides_or_grid_and_never_for_the_same(swept, conf, tmp_path):
    out = tmp_path / "sw"
    shutil.copytree(swept, out)
    same = sweep(conf, out)
    assert same.exit_code == 0 and "1 already finished, 0 to run" in same.output
    assert warnings(same) == [] and same.stderr == ""
    changed = sweep(conf, out, "train.lr=0.01")
    assert changed.exit_code == 0, changed.output
    assert "0 already finished, 1 to run" in changed.output  # the changed cell reran: resume goes on
    (line,) = warnings(changed)
    assert line.startswith(f"warning: {out} was made for grid 'one' with overrides []; ")
    assert "now grid 'one' with overrides ['train.lr=0.01']:" in line
    again = sweep(conf, out, "train.lr=0.01")  # sweep.yaml is now the second run's: no warning
    assert warnings(again) == [] and "1 already finished, 0 to run" in again.output
    other = sweep(conf, out, "train.lr=0.01", grid="other")
    (line,) = warnings(other)
    assert "was made for grid 'one'" in line and "now grid 'other' with overrides ['train.lr=0.01']" in line
    resumed = yaml.safe_load((out / "sweep.yaml").read_text())["provenance"]["resumed"]
    assert [(r["grid"], r["overrides"]) for r in resumed] == [
        ("one", []),
        ("one", ["train.lr=0.01"]),
        ("one", ["train.lr=0.01"]),
        ("other", ["train.lr=0.01"]),
    ]
