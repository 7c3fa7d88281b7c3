"""Provenance (iatrun.provenance): what a run folder rests on, found without ever failing."""

import json
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import iatrun
from iatrun import provenance
from iatrun.cli import app
from iatrun.results import PROVENANCE, check_run, load_run

runner = CliRunner()
HAS_GIT = shutil.which("git") is not None
TINY = ["--width", "8", "--depth", "1", "--steps", "5", "task.n_train=32", "task.holdout_factor=2", "-q"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, one_thread):
    """Two runs through `iatrun fit`: the default dtype and float64."""
    root = tmp_path_factory.mktemp("prov")
    folders = {}
    for dtype in ("float32", "float64"):
        extra = [] if dtype == "float32" else ["--dtype", "float64"]
        res = runner.invoke(app, ["fit", "--out", str(root / dtype), *TINY, *extra])
        assert res.exit_code == 0, res.output
        folders[dtype] = root / dtype
    return folders


def test_a_fitted_run_records_versions_device_dtype_and_command(fitted):
    p = json.loads((fitted["float32"] / PROVENANCE).read_text())
    assert p["versions"] == {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "iatrun": iatrun.__version__,
        "cuda": torch.version.cuda,
    }
    assert p["device"] == "cpu" and p["dtype"] == "float32"
    assert p["device_name"] == provenance.cpu_name()
    assert p["threads"] == 1  # the one_thread fixture
    assert p["host"] == platform.node()
    assert p["argv"] == sys.argv  # CliRunner leaves the process's argv as it is
    # the flags became overrides, in flag order, and the explicit ones follow them
    assert p["overrides"] == [
        "model.width=8",
        "model.depth=1",
        "train.steps=5",
        f"out={fitted['float32']}",
        "task.n_train=32",
        "task.holdout_factor=2",
    ]
    assert isinstance(p["dirty"], bool) or not HAS_GIT
    if HAS_GIT:  # the test suite runs from a git checkout
        assert re.fullmatch(r"[0-9a-f]{40}", p["commit"]), p["commit"]
    assert json.loads((fitted["float64"] / PROVENANCE).read_text())["dtype"] == "float64"
    assert os.environ.get(provenance.COMMAND_ENV) is None  # the command's context is gone after it


def test_load_run_exposes_provenance(fitted):
    run = load_run(fitted["float64"])
    assert run.provenance["dtype"] == "float64" and run.provenance["device"] == "cpu"
    assert next(run.model.parameters()).dtype == torch.float64


def test_a_folder_without_provenance_is_still_sound_and_loads(fitted, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(fitted["float32"], old)
    (old / PROVENANCE).unlink()
    assert check_run(old) is None
    run = load_run(old)
    assert run.provenance == {} and run.metrics["status"] == "ok"


def test_not_a_checkout_gives_null_commit(monkeypatch, tmp_path):
    (tmp_path / "iatrun").mkdir()
    monkeypatch.setattr(provenance, "package_dir", lambda: tmp_path / "iatrun")
    p = provenance.collect()
    assert p["commit"] is None and p["dirty"] is None
    assert p["versions"]["iatrun"] == iatrun.__version__  # the rest is still there
    assert "device" not in p and "dtype" not in p  # not given: left out


def test_no_git_on_the_path_gives_null_commit(monkeypatch):
    monkeypatch.setenv("PATH", "")
    uncached = provenance.git_state.__wrapped__
    assert uncached(str(provenance.package_dir())) == (None, None)


def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(not HAS_GIT, reason="git is not installed")
def test_the_checkout_must_hold_the_package_at_its_top(tmp_path):
    """A checkout whose top level holds the package: its HEAD and dirty flag. A package deeper in some
    other repository (a venv inside a project) is not that repository's code: null."""
    repo = tmp_path / "repo"
    (repo / "iatrun").mkdir(parents=True)
    (repo / "iatrun" / "mod.py").write_text("x = 1\n")
    (repo / "README.md").write_text("readme\n")
    (repo / "site" / "iatrun").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD").strip()
    uncached = provenance.git_state.__wrapped__
    assert uncached(str(repo / "iatrun")) == (head, False)
    (repo / "results").mkdir()
    (repo / "results" / "cells.csv").write_text("a\n")  # results written into the checkout: clean
    (repo / "README.md").write_text("changed\n")
    assert uncached(str(repo / "iatrun")) == (head, False)
    (repo / "conf" / "sweep").mkdir(parents=True)
    (repo / "conf" / "sweep" / "mine.yaml").write_text("seeds: [0]\n")  # a config: dirty
    assert uncached(str(repo / "iatrun")) == (head, True)
    (repo / "conf" / "sweep" / "mine.yaml").unlink()
    (repo / "iatrun" / "new.py").write_text("y = 2\n")  # untracked code, not ignored: dirty
    assert uncached(str(repo / "iatrun")) == (head, True)
    assert uncached(str(repo / "site" / "iatrun")) == (None, None)


def test_git_runs_once_per_process(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(provenance, "_git", lambda folder, *args: calls.append(args))
    monkeypatch.setattr(provenance, "package_dir", lambda: tmp_path / "iatrun")
    for _ in range(5):
        provenance.collect(device="cpu", dtype=torch.float32)
    assert calls == [("rev-parse", "--show-toplevel", "HEAD")]  # it failed, so no status either


def test_command_context_sets_argv_and_overrides_and_restores(monkeypatch):
    monkeypatch.delenv(provenance.COMMAND_ENV, raising=False)
    with provenance.command(["a=1", "b=2"], argv=["iatrun", "fit", "a=1"]):
        p = provenance.collect()
        assert p["argv"] == ["iatrun", "fit", "a=1"] and p["overrides"] == ["a=1", "b=2"]
    p = provenance.collect()
    assert p["argv"] == sys.argv and p["overrides"] is None
    assert provenance.COMMAND_ENV not in os.environ


def test_a_cuda_device_is_named_by_index_and_card(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H100 80GB HBM3 #{i}")
    p = provenance.collect(device="cuda", dtype="float32")
    assert (p["device"], p["device_name"], p["dtype"]) == ("cuda:0", "NVIDIA H100 80GB HBM3 #0", "float32")
    assert provenance.collect(device=torch.device("cuda", 1))["device"] == "cuda:1"
