"""The decoupled IAT-ReLU network (paper §4.4): root gradients, continuity, parameters, training."""

import pytest
import torch

from iatrun.errors import IatrunError
from iatrun.nn.decoupled import DecoupledMLP, apply_pattern
from iatrun.nn.exact import ExactIAT
from iatrun.nn.iat import IAT
from iatrun.nn.models import build_model

CONTINUOUS = ["pwl", "pwq", "fourier", "pwl-w"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bi", CONTINUOUS)
@pytest.mark.parametrize("bo", ["pwq", "rect-w"])
def test_decoupled_backward_gradcheck(bi, bo):
    """Eq. 22 through the roots (p) and A(p)ᵀ (v) against finite differences, float64."""
    layer = ExactIAT(5, bi, bo).double()
    p = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer.decoupled, (p, v))
    (gp,) = torch.autograd.grad(layer.decoupled(p, v), p, torch.randn(4, 5, dtype=torch.float64))
    if bi == "pwl-w":
        # Every node x_i is a common zero of all pwl-w wavelets, and s is linear between a node and
        # the next half-node: all roots sit on fixed nodes, so the pattern has no gradient at all.
        assert gp.abs().max() < 1e-12
    else:
        assert gp.abs().max() > 1e-3  # θ really receives a gradient through the pattern


def test_joint_pattern_and_value_paths_match_the_separate_ops():
    """One root search gives T(p) and A(p)·v with the gradients of the two separate ops."""
    layer = ExactIAT(6, "fourier", "pwq").double()
    p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    gt, gd = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    t, d = layer.joint(p, v)
    assert torch.equal(t, layer(p)) and torch.equal(d, layer.decoupled(p, v))
    joint = torch.autograd.grad((t * gt).sum() + (d * gd).sum(), (p, v))
    separate = torch.autograd.grad((layer(p) * gt).sum() + (layer.decoupled(p, v) * gd).sum(), (p, v))
    for a, b in zip(joint, separate, strict=True):
        assert torch.allclose(a, b, atol=1e-13)
    assert torch.autograd.gradcheck(layer.joint, (p, v))


def test_root_gradient_vanishes_when_coupled():
    """With v = p the root terms carry s_p(r) = 0 (paper Eq. 21) and D(p, p) = T(p)."""
    layer = ExactIAT(6, "fourier", "pwq").double()
    p = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    v = p.detach().clone().requires_grad_()
    assert torch.allclose(layer.decoupled(p, v), layer(p), atol=1e-14)
    (gp,) = torch.autograd.grad(layer.decoupled(p, v).pow(2).sum(), p)
    assert gp.abs().max() < 1e-10


def test_mesh_pattern_is_a_masked_product():
    layer = IAT(6, "pwl", "pwq", 4).double()
    p, v = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    expected = torch.einsum("bji,bi->bj", layer.activation_matrix(p), v)
    assert torch.allclose(apply_pattern(layer, p, v), expected, atol=1e-14)


def _model(method, bi="fourier", seed=0):
    model = build_model("decoupled", 1, 8, 2, 1, seed=seed, basis_in=bi, basis_out="pwq", method=method)
    return model.double()


def test_parameters_and_initial_weights():
    dec, iat = _model("exact"), build_model("iat", 1, 8, 2, 1, seed=0).double()
    assert isinstance(dec, DecoupledMLP)
    coupled = sum(p.numel() for p in iat.parameters())
    pattern = sum(p.numel() for p in dec.pattern_linears.parameters())
    assert pattern == 1 * 8 + 8 + (8 * 8 + 8)  # d·n + n + (depth−1)(n² + n); no output layer
    assert sum(p.numel() for p in dec.parameters()) == coupled + pattern == 2 * coupled - (8 * 1 + 1)
    for a, b in zip(dec.linears, iat.linears, strict=True):  # value network: seeded like every kind
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(dec.pattern_linears[0].weight, dec.linears[0].weight)
    again = _model("exact")
    assert torch.equal(again.pattern_linears[1].weight, dec.pattern_linears[1].weight)
    assert not torch.equal(_model("exact", seed=1).pattern_linears[1].weight, dec.pattern_linears[1].weight)


def test_theta_learns_only_through_exact_roots():
    x = torch.linspace(-1, 1, 64, dtype=torch.float64)[:, None]
    for method, learns in (("exact", True), ("mesh", False)):
        m = _model(method)
        m(x).pow(2).mean().backward()
        grads = [p.grad for p in m.pattern_linears.parameters()]
        size = max(0.0 if g is None else g.abs().max().item() for g in grads)
        assert (size > 1e-4) == learns, method
        assert all(p.grad.abs().max() > 0 for p in m.linears.parameters())


def test_model_gradient_matches_finite_differences():
    m = _model("exact", bi="pwq")
    x = torch.linspace(-0.9, 0.9, 16, dtype=torch.float64)[:, None]
    params = dict(m.named_parameters())
    names = list(params)

    def loss(*values):
        return torch.func.functional_call(m, dict(zip(names, values, strict=True)), (x,)).pow(2).mean()

    values = tuple(p.detach().clone().requires_grad_() for p in params.values())
    assert torch.autograd.gradcheck(loss, values, atol=1e-6)


def _jumps(model, step):
    """Largest |Δy| between neighbours on a grid of ``step``, and the bound max|y′|·step."""
    x = torch.arange(-1, 1 + step / 2, step, dtype=torch.float64)[:, None].requires_grad_()
    y = model(x)[:, 0]
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach().diff().abs().max().item(), dy.abs().max().item() * step


def test_decoupled_model_is_continuous_with_a_continuous_basis():
    """No jump beyond the Lipschitz bound (max |dy/dx|, exact here) × step on a fine grid."""
    jump, bound = _jumps(_model("exact"), 1e-4)
    assert jump <= 1.5 * bound
    # the mesh pattern of a decoupled network jumps where the state is not zero (paper §4.4)
    jump, bound = _jumps(_model("mesh"), 1e-4)
    assert jump > 10 * bound


def test_bad_options():
    with pytest.raises(IatrunError, match="decoupled model needs sigma 'relu', got 'tanh'"):
        build_model("decoupled", 1, 4, 1, 1, sigma="tanh")
    with pytest.raises(IatrunError, match=r"unknown IAT method 'fast' \(known: mesh, exact\)"):
        build_model("decoupled", 1, 4, 1, 1, method="fast")


def test_fit_config_builds_and_trains_the_decoupled_model():
    from iatrun.config import compose
    from iatrun.train import train

    cfg = compose(["model=decoupled", "model.width=8", "train.steps=3", "dtype=float64", "device=cpu"])
    assert cfg["model"]["method"] == "exact"
    result = train(cfg)
    assert isinstance(result.model, DecoupledMLP)
    assert result.metrics["status"] == "ok" and result.metrics["steps_done"] == 3
