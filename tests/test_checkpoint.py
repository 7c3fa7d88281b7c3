"""Checkpoints (iatrun.checkpoint): a killed run continues where it was and ends with the same bits."""

import json
import os
import random
import signal
import subprocess
import time

import pytest
import torch
from _support import exe

from iatrun.checkpoint import Saver, checkpoint_path
from iatrun.config import compose
from iatrun.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*extra):
    task = [] if "task=memorization" in extra else ["task.n_train=64"]
    return compose(["model.width=8", "model.depth=2", "train.steps=300", "device=cpu", *task, *extra])


class Killed(Exception):
    pass


@pytest.mark.parametrize(
    "extra",
    [
        ["model=iat", "model.basis_in=fourier", "model.basis_out=pwq"],
        ["model=relu", "train.batch_size=16", "train.schedule=cosine"],  # batch order and schedule resume too
        ["task=memorization", "task.n_points=48", "task.dim=4", "task.num_classes=3", "model=iat"],
    ],
)
def test_a_run_killed_at_a_random_step_resumes_to_the_same_bits(tmp_path, monkeypatch, extra):
    monkeypatch.setenv("IATRUN_CHECKPOINT_S", "0")  # a checkpoint at every block end
    cfg = _cfg(*extra)
    whole = train(cfg)
    ckpt = tmp_path / "run.ckpt"
    stop = random.Random(len(extra)).randint(30, 280)

    def kill(step, _loss):
        if step == stop:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, on_step=kill, checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert 0 < saved["step"] < stop  # the last block end before the kill
    resumed = train(cfg, checkpoint=ckpt)
    assert resumed.curve == whole.curve
    for key, value in whole.metrics.items():
        if key not in ("wall_time_s", "steps_per_s"):
            assert resumed.metrics[key] == value, key
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_config_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("IATRUN_CHECKPOINT_S", "0")
    ckpt = tmp_path / "run.ckpt"
    train(_cfg("model=relu", "train.steps=60"), checkpoint=ckpt)
    assert Saver(ckpt, _cfg("model=relu", "train.steps=60")).load()["step"] == 50
    assert Saver(ckpt, _cfg("model=relu", "train.steps=61")).load() is None
    other = train(_cfg("model=relu", "train.steps=61"), checkpoint=ckpt)
    assert other.metrics["steps_done"] == 61 and len(other.curve) > 0 and other.curve[0][0] == 1


@pytest.mark.slow
def test_iatrun_fit_killed_and_rerun_into_the_same_out_ends_as_an_unbroken_run(tmp_path):
    env = dict(os.environ, IATRUN_CHECKPOINT_S="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args = ["fit", "-q", "model.width=16", "task.n_train=200", "train.steps=1500", "--device", "cpu"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*exe(), *args, "--out", str(out)], env=env)
    ckpt = checkpoint_path(out)
    target = random.Random(7).randint(100, 1200)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if torch.load(ckpt, weights_only=False)["step"] >= target:
                break
        except Exception:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and ckpt.is_file()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 1500
    for folder in (out, tmp_path / "whole"):
        subprocess.run([*exe(), *args, "--out", str(folder)], env=env, check=True, capture_output=True)
    assert not ckpt.exists()  # removed once the run folder is written
    assert (out / "curve.csv").read_text() == (tmp_path / "whole" / "curve.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole"))
    assert {k: v for k, v in a.items() if k not in ("wall_time_s", "steps_per_s")} == {
        k: v for k, v in b.items() if k not in ("wall_time_s", "steps_per_s")
    }
