"""Training, tasks and metrics, called directly (no CLI)."""

import math

import pytest
import torch

from iatrun.config import compose
from iatrun.tasks import accuracy, fitting_grids, make_task, multi_sine, piecewise_linear
from iatrun.train import loss_jumps, train


def tiny(*extra):
    return compose(["model.width=8", "train.steps=60", "task.n_train=64", "task.holdout_factor=2", *extra])


def test_tiny_fitting_loss_decreases():
    r = train(tiny("train.lr=0.03", "task.target=piecewise_linear", "train.steps=150"))
    losses = [loss for _, loss, _ in r.curve]
    assert losses[-1] < 0.2 * losses[0]
    assert r.metrics["final_loss"] == pytest.approx(losses[-1])


def test_memorization_accuracy_on_a_hand_made_case():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, labels) == 0.5


def test_memorization_evaluate_uses_argmax_of_the_model():
    task = make_task({"name": "memorization", "seed": 0, "n_points": 10, "dim": 3, "num_classes": 4})

    class Oracle(torch.nn.Module):  # predicts the stored labels for the first 7 points only
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.zeros(len(x), 4, dtype=x.dtype)
            out[torch.arange(7), task.y[:7]] = 1.0
            out[torch.arange(7, 10), (task.y[7:] + 1) % 4] = 1.0
            return out

    assert task.evaluate(Oracle())["train_accuracy"] == pytest.approx(0.7)


def test_task_data_depends_only_on_task_seed():
    a = make_task({"name": "memorization", "seed": 5, "n_points": 20, "dim": 3, "num_classes": 4})
    b = make_task({"name": "memorization", "seed": 5, "n_points": 20, "dim": 3, "num_classes": 4})
    c = make_task({"name": "memorization", "seed": 6, "n_points": 20, "dim": 3, "num_classes": 4})
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)


def test_fitting_grids_and_default_target():
    x, fine = fitting_grids(11, 10)
    assert len(x) == 11 and x[0] == -1 and x[-1] == 1
    assert len(fine) == 100 and torch.allclose(fine[:2], torch.tensor([-0.99, -0.97], dtype=torch.float64))
    t = torch.tensor([0.125], dtype=torch.float64)
    want = (
        math.sin(2 * math.pi * 0.125)
        + 0.5 * math.sin(8 * math.pi * 0.125)
        + 0.25 * math.sin(16 * math.pi * 0.125)
    )
    assert multi_sine(t).item() == pytest.approx(want)


def test_piecewise_linear_target_through_the_blog_points():
    xs = torch.tensor([-1.0, -0.75, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    assert piecewise_linear(xs).tolist() == pytest.approx([-1, 0, 1, -1, -0.5, 0])


def test_loss_jumps_counts_relative_rises():
    assert loss_jumps([1.0, 0.9, 1.8, 1.7, 1.71, 3.42]) == (2, pytest.approx(1.0 + 1.0))
    assert loss_jumps([3.0, 2.0, 1.0]) == (0, 0.0)


def test_minibatch_and_cosine_schedule():
    r = train(tiny("train.batch_size=16", "train.schedule=cosine", "train.lr=0.01"))
    lrs = [lr for _, _, lr in r.curve]
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] < 0.001
    assert r.metrics["status"] == "ok"
