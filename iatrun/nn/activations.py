"""Point-wise nonlinearities σ, shared by the IAT and the element-wise networks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from iatrun.registry import Registry


@dataclass(frozen=True)
class Activation:
    """σ and its derivative σ' (the derivative builds the IAT's Jacobian, SPEC §2)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]


ACTIVATIONS: Registry[Activation] = Registry("activation")


def register_activation(name: str, fn, grad) -> None:
    """Register σ = ``fn`` with derivative ``grad`` under ``name``."""
    ACTIVATIONS.add(name, Activation(fn, grad))


register_activation("relu", torch.relu, lambda z: (z > 0).to(z.dtype))
register_activation("tanh", torch.tanh, lambda z: 1 - torch.tanh(z) ** 2)
register_activation("sigmoid", torch.sigmoid, lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)))
register_activation("identity", lambda z: z, torch.ones_like)


def get_activation(name: str) -> Activation:
    return ACTIVATIONS.get(name)
