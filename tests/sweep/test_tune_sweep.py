"""``train.lr=auto`` in a sweep: one choice per setting, shared by its seeds, cached and reused."""

import json

import pandas as pd
from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.sweep.grid import expand, load_grid

runner = CliRunner()
GRID = """
seeds: [0]
overrides: [model.width=8, model.depth=1, task.n_train=100, train.steps=18, train.lr=auto]
blocks:
  - {task: fitting, model: iat, model.basis_in: [rect, fourier], model.basis_out: pwq}
  - {task: fitting, model: [relu, tanh, sigmoid]}
"""


def _grid(tmp_path):
    (tmp_path / "conf" / "sweep").mkdir(parents=True)
    (tmp_path / "conf" / "sweep" / "tiny.yaml").write_text(GRID)
    return ["--grid", "tiny", "--config-dir", str(tmp_path / "conf")]


def test_each_setting_is_tuned_once_and_its_seeds_share_the_rate(tmp_path):
    out = tmp_path / "sw"
    args = _grid(tmp_path)
    r = runner.invoke(app, ["sweep", "-q", "--out", str(out), *args, "seed=0,1"])
    assert r.exit_code == 0, r.output
    records = sorted((out / "tune").glob("*.json"))
    assert len(records) == 2 + 3  # two IAT pairs and three baselines
    df = pd.read_csv(out / "cells.csv")
    assert len(df) == 10 and df["lr_chosen"].notna().all()
    assert (df.groupby(df["key"].str.rsplit("/", n=1).str[0])["lr_chosen"].nunique() == 1).all()
    cell = json.loads((out / "cells" / "fitting" / "iat-fourier-pwq-r4" / "seed1" / "tune.json").read_text())
    assert cell["seeds"] == [1000] and {t["steps"] for t in cell["trials"]} == {2, 18}
    stamps = {p: p.stat().st_mtime_ns for p in records}
    r = runner.invoke(
        app, ["sweep", "-q", "--out", str(out), *args, "seed=0,1,2"]
    )  # a new seed: no new tuning
    assert r.exit_code == 0, r.output
    assert {p: p.stat().st_mtime_ns for p in sorted((out / "tune").glob("*.json"))} == stamps


def test_a_grid_whose_seeds_include_a_selection_seed_is_refused(tmp_path):
    r = runner.invoke(app, ["sweep", "-q", "--out", str(tmp_path / "sw"), *_grid(tmp_path), "seed=0,1000"])
    assert r.exit_code == 2 and "selection seed" in r.output
    assert not (tmp_path / "sw").exists()


def test_batched_stacks_form_by_the_chosen_rate(tmp_path):
    from iatrun.sweep.run import plan, tune_pending

    _grid(tmp_path)
    grid = load_grid("tiny", tmp_path / "conf")
    cells = expand(grid, ["model.basis_in=rect,pwl,pwq", "seed=0,1"], user_dir=tmp_path / "conf")
    assert tune_pending(tmp_path, cells) == 3 + 3
    items = plan(cells, engine="batched", sweep_dir=tmp_path)
    from iatrun.tune import cached

    for item in items:
        rates = {cached(c.config, tmp_path / "tune")["chosen"] for c in item}
        assert len(rates) == 1
    assert sum(len(i) for i in items) == len(cells)


def test_a_setting_whose_tuning_fails_fails_its_cells_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from iatrun import train

    real = train.trial

    def trial(cfg):
        if cfg["model"].get("basis_in") == "fourier":
            raise RuntimeError("boom")
        return real(cfg)

    monkeypatch.setattr(train, "trial", trial)
    monkeypatch.setattr("iatrun.sweep.run.trial", trial)
    out = tmp_path / "sw"
    r = runner.invoke(app, ["sweep", "-q", "--out", str(out), *_grid(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "learning rate not chosen: failed (RuntimeError: boom)" in " ".join(r.output.split())
    df = pd.read_csv(out / "cells.csv")
    states = dict(zip(df["key"], df["state"]))
    assert states["fitting/iat-fourier-pwq-r4/seed0"] == "failed"
    assert sum(s == "done" for s in states.values()) == 4


def test_the_tune_block_of_a_fixed_rate_cell_does_not_make_it_stale():
    from iatrun.config import compose
    from iatrun.sweep.grid import config_hash

    a, b = compose(["train.lr=0.01"]), compose(["train.lr=0.01", "train.tune.seeds=[5]"])
    assert config_hash(a) == config_hash(b)
    a, b = compose(["train.lr=auto"]), compose(["train.lr=auto", "train.tune.seeds=[5]"])
    assert config_hash(a) != config_hash(b)
