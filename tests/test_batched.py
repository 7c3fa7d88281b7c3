"""The batched sweep engine (iatrun.batched) against the serial one (iatrun.train.train)."""

import json
import math

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from iatrun.batched import prepare_stack, train_stack
from iatrun.cli import app
from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.sweep import cells as sw
from iatrun.sweep.grid import Cell
from iatrun.sweep.run import plan, run_stack
from iatrun.train import prepare, train

TASKS = {
    "fitting": ["task=fitting", "task.n_train=48", "task.holdout_factor=2"],
    "memorization": ["task=memorization", "task.n_points=48", "task.dim=4", "task.num_classes=3"],
}
# several basis pairs (rect/rect included), a non-relu σ, another mesh ratio, and two element-wise kinds
MODELS = [
    ["model=iat", "model.basis_in=rect", "model.basis_out=rect"],
    ["model=iat", "model.basis_in=fourier", "model.basis_out=pwq"],
    ["model=iat", "model.basis_in=pwl", "model.basis_out=fourier", "model.mesh_ratio=2"],
    ["model=iat", "model.basis_in=pwq", "model.basis_out=pwl", "model.sigma=tanh"],
    ["model=relu"],
    ["model=tanh"],
]
METRICS = ("train_mse", "heldout_mse", "max_abs_error", "train_accuracy", "train_loss", "final_loss")


def configs(task: str, dtype: str = "float64", extra=(), seeds=(0, 1), device="cpu") -> list[dict]:
    base = TASKS[task] + [
        "model.width=8",
        "model.depth=2",
        "train.steps=25",
        f"dtype={dtype}",
        f"device={device}",
    ]
    out = []
    for model in MODELS:
        cfg = compose(base + model + list(extra))
        for s in seeds:
            out.append(dict(cfg, seed=s))
    return out


def assert_same(batched, serial, rel):
    assert batched.metrics["status"] == serial.metrics["status"]
    for k in ("diverged_step", "steps_done", "num_params", "loss_jumps"):
        assert batched.metrics[k] == serial.metrics[k], k
    for k in METRICS:
        if k in serial.metrics:
            a, b = batched.metrics[k], serial.metrics[k]
            assert a == pytest.approx(b, rel=rel, abs=1e-300) or (math.isnan(a) and math.isnan(b)), k
    assert [(s, lr) for s, _, lr in batched.curve] == [(s, lr) for s, _, lr in serial.curve]
    for (_, a, _), (_, b, _) in zip(batched.curve, serial.curve):
        assert a == pytest.approx(b, rel=rel) or not math.isfinite(b)


@pytest.mark.parametrize("dtype, rel", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("task", ["fitting", "memorization"])
def test_a_stack_trains_every_cell_as_the_serial_engine_does(task, dtype, rel, device):
    cfgs = configs(task, dtype, device=device.type)
    batched = train_stack(cfgs)
    for cfg, b in zip(cfgs, batched):
        assert b.config == cfg
        assert_same(b, train(cfg), rel)
        assert b.metrics["status"] == "ok" and b.metrics["steps_done"] == 25


@pytest.mark.parametrize("task", ["fitting", "memorization"])
def test_gain_cells_stack_and_train_as_the_serial_engine_does(task, device):
    cfgs = configs(task, extra=["model.norm=gain"], seeds=(0,), device=device.type)
    stack = prepare_stack(cfgs)
    assert stack.model.scaled  # the fourier and pwl cells carry factors other than 1
    for cfg, b in zip(cfgs, train_stack(cfgs, prepared=stack)):
        assert_same(b, train(cfg), 1e-9)


def test_initial_weights_are_the_serial_engines():
    cfgs = configs("fitting")
    st = prepare_stack(cfgs)
    for pos, i in enumerate(st.order):
        serial = prepare(cfgs[i])[1]
        for layer, lin in enumerate(serial.linears):
            assert torch.equal(st.model.weights[layer][pos], lin.weight)
            assert torch.equal(st.model.biases[layer][pos], lin.bias)


def test_mini_batches_and_cosine_schedule_match_serial():
    cfgs = configs(
        "memorization",
        extra=["train.batch_size=20", "train.schedule=cosine", "train.log_every=4"],
        seeds=(3,),
    )
    for cfg, b in zip(cfgs, train_stack(cfgs)):
        assert_same(b, train(cfg), 1e-9)


def poison_at(module, forward: int, poison) -> None:
    """Before ``module``'s ``forward``-th call (that is, step ``forward``), and only then, ``poison()``."""
    calls = []

    def hook(_module, _args):
        calls.append(1)
        if len(calls) == forward:
            with torch.no_grad():
                poison()

    module.register_forward_pre_hook(hook)


@pytest.mark.parametrize(
    "at", [1, 6, 25, 26, 60]
)  # first step; in a block of losses, its end, the next's start; last
def test_a_diverging_cell_is_frozen_and_does_not_disturb_the_others(at):
    cfgs = configs("fitting", extra=["train.steps=60"])
    victim = 8  # relu, seed 0
    clean = train_stack(cfgs)
    st = prepare_stack(cfgs)
    pos = st.order.index(victim)
    # output weights so large that the loss overflows to inf
    poison_at(st.model, at, lambda: st.model.weights[-1][pos].fill_(1e200))
    poisoned = train_stack(cfgs, prepared=st)
    task, model, device, dtype = prepare(cfgs[victim])
    poison_at(model, at, lambda: model.linears[-1].weight.fill_(1e200))
    serial = train(cfgs[victim], prepared=(task, model, device, dtype))
    assert serial.metrics["status"] == "diverged" and serial.metrics["diverged_step"] == at
    assert serial.metrics["steps_done"] == at - 1 and serial.curve[-1][0] == at
    assert_same(poisoned[victim], serial, 1e-9)
    for (k, v), w in zip(poisoned[victim].model.state_dict().items(), serial.model.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=1e-9, atol=0, msg=k)  # frozen at the step before it diverged
    unpoisoned = prepare(cfgs[victim])[1]
    trained = not torch.equal(serial.model.linears[-1].weight, unpoisoned.linears[-1].weight)
    assert trained == (at > 1)
    assert serial.model.linears[-1].weight.abs().max() < 1e3  # and kept the weights of step at - 1
    for i, (a, b) in enumerate(zip(poisoned, clean)):
        if i != victim:
            assert a.metrics | {"wall_time_s": 0, "steps_per_s": 0} == b.metrics | {
                "wall_time_s": 0,
                "steps_per_s": 0,
            }
            assert a.curve == b.curve


def test_a_stack_whose_cells_all_diverge_stops_with_each_at_its_own_step(monkeypatch):
    from iatrun.loop import Checkpoint

    cfgs = configs("fitting", extra=["train.steps=60"])[:3]
    st = prepare_stack(cfgs)
    clock = {"step": 0}  # the step the stack is at, rewound when a block is replayed
    restore = Checkpoint.restore

    def rewinding(self, *args):
        clock["step"] = self.step
        restore(self, *args)

    monkeypatch.setattr(Checkpoint, "restore", rewinding)
    due = {4: 0, 30: 1, 31: 2}  # step -> the cell poisoned before it (once: a replay finds it dead)

    def hook(_module, _args):
        clock["step"] += 1
        if (c := due.pop(clock["step"], None)) is not None:
            with torch.no_grad():
                st.model.weights[-1][st.order.index(c)].fill_(1e200)

    st.model.register_forward_pre_hook(hook)
    results = train_stack(cfgs, prepared=st)
    assert [r.metrics["diverged_step"] for r in results] == [4, 30, 31]
    assert [r.metrics["steps_done"] for r in results] == [3, 29, 30]
    assert [r.curve[-1][0] for r in results] == [4, 30, 31]


def test_jobs_do_not_cut_stacks_smaller_on_a_single_gpu(monkeypatch):
    fit = [dict(c, device="auto") for c in configs("fitting", seeds=(0,))]
    assert sorted(len(i) for i in plan(cells(fit), engine="batched", jobs=2)) == [3, 3]  # on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert [len(i) for i in plan(cells(fit), engine="batched", jobs=2)] == [6]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert sorted(len(i) for i in plan(cells(fit), engine="batched", jobs=2)) == [3, 3]


def cells(cfgs):
    return [Cell(f"c{i}", c) for i, c in enumerate(cfgs)]


def test_grouping_separates_shapes_and_budgets_and_cuts_for_jobs():
    fit = configs("fitting", seeds=(0,))
    wide = configs("fitting", extra=["model.width=16"], seeds=(0,))
    longer = configs("fitting", extra=["train.steps=30"], seeds=(0,))
    normed = [dict(fit[0], model=dict(fit[0]["model"], norm="layer"))]
    items = plan(cells(fit + wide + longer + normed), engine="batched")
    keys = [
        [c.config["model"]["width"], c.config["train"]["steps"], len(item)]
        for item in items
        for c in item[:1]
    ]
    assert sorted(keys) == [[8, 25, 1], [8, 25, 6], [8, 30, 6], [16, 25, 6]]  # the normed cell runs alone
    assert sorted(len(i) for i in plan(cells(fit), engine="batched", jobs=2)) == [3, 3]
    assert sorted(len(i) for i in plan(cells(fit), engine="batched", stack_size=4)) == [3, 3]
    # mini-batch order comes from the seed: different seeds, different stacks
    mb = configs("fitting", extra=["train.batch_size=16"])
    assert sorted(len(i) for i in plan(cells(mb), engine="batched")) == [6, 6]
    with pytest.raises(IatrunError, match="cannot share a stack"):
        prepare_stack(mb)
    # auto leaves large CPU cells (B·M above the measured break-even) to the serial engine
    big = configs("fitting", extra=["task.n_train=1000", "model.width=32"], seeds=(0,))
    assert [len(i) for i in plan(cells(big), engine="auto")] == [1] * 6
    assert [len(i) for i in plan(cells(fit), engine="auto")] == [6]


def test_a_stack_skips_finished_cells_and_leaves_claimed_ones(tmp_path):
    cs = cells(configs("fitting", dtype="float32", extra=["train.steps=5"], seeds=(0,))[:3])

    held = sw.claim(tmp_path, cs[0])
    try:
        rows = run_stack(tmp_path, cs)
    finally:
        held.release()
    assert {r["key"]: r["state"] for r in rows} == {"c0": "busy", "c1": "done", "c2": "done"}
    assert all(sw.cell_state(tmp_path, c)[0] == "done" for c in cs[1:])
    again = run_stack(tmp_path, cs[1:])
    assert all(r["state"] == "done" and r["ran"] is False for r in again)


GRID = """
seeds: [0, 1]
overrides: [model.width=8, model.depth=1, train.steps=20]
blocks:
  - task: fitting
    task.n_train: 48
    task.holdout_factor: 2
    model: iat
    model.basis_in: [rect, fourier]
    model.basis_out: [rect, pwq]
  - task: fitting
    task.n_train: 48
    task.holdout_factor: 2
    model: [relu, tanh]
"""


def test_sweep_engine_batched_writes_the_serial_engines_folder(tmp_path):
    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "sweep" / "tiny.yaml").write_text(GRID)
    runner = CliRunner()

    def sweep(out, *args):
        res = runner.invoke(
            app, ["sweep", "-q", "--grid", "tiny", "--config-dir", str(conf), "--out", str(out), *args]
        )
        assert res.exit_code == 0, res.output
        return res.output

    sweep(tmp_path / "b", "--engine", "batched")
    sweep(tmp_path / "s", "--engine", "serial")
    done = sorted((tmp_path / "b" / "cells").rglob("done.json"))
    assert len(done) == 12
    walls = {json.loads((p.parent / "metrics.json").read_text())["wall_time_s"] for p in done}
    assert len(walls) == 1  # one stack of 12: each cell is charged a twelfth of its wall time
    assert "12 already finished, 0 to run" in sweep(tmp_path / "b", "--engine", "batched")
    assert sorted((tmp_path / "b" / "cells").rglob("done.json")) == done

    def table(folder):
        df = pd.read_csv(folder / "cells.csv").drop(columns=["wall_time_s", "steps_per_s"])
        return df.sort_values("key").reset_index(drop=True)

    pd.testing.assert_frame_equal(table(tmp_path / "b"), table(tmp_path / "s"), rtol=1e-4)

    # through a launcher each array task trains its chunk as stacks: the same cells again
    sweep(tmp_path / "l", "--engine", "batched", "--launcher", "submitit_local", "launcher.cells_per_task=6")
    tasks = [p for p in (tmp_path / "l" / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(tasks) == 2  # the local backend names a task's folder by its process id
    metrics = (tmp_path / "l" / "cells").rglob("metrics.json")
    walls = {json.loads(p.read_text())["wall_time_s"] for p in metrics}
    assert len(walls) <= 4  # stacks (one per task and group), not one wall time per cell
    pd.testing.assert_frame_equal(table(tmp_path / "l"), table(tmp_path / "s"), rtol=1e-4)
