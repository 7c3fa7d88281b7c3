"""Norm ``gain``: a fixed factor that gives each IAT ReLU's output spread on Gaussian inputs."""

import itertools
import math

import pytest
import torch

from iatrun.analysis.regions import regions
from iatrun.nn.bases import BASES
from iatrun.nn.iat import IAT, RELU_MEAN_SQUARE, gain, mean_square
from iatrun.nn.layers import Gain
from iatrun.nn.models import build_model


def monte_carlo_mean_square(layer: torch.nn.Module, n: int, samples: int = 60_000) -> float:
    x = torch.randn(samples, n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        return float(layer(x).pow(2).mean())


def test_relu_mean_square_is_one_half():
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(torch.relu(z).pow(2).mean()) == pytest.approx(RELU_MEAN_SQUARE, rel=0.01)


@pytest.mark.parametrize(
    "bi, bo", [("fourier", "pwq"), ("pwl-w", "rect-w"), ("pwq", "fourier"), ("rect", "pwl")]
)
def test_closed_form_mean_square_matches_monte_carlo(bi, bo):
    exact = mean_square(bi, bo, 12, 3)
    sampled = monte_carlo_mean_square(IAT(12, bi, bo, 3).double(), 12)
    assert sampled == pytest.approx(exact, rel=0.02)


def test_the_gain_brings_every_pair_within_ten_percent_of_relus_spread():
    n, r = 16, 4
    target = math.sqrt(RELU_MEAN_SQUARE)
    spreads = {}
    for bi, bo in itertools.product(BASES.names(), repeat=2):
        layer = IAT(n, bi, bo, r).double()
        rms = math.sqrt(monte_carlo_mean_square(lambda x, lay=layer: lay(x) * lay.gain(), n, 20_000))
        spreads[(bi, bo)] = rms / target
    assert all(0.9 < s < 1.1 for s in spreads.values()), spreads
    # without it, fourier inputs are far larger and fourier outputs far smaller than ReLU's
    assert gain("fourier", "pwq", n, r) < 0.5 and gain("pwq", "fourier", n, r) > 3


def test_rect_rect_with_gain_is_relu_bit_for_bit():
    assert gain("rect", "rect", 128, 4) == 1.0
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    relu = build_model("relu", 3, 16, 2, 2, seed=4, norm="gain")
    iat = build_model("iat", 3, 16, 2, 2, seed=4, norm="gain", basis_in="rect", basis_out="rect")
    assert all(isinstance(m, Gain) and m.factor == 1.0 for m in iat.norms)
    assert torch.equal(iat(x), relu(x))


def test_gain_adds_no_parameters_and_no_state():
    plain = build_model("iat", 1, 8, 2, 1, seed=0)
    gained = build_model("iat", 1, 8, 2, 1, seed=0, norm="gain")
    assert sum(p.numel() for p in gained.parameters()) == sum(p.numel() for p in plain.parameters())
    assert gained.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(5, 1)
    factor = gained.norms[0].factor
    assert factor == pytest.approx(gain("fourier", "pwq", 8, 4))
    with torch.no_grad():  # the first hidden layer sees the activation times the factor
        h = plain.linears[0](x)
        assert torch.allclose(gained.norms[0](gained.acts[0](h)), plain.acts[0](h) * factor)


def test_regions_of_a_gain_network_reproduce_it():
    model = build_model("iat", 1, 8, 2, 1, seed=3, norm="gain", basis_in="pwl", basis_out="pwq").double()
    reg = regions(model)
    u = torch.linspace(-1, 1, 301, dtype=torch.float64)
    with torch.no_grad():
        direct = model(u[:, None]).numpy()
    assert abs(reg(u.numpy()) - direct).max() < 1e-10
