"""The building blocks of SPEC §4's networks: element-wise activations, normalisations, the MLP."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from iatrun.errors import IatrunError
from iatrun.nn.activations import get_activation

ActFactory = Callable[[int], nn.Module]  # width n -> one activation module

NORMS = ("none", "gain", "batch", "layer")


class Elementwise(nn.Module):
    """σ applied to each entry: the classical activation."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = get_activation(name).fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class MLP(nn.Module):
    """h_1 = W_1 x + b_1; h_{l+1} = W_{l+1} act(h_l) + b_{l+1}; y = W_out act(h_L) + b_out."""

    def __init__(self, d: int, n: int, depth: int, o: int, act: ActFactory, norm: str = "none"):
        super().__init__()
        self.d, self.n, self.depth, self.o = d, n, depth, o
        dims = [d] + [n] * depth + [o]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.acts = nn.ModuleList(act(n) for _ in range(depth))
        # Normalisation after the activation has no affine parameters, so counts stay equal.
        self.norms = nn.ModuleList(make_norm(norm, n, a) for a in self.acts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linears[0](x)
        for act, norm, lin in zip(self.acts, self.norms, self.linears[1:], strict=True):
            h = lin(norm(act(h)))
        return h

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations h_1..h_L, each (..., n)."""
        hs, h = [], self.linears[0](x)
        for act, norm, lin in zip(self.acts, self.norms, self.linears[1:], strict=True):
            hs.append(h)
            h = lin(norm(act(h)))
        return hs


class Gain(nn.Module):
    """Multiplication by a fixed factor (norm ``gain``): no parameters, no state, no data dependence."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.factor == 1.0 else x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}"


def make_norm(kind: str, n: int, act: nn.Module | None = None) -> nn.Module:
    """The normalisation after activation ``act``: none, gain, batch or layer, never with parameters.

    ``gain`` is the activation's own fixed factor (``act.gain()``, :func:`iatrun.nn.iat.gain` for
    an IAT): 1 for element-wise activations, so the classical baselines are unchanged.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "gain":
        return Gain(act.gain() if hasattr(act, "gain") else 1.0)
    if kind == "batch":
        return nn.BatchNorm1d(n, affine=False)
    if kind == "layer":
        return nn.LayerNorm(n, elementwise_affine=False)
    raise IatrunError(f"unknown norm {kind!r} (known: {', '.join(NORMS)})")
