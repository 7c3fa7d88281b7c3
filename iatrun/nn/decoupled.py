"""The decoupled IAT-ReLU network of paper §4.4 (Eq. 24–26, SPEC §4 "Decoupled").

A coupled IAT-ReLU network is a deep linear form y = W_out A(h_L) … W_2 A(h_1)(W_1 x + b_1) + …, in
which the same W both produces the activation matrices and multiplies by them (Eq. 24–25). The
decoupled network (Eq. 26) splits the two roles:

    pattern network (θ):  h′_1 = θ_1 x + c_1,      h′_{l+1} = θ_{l+1} T(h′_l) + c_{l+1}
    value network (W):    h_1  = W_1 x + b_1,      h_{l+1}  = W_{l+1} A(h′_l) h_l + b_{l+1}
                          y    = W_out A(h′_L) h_L + b_out

The value path multiplies by the pattern network's activation matrices A(h′_l), never its own.
With a continuous input basis and ``method="exact"`` the model is continuous in x and θ is trained
through the roots of the pattern states (paper Eq. 22, :class:`iatrun.nn.exact._ExactDecoupled`). With
``method="mesh"`` the discrete pattern 1[Φh′ > 0] has zero gradient, so θ keeps its initial values
(a fixed random gating network) and the model jumps where a mesh sign flips.

Parameters: ``linears`` is the value network with the same (d, n, depth, o) layout as
:class:`iatrun.nn.layers.MLP`, so the same seed gives it the same initial weights as every other kind.
``pattern_linears`` are θ: the depth hidden layers only (d→n, n→n, …) — a pattern network's output
layer would never be used — so the parameter count is that of the coupled network plus
d·n + n + (depth − 1)(n² + n), i.e. twice the coupled count less the output layer (n·o + o).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from iatrun.errors import IatrunError
from iatrun.nn.iat import IAT
from iatrun.nn.layers import make_norm


def apply_pattern(layer: IAT, p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A(p)·v for an IAT-ReLU layer: the pattern of p applied to the values v, both (..., n).

    ``mesh``: (2/M) Ψᵀ D(p) Φ v with D(p) = diag(1[Φp > 0]) (SPEC §2); no gradient reaches p.
    ``exact``: ∫_{S(p)} ψ s_v dt with gradients to v (A(p)ᵀ) and to p (paper Eq. 22).
    """
    if layer.method == "exact":
        return layer.exact.decoupled(p, v)
    mask = (p @ layer.phi_t) > 0  # (..., M) pattern of p on the mesh
    return ((v @ layer.phi_t) * mask) @ layer.psi  # psi carries the 2/M weight


class DecoupledMLP(nn.Module):
    """Value network W driven by the activation matrices of a pattern network θ (paper Eq. 26)."""

    def __init__(
        self, d: int, n: int, depth: int, o: int, act: Callable[[int], nn.Module], norm: str = "none"
    ):
        super().__init__()
        self.d, self.n, self.depth, self.o = d, n, depth, o
        dims = [d] + [n] * depth + [o]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        hidden = zip(dims[:depth], dims[1 : depth + 1], strict=True)  # θ: the hidden layers only
        self.pattern_linears = nn.ModuleList(nn.Linear(a, b) for a, b in hidden)
        self.acts = nn.ModuleList(act(n) for _ in range(depth))
        for a in self.acts:
            if not isinstance(a, IAT) or a.sigma != "relu":
                raise IatrunError("the decoupled network needs IAT-ReLU activations (sigma 'relu')")
        # Separate normalisations for the two paths (BatchNorm keeps running statistics per path).
        self.norms = nn.ModuleList(make_norm(norm, n, a) for a in self.acts)
        self.pattern_norms = nn.ModuleList(make_norm(norm, n, a) for a in self.acts)

    def _layers(self, x: torch.Tensor):
        """Yield (h′_l, h_l, A(h′_l) h_l) for l = 1..L, running both paths with one pattern per layer."""
        p, v = self.pattern_linears[0](x), self.linears[0](x)
        for i, act in enumerate(self.acts):
            last = i + 1 == self.depth
            if last:
                tp, dv = None, apply_pattern(act, p, v)
            elif act.method == "exact":
                tp, dv = act.exact.joint(p, v)  # T(h′_l) and A(h′_l) h_l from one root search
            else:
                tp, dv = act(p), apply_pattern(act, p, v)
            yield p, v, dv
            if not last:
                p = self.pattern_linears[i + 1](self.pattern_norms[i](tp))
                v = self.linears[i + 1](self.norms[i](dv))

    def patterns(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pattern network's hidden states h′_1..h′_L, each (..., n)."""
        return [p for p, _, _ in self._layers(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, (_, _, dv) = self._layers(x)
        return self.linears[-1](self.norms[-1](dv))  # W_out A(h′_L) h_L + b_out (Eq. 26)

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The value network's states h_1..h_L, each (..., n)."""
        return [v for _, v, _ in self._layers(x)]
