"""One training step of every model kind and of both engines on torch's ``meta`` device: tensors
without data, so a CPU tensor mixed into the step or control flow that depends on tensor values
fails here, on any machine (the GPU path's first check, runnable without a GPU)."""

import pytest
import torch

from iatrun.batched import _masked_step, _stacked_loss, prepare_stack
from iatrun.config import compose
from iatrun.nn.models import MODELS
from iatrun.train import data, optimizer, prepare

META = torch.device("meta")
SMALL = ["model.width=8", "model.depth=2", "device=cpu"]
POINTS = {"fitting": "task.n_train=16", "memorization": "task.n_points=16"}
KINDS = {  # every registered model kind, the IAT with each kernel, σ and norm that matters
    "iat fourier/pwq (dense)": ["model=iat", "model.basis_in=fourier", "model.basis_out=pwq"],
    "iat pwl/pwq (banded)": ["model=iat", "model.basis_in=pwl", "model.basis_out=pwq"],
    "iat rect-w/pwl-w dyadic": [
        "model=iat",
        "model.basis_in=rect-w",
        "model.basis_out=pwl-w",
        "model.wavelets=dyadic",
    ],
    "iat tanh, layer norm": ["model=iat", "model.sigma=tanh", "model.norm=layer"],
    "iat batch norm": ["model=iat", "model.norm=batch"],
    "relu": ["model=relu"],
    "tanh": ["model=tanh"],
    "sigmoid": ["model=sigmoid"],
}
# Data-dependent by construction (the roots of the state, SPEC §4): torch.nonzero has no meta kernel.
DATA_DEPENDENT = {"iat exact": ["model=iat", "model.method=exact"], "decoupled": ["model=decoupled"]}


def _meta_step(over, task="fitting"):
    cfg = compose([f"task={task}", POINTS[task], *SMALL, *over])
    task_data, model, _, dtype = prepare(cfg)
    model = model.to(META)
    x, y = data(task_data, META, dtype)
    opt, _ = optimizer(model.parameters(), cfg["train"])
    loss = task_data.loss(model(x), y)
    loss.backward()
    opt.step()
    return loss, model


@pytest.mark.parametrize("task", ["fitting", "memorization"])
@pytest.mark.parametrize("name", list(KINDS))
def test_one_serial_step_runs_on_the_meta_device(name, task):
    loss, model = _meta_step(KINDS[name], task)
    assert loss.device == META and loss.shape == ()
    assert all(p.device == META for p in model.parameters())
    assert all(b.device == META for b in model.buffers())


def test_every_model_kind_is_covered():
    kinds = {
        o.split("=")[1]
        for over in [*KINDS.values(), *DATA_DEPENDENT.values()]
        for o in over
        if o.startswith("model=")
    }
    assert kinds == set(MODELS.names())


@pytest.mark.parametrize("name", list(DATA_DEPENDENT))
def test_the_exact_and_decoupled_layers_are_data_dependent(name):
    with pytest.raises(NotImplementedError, match="nonzero"):
        _meta_step(DATA_DEPENDENT[name])


@pytest.mark.parametrize("dead", [False, True])
def test_one_batched_step_runs_on_the_meta_device(dead):
    cfgs = [
        dict(compose(["task=fitting", POINTS["fitting"], *SMALL, *over]), seed=s)
        for over in (KINDS["iat fourier/pwq (dense)"], KINDS["relu"], KINDS["tanh"])
        for s in (0, 1)
    ]
    st = prepare_stack(cfgs)
    net = st.model.to(META)
    x, y = data(st.task, META, st.dtype)
    params = list(net.parameters())
    opt, _ = optimizer(params, cfgs[0]["train"])
    per_cell = _stacked_loss(st.task)(net(x), y)
    mask = torch.zeros(len(cfgs), dtype=torch.bool, device=META) if dead else None
    _masked_step(per_cell, mask, params, [p.detach().clone() for p in params], opt)
    assert per_cell.device == META and per_cell.shape == (len(cfgs),)
    assert all(p.device == META for p in params)
