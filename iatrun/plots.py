"""Figures written into run and sweep folders (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from iatrun.results import atomic_path  # noqa: E402


def save(fig, path: Path) -> None:
    """Save ``fig`` as a PNG atomically and close it."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def loss_plot(curve, path: Path, title: str = "") -> None:
    """Training loss against step, log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [s for s, loss, _ in curve if math.isfinite(loss) and loss > 0]
    losses = [loss for _, loss, _ in curve if math.isfinite(loss) and loss > 0]
    ax.plot(steps, losses, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    save(fig, path)


def prediction_plot(model, task, path: Path) -> None:
    """Target and model on the fine held-out grid, with the error below."""
    import torch

    x, y = task.extra["x_eval"], task.extra["y_eval"]
    p = next(model.parameters())
    with torch.no_grad():
        pred = model(x.to(p)[:, None])[:, 0].double().cpu()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=[2, 1])
    top.plot(x, y, lw=1.5, label=f"target ({task.extra['target']})")
    top.plot(x, pred, lw=1, ls="--", label="model")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(x, pred - y, lw=1, color="C3")
    bottom.set_ylabel("model − target")
    bottom.set_xlabel("x")
    bottom.grid(alpha=0.3)
    save(fig, path)
