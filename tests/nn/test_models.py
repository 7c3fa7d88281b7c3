"""Networks of SPEC §4: equal parameter counts and equal initial weights across kinds."""

import pytest
import torch

from iatrun.errors import IatrunError
from iatrun.nn.models import MODELS, build_model

KINDS = ["relu", "tanh", "sigmoid", "iat"]


def test_registry_has_the_kinds():
    assert set(KINDS) <= set(MODELS.names())


def test_equal_parameter_counts_and_initial_weights():
    models = [build_model(k, 3, 16, 3, 2, seed=7) for k in KINDS]
    models.append(build_model("iat", 3, 16, 3, 2, seed=7, basis_in="rect-w", basis_out="pwl", mesh_ratio=8))
    counts = {sum(p.numel() for p in m.parameters()) for m in models}
    assert counts == {3 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 2 + 2}
    ref = dict(models[0].named_parameters())
    for m in models[1:]:
        for name, p in m.named_parameters():
            assert torch.equal(p, ref[name])


def test_seed_changes_weights_and_default_init_bounds():
    a = build_model("relu", 4, 32, 2, 1, seed=0)
    b = build_model("relu", 4, 32, 2, 1, seed=1)
    assert not torch.equal(a.linears[0].weight, b.linears[0].weight)
    w = a.linears[1].weight
    assert w.abs().max() <= 1 / 32**0.5 and w.abs().max() > 0.9 / 32**0.5


def test_rect_rect_network_equals_relu_network():
    x = torch.randn(64, 3, dtype=torch.float64)
    relu = build_model("relu", 3, 8, 3, 2, seed=3).double()
    iat = build_model("iat", 3, 8, 3, 2, seed=3, basis_in="rect", basis_out="rect", mesh_ratio=2).double()
    assert torch.allclose(relu(x), iat(x), atol=1e-12)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_norm_layers_add_no_parameters(norm):
    base = build_model("iat", 2, 8, 2, 1)
    normed = build_model("iat", 2, 8, 2, 1, norm=norm)
    assert sum(p.numel() for p in normed.parameters()) == sum(p.numel() for p in base.parameters())
    assert normed(torch.randn(5, 2)).shape == (5, 1)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("mlp", 1, 4, 1, 1), {}, r"unknown model 'mlp'"),
        (("relu", 1, 0, 1, 1), {}, "width n must be an integer >= 1, got 0"),
        (("relu", 1, 4, 0, 1), {}, "depth must be an integer >= 1"),
        (("relu", 1, 4, 1, 1), {"basis_in": "pwl"}, "model 'relu' takes no option 'basis_in'"),
        (("iat", 1, 4, 1, 1), {"mesh_ratio": 0}, "mesh_ratio must be an integer >= 1"),
        (("iat", 1, 4, 1, 1), {"norm": "group"}, "unknown norm 'group'"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(IatrunError, match=match):
        build_model(*args, **kwargs)
