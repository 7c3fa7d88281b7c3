"""The basis functions of the IAT (SPEC §3, paper Table 1) and their normalised mesh matrices.

A basis is one function ``(n, t) -> Tensor[len(t), n]`` giving the *unnormalised* φ_i(t) on
[-1, 1], registered with :func:`register_basis`. :func:`input_matrix` and :func:`output_matrix`
build Φ and Ψ on the midpoint mesh with SPEC §3's normalisations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

from iatrun.errors import IatrunError
from iatrun.registry import Registry

BasisFn = Callable[[int, torch.Tensor], torch.Tensor]

BASES: Registry[BasisFn] = Registry("basis")

PROPERTIES = ("continuous", "smooth", "global_", "zero_integral")

# Points used to measure the sup-norm of a basis that does not declare one.
_SUP_GRID = 200_001


def register_basis(
    name: str,
    *,
    continuous: bool,
    smooth: bool,
    global_: bool,
    zero_integral: bool,
    sup_norm: float | None = None,
    dyadic_of: str | None = None,
) -> Callable[[BasisFn], BasisFn]:
    """Register ``fn(n, t) -> Tensor[len(t), n]`` as a basis.

    ``sup_norm`` is max |φ_i| over [-1, 1] of the unnormalised functions; when omitted it is
    measured per function on a fine grid. ``dyadic_of`` marks the basis as the dyadic multiscale
    member of a wavelet's family: it stands in for that wavelet under ``model.wavelets=dyadic`` and
    is not a row or column of its own in the paper's tables (:func:`table_bases`).
    """
    return BASES.register(
        name,
        continuous=continuous,
        smooth=smooth,
        global_=global_,
        zero_integral=zero_integral,
        sup_norm=sup_norm,
        dyadic_of=dyadic_of,
    )


WAVELET_FAMILIES = ("single", "dyadic")


def table_bases() -> list[str]:
    """The bases that are rows and columns of the paper's tables (``all`` in a grid)."""
    return BASES.names(dyadic_of=None)


def family_basis(name: str, family: str) -> str:
    """The basis that plays ``name`` in wavelet ``family``: its dyadic member, or ``name`` itself."""
    if family not in WAVELET_FAMILIES:
        raise IatrunError(f"unknown wavelet family {family!r} (known: {', '.join(WAVELET_FAMILIES)})")
    check_basis(name)
    if family == "dyadic":
        members = BASES.names(dyadic_of=name)
        return members[0] if members else name
    return name


def mesh(m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Midpoints t_k = -1 + (2k - 1)/M, k = 1..M (SPEC §1)."""
    k = torch.arange(1, m + 1, dtype=dtype)
    return -1 + (2 * k - 1) / m


def _cells(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """Left ends a_i of the n equal cells of [-1, 1], and their width h."""
    h = 2.0 / n
    return -1 + h * torch.arange(n, dtype=dtype), h


def _wavelet_grid(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """Interior nodes x_i = -1 + (i + 1) w, w = 2/(n + 1), on which the wavelets sit (SPEC §3)."""
    w = 2.0 / (n + 1)
    return -1 + w * torch.arange(1, n + 1, dtype=dtype), w


@register_basis("rect", continuous=False, smooth=False, global_=False, zero_integral=False, sup_norm=1.0)
def rect(n: int, t: torch.Tensor) -> torch.Tensor:
    """Indicator of cell I_i = [a_i, a_i + h); t = 1 belongs to the last cell."""
    a, h = _cells(n, t.dtype)
    idx = torch.clamp(torch.floor((t + 1) / h), 0, n - 1).long()  # (T,) cell of each t
    inside = (t >= -1) & (t <= 1)
    out = torch.zeros(len(t), n, dtype=t.dtype)
    out[torch.arange(len(t)), idx] = inside.to(t.dtype)
    return out


@register_basis("pwl", continuous=True, smooth=False, global_=False, zero_integral=False, sup_norm=1.0)
def pwl(n: int, t: torch.Tensor) -> torch.Tensor:
    """Hat function max(0, 1 - |t - c_i|/h) centred on each cell."""
    a, h = _cells(n, t.dtype)
    u = (t[:, None] - (a + h / 2)[None, :]) / h
    return torch.clamp(1 - u.abs(), min=0)


@register_basis("pwq", continuous=True, smooth=True, global_=False, zero_integral=False, sup_norm=0.75)
def pwq(n: int, t: torch.Tensor) -> torch.Tensor:
    """Quadratic B-spline centred on each cell, support [c_i - 1.5h, c_i + 1.5h], peak 3/4 (C¹)."""
    a, h = _cells(n, t.dtype)
    u = ((t[:, None] - (a + h / 2)[None, :]) / h).abs()
    inner = 0.75 - u**2
    outer = 0.5 * torch.clamp(1.5 - u, min=0) ** 2
    return torch.where(u <= 0.5, inner, outer)


@register_basis("fourier", continuous=True, smooth=True, global_=True, zero_integral=True, sup_norm=1.0)
def fourier(n: int, t: torch.Tensor) -> torch.Tensor:
    """For i = 1..n: sin(π m t) for odd i, cos(π m t) for even i, m = ⌈i/2⌉."""
    i = torch.arange(1, n + 1)
    m = torch.ceil(i / 2).to(t.dtype)
    arg = math.pi * t[:, None] * m[None, :]
    return torch.where((i % 2 == 1)[None, :], torch.sin(arg), torch.cos(arg))


@register_basis("pwl-w", continuous=True, smooth=False, global_=False, zero_integral=True, sup_norm=1.0)
def pwl_w(n: int, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear wavelet through (x-w, 0), (x-w/2, 1), (x+w/2, -1), (x+w, 0) on J_i."""
    x, w = _wavelet_grid(n, t.dtype)
    u = (t[:, None] - x[None, :]) / w  # position in units of w; support u ∈ [-1, 1)
    up = 2 * (u + 1)  # rising edge on [-1, -1/2]
    down = -2 * u  # falling edge on [-1/2, 1/2]
    back = 2 * (u - 1)  # return edge on [1/2, 1]
    out = torch.where(u < -0.5, up, torch.where(u < 0.5, down, back))
    return torch.where((u >= -1) & (u < 1), out, torch.zeros_like(out))


@register_basis("rect-w", continuous=False, smooth=False, global_=False, zero_integral=True, sup_norm=1.0)
def rect_w(n: int, t: torch.Tensor) -> torch.Tensor:
    """Haar wavelet on J_i: +1 on [x_i - w, x_i), -1 on [x_i, x_i + w)."""
    x, w = _wavelet_grid(n, t.dtype)
    d = t[:, None] - x[None, :]
    pos = ((d >= -w) & (d < 0)).to(t.dtype)
    neg = ((d >= 0) & (d < w)).to(t.dtype)
    return pos - neg


def dyadic_supports(n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Left ends a_i and half-widths w_i of n dyadic wavelet supports [a_i, a_i + 2 w_i], coarse to fine.

    Level j has 2^j supports of length 2/2^j tiling [-1, 1]; levels fill in order, and the last,
    partial level takes evenly spaced ones so the finest functions cover the whole interval.
    """
    a, w = [], []
    level, left = 0, n
    while left > 0:
        count = 2**level
        ks = range(count) if left >= count else [(i * count) // left for i in range(left)]
        a += [-1 + 2 * k / count for k in ks]
        w += [1 / count] * len(ks)
        left -= len(ks)
        level += 1
    return torch.tensor(a, dtype=dtype), torch.tensor(w, dtype=dtype)


def dyadic_levels(n: int) -> int:
    """The finest level J of n dyadic wavelets: 1 + 2 + … + 2^J >= n."""
    return max(0, math.ceil(math.log2(n + 1)) - 1)


@register_basis(
    "pwl-wd",
    continuous=True,
    smooth=False,
    global_=False,
    zero_integral=True,
    sup_norm=1.0,
    dyadic_of="pwl-w",
)
def pwl_wd(n: int, t: torch.Tensor) -> torch.Tensor:
    """Dyadic piecewise-linear wavelets: the pwl-w shape on each dyadic support, coarse to fine."""
    a, w = dyadic_supports(n, t.dtype)
    u = (t[:, None] - (a + w)[None, :]) / w  # position from the support's centre, in half-widths
    out = torch.where(u < -0.5, 2 * (u + 1), torch.where(u < 0.5, -2 * u, 2 * (u - 1)))
    return torch.where((u >= -1) & (u < 1), out, torch.zeros_like(out))


@register_basis(
    "rect-wd",
    continuous=False,
    smooth=False,
    global_=False,
    zero_integral=True,
    sup_norm=1.0,
    dyadic_of="rect-w",
)
def rect_wd(n: int, t: torch.Tensor) -> torch.Tensor:
    """Dyadic Haar wavelets: +1 on the left half of each dyadic support, -1 on the right, coarse to fine."""
    a, w = dyadic_supports(n, t.dtype)
    d = t[:, None] - a[None, :]
    pos = ((d >= 0) & (d < w[None, :])).to(t.dtype)
    neg = ((d >= w[None, :]) & (d < 2 * w[None, :])).to(t.dtype)
    return pos - neg


def check_basis(name: str) -> str:
    """Return ``name`` if it is a registered basis, else raise with the known names."""
    return BASES.check(name)


def properties(name: str) -> dict[str, bool]:
    """The four Table-1 properties of a basis, keyed continuous / smooth / global / zero_integral."""
    props = BASES.entry(name).props
    return {p.rstrip("_"): bool(props[p]) for p in PROPERTIES}


def evaluate(name: str, n: int, t: torch.Tensor) -> torch.Tensor:
    """Unnormalised basis ``name`` with ``n`` functions at points ``t``: shape (len(t), n)."""
    if n < 1:
        raise IatrunError(f"basis size n must be >= 1, got {n}")
    out = BASES.get(name)(n, t)
    if out.shape != (len(t), n):
        raise IatrunError(f"basis {name!r} returned shape {tuple(out.shape)}, expected ({len(t)}, {n})")
    return out


def sup_norms(name: str, n: int) -> torch.Tensor:
    """max |φ_i| over [-1, 1] for each i: declared, or measured on a fine grid (float64, shape (n,))."""
    declared = BASES.entry(name).props.get("sup_norm")
    if declared is not None:
        return torch.full((n,), float(declared), dtype=torch.float64)
    t = torch.linspace(-1, 1, _SUP_GRID, dtype=torch.float64)
    return evaluate(name, n, t).abs().amax(dim=0)


def input_matrix(name: str, n: int, m: int) -> torch.Tensor:
    """Φ ∈ R^{M×n}, Φ_ki = φ_i(t_k) scaled to sup-norm 1 over [-1, 1] (float64, a fresh copy)."""
    return _input_matrix(name, n, m).clone()


def output_matrix(name: str, n: int, m: int) -> torch.Tensor:
    """Ψ ∈ R^{M×n}, scaled so that (2/M) Σ_k |Ψ_kj| = 1: ∫|ψ_j| = 1 under the mesh rule (float64)."""
    return _output_matrix(name, n, m).clone()


# Sweeps build the same (basis, n, M) matrices many times; registrations never change a name's
# function (duplicates are refused), so the matrices can be cached.
@lru_cache(maxsize=256)
def _input_matrix(name: str, n: int, m: int) -> torch.Tensor:
    norms = sup_norms(name, n)
    if torch.any(norms <= 0):
        raise IatrunError(f"basis {name!r} has a function that is zero on [-1, 1] for n={n}")
    return evaluate(name, n, mesh(m)) / norms


@lru_cache(maxsize=256)
def _output_matrix(name: str, n: int, m: int) -> torch.Tensor:
    psi = evaluate(name, n, mesh(m))
    mass = (2.0 / m) * psi.abs().sum(dim=0)
    if torch.any(mass <= 0):
        raise IatrunError(
            f"output basis {name!r} vanishes on every point of an M={m} mesh for n={n}; "
            "use a larger mesh ratio"
        )
    return psi / mass
