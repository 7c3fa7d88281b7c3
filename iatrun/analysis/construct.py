"""The blog's construction (SPEC §7): N segments through N+1 points as one hidden layer of N relus.

``iatrun construct`` writes it as a run folder (through :func:`iatrun.results.save_built`) that
``iatrun regions`` and :func:`iatrun.load_run` accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iatrun.files import check_new_dir, staged_dir, stamp, unique_dir
from iatrun.results import save_built


def construct_parameters(points) -> dict[str, Any]:
    """One hidden layer of N relus for N segments (SPEC §7, the blog post).

    relu_k(x) = relu(x − x_{k−1}) (weight 1, bias −x_{k−1}); the output weights are the successive
    slope changes m_1, m_2 − m_1, ..., and the output bias is f(x_0).
    """
    from iatrun.tasks import parse_points

    p = parse_points(points).numpy()  # (N+1, 2), strictly increasing x
    x, y = p[:, 0], p[:, 1]
    slopes = np.diff(y) / np.diff(x)  # (N,) m_k of segment k
    changes = np.diff(slopes, prepend=0.0)  # (N,) m_1, m_2 − m_1, ...
    return {
        "hidden_bias": [float(-v) + 0.0 for v in x[:-1]],  # + 0.0 turns -0.0 into 0.0
        "hidden_weight": [1.0] * (len(x) - 1),
        "output_weight": [float(v) + 0.0 for v in changes],
        "output_bias": float(y[0]) + 0.0,
    }


def construct_config(points) -> dict[str, Any]:
    """The run config of a constructed network: a relu model on the piecewise_linear fitting task."""
    from iatrun.tasks import parse_points

    pts = parse_points(points).tolist()
    return {
        "model": {"kind": "relu", "width": len(pts) - 1, "depth": 1, "norm": "none"},
        "task": {
            "name": "fitting",
            "seed": 0,
            "target": "piecewise_linear",
            "n_train": 1000,
            "holdout_factor": 10,
            "piecewise_linear": {"points": pts},
        },
        "seed": 0,
        "device": "cpu",
        "dtype": "float64",
        "method": "construct",  # not trained: weights set by hand (iatrun construct)
    }


def construct_model(points):
    """The constructed network as a float64 relu MLP of width N and depth 1."""
    import torch

    from iatrun.nn.models import build_model

    params = construct_parameters(points)
    n = len(params["hidden_bias"])
    model = build_model("relu", 1, n, 1, 1, seed=0).double()
    with torch.no_grad():
        model.linears[0].weight.copy_(torch.tensor(params["hidden_weight"], dtype=torch.float64)[:, None])
        model.linears[0].bias.copy_(torch.tensor(params["hidden_bias"], dtype=torch.float64))
        model.linears[1].weight.copy_(torch.tensor(params["output_weight"], dtype=torch.float64)[None, :])
        model.linears[1].bias.fill_(params["output_bias"])
    return model.eval()


def default_construct_dir(n: int, results_dir: str | Path = "results") -> Path:
    """``<results_dir>/runs/<YYYYmmdd-HHMMSS>-construct-relu-N<n>`` (suffixed -2, -3, ... on a clash)."""
    return unique_dir(Path(results_dir) / "runs", f"{stamp()}-construct-relu-N{n}")


def save_construct(points, out: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Build the construction and write it as a complete run folder; return (parameters, folder).

    The folder holds config.yaml, model.pt, metrics.json (with the fitting-task errors of the
    construction) and appears complete in one rename (:func:`iatrun.files.staged_dir`).
    """
    from iatrun.tasks import make_task

    params = construct_parameters(points)
    cfg = construct_config(points)
    folder = check_new_dir(Path(out)) if out is not None else default_construct_dir(cfg["model"]["width"])
    cfg["out"] = str(folder)
    model = construct_model(points)
    task = make_task(cfg["task"])
    metrics = {"status": "ok", "method": "construct", "steps_done": 0, **task.evaluate(model)}
    metrics["num_params"] = sum(p.numel() for p in model.parameters())
    with staged_dir(folder) as stage:
        save_built(stage, cfg, model, metrics, {"d": 1, "o": 1})
    return params, folder
