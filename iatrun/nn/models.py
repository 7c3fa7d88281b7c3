"""Networks of SPEC §4: affine layers with element-wise or IAT activations, from a registry."""

from __future__ import annotations

import inspect
import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.nn.decoupled import DecoupledMLP
from iatrun.nn.iat import IAT, check_options
from iatrun.nn.layers import MLP, NORMS, ActFactory, Elementwise
from iatrun.registry import Registry

MODELS: Registry[Callable[..., ActFactory]] = Registry("model")


def register_model(name: str, **props) -> Callable:
    """Register ``builder(**options) -> (n -> activation module)`` as a model kind."""
    return MODELS.register(name, **props)


for _name in ("relu", "tanh", "sigmoid"):
    MODELS.add(_name, lambda _a=_name: lambda n: Elementwise(_a), elementwise=True)


@register_model("iat", elementwise=False)
def _iat(
    *,
    basis_in: str = "fourier",
    basis_out: str = "pwq",
    mesh_ratio: int = 4,
    method: str = "mesh",
    sigma: str = "relu",
    wavelets: str = "single",
):
    """IAT activations; ``wavelets`` picks the wavelet family pwl-w and rect-w stand for
    (``single``: one scale on interior nodes; ``dyadic``: multiscale, :func:`iatrun.nn.bases.pwl_wd`)."""
    basis_in, basis_out = (bases.family_basis(b, wavelets) for b in (basis_in, basis_out))
    check_options(basis_in, basis_out, mesh_ratio, sigma, method)  # fail before any layer is built
    return lambda n: IAT(n, basis_in, basis_out, mesh_ratio, sigma, method)


@register_model("decoupled", elementwise=False, network=DecoupledMLP)
def _decoupled(
    *,
    basis_in: str = "fourier",
    basis_out: str = "pwq",
    mesh_ratio: int = 4,
    method: str = "exact",
    sigma: str = "relu",
    wavelets: str = "single",
):
    """Paper §4.4: value network W on the activation matrices of a pattern network θ (iatrun.decoupled)."""
    if sigma != "relu":
        raise IatrunError(f"the decoupled model needs sigma 'relu', got {sigma!r}")
    return _iat(
        basis_in=basis_in,
        basis_out=basis_out,
        mesh_ratio=mesh_ratio,
        method=method,
        sigma=sigma,
        wavelets=wavelets,
    )


def model_options(kind: str) -> list[str]:
    """The options a model kind accepts (beyond ``norm``)."""
    return list(inspect.signature(MODELS.get(kind)).parameters)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise IatrunError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def layer_seed(seed: int, index: int, fan_in: int, fan_out: int) -> int:
    """A generator seed depending only on (seed, layer position and shape) (SPEC §4)."""
    return zlib.crc32(f"iatrun:{seed}:{index}:{fan_in}:{fan_out}".encode())


@torch.no_grad()
def init_weights(model: MLP, seed: int) -> None:
    """PyTorch's default nn.Linear initialisation, U(±1/√fan_in), drawn from per-layer seeds.

    A decoupled network's pattern layers (``pattern_linears``) continue the layer index after
    ``linears``, so its value network gets exactly the weights of every other kind.
    """
    layers = list(model.linears) + list(getattr(model, "pattern_linears", []))
    for i, lin in enumerate(layers):
        fan_out, fan_in = lin.weight.shape
        g = torch.Generator().manual_seed(layer_seed(seed, i, fan_in, fan_out))
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1
        b = torch.rand(lin.bias.shape, generator=g, dtype=torch.float64) * 2 - 1
        lin.weight.copy_(w * bound)
        lin.bias.copy_(b * bound)


def build_model(
    kind: str, d: int, n: int, depth: int, o: int, *, seed: int = 0, norm: str = "gain", **options
) -> MLP:
    """Build a network of ``kind`` (``iatrun list models``) with seeded initial weights.

    The same ``seed`` and ``(d, n, depth, o)`` give the same weights for every kind.
    """
    builder = MODELS.get(kind)
    for name, value in (("d", d), ("width n", n), ("depth", depth), ("o", o)):
        _positive_int(name, value)
    allowed = model_options(kind)
    extra = sorted(set(options) - set(allowed))
    if extra:
        ok = ", ".join(allowed) if allowed else "none"
        raise IatrunError(f"model {kind!r} takes no option {extra[0]!r} (its options: {ok})")
    if norm not in NORMS:
        raise IatrunError(f"unknown norm {norm!r} (known: {', '.join(NORMS)})")
    network = MODELS.entry(kind).props.get("network", MLP)
    model = network(d, n, depth, o, builder(**options), norm=norm)
    init_weights(model, seed)
    return model


def model_from_config(cfg: Mapping[str, Any], *, d: int, o: int) -> MLP:
    """The network a run config describes: ``cfg["model"]`` (kind, width, depth, options) and its seed."""
    m = dict(cfg["model"])
    kind = MODELS.check(m.pop("kind"))
    width, depth = m.pop("width"), m.pop("depth")
    return build_model(kind, d, width, depth, o, seed=int(cfg.get("seed", 0)), **m)
