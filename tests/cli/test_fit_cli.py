"""`iatrun fit` through Typer's CliRunner and one real subprocess (issue: fit)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()
TINY = ["--width", "8", "--depth", "2", "--steps", "40", "task.n_train=64", "task.holdout_factor=2", "-q"]
TINY_MEM = ["--task", "memorization", "--width", "8", "--steps", "40", "task.n_points=64", "task.dim=4", "-q"]


def fit(tmp_path, *args, out="run"):
    return runner.invoke(app, ["fit", "--out", str(tmp_path / out), *args])


def test_fit_writes_a_complete_fitting_run_folder(tmp_path):
    res = fit(tmp_path, *TINY, "--basis-in", "pwl", "--basis-out", "fourier")
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.yaml", "metrics.json", "curve.csv", "model.pt", "loss.png", "prediction.png"]
        + ["provenance.json"]
    )
    m = json.loads((run / "metrics.json").read_text())
    for key in (
        "status",
        "train_mse",
        "heldout_mse",
        "max_abs_error",
        "wall_time_s",
        "steps_per_s",
        "num_params",
        "loss_jumps",
        "loss_jump_total",
        "final_loss",
    ):
        assert key in m
    assert m["status"] == "ok" and m["steps_done"] == 40
    assert m["num_params"] == (1 * 8 + 8) + (8 * 8 + 8) + (8 + 1)
    lines = (run / "curve.csv").read_text().splitlines()
    assert lines[0] == "step,loss,lr" and len(lines) == 41
    assert "basis_in: pwl" in (run / "config.yaml").read_text()
    assert str(run) in res.output.replace("\n", "")


def test_load_run_rebuilds_the_trained_model(tmp_path):
    import iatrun

    assert fit(tmp_path, *TINY).exit_code == 0
    loaded = iatrun.load_run(tmp_path / "run")
    from iatrun.tasks import fitting

    task = fitting(loaded.config["task"])
    assert task.evaluate(loaded.model)["train_mse"] == pytest.approx(loaded.metrics["train_mse"], rel=1e-6)


def test_plots_format_svg_gives_a_run_folder_that_loads_and_whose_regions_are_svg(tmp_path):
    import iatrun
    from iatrun.results import check_run

    res = fit(tmp_path, *TINY, "plots.format=svg")
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    figures = sorted(p.name for p in run.iterdir() if p.suffix in (".png", ".svg", ".pdf"))
    assert figures == ["loss.svg", "prediction.svg"]
    assert (run / "loss.svg").read_bytes()[:5] == b"<?xml"
    assert check_run(run) is None and iatrun.load_run(run).metrics["status"] == "ok"
    res = runner.invoke(app, ["regions", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "regions.svg").is_file() and not (run / "regions.png").exists()
    (run / "loss.svg").unlink()
    assert check_run(run) == "loss.png missing"  # the figure, in whichever format, is required


def test_memorization_run_folder_has_no_prediction_plot(tmp_path):
    res = fit(tmp_path, *TINY_MEM, "--model", "relu")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= m["train_accuracy"] <= 1 and "train_loss" in m
    assert not (tmp_path / "run" / "prediction.png").exists()


def test_same_seed_gives_identical_metrics(tmp_path):
    a = fit(tmp_path, *TINY, out="a")
    b = fit(tmp_path, *TINY, out="b")
    assert a.exit_code == b.exit_code == 0
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    for k in ("train_mse", "heldout_mse", "final_loss", "loss_jumps"):
        assert ma[k] == mb[k]
    c = fit(tmp_path, *TINY, "--seed", "3", out="c")
    assert c.exit_code == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["train_mse"] != ma["train_mse"]


def test_explicit_override_wins_over_flag(tmp_path):
    res = fit(tmp_path, *TINY, "--lr", "0.5", "train.lr=0.002")
    assert res.exit_code == 0, res.output
    assert "lr: 0.002" in (tmp_path / "run" / "config.yaml").read_text()


def test_default_run_folder_name(tmp_path):
    res = runner.invoke(app, ["fit", *TINY, f"results_dir={tmp_path}"])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    assert run.name.endswith("-fitting-iat-fourier-pwq-r4")
    assert run.name[:15].replace("-", "").isdigit()
    from iatrun.results import run_name

    cfg = {
        "task": {"name": "fitting"},
        "model": {
            "kind": "decoupled",
            "basis_in": "pwl",
            "basis_out": "pwq",
            "mesh_ratio": 4,
            "method": "exact",
        },
    }
    assert run_name(cfg, when="S") == "S-fitting-decoupled-pwl-pwq-r4-exact"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--basis-in", "nope"], "'nope' is not one of 'rect', 'pwl', 'pwq', 'fourier'"),
        (["--basis-out", "fourir"], "did you mean 'fourier'"),
        (["--task", "regression"], "unknown task 'regression' (known: fitting, memorization)"),
        (["--model", "gelu"], "unknown model 'gelu'"),
        (["task.target=square"], "unknown target 'square'"),
        (["train.nope=1"], "unknown config key 'train.nope'"),
        (["--model", "relu", "--basis-in", "pwl"], "model 'relu' has no option 'basis_in'"),
        (["--mesh-ratio", "0"], "mesh_ratio must be an integer >= 1, got 0"),
        (["--width", "0"], "model.width must be an integer >= 1, got 0"),
        (["--steps", "0"], "train.steps must be an integer >= 1, got 0"),
        (["--lr", "fast"], "train.lr must be a positive number or 'auto', got 'fast'"),
        (["train.lr=-1"], "train.lr must be a positive number or 'auto', got -1"),
        (
            ["task.target=piecewise_linear", "task.piecewise_linear.points=[[0,1],[0,2]]"],
            "strictly increasing",
        ),
        (["task.target=piecewise_linear", "task.piecewise_linear.points=[[0,1]]"], "at least two points"),
        (["task.target=piecewise_linear", "task.piecewise_linear.points=[[0,1,2],[1,2]]"], "[x, y] pairs"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--dtype", "float16"], "'float16' is not one of 'float32', 'float64'"),
        (["train=nope"], "unknown train 'nope'"),
        (["task.n_train="], "task.n_train must be an integer"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_no_folder(tmp_path, args, needle):
    res = runner.invoke(app, ["fit", *TINY, "--out", str(tmp_path / "run"), f"results_dir={tmp_path}", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_file_out_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = fit(tmp_path, *TINY, out="file")
    assert res.exit_code == 2 and "is not a folder" in res.stderr
    res = runner.invoke(app, ["fit", *TINY, "--out", str(f / "run")])  # parent is a file
    assert res.exit_code == 2 and "cannot write" in res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_nonempty_out_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    res = fit(tmp_path, *TINY)
    assert res.exit_code == 2 and "not empty" in res.stderr
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_divergence_is_recorded_not_a_crash(tmp_path):
    res = fit(
        tmp_path, "--width", "8", "--steps", "200", "task.n_train=64", "-q", "--lr", "1e10", "--model", "relu"
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "diverged" and 1 <= m["diverged_step"] <= 200
    assert m["steps_done"] == m["diverged_step"] - 1


def test_console_script_in_a_real_subprocess(tmp_path):
    exe = Path(sys.executable).with_name("iatrun")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "iatrun"]
    ok = subprocess.run([*cmd, "fit", *TINY, "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "run" / "metrics.json").exists()
    bad = subprocess.run([*cmd, "fit", "--basis-in", "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and bad.stderr.startswith(
        "error: Invalid value for '--basis-in': 'nope' is not one of"
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]
    mod = subprocess.run([sys.executable, "-m", "iatrun", "--version"], capture_output=True, text=True)
    assert mod.returncode == 0 and mod.stdout.startswith("iatrun ")


def test_list_bases_prints_six_bases_with_properties():
    res = runner.invoke(app, ["list", "bases"])
    assert res.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.count("│") > 5}
    assert {"rect", "pwl", "pwq", "fourier", "pwl-w", "rect-w"} <= set(rows)
    assert rows["fourier"].count("✓") == 4 and rows["rect"].count("✓") == 0
    assert rows["pwl-w"].count("✓") == 2


def test_float64_run(tmp_path):
    assert fit(tmp_path, *TINY, "--dtype", "float64").exit_code == 0
    blob = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    assert blob["state_dict"]["linears.0.weight"].dtype == torch.float64
