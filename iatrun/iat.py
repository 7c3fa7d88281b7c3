"""The discretised Integral Activation Transform, T_M(x) = (2/M) Ψᵀ σ(Φx) (SPEC §1–§2)."""

from __future__ import annotations

import torch
from torch import nn

from iatrun import bases
from iatrun.activations import ACTIVATIONS, get_activation
from iatrun.errors import IatrunError

METHODS = ("mesh", "exact")


def check_args(
    n: int, basis_in: str, basis_out: str, mesh_ratio: int, sigma: str, method: str = "mesh"
) -> None:
    """Raise IatrunError (a ValueError) naming the first bad IAT argument."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise IatrunError(f"IAT width n must be an integer >= 1, got {n!r}")
    if isinstance(mesh_ratio, bool) or not isinstance(mesh_ratio, int) or mesh_ratio < 1:
        raise IatrunError(f"mesh_ratio must be an integer >= 1, got {mesh_ratio!r}")
    bases.check_basis(basis_in)
    bases.check_basis(basis_out)
    ACTIVATIONS.check(sigma)
    if method not in METHODS:
        raise IatrunError(f"unknown IAT method {method!r} (known: {', '.join(METHODS)})")
    if method == "exact":
        from iatrun.exact import check_exact

        if sigma != "relu":
            raise IatrunError(f"method 'exact' needs sigma 'relu', got {sigma!r} (use method 'mesh')")
        check_exact(basis_in, basis_out)


class _IATReLU(torch.autograd.Function):
    """ReLU IAT whose backward keeps only the sign pattern 1[Φx > 0], as a bool tensor.

    Plain autograd would save the float pre-activation (B, M) and the float ReLU output (B, M);
    this saves one byte per mesh value instead (SPEC §2: backprop needs only the pattern).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, phi_t: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        z = x @ phi_t  # (B, M) state on the mesh
        mask = z > 0  # (B, M) activation pattern
        y = z.clamp_(min=0) @ psi  # (B, n); psi already carries the 2/M weight
        ctx.save_for_backward(mask, phi_t, psi)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        mask, phi_t, psi = ctx.saved_tensors
        grad_z = (grad_y @ psi.T).mul_(mask)  # (B, M)
        return grad_z @ phi_t.T, None, None


class IAT(nn.Module):
    """IAT activation layer on vectors of size ``n`` (input shape ``(..., n)``).

    Args:
        n: width of the layer (number of basis functions).
        basis_in / basis_out: registered basis names (``iatrun list bases``).
        mesh_ratio: integer r ≥ 1; the mesh has M = r·n midpoints.
        sigma: registered point-wise nonlinearity (relu, tanh, sigmoid, identity, ...).
        method: ``"mesh"`` (the M-point midpoint rule, SPEC §1) or ``"exact"`` (σ = relu only:
            roots of s_x and exact integrals, paper §4.3, see :mod:`iatrun.exact`). The mesh
            buffers, :meth:`state` and :meth:`pattern` are the mesh view in both cases.
    """

    def __init__(
        self,
        n: int,
        basis_in: str = "fourier",
        basis_out: str = "pwq",
        mesh_ratio: int = 4,
        sigma: str = "relu",
        method: str = "mesh",
    ):
        super().__init__()
        check_args(n, basis_in, basis_out, mesh_ratio, sigma, method)
        self.n, self.mesh_ratio, self.m = n, mesh_ratio, n * mesh_ratio
        self.basis_in, self.basis_out, self.sigma, self.method = basis_in, basis_out, sigma, method
        dtype = torch.get_default_dtype()
        phi = bases.input_matrix(basis_in, n, self.m)  # (M, n), float64
        psi = bases.output_matrix(basis_out, n, self.m) * (2.0 / self.m)  # (M, n), quadrature weight in
        # Stored transposed/pre-weighted so forward is two plain matmuls: (B,n)@(n,M), (B,M)@(M,n).
        self.register_buffer("phi_t", phi.T.contiguous().to(dtype))
        self.register_buffer("psi", psi.contiguous().to(dtype))
        if method == "exact":
            from iatrun.exact import ExactIAT

            self.exact = ExactIAT(n, basis_in, basis_out)

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, basis_in={self.basis_in!r}, basis_out={self.basis_out!r}, "
            f"mesh_ratio={self.mesh_ratio}, sigma={self.sigma!r}, method={self.method!r}"
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.n:
            raise IatrunError(f"IAT expects inputs of shape (..., {self.n}), got {tuple(x.shape)}")

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
        elif self.sigma == "relu":
            y = _IATReLU.apply(x2, self.phi_t, self.psi)
        else:
            y = get_activation(self.sigma).fn(x2 @ self.phi_t) @ self.psi
        return y.reshape(*lead, self.n)

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
