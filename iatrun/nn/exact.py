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

Waits on the device. The number of roots depends on the data, so a forward cannot avoid asking the
device for it; it asks as little as it can. Per call: one ``nonzero`` for the cells holding a critical
point, one for the roots of both brackets of every cell together, and the root polishing of
:func:`iatrun.nn.pieces.newton`: on the CPU one read per iteration (it drops converged roots, which
is faster there), elsewhere one read per ``NEWTON_CHECK`` iterations (every root iterates until all
have converged; the same roots bit for bit). Every table, including the one giving a piece's value
and slope at its right end, is built once on the layer's device; shapes derived from the degrees
(the powers u^1 … u^P of the moments) are known on the host and never read back.

Normalisation: φ_i is scaled to sup-norm 1 (SPEC §3); ψ_j is scaled by the *exact* ∫_{-1}^{1} |ψ_j| dt,
not by the M-point rule, so the mesh layer T_M converges to this T as M → ∞ (the mesh normalisation
itself converges at O(M⁻²)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.nn.pieces import (
    EXACT,
    abs_integral_piecewise,
    check_exact,
    newton,
    partition,
    piece_coefficients,
    poly,
    rows,
    scatter_rows,
)

__all__ = ["ExactIAT", "Pattern", "check_exact"]


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
        e = torch.arange(self.e_in, dtype=torch.float64)  # a piece's value and u-slope at u = 1: coef @ ends
        buf("ends", torch.stack([torch.ones_like(e), e], 1))  # (E, 2)
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
        s_r, d_r = (coef @ self.ends.to(dt)).unbind(-1)
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
        lo_all, f_lo_all = torch.stack([lo_edge, crit_t]), torch.stack([s_l, crit_s])  # (2, B, K)
        hi_all, f_hi_all = torch.stack([crit_t, hi_edge]), torch.stack([crit_s, s_r])
        side, rb, rk = torch.nonzero((f_lo_all > 0) != (f_hi_all > 0), as_tuple=True)
        lo, hi = lo_all[side, rb, rk], hi_all[side, rb, rk]
        f_lo, f_hi = f_lo_all[side, rb, rk], f_hi_all[side, rb, rk]

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
            # (R, P): u^1 … u^P, P = max(d + e + 1) = degree + E', known without asking the device
            upow = pat.u[:, None].expand(-1, degree + e_n).cumprod(1)
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
