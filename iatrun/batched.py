"""The batched sweep engine: cells that share shapes and budget trained as one stacked network.

A *stack* is C cells whose networks have the same shapes (SPEC §4: d, n, L, o) and whose training
is the same apart from the activation and the seed: same task and data, width, depth, steps,
optimiser settings, dtype and device. Their weights are stacked with a leading cell dimension,
``W_l`` (C, out, in), and every affine layer is one batched product ``baddbmm``. Each cell keeps
its own activation: IAT cells (method ``mesh``, any σ) carry their own Φᵀ (c, n, M) and Ψ·2/M
(c, M, n) (SPEC §1), element-wise relu / tanh / sigmoid cells apply their function to their own
slice. Cells are ordered so that each activation is one contiguous *segment* of the stack; IAT
segments with different mesh ratios may share a stack, since each segment has its own M.

The loss is the sum of the cells' losses. A cell's parameters reach only its own loss, so the
gradient a cell receives is the one it would get alone, and Adam, being element-wise, moves it
exactly as alone: a stacked cell reproduces :func:`iatrun.train.train` step for step (the same
full-batch / mini-batch order, cosine schedule, ``log_every`` curve, divergence rule and metrics),
up to the rounding of ``bmm`` against ``mm`` (the tests hold it to 1e-9 relative in float64).

* **Divergence.** A cell whose loss turns NaN or Inf is recorded as :func:`train.train` would
  record it (curve point, ``diverged_step``, no evaluation) and masked out: its loss leaves the
  sum, its gradients are zeroed, and because Adam moves a parameter even with a zero gradient,
  its parameters are restored after every step to their values at the step it diverged.
* **Seeds and mini-batches.** ``train.train`` draws the mini-batch order from the cell's seed.
  Only cells whose order is identical share a stack: with ``train.batch_size`` set, the seed is
  part of the stack signature (full-batch cells of any seeds share a stack).
* **Initial weights** are copied from a per-cell :func:`iatrun.nn.models.build_model`, so they equal
  the serial engine's bit for bit; after training each cell is copied back into that network,
  evaluated with ``task.evaluate`` and its folder written by :func:`iatrun.sweep.finish_cell`,
  exactly as the serial engine writes it (resume, tables and reports cannot tell the engines
  apart).
* **Wall time.** A stacked cell's ``wall_time_s`` is the stack's training wall time divided by
  the number of cells in the stack (and ``steps_per_s`` follows from it).
* **Fallback.** Cells whose model is not ``iat`` (mesh) or element-wise, or whose ``model.norm``
  is not ``none``, run with the serial engine, as does a stack that raises (cell by cell, so a
  crash is recorded exactly as the serial engine records it).
* **Chunking.** A stack holds at most ``stack_size`` cells; by default as many as keep its
  (C, B, M) activations (B the batch, M the widest mesh, times depth) under ``STACK_BYTES``.
* **Jobs.** With ``--jobs J`` stacks run inside the J worker processes: each group is cut into
  at least J stacks of near-equal size, so every worker gets a share of every group. A
  ``--launcher`` runs one cell per job, so ``--engine batched`` refuses it and ``auto`` there is
  the serial engine.

**The ``auto`` rule**: on a GPU, stack every stackable group of at least 2 cells (not measured
here: kernels of these sizes are launch-bound); on the CPU, stack such a group only while a
cell's batch rows times its widest mesh, B·M, is below ``AUTO_CPU_BM`` = 65 536; everything else
runs with the serial engine. Measured on a 2-core CPU (one thread; the cores shared with another
long job, so figures are medians of noisy runs), time of one training step of a stack against
the same cells stepped one by one:

* quick grid (``iatrun sweep --grid quick``): fitting, 39 cells, B·M = 12 800: 7–9 ms against
  29–30 ms (3.5× faster); memorization, 39 cells, B·M = 16 384: 14–16 ms against 37–42 ms (2.7×).
* 16 IAT cells: B·M = 25 600: 0.56–0.81 of the serial time; 51 200: 0.60–0.69; 64 000:
  0.68–0.80; 65 536 (memorization, width 64): 0.90–1.09; 128 000: 0.99–1.21.
* the paper budget (fitting B·M = 512 000, memorization 896 000): 1.2× and 1.7× *slower*, as
  ``bmm`` runs large shapes less efficiently than ``mm``.

Whole quick grid, end to end (``iatrun bench`` sweep rows, three runs on the idle 2 cores): serial
186–226 cells/min; ``--jobs 2`` 1.06–1.35×; batched 1.13–1.32×; batched ``--jobs 2`` 1.22–1.44×.
Training is a small part of a quick cell's time: the figures every cell folder holds
(``loss.png`` about 75 ms, ``prediction.png`` about 115 ms for a fitting cell) and the sweep's
fixed costs (start-up, composing the 78 configs, the report and its figures: about 10 s) are
most of the rest, and no engine batches those.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iatrun.errors import IatrunError
from iatrun.nn.iat import IAT
from iatrun.nn.models import MLP, MODELS, Elementwise
from iatrun.tasks import TaskData, make_task
from iatrun.train import Result, loss_jumps, model_from_config, prepare

STACK_BYTES = 2**30  # default cap on a stack's (C, B, M) activations, all layers together
MIN_STACK = 2  # stacks have at least this many cells (a stack of one is the serial engine)
AUTO_CPU_BM = 65536  # auto stacks CPU groups whose batch rows x mesh size B·M is below this


# --- which cells stack -------------------------------------------------------------------------


def stack_signature(cfg: Mapping[str, Any]) -> str | None:
    """What cells must share to be stacked, as a string; None if the cell cannot be stacked."""
    m = cfg["model"]
    kind = m.get("kind")
    if kind not in MODELS or m.get("norm", "none") != "none":
        return None
    entry = MODELS.entry(kind)
    if entry.props.get("network", MLP) is not MLP:
        return None
    if not (entry.props.get("elementwise") or (kind == "iat" and m.get("method", "mesh") == "mesh")):
        return None
    keep = {k: v for k, v in cfg.items() if k not in ("model", "seed", "out", "results_dir")}
    keep["shape"] = [m.get("width"), m.get("depth")]
    if cfg["train"].get("batch_size") is not None:  # the mini-batch order comes from the seed
        keep["seed"] = cfg.get("seed", 0)
    return json.dumps(keep, sort_keys=True, default=str)


def _sizes(cfgs: Sequence[Mapping[str, Any]]) -> tuple[int, int, int, int]:
    """(B, M, depth, itemsize) of a group: batch rows, widest mesh (n for element-wise), layers."""
    cfg = cfgs[0]
    n, depth = int(cfg["model"]["width"]), int(cfg["model"]["depth"])
    m = max(n * int(c["model"].get("mesh_ratio", 1)) if c["model"]["kind"] == "iat" else n for c in cfgs)
    points = len(make_task(cfg["task"]).x)
    bs = cfg["train"].get("batch_size")
    batch = min(points, bs) if bs else points
    return batch, m, depth, 8 if cfg.get("dtype") == "float64" else 4


def default_stack_size(cfgs: Sequence[Mapping[str, Any]]) -> int:
    """Most cells whose (C, B, M) activations over all layers stay under ``STACK_BYTES``."""
    batch, m, depth, itemsize = _sizes(cfgs)
    return max(1, STACK_BYTES // (batch * m * depth * itemsize))


def auto_stacks(cfgs: Sequence[Mapping[str, Any]]) -> bool:
    """The ``auto`` rule: stack a group on a GPU, and on the CPU while B·M < ``AUTO_CPU_BM``."""
    from iatrun.train import resolve_device

    if resolve_device(str(cfgs[0].get("device", "auto"))).type != "cpu":
        return True
    batch, m, _, _ = _sizes(cfgs)
    return batch * m < AUTO_CPU_BM


def plan(cells: Sequence, engine: str = "auto", jobs: int = 1, stack_size: int | None = None) -> list[list]:
    """Cut ``cells`` into work items: stacks (lists of ≥ 2 cells) and single cells (serial engine).

    Cells are grouped by :func:`stack_signature`; a group is cut into near-equal stacks of at
    most ``stack_size`` cells (default :func:`default_stack_size`), and into at least ``jobs``
    stacks so every worker gets a share. ``batched`` stacks every group of at least
    ``MIN_STACK`` cells; ``auto`` only those :func:`auto_stacks` allows (the module docstring
    gives the measurements).
    """
    if engine not in ("auto", "batched"):
        raise IatrunError(f"plan() is for the batched engines, got engine {engine!r}")
    if stack_size is not None and (isinstance(stack_size, bool) or stack_size < 1):
        raise IatrunError(f"--stack-size must be an integer >= 1, got {stack_size!r}")
    groups: dict[str, list] = {}
    items: list[list] = []
    for cell in cells:
        sig = stack_signature(cell.config)
        if sig is None:
            items.append([cell])
        else:
            groups.setdefault(sig, []).append(cell)
    for group in groups.values():
        cfgs = [c.config for c in group]
        if len(group) < MIN_STACK or (engine == "auto" and not auto_stacks(cfgs)):
            items += [[c] for c in group]
            continue
        cap = stack_size or default_stack_size(cfgs)
        count = max(math.ceil(len(group) / cap), min(jobs, len(group) // MIN_STACK), 1)
        size, extra = divmod(len(group), count)
        start = 0
        for i in range(count):
            stop = start + size + (i < extra)
            items.append(group[start:stop])
            start = stop
    return items


# --- the stacked network -----------------------------------------------------------------------


class _BatchedIATReLU(torch.autograd.Function):
    """:class:`iatrun.nn.iat._IATReLU` for a stack: saves the bool pattern (c, B, M), not floats."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, phi_t: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        z = torch.bmm(x, phi_t).clamp_(min=0)  # (c, B, M) relu of the state on each cell's mesh
        mask = z.bool()  # (c, B, M) activation pattern, as in _IATReLU
        y = torch.bmm(z, psi)  # (c, B, n); psi carries the 2/M weight (SPEC §1)
        ctx.save_for_backward(mask, phi_t, psi)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        mask, phi_t, psi = ctx.saved_tensors
        grad_z = torch.bmm(grad_y, psi.transpose(1, 2)).mul_(mask.view(torch.uint8))  # (c, B, M)
        return torch.bmm(grad_z, phi_t.transpose(1, 2)), None, None


class StackedIAT(nn.Module):
    """The mesh IATs of c cells with one σ and one M: T(x) = σ(x Φᵀ) Ψ·2/M per cell (SPEC §1)."""

    def __init__(self, iats: Sequence[IAT]):
        super().__init__()
        self.sigma = iats[0].sigma
        self.register_buffer("phi_t", torch.stack([a.phi_t for a in iats]))  # (c, n, M)
        self.register_buffer("psi", torch.stack([a.psi for a in iats]))  # (c, M, n)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (c, B, n) -> (c, B, n)
        if self.sigma == "relu":
            return _BatchedIATReLU.apply(h, self.phi_t, self.psi)
        from iatrun.nn.activations import get_activation

        return torch.bmm(get_activation(self.sigma).fn(torch.bmm(h, self.phi_t)), self.psi)


def _segment_key(act: nn.Module) -> tuple:
    if isinstance(act, IAT) and act.method == "mesh":
        return ("iat", act.sigma, act.m)
    if isinstance(act, Elementwise):
        return ("elementwise", act.name)
    raise IatrunError(f"the batched engine cannot stack activation {type(act).__name__}")


class StackedMLP(nn.Module):
    """C networks of SPEC §4 of one shape as one module: weights[l] (C, out, in), biases[l] (C, out).

    ``models`` must be ordered so that cells with the same activation are adjacent (see
    :func:`stack_order`); the layers of each cell are identical, so layer 0's activation is the
    cell's activation.
    """

    def __init__(self, models: Sequence[MLP]):
        super().__init__()
        depth = models[0].depth
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m.linears[i].weight.detach() for m in models]).clone())
            for i in range(depth + 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([m.linears[i].bias.detach() for m in models]).clone())
            for i in range(depth + 1)
        )
        self.bounds: list[tuple[int, int]] = []  # [start, stop) of each activation segment
        acts = []
        start = 0
        keys = [_segment_key(m.acts[0]) for m in models]
        while start < len(models):
            stop = start
            while stop < len(models) and keys[stop] == keys[start]:
                stop += 1
            if keys[start][0] == "iat":
                acts.append(StackedIAT([m.acts[0] for m in models[start:stop]]))
            else:
                acts.append(Elementwise(keys[start][1]))
            self.bounds.append((start, stop))
            start = stop
        self.acts = nn.ModuleList(acts)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """Each segment's activation on its slice of h (C, B, n)."""
        if len(self.acts) == 1:
            return self.acts[0](h)
        return torch.cat([act(h[a:b]) for act, (a, b) in zip(self.acts, self.bounds)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, d), shared by every cell -> outputs (C, B, o)."""
        w, b = self.weights, self.biases
        C, n, d = w[0].shape
        # Layer 1 as one product for every cell: (B, d) @ (d, C·n) -> (B, C, n) -> (C, B, n).
        h = (x @ w[0].reshape(C * n, d).T).view(len(x), C, n).transpose(0, 1) + b[0].unsqueeze(1)
        for i in range(1, len(w)):
            h = torch.baddbmm(b[i].unsqueeze(1), self.activation(h), w[i].transpose(1, 2))
        return h

    @torch.no_grad()
    def unstack(self, c: int, model: MLP) -> MLP:
        """Copy cell ``c``'s weights into ``model`` (a network of the same shape) and return it."""
        for i, lin in enumerate(model.linears):
            lin.weight.copy_(self.weights[i][c])
            lin.bias.copy_(self.biases[i][c])
        return model


def stack_order(models: Sequence[MLP]) -> list[int]:
    """Indices of ``models`` with equal activations adjacent (a stable sort by activation)."""
    keys = [_segment_key(m.acts[0]) for m in models]
    return sorted(range(len(models)), key=lambda i: json.dumps(keys[i]))


# --- training ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """A stack ready to train: shared task data, per-cell networks and the stacked network."""

    task: TaskData
    models: list[MLP]  # per cell, in stack order; they receive the trained weights
    order: list[int]  # stack position -> index into the configs given to prepare_stack
    model: StackedMLP
    device: torch.device
    dtype: torch.dtype


def prepare_stack(cfgs: Sequence[Mapping[str, Any]]) -> Stack:
    """Validate the cells' configs, build each cell's network as the serial engine would, stack them."""
    if not cfgs:
        raise IatrunError("an empty stack")
    sigs = {stack_signature(c) for c in cfgs}
    if None in sigs or len(sigs) != 1:
        raise IatrunError("these cells cannot share a stack (different shapes, budget or model kind)")
    task, first, device, dtype = prepare(cfgs[0])
    models = [first] + [
        model_from_config(c, d=task.d, o=task.o).to(device=device, dtype=dtype) for c in cfgs[1:]
    ]
    order = stack_order(models)
    models = [models[i] for i in order]
    return Stack(task, models, order, StackedMLP(models).to(device=device, dtype=dtype), device, dtype)


def _stacked_loss(task: TaskData) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-cell losses (C,) of outputs (C, B, o) against the shared targets: the task loss, vmapped."""
    return torch.func.vmap(task.loss, in_dims=(0, None))


def train_stack(
    cfgs: Sequence[Mapping[str, Any]],
    prepared: Stack | None = None,
    on_step: Callable[[int, list[float]], None] | None = None,
) -> list[Result]:
    """Train a stack of cells; one :class:`iatrun.train.Result` per config, in the given order.

    Reproduces :func:`iatrun.train.train` for every cell (see the module docstring). ``on_step
    (step, losses)`` is called after every step with the losses in stack order.
    """
    st = prepared or prepare_stack(cfgs)
    cfg0, task, net = cfgs[st.order[0]], st.task, st.model
    t = cfg0["train"]
    steps, every = int(t["steps"]), int(t.get("log_every", 1))
    x = task.x.to(device=st.device, dtype=st.dtype)  # (N, d), shared by every cell
    y = task.y.to(device=st.device, dtype=st.dtype if task.y.is_floating_point() else task.y.dtype)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=float(t["lr"]))
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        if t.get("schedule", "constant") == "cosine"
        else None
    )
    bs = t.get("batch_size")
    gen = torch.Generator().manual_seed(int(cfg0.get("seed", 0)))  # one order: see stack_signature
    order, pos = None, 0
    loss_fn = _stacked_loss(task)

    C = len(st.models)
    curves: list[list[tuple[int, float, float]]] = [[] for _ in range(C)]
    losses: list[list[float]] = [[] for _ in range(C)]
    diverged: list[int | None] = [None] * C
    frozen = [p.detach().clone() for p in params]  # rows of diverged cells hold their last values
    dead = torch.zeros(C, dtype=torch.bool, device=st.device)
    net.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if bs is None or bs >= len(x):
            xb, yb = x, y
        else:  # mini-batches from a seeded permutation, reshuffled every epoch (as train.train)
            if order is None or pos + bs > len(x):
                order, pos = torch.randperm(len(x), generator=gen).to(st.device), 0
            idx = order[pos : pos + bs]
            xb, yb, pos = x[idx], y[idx], pos + bs
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        per_cell = loss_fn(net(xb), yb)  # (C,)
        values = per_cell.tolist()
        for c, value in enumerate(values):
            if diverged[c] is None and not math.isfinite(value):
                diverged[c] = step
                curves[c].append((step, value, lr))
                dead[c] = True
                for p, keep in zip(params, frozen):
                    keep[c] = p.detach()[c]
        if bool(dead.all()):
            break
        # 1) the sum of the live cells' losses: each cell's gradient is its own loss's gradient
        torch.where(dead, torch.zeros_like(per_cell), per_cell).sum().backward()
        if bool(dead.any()):  # 2) a diverged cell's gradients (NaN or not) stay out of Adam
            for p in params:
                p.grad[dead] = 0
        opt.step()
        if bool(dead.any()):  # 3) Adam moves a parameter with zero gradient: put it back
            with torch.no_grad():
                for p, keep in zip(params, frozen):
                    p[dead] = keep[dead]
        if sched is not None:
            sched.step()
        for c, value in enumerate(values):
            if diverged[c] is None:
                losses[c].append(value)
                if step % every == 0 or step == 1 or step == steps:
                    curves[c].append((step, value, lr))
        if on_step is not None:
            on_step(step, values)
    wall = (time.perf_counter() - start) / C  # each cell's share of the stack's wall time
    net.eval()

    results: list[Result | None] = [None] * C
    for c, model in enumerate(st.models):
        net.unstack(c, model).eval()
        done, status = len(losses[c]), "ok" if diverged[c] is None else "diverged"
        jumps, jump_total = loss_jumps(losses[c])
        metrics: dict[str, Any] = {"status": status, "diverged_step": diverged[c], "steps_done": done}
        if status == "ok":
            metrics.update(task.evaluate(model))
        metrics.update(
            final_loss=losses[c][-1] if losses[c] else float("nan"),
            wall_time_s=wall,
            steps_per_s=done / wall if wall > 0 else float("nan"),
            num_params=sum(p.numel() for p in model.parameters()),
            loss_jumps=jumps,
            loss_jump_total=jump_total,
        )
        i = st.order[c]
        results[i] = Result(metrics=metrics, curve=curves[c], model=model, task=task, config=dict(cfgs[i]))
    return results  # type: ignore[return-value]


# --- running a stack in a sweep folder ---------------------------------------------------------


def run_stack(sweep_dir: str | Path, cells: Sequence, threads: int | None = None) -> list[dict]:
    """Claim, train and finish a stack of sweep cells; one row per cell, as :func:`sweep.run_cell`.

    Each cell's lock is tried without waiting: a cell another process holds comes back ``busy``
    (the caller waits for it as for any busy cell), a finished cell is skipped, and the rest are
    trained together. If only one is left, it runs with the serial engine.
    """
    from iatrun.sweep import cells as sw

    if threads:
        torch.set_num_threads(threads)
    sweep_dir = Path(sweep_dir)
    rows, mine, locks = [], [], []
    try:
        for cell in cells:
            lock = sw.claim(sweep_dir, cell)
            if lock is None:
                rows.append({"key": cell.key, "state": "busy"})
                continue
            locks.append(lock)
            state, detail = sw.cell_state(sweep_dir, cell)
            if state == "done":
                rows.append({"key": cell.key, "state": "done", "status": detail, "ran": False})
            else:
                mine.append(cell)
        if len(mine) == 1:
            rows.append(sw.execute_cell(sweep_dir, mine[0]))
        elif mine:
            rows += _train_and_finish(sweep_dir, mine)
    finally:
        for lock in locks:
            lock.release()
    return rows


def _train_and_finish(sweep_dir: Path, cells: Sequence) -> list[dict]:
    from iatrun.sweep import cells as sw

    cfgs = [sw.clear_cell(sweep_dir, c) for c in cells]
    start = time.time()
    try:
        results = train_stack(cfgs)
    except Exception:  # rerun cell by cell: a crash is then recorded as the serial engine records it
        return [sw.execute_cell(sweep_dir, c) for c in cells]
    share = (time.time() - start) / len(cells)
    return [sw.finish_cell(sweep_dir, c, r, share) for c, r in zip(cells, results)]
