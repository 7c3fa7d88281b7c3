"""`iatrun.load_sweep` and `Run.curve`: results read back as Python objects, nothing written."""

import pandas as pd
from typer.testing import CliRunner

import iatrun
from iatrun.cli import app

runner = CliRunner()


def test_load_sweep_gives_the_cells_and_the_tables(tmp_path, confdir):
    out = tmp_path / "sw"
    args = ["sweep", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    sweep = iatrun.load_sweep(out)
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()) == before  # read only
    assert sweep.spec["grid"] == "tiny" and len(sweep.cells) == 10
    on_disk = pd.read_csv(out / "cells.csv")
    assert list(sweep.cells["key"]) == list(on_disk["key"])
    assert list(sweep.cells.columns) == list(on_disk.columns)
    assert sweep.cells["heldout_mse"].tolist() == on_disk["heldout_mse"].tolist()
    assert set(sweep.tables) == {p.stem for p in (out / "tables").glob("*.csv")}
    run = sweep.run("fitting/relu/seed0")
    assert run.metrics["heldout_mse"] == on_disk.set_index("key").loc["fitting/relu/seed0", "heldout_mse"]
    curve = run.curve
    assert list(curve.columns) == ["step", "loss", "lr"] and len(curve) == 30


def test_the_registries_are_exported():
    assert "fourier" in iatrun.BASES.names()
    assert {"iat", "relu"} <= set(iatrun.MODELS.names())
    assert iatrun.TASKS.names() == ["fitting", "memorization"]
