"""The discretised Integral Activation Transform, T_M(x) = (2/M) Ψᵀ σ(Φx) (SPEC §1–§2)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from iatrun.errors import IatrunError
from iatrun.nn import bases, local
from iatrun.nn.activations import ACTIVATIONS, get_activation
from iatrun.nn.exact import ExactIAT, check_exact

METHODS = ("mesh", "exact")
KERNELS = ("auto", "dense", "banded")
# A side of the layer (Φ or Ψ) is banded when every mesh point touches at most this many basis
# functions (true of every local built-in basis: rect 1, pwl/pwl-w/rect-w 2, pwq 3).
BAND_WIDTH = 3
# ``kernel="auto"`` uses the banded products (:mod:`iatrun.nn.local`) on CPU from the (width n,
# mesh M) below, by number of banded sides; under them the dense matmuls are as fast or faster.
# The banded kernel is a few element-wise passes per mesh slab, so it pays once the slabs are big
# enough to hide a per-call overhead of some 15 µs. Measured on the 2-core CPU (``iatrun bench``,
# section "banded", pwl → pwq, B = 1000, forward+backward; other tenants share the machine, so
# repeated runs differ by up to 30 %): 0.4–0.5× dense at n ≤ 32, 0.85–0.94× at n = 64, 1.8× at
# n = 128, r = 4, 3.6× at n = 128, r = 16, 3.4× at n = 256, r = 4 and 8.8× at n = 256, r = 16. With
# one side banded (fourier on the other; the dense side dominates) the earlier sparse kernel won
# 1.3–1.5× at n = 128, M = 2048 and n = 256, M = 1024 and lost up to 1.4× on smaller meshes.
BANDED_FROM = {2: (128, 512), 1: (128, 1024)}  # banded sides -> (min width n, min mesh M)
RELU_MEAN_SQUARE = 0.5  # E[relu(z)^2] for z ~ N(0, 1): the output spread the gain matches
GAIN_SAMPLES = 8192  # Gaussian inputs of the Monte Carlo spread for σ other than relu
_ROWS = 1024  # mesh rows per block of the closed-form spread (bounds its memory at M·_ROWS floats)


def check_width(n: int) -> int:
    """Return ``n`` if it is a valid IAT width (an integer >= 1), else raise IatrunError."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise IatrunError(f"IAT width n must be an integer >= 1, got {n!r}")
    return n


def check_options(basis_in: str, basis_out: str, mesh_ratio: int, sigma: str, method: str = "mesh") -> None:
    """Raise IatrunError (a ValueError) naming the first bad IAT option (everything but the width)."""
    if isinstance(mesh_ratio, bool) or not isinstance(mesh_ratio, int) or mesh_ratio < 1:
        raise IatrunError(f"mesh_ratio must be an integer >= 1, got {mesh_ratio!r}")
    bases.check_basis(basis_in)
    bases.check_basis(basis_out)
    ACTIVATIONS.check(sigma)
    if method not in METHODS:
        raise IatrunError(f"unknown IAT method {method!r} (known: {', '.join(METHODS)})")
    if method == "exact":
        if sigma != "relu":
            raise IatrunError(f"method 'exact' needs sigma 'relu', got {sigma!r} (use method 'mesh')")
        check_exact(basis_in, basis_out)


def mean_square(basis_in: str, basis_out: str, n: int, mesh_ratio: int, sigma: str = "relu") -> float:
    """E[|T_M(x)|^2] / n for x ~ N(0, I_n): the mean square of one IAT output on Gaussian inputs.

    For σ = relu it is exact: s = Φx is Gaussian with covariance ΦΦᵀ, and for two mesh values
    E[relu(s_k) relu(s_l)] = σ_k σ_l (sin θ + (π − θ) cos θ) / 2π with cos θ their correlation
    (the degree-1 arc-cosine kernel), so E|T|^2 = Σ_kl E[relu(s_k) relu(s_l)] (ΨΨᵀ)_kl with Ψ
    carrying the 2/M weight (SPEC §1). Other σ: a Monte Carlo mean over GAIN_SAMPLES fixed inputs.
    """
    check_width(n)
    check_options(basis_in, basis_out, mesh_ratio, sigma)
    return _mean_square(basis_in, basis_out, n, mesh_ratio, sigma)


@lru_cache(maxsize=256)
def _mean_square(basis_in: str, basis_out: str, n: int, mesh_ratio: int, sigma: str) -> float:
    m = n * mesh_ratio
    phi = bases.input_matrix(basis_in, n, m)  # (M, n), float64
    psi = bases.output_matrix(basis_out, n, m) * (2.0 / m)  # (M, n), quadrature weight in
    if sigma != "relu":
        x = torch.randn(GAIN_SAMPLES, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out = get_activation(sigma).fn(x @ phi.T) @ psi  # (S, n)
        return float(out.pow(2).mean())
    sd = phi.norm(dim=1)  # (M,) standard deviation of each mesh value s_k
    unit = phi / sd.clamp(min=1e-300)[:, None]
    total = 0.0
    for a in range(0, m, _ROWS):
        cos = (unit[a : a + _ROWS] @ unit.T).clamp(-1, 1)  # (R, M) correlations
        j = (1 - cos * cos).clamp(min=0).sqrt() + (math.pi - torch.arccos(cos)) * cos
        kernel = sd[a : a + _ROWS, None] * sd[None, :] * j / (2 * math.pi)  # E[relu(s_k) relu(s_l)]
        total += float((kernel * (psi[a : a + _ROWS] @ psi.T)).sum())
    return total / n


def gain(basis_in: str, basis_out: str, n: int, mesh_ratio: int, sigma: str = "relu") -> float:
    """The fixed factor that gives the IAT's outputs ReLU's mean square on x ~ N(0, I_n) (norm ``gain``).

    sqrt(E[relu(z)^2] / (E|T(x)|^2 / n)). A layer that already has ReLU's spread to 1e-9 gets exactly
    1, so rect/rect with ``norm: gain`` stays ReLU bit for bit.
    """
    g = math.sqrt(RELU_MEAN_SQUARE / mean_square(basis_in, basis_out, n, mesh_ratio, sigma))
    return 1.0 if abs(g - 1.0) < 1e-9 else g


class _IATReLU(torch.autograd.Function):
    """ReLU IAT whose backward keeps only the sign pattern 1[Φx > 0], as a bool tensor.

    Plain autograd would save the float pre-activation (B, M) and the float ReLU output (B, M);
    this saves one byte per mesh value instead (SPEC §2: backprop needs only the pattern).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, phi_t: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        z = (x @ phi_t).clamp_(min=0)  # (B, M) relu of the state on the mesh
        mask = z.bool()  # (B, M) activation pattern: z ≠ 0 after the clamp, i.e. Φx > 0
        y = z @ psi  # (B, n); psi already carries the 2/M weight
        ctx.save_for_backward(mask, phi_t, psi)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        mask, phi_t, psi = ctx.saved_tensors
        # multiplying by the uint8 view of the pattern is cheaper than by the bool tensor itself
        grad_z = (grad_y @ psi.T).mul_(mask.view(torch.uint8))  # (B, M)
        return grad_z @ phi_t.T, None, None


def _autocast(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (it casts the matmuls' inputs itself)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch before 2.4 takes no device type
        return torch.is_autocast_enabled()


def _banded(matrix: torch.Tensor) -> bool:
    """Whether every row of a mesh matrix (M, n) has at most BAND_WIDTH non-zeros."""
    return bool(((matrix != 0).sum(1) <= BAND_WIDTH).all())


class IAT(nn.Module):
    """IAT activation layer on vectors of size ``n`` (input shape ``(..., n)``).

    Args:
        n: width of the layer (number of basis functions).
        basis_in / basis_out: registered basis names (``iatrun list bases``).
        mesh_ratio: integer r ≥ 1; the mesh has M = r·n midpoints.
        sigma: registered point-wise nonlinearity (relu, tanh, sigmoid, identity, ...).
        method: ``"mesh"`` (the M-point midpoint rule, SPEC §1) or ``"exact"`` (σ = relu only:
            roots of s_x and exact integrals, paper §4.3, see :mod:`iatrun.nn.exact`). The mesh
            buffers, :meth:`state` and :meth:`pattern` are the mesh view in both cases.
        kernel: how the mesh products of σ = relu run: ``"dense"`` matmuls, ``"banded"``
            products that skip the zeros of each local side (a mesh point touches ≤ 3 of its basis
            functions; :mod:`iatrun.nn.local`), or
            ``"auto"``: banded on CPU where it measured faster (``BANDED_FROM``), dense
            otherwise. The kernels agree to rounding; the choice
            changes speed only.
        device / dtype: where and in which floating type the mesh tables Φᵀ and Ψ live, like
            torch's own layers (default: the CPU and ``torch.get_default_dtype()``).

    Φᵀ and Ψ are buffers that are not part of the state dict: they follow from the options and are
    rebuilt with the layer, so a saved model holds only its parameters, loads into a layer of
    another mesh ratio, and never carries tables of an older version of the bases. State dicts
    written while they were saved still load (the tables in them are ignored).
    """

    def __init__(
        self,
        n: int,
        basis_in: str = "fourier",
        basis_out: str = "pwq",
        mesh_ratio: int = 4,
        sigma: str = "relu",
        method: str = "mesh",
        kernel: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        check_width(n)
        check_options(basis_in, basis_out, mesh_ratio, sigma, method)
        if kernel not in KERNELS:
            raise IatrunError(f"unknown IAT kernel {kernel!r} (known: {', '.join(KERNELS)})")
        self.kernel = kernel
        self.n, self.mesh_ratio, self.m = n, mesh_ratio, n * mesh_ratio
        self.basis_in, self.basis_out, self.sigma, self.method = basis_in, basis_out, sigma, method
        dtype = dtype or torch.get_default_dtype()
        phi = bases.input_matrix(basis_in, n, self.m)  # (M, n), float64
        psi = bases.output_matrix(basis_out, n, self.m) * (2.0 / self.m)  # (M, n), quadrature weight in
        # Stored transposed/pre-weighted so forward is two plain matmuls: (B,n)@(n,M), (B,M)@(M,n).
        self.register_buffer("phi_t", phi.T.contiguous().to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("psi", psi.contiguous().to(device=device, dtype=dtype), persistent=False)
        self.banded_sides = (_banded(phi), _banded(psi))  # (Φ, Ψ)
        if kernel == "banded" and not any(self.banded_sides):
            raise IatrunError(
                f"kernel 'banded' needs a local basis; {basis_in!r} and {basis_out!r} are both global"
            )
        self._ops_cache: tuple = (None, None)
        if method == "exact":
            self.exact = ExactIAT(n, basis_in, basis_out)
            if device is not None:
                self.exact.to(device=device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # state dicts saved while the tables were persistent hold them: rebuilt here, never read
        for name in ("phi_t", "psi"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __getstate__(self) -> dict:
        """Pickled (``torch.save``, ``copy.deepcopy``, worker processes) without the banded kernel's
        products and work tensors: they are rebuilt on the next forward."""
        state = self.__dict__.copy()
        state["_ops_cache"] = (None, None)
        return state

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, basis_in={self.basis_in!r}, basis_out={self.basis_out!r}, "
            f"mesh_ratio={self.mesh_ratio}, sigma={self.sigma!r}, method={self.method!r}, "
            f"kernel={self.kernel!r}"
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n:
            raise IatrunError(f"IAT expects inputs of shape (..., {self.n}), got {tuple(x.shape)}")
        if x.dtype != self.phi_t.dtype and not _autocast(x.device.type):
            want = str(self.phi_t.dtype).removeprefix("torch.")
            got = str(x.dtype).removeprefix("torch.")
            raise IatrunError(
                f"IAT holds {want} tables but got a {got} input: convert the input (x.to(torch.{want})) "
                f"or the layer (layer.to(torch.{got}))"
            )

    def state(self, x: torch.Tensor) -> torch.Tensor:
        """s_x on the mesh, Φx: shape (..., M)."""
        self._check(x)
        return x @ self.phi_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n)
        if self.method == "exact":
            y = self.exact(x2)
        elif self.sigma == "relu" and self.uses_banded(x2.device):
            y = local.apply(x2, *self._banded_sides())
        elif self.sigma == "relu":
            y = _IATReLU.apply(x2, self.phi_t, self.psi)
        else:
            y = get_activation(self.sigma).fn(x2 @ self.phi_t) @ self.psi
        return y.reshape(*lead, self.n)

    def uses_banded(self, device: torch.device) -> bool:
        """Whether a relu forward on ``device`` runs the banded products (see ``kernel``)."""
        if self.kernel == "auto":
            sides = sum(self.banded_sides)
            if device.type != "cpu" or sides == 0:
                return False
            min_n, min_m = BANDED_FROM[sides]
            return self.n >= min_n and self.m >= min_m
        return self.kernel == "banded"

    def _banded_sides(self) -> tuple:
        """The (Φ, Ψ) products of :mod:`iatrun.nn.local`; rebuilt when the buffers move or change dtype."""
        key = (self.phi_t.data_ptr(), self.psi.data_ptr(), self.phi_t.dtype, self.phi_t.device)
        if self._ops_cache[0] != key:
            sides = tuple(
                local.side(mat, self.mesh_ratio, banded)
                for mat, banded in zip((self.phi_t.T, self.psi), self.banded_sides, strict=True)
            )
            self._ops_cache = (key, sides)
        return self._ops_cache[1]

    def gain(self) -> float:
        """The factor of ``norm: gain`` for this layer (:func:`gain`; the mesh value, also for ``exact``)."""
        return gain(self.basis_in, self.basis_out, self.n, self.mesh_ratio, self.sigma)

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        """The activation pattern on the mesh, 1[Φx > 0]: bool, shape (..., M)."""
        return self.state(x) > 0

    def activation_matrix(self, x: torch.Tensor) -> torch.Tensor:
        """A_M(x) = (2/M) Ψᵀ diag(σ'(Φx)) Φ, shape (..., n, n); the Jacobian ∂T/∂x (SPEC §2).

        For σ = relu, σ' is the pattern and T(x) = A_M(x) x. With ``method="exact"`` this is the
        exact A(x) of paper Eq. 18 instead.
        """
        if self.method == "exact":
            return self.exact.activation_matrix(x)
        d = get_activation(self.sigma).grad(self.state(x))  # (..., M)
        return torch.einsum("mj,...m,im->...ji", self.psi, d, self.phi_t)
