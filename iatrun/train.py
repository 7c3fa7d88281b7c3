"""One training run: config → task data + model → Adam → metrics and a run folder (SPEC §4–§5)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from iatrun.errors import IatrunError
from iatrun.nn.models import MODELS, build_model
from iatrun.tasks import TaskData, make_task

# A step whose loss rises by more than this fraction over the previous step counts as a jump.
JUMP_THRESHOLD = 0.01

DTYPES = {"float32": torch.float32, "float64": torch.float64}
SCHEDULES = ("constant", "cosine")


@dataclass
class Result:
    """What a training run produces, before anything is written to disk."""

    metrics: dict[str, Any]
    curve: list[tuple[int, float, float]]  # (step, loss, lr)
    model: torch.nn.Module
    task: TaskData
    config: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """auto → cuda when present, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise IatrunError(f"unknown device {name!r} (known: auto, cpu, cuda)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise IatrunError(f"device {name!r} requested but no CUDA device is available")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise IatrunError(f"unknown dtype {name!r} (known: {', '.join(DTYPES)})") from None


def model_from_config(cfg: Mapping[str, Any], *, d: int, o: int) -> torch.nn.Module:
    """Build the network described by ``cfg['model']`` with ``cfg['seed']``."""
    m = dict(cfg["model"])
    kind = MODELS.check(m.pop("kind"))
    width, depth = m.pop("width"), m.pop("depth")
    return build_model(kind, d, width, depth, o, seed=int(cfg.get("seed", 0)), **m)


def loss_jumps(losses: list[float], threshold: float = JUMP_THRESHOLD) -> tuple[int, float]:
    """Number of upward jumps (relative rise > threshold) and their summed relative size (claim 8)."""
    count, total = 0, 0.0
    for prev, cur in zip(losses[:-1], losses[1:]):
        if prev > 0 and math.isfinite(cur):
            rise = (cur - prev) / prev
            if rise > threshold:
                count += 1
                total += rise
    return count, total


def _check_train(t: Mapping[str, Any]) -> None:
    steps = t.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise IatrunError(f"train.steps must be an integer >= 1, got {steps!r}")
    lr = t.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise IatrunError(f"train.lr must be a positive number, got {lr!r}")
    bs = t.get("batch_size")
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
        raise IatrunError(f"train.batch_size must be null (full batch) or an integer >= 1, got {bs!r}")
    if t.get("schedule", "constant") not in SCHEDULES:
        raise IatrunError(f"unknown train.schedule {t.get('schedule')!r} (known: {', '.join(SCHEDULES)})")
    if t.get("optimizer", "adam") != "adam":
        raise IatrunError(f"unknown train.optimizer {t.get('optimizer')!r} (known: adam)")
    every = t.get("log_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise IatrunError(f"train.log_every must be an integer >= 1, got {every!r}")


def prepare(cfg: Mapping[str, Any]) -> tuple[TaskData, torch.nn.Module, torch.device, torch.dtype]:
    """Validate the config and build task data and model; raises IatrunError before any work."""
    _check_train(cfg["train"])
    device, dtype = resolve_device(str(cfg.get("device", "auto"))), resolve_dtype(str(cfg.get("dtype")))
    task = make_task(cfg["task"])
    model = model_from_config(cfg, d=task.d, o=task.o)
    return task, model.to(device=device, dtype=dtype), device, dtype


def train(
    cfg: Mapping[str, Any],
    on_step: Callable[[int, float], None] | None = None,
    prepared: tuple | None = None,
) -> Result:
    """Train the configured model on the configured task; no file is written.

    ``on_step(step, loss)`` is called after every step (for progress bars). A loss that turns
    NaN or Inf stops the run with ``status = "diverged"`` and the step it happened at.
    """
    task, model, device, dtype = prepared or prepare(cfg)
    t = cfg["train"]
    steps, every = int(t["steps"]), int(t.get("log_every", 1))
    x = task.x.to(device=device, dtype=dtype)
    y = task.y.to(device=device, dtype=dtype if task.y.is_floating_point() else task.y.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=float(t["lr"]))
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if t.get("schedule", "constant") == "cosine"
        else None
    )
    bs = t.get("batch_size")
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    order, pos = None, 0

    curve: list[tuple[int, float, float]] = []
    losses: list[float] = []
    status, diverged_step = "ok", None
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if bs is None or bs >= len(x):
            xb, yb = x, y
        else:  # mini-batches from a seeded permutation, reshuffled every epoch
            if order is None or pos + bs > len(x):
                order, pos = torch.randperm(len(x), generator=gen).to(device), 0
            idx = order[pos : pos + bs]
            xb, yb, pos = x[idx], y[idx], pos + bs
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(xb), yb)
        value = loss.item()
        if not math.isfinite(value):
            status, diverged_step = "diverged", step
            curve.append((step, value, lr))
            break
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(value)
        if step % every == 0 or step == 1 or step == steps:
            curve.append((step, value, lr))
        if on_step is not None:
            on_step(step, value)
    wall = time.perf_counter() - start
    model.eval()

    done = len(losses)
    jumps, jump_total = loss_jumps(losses)
    metrics: dict[str, Any] = {"status": status, "diverged_step": diverged_step, "steps_done": done}
    if status == "ok":
        metrics.update(task.evaluate(model))
    metrics.update(
        final_loss=losses[-1] if losses else float("nan"),
        wall_time_s=wall,
        steps_per_s=done / wall if wall > 0 else float("nan"),
        num_params=sum(p.numel() for p in model.parameters()),
        loss_jumps=jumps,
        loss_jump_total=jump_total,
    )
    return Result(metrics=metrics, curve=curve, model=model, task=task, config=dict(cfg))


def save_run(result: Result, folder: Path, cfg_yaml: str, title: str = "") -> None:
    """Write a run folder's files, each atomically (see iatrun.results); ``title`` heads the loss plot."""
    from iatrun import plots
    from iatrun.results import atomic_path, write_json, write_text

    folder = Path(folder)
    write_text(folder / "config.yaml", cfg_yaml)
    lines = ["step,loss,lr"] + [f"{s},{loss!r},{lr!r}" for s, loss, lr in result.curve]
    write_text(folder / "curve.csv", "\n".join(lines) + "\n")
    with atomic_path(folder / "model.pt") as tmp:
        torch.save(
            {
                "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
                "config": result.config,
                "dims": {"d": result.task.d, "o": result.task.o},
            },
            tmp,
        )
    plots.loss_plot(result.curve, folder / "loss.png", title=title)
    if result.task.name == "fitting" and result.metrics["status"] == "ok":
        plots.prediction_plot(result.model, result.task, folder / "prediction.png")
    write_json(folder / "metrics.json", result.metrics)  # last: its presence means complete


def run(cfg: Mapping[str, Any], on_step: Callable[[int, float], None] | None = None) -> tuple[Result, Path]:
    """Train and write a complete run folder; return the result and the folder.

    Everything is validated before the folder exists; files are staged under a hidden name and
    the folder appears, complete, in one rename. ``cfg['out']`` (or a fresh folder under
    ``<results_dir>/runs``) is where it goes.
    """
    from iatrun.config import to_yaml
    from iatrun.results import check_out_dir, new_run_dir, staged_dir

    prepared = prepare(cfg)
    folder = check_out_dir(Path(cfg["out"]) if cfg.get("out") else new_run_dir(cfg))
    result = train(cfg, on_step=on_step, prepared=prepared)
    with staged_dir(folder) as stage:
        save_run(result, stage, to_yaml(dict(cfg)), title=folder.name)
    return result, folder
