"""One table of bad invocations across every command: exit 2, one `error:` line, nothing written."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()


def snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A working folder with a results tree, a file, a non-iatrun folder and a fake run/sweep."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "runs").mkdir(parents=True)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    bad_run = tmp_path / "badrun"
    bad_run.mkdir()
    (bad_run / "model.pt").write_bytes(b"garbage")
    (tmp_path / "sweepish").mkdir()
    (tmp_path / "sweepish" / "sweep.yaml").write_text(": [ broken")
    return tmp_path


BAD = [
    # fit
    (["fit", "--basis-in", "nope"], "'nope' is not one of 'rect', 'pwl', 'pwq', 'fourier'"),
    (["fit", "--basis-out", "pwqq"], "did you mean 'pwq'"),
    (["fit", "--task", "classify"], "unknown task 'classify'"),
    (["fit", "--model", "mlp"], "unknown model 'mlp'"),
    (["fit", "--mesh-ratio", "0"], "mesh_ratio must be an integer >= 1"),
    (["fit", "--mesh-ratio", "two"], "Invalid value for '--mesh-ratio'"),
    (["fit", "--width", "-3"], "model.width must be an integer >= 1, got -3"),
    (["fit", "--depth", "0"], "model.depth must be an integer >= 1, got 0"),
    (["fit", "--steps", "0"], "train.steps must be an integer >= 1"),
    (["fit", "--lr", "abc"], "train.lr must be a positive number or 'auto', got 'abc'"),
    (["fit", "--lr", "-0.1"], "train.lr must be a positive number"),
    (["fit", "--device", "tpu"], "unknown device 'tpu'"),
    (["fit", "--dtype", "int8"], "'int8' is not one of 'float32', 'float64'"),
    (["fit", "train.nope=3"], "unknown config key 'train.nope'"),
    (["fit", "seed=abc"], "seed must be an integer, got 'abc'"),
    (["fit", "+foo=1"], "cannot add 'foo'"),
    (["fit", "model.basis_inn=pwl"], "did you mean 'model.basis_in'"),
    (["fit", "train.lr="], "train.lr must be a positive number"),
    (["fit", "model.basis_in=fourier,pwq"], "use `iatrun sweep` for several values"),
    (["fit", "train.lr=(("], "bad override"),
    (["fit", "task.target=saw"], "unknown target 'saw'"),
    (
        ["fit", "task.target=piecewise_linear", "task.piecewise_linear.points=[[1,0],[0,1]]"],
        "strictly increasing",
    ),
    (["fit", "task.target=piecewise_linear", "task.piecewise_linear.points=[[0,1]]"], "at least two points"),
    (["fit", "--model", "relu", "--basis-in", "pwl"], "model 'relu' has no option 'basis_in'"),
    (["fit", "--task", "memorization", "task.num_classes=1"], "num_classes must be >= 2"),
    (["fit", "train.schedule=linear"], "unknown train.schedule 'linear'"),
    (["fit", "--out", "afile"], "is not a folder"),
    (["fit", "--out", "plain"], "not empty"),
    (["fit", "--out", "afile/run"], "cannot write"),
    (["fit", "--config-dir", "nowhere"], "is not a folder"),
    (["fit", "--method", "analytic"], "method"),
    (["fit", "--bogus-flag"], "No such option"),
    (["fit", "--out", "/proc/nope"], "cannot write to /proc/nope: /proc refuses new folders"),
    (["fit", "launcher=submitit_local"], "'launcher' is not a config group of a run (its groups: task,"),
    (["fit", "budget=study"], "'budget' is not a config group of a run (its groups: task, model, train)"),
    (["fit", "plots.format=gif"], "unknown plots.format 'gif' (known: png, svg, pdf)"),
    (["fit", "plots.dpi=5"], "plots.dpi must be an integer from 20 to 1200, got 5"),
    (["fit", "plots.dpi=high"], "plots.dpi must be"),
    (["fit", "plots.heatmap_scale=all"], "unknown plots.heatmap_scale 'all' (known: per-table, shared)"),
    # sweep and report
    (["sweep", "--grid", "papr"], "unknown grid 'papr'"),
    (["sweep", "--grid", "quick", "model.basis_in=nope"], "unknown basis 'nope'"),
    (["sweep", "--grid", "quick", "--jobs", "0"], "Invalid value for '--jobs'"),
    (["sweep", "--grid", "quick", "--launcher", "pbs"], "unknown launcher 'pbs'"),
    (["sweep", "--grid", "quick", "--out", "afile"], "is not a folder"),
    (["sweep", "--grid", "quick", "--out", "plain"], "not a sweep folder"),
    (["sweep", "--grid", "quick", "launcher.timeout_min=5"], "need --launcher"),
    (
        ["sweep", "--grid", "quick", "--launcher", "submitit_slurm", "launcher.timout_min=5"],
        "unknown launcher key 'timout_min' for cluster 'slurm' (did you mean 'timeout_min'?)",
    ),
    (
        ["sweep", "--grid", "quick", "--launcher", "submitit_local", "launcher.timeout_min=-5"],
        "launcher key 'timeout_min' must be an integer >= 1 or auto, got -5",
    ),
    (["report", "plain"], "not a sweep folder"),
    (["report", "nowhere"], "not a sweep folder"),
    (["report", "sweepish"], "not a sweep folder"),
    (["report", "sweepish", "--format", "gif"], "'gif' is not one of 'png', 'svg', 'pdf'"),
    (["sweep", "--grid", "quick", "plots.format=jpeg"], "unknown plots.format 'jpeg'"),
    # regions, construct, plots, converge, list
    (["regions", "nowhere"], "not a run folder"),
    (["regions", "plain"], "model.pt"),
    (["regions", "badrun"], "unreadable"),
    (["construct", "--points", "0,0 -1,1"], "strictly increasing"),
    (["construct", "--points", "0,0"], "at least two points"),
    (["construct", "--points", "0,0 1"], "point"),
    (["construct", "--points", "0,0 1,1", "--out", "plain"], "not empty"),
    (["plot", "pattern", "--basis-in", "sine"], "'sine' is not one of 'rect'"),
    (["plot", "bases", "--n", "0"], ">= 1"),
    (["converge", "--basis-in", "rect-ww"], "(did you mean 'rect-w'?)"),
    (["converge", "--out", "conv.gif"], "--out must end in .png, .svg or .pdf, got conv.gif"),
    (["plot", "bases", "--out", "bases.jpg"], "--out must end in .png, .svg or .pdf (or name a folder), got"),
    (["list", "colours"], "No such command"),
    (["launch"], "No such command"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_invocation(world, args, needle):
    before = snapshot(world)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert snapshot(world) == before  # the results tree (and everything else) is as it was


def test_corpus_is_large_enough():
    assert len(BAD) >= 30
    assert {a[0] for a, _ in BAD} >= {
        "fit",
        "sweep",
        "report",
        "regions",
        "construct",
        "plot",
        "converge",
        "list",
    }


def test_unwritable_results_directory(world):
    ro = world / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        # root ignores permissions: then a file in the path stands in for the read-only folder
        target = world / "afile" / "results" if os.access(ro, os.W_OK) else ro / "results"
        before = snapshot(world)
        res = runner.invoke(app, ["fit", f"results_dir={target}", "--steps", "1"])
        assert res.exit_code == 2 and res.stderr.startswith("error: cannot write")
        assert snapshot(world) == before
    finally:
        ro.chmod(0o700)
