"""The training loop's bookkeeping without host reads between checks: shared by both engines.

A step of :func:`iatrun.train.train` or :func:`iatrun.batched.train_stack` reads nothing back
from the device. Each step's loss (one per cell, shape (C,)) goes into a device buffer
(:class:`LossBlock`); every :data:`CHECK_EVERY` steps, and at the last step, the buffer is copied
to the host in one read, and only then is a divergence seen, the curve extended and the progress
callback run, step by step, from the host copy.

A loss that turns NaN or Inf at step s is therefore noticed at the end of its block, some steps
after it happened. To give the same results as a loop that checks every step, the loop keeps a
:class:`Checkpoint` of the start of each block (parameters, optimiser and scheduler state, the
mini-batch order) and, when a block holds a new divergence, restores it and replays the block with
the steps of divergence known, which is exactly what the per-step loop did. Divergence is rare, so
the replay is too; the cost of the common case is one parameter and optimiser-state copy per block.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

CHECK_EVERY = 25  # steps between two host reads of the losses


@dataclass
class Checkpoint:
    """The state a block starts from: enough to replay it step for step."""

    step: int  # the last step taken before the block
    params: list[torch.Tensor]
    optimizer: dict
    scheduler: dict | None
    batches: tuple

    @classmethod
    def take(cls, step: int, params: Sequence[torch.Tensor], opt, sched, rows) -> Checkpoint:
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
        return cls(step, saved, copy.deepcopy(opt.state_dict()), sched and sched.state_dict(), rows.state())

    def restore(self, params: Sequence[torch.Tensor], opt, sched, rows) -> None:
        with torch.no_grad():
            for p, saved in zip(params, self.params):
                p.copy_(saved)
        opt.load_state_dict(copy.deepcopy(self.optimizer))
        if sched is not None:
            sched.load_state_dict(self.scheduler)
        rows.restore(self.batches)


@dataclass
class LossBlock:
    """The per-step losses of C cells, kept on the device for up to :data:`CHECK_EVERY` steps."""

    cells: int
    device: torch.device
    every: int = CHECK_EVERY
    buffer: torch.Tensor | None = None
    steps: list[tuple[int, float]] = field(default_factory=list)  # (step, lr) of each buffered row

    def put(self, step: int, lr: float, losses: torch.Tensor) -> None:
        """Buffer one step's losses (C,) — a device copy, no host read."""
        if self.buffer is None:
            self.buffer = torch.empty((self.every, self.cells), dtype=losses.dtype, device=self.device)
        self.buffer[len(self.steps)].copy_(losses.detach().reshape(self.cells))
        self.steps.append((step, lr))

    @property
    def full(self) -> bool:
        return len(self.steps) == self.every

    def read(self) -> list[tuple[int, float, list[float]]]:
        """The buffered steps as (step, lr, losses), in one host read; the block is emptied."""
        rows = self.buffer[: len(self.steps)].tolist() if self.steps else []
        out = [(s, lr, row) for (s, lr), row in zip(self.steps, rows)]
        self.steps = []
        return out


def blocks(steps: int, block: LossBlock, opt, step: Callable[[], torch.Tensor], start: int = 1):
    """Take steps ``start`` … ``steps`` (``step()`` returns the step's losses), buffering each step's
    losses with the learning rate it ran at; yield ``(k, rows)`` after every full block and after
    the last step, ``rows`` being the block read back in one host read. The caller may stop early
    (``break``)."""
    for k in range(start, steps + 1):
        block.put(k, opt.param_groups[0]["lr"], step())
        if block.full or k == steps:
            yield k, block.read()


def first_bad(rows: Sequence[tuple[int, float, list[float]]], dead: Sequence[bool]) -> list[int | None]:
    """Per cell, the first step of ``rows`` whose loss is not finite, for cells not already ``dead``."""
    out: list[int | None] = [None] * len(dead)
    for step, _, values in rows:
        for c, value in enumerate(values):
            if not dead[c] and out[c] is None and not math.isfinite(value):
                out[c] = step
    return out


def logged(step: int, every: int, steps: int) -> bool:
    """Whether a step's loss goes into curve.csv: the first, every ``every``-th, and the last."""
    return step % every == 0 or step == 1 or step == steps


@dataclass
class Record:
    """What the loop keeps per cell on the host: losses, curve and the step it diverged at."""

    cells: int
    steps: int
    log_every: int
    losses: list[list[float]] = field(init=False)
    curves: list[list[tuple[int, float, float]]] = field(init=False)
    diverged: list[int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.losses = [[] for _ in range(self.cells)]
        self.curves = [[] for _ in range(self.cells)]
        self.diverged = [None] * self.cells

    @property
    def all_dead(self) -> bool:
        return all(d is not None for d in self.diverged)

    def add(self, rows, on_step: Callable[[int, list[float]], None] | None) -> None:
        """Record a block's rows as a per-step loop would have: a cell's first non-finite loss
        marks its divergence (a curve point, no loss), later rows of a dead cell are ignored, and
        once every cell is dead nothing more is recorded and ``on_step`` is not called."""
        for step, lr, values in rows:
            for c, value in enumerate(values):
                if self.diverged[c] is not None:
                    continue
                if not math.isfinite(value):
                    self.diverged[c] = step
                    self.curves[c].append((step, value, lr))
                    continue
                self.losses[c].append(value)
                if logged(step, self.log_every, self.steps):
                    self.curves[c].append((step, value, lr))
            if self.all_dead:
                return
            if on_step is not None:
                on_step(step, values)


class Stopwatch:
    """Wall time of the training steps: the device is synchronised before the clock is read."""

    def __init__(self, device: torch.device):
        self.device = device
        self._sync()
        self.start = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds(self) -> float:
        self._sync()
        return time.perf_counter() - self.start
