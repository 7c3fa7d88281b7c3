"""One training run: config → task data + model → Adam → metrics (SPEC §4–§5).

:func:`train` writes nothing; :func:`run` trains and writes a run folder (:mod:`iatrun.results`).
The pieces of a training step (:func:`optimizer`, :class:`Batches`, :func:`iatrun.loop.logged`,
:func:`metrics`) are shared with the batched engine (:mod:`iatrun.batched`), so the two loops agree
by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from iatrun.checkpoint import Saver, checkpoint_path
from iatrun.errors import IatrunError
from iatrun.live import LiveLog, check_logger
from iatrun.loop import Checkpoint, LossBlock, Record, Stopwatch, blocks, first_bad
from iatrun.nn.models import model_from_config
from iatrun.schema import validate_train
from iatrun.tasks import TaskData, make_task, validation
from iatrun.tune import Score, objective, resolve

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
    tune: dict[str, Any] | None = None  # the learning-rate choice, when train.lr is auto (iatrun.tune)
    provenance: dict[str, Any] | None = None  # set where it trained, when another process writes it
    resumed_from: int | None = None  # the step a checkpoint held, when the run continued from one

    def tuned(self, cfg: Mapping[str, Any], record: Mapping[str, Any] | None) -> Result:
        """This result as the run of ``cfg`` (lr ``auto``) whose rate ``record`` chose: the metrics
        gain the chosen rate and whether it sits at an edge of the candidate grid."""
        if record is not None:
            self.metrics.update(
                lr_chosen=record["chosen"],
                lr_at_edge=bool(record["at_edge"]),
                lr_all_diverged=bool(record.get("all_diverged")),
            )
            self.config, self.tune = dict(cfg), dict(record)
        return self


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


def prepare(cfg: Mapping[str, Any]) -> tuple[TaskData, torch.nn.Module, torch.device, torch.dtype]:
    """Validate the config and build task data and model; raises IatrunError before any work."""
    validate_train(cfg["train"])
    device, dtype = resolve_device(str(cfg.get("device", "auto"))), resolve_dtype(str(cfg.get("dtype")))
    if device.type == "cuda":  # stated, not left to PyTorch's defaults: TF32 only when asked for
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.get("tf32", False))
    task = make_task(cfg["task"])
    model = model_from_config(cfg, d=task.d, o=task.o)
    return task, model.to(device=device, dtype=dtype), device, dtype


# --- the pieces of a training step, shared by the serial and the batched loop ----------------------


def optimizer(params: Iterable[torch.Tensor], t: Mapping[str, Any], device: torch.device | None = None):
    """Adam at ``train.lr`` (fused on CUDA) and, for ``schedule: cosine``, its cosine decay to 0 over
    the steps."""
    fused = device is not None and device.type == "cuda"
    opt = torch.optim.Adam(params, lr=float(t["lr"]), fused=fused or None)
    sched = None
    if t.get("schedule", "constant") == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(t["steps"]))
    return opt, sched


class Batches:
    """The rows of each step: all of them (full batch), or mini-batches of ``batch_size`` from a
    permutation drawn from ``seed`` and redrawn whenever the next batch would not fit (each epoch)."""

    def __init__(self, points: int, batch_size: int | None, seed: int, device: torch.device):
        self.points, self.size, self.device = points, batch_size, device
        self.full = batch_size is None or batch_size >= points
        self.gen = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> torch.Tensor | None:
        """The row indices of the next step, or None for the whole batch."""
        if self.full:
            return None
        if self.order is None or self.pos + self.size > self.points:
            self.order, self.pos = torch.randperm(self.points, generator=self.gen).to(self.device), 0
        idx = self.order[self.pos : self.pos + self.size]
        self.pos += self.size
        return idx

    def state(self) -> tuple:
        """Where the order stands, for :meth:`restore` (a replayed block draws the same batches)."""
        return self.gen.get_state(), self.order, self.pos

    def restore(self, state: tuple) -> None:
        gen, self.order, self.pos = state
        self.gen.set_state(gen)


def batches(cfg: Mapping[str, Any], points: int, device: torch.device) -> Batches:
    """The mini-batch order of a run: its ``train.batch_size`` and its seed."""
    return Batches(points, cfg["train"].get("batch_size"), int(cfg.get("seed", 0)), device)


def metrics(
    model: torch.nn.Module, task: TaskData, losses: list[float], diverged_step: int | None, wall: float
) -> dict[str, Any]:
    """The metrics of a finished run: status, the task's evaluation (when ok), loss and timing."""
    status = "ok" if diverged_step is None else "diverged"
    done = len(losses)
    jumps, jump_total = loss_jumps(losses)
    out: dict[str, Any] = {"status": status, "diverged_step": diverged_step, "steps_done": done}
    if status == "ok":
        out.update(task.evaluate(model))
    out.update(
        final_loss=losses[-1] if losses else float("nan"),
        wall_time_s=wall,
        steps_per_s=done / wall if wall > 0 else float("nan"),
        num_params=sum(p.numel() for p in model.parameters()),
        loss_jumps=jumps,
        loss_jump_total=jump_total,
    )
    return out


def data(task: TaskData, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's inputs and targets on ``device``; float targets in ``dtype``, labels as they are."""
    x = task.x.to(device=device, dtype=dtype)
    y = task.y.to(device=device, dtype=dtype if task.y.is_floating_point() else task.y.dtype)
    return x, y


# --- the serial loop -------------------------------------------------------------------------------


def train(
    cfg: Mapping[str, Any],
    on_step: Callable[[int, float], None] | None = None,
    prepared: tuple | None = None,
    checkpoint: str | Path | None = None,
    live: LiveLog | None = None,
) -> Result:
    """Train the configured model on the configured task; no file is written but the checkpoint.

    ``on_step(step, loss)`` is called for every step, a block of steps at a time (for progress
    bars). A loss that turns NaN or Inf stops the run with ``status = "diverged"`` and the step it
    happened at; the model keeps its weights from the step before. The step loop reads nothing
    back from the device between checks (:mod:`iatrun.loop`). With ``checkpoint`` (a file path,
    :mod:`iatrun.checkpoint`) the run saves its state there every few minutes and, if the file
    holds a state of this config, continues from it; the caller removes it once the run is kept.
    ``live`` (:class:`iatrun.live.LiveLog`) gets the curve every few seconds and the metrics at the end.
    """
    task, model, device, dtype = prepared or prepare(cfg)
    t = cfg["train"]
    steps = int(t["steps"])
    x, y = data(task, device, dtype)
    params = list(model.parameters())
    opt, sched = optimizer(params, t, device)
    rows = batches(cfg, len(x), device)

    def step() -> torch.Tensor:
        idx = rows.next()
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(xb), yb)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return loss

    record = Record(1, steps, int(t.get("log_every", 1)))
    saver = Saver(checkpoint, cfg) if checkpoint is not None else None
    start, spent = _resume(saver, model, opt, sched, rows, record)
    block = LossBlock(1, device)
    progress = None if on_step is None else (lambda k, values: on_step(k, values[0]))
    model.train()
    clock = Stopwatch(device)
    mark = Checkpoint.take(start, params, opt, sched, rows)
    for k, done in blocks(steps, block, opt, step, start=start + 1):  # done: one host read per block
        (bad,) = first_bad(done, [False])
        if bad is not None:  # replay the block up to the step before the divergence
            mark.restore(params, opt, sched, rows)
            for _ in range(mark.step + 1, bad):
                step()
        record.add(done, progress)
        if live is not None:
            live.update(record.curves[0])
        if bad is not None:
            break
        if k < steps:
            mark = Checkpoint.take(k, params, opt, sched, rows)
            if saver is not None and saver.due():
                saver.save(_state(mark, model, record, spent + clock.seconds()))
    wall = spent + clock.seconds()
    model.eval()
    m = metrics(model, task, record.losses[0], record.diverged[0], wall)
    if live is not None:
        live.finish(record.curves[0], m)
    return Result(m, record.curves[0], model, task, dict(cfg), resumed_from=start or None)


def _state(mark: Checkpoint, model: torch.nn.Module, record: Record, seconds: float) -> dict:
    """What a checkpoint holds: the block start ``mark`` (taken at the same step), the buffers, the
    host record and the training seconds so far."""
    buffers = {k: v for k, v in model.state_dict().items() if k not in dict(model.named_parameters())}
    return {
        "step": mark.step,
        "params": mark.params,
        "buffers": buffers,
        "optimizer": mark.optimizer,
        "scheduler": mark.scheduler,
        "batches": mark.batches,
        "record": (record.losses, record.curves, record.diverged),
        "seconds": seconds,
    }


def _resume(saver: Saver | None, model, opt, sched, rows: Batches, record: Record) -> tuple[int, float]:
    """Load a checkpoint of this run into the model, optimiser, scheduler, batch order and record:
    (the last step it took, the training seconds it had spent); (0, 0.0) when there is none."""
    state = saver.load() if saver is not None else None
    if state is None:
        return 0, 0.0
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    to_dev = [p.to(device) for p in state["params"]]
    order = state["batches"][1]
    mark = Checkpoint(
        state["step"],
        to_dev,
        state["optimizer"],
        state["scheduler"],
        (state["batches"][0], None if order is None else order.to(device), state["batches"][2]),
    )
    mark.restore(params, opt, sched, rows)
    model.load_state_dict({**model.state_dict(), **state["buffers"]})
    record.losses, record.curves, record.diverged = state["record"]
    return int(state["step"]), float(state["seconds"])


def trial(cfg: Mapping[str, Any]) -> Score:
    """One trial of the learning-rate tuner (:mod:`iatrun.tune`): train ``cfg``, write nothing, and
    score it (fitting: on its validation set)."""
    result = train(cfg)
    m = dict(result.metrics)
    if m.get("status") == "ok" and result.task.name == "fitting":
        m["validation_mse"] = validation(cfg["task"], result.model)
    return objective(result.task.name, m)


def plan(cfg: Mapping[str, Any]) -> tuple[tuple, Path]:
    """Every check :func:`run` makes before any work: the prepared task and model (:func:`prepare`)
    and the run folder it would write (``cfg['out']``, or a fresh one under ``<results_dir>/runs``),
    which is checked but not created."""
    from iatrun.files import check_new_dir
    from iatrun.results import new_run_dir
    from iatrun.schema import check_selection_seeds

    prepared = prepare(cfg)
    check_selection_seeds(cfg)
    check_logger(cfg)
    return prepared, check_new_dir(Path(cfg["out"]) if cfg.get("out") else new_run_dir(cfg))


def run(cfg: Mapping[str, Any], on_step: Callable[[int, float], None] | None = None) -> tuple[Result, Path]:
    """Train and write a complete run folder; return the result and the folder.

    Everything is validated before the folder exists; files are staged under a hidden name and
    the folder appears, complete, in one rename. ``cfg['out']`` (or a fresh folder under
    ``<results_dir>/runs``) is where it goes; with ``out`` given, a checkpoint beside it lets a
    rerun of a killed run continue where it was (:mod:`iatrun.checkpoint`).
    """
    from iatrun.files import staged_dir
    from iatrun.results import save_result

    prepared, folder = plan(cfg)  # every check before any work; the model does not depend on the rate
    chosen, record = resolve(cfg, trial)
    # a run into a named --out keeps a checkpoint beside it: a rerun after a kill continues
    ckpt = checkpoint_path(folder) if cfg.get("out") else None
    live = LiveLog.for_run(cfg, folder)
    result = train(chosen, on_step=on_step, prepared=prepared, checkpoint=ckpt, live=live).tuned(cfg, record)
    with staged_dir(folder) as stage:
        save_result(result, stage, title=folder.name)
    live.discard()
    if ckpt is not None:
        Saver(ckpt, chosen).remove()
    return result, folder
