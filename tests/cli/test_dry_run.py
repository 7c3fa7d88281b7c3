"""`iatrun fit --dry-run` and `iatrun sweep --dry-run`: everything checked and described, nothing written."""

import os
import re

import yaml
from _support import N_CELLS
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()
TINY = ["--width", "8", "--depth", "2", "--steps", "40", "task.n_train=64", "task.holdout_factor=2"]


def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_fit_dry_run_prints_the_config_and_plan_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["fit", "--dry-run", *TINY, "--basis-in", "pwl", "train.lr=auto"])
    assert res.exit_code == 0, res.output
    assert files(tmp_path) == []
    lines = res.output.splitlines()
    assert lines[0] == "# iatrun fit --dry-run: nothing is trained or written"
    cfg = yaml.safe_load("\n".join(ln for ln in lines[1:] if not ln.startswith("#")))
    assert cfg["model"]["basis_in"] == "pwl" and cfg["model"]["width"] == 8 and cfg["train"]["lr"] == "auto"
    notes = {ln.split(":", 1)[0]: ln for ln in lines if ln.startswith("# ")}
    assert notes["# run folder"].startswith("# run folder: results/runs/")
    assert notes["# run folder"].endswith("-fitting-iat-pwl-pwq-r4 (would be created)")
    from iatrun.config import compose
    from iatrun.train import prepare

    model = prepare(compose(["model.basis_in=pwl", "model.width=8", "model.depth=2"]))[1]
    params = sum(p.numel() for p in model.parameters())
    assert notes["# model"] == f"# model: {params:,} parameters on cpu (float32)"
    # the default tuner on 40 steps: rungs 4, 13, 40 → 6·4 + 2·40 + 2 extensions · 40 steps, 10 trials
    assert notes["# budget"] == (
        "# budget: 40 steps; lr auto: chosen first in at most 10 trials (184 steps, train.tune); "
        "64 training points"
    )
    assert re.fullmatch(
        r"# estimated time: \d+ s on this machine at \d+ thread\(s\) \(a few steps timed\)",
        notes["# estimated time"],
    )


def test_fit_dry_run_refuses_what_a_run_would_refuse(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    res = runner.invoke(app, ["fit", "--dry-run", "--out", str(tmp_path / "full")])
    assert res.exit_code == 2 and "not empty" in res.output


def test_sweep_dry_run_describes_the_cells_and_writes_nothing(tmp_path, confdir):
    out = tmp_path / "sw"
    args = ["sweep", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out), "--dry-run"]
    res = runner.invoke(app, [*args, "--engine", "serial", "--jobs", "2"])
    assert res.exit_code == 0, res.output
    assert not out.exists()
    lines = res.output.splitlines()
    assert lines[0] == "dry run: nothing is trained, submitted or written"
    assert (
        lines[1]
        == f"grid tiny: {N_CELLS} cells, 0 already finished, {N_CELLS} to run → {out} (would be created)"
    )
    assert lines[2] == f"cells by task: fitting {N_CELLS}; seeds 0, 1"
    assert lines[3] == "learning rate: fixed 0.003"
    assert lines[4] == f"engine serial: {N_CELLS} cells one at a time, in 2 worker(s)"
    assert lines[5].startswith("estimated time: ") and "5 of 5 settings timed here" in lines[5]
    # the batched engine: the four IAT pairs stack by shape with their two seeds
    res = runner.invoke(app, [*args, "--engine", "batched"])
    assert res.exit_code == 0, res.output
    assert "engine batched: " in res.output and not out.exists()


def test_sweep_dry_run_counts_what_a_rerun_would_resume(tmp_path, confdir):
    out = tmp_path / "sw"
    base = ["sweep", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out), "-q"]
    assert runner.invoke(app, [*base, "--where", "model.basis_in=rect"]).exit_code == 0
    before = files(out)
    res = runner.invoke(app, [*base, "--dry-run"])
    assert res.exit_code == 0, res.output
    head = f"grid tiny: {N_CELLS} cells, 4 already finished, {N_CELLS - 4} to run"
    assert f"{head} → {out} (exists: a rerun resumes it)" in res.output
    assert files(out) == before


def test_the_estimate_says_when_it_was_timed_on_a_busy_machine(monkeypatch):
    from iatrun.sweep import preview

    monkeypatch.setattr(preview.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(preview.os, "getloadavg", lambda: (4.9, 4.7, 3.6))
    assert preview._busy() == "; timed while busy, load 4.9 on 2 cores: too high"
    monkeypatch.setattr(preview.os, "getloadavg", lambda: (2.3, 2.0, 1.0))
    assert preview._busy() == ""
