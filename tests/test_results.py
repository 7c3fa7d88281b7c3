"""The run folder's one owner (iatrun.results): write, check, load."""

import pytest
import torch

from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.files import read_json, staged_dir
from iatrun.nn.models import build_model
from iatrun.results import (
    BUILT_FILES,
    CURVE_HEADER,
    METRICS,
    PROVENANCE,
    TRAINED_FILES,
    check_run,
    load_run,
    read_curve,
    run_name,
    save_built,
)
from iatrun.train import run


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("runs") / "fit"
    cfg = compose(["model.width=8", "model.depth=1", "train.steps=20", "task.n_train=64", f"out={out}"])
    result, folder = run(cfg)
    return result, folder


def test_a_trained_run_folder_is_sound_and_loads_back(fitted):
    result, folder = fitted
    assert check_run(folder) is None
    assert {p.name for p in folder.iterdir()} == set(TRAINED_FILES) | {"prediction.png", PROVENANCE}
    curve = read_curve(folder)
    assert list(curve.columns) == CURVE_HEADER.split(",")
    assert len(curve) == 20 and curve["step"].iloc[-1] == 20
    loaded = load_run(folder)
    x = torch.linspace(-1, 1, 7)[:, None]
    with torch.no_grad():
        assert torch.equal(loaded.model(x), result.model(x))
    assert loaded.metrics["heldout_mse"] == pytest.approx(result.metrics["heldout_mse"])


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda f: (f / "loss.png").unlink(), "loss.png missing"),
        (lambda f: (f / "curve.csv").write_text("step;loss\n1;2\n"), "curve.csv empty or malformed"),
        (lambda f: (f / "metrics.json").write_text("{"), "metrics.json unreadable"),
        (lambda f: (f / "model.pt").write_bytes(b"not a zip"), "model.pt unreadable"),
        (lambda f: (f / "config.yaml").write_text("- a list\n"), "config.yaml is not a run config"),
    ],
)
def test_check_run_names_what_is_wrong(fitted, tmp_path, damage, problem):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fitted[1], copy)
    damage(copy)
    assert check_run(copy) == problem


def test_a_built_network_folder_has_its_own_file_list(tmp_path):
    model = build_model("relu", 1, 3, 1, 1, seed=0)
    cfg = {"model": {"kind": "relu", "width": 3, "depth": 1, "norm": "none"}, "seed": 0}
    with staged_dir(tmp_path / "built") as stage:
        save_built(stage, cfg, model, {"status": "ok"}, {"d": 1, "o": 1})
    assert check_run(tmp_path / "built", BUILT_FILES) is None
    assert check_run(tmp_path / "built") == "curve.csv missing"
    assert sorted(p.name for p in (tmp_path / "built").iterdir()) == sorted([*BUILT_FILES, PROVENANCE])
    loaded = load_run(tmp_path / "built")
    assert loaded.config == cfg
    assert (loaded.provenance["device"], loaded.provenance["dtype"]) == ("cpu", "float32")


def test_provenance_is_written_before_metrics_and_read_back(fitted):
    _, folder = fitted
    assert (folder / PROVENANCE).stat().st_mtime_ns <= (folder / METRICS).stat().st_mtime_ns
    prov = load_run(folder).provenance
    assert prov == read_json(folder / PROVENANCE)
    assert (prov["device"], prov["dtype"], prov["versions"]["torch"]) == ("cpu", "float32", torch.__version__)
    assert prov["overrides"] is None  # a library call, outside any command: no overrides to record


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_folder_without_readable_provenance_is_sound_and_loads(fitted, tmp_path, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fitted[1], copy)
    if damage == "delete":
        (copy / PROVENANCE).unlink()
    else:
        (copy / PROVENANCE).write_text("[1, 2")
    assert check_run(copy) is None
    run = load_run(copy)
    assert run.provenance == {} and run.metrics["status"] == "ok"


def test_run_name_carries_the_iat_pair_and_a_non_default_method():
    cfg = {
        "task": {"name": "fitting"},
        "model": {"kind": "iat", "basis_in": "pwl", "basis_out": "pwq", "mesh_ratio": 8, "method": "exact"},
    }
    assert run_name(cfg, when="20260101-000000") == "20260101-000000-fitting-iat-pwl-pwq-r8-exact"
    relu = {"task": {"name": "memorization"}, "model": {"kind": "relu"}}
    assert run_name(relu, when="S") == "S-memorization-relu"


def test_load_run_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(IatrunError, match="model.pt is missing"):
        load_run(tmp_path)
