"""The exact (analytic) IAT-ReLU of paper §4.3 and the decoupled product A(p)·v of §4.4 (SPEC §2, §4).

T(x)_j = ∫_{S(x)} ψ_j(t) s_x(t) dt with S(x) = {t : s_x(t) > 0} and s_x = Σ_i x_i φ_i, computed without
a mesh. [-1, 1] is cut into a fixed partition g_0 = -1 < g_1 < … < g_K = 1: the breakpoints of φ
and of ψ, refined by a uniform bracketing grid when a basis is analytic (fourier). On each cell

* a piecewise-polynomial basis is one polynomial (degree ≤ 2 for the built-in ones), so the state
  of a sample on a cell is one polynomial with ≤ 3 coefficients;
* s has at most one critical point (exact for degree ≤ 2; for fourier an assumption that the fine
  grid makes safe: a missed pair of critical points can only hide a pair of roots closer than one
  grid cell around a near-double root). It is found by safeguarded Newton on s′ and splits the cell
  into two monotone brackets with at most one root each;
* each root is found by safeguarded Newton from the secant start (on a linear piece — pwl, pwl-w —
  the secant start *is* the closed-form root), falling back to bisection when a step leaves its
  bracket, to machine precision. Root finding runs without autograd (paper §4.3).

Integration. With ε_r = +1 where s falls through a root r (a right end of S) and −1 where it rises,

    ∫_{S ∩ [g_k, g_{k+1}]} f = 1[s(g_{k+1}⁻) > 0] ∫_{g_k}^{g_{k+1}} f + Σ_{r in cell k} ε_r ∫_{g_k}^{r} f,

so T is a masked sum over fixed cell quadratures (like the mesh layer, two matmuls) plus one short
quadrature per root. All integrals are Gauss–Legendre: Q = 3 is exact for the piecewise polynomials
(products of degree ≤ 4); with a fourier basis Q = 6 on the fine grid is exact to rounding.

Discontinuous input bases (rect, rect-w) are handled exactly by their fixed cell boundaries: they
are piecewise constant, so the sign of s is constant on each cell and only the mask term remains.

Normalisation: φ_i is scaled to sup-norm 1 (SPEC §3); ψ_j is scaled by the *exact* ∫_{-1}^{1} |ψ_j| dt,
not by the M-point rule, so the mesh layer T_M converges to this T as M → ∞ (the mesh normalisation
itself converges at O(M⁻²)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from iatrun import bases
from iatrun.errors import IatrunError
from iatrun.registry import Registry

# Cells of the bracketing grid per unit of the highest fourier frequency m (16 per period 2/m).
GRID_PER_FREQ = 16
# Gauss–Legendre order on a cell when a basis is analytic; 2Q - 1 = 11 is ample on the fine grid.
ANALYTIC_ORDER = 6
MAX_NEWTON = 100  # iterations: Newton first, then bisection (53 halvings reach float64 precision)
NEWTON_STEPS = 20


# ---------------------------------------------------------------------------------------------------
# How each basis is described exactly


@dataclass(frozen=True)
class Piecewise:
    """A basis that is a polynomial of degree ≤ ``degree`` between consecutive ``knots(n)``.

    ``knots(n)`` returns sorted float64 breakpoints in [-1, 1]. Coefficients are fitted from
    :func:`iatrun.bases.evaluate` on each cell and checked, so the description cannot drift from
    the basis itself.
    """

    knots: Callable[[int], torch.Tensor]
    degree: int


@dataclass(frozen=True)
class Analytic:
    """A smooth global basis given in closed form on any device.

    ``evaluate(n, t, order)`` returns [φ, φ′, …, φ^(order)] at ``t``, each (len(t), n), unnormalised;
    ``abs_integral(n)`` is ∫_{-1}^{1} |φ_i| dt (n,); ``cells(n)`` is the size of the bracketing grid.
    """

    evaluate: Callable[[int, torch.Tensor, int], list[torch.Tensor]]
    abs_integral: Callable[[int], torch.Tensor]
    cells: Callable[[int], int]


EXACT: Registry[Piecewise | Analytic] = Registry("exact basis")


def register_exact(name: str, description: Piecewise | Analytic) -> None:
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


def _fourier_eval(n: int, t: torch.Tensor, order: int) -> list[torch.Tensor]:
    """sin(π m t) for odd i, cos(π m t) for even i (m = ⌈i/2⌉) and derivatives, on t's device."""
    i = torch.arange(1, n + 1, device=t.device)
    w = torch.ceil(i / 2).to(t.dtype) * math.pi  # (n,) angular frequencies
    odd = (i % 2 == 1)[None, :]
    arg = t[:, None] * w
    s, c = torch.sin(arg), torch.cos(arg)
    out = [torch.where(odd, s, c)]
    if order >= 1:
        out.append(torch.where(odd, c, -s) * w)
    if order >= 2:
        out.append(torch.where(odd, -s, -c) * w**2)
    return out


register_exact("rect", Piecewise(_cell_edges, 0))
register_exact("pwl", Piecewise(_centres, 1))
register_exact("pwq", Piecewise(_cell_edges, 2))
register_exact(
    "fourier",
    Analytic(
        _fourier_eval,
        lambda n: torch.full((n,), 4 / math.pi, dtype=torch.float64),  # ∫|sin πmt| = ∫|cos πmt| = 4/π
        lambda n: GRID_PER_FREQ * math.ceil(n / 2),
    ),
)
register_exact("pwl-w", Piecewise(lambda n: torch.linspace(-1, 1, 2 * n + 3, dtype=torch.float64), 1))
register_exact("rect-w", Piecewise(lambda n: torch.linspace(-1, 1, n + 2, dtype=torch.float64), 0))


# ---------------------------------------------------------------------------------------------------
# Numerical building blocks


def partition(n: int, basis_in: str, basis_out: str) -> torch.Tensor:
    """The cell edges g_0 = -1 < … < g_K = 1 (float64): all breakpoints of φ and ψ, plus a grid."""
    pts = [torch.tensor([-1.0, 1.0], dtype=torch.float64)]
    for name in (basis_in, basis_out):
        desc = EXACT.get(name)
        if isinstance(desc, Piecewise):
            pts.append(desc.knots(n).to(torch.float64))
        else:
            pts.append(torch.linspace(-1, 1, desc.cells(n) + 1, dtype=torch.float64))
    t = torch.cat(pts).clamp(-1, 1).sort().values
    t = t[torch.cat([torch.tensor([True]), t.diff() > 1e-12])]
    t[0], t[-1] = -1.0, 1.0
    return t


def fit_piecewise(name: str, n: int, edges: torch.Tensor, degree: int) -> torch.Tensor:
    """Coefficients c (K, n, degree+1) with φ_i(t) = Σ_d c[k, i, d] u^d, u = (t - g_k)/(g_{k+1} - g_k).

    Fitted from the basis at interior points of each cell and verified at others.
    """
    k_cells, width = len(edges) - 1, edges.diff()
    powers = torch.arange(degree + 1, dtype=torch.float64)

    def at(u: torch.Tensor) -> torch.Tensor:  # (K, len(u), n) basis values at local positions u
        t = edges[:-1, None] + width[:, None] * u[None, :]
        return bases.evaluate(name, n, t.reshape(-1)).reshape(k_cells, len(u), n)

    u = (torch.arange(degree + 1, dtype=torch.float64) + 1) / (degree + 2)
    coef = torch.linalg.solve(u[:, None] ** powers, at(u))  # (K, degree+1, n)
    scale = coef.abs().max().clamp(min=1.0)
    coef = torch.where(coef.abs() < 1e-12 * scale, torch.zeros_like(coef), coef)
    check = torch.tensor([0.07, 0.31, 0.62, 0.93], dtype=torch.float64)
    err = (torch.einsum("kdn,ud->kun", coef, check[:, None] ** powers) - at(check)).abs().max()
    if err > 1e-9 * scale:
        raise IatrunError(f"basis {name!r} is not a polynomial of degree {degree} between its knots (n={n})")
    return coef.permute(0, 2, 1).contiguous()


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


def newton(fn, lo, hi, f_lo, f_hi, tol: float) -> torch.Tensor:
    """Roots of functions with one sign change of 1[f > 0] on each bracket [lo, hi] (all (N,)).

    ``fn(t, idx) -> (f, f′)`` evaluates the functions of brackets ``idx`` at ``t``. Starts from the
    secant point (the exact root of a linear piece), takes Newton steps, bisects whenever a step
    leaves the shrinking bracket, and only bisects after ``NEWTON_STEPS`` (a step stuck at the
    rounding floor near a double root cannot stall it). Only unconverged brackets are evaluated.
    """
    pos_lo = f_lo > 0
    t = lo - f_lo * (hi - lo) / (f_hi - f_lo)
    t = torch.where(torch.isfinite(t) & (t >= lo) & (t <= hi), t, (lo + hi) / 2)
    lo, hi = lo.clone(), hi.clone()
    idx = torch.arange(len(t), device=t.device)
    for it in range(MAX_NEWTON):
        if idx.numel() == 0:
            break
        ti, lo_i, hi_i = t[idx], lo[idx], hi[idx]
        f, df = fn(ti, idx)
        same = (f > 0) == pos_lo[idx]
        lo_i, hi_i = torch.where(same, ti, lo_i), torch.where(same, hi_i, ti)
        step = f / df
        cand = ti - step
        ok = torch.isfinite(cand) & (cand >= lo_i) & (cand <= hi_i) & (it < NEWTON_STEPS)
        scale = tol * torch.clamp(ti.abs(), min=1.0)
        conv = (f == 0) | (ok & (step.abs() <= scale)) | ((hi_i - lo_i) <= scale)
        nxt = torch.where(ok, cand, (lo_i + hi_i) / 2)
        t[idx], lo[idx], hi[idx] = torch.where(f == 0, ti, nxt), lo_i, hi_i
        idx = idx[~conv]
    return t


@dataclass
class Pattern:
    """S(x) of a batch, as the exact integration needs it.

    ``mask`` (B, K) bool is 1[s(g_{k+1}⁻) > 0]: cells whose whole integral enters. ``b``, ``k``,
    ``r``, ``eps`` (R,) list every root: its sample, its cell, its position, and ε = +1 where s
    falls through it (a right end of S), -1 where it rises.
    """

    mask: torch.Tensor
    b: torch.Tensor
    k: torch.Tensor
    r: torch.Tensor
    eps: torch.Tensor


# ---------------------------------------------------------------------------------------------------
# The layer


class ExactIAT(nn.Module):
    """Exact IAT-ReLU T(x)_j = ∫_{S(x)} ψ_j s_x dt on inputs (..., n), σ = relu (paper §4.3).

    φ has sup-norm 1 (SPEC §3) and ψ has ∫_{-1}^{1} |ψ_j| dt = 1 *exactly* (the mesh layer uses the
    M-point rule instead; the two agree as M → ∞). The backward is A(x)ᵀ·grad (paper Eq. 21).
    All tables are non-persistent buffers: they follow ``.to()`` but stay out of the state dict.
    """

    def __init__(self, n: int, basis_in: str = "fourier", basis_out: str = "pwq"):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise IatrunError(f"IAT width n must be an integer >= 1, got {n!r}")
        check_exact(basis_in, basis_out)
        self.n, self.basis_in, self.basis_out = n, basis_in, basis_out
        self.desc_in, self.desc_out = EXACT.get(basis_in), EXACT.get(basis_out)
        edges = partition(n, basis_in, basis_out)  # (K+1,)
        self.k_cells = len(edges) - 1
        width = edges.diff()
        analytic = isinstance(self.desc_in, Analytic) or isinstance(self.desc_out, Analytic)
        degree = sum(d.degree for d in (self.desc_in, self.desc_out) if isinstance(d, Piecewise))
        self.q = ANALYTIC_ORDER if analytic else max(1, math.ceil((degree + 1) / 2))

        def buf(name: str, value: torch.Tensor) -> None:
            self.register_buffer(name, value, persistent=False)

        buf("edges", edges)
        buf("inv_w", 1 / width)
        # Input basis: scaled to sup-norm 1 over [-1, 1] (SPEC §3).
        scale_in = 1 / bases.sup_norms(basis_in, n)
        buf("scale_in", scale_in)
        buf("coef_in", self._fit(self.desc_in, basis_in, scale_in))
        # Output basis: scaled to exact ∫|ψ_j| = 1.
        raw = self._fit(self.desc_out, basis_out, torch.ones(n, dtype=torch.float64))
        mass = abs_integral_piecewise(raw, width) if raw.numel() else self.desc_out.abs_integral(n)
        if torch.any(mass <= 0):
            raise IatrunError(f"output basis {basis_out!r} has a function with zero integral of |ψ| (n={n})")
        buf("scale_out", 1 / mass)
        buf("coef_out", raw * self.scale_out[:, None] if raw.numel() else raw)

        # Fixed Gauss–Legendre nodes of every cell: the full-cell term is then two matmuls.
        xi, wq = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(self.q))
        t_gl = edges[:-1, None] + width[:, None] * (1 + xi) / 2  # (K, Q)
        w_gl = width[:, None] / 2 * wq  # (K, Q)
        k_gl = torch.arange(self.k_cells).repeat_interleave(self.q)
        phi_gl = self.phi(t_gl.reshape(-1), k_gl)[0]  # (K·Q, n)
        psi_gl = self.psi(t_gl.reshape(-1), k_gl)  # (K·Q, n)
        buf("phi_gl_t", phi_gl.T.contiguous())  # (n, K·Q)
        buf("psi_gl_w", (psi_gl * w_gl.reshape(-1, 1)).contiguous())  # (K·Q, n), weights folded in
        buf("gl_nodes", xi)  # (Q,) on [-1, 1]
        buf("gl_weights", wq)  # (Q,)
        # One-sided values and slopes of φ at both ends of each cell, (n, 4K): x @ ends_t gives
        # [s(g_k⁺), s(g_{k+1}⁻), s′(g_k⁺), s′(g_{k+1}⁻)] for every cell at once.
        k_all = torch.arange(self.k_cells)
        left, right = self.phi(edges[:-1], k_all, 1), self.phi(edges[1:], k_all, 1)
        buf("ends_t", torch.cat([left[0], right[0], left[1], right[1]]).T.contiguous())
        # Tables stay float64 until the module is cast; every use casts them to the input's dtype.

    def _fit(self, desc, name: str, scale: torch.Tensor) -> torch.Tensor:
        if isinstance(desc, Analytic):
            return torch.zeros(0, dtype=torch.float64)
        return fit_piecewise(name, self.n, self.edges, desc.degree) * scale[:, None]

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, basis_in={self.basis_in!r}, basis_out={self.basis_out!r}, "
            f"cells={self.k_cells}, q={self.q}"
        )

    # -- basis evaluation at arbitrary points t (N,) lying in cells k (N,) ------------------------

    def _local(self, t: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_w = self.inv_w.to(t.dtype)[k]
        return (t - self.edges.to(t.dtype)[k]) * inv_w, inv_w

    def phi(self, t: torch.Tensor, k: torch.Tensor, order: int = 0) -> list[torch.Tensor]:
        """[φ, φ′, …] at t in cells k, each (N, n), normalised to sup-norm 1."""
        if isinstance(self.desc_in, Analytic):
            scale = self.scale_in.to(t.dtype)
            return [f * scale for f in self.desc_in.evaluate(self.n, t, order)]
        u, inv_w = self._local(t, k)
        return poly(self.coef_in.to(t.dtype)[k], u[:, None], inv_w[:, None], order)

    def psi(self, t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """ψ at t in cells k, (N, n), normalised to ∫|ψ_j| = 1."""
        if isinstance(self.desc_out, Analytic):
            return self.desc_out.evaluate(self.n, t, 0)[0] * self.scale_out.to(t.dtype)
        u, inv_w = self._local(t, k)
        return poly(self.coef_out.to(t.dtype)[k], u[:, None], inv_w[:, None], 0)[0]

    def _state_fn(self, x: torch.Tensor, b: torch.Tensor, k: torch.Tensor, order: int, coef_x):
        """A function t -> [s, s′, …] of the states x[b] on cells k at points t (all (N,))."""
        if coef_x is not None:  # piecewise input: each (sample, cell) state is one polynomial
            c = coef_x[b, k]  # (N, D+1)
            return lambda t, i=slice(None): poly(c[i], *self._local(t, k[i]), order)
        xb = x[b]  # (N, n)
        return lambda t, i=slice(None): [(f * xb[i]).sum(-1) for f in self.phi(t, k[i], order)]

    def _coef_x(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-cell polynomial coefficients of s_x (B, K, D+1), or None for an analytic φ."""
        if isinstance(self.desc_in, Analytic):
            return None
        return torch.einsum("bi,kid->bkd", x, self.coef_in.to(x.dtype))

    # -- the activation pattern ------------------------------------------------------------------

    @torch.no_grad()
    def pattern(self, x: torch.Tensor) -> Pattern:
        """Roots of s_x and the cell mask for a batch x (B, n); runs outside autograd (paper §4.3)."""
        x = x.detach()
        dt = x.dtype
        tol = 8 * torch.finfo(dt).eps
        edges = self.edges.to(dt)
        kk = self.k_cells
        coef_x = self._coef_x(x)
        s_l, s_r, d_l, d_r = (x @ self.ends_t.to(dt)).view(-1, 4, kk).unbind(1)  # each (B, K)
        lo_edge, hi_edge = edges[:-1].expand_as(s_l), edges[1:].expand_as(s_l)

        # 1) A critical point c splits a cell whose one-sided slopes differ in sign (Newton on s′).
        crit_t, crit_s = hi_edge.clone(), s_r.clone()  # (B, K); c = g_{k+1} where there is none
        cb, ck = torch.nonzero(d_l * d_r < 0, as_tuple=True)
        if len(cb):
            fn = self._state_fn(x, cb, ck, 2, coef_x)
            c = newton(lambda t, i: fn(t, i)[1:], edges[ck], edges[ck + 1], d_l[cb, ck], d_r[cb, ck], tol)
            crit_t[cb, ck], crit_s[cb, ck] = c, self._state_fn(x, cb, ck, 0, coef_x)(c)[0]

        # 2) Two monotone brackets per cell, [g_k, c] and [c, g_{k+1}]; a root where 1[s > 0] flips.
        brackets = ((lo_edge, s_l, crit_t, crit_s), (crit_t, crit_s, hi_edge, s_r))
        found = []
        for lo, f_lo, hi, f_hi in brackets:
            rb, rk = torch.nonzero((f_lo > 0) != (f_hi > 0), as_tuple=True)
            found.append((rb, rk, lo[rb, rk], hi[rb, rk], f_lo[rb, rk], f_hi[rb, rk]))
        rb, rk, lo, hi, f_lo, f_hi = (torch.cat(parts) for parts in zip(*found, strict=True))

        # 3) Polish every root to machine precision (safeguarded Newton; closed form on linear pieces).
        r = newton(self._state_fn(x, rb, rk, 1, coef_x), lo, hi, f_lo, f_hi, tol) if len(rb) else lo
        eps = torch.where(f_lo > 0, 1.0, -1.0).to(dt)
        return Pattern(mask=s_r > 0, b=rb, k=rk, r=r, eps=eps)

    # -- integration -----------------------------------------------------------------------------

    def _root_nodes(self, pat: Pattern, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gauss–Legendre nodes (R·Q,), weights ε·w (R, Q) and cells (R·Q,) on each [g_k, r]."""
        g = self.edges.to(dt)[pat.k]  # (R,)
        half = (pat.r - g) / 2
        t = g[:, None] + half[:, None] * (1 + self.gl_nodes.to(dt))  # (R, Q)
        w = (pat.eps * half)[:, None] * self.gl_weights.to(dt)  # (R, Q)
        return t.reshape(-1), w, pat.k.repeat_interleave(self.q)

    def integrate(self, v: torch.Tensor, pat: Pattern) -> tuple[torch.Tensor, tuple]:
        """D(v)_j = ∫_{S} ψ_j s_v dt for the pattern S of another (or the same) batch; (B, n).

        Returns the result and what :meth:`integrate_t` needs for the transpose.
        """
        dt = v.dtype
        bsz, q = v.shape[0], self.q
        # Full cells: (B, K·Q) states at fixed nodes, masked per cell, then weighted ψ (SPEC §1 form).
        z = (v @ self.phi_gl_t.to(dt)).view(bsz, self.k_cells, q) * pat.mask[..., None]
        out = z.view(bsz, -1) @ self.psi_gl_w.to(dt)  # (B, n)
        # Root terms: ε ∫_{g_k}^{r} ψ_j s_v, one short quadrature per root.
        t, w, k = self._root_nodes(pat, dt)
        psi = self.psi(t, k).view(-1, q, self.n)  # (R, Q, n)
        s = (self.phi(t, k)[0].view(-1, q, self.n) * v[pat.b][:, None, :]).sum(-1)  # (R, Q)
        out = out.index_add(0, pat.b, torch.einsum("rq,rqj->rj", w * s, psi))
        return out, (t, w, k, psi)

    def integrate_t(self, grad: torch.Tensor, pat: Pattern, saved: tuple) -> torch.Tensor:
        """A(S)ᵀ·grad, A_ji = ∫_S ψ_j φ_i dt (paper Eq. 21): (B, n)."""
        dt = grad.dtype
        t, w, k, psi = saved
        bsz, q = grad.shape[0], self.q
        z = (grad @ self.psi_gl_w.to(dt).T).view(bsz, self.k_cells, q) * pat.mask[..., None]
        out = z.view(bsz, -1) @ self.phi_gl_t.to(dt).T  # (B, n)
        gpsi = (psi * grad[pat.b][:, None, :]).sum(-1)  # (R, Q)
        phi = self.phi(t, k)[0].view(-1, q, self.n)  # (R, Q, n)
        return out.index_add(0, pat.b, torch.einsum("rq,rqi->ri", w * gpsi, phi))

    def activation_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """A(x)_ji = ∫_{S(x)} ψ_j φ_i dt (paper Eq. 18), shape (..., n, n); T(x) = A(x) x."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n)
        dt, q = x2.dtype, self.q
        pat = self.pattern(x2)
        m = pat.mask.repeat_interleave(q, dim=1).to(dt)  # (B, K·Q)
        a = torch.einsum("bc,cj,ic->bji", m, self.psi_gl_w.to(dt), self.phi_gl_t.to(dt))
        t, w, k = self._root_nodes(pat, dt)
        psi = self.psi(t, k).view(-1, q, self.n)
        phi = self.phi(t, k)[0].view(-1, q, self.n)
        a = a.index_add(0, pat.b, torch.einsum("rq,rqj,rqi->rji", w, psi, phi))
        return a.reshape(*lead, self.n, self.n)

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n:
            raise IatrunError(f"IAT expects inputs of shape (..., {self.n}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        lead = x.shape[:-1]
        return _ExactIATReLU.apply(x.reshape(-1, self.n), self).reshape(*lead, self.n)

    def decoupled(self, p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A(p)·v = ∫_{S(p)} ψ s_v dt (paper Eq. 26): pattern from p, values from v, both (..., n).

        Gradients reach v through A(p)ᵀ and p through the roots (paper Eq. 22).
        """
        self._check(p)
        self._check(v)
        lead = v.shape[:-1]
        out = _ExactDecoupled.apply(p.reshape(-1, self.n), v.reshape(-1, self.n), self)
        return out.reshape(*lead, self.n)


class _ExactIATReLU(torch.autograd.Function):
    """T(x) = A(x) x with backward A(x)ᵀ·grad (paper Eq. 21); the roots carry no gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: ExactIAT) -> torch.Tensor:
        pat = layer.pattern(x)
        y, saved = layer.integrate(x, pat)
        ctx.layer, ctx.pat, ctx.saved = layer, pat, saved
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return ctx.layer.integrate_t(grad, ctx.pat, ctx.saved), None


class _ExactDecoupled(torch.autograd.Function):
    """D(p, v) = ∫_{S(p)} ψ s_v dt and its two gradients.

    ∂D/∂v = A(p). Through a root r of s_p, ∂D_j/∂r = ε_r ψ_j(r) s_v(r) (Leibniz) and
    ∂r/∂p_i = −φ_i(r)/s_p′(r) (paper Eq. 22); since ε_r = −sign s_p′(r) their product is
    φ_i(r) ψ_j(r) s_v(r) / |s_p′(r)|.
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor, v: torch.Tensor, layer: ExactIAT) -> torch.Tensor:
        pat = layer.pattern(p)
        y, saved = layer.integrate(v, pat)
        ctx.layer, ctx.pat, ctx.saved = layer, pat, saved
        ctx.save_for_backward(p, v)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        layer, pat = ctx.layer, ctx.pat
        p, v = ctx.saved_tensors
        grad_v = layer.integrate_t(grad, pat, ctx.saved) if ctx.needs_input_grad[1] else None
        grad_p = None
        if ctx.needs_input_grad[0]:
            phi, dphi = layer.phi(pat.r, pat.k, 1)  # (R, n) each
            psi = layer.psi(pat.r, pat.k)  # (R, n)
            slope = (dphi * p[pat.b]).sum(-1).abs()  # |s_p′(r)| (R,)
            coeff = (phi * v[pat.b]).sum(-1) * (psi * grad[pat.b]).sum(-1) / slope  # s_v(r) ψ(r)·g / |s_p′|
            grad_p = torch.zeros_like(p).index_add(0, pat.b, coeff[:, None] * phi)
        return grad_p, grad_v, None


# ---------------------------------------------------------------------------------------------------
# Convergence of the mesh layer (paper §4.3: T_M → T as M → ∞)


def convergence(
    basis_in: str, basis_out: str, n: int = 16, ratios=range(1, 257), samples: int = 256, seed: int = 0
) -> tuple[list[int], list[float], float]:
    """Relative error ‖T_M(x) − T(x)‖ / ‖T(x)‖ (RMS over random x) of the mesh layer for M = n·r.

    Returns (M values, errors, fitted order p with error ∝ M^(−p), a least-squares slope in log–log).
    """
    from iatrun.iat import IAT

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
