"""`iatrun sweep` / `iatrun report`: grid expansion, the quick grid end to end, resume, jobs, submitit."""

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from _support import N_CELLS, STACKED_RTOL, assert_same_results, exe, stable, tables
from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.errors import IatrunError
from iatrun.sweep.grid import expand, load_grid, select

runner = CliRunner()


def sweep(*args):
    return runner.invoke(app, ["sweep", "-q", *args])


# --- grid expansion ----------------------------------------------------------------------------


def test_quick_and_paper_grids_expand_to_the_paper_layout():
    quick = expand(load_grid("quick"))
    assert len(quick) == 2 * 36 + 2 * 3
    keys = {c.key for c in quick}
    assert "fitting/iat-fourier-pwq-r4/seed0" in keys and "memorization/relu/seed0" in keys
    assert all(c.config["train"]["steps"] == 60 for c in quick)
    paper = expand(load_grid("paper"))
    assert len(paper) == 3 * (2 * 36 + 2 * 3)
    assert {c.config["seed"] for c in paper} == {0, 1, 2}
    assert paper[0].config["train"]["steps"] == 8000  # the default budget


def test_command_line_sweep_overrides_replace_axes_and_add_keys():
    cells = expand(load_grid("paper"), ["model.basis_in=fourier,pwq", "train.steps=20", "seed=0,1"])
    # per task: 2 input bases x 6 outputs + 3 baselines, two tasks, two seeds
    assert len(cells) == (2 * 6 + 3) * 2 * 2
    assert {c.config["model"].get("basis_in") for c in cells} == {"fourier", "pwq", None}
    assert all(c.config["train"]["steps"] == 20 for c in cells)
    steps = expand(load_grid("quick"), ["model.basis_in=pwl", "model.basis_out=pwq", "train.steps=10,20"])
    keys = sorted(c.key for c in steps)
    assert keys[:3] == [
        "fitting/iat-pwl-pwq-r4-steps10/seed0",
        "fitting/iat-pwl-pwq-r4-steps20/seed0",
        "fitting/relu-steps10/seed0",
    ]
    assert len(keys) == 2 * (1 + 3) * 2


def test_narrowing_a_grid_axis_on_the_command_line_keeps_the_cell_names():
    full = {c.key for c in expand(load_grid("calibrate"))}
    part = expand(load_grid("calibrate"), ["train.steps=2000", "task.n_points=4000"])
    assert {c.key for c in part} == {
        "memorization/relu-n_points4000-steps2000/seed0",
        "fitting/relu-steps2000/seed0",
    }
    assert {c.key for c in part} <= full  # a grid run in parts fills the folder the whole grid would


def test_where_runs_a_part_of_a_grid_without_changing_its_cells():
    full = {c.key: c for c in expand(load_grid("study-check"))}
    part = select(list(full.values()), ["task=memorization", "train.steps=1000"])
    assert {c.key for c in part} == {k for k in full if k.startswith("memorization/") and "steps1000" in k}
    assert len(part) == 6 and all(c.config == full[c.key].config for c in part)  # nothing overridden
    assert len(select(list(full.values()), ["model.basis_in=rect,fourier"])) == 8
    with pytest.raises(IatrunError, match="leaves no cell of the grid's 24"):
        select(list(full.values()), ["train.steps=5"])
    with pytest.raises(IatrunError, match="no cell of the grid has the key 'train.stepz'"):
        select(list(full.values()), ["train.stepz=1000"])


def test_a_bad_where_is_one_error_line_and_writes_nothing(tmp_path):
    res = sweep("--out", str(tmp_path / "sw"), "--where", "model.norm")
    assert res.exit_code == 2 and res.stderr.startswith("error: --where 'model.norm' needs the form")
    assert len(res.stderr.splitlines()) == 1 and not (tmp_path / "sw").exists()


def test_a_scalar_that_differs_between_blocks_names_the_cells():
    cells = expand(load_grid("study-check"))
    keys = {c.key for c in cells}
    assert len(keys) == len(cells) == 24  # both budgets of each setting, no two cells in one folder
    assert "fitting/relu-steps8000/seed0" in keys and "fitting/relu-depth3-width64-steps3000/seed0" in keys


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--grid", "papr"], "unknown grid 'papr'"),
        (["model.basis_in=fourier,nope"], "unknown basis 'nope'"),
        (["train.nope=1"], "unknown config key 'train.nope'"),
        (["model.mesh_ratio=0"], "mesh_ratio must be an integer >= 1"),
        (["seed=a"], "seed must be an integer"),
        (["model.basis_in=("], "bad override"),
        (["--launcher", "pbs"], "unknown launcher 'pbs'"),
        (["--jobs", "2", "--launcher", "submitit_local"], "cannot be combined"),
    ],
)
def test_bad_sweeps_are_refused_before_any_cell(tmp_path, args, needle):
    res = sweep("--out", str(tmp_path / "sw"), *args)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and needle in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "sw").exists()


# --- the quick grid end to end -----------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "sw"
    res = runner.invoke(app, ["sweep", "-q", "--grid", "quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_quick_sweep_writes_a_complete_folder(quick_sweep):
    out, output = quick_sweep
    for name in (
        "sweep.yaml",
        "cells.csv",
        "report.md",
        "tables/baselines.csv",
        "figures/fitting_heatmap.png",
        "figures/memorization_heatmap.png",
        "figures/fitting_curves.png",
        "tables/fitting_heldout_mse_std.csv",
    ):
        assert (out / name).is_file(), name
    for task, metric in (("fitting", "heldout_mse"), ("memorization", "accuracy_pct")):
        t = pd.read_csv(out / "tables" / f"{task}_{metric}.csv", index_col="basis_in")
        assert list(t.index) == ["rect", "pwl", "pwq", "fourier", "pwl-w", "rect-w"]
        assert list(t.columns) == list(t.index) and t.notna().all().all()
    base = pd.read_csv(out / "tables" / "baselines.csv", index_col="activation")
    assert list(base.index) == ["relu", "tanh", "sigmoid"]
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 78 and (cells["state"] == "done").all()
    # rect/rect IAT-ReLU with the same seed is the relu network: identical results
    fit = cells.set_index("key")
    assert (
        fit.loc["fitting/iat-rect-rect-r4/seed0", "heldout_mse"]
        == fit.loc["fitting/relu/seed0", "heldout_mse"]
    )
    report = (out / "report.md").read_text()
    assert report.count("| **") == 8 and "Spearman rank correlation" in report
    assert "report.md" in output


def test_rerun_computes_nothing_and_report_rebuilds_the_tables(quick_sweep):
    out, _ = quick_sweep
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("done.json")}
    first = tables(out)
    res = sweep("--grid", "quick", "--out", str(out))
    assert res.exit_code == 0 and "78 already finished, 0 to run" in res.output
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("done.json")} == before
    for p in (out / "tables").glob("*.csv"):
        p.unlink()
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    again = tables(out)
    assert first.keys() == again.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])


# --- resume, jobs, submitit, faults ------------------------------------------------------------


def test_jobs_2_gives_the_same_results_as_serial(tmp_path, confdir):
    a = sweep("--grid", "tiny", "--config-dir", str(confdir), "--out", str(tmp_path / "a"))
    b = sweep("--grid", "tiny", "--config-dir", str(confdir), "--out", str(tmp_path / "b"), "--jobs", "2")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert_same_results(tmp_path / "a", tmp_path / "b")
    assert len(stable(tmp_path / "a")) == N_CELLS


def test_resume_after_a_killed_sweep(tmp_path, confdir):
    out = tmp_path / "killed"
    cmd = [*exe(), "sweep", "-q", "--grid", "slow", "--config-dir", str(confdir), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("cells/**/done.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(out.glob("cells/**/done.json")))
    assert 2 <= finished < N_CELLS
    res = sweep("--grid", "slow", "--config-dir", str(confdir), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert f"{finished} already finished, {N_CELLS - finished} to run" in res.output
    ref = sweep("--grid", "slow", "--config-dir", str(confdir), "--out", str(tmp_path / "ref"))
    assert ref.exit_code == 0
    assert len(list(out.glob("cells/**/done.json"))) == N_CELLS
    assert not [p for p in (out / "cells").rglob("*") if ".partial-" in p.name or p.name.endswith(".tmp")]
    assert_same_results(out, tmp_path / "ref", rtol=STACKED_RTOL)  # the rerun stacks what was left


def test_force_reruns_every_cell(tmp_path, confdir):
    args = ["--grid", "tiny", "--config-dir", str(confdir), "--out", str(tmp_path / "f"), "seed=0"]
    assert sweep(*args).exit_code == 0
    res = sweep(*args, "--force")
    assert res.exit_code == 0 and "0 already finished, 5 to run" in res.output


def test_submitit_local_launcher(tmp_path, confdir):
    res = sweep(
        "--grid",
        "tiny",
        "--config-dir",
        str(confdir),
        "--out",
        str(tmp_path / "s"),
        "--launcher",
        "submitit_local",
        "seed=0",
        "model.basis_in=rect",
    )
    assert res.exit_code == 0, res.output
    cells = pd.read_csv(tmp_path / "s" / "cells.csv")
    assert len(cells) == 3 and (cells["state"] == "done").all() and (cells["status"] == "ok").all()
    assert (tmp_path / "s" / ".submitit").is_dir()


def test_crashing_and_diverging_cells_are_recorded_and_the_sweep_goes_on(tmp_path, confdir):
    from iatrun.nn.models import MODELS, Elementwise

    class Boom(Elementwise):
        def forward(self, x):
            raise RuntimeError("boom in forward")

    MODELS.add("boom", lambda: lambda n: Boom("relu"))
    (confdir / "model").mkdir()
    (confdir / "model" / "boom.yaml").write_text("kind: boom\nnorm: none\n")
    (confdir / "sweep" / "boom.yaml").write_text(
        "overrides: [model.width=8, train.steps=20, task.n_train=64]\n"
        "blocks:\n  - {task: fitting, model: [relu, boom]}\n"
    )
    try:
        res = sweep("--grid", "boom", "--config-dir", str(confdir), "--out", str(tmp_path / "x"))
        assert res.exit_code == 0, res.output
    finally:
        MODELS.remove("boom")
    cells = pd.read_csv(tmp_path / "x" / "cells.csv").set_index("key")
    boom = cells.loc["fitting/boom/seed0"]
    assert boom["state"] == "failed" and "boom in forward" in boom["error"]
    assert cells.loc["fitting/relu/seed0", "state"] == "done"
    assert "fitting/boom/seed0" in (tmp_path / "x" / "report.md").read_text()

    res = sweep(
        "--grid",
        "boom",
        "--config-dir",
        str(confdir),
        "--out",
        str(tmp_path / "d"),
        "model=relu",
        "train.lr=1e10",
        "train.steps=200",
    )
    assert res.exit_code == 0, res.output
    cells = pd.read_csv(tmp_path / "d" / "cells.csv")
    assert (cells["status"] == "diverged").all() and cells["diverged_step"].notna().all()
    assert "diverged at step" in (tmp_path / "d" / "report.md").read_text()


def test_a_changed_config_reruns_the_cell(tmp_path, confdir):
    args = ["--grid", "tiny", "--config-dir", str(confdir), "--out", str(tmp_path / "c"), "seed=0"]
    assert sweep(*args).exit_code == 0
    res = sweep(*args, "task.n_train=65")
    assert res.exit_code == 0 and "0 already finished, 5 to run" in res.output
    cfg = json.loads(json.dumps(pd.read_csv(tmp_path / "c" / "cells.csv").to_dict()))
    assert cfg
