"""Exact descriptions of the bases for the exact IAT-ReLU (:mod:`iatrun.nn.exact`), and its numerics.

Every basis the exact layer supports is registered here as a :class:`Piecewise` description: a
polynomial of known degree between known knots (fourier as Taylor pieces, see GRID_PER_FREQ and
FOURIER_DEGREE). The helpers below cut [-1, 1] into the common partition of two bases, give each
basis's polynomial coefficients per cell, evaluate them, integrate |ψ| exactly and polish roots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.registry import Registry

GRID_PER_FREQ = 4
FOURIER_DEGREE = 15
MAX_NEWTON = 100  # iterations: Newton first, then bisection (53 halvings reach float64 precision)
NEWTON_STEPS = 20
NEWTON_CHECK = 8  # off the CPU, iterations between asking the device whether every root converged


# ---------------------------------------------------------------------------------------------------
# How each basis is described exactly


@dataclass(frozen=True)
class Piecewise:
    """A basis that is a polynomial of degree ≤ ``degree`` between consecutive ``knots(n)``.

    ``knots(n)`` returns sorted float64 breakpoints in [-1, 1]. By default the coefficients are
    fitted from :func:`iatrun.nn.bases.evaluate` on each cell and checked, so the description cannot
    drift from the basis itself; ``coefficients(n, edges)`` (K, n, degree+1) gives them in closed
    form instead, and ``abs_integral(n)`` the exact ∫_{-1}^{1} |φ_i| dt where the pieces have degree
    above 2 (below that it is computed from the pieces).
    """

    knots: Callable[[int], torch.Tensor]
    degree: int
    coefficients: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    abs_integral: Callable[[int], torch.Tensor] | None = None


EXACT: Registry[Piecewise] = Registry("exact basis")


def register_exact(name: str, description: Piecewise) -> None:
    """Describe the registered basis ``name`` so that ``method="exact"`` can use it."""
    bases.check_basis(name)
    EXACT.add(name, description)


def check_exact(*names: str) -> None:
    """Raise IatrunError unless every basis in ``names`` has an exact description."""
    for name in names:
        bases.check_basis(name)
        if name not in EXACT:
            raise IatrunError(
                f"method 'exact' has no piecewise description of basis {name!r} "
                f"(exact supports: {', '.join(EXACT.names())})"
            )


def _cell_edges(n: int) -> torch.Tensor:
    return torch.linspace(-1, 1, n + 1, dtype=torch.float64)


def _centres(n: int) -> torch.Tensor:
    h = 2.0 / n
    c = -1 + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    return torch.cat([torch.tensor([-1.0, 1.0], dtype=torch.float64), c])


def _dyadic_grid(n: int, per_support: int) -> torch.Tensor:
    return torch.linspace(-1, 1, per_support * 2 ** bases.dyadic_levels(n) + 1, dtype=torch.float64)


def _fourier_grid(n: int) -> torch.Tensor:
    return torch.linspace(-1, 1, GRID_PER_FREQ * 2 * math.ceil(n / 2) + 1, dtype=torch.float64)


def _fourier_taylor(n: int, edges: torch.Tensor) -> torch.Tensor:
    """Taylor coefficients of the fourier basis at each cell's left edge, in u: (K, n, degree+1).

    φ_i(t) = sin(ω_i t + α_i) with ω_i = π⌈i/2⌉, α_i = 0 for odd i (sine) and π/2 for even i
    (cosine); its d-th derivative is ω_i^d sin(ω_i t + α_i + dπ/2), so on a cell of width w
    φ_i(g + w u) = Σ_d (ω_i w)^d / d! · sin(ω_i g + α_i + dπ/2) u^d.
    """
    i = torch.arange(1, n + 1, dtype=torch.float64)
    omega = torch.ceil(i / 2) * math.pi  # (n,)
    alpha = (1 - i % 2) * (math.pi / 2)  # (n,) float64
    d = torch.arange(FOURIER_DEGREE + 1, dtype=torch.float64)
    g, w = edges[:-1], edges.diff()  # (K,)
    phase = omega[None, :, None] * g[:, None, None] + alpha[None, :, None] + d * math.pi / 2
    scale = (omega[None, :, None] * w[:, None, None]) ** d / torch.exp(torch.lgamma(d + 1))
    return scale * torch.sin(phase)


register_exact("rect", Piecewise(_cell_edges, 0))
register_exact("pwl", Piecewise(_centres, 1))
register_exact("pwq", Piecewise(_cell_edges, 2))
register_exact(
    "fourier",
    Piecewise(
        _fourier_grid,
        FOURIER_DEGREE,
        coefficients=_fourier_taylor,
        abs_integral=lambda n: torch.full((n,), 4 / math.pi, dtype=torch.float64),  # ∫|sin πmt| = 4/π
    ),
)
register_exact("pwl-w", Piecewise(lambda n: torch.linspace(-1, 1, 2 * n + 3, dtype=torch.float64), 1))
register_exact("rect-w", Piecewise(lambda n: torch.linspace(-1, 1, n + 2, dtype=torch.float64), 0))
# dyadic wavelets: breakpoints at the quarters (pwl) or halves (Haar) of the finest supports
register_exact("pwl-wd", Piecewise(lambda n: _dyadic_grid(n, 4), 1))
register_exact("rect-wd", Piecewise(lambda n: _dyadic_grid(n, 2), 0))


# ---------------------------------------------------------------------------------------------------
# Numerical building blocks


def partition(n: int, basis_in: str, basis_out: str) -> torch.Tensor:
    """The cell edges g_0 = -1 < … < g_K = 1 (float64): all breakpoints of φ and ψ."""
    pts = [torch.tensor([-1.0, 1.0], dtype=torch.float64)]
    pts += [EXACT.get(name).knots(n).to(torch.float64) for name in (basis_in, basis_out)]
    t = torch.cat(pts).clamp(-1, 1).sort().values
    t = t[torch.cat([torch.tensor([True]), t.diff() > 1e-12])]
    t[0], t[-1] = -1.0, 1.0
    return t


def piece_coefficients(name: str, n: int, edges: torch.Tensor) -> torch.Tensor:
    """Coefficients c (K, n, D+1) with φ_i(t) = Σ_d c[k, i, d] u^d, u = (t - g_k)/(g_{k+1} - g_k).

    Closed form where the description gives one, else fitted from the basis at interior points of
    each cell; either way verified against :func:`iatrun.nn.bases.evaluate` at other points.
    """
    desc = EXACT.get(name)
    degree = desc.degree
    k_cells, width = len(edges) - 1, edges.diff()
    powers = torch.arange(degree + 1, dtype=torch.float64)

    def at(u: torch.Tensor) -> torch.Tensor:  # (K, len(u), n) basis values at local positions u
        t = edges[:-1, None] + width[:, None] * u[None, :]
        return bases.evaluate(name, n, t.reshape(-1)).reshape(k_cells, len(u), n)

    if desc.coefficients is not None:
        coef = desc.coefficients(n, edges)
    else:
        u = (torch.arange(degree + 1, dtype=torch.float64) + 1) / (degree + 2)
        coef = torch.linalg.solve(u[:, None] ** powers, at(u)).permute(0, 2, 1)  # (K, n, degree+1)
    scale = coef.abs().max().clamp(min=1.0)
    coef = torch.where(coef.abs() < 1e-14 * scale, torch.zeros_like(coef), coef)
    check = torch.tensor([0.07, 0.31, 0.62, 0.93], dtype=torch.float64)
    err = (torch.einsum("knd,ud->kun", coef, check[:, None] ** powers) - at(check)).abs().max()
    if err > 1e-9 * scale:
        raise IatrunError(f"basis {name!r} is not a polynomial of degree {degree} between its knots (n={n})")
    return coef.contiguous()


def poly(c: torch.Tensor, u: torch.Tensor, inv_w: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[p, dp/dt, …] of p(u) = Σ_d c[..., d] u^d with u = (t - g)·inv_w (Horner; ``u`` broadcasts)."""
    deg = c.shape[-1] - 1
    out = []
    for o in range(order + 1):
        if o > deg:
            out.append(torch.zeros_like(c[..., 0] * u))
            continue
        terms = [c[..., d] * math.perm(d, o) for d in range(o, deg + 1)]
        acc = terms[-1]
        for term in reversed(terms[:-1]):
            acc = acc * u + term
        out.append(acc * inv_w**o if o else acc + 0 * u)
    return out


def abs_integral_piecewise(coef: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """∫_{-1}^{1} |φ_i| dt (n,) for a piecewise polynomial of degree ≤ 2: split at its roots, exactly."""
    c = torch.nn.functional.pad(coef, (0, 3 - coef.shape[-1]))  # (K, n, 3)
    c0, c1, c2 = c.unbind(-1)
    disc = c1**2 - 4 * c2 * c0
    q = -0.5 * (c1 + torch.copysign(disc.clamp(min=0).sqrt(), c1))  # stable quadratic roots q/c2, c0/q
    r1, r2 = q / c2, c0 / q
    roots = []
    for r in (r1, r2):
        ok = (disc >= 0) & torch.isfinite(r) & (r > 0) & (r < 1)
        roots.append(torch.where(ok, r, torch.zeros_like(r)))
    pts = torch.stack([torch.zeros_like(c0), *roots, torch.ones_like(c0)], -1).sort(-1).values  # (K, n, 4)
    anti = c0[..., None] * pts + c1[..., None] * pts**2 / 2 + c2[..., None] * pts**3 / 3
    return (anti.diff(dim=-1).abs().sum(-1) * width[:, None]).sum(0)


def newton(fn, lo, hi, f_lo, f_hi, tol: float, compact: bool | None = None) -> torch.Tensor:
    """Roots of functions with one sign change of 1[f > 0] on each bracket [lo, hi] (all (N,)).

    ``fn(t, idx) -> (f, f′)`` evaluates the functions of brackets ``idx`` at ``t``. Starts from the
    secant point (the exact root of a linear piece), takes Newton steps, bisects whenever a step
    leaves the shrinking bracket, and only bisects after ``NEWTON_STEPS`` (a step stuck at the
    rounding floor near a double root cannot stall it).

    Two schedules give the same roots bit for bit (every update is element-wise per bracket).
    ``compact`` (the default on the CPU) evaluates only the unconverged brackets, which costs one
    wait on the device per iteration to learn which; otherwise (the default elsewhere) every
    bracket is evaluated each iteration, converged ones frozen by ``where``, and the device is
    asked whether all have converged only every ``NEWTON_CHECK`` iterations.
    """
    if compact is None:
        compact = lo.device.type == "cpu"
    pos_lo = f_lo > 0
    t = lo - f_lo * (hi - lo) / (f_hi - f_lo)
    t = torch.where(torch.isfinite(t) & (t >= lo) & (t <= hi), t, (lo + hi) / 2)
    lo, hi = lo.clone(), hi.clone()
    if not compact:
        return _newton_masked(fn, t, lo, hi, pos_lo, tol)
    idx = torch.arange(len(t), device=t.device)
    for it in range(MAX_NEWTON):
        if idx.numel() == 0:
            break
        ti, lo_i, hi_i = t[idx], lo[idx], hi[idx]
        conv, t_new, lo_i, hi_i = _newton_update(fn(ti, idx), ti, lo_i, hi_i, pos_lo[idx], tol, it)
        t[idx], lo[idx], hi[idx] = t_new, lo_i, hi_i
        idx = idx[~conv]
    return t


def _newton_masked(fn, t, lo, hi, pos_lo, tol: float) -> torch.Tensor:
    """:func:`newton` over every bracket at once: no compaction, one host read per NEWTON_CHECK steps."""
    idx = torch.arange(len(t), device=t.device)
    done = torch.zeros(len(t), dtype=torch.bool, device=t.device)
    for it in range(MAX_NEWTON):
        if it % NEWTON_CHECK == 0 and bool(done.all()):
            break
        conv, t_new, lo_new, hi_new = _newton_update(fn(t, idx), t, lo, hi, pos_lo, tol, it)
        t, lo, hi = (torch.where(done, old, new) for old, new in ((t, t_new), (lo, lo_new), (hi, hi_new)))
        done |= conv
    return t


def _newton_update(f_df, t, lo, hi, pos_lo, tol: float, it: int):
    """One safeguarded Newton step on brackets [lo, hi] at t: (converged, next t, lo, hi)."""
    f, df = f_df
    same = (f > 0) == pos_lo
    lo, hi = torch.where(same, t, lo), torch.where(same, hi, t)
    step = f / df
    cand = t - step
    ok = torch.isfinite(cand) & (cand >= lo) & (cand <= hi) & (it < NEWTON_STEPS)
    scale = tol * torch.clamp(t.abs(), min=1.0)
    conv = (f == 0) | (ok & (step.abs() <= scale)) | ((hi - lo) <= scale)
    nxt = torch.where(ok, cand, (lo + hi) / 2)
    return conv, torch.where(f == 0, t, nxt), lo, hi


def rows(table: torch.Tensor, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """table[b, k] for a contiguous (B, K, E) table: (N, E), through one flat index_select."""
    return table.reshape(-1, table.shape[-1]).index_select(0, b * table.shape[1] + k)


def scatter_rows(table: torch.Tensor, b: torch.Tensor, k: torch.Tensor, values: torch.Tensor) -> None:
    """table[b, k] += values in place for a contiguous (B, K, E) table, repeated (b, k) summed."""
    table.view(-1, table.shape[-1]).index_add_(0, b * table.shape[1] + k, values)
