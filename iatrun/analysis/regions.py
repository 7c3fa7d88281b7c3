"""Linear regions, atomic affine maps and Lipschitz constants of piecewise-linear networks (SPEC §7).

A relu network, and a *discretized* IAT-ReLU network with σ = relu, is continuous and piecewise
affine. Along a line x(u) = p + u·v every hidden pre-activation (for the IAT: every mesh value of
Φh) is affine in u on a piece where the activation pattern above it is fixed, so where it changes
sign is closed-form. Walking the layers in order and splitting the pieces at those roots gives the
exact regions of constant activation pattern and, on each, the network's affine map
y = A_r·u + c_r (the "atomic" representation). Everything is computed in float64 with NumPy.

The regions of a run folder (``iatrun regions``) are at the end: loading it, choosing the interval,
and writing regions.csv and the regions figure into it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iatrun.errors import IatrunError

NOT_PWL = "regions need a piecewise-linear network"

# Breakpoints closer than TOL·(b − a) merge into one.
TOL = 1e-9


# --- the network as float64 layers -----------------------------------------------------------


@dataclass
class Layer:
    """One step of the network: an affine map, an element-wise relu, or a relu IAT."""

    kind: str  # "linear" | "relu" | "iat"
    weight: np.ndarray | None = None  # linear: W (out, in); iat: phi_t = Φᵀ (n, M)
    bias: np.ndarray | None = None  # linear: b (out,); iat: psi = (2/M)·Ψ (M, n)


def network_layers(model) -> list[Layer]:
    """The model as float64 layers; raises IatrunError unless it is continuous piecewise linear.

    Uses the model's own buffers (Φ, Ψ) so the result matches ``model.double()`` exactly.
    """
    from torch import nn

    from iatrun.nn.iat import IAT
    from iatrun.nn.layers import Gain

    if not all(hasattr(model, a) for a in ("linears", "acts", "norms")):
        raise IatrunError(f"{NOT_PWL}; got a {type(model).__name__}, not an iatrun MLP")

    def arr(t) -> np.ndarray:
        return t.detach().to("cpu").double().numpy()

    layers = [Layer("linear", arr(model.linears[0].weight), arr(model.linears[0].bias))]
    for act, norm, lin in zip(model.acts, model.norms, model.linears[1:], strict=True):
        if not isinstance(norm, nn.Identity | Gain):
            raise IatrunError(f"{NOT_PWL}; this one has a {type(norm).__name__} after its activations")
        factor = getattr(norm, "factor", 1.0)  # norm "gain": the activation is f·T, still affine
        if isinstance(act, IAT) and act.sigma == "relu":
            layers.append(Layer("iat", arr(act.phi_t), arr(act.psi) * factor))
            factor = 1.0
        elif getattr(act, "name", None) == "relu" and not isinstance(act, IAT):
            layers.append(Layer("relu"))
        else:
            what = getattr(act, "name", type(act).__name__)
            if isinstance(act, IAT):
                what = f"IAT with sigma={act.sigma!r}"
            raise IatrunError(f"{NOT_PWL} (relu or relu IAT activations); this one uses {what}")
        layers.append(Layer("linear", arr(lin.weight) * factor, arr(lin.bias)))  # W (f a) = (f W) a
    return layers


# --- enumeration -------------------------------------------------------------------------------


@dataclass
class Regions:
    """The regions of a network along x(u) = start + u·direction, u ∈ [breakpoints[0], breakpoints[-1]].

    For 1-D input ``start = [0]``, ``direction = [1]`` and u is x itself.
    """

    breakpoints: np.ndarray  # (R+1,) u_0 < u_1 < ... < u_R
    slopes: np.ndarray  # (R, o) A_r = dy/du on region r
    intercepts: np.ndarray  # (R, o) c_r, so y = A_r·u + c_r on region r
    start: np.ndarray  # (d,)
    direction: np.ndarray  # (d,)
    weight_norms: list[float]  # ‖W_l‖₂, l = 1..L+1
    act_norms: list[float]  # per activation: 1 for relu, max ‖A_M‖₂ over the patterns met for the IAT

    @property
    def num_regions(self) -> int:
        """R, the number of linear regions."""
        return len(self.slopes)

    @property
    def lipschitz(self) -> float:
        """Exact Lipschitz constant along the segment: max_r ‖A_r‖₂ / ‖direction‖ (SPEC §7)."""
        return float(np.linalg.norm(self.slopes, axis=1).max() / np.linalg.norm(self.direction))

    @property
    def lipschitz_bound(self) -> float:
        """Layer-wise upper bound Π_l ‖W_l‖₂ · Π_l ‖act_l‖ (SPEC §7)."""
        return float(np.prod(self.weight_norms) * np.prod(self.act_norms))

    @property
    def lipschitz_ratio(self) -> float:
        """Exact constant over bound, in [0, 1]: how tight the layer-wise bound is."""
        bound = self.lipschitz_bound
        return self.lipschitz / bound if bound > 0 else float("nan")

    def __call__(self, u) -> np.ndarray:
        """The network at parameters ``u`` (shape (K,)) from the affine maps: (K, o)."""
        u = np.asarray(u, dtype=np.float64)
        r = np.clip(np.searchsorted(self.breakpoints, u, side="right") - 1, 0, self.num_regions - 1)
        return self.slopes[r] * u[:, None] + self.intercepts[r]

    def rows(self, name: str = "x") -> list[dict[str, Any]]:
        """One dict per region: ``<name>_start``, ``<name>_end``, slope, intercept (lists when o > 1)."""
        out = []
        for r in range(self.num_regions):
            a, c = self.slopes[r].tolist(), self.intercepts[r].tolist()
            out.append(
                {
                    f"{name}_start": float(self.breakpoints[r]),
                    f"{name}_end": float(self.breakpoints[r + 1]),
                    "slope": a[0] if len(a) == 1 else a,
                    "intercept": c[0] if len(c) == 1 else c,
                }
            )
        return out


def _split(bps: np.ndarray, sg: np.ndarray, se: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Split pieces at the roots of the affine functions sg·u + se; return new breakpoints and parents.

    bps (P+1,), sg and se (P, K): the K pre-activations on each of the P pieces.
    """
    lo, hi = bps[:-1, None], bps[1:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = -se / sg  # (P, K); inf/nan where sg = 0 (no sign change on the piece)
    inside = np.isfinite(roots) & (roots > lo + eps) & (roots < hi - eps)
    cand = np.sort(np.concatenate([bps, roots[inside]]))
    # Merge clusters of breakpoints closer than eps into their first (old breakpoints and the
    # ends are never within eps of a root, so they survive unchanged).
    new = cand[np.concatenate([[True], np.diff(cand) > eps])]
    mid = (new[:-1] + new[1:]) / 2
    parent = np.clip(np.searchsorted(bps, mid, side="right") - 1, 0, len(bps) - 2)
    return new, parent


def _iat_norm(phi_t: np.ndarray, psi: np.ndarray, masks: np.ndarray) -> float:
    """max over the distinct patterns D of ‖A_M‖₂, A_M = (2/M) Ψᵀ D Φ (SPEC §2); masks (P, M) bool."""
    unique = np.unique(np.packbits(masks, axis=1), axis=0)
    d = np.unpackbits(unique, axis=1, count=masks.shape[1]).astype(np.float64)  # (Q, M)
    n, best = phi_t.shape[0], 0.0
    for chunk in np.array_split(d, max(1, math.ceil(len(d) / 512))):
        q, m = chunk.shape
        dphi = chunk.T[:, :, None] * phi_t.T[:, None, :]  # (M, q, n): D_q Φ for every pattern
        a = (psi.T @ dphi.reshape(m, -1)).reshape(-1, q, n).transpose(1, 0, 2)  # (q, n, n): Ψᵀ D Φ
        # ‖A‖₂² is the largest eigenvalue of AᵀA (symmetric, so eigvalsh is cheaper than an SVD).
        lam = np.linalg.eigvalsh(np.einsum("qji,qjk->qik", a, a, optimize=True))[:, -1]
        best = max(best, float(np.sqrt(max(lam.max(), 0.0))))
    return best


def _walk(
    layers: list[Layer], lo: float, hi: float, start: np.ndarray, direction: np.ndarray, tol: float
) -> Regions:
    """Split [lo, hi] layer by layer; x(u) = start + u·direction."""
    eps = tol * (hi - lo)
    bps = np.array([lo, hi], dtype=np.float64)
    g, e = direction[None, :], start[None, :]  # (P, width) slope and intercept of the current vector
    act_norms: list[float] = []
    weight_norms: list[float] = []
    for layer in layers:
        if layer.kind == "linear":  # h = W·a + b: affine maps stay affine
            g, e = g @ layer.weight.T, e @ layer.weight.T + layer.bias
            weight_norms.append(float(np.linalg.norm(layer.weight, 2)))
            continue
        if layer.kind == "relu":
            sg, se = g, e  # (P, n) pre-activations
        else:
            sg, se = g @ layer.weight, e @ layer.weight  # (P, M) the state Φh on the mesh
        bps, parent = _split(bps, sg, se, eps)
        sg, se = sg[parent], se[parent]  # (P', K) on the refined pieces
        mid = (bps[:-1] + bps[1:]) / 2
        mask = sg * mid[:, None] + se > 0  # (P', K) the pattern, constant on each piece
        if layer.kind == "relu":
            g, e = sg * mask, se * mask
            act_norms.append(1.0)
        else:  # T_M(h) = (2/M) Ψᵀ relu(Φh): psi carries the 2/M (SPEC §1)
            g, e = (sg * mask) @ layer.bias, (se * mask) @ layer.bias  # (P', n)
            act_norms.append(_iat_norm(layer.weight, layer.bias, mask))
    return Regions(bps + 0.0, g, e, start, direction, weight_norms, act_norms)  # + 0.0: no -0.0 in files


def _input_dim(layers: list[Layer]) -> int:
    return layers[0].weight.shape[1]


def regions(model, a: float = -1.0, b: float = 1.0, *, tol: float = TOL) -> Regions:
    """Exact regions and affine maps of a 1-D-input network on [a, b] (SPEC §7)."""
    layers = network_layers(model)
    d = _input_dim(layers)
    if d != 1:
        raise IatrunError(f"the network has input dimension {d}; give a segment (--from, --to)")
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise IatrunError(f"need a finite interval with a < b, got [{a}, {b}]")
    return _walk(layers, a, b, np.zeros(1), np.ones(1), tol)


def segment_regions(model, start: Sequence[float], end: Sequence[float], *, tol: float = TOL) -> Regions:
    """Exact regions along x(t) = start + t·(end − start), t ∈ [0, 1], for any input dimension d."""
    layers = network_layers(model)
    d = _input_dim(layers)
    p0, p1 = np.asarray(start, dtype=np.float64).ravel(), np.asarray(end, dtype=np.float64).ravel()
    if p0.shape != (d,) or p1.shape != (d,):
        raise IatrunError(f"--from and --to need {d} coordinates each, got {p0.size} and {p1.size}")
    if not (np.all(np.isfinite(p0)) and np.all(np.isfinite(p1))) or np.array_equal(p0, p1):
        raise IatrunError("--from and --to must be two different finite points")
    return _walk(layers, 0.0, 1.0, p0, p1 - p0, tol)


def summarize(model, a: float = -1.0, b: float = 1.0) -> dict[str, float | int]:
    """Number of regions and Lipschitz constants of a 1-D-input network on [a, b], for tables."""
    r = regions(model, a, b)
    return {
        "num_regions": r.num_regions,
        "lipschitz": r.lipschitz,
        "lipschitz_bound": r.lipschitz_bound,
        "lipschitz_ratio": r.lipschitz_ratio,
    }


# --- regions of a run folder -------------------------------------------------------------------


def default_interval(cfg: dict[str, Any]) -> tuple[float, float]:
    """[x_0, x_N] of a piecewise_linear target's points, else the fitting domain [-1, 1] (SPEC §5)."""
    task = cfg.get("task") or {}
    points = (task.get("piecewise_linear") or {}).get("points")
    if task.get("target") == "piecewise_linear" and points:
        try:
            return float(points[0][0]), float(points[-1][0])
        except (TypeError, ValueError, IndexError):
            pass
    return -1.0, 1.0


def load_model_run(path: str | Path):
    """:func:`iatrun.load_run`, with every failure to rebuild the model turned into an IatrunError."""
    from iatrun.results import load_run

    try:
        return load_run(path)
    except IatrunError:
        raise
    except Exception as e:  # a config or state dict that does not fit the model
        raise IatrunError(f"{path} is not a loadable run folder ({type(e).__name__}: {e})") from None


def run_regions(run, start: Sequence[float] | None = None, end: Sequence[float] | None = None) -> Regions:
    """Regions of a loaded run: on [start, end] (1-D input; either may be omitted) or along a segment."""
    d = run.model.linears[0].in_features
    if d == 1:
        if any(p is not None and len(p) != 1 for p in (start, end)):
            raise IatrunError("the network has input dimension 1: --from and --to take one number each")
        a, b = default_interval(run.config)
        a = float(start[0]) if start is not None else a
        b = float(end[0]) if end is not None else b
        return regions(run.model, a, b)
    if start is None or end is None:
        raise IatrunError(
            f"the network has input dimension {d} > 1: give a segment with --from and --to "
            f"({d} comma-separated coordinates each)"
        )
    return segment_regions(run.model, start, end)


def region_report(reg: Regions) -> dict[str, Any]:
    """num_regions, lipschitz, lipschitz_bound, lipschitz_ratio and the per-region rows."""
    one_d = reg.start.size == 1
    return {
        "num_regions": reg.num_regions,
        "lipschitz": reg.lipschitz,
        "lipschitz_bound": reg.lipschitz_bound,
        "lipschitz_ratio": reg.lipschitz_ratio if math.isfinite(reg.lipschitz_ratio) else None,
        "interval": [float(reg.breakpoints[0]), float(reg.breakpoints[-1])],
        **({} if one_d else {"from": reg.start.tolist(), "to": (reg.start + reg.direction).tolist()}),
        "regions": reg.rows("x" if one_d else "t"),
    }


def regions_csv(reg: Regions) -> str:
    """One row per region: x_start, x_end, slope, intercept (t_… along a segment; slope_j… when o > 1)."""
    name = "x" if reg.start.size == 1 else "t"
    o = reg.slopes.shape[1]
    cols = ["slope", "intercept"]
    if o > 1:
        cols = [f"slope_{j}" for j in range(o)] + [f"intercept_{j}" for j in range(o)]
    lines = [",".join([f"{name}_start", f"{name}_end", *cols])]
    for r in range(reg.num_regions):
        vals = [reg.breakpoints[r], reg.breakpoints[r + 1], *reg.slopes[r], *reg.intercepts[r]]
        lines.append(",".join(repr(float(v)) for v in vals))
    return "\n".join(lines) + "\n"


def save_regions(run, reg: Regions) -> list[Path]:
    """Write regions.csv and the regions figure (in the run's ``plots.format``) into the run
    folder, each atomically; return their paths."""
    from iatrun import plots, plotstyle
    from iatrun.files import write_text
    from iatrun.plotstyle import PlotStyle

    target, name = None, ""
    task = run.config.get("task") or {}
    if reg.start.size == 1 and task.get("name") == "fitting":
        from iatrun.tasks import TARGETS, target_params

        name = task.get("target", "multi_sine")
        fn, params = TARGETS.get(name), target_params(task, name)

        def target(x):
            import torch

            return fn(torch.as_tensor(x, dtype=torch.float64), **params).numpy()

    style = PlotStyle.from_config(run.config.get("plots"))
    csv, figure = Path(run.path) / "regions.csv", Path(run.path) / f"regions.{style.format}"
    try:
        write_text(csv, regions_csv(reg))
        with plotstyle.style(style):
            plots.regions_plot(reg, figure, target=target, target_name=name, title=Path(run.path).name)
    except OSError as e:
        raise IatrunError(f"cannot write into {run.path}: {e.strerror or e}") from None
    return [csv, figure]
