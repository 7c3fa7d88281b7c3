"""Synthetic tasks (SPEC §5): data, loss and metrics. A task or target is one registered function."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from iatrun.errors import IatrunError
from iatrun.registry import Registry

TargetFn = Callable[..., torch.Tensor]
TARGETS: Registry[TargetFn] = Registry("target")


@dataclass
class TaskData:
    """Everything training and evaluation need; tensors are float64 on the CPU until moved."""

    name: str
    d: int  # input dimension
    o: int  # output dimension
    x: torch.Tensor  # (N, d) training inputs
    y: torch.Tensor  # (N, o) regression targets or (N,) class labels
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]  # final metrics of a trained model
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the held-out grid, for plots


TASKS: Registry[Callable[[Mapping[str, Any]], TaskData]] = Registry("task")


# --- targets for the fitting task -------------------------------------------------------------


@TARGETS.register("multi_sine")
def multi_sine(x: torch.Tensor, *, freqs=(1, 4, 8), amps=(1.0, 0.5, 0.25)) -> torch.Tensor:
    """Σ_k amps[k]·sin(2π freqs[k] x): sin(2πx) + 0.5 sin(8πx) + 0.25 sin(16πx) by default."""
    if len(freqs) != len(amps) or not freqs:
        raise IatrunError(f"multi_sine needs as many freqs as amps (>0), got {list(freqs)} and {list(amps)}")
    return sum(float(a) * torch.sin(2 * math.pi * float(f) * x) for f, a in zip(freqs, amps))


@TARGETS.register("chirp")
def chirp(x: torch.Tensor, *, f0: float = 1.0, f1: float = 12.0, amp: float = 1.0) -> torch.Tensor:
    """A linear chirp whose frequency sweeps from f0 to f1 across [-1, 1]."""
    u = (x + 1) / 2
    return amp * torch.sin(2 * math.pi * (f0 * u + (f1 - f0) * u**2 / 2))


def parse_points(points) -> torch.Tensor:
    """Validate a point list [[x, y], ...] (at least two, strictly increasing x): (K, 2) float64."""
    try:
        p = torch.tensor([[float(a), float(b)] for a, b in points], dtype=torch.float64)
    except (TypeError, ValueError):
        raise IatrunError(f"points must be a list of [x, y] pairs of numbers, got {points!r}") from None
    if len(p) < 2:
        raise IatrunError(f"need at least two points, got {len(p)}")
    if not torch.all(p[1:, 0] > p[:-1, 0]):
        raise IatrunError(f"point x values must be strictly increasing, got {p[:, 0].tolist()}")
    return p


@TARGETS.register("piecewise_linear")
def piecewise_linear(x: torch.Tensor, *, points=((-1, -1), (-0.5, 1), (0, -1), (1, 0))) -> torch.Tensor:
    """Linear interpolation through ``points`` (constant extension outside them)."""
    p = parse_points(points).to(x.dtype)
    xs, ys = p[:, 0], p[:, 1]
    k = torch.clamp(torch.searchsorted(xs.contiguous(), x.contiguous()) - 1, 0, len(xs) - 2)
    t = ((x - xs[k]) / (xs[k + 1] - xs[k])).clamp(0, 1)
    return ys[k] + t * (ys[k + 1] - ys[k])


def target_params(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Keyword arguments for target ``name`` from the task config section of the same name."""
    fn = TARGETS.get(name)
    allowed = [p for p in inspect.signature(fn).parameters if p != "x"]
    given = dict(cfg.get(name) or {})
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise IatrunError(
            f"target {name!r} takes no parameter {extra[0]!r} (its parameters: {', '.join(allowed)})"
        )
    return given


def _positive(cfg: Mapping[str, Any], key: str) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise IatrunError(f"task.{key} must be an integer >= 1, got {v!r}")
    return v


# --- tasks -----------------------------------------------------------------------------------


def fitting_grids(n_train: int, holdout_factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training grid (n_train points, ends included) and the finer held-out midpoint grid."""
    x = torch.linspace(-1, 1, n_train, dtype=torch.float64)
    fine = torch.linspace(-1, 1, (n_train - 1) * holdout_factor + 1, dtype=torch.float64)
    return x, (fine[1:] + fine[:-1]) / 2


def validation_points(n_train: int, holdout_factor: int) -> torch.Tensor:
    """Fitting's validation inputs, for choosing a learning rate: one per training interval, a
    quarter of a held-out spacing off the held-out grid's lattice, cycling through the positions
    inside the interval. Training points sit at offset 0 and held-out points at offset 1/2 of that
    spacing, so the three sets are disjoint."""
    h = 2.0 / ((n_train - 1) * holdout_factor)
    x = torch.linspace(-1, 1, n_train, dtype=torch.float64)[:-1]
    j = torch.arange(n_train - 1, dtype=torch.float64) % holdout_factor
    return x + h * (j + 0.25)


def validation(cfg: Mapping[str, Any], model: torch.nn.Module) -> float:
    """The fitting task's validation MSE of ``model`` (see :func:`validation_points`)."""
    name = TARGETS.check(cfg.get("target", "multi_sine"))
    x = validation_points(_positive(cfg, "n_train"), _positive(cfg, "holdout_factor"))
    y = TARGETS.get(name)(x, **target_params(cfg, name))
    p = next(model.parameters())
    with torch.no_grad():
        pred = model(x.to(p)[:, None])[:, 0].double().cpu()
    return float(torch.mean((pred - y) ** 2))


@TASKS.register("fitting")
def fitting(cfg: Mapping[str, Any]) -> TaskData:
    """1-D regression of a target on [-1, 1]; MSE loss; train/held-out MSE and max abs error."""
    name = TARGETS.check(cfg.get("target", "multi_sine"))
    n_train, factor = _positive(cfg, "n_train"), _positive(cfg, "holdout_factor")
    if n_train < 2:
        raise IatrunError(f"task.n_train must be >= 2, got {n_train}")
    params = target_params(cfg, name)
    f = TARGETS.get(name)
    x, x_eval = fitting_grids(n_train, factor)
    y, y_eval = f(x, **params), f(x_eval, **params)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        p = next(model.parameters())
        with torch.no_grad():
            pred = model(x.to(p)[:, None])[:, 0].double().cpu()
            pred_eval = model(x_eval.to(p)[:, None])[:, 0].double().cpu()
        return {
            "train_mse": float(torch.mean((pred - y) ** 2)),
            "heldout_mse": float(torch.mean((pred_eval - y_eval) ** 2)),
            "max_abs_error": float(torch.max((pred_eval - y_eval).abs())),
        }

    return TaskData(
        name="fitting",
        d=1,
        o=1,
        x=x[:, None],
        y=y[:, None],
        loss=F.mse_loss,
        evaluate=evaluate,
        extra={"target": name, "target_fn": lambda t: f(t, **params), "x_eval": x_eval, "y_eval": y_eval},
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float((logits.argmax(dim=-1) == labels).double().mean())


@TASKS.register("memorization")
def memorization(cfg: Mapping[str, Any]) -> TaskData:
    """N Gaussian points with uniform random labels; cross-entropy; training accuracy."""
    n, d, c = (_positive(cfg, k) for k in ("n_points", "dim", "num_classes"))
    if c < 2:
        raise IatrunError(f"task.num_classes must be >= 2, got {c}")
    g = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        p = next(model.parameters())
        with torch.no_grad():
            logits = model(x.to(p)).double().cpu()
        return {"train_accuracy": accuracy(logits, y), "train_loss": float(F.cross_entropy(logits, y))}

    return TaskData(name="memorization", d=d, o=c, x=x, y=y, loss=F.cross_entropy, evaluate=evaluate)


def make_task(cfg: Mapping[str, Any]) -> TaskData:
    """Build the task named ``cfg['name']`` from its config section."""
    return TASKS.get(cfg.get("name"))(cfg)
