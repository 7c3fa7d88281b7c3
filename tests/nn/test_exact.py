"""The exact IAT-ReLU (paper §4.3) against fine meshes, adaptive quadrature, closed forms and autograd."""

import math

import pytest
import torch
from scipy import integrate

from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.nn.exact import ExactIAT
from iatrun.nn.iat import IAT
from iatrun.nn.pieces import EXACT, FOURIER_DEGREE, partition

NAMES = bases.BASES.names()
CONTINUOUS = [b for b in NAMES if bases.properties(b)["continuous"]]
# n = 7: n + 1 = 8 divides r = 4096, so every knot (cells 2/n, wavelets 2/(n+1)) is a mesh-cell
# boundary and the r = 4096 mesh is second-order accurate even for the discontinuous output bases.
N = 7


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bi", CONTINUOUS)
@pytest.mark.parametrize("bo", NAMES)
def test_exact_equals_very_fine_mesh(bi, bo):
    x = torch.randn(6, N, dtype=torch.float64)
    exact = ExactIAT(N, bi, bo).double()(x)
    fine = IAT(N, bi, bo, 4096).double()(x)
    assert (exact - fine).abs().max() < 1e-5
    assert exact.abs().max() > 1e-2  # not trivially zero


@pytest.mark.parametrize("bi", NAMES)
@pytest.mark.parametrize("bo", ["pwl", "fourier", "rect-w"])
def test_exact_equals_adaptive_quadrature(bi, bo):
    """Independent reference: scipy's adaptive quad of ψ_j relu(s_x) (told the knots, not the roots)."""
    n = 4
    layer = ExactIAT(n, bi, bo).double()
    x = torch.randn(1, n, dtype=torch.float64)
    y = layer(x)[0]
    sup = bases.sup_norms(bi, n)
    knots = partition(n, bi, bo).tolist()

    def f(t, j, sign=None):
        tt = torch.tensor([t], dtype=torch.float64)
        s = float(bases.evaluate(bi, n, tt)[0] @ (x[0] / sup))
        psi = float(bases.evaluate(bo, n, tt)[0, j])
        return abs(psi) if sign is None else psi * max(s, 0.0)

    cells = list(zip(knots[:-1], knots[1:], strict=True))
    for j in range(n):
        mass = sum(integrate.quad(f, a, b, args=(j,), epsabs=1e-13, limit=200)[0] for a, b in cells)
        val = sum(integrate.quad(f, a, b, args=(j, 1), epsabs=1e-13, limit=200)[0] for a, b in cells)
        assert y[j].item() == pytest.approx(val / mass, abs=1e-9)


def test_fourier_n2_is_linear_closed_form():
    """n = 2 fourier → fourier: s = R sin(πt + α) is positive on half a period, so T(x) = (π/8) x."""
    layer = ExactIAT(2, "fourier", "fourier").double()
    x = torch.randn(20, 2, dtype=torch.float64)
    assert torch.allclose(layer(x), math.pi / 8 * x, atol=1e-13)


@pytest.mark.parametrize("bo", ["rect", "pwq"])
def test_rect_input_is_exact_on_its_cells(bo):
    x = torch.randn(50, 5, dtype=torch.float64)
    layer = ExactIAT(5, "rect", bo).double()
    if bo == "rect":
        assert torch.allclose(layer(x), torch.relu(x), atol=1e-14)  # SPEC §2 equivalence, exactly
    # rect input: the M = r·n mesh sees the exact pattern; only the ψ normalisation differs (O(M⁻²)).
    assert torch.allclose(layer(x), IAT(5, "rect", bo, 512).double()(x), atol=1e-5)


def test_pwl_roots_are_closed_form_and_exact():
    layer = ExactIAT(9, "pwl", "pwq").double()
    x = torch.randn(40, 9, dtype=torch.float64)
    pat = layer.pattern(x)
    s = (layer.phi(pat.r, pat.k)[0] * x[pat.b]).sum(-1)
    assert len(pat.r) > 40 and s.abs().max() < 1e-14
    # every sign change on a fine grid is a found root (count per sample)
    t = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    grid = x @ (bases.evaluate("pwl", 9, t) / bases.sup_norms("pwl", 9)).T
    changes = ((grid[:, 1:] > 0) != (grid[:, :-1] > 0)).sum(1)
    assert torch.equal(torch.bincount(pat.b, minlength=40), changes)


@pytest.mark.parametrize("bi", NAMES)
@pytest.mark.parametrize("bo", ["pwq", "pwl-w", "fourier"])
def test_gradient_equals_activation_matrix(bi, bo):
    layer = ExactIAT(5, bi, bo).double()
    x = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer, x)
    a = layer.activation_matrix(x)
    assert torch.allclose(jac, a, atol=1e-12)
    assert torch.allclose(a @ x, layer(x), atol=1e-12)  # T(x) = A(x) x (Eq. 17)
    xg = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (xg,))  # A(x) is also the finite-difference derivative


@pytest.mark.parametrize("bi", CONTINUOUS)
def test_positive_homogeneity_and_batching(bi):
    layer = ExactIAT(6, bi, "pwq").double()
    x = torch.randn(10, 6, dtype=torch.float64)
    y = layer(x)
    for c in (0.01, 3.0, 250.0):
        assert torch.allclose(layer(c * x), c * y, atol=1e-12 * c)
    one_by_one = torch.cat([layer(x[i : i + 1]) for i in range(10)])
    assert torch.allclose(one_by_one, y, atol=1e-14)
    assert layer(x.reshape(2, 5, 6)).shape == (2, 5, 6)


def test_float32_follows_input():
    layer = ExactIAT(8, "fourier", "pwq")
    x = torch.randn(16, 8)
    y = layer(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y.double(), layer(x.double()), atol=1e-5)


@pytest.mark.parametrize("n", [2, 7, 64])
def test_fourier_taylor_pieces_match_basis_and_autograd(n):
    """The degree-15 pieces reproduce sin/cos and their slopes to rounding, across each whole cell."""
    layer = ExactIAT(n, "fourier", "pwq").double()
    assert layer.e_in == FOURIER_DEGREE + 1
    k = torch.arange(layer.k_cells).repeat_interleave(9)
    u = torch.linspace(0, 1, 9, dtype=torch.float64).repeat(layer.k_cells)  # both cell ends included
    t = (layer.edges[k] + u * (layer.edges[k + 1] - layer.edges[k])).requires_grad_()
    vals, d1 = layer.phi(t.detach(), k, 1)
    ref = bases.evaluate("fourier", n, t)
    assert (vals - ref.detach()).abs().max() < 1e-13
    g = torch.stack([torch.autograd.grad(ref[:, i].sum(), t, retain_graph=True)[0] for i in range(n)], 1)
    assert ((d1 - g) / math.pi / math.ceil(n / 2)).abs().max() < 1e-12  # slopes relative to ω_max


@pytest.mark.parametrize("name", NAMES)
def test_piecewise_tables_reproduce_the_basis(name):
    layer = ExactIAT(6, name, name).double()
    k = torch.arange(layer.k_cells).repeat_interleave(50)
    u = torch.rand(len(k), dtype=torch.float64)
    t = layer.edges[k] + u * (layer.edges[k + 1] - layer.edges[k])
    ref = bases.evaluate(name, 6, t) / bases.sup_norms(name, 6)
    assert torch.allclose(layer.phi(t, k)[0], ref, atol=1e-13)
    # exact ∫|ψ| against a 10⁶-point midpoint rule
    m = 1_000_000
    mass = (2 / m) * bases.evaluate(name, 6, bases.mesh(m)).abs().sum(0)
    assert torch.allclose(1 / layer.scale_out, mass, rtol=2e-5)


def test_iat_method_argument():
    layer = IAT(6, "pwl", "pwq", 4, method="exact").double()
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(layer(x), layer.exact(x))
    assert "method='exact'" in repr(layer)
    assert torch.allclose(layer.activation_matrix(x[0]), layer.exact.activation_matrix(x[0]))
    assert set(layer.state_dict()) == set()  # no table is persistent: they follow from the options
    with pytest.raises(IatrunError, match=r"unknown IAT method 'analytic' \(known: mesh, exact\)"):
        IAT(4, method="analytic")
    with pytest.raises(IatrunError, match="method 'exact' needs sigma 'relu', got 'tanh'"):
        IAT(4, sigma="tanh", method="exact")


def test_unknown_exact_basis_is_refused():
    name = "test-bump-exact"
    bases.register_basis(name, continuous=True, smooth=True, global_=False, zero_integral=False)(
        lambda n, t: torch.exp(-(t[:, None] ** 2)) * torch.ones(n, dtype=t.dtype)
    )
    try:
        assert name not in EXACT
        with pytest.raises(IatrunError, match="no piecewise description of basis 'test-bump-exact'"):
            ExactIAT(3, name, "pwq")
    finally:
        bases.BASES.remove(name)


@pytest.mark.parametrize(("bi", "bo"), [("fourier", "pwq"), ("pwq", "fourier"), ("pwl", "rect-w")])
def test_both_newton_schedules_give_the_same_layer_bit_for_bit(bi, bo, device, monkeypatch):
    """The compacting schedule (CPU default) and the masked one (other devices) agree exactly."""
    import functools

    import iatrun.nn.exact as exact_mod
    from iatrun.nn.pieces import newton

    layer = ExactIAT(12, bi, bo).double().to(device)
    x = torch.randn(64, 12, dtype=torch.float64, device=device)
    grad = torch.randn(64, 12, dtype=torch.float64, device=device)
    out = {}
    for compact in (True, False):
        monkeypatch.setattr(exact_mod, "newton", functools.partial(newton, compact=compact))
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (g,) = torch.autograd.grad(y, xi, grad)
        out[compact] = (y, g, layer.pattern(x).r)
    assert out[True][2].numel() > 64  # many roots were polished, so the schedules had work to do
    for a, b in zip(out[True], out[False], strict=True):
        assert torch.equal(a, b)


def test_masked_newton_asks_the_device_once_per_newton_check_steps(host_reads, monkeypatch):
    import functools

    import iatrun.nn.exact as exact_mod
    from iatrun.nn.pieces import MAX_NEWTON, NEWTON_CHECK, newton

    layer = ExactIAT(16, "fourier", "pwq").double()
    x = torch.randn(256, 16, dtype=torch.float64)
    monkeypatch.setattr(exact_mod, "newton", functools.partial(newton, compact=False))
    before = host_reads["n"]
    pat = layer.pattern(x)
    reads = host_reads["n"] - before
    assert pat.r.numel() > 256
    # two Newton calls (critical points, roots), each asking at its first step and then once per
    # NEWTON_CHECK iterations until every root has converged
    assert 2 <= reads <= 2 * math.ceil(MAX_NEWTON / NEWTON_CHECK), reads
