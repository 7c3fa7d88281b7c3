"""`iatrun construct` and `iatrun regions` through Typer's CliRunner (SPEC §7)."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import iatrun
from iatrun.cli import app

runner = CliRunner()
BLOG = "-1,-1 -0.5,1 0,-1 1,0"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_error(res, *needles):
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:"), res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    for n in needles:
        assert n in res.output


@pytest.fixture
def blog_run(tmp_path):
    res = invoke("construct", "--points", BLOG, "--out", tmp_path / "blog", "--json")
    assert res.exit_code == 0, res.output
    return tmp_path / "blog", json.loads(res.output)


# --- construct --------------------------------------------------------------------------------


def test_construct_json_prints_the_blog_numbers(blog_run):
    folder, out = blog_run
    assert out["hidden_bias"] == [1.0, 0.5, 0.0]
    assert out["hidden_weight"] == [1.0, 1.0, 1.0]
    assert out["output_weight"] == [4.0, -8.0, 5.0]
    assert out["output_bias"] == -1.0
    assert out["run_dir"] == str(folder)


def test_construct_writes_a_run_folder_that_load_run_accepts(blog_run):
    folder, _ = blog_run
    files = ["config.yaml", "metrics.json", "model.pt", "provenance.json"]
    assert sorted(p.name for p in folder.iterdir()) == files
    run = iatrun.load_run(folder)
    assert run.config["model"] == {"kind": "relu", "width": 3, "depth": 1, "norm": "none"}
    assert run.config["task"]["piecewise_linear"]["points"] == [[-1, -1], [-0.5, 1], [0, -1], [1, 0]]
    assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["width"] == 3
    assert run.metrics["status"] == "ok" and run.metrics["num_params"] == 3 + 3 + 3 + 1
    assert run.metrics["heldout_mse"] < 1e-28  # the construction is exact
    with torch.no_grad():
        y = run.model(torch.tensor([[-1.0], [-0.5], [0.0], [1.0], [0.25]], dtype=torch.float64))[:, 0]
    assert y.tolist() == [-1.0, 1.0, -1.0, 0.0, -0.75]


def test_construct_prints_a_table(tmp_path):
    res = invoke("construct", "--points", "0,0 1,2 3,0", "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert "output bias" in res.output and "-3" in res.output  # slopes 2 then -1: weights 2, -3
    assert str(tmp_path / "c") in res.output.replace("\n", "")


def test_construct_default_folder_is_under_results_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("construct", "--points", "0,0 1,1", "--json")
    assert res.exit_code == 0, res.output
    folder = json.loads(res.output)["run_dir"]
    assert folder.startswith("results/runs/") and folder.endswith("-construct-relu-N1")
    assert (tmp_path / folder / "model.pt").is_file()


@pytest.mark.parametrize(
    "points, needle",
    [
        ("0,0 1,1 0.5,2", "strictly increasing"),
        ("0,0 0,1", "strictly increasing"),
        ("0,0", "at least two points"),
        ("", "at least two points"),
        ("0,0 1;1", "cannot read '1;1'"),
        ("0,0 1,a", "cannot read '1,a'"),
        ("0,0,0 1,1", "cannot read '0,0,0'"),
    ],
)
def test_construct_bad_points_is_one_error_line_and_writes_nothing(tmp_path, points, needle):
    res = invoke("construct", "--points", points, "--out", tmp_path / "c")
    assert_error(res, needle)
    assert list(tmp_path.iterdir()) == []


def test_construct_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    assert_error(invoke("construct", "--points", BLOG, "--out", tmp_path / "c"), "not empty")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep.txt"]


# --- regions ----------------------------------------------------------------------------------


def test_regions_of_the_blog_network(blog_run):
    folder, _ = blog_run
    res = invoke("regions", folder, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["num_regions"] == 3
    assert out["lipschitz"] == 4.0
    assert out["lipschitz_bound"] == pytest.approx(3**0.5 * 105**0.5, rel=1e-12)
    assert out["regions"] == [
        {"x_start": -1.0, "x_end": -0.5, "slope": 4.0, "intercept": 3.0},
        {"x_start": -0.5, "x_end": 0.0, "slope": -4.0, "intercept": -1.0},
        {"x_start": 0.0, "x_end": 1.0, "slope": 1.0, "intercept": -1.0},
    ]
    lines = (folder / "regions.csv").read_text().splitlines()
    assert lines == [
        "x_start,x_end,slope,intercept",
        "-1.0,-0.5,4.0,3.0",
        "-0.5,0.0,-4.0,-1.0",
        "0.0,1.0,1.0,-1.0",
    ]
    assert (folder / "regions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regions_table_and_a_sub_interval(blog_run):
    folder, _ = blog_run
    res = invoke("regions", folder)
    assert res.exit_code == 0, res.output
    assert "linear regions" in res.output and "Lipschitz (exact)" in res.output and "17.748" in res.output
    out = json.loads(invoke("regions", folder, "--from", "-0.25", "--to", "0.5", "--json").output)
    assert out["num_regions"] == 2 and out["lipschitz"] == 4.0 and out["interval"] == [-0.25, 0.5]


def _hand_made_run(folder, d, o, task):
    """A run folder of a random relu network with input dimension d, written like save_run."""
    from iatrun.nn.models import build_model

    cfg = {"model": {"kind": "relu", "width": 6, "depth": 2, "norm": "none"}, "seed": 3, "task": task}
    model = build_model("relu", d, 6, 2, o, seed=3)
    folder.mkdir()
    blob = {"state_dict": model.state_dict(), "config": cfg, "dims": {"d": d, "o": o}}
    torch.save(blob, folder / "model.pt")
    (folder / "metrics.json").write_text('{"status": "ok"}')
    return folder


def test_regions_on_a_multidimensional_run_needs_a_segment(tmp_path):
    run = _hand_made_run(tmp_path / "mem", 3, 4, {"name": "memorization"})
    assert_error(invoke("regions", run), "input dimension 3", "--from")
    assert not (run / "regions.csv").exists()
    assert_error(invoke("regions", run, "--from", "0,0", "--to", "1,1,1"), "3 coordinates")
    res = invoke("regions", run, "--from", "-1,0,2", "--to", "1,1,-1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["from"] == [-1.0, 0.0, 2.0] and out["to"] == [1.0, 1.0, -1.0]
    assert set(out["regions"][0]) == {"t_start", "t_end", "slope", "intercept"}
    assert len(out["regions"][0]["slope"]) == 4
    header = (run / "regions.csv").read_text().splitlines()[0]
    assert header.startswith("t_start,t_end,slope_0,slope_1,slope_2,slope_3,intercept_0")
    assert out["lipschitz"] <= out["lipschitz_bound"]


def test_regions_errors_are_one_line(tmp_path):
    assert_error(invoke("regions", tmp_path / "nope"), "no such folder")
    (tmp_path / "empty").mkdir()
    assert_error(invoke("regions", tmp_path / "empty"), "model.pt is missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.pt").write_bytes(b"not a pickle")
    assert_error(invoke("regions", tmp_path / "bad"), "unreadable")
    run = _hand_made_run(tmp_path / "tanhish", 1, 1, {"name": "fitting"})
    blob = torch.load(run / "model.pt", weights_only=False)
    blob["config"]["model"]["kind"] = "tanh"
    torch.save(blob, run / "model.pt")
    assert_error(invoke("regions", run), "piecewise-linear")
    blob["state_dict"].pop("linears.0.weight")
    torch.save(blob, run / "model.pt")
    assert_error(invoke("regions", run), "not a loadable run folder")
    assert_error(invoke("regions", run, "--from", "x"), "--from must be a number")
    for folder in (tmp_path / "empty", tmp_path / "bad", run):
        assert not (folder / "regions.csv").exists() and not (folder / "regions.png").exists()


def test_regions_on_a_trained_fitting_run(tmp_path):
    from iatrun.config import compose
    from iatrun.train import run

    overrides = [
        "model=iat",
        "model.width=8",
        "model.depth=2",
        "model.basis_in=pwl",
        "train.steps=3",
        "task.n_train=32",
        "task.holdout_factor=2",
        "device=cpu",
        f"out={tmp_path / 'fit'}",
    ]
    _, folder = run(compose(overrides))
    res = invoke("regions", folder, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["interval"] == [-1.0, 1.0] and out["num_regions"] >= 1
    assert 0 < out["lipschitz"] <= out["lipschitz_bound"]
    assert len((folder / "regions.csv").read_text().splitlines()) == out["num_regions"] + 1
    assert (folder / "regions.png").stat().st_size > 1000
