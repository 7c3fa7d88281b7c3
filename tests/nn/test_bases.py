"""The bases: normalisations and the property columns of SPEC §3's table, checked numerically."""

import math

import pytest
import torch

from iatrun.errors import IatrunError
from iatrun.nn import bases

NAMES = ["rect", "pwl", "pwq", "fourier", "pwl-w", "rect-w", "pwl-wd", "rect-wd"]
FINE = torch.linspace(-1, 1, 400_001, dtype=torch.float64)


def test_registry_order_and_names():
    assert bases.BASES.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 3, 8])
def test_input_sup_norm_is_one_on_the_interval(name, n):
    vals = bases.evaluate(name, n, FINE) / bases.sup_norms(name, n)
    assert torch.allclose(vals.abs().amax(dim=0), torch.ones(n, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("m_ratio", [1, 4, 7])
def test_output_abs_integral_is_one_on_the_mesh(name, m_ratio):
    n = 6
    m = n * m_ratio
    psi = bases.output_matrix(name, n, m)
    assert torch.allclose((2 / m) * psi.abs().sum(0), torch.ones(n, dtype=torch.float64), atol=1e-12)


def test_pwq_peak_is_three_quarters_before_normalisation():
    n = 5
    raw = bases.evaluate("pwq", n, FINE).amax(dim=0)
    assert torch.allclose(raw, torch.full((n,), 0.75, dtype=torch.float64), atol=1e-6)
    assert bases.input_matrix("pwq", n, 10_000).amax() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_zero_integral_column(name):
    n = 8
    integral = torch.trapezoid(bases.evaluate(name, n, FINE), FINE, dim=0)
    is_zero = bool(torch.all(integral.abs() < 1e-4))
    assert is_zero == bases.properties(name)["zero_integral"]


@pytest.mark.parametrize("name", NAMES)
def test_continuity_column(name):
    # A discontinuous basis jumps by O(1) between neighbouring points of a fine grid;
    # a continuous one changes by at most (Lipschitz constant) x (grid step).
    n = 8
    vals = bases.evaluate(name, n, FINE)
    jump = (vals[1:] - vals[:-1]).abs().max().item()
    assert (jump < 1e-2) == bases.properties(name)["continuous"]


@pytest.mark.parametrize("name", NAMES)
def test_smooth_column(name):
    # C¹: the difference quotient has no jumps; piecewise-linear and rect bases have kinks/jumps.
    n = 8
    vals = bases.evaluate(name, n, FINE)
    h = (FINE[1] - FINE[0]).item()
    slope = (vals[1:] - vals[:-1]) / h
    slope_jump = (slope[1:] - slope[:-1]).abs().max().item()
    assert (slope_jump < 0.1) == bases.properties(name)["smooth"]


def test_fourier_columns_are_sin_cos_pairs():
    t = torch.tensor([0.3], dtype=torch.float64)
    v = bases.evaluate("fourier", 4, t)[0]
    expected = [
        math.sin(math.pi * 0.3),
        math.cos(math.pi * 0.3),
        math.sin(2 * math.pi * 0.3),
        math.cos(2 * math.pi * 0.3),
    ]
    assert torch.allclose(v, torch.tensor(expected, dtype=torch.float64))


def test_wavelets_live_inside_the_interval_on_interior_nodes():
    n = 5
    w = 2 / (n + 1)
    nodes = -1 + w * torch.arange(1, n + 1, dtype=torch.float64)
    vals = bases.evaluate("rect-w", n, nodes - w / 2)  # left half: +1 for its own wavelet
    assert torch.equal(torch.diag(vals), torch.ones(n, dtype=torch.float64))
    pv = bases.evaluate("pwl-w", n, nodes + w / 2)
    assert torch.allclose(torch.diag(pv), -torch.ones(n, dtype=torch.float64))


def test_unknown_basis_lists_known_and_suggests():
    with pytest.raises(IatrunError, match=r"unknown basis 'fourir'.*rect, pwl.*did you mean 'fourier'"):
        bases.check_basis("fourir")


def test_register_basis_appears_everywhere_and_sup_norm_is_measured():
    from iatrun.nn.iat import IAT

    @bases.register_basis("test-tri", continuous=True, smooth=False, global_=True, zero_integral=False)
    def tri(n, t):
        return (2.0 * (1 - t.abs()))[:, None].repeat(1, n)  # sup-norm 2, measured

    try:
        assert "test-tri" in bases.BASES.names()
        phi = bases.input_matrix("test-tri", 3, 3001)
        assert phi.abs().max().item() == pytest.approx(1.0, abs=1e-3)
        assert IAT(3, "test-tri", "rect", 2)(torch.ones(1, 3)).shape == (1, 3)
        with pytest.raises(IatrunError, match="already registered"):
            bases.register_basis(
                "test-tri", continuous=True, smooth=False, global_=True, zero_integral=False
            )(tri)
    finally:
        bases.BASES.remove("test-tri")
