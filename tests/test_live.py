"""Live logs (iatrun.live): the curve beside a run while it trains, and TensorBoard events."""

import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.live import LiveLog, check_logger, curve_path
from iatrun.loop import CHECK_EVERY
from iatrun.train import run, train

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def _cfg(*extra):
    return compose(
        ["model.width=8", "model.depth=2", "train.steps=120", "task.n_train=64", "device=cpu", *extra]
    )


class Stop(Exception):
    pass


def test_a_killed_run_leaves_its_curve_up_to_the_last_write(tmp_path):
    cfg = _cfg()
    whole = train(cfg).curve
    path = tmp_path / ".run.curve.csv"

    def stop(step, loss):
        if step == 2 * CHECK_EVERY + 5:  # in the third block: two blocks were written
            raise Stop

    with pytest.raises(Stop):
        train(cfg, on_step=stop, live=LiveLog(path, every_s=0.0))
    left = pd.read_csv(path)
    assert list(left.columns) == ["step", "loss", "lr"]
    assert len(left) == 2 * CHECK_EVERY
    assert [tuple(r) for r in left.itertuples(index=False)] == [
        (s, loss, lr) for s, loss, lr in whole[: len(left)]
    ]


def test_a_finished_run_keeps_its_curve_in_the_folder_and_removes_the_live_one(tmp_path):
    result, folder = run({**_cfg(), "out": str(tmp_path / "run")})
    assert not curve_path(folder).exists() and not (tmp_path / "tensorboard").exists()
    assert len(pd.read_csv(folder / "curve.csv")) == 120


def _runs(logdir):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return {name: mux.GetAccumulator(name) for name in mux.Runs()}


def test_fit_with_tensorboard_logs_loss_lr_and_metrics(tmp_path):
    result, folder = run({**_cfg("logger=tensorboard"), "out": str(tmp_path / "run")})
    runs = _runs(tmp_path / "tensorboard")
    assert list(runs) == ["run"]
    acc = runs["run"]
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 121))
    assert loss[-1].value == pytest.approx(result.curve[-1][1], rel=1e-6)
    assert acc.Scalars("metrics/heldout_mse")[0].value == pytest.approx(
        result.metrics["heldout_mse"], rel=1e-6
    )


@pytest.mark.parametrize("engine", ["serial", "batched"])
def test_a_sweep_with_tensorboard_has_one_run_per_cell(tmp_path, confdir, engine):
    out = tmp_path / "sw"
    res = runner.invoke(
        app,
        ["sweep", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out), "-q", "--engine", engine]
        + ["logger=tensorboard"],
    )
    assert res.exit_code == 0, res.output
    keys = sorted(p.parent.relative_to(out / "cells").as_posix() for p in (out / "cells").rglob("done.json"))
    runs = _runs(out)
    assert sorted(runs) == sorted(f"tensorboard/{k}" for k in keys) and len(keys) == 10
    for acc in runs.values():
        assert len(acc.Scalars("train/loss")) == 30  # the tiny grid's 30 steps, every one logged
    assert not list(out.rglob(".*.curve.csv"))  # live curves go once the cells are done


def test_tensorboard_missing_is_one_error_before_any_work(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    with pytest.raises(IatrunError, match=r"logger=tensorboard needs the tensorboard package"):
        check_logger({"logger": "tensorboard"})
    check_logger({"logger": "csv"})  # the default needs nothing
