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
  evaluated with ``task.evaluate`` and its folder written by :func:`iatrun.sweep.cells.finish_cell`,
  exactly as the serial engine writes it (resume, tables and reports cannot tell the engines
  apart).
* **Wall time.** A stacked cell's ``wall_time_s`` is the stack's training wall time divided by
  the number of cells in the stack (and ``steps_per_s`` follows from it).
* **Fallback.** Cells whose model is not ``iat`` (mesh) or element-wise, or whose ``model.norm``
  is not ``none`` or ``gain`` (a fixed factor per cell, applied after its activation), run with
  the serial engine, as does a stack that raises (cell by cell, so a crash is recorded exactly as
  the serial engine records it).

Which cells are stacked, how many per stack, and the ``auto`` rule with its measurements are the
sweep's business: :mod:`iatrun.sweep.run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from iatrun.errors import IatrunError
from iatrun.loop import Checkpoint, LossBlock, Record, Stopwatch, blocks, first_bad
from iatrun.nn.iat import IAT
from iatrun.nn.models import MLP, MODELS, Elementwise, model_from_config
from iatrun.tasks import TaskData
from iatrun.train import Result, batches, data, metrics, optimizer, prepare

# --- which cells stack -------------------------------------------------------------------------


def stack_signature(cfg: Mapping[str, Any]) -> str | None:
    """What cells must share to be stacked, as a string; None if the cell cannot be stacked."""
    m = cfg["model"]
    kind = m.get("kind")
    if kind not in MODELS or m.get("norm", "none") not in ("none", "gain"):
        return None
    entry = MODELS.entry(kind)
    if entry.props.get("network", MLP) is not MLP:
        return None
    if not (entry.props.get("elementwise") or (kind == "iat" and m.get("method", "mesh") == "mesh")):
        return None
    keep = {k: v for k, v in cfg.items() if k not in ("model", "seed", "out", "results_dir", "artifacts")}
    keep["shape"] = [m.get("width"), m.get("depth")]
    if cfg["train"].get("batch_size") is not None:  # the mini-batch order comes from the seed
        keep["seed"] = cfg.get("seed", 0)
    return json.dumps(keep, sort_keys=True, default=str)


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
        # norm "gain": each cell's fixed factor after its activation (1 for none), (C, 1, 1)
        factors = [getattr(m.norms[0], "factor", 1.0) for m in models]
        self.scaled = any(f != 1.0 for f in factors)
        self.register_buffer("factors", torch.tensor(factors, dtype=self.weights[0].dtype)[:, None, None])

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """Each segment's activation on its slice of h (C, B, n), times each cell's gain factor."""
        if len(self.acts) == 1:
            out = self.acts[0](h)
        else:
            # split, not h[a:b] per segment: each slice's backward would zero-fill a full-size gradient
            sizes = [b - a for a, b in self.bounds]
            out = torch.cat([act(part) for act, part in zip(self.acts, torch.split(h, sizes))])
        return out * self.factors if self.scaled else out

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

    Reproduces :func:`iatrun.train.train` for every cell (see the module docstring): the same
    optimiser, batches, curve rule and metrics (:mod:`iatrun.train`'s step pieces). ``on_step
    (step, losses)`` is called for every step, a block of steps at a time (:mod:`iatrun.loop`),
    with the losses in stack order.
    """
    st = prepared or prepare_stack(cfgs)
    cfg0, task, net = cfgs[st.order[0]], st.task, st.model
    t = cfg0["train"]
    steps = int(t["steps"])
    x, y = data(task, st.device, st.dtype)  # shared by every cell
    params = list(net.parameters())
    opt, sched = optimizer(params, t, st.device)
    rows = batches(cfg0, len(x), st.device)  # one order: see stack_signature
    loss_fn = _stacked_loss(task)

    C = len(st.models)
    frozen = [p.detach().clone() for p in params]  # rows of diverged cells hold their last values
    dead = torch.zeros(C, dtype=torch.bool, device=st.device)
    masking = False  # whether any cell is dead (known on the host: no read of ``dead``)

    def step(dying: Sequence[int] = ()) -> torch.Tensor:
        """One step of every cell; ``dying`` (known only in a replay) diverge at this step."""
        nonlocal masking
        idx = rows.next()
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        per_cell = loss_fn(net(xb), yb)  # (C,)
        if dying:
            with torch.no_grad():
                for c in dying:
                    dead[c] = True
                    for p, keep in zip(params, frozen):
                        keep[c] = p[c]
            masking = True
        _masked_step(per_cell, dead if masking else None, params, frozen, opt)
        if sched is not None:
            sched.step()
        return per_cell

    record = Record(C, steps, int(t.get("log_every", 1)))
    block = LossBlock(C, st.device)
    net.train()
    clock = Stopwatch(st.device)
    mark = Checkpoint.take(0, params, opt, sched, rows)
    for k, done in blocks(steps, block, opt, step):  # done: the block's losses, in one host read
        bad = first_bad(done, [d is not None for d in record.diverged])
        if any(b is not None for b in bad):  # replay the block with the divergences known
            mark.restore(params, opt, sched, rows)
            gone = {c for c, d in enumerate(record.diverged) if d is not None}
            for j in range(mark.step + 1, k + 1):
                dying = [c for c, b in enumerate(bad) if b == j]
                gone.update(dying)
                if len(gone) == C:
                    break  # every cell dead: the per-step loop stopped before this step's update
                step(dying)
        record.add(done, on_step)
        if record.all_dead:
            break
        if k < steps:
            mark = Checkpoint.take(k, params, opt, sched, rows)
    net.eval()
    return _results(st, cfgs, record, clock.seconds() / C)  # each cell's share of the wall time


def _results(st: Stack, cfgs: Sequence[Mapping[str, Any]], record: Record, wall: float) -> list[Result]:
    """Each cell's trained weights copied back into its own network, evaluated, in config order."""
    results: list[Result | None] = [None] * len(st.models)
    for c, model in enumerate(st.models):
        st.model.unstack(c, model).eval()
        i = st.order[c]
        cell_metrics = metrics(model, st.task, record.losses[c], record.diverged[c], wall)
        results[i] = Result(cell_metrics, record.curves[c], model, st.task, dict(cfgs[i]))
    return results  # type: ignore[return-value]


def _masked_step(per_cell: torch.Tensor, dead: torch.Tensor | None, params: list, frozen: list, opt) -> None:
    """One Adam step on the live cells only; diverged cells (``dead``, None: none) keep their
    parameters. No host read: the masks are applied with ``where`` and ``masked_fill_``."""
    if dead is None:
        per_cell.sum().backward()
        opt.step()
        return
    # 1) the sum of the live cells' losses: each cell's gradient is its own loss's gradient
    torch.where(dead, torch.zeros_like(per_cell), per_cell).sum().backward()
    for p in params:  # 2) a diverged cell's gradients (NaN or not) stay out of Adam
        p.grad.masked_fill_(dead.view(-1, *[1] * (p.dim() - 1)), 0)
    opt.step()
    with torch.no_grad():  # 3) Adam moves a parameter with zero gradient: put it back
        for p, keep in zip(params, frozen):
            p.copy_(torch.where(dead.view(-1, *[1] * (p.dim() - 1)), keep, p))
