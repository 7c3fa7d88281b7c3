"""Convergence of the mesh layer T_M to the exact IAT-ReLU T as M grows (paper §4.3, ``iatrun converge``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from iatrun.files import write_text
from iatrun.nn.exact import ExactIAT
from iatrun.nn.iat import IAT


def convergence(
    basis_in: str, basis_out: str, n: int = 16, ratios=range(1, 257), samples: int = 256, seed: int = 0
) -> tuple[list[int], list[float], float]:
    """Relative error ‖T_M(x) − T(x)‖ / ‖T(x)‖ (RMS over random x) of the mesh layer for M = n·r.

    Returns (M values, errors, fitted order p with error ∝ M^(−p), a least-squares slope in log–log).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, n, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = ExactIAT(n, basis_in, basis_out).double()(x)  # (samples, n)
        norm = ref.pow(2).sum().sqrt()
        ms, errs = [], []
        for r in ratios:
            tm = IAT(n, basis_in, basis_out, int(r)).double()(x)
            ms.append(n * int(r))
            errs.append(float((tm - ref).pow(2).sum().sqrt() / norm))
    return ms, errs, fitted_order(ms, errs)


def fitted_order(ms: list[int], errs: list[float]) -> float:
    """−slope of the least-squares line through (log M, log error), ignoring zero errors."""
    pts = [(math.log(m), math.log(e)) for m, e in zip(ms, errs, strict=True) if e > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = (torch.tensor(v, dtype=torch.float64) for v in zip(*pts, strict=True))
    lx = lx - lx.mean()
    return float(-(lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def write_convergence(ms: list[int], errs: list[float], order: float, path: Path, title: str) -> None:
    """Write ``path`` (the log–log plot with an M⁻² guide) and the CSV of every point beside it."""
    from matplotlib.figure import Figure

    from iatrun import plots

    rows = "".join(f"{m},{e!r}\n" for m, e in zip(ms, errs, strict=True))
    write_text(path.with_suffix(".csv"), "M,rel_error\n" + rows)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    ax.loglog(ms, errs, ".", ms=3, label="‖T_M − T‖ / ‖T‖")
    ref = [errs[-1] * (ms[-1] / m) ** 2 for m in ms]  # M⁻² through the last point
    ax.loglog(ms, ref, "--", lw=1, color="gray", label="M⁻²")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # only the powers of ten: the minor labels collide
    ax.set_xlabel("mesh size M")
    ax.set_ylabel("relative error")
    ax.set_title(f"{title}: fitted order {order:.2f}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    plots.save(fig, path)
