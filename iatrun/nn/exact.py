"""The exact (analytic) IAT-ReLU of paper §4.3 and the decoupled product A(p)·v of §4.4 (SPEC §2, §4).

T(x)_j = ∫_{S(x)} ψ_j(t) s_x(t) dt with S(x) = {t : s_x(t) > 0} and s_x = Σ_i x_i φ_i, computed without
a mesh. [-1, 1] is cut into a fixed partition g_0 = -1 < g_1 < … < g_K = 1 holding every breakpoint
of φ and ψ, so that on each cell every basis function is one polynomial in u = (t - g_k)/(g_{k+1} - g_k):

* the built-in piecewise bases (rect, pwl, pwq and the wavelets) have degree ≤ 2 between their knots;
* fourier is cut into ``GRID_PER_FREQ`` cells per unit of its highest frequency m (π/4 radians of
  the fastest component per cell) and replaced on each cell by its Taylor polynomial of degree
  ``FOURIER_DEGREE``, whose remainder (π/4)^16 / 16! ≈ 1e-15 is below float64 rounding.

So the state of a sample on a cell is one polynomial, and its coefficients for the whole batch are a
single matrix product x @ C (B, K·(degree+1)).

Roots. A cell whose one-sided slopes differ in sign holds a critical point c (found by safeguarded
Newton on s′), which splits it into two monotone brackets with at most one root each. Exact for
degree ≤ 2; for fourier an assumption that the fine grid makes safe: a missed pair of critical points
can only hide a pair of roots closer than one cell around a near-double root. Each root is polished
by safeguarded Newton from the secant start (on a linear piece — pwl, pwl-w — the secant start *is*
the closed-form root), falling back to bisection when a step leaves its bracket, to machine
precision. Root finding runs without autograd (paper §4.3).

Integration is closed form. With ε_r = +1 where s falls through a root r (a right end of S) and −1
where it rises,

    ∫_{S ∩ cell k} f = 1[s(g_{k+1}⁻) > 0] ∫_{cell k} f + Σ_{r in cell k} ε_r ∫_{g_k}^{r} f.

Writing ψ_j = Σ_d P[k, j, d] u^d on cell k, T(x)_j = Σ_{k,d} P[k, j, d] μ[k, d] with the moments
μ[k, d] = ∫_{S ∩ cell k} u^d s_x dt, which are exact polynomial integrals. T is then one matrix
product μ @ P, and the backward A(x)ᵀ·g (paper Eq. 21) is the same computation with the roles of
φ and ψ swapped: the moments of γ = Σ_j g_j ψ_j times the φ coefficients. Nothing evaluates a basis
at the roots, so the cost is two matrix products per direction plus work linear in the number of roots.

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

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from iatrun.nn import bases
from iatrun.errors import IatrunError
from iatrun.registry import Registry

# fourier: cells per unit of the highest frequency m (8 per period 2/m), and the Taylor degree per cell.
GRID_PER_FREQ = 4
FOURIER_DEGREE = 15
MAX_NEWTON = 100  # iterations: Newton first, then bisection (53 halvings reach float64 precision)
NEWTON_STEPS = 20


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


def rows(table: torch.Tensor, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """table[b, k] for a contiguous (B, K, E) table: (N, E), through one flat index_select."""
    return table.reshape(-1, table.shape[-1]).index_select(0, b * table.shape[1] + k)


def scatter_rows(table: torch.Tensor, b: torch.Tensor, k: torch.Tensor, values: torch.Tensor) -> None:
    """table[b, k] += values in place for a contiguous (B, K, E) table, repeated (b, k) summed."""
    table.view(-1, table.shape[-1]).index_add_(0, b * table.shape[1] + k, values)


@dataclass
class Pattern:
    """S(x) of a batch, as the exact integration needs it.

    ``mask`` (B, K) bool is 1[s(g_{k+1}⁻) > 0]: cells whose whole integral enters. ``b``, ``k``,
    ``r``, ``eps`` (R,) list every root: its sample, its cell, its position, and ε = +1 where s
    falls through it (a right end of S), -1 where it rises; ``u`` (R,) is the root's position in
    its cell, (r - g_k)/(g_{k+1} - g_k). ``coef`` (B, K, D+1) are the state's pieces.
    """

    mask: torch.Tensor
    b: torch.Tensor
    k: torch.Tensor
    r: torch.Tensor
    eps: torch.Tensor
    u: torch.Tensor
    coef: torch.Tensor


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
        edges = partition(n, basis_in, basis_out)  # (K+1,)
        self.k_cells = len(edges) - 1
        width = edges.diff()

        def buf(name: str, value: torch.Tensor) -> None:
            self.register_buffer(name, value, persistent=False)

        buf("edges", edges)
        buf("width", width)
        buf("inv_w", 1 / width)
        # Input basis: scaled to sup-norm 1 over [-1, 1] (SPEC §3).
        coef_in = piece_coefficients(basis_in, n, edges) / bases.sup_norms(basis_in, n)[:, None]
        # Output basis: scaled to exact ∫|ψ_j| = 1.
        raw = piece_coefficients(basis_out, n, edges)
        desc_out = EXACT.get(basis_out)
        if desc_out.abs_integral is not None:
            mass = desc_out.abs_integral(n)
        elif desc_out.degree <= 2:
            mass = abs_integral_piecewise(raw, width)
        else:
            raise IatrunError(f"output basis {basis_out!r} needs an exact abs_integral (degree > 2)")
        if torch.any(mass <= 0):
            raise IatrunError(f"output basis {basis_out!r} has a function with zero integral of |ψ| (n={n})")
        buf("scale_out", 1 / mass)
        coef_out = raw * self.scale_out[:, None]
        buf("coef_in", coef_in)  # (K, n, E)
        buf("coef_out", coef_out)  # (K, n, D)
        self.e_in, self.d_out = coef_in.shape[-1], coef_out.shape[-1]
        # x @ c_in: the state's pieces (B, K·E); μ @ p_out: T from the moments (B, K·D) -> (B, n).
        buf("c_in", coef_in.permute(1, 0, 2).reshape(n, -1).contiguous())
        buf("p_out", coef_out.permute(1, 0, 2).reshape(n, -1).contiguous())
        # Tables stay float64 until the module is cast; every use casts them to the input's dtype.

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, basis_in={self.basis_in!r}, basis_out={self.basis_out!r}, "
            f"cells={self.k_cells}, degrees=({self.e_in - 1}, {self.d_out - 1})"
        )

    # -- basis evaluation at arbitrary points t (N,) lying in cells k (N,) ------------------------

    def _local(self, t: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_w = self.inv_w.to(t.dtype)[k]
        return (t - self.edges.to(t.dtype)[k]) * inv_w, inv_w

    def phi(self, t: torch.Tensor, k: torch.Tensor, order: int = 0) -> list[torch.Tensor]:
        """[φ, φ′, …] at t in cells k, each (N, n), normalised to sup-norm 1."""
        u, inv_w = self._local(t, k)
        return poly(self.coef_in.to(t.dtype)[k], u[:, None], inv_w[:, None], order)

    def state_coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """The pieces of s_x = Σ_i x_i φ_i: (B, K, E), s_x = Σ_e c[b, k, e] u^e on cell k."""
        return (x @ self.c_in.to(x.dtype)).view(x.shape[0], self.k_cells, self.e_in)

    # -- the activation pattern ------------------------------------------------------------------

    @torch.no_grad()
    def pattern(self, x: torch.Tensor, coef: torch.Tensor | None = None) -> Pattern:
        """Roots of s_x and the cell mask for a batch x (B, n); runs outside autograd (paper §4.3)."""
        x = x.detach()
        coef = self.state_coefficients(x) if coef is None else coef.detach()
        dt = x.dtype
        tol = 8 * torch.finfo(dt).eps
        edges, inv_w = self.edges.to(dt), self.inv_w.to(dt)
        e = self.e_in
        # One-sided values and slopes at both ends of every cell, each (B, K): s(1) = Σ c_e, s′(1) ∝ Σ e c_e.
        ends = torch.stack([torch.ones(e, dtype=dt), torch.arange(e, dtype=dt)], 1).to(x.device)
        s_r, d_r = (coef @ ends).unbind(-1)
        s_l, d_l = coef[..., 0], (coef[..., 1] if e > 1 else torch.zeros_like(s_r))
        d_l, d_r = d_l * inv_w, d_r * inv_w
        lo_edge, hi_edge = edges[:-1].expand_as(s_l), edges[1:].expand_as(s_l)

        def state(b, k, order):  # t -> [s, s′, …] of the pieces (b, k) at points t
            c = rows(coef, b, k)
            return lambda t, i=slice(None): poly(c[i], *self._local(t, k[i]), order)

        # 1) A critical point c splits a cell whose one-sided slopes differ in sign (Newton on s′).
        crit_t, crit_s = hi_edge.clone(), s_r.clone()  # (B, K); c = g_{k+1} where there is none
        cb, ck = torch.nonzero(d_l * d_r < 0, as_tuple=True)
        if len(cb):
            fn = state(cb, ck, 2)
            c = newton(lambda t, i: fn(t, i)[1:], edges[ck], edges[ck + 1], d_l[cb, ck], d_r[cb, ck], tol)
            crit_t[cb, ck], crit_s[cb, ck] = c, state(cb, ck, 0)(c)[0]

        # 2) Two monotone brackets per cell, [g_k, c] and [c, g_{k+1}]; a root where 1[s > 0] flips.
        brackets = ((lo_edge, s_l, crit_t, crit_s), (crit_t, crit_s, hi_edge, s_r))
        found = []
        for lo, f_lo, hi, f_hi in brackets:
            rb, rk = torch.nonzero((f_lo > 0) != (f_hi > 0), as_tuple=True)
            found.append((rb, rk, lo[rb, rk], hi[rb, rk], f_lo[rb, rk], f_hi[rb, rk]))
        rb, rk, lo, hi, f_lo, f_hi = (torch.cat(parts) for parts in zip(*found, strict=True))

        # 3) Polish every root to machine precision (safeguarded Newton; closed form on linear pieces).
        r = newton(state(rb, rk, 1), lo, hi, f_lo, f_hi, tol) if len(rb) else lo
        eps = torch.where(f_lo > 0, 1.0, -1.0).to(dt)
        u = ((r - edges[rk]) * inv_w[rk]).clamp(0, 1)
        return Pattern(mask=s_r > 0, b=rb, k=rk, r=r, eps=eps, u=u, coef=coef)

    # -- integration -----------------------------------------------------------------------------

    def moments(self, coef: torch.Tensor, pat: Pattern, degree: int) -> torch.Tensor:
        """μ[b, k, d] = ∫_{S ∩ cell k} u^d q_b dt for d ≤ ``degree`` and pieces q (B, K, E'): (B, K, d+1).

        Exact: ∫_0^a u^d Σ_e c_e u^e w du = w Σ_e c_e a^(d+e+1) / (d+e+1), with a = 1 on whole cells
        inside S (the mask) and a = u_r, signed by ε_r, for the partial cell up to each root.
        """
        dt = coef.dtype
        e_n = coef.shape[-1]
        d = torch.arange(degree + 1, device=coef.device)
        e = torch.arange(e_n, device=coef.device)
        expo = d[:, None] + e[None, :] + 1  # (D, E')
        hilbert = 1 / expo.to(dt)
        w = self.width.to(dt)
        scale = (w * pat.mask)[..., None]
        # (B, K, D); the mask multiplies whichever side is smaller
        mu = (coef @ hilbert.T) * scale if e_n > degree + 1 else (coef * scale) @ hilbert.T
        if len(pat.b):
            c = rows(coef, pat.b, pat.k) * (pat.eps * w[pat.k])[:, None]  # (R, E')
            upow = pat.u[:, None].expand(-1, int(expo.max())).cumprod(1)  # (R, P): u^1 … u^P
            windows = upow.unfold(1, e_n, 1)[:, : degree + 1]  # (R, D, E'): u^(d+e+1), a view
            part = (windows * hilbert * c[:, None, :]).sum(-1)  # (R, D)
            scatter_rows(mu, pat.b, pat.k, part)
        return mu

    def integrate(self, coef_v: torch.Tensor, pat: Pattern) -> torch.Tensor:
        """D(v)_j = ∫_{S} ψ_j s_v dt (B, n) for pieces ``coef_v`` of s_v under the pattern S."""
        mu = self.moments(coef_v, pat, self.d_out - 1)  # (B, K, D)
        return mu.view(mu.shape[0], -1) @ self.p_out.to(mu.dtype).T

    def output_pieces(self, grad: torch.Tensor) -> torch.Tensor:
        """The pieces of γ = Σ_j g_j ψ_j for output gradients g (B, n): (B, K, D)."""
        return (grad @ self.p_out.to(grad.dtype)).view(grad.shape[0], self.k_cells, self.d_out)

    def to_input(self, nu: torch.Tensor) -> torch.Tensor:
        """Σ_{k,e} ν[b, k, e] c_in[k, i, e] for rows ν (B, K, E) against the φ pieces: (B, n)."""
        return nu.view(nu.shape[0], -1) @ self.c_in.to(nu.dtype).T

    def integrate_t(self, grad: torch.Tensor, pat: Pattern) -> torch.Tensor:
        """A(S)ᵀ·grad, A_ji = ∫_S ψ_j φ_i dt (paper Eq. 21): (B, n), via the moments of γ = Σ_j g_j ψ_j."""
        return self.to_input(self.moments(self.output_pieces(grad), pat, self.e_in - 1))

    def activation_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """A(x)_ji = ∫_{S(x)} ψ_j φ_i dt (paper Eq. 18), shape (..., n, n); T(x) = A(x) x."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n)
        pat = self.pattern(x2)
        bsz, e_n = x2.shape[0], self.e_in
        # ∫_{S ∩ cell k} u^d u^e dt for every d ≤ D-1, e ≤ E-1: the moments of the monomials u^e.
        eye = torch.eye(e_n, dtype=x2.dtype, device=x2.device)
        m = torch.stack(
            [self.moments(eye[i].expand(bsz, self.k_cells, e_n), pat, self.d_out - 1) for i in range(e_n)], -1
        )  # (B, K, D, E)
        a = torch.einsum("kjd,bkde,kie->bji", self.coef_out.to(x2.dtype), m, self.coef_in.to(x2.dtype))
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

    def joint(self, p: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T(p), A(p)·v) with one root search; the same values and gradients as ``self(p)`` and
        ``self.decoupled(p, v)``."""
        self._check(p)
        self._check(v)
        lead = v.shape[:-1]
        t, d = _ExactJoint.apply(p.reshape(-1, self.n), v.reshape(-1, self.n), self)
        return t.reshape(*lead, self.n), d.reshape(*lead, self.n)


class _ExactIATReLU(torch.autograd.Function):
    """T(x) = A(x) x with backward A(x)ᵀ·grad (paper Eq. 21); the roots carry no gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: ExactIAT) -> torch.Tensor:
        pat = layer.pattern(x)
        ctx.layer, ctx.pat = layer, pat
        return layer.integrate(pat.coef, pat)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return ctx.layer.integrate_t(grad, ctx.pat), None


def _root_rows(layer: ExactIAT, pat: Pattern, coef_v: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """∂/∂p of ⟨g, ∫_{S(p)} ψ s_v dt⟩ through the roots of s_p (paper Eq. 22), as rows for
    :meth:`ExactIAT.to_input`: (B, K, E). ``gamma`` are the pieces of γ = Σ_j g_j ψ_j.

    Through a root r, ∂D_j/∂r = ε_r ψ_j(r) s_v(r) (Leibniz) and ∂r/∂p_i = −φ_i(r)/s_p′(r); since
    ε_r = −sign s_p′(r) their product is φ_i(r) ψ_j(r) s_v(r) / |s_p′(r)|.
    """
    dt = gamma.dtype
    b, k, u = pat.b, pat.k, pat.u
    inv_w = layer.inv_w.to(dt)[k]
    s_v = poly(rows(coef_v, b, k), u, inv_w, 0)[0]  # s_v(r) (R,)
    g_psi = poly(rows(gamma, b, k), u, inv_w, 0)[0]  # Σ_j g_j ψ_j(r) (R,)
    slope = poly(rows(pat.coef, b, k), u, inv_w, 1)[1].abs()  # |s_p′(r)| (R,)
    coeff = s_v * g_psi / slope
    # Σ_r coeff_r φ_i(r) = Σ_r coeff_r Σ_e c_in[k, i, e] u_r^e: scatter coeff_r u_r^e into rows.
    upow = u[:, None] ** torch.arange(layer.e_in, device=u.device, dtype=dt)  # (R, E)
    acc = torch.zeros(gamma.shape[0], layer.k_cells, layer.e_in, dtype=dt, device=gamma.device)
    scatter_rows(acc, b, k, coeff[:, None] * upow)
    return acc


class _ExactDecoupled(torch.autograd.Function):
    """D(p, v) = ∫_{S(p)} ψ s_v dt: ∂D/∂v = A(p), and ∂D/∂p through the roots (:func:`_root_rows`)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, v: torch.Tensor, layer: ExactIAT) -> torch.Tensor:
        pat = layer.pattern(p)
        coef_v = layer.state_coefficients(v.detach())
        ctx.layer, ctx.pat, ctx.coef_v = layer, pat, coef_v
        return layer.integrate(coef_v, pat)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        layer, pat = ctx.layer, ctx.pat
        gamma = layer.output_pieces(grad)  # shared by both gradients
        grad_v = grad_p = None
        if ctx.needs_input_grad[1]:
            grad_v = layer.to_input(layer.moments(gamma, pat, layer.e_in - 1))
        if ctx.needs_input_grad[0]:
            grad_p = layer.to_input(_root_rows(layer, pat, ctx.coef_v, gamma))
        return grad_p, grad_v, None


class _ExactJoint(torch.autograd.Function):
    """(T(p), D(p, v)) from one root search: a decoupled layer's pattern path and value path."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, v: torch.Tensor, layer: ExactIAT):
        pat = layer.pattern(p)
        coef_v = layer.state_coefficients(v.detach())
        ctx.layer, ctx.pat, ctx.coef_v = layer, pat, coef_v
        return layer.integrate(pat.coef, pat), layer.integrate(coef_v, pat)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_t: torch.Tensor, grad_d: torch.Tensor):
        layer, pat = ctx.layer, ctx.pat
        gamma_d = layer.output_pieces(grad_d)
        grad_v = grad_p = None
        if ctx.needs_input_grad[1]:
            grad_v = layer.to_input(layer.moments(gamma_d, pat, layer.e_in - 1))
        if ctx.needs_input_grad[0]:  # A(p)ᵀ g_T (Eq. 21) plus the value path's root term, one product
            nu = layer.moments(layer.output_pieces(grad_t), pat, layer.e_in - 1)
            grad_p = layer.to_input(nu + _root_rows(layer, pat, ctx.coef_v, gamma_d))
        return grad_p, grad_v, None


# ---------------------------------------------------------------------------------------------------
# Convergence of the mesh layer (paper §4.3: T_M → T as M → ∞)


def convergence(
    basis_in: str, basis_out: str, n: int = 16, ratios=range(1, 257), samples: int = 256, seed: int = 0
) -> tuple[list[int], list[float], float]:
    """Relative error ‖T_M(x) − T(x)‖ / ‖T(x)‖ (RMS over random x) of the mesh layer for M = n·r.

    Returns (M values, errors, fitted order p with error ∝ M^(−p), a least-squares slope in log–log).
    """
    from iatrun.nn.iat import IAT

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
