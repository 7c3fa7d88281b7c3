"""Exact linear regions, affine maps and Lipschitz constants (SPEC §7), checked against brute force."""

import numpy as np
import pytest
import torch

from iatrun.analysis.construct import construct_model, construct_parameters
from iatrun.analysis.regions import network_layers, regions, segment_regions, summarize
from iatrun.errors import IatrunError
from iatrun.nn.iat import IAT
from iatrun.nn.models import build_model

BLOG = [(-1, -1), (-0.5, 1), (0, -1), (1, 0)]

# (kind, options): relu and IAT-ReLU with several basis pairs and mesh ratios.
NETS = [
    ("relu", {}),
    ("iat", {"basis_in": "rect", "basis_out": "rect-w", "mesh_ratio": 2}),
    ("iat", {"basis_in": "pwl", "basis_out": "pwq", "mesh_ratio": 4}),
    ("iat", {"basis_in": "fourier", "basis_out": "pwq", "mesh_ratio": 4}),
    ("iat", {"basis_in": "rect-w", "basis_out": "pwl", "mesh_ratio": 3}),
    ("iat", {"basis_in": "pwl-w", "basis_out": "fourier", "mesh_ratio": 2}),
    ("iat", {"basis_in": "fourier", "basis_out": "rect", "mesh_ratio": 2}),
]
NET_IDS = [f"{o.get('basis_in', k)}-{o.get('basis_out', '')}" for k, o in NETS]
A, B = -1.5, 1.5
GRID = 120_001  # brute-force points on [A, B]: spacing 2.5e-5


def net(kind, opts, depth, seed=0, d=1, o=1, width=8, gain=3.0):
    """A float64 network; hidden-to-hidden weights × gain so deep layers add regions of their own."""
    model = build_model(kind, d, width, depth, o, seed=seed, **opts).double().eval()
    with torch.no_grad():
        for lin in model.linears[1:-1]:
            lin.weight.mul_(gain)
    return model


def brute_force_patterns(model, x):
    """The concatenated activation pattern of every hidden layer at inputs x (K, d): bool (K, total)."""
    with torch.no_grad():
        hs = model.hidden(x)
    pats = [act.pattern(h) if isinstance(act, IAT) else h > 0 for act, h in zip(model.acts, hs, strict=True)]
    return torch.cat(pats, dim=1)


def inside_points(reg, per_region=4, seed=0):
    """Random parameters strictly inside every region: (R·per_region,)."""
    g = np.random.default_rng(seed)
    lo, hi = reg.breakpoints[:-1], reg.breakpoints[1:]
    w = g.uniform(0.05, 0.95, size=(per_region, len(lo)))
    return (lo + w * (hi - lo)).T.ravel()


# --- the blog's construction ---------------------------------------------------------------------


def test_blog_numbers_exactly():
    p = construct_parameters(BLOG)
    assert p == {
        "hidden_bias": [1.0, 0.5, 0.0],
        "hidden_weight": [1.0, 1.0, 1.0],
        "output_weight": [4.0, -8.0, 5.0],
        "output_bias": -1.0,
    }


@pytest.mark.parametrize(
    "points",
    [BLOG, [(0, 0), (1, 1)], [(-2, 3), (-1.5, -1), (0.25, 0.5), (0.5, 0.5), (3, -2), (4, 10)]],
)
def test_construction_reproduces_points_with_n_regions_and_the_segment_slopes(points):
    model = construct_model(points)
    p = np.array(points, dtype=np.float64)
    with torch.no_grad():
        y = model(torch.tensor(p[:, :1]))[:, 0].numpy()
    np.testing.assert_allclose(y, p[:, 1], atol=1e-12)
    reg = regions(model, p[0, 0], p[-1, 0])
    n = len(points) - 1
    assert reg.num_regions == n
    np.testing.assert_allclose(reg.breakpoints, p[:, 0], atol=1e-12)
    np.testing.assert_allclose(reg.slopes[:, 0], np.diff(p[:, 1]) / np.diff(p[:, 0]), atol=1e-12)
    assert reg.lipschitz == pytest.approx(np.abs(np.diff(p[:, 1]) / np.diff(p[:, 0])).max(), abs=1e-12)


def test_blog_network_has_three_regions_and_lipschitz_four():
    s = summarize(construct_model(BLOG))
    assert s["num_regions"] == 3
    assert s["lipschitz"] == pytest.approx(4.0, abs=1e-12)
    assert s["lipschitz"] <= s["lipschitz_bound"]
    # Π‖W‖₂ = ‖(1,1,1)‖ · ‖(4,-8,5)‖ = √3 · √105
    assert s["lipschitz_bound"] == pytest.approx(np.sqrt(3) * np.sqrt(105), rel=1e-12)
    assert s["lipschitz_ratio"] == pytest.approx(4 / (np.sqrt(3) * np.sqrt(105)), rel=1e-12)


@pytest.mark.parametrize("points", [[(0, 1)], [(0, 1), (0, 2)], [(1, 0), (0, 1)], [(0, 0), (1, 1), (0.5, 2)]])
def test_construction_rejects_bad_points(points):
    with pytest.raises(IatrunError):
        construct_parameters(points)


# --- random networks against brute force ---------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("kind, opts", NETS, ids=NET_IDS)
def test_affine_maps_match_network_and_region_count_matches_brute_force(kind, opts, depth):
    model = net(kind, opts, depth, seed=depth)
    reg = regions(model, A, B)
    # 1) every returned affine map reproduces the network inside its region (float64)
    u = inside_points(reg)
    with torch.no_grad():
        y = model(torch.tensor(u)[:, None]).numpy()
    np.testing.assert_allclose(reg(u), y, rtol=0, atol=1e-9)
    r = np.repeat(np.arange(reg.num_regions), 4)
    np.testing.assert_allclose(reg.slopes[r] * u[:, None] + reg.intercepts[r], y, rtol=0, atol=1e-9)
    # 2) the count equals the number of pattern changes on a fine grid, plus one
    x = torch.linspace(A, B, GRID, dtype=torch.float64)[:, None]
    step = (B - A) / (GRID - 1)
    pat = brute_force_patterns(model, x)
    changes = int((pat[1:] != pat[:-1]).any(dim=1).sum())
    assert np.diff(reg.breakpoints).min() > 2 * step, "grid too coarse for this network"
    assert reg.num_regions == changes + 1
    # 3) the exact constant is the largest finite-difference slope, and never above the bound
    with torch.no_grad():
        fx = model(x)[:, 0].numpy()
    fd = np.abs(np.diff(fx)).max() / step
    assert reg.lipschitz == pytest.approx(fd, rel=1e-6, abs=1e-12)
    assert reg.lipschitz <= reg.lipschitz_bound * (1 + 1e-12)


@pytest.mark.parametrize("kind, opts", NETS[1:4])
def test_iat_norm_in_the_bound_is_the_largest_activation_matrix_norm_met(kind, opts):
    model = net(kind, opts, 2, seed=5)
    reg = regions(model, -1.0, 1.0)
    mids = torch.tensor((reg.breakpoints[:-1] + reg.breakpoints[1:]) / 2)[:, None]
    with torch.no_grad():
        hs = model.hidden(mids)
        for act, norm, h, got in zip(model.acts, model.norms, hs, reg.act_norms, strict=True):
            a = act.activation_matrix(h) * norm.factor  # (R, n, n), SPEC §2, times the gain
            assert got == pytest.approx(float(torch.linalg.matrix_norm(a, ord=2).max()), rel=1e-10)
    weights = np.prod([np.linalg.norm(lin.weight.detach().numpy(), 2) for lin in model.linears])
    assert reg.lipschitz_bound == pytest.approx(weights * np.prod(reg.act_norms), rel=1e-12)


@pytest.mark.parametrize("depth", [1, 3])
def test_rect_rect_iat_and_relu_networks_have_identical_regions(depth):
    relu = net("relu", {}, depth, seed=11, width=7)
    iat = net("iat", {"basis_in": "rect", "basis_out": "rect", "mesh_ratio": 4}, depth, seed=11, width=7)
    a, b = regions(relu, -2, 2), regions(iat, -2, 2)
    assert a.num_regions == b.num_regions
    np.testing.assert_allclose(a.breakpoints, b.breakpoints, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.slopes, b.slopes, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.intercepts, b.intercepts, rtol=0, atol=1e-12)
    assert a.lipschitz == pytest.approx(b.lipschitz, rel=1e-12)


def test_affine_maps_of_a_wide_network_with_many_regions():
    model = net("iat", {"basis_in": "fourier", "basis_out": "pwq", "mesh_ratio": 4}, 2, seed=2, width=32)
    reg = regions(model, -3, 3)
    assert reg.num_regions > 100
    u = inside_points(reg, 2)
    with torch.no_grad():
        np.testing.assert_allclose(reg(u), model(torch.tensor(u)[:, None]).numpy(), rtol=0, atol=1e-9)


def test_vector_output_uses_the_euclidean_norm():
    model = net("iat", {"basis_in": "fourier", "basis_out": "pwl"}, 2, seed=3, o=3)
    reg = regions(model, -1, 1)
    assert reg.slopes.shape == (reg.num_regions, 3)
    assert reg.lipschitz == pytest.approx(np.linalg.norm(reg.slopes, axis=1).max(), rel=1e-12)
    u = inside_points(reg, 2)
    with torch.no_grad():
        np.testing.assert_allclose(reg(u), model(torch.tensor(u)[:, None]).numpy(), rtol=0, atol=1e-9)


def test_segment_regions_for_multidimensional_input():
    model = net("iat", {"basis_in": "pwl", "basis_out": "rect"}, 2, seed=4, d=3, o=2)
    p0, p1 = np.array([-1.0, 0.5, 2.0]), np.array([1.0, -0.5, 0.0])
    reg = segment_regions(model, p0, p1)
    assert reg.breakpoints[0] == 0 and reg.breakpoints[-1] == 1
    t = inside_points(reg, 3)
    x = torch.tensor(p0[None] + t[:, None] * (p1 - p0)[None])
    with torch.no_grad():
        np.testing.assert_allclose(reg(t), model(x).numpy(), rtol=0, atol=1e-9)
    # brute-force count along the segment
    tt = torch.linspace(0, 1, 100_001, dtype=torch.float64)[:, None]
    pat = brute_force_patterns(model, torch.tensor(p0)[None] + tt * torch.tensor(p1 - p0)[None])
    assert reg.num_regions == int((pat[1:] != pat[:-1]).any(dim=1).sum()) + 1
    # Lipschitz along the segment is per unit length of x, not of t
    assert reg.lipschitz == pytest.approx(np.linalg.norm(reg.slopes, axis=1).max() / np.linalg.norm(p1 - p0))
    with pytest.raises(IatrunError, match="input dimension 3"):
        regions(model)


def test_close_breakpoints_merge():
    # two relus with roots 1e-13 apart become one breakpoint
    model = build_model("relu", 1, 2, 1, 1).double()
    with torch.no_grad():
        model.linears[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        model.linears[0].bias.copy_(torch.tensor([0.0, -1e-13]))
    reg = regions(model, -1, 1)
    assert reg.num_regions == 2
    assert regions(model, -1, 1, tol=1e-15).num_regions == 3


@pytest.mark.parametrize(
    "kind, opts, match",
    [
        ("tanh", {}, "piecewise-linear"),
        ("sigmoid", {}, "piecewise-linear"),
        ("iat", {"sigma": "tanh"}, "piecewise-linear"),
        ("relu", {"norm": "batch"}, "piecewise-linear"),
        ("iat", {"norm": "layer"}, "piecewise-linear"),
    ],
)
def test_non_piecewise_linear_networks_are_refused(kind, opts, match):
    with pytest.raises(IatrunError, match=match):
        network_layers(build_model(kind, 1, 4, 1, 1, **opts))


def test_bad_interval_is_refused():
    with pytest.raises(IatrunError, match="a < b"):
        regions(construct_model(BLOG), 1, -1)


def test_summarize_is_cheap_on_a_width_64_depth_2_iat_network():
    import time

    model = build_model("iat", 1, 64, 2, 1, seed=0, basis_in="fourier", basis_out="pwq", mesh_ratio=4)
    start = time.perf_counter()
    s = summarize(model)
    assert time.perf_counter() - start < 3.0
    assert set(s) >= {"num_regions", "lipschitz", "lipschitz_bound"}
    assert s["num_regions"] > 1 and 0 < s["lipschitz"] <= s["lipschitz_bound"]
