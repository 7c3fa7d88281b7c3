"""The IAT layer against ReLU, against explicit quadrature, and against autograd (SPEC §1–§2)."""

import pytest
import torch

from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.nn.iat import IAT

NAMES = bases.BASES.names()
CONTINUOUS = [b for b in NAMES if bases.properties(b)["continuous"]]


@pytest.mark.parametrize("n", [1, 5, 16])
@pytest.mark.parametrize("r", [1, 2, 4])
def test_rect_rect_is_relu(n, r, device):
    x = torch.randn(200, n, device=device)
    assert torch.allclose(IAT(n, "rect", "rect", r).to(device)(x), torch.relu(x), atol=1e-6)
    x64 = torch.randn(50, n, dtype=torch.float64, device=device)
    layer = IAT(n, "rect", "rect", r).to(device).double()
    assert torch.allclose(layer(x64), torch.relu(x64), atol=1e-13)


@pytest.mark.parametrize("bi", NAMES)
@pytest.mark.parametrize("bo", ["rect", "pwq", "fourier", "rect-w"])
def test_forward_equals_explicit_midpoint_quadrature(bi, bo, device):
    n, r = 6, 3
    m = n * r
    layer = IAT(n, bi, bo, r).double().to(device)
    x = torch.randn(4, n, dtype=torch.float64)
    t = -1 + (2 * torch.arange(1, m + 1, dtype=torch.float64) - 1) / m
    phi = bases.evaluate(bi, n, t) / bases.sup_norms(bi, n)
    psi = bases.evaluate(bo, n, t)
    psi = psi / ((2 / m) * psi.abs().sum(0))
    # explicit loop over mesh points: T_j = Σ_k (2/M) ψ_j(t_k) relu(Σ_i x_i φ_i(t_k))
    expected = torch.zeros(4, n, dtype=torch.float64)
    for k in range(m):
        s = x @ phi[k]
        expected += (2 / m) * torch.relu(s)[:, None] * psi[k][None, :]
    assert torch.allclose(layer(x.to(device)).cpu(), expected, atol=1e-12)


@pytest.mark.parametrize("bi", NAMES)
def test_positive_homogeneity(bi):
    layer = IAT(7, bi, "pwl", 4).double()
    x = torch.randn(10, 7, dtype=torch.float64)
    for c in (0.1, 2.5, 40.0):
        assert torch.allclose(layer(c * x), c * layer(x), atol=1e-12)


@pytest.mark.parametrize("bi", NAMES)
@pytest.mark.parametrize("bo", ["pwq", "pwl-w"])
def test_jacobian_equals_activation_matrix_and_linear_form(bi, bo):
    layer = IAT(5, bi, bo, 4).double()
    x = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer, x)
    a = layer.activation_matrix(x)
    assert torch.allclose(jac, a, atol=1e-12)
    assert torch.allclose(a @ x, layer(x), atol=1e-12)  # T(x) = A(x) x


@pytest.mark.parametrize("sigma", ["tanh", "sigmoid", "identity"])
def test_jacobian_for_other_sigmas(sigma):
    layer = IAT(4, "fourier", "pwq", 3, sigma=sigma).double()
    x = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(
        torch.autograd.functional.jacobian(layer, x), layer.activation_matrix(x), atol=1e-12
    )


@pytest.mark.parametrize("bi", ["fourier", "pwq", "rect-w"])
def test_gradcheck_float64(bi):
    layer = IAT(4, bi, "pwl", 3).double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_mask_backward_equals_plain_autograd():
    layer = IAT(8, "fourier", "pwq", 4)
    x = torch.randn(32, 8, requires_grad=True)
    g = torch.randn(32, 8)
    (layer(x) * g).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    plain = torch.relu(x2 @ layer.phi_t) @ layer.psi
    (plain * g).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_backward_saves_only_a_bool_pattern():
    layer = IAT(8, "fourier", "pwq", 4)
    x = torch.randn(16, 8, requires_grad=True)
    saved = []

    def pack(t):
        saved.append((t.dtype, tuple(t.shape)))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    big = [s for s in saved if s[1] == (16, 32)]
    assert big == [(torch.bool, (16, 32))]


def test_leading_dimensions_and_pattern():
    layer = IAT(6, "pwl", "pwl", 2)
    x = torch.randn(2, 3, 6)
    y = layer(x)
    assert y.shape == (2, 3, 6)
    assert torch.allclose(y[1, 2], layer(x[1, 2][None])[0])
    pat = layer.pattern(x)
    assert pat.dtype == torch.bool and pat.shape == (2, 3, 12)
    assert torch.equal(pat, (x @ layer.phi_t) > 0)


def test_buffers_follow_dtype_and_have_no_grad():
    layer = IAT(4, "fourier", "pwq", 2).double()
    assert layer.phi_t.dtype == torch.float64 and not layer.phi_t.requires_grad
    assert list(layer.parameters()) == []
    assert {k for k, _ in layer.named_buffers()} == {"phi_t", "psi"}


def test_device_and_dtype_arguments_like_torch_layers(device):
    layer = IAT(4, "pwl", "pwq", 2, device=device, dtype=torch.float64)
    assert layer.phi_t.device.type == device.type and layer.phi_t.dtype == torch.float64
    assert layer.psi.device.type == device.type and layer.psi.dtype == torch.float64
    # built in float64 directly: the tables are the float64 matrices, not float32 ones cast up
    assert torch.equal(layer.psi.cpu(), bases.output_matrix("pwq", 4, 8) * (2.0 / 8))
    assert torch.equal(layer.phi_t.cpu(), bases.input_matrix("pwl", 4, 8).T)
    ref = IAT(4, "pwl", "pwq", 2).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.allclose(layer(x.to(device)).cpu(), ref(x), rtol=1e-6)


def test_an_input_of_another_dtype_is_one_clear_error():
    layer = IAT(4, "fourier", "pwq", 2, dtype=torch.float64)
    with pytest.raises(IatrunError) as e:
        layer(torch.randn(2, 4))
    assert str(e.value) == (
        "IAT holds float64 tables but got a float32 input: convert the input (x.to(torch.float64)) "
        "or the layer (layer.to(torch.float32))"
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts the matmuls' inputs itself
        assert layer.float()(torch.randn(2, 4, dtype=torch.bfloat16)).shape == (2, 4)


def test_the_tables_are_not_saved_and_old_state_dicts_still_load():
    from iatrun.nn.models import build_model

    model = build_model("iat", 1, 8, 2, 1, seed=0)
    assert not any(k.endswith(("phi_t", "psi")) for k in model.state_dict())
    state = model.state_dict()
    # a state dict saved when the tables were persistent: its (even stale) tables are ignored
    old = {**state, "acts.0.phi_t": torch.zeros(8, 32), "acts.0.psi": torch.zeros(32, 8)}
    fresh = build_model("iat", 1, 8, 2, 1, seed=1)
    fresh.load_state_dict(old)
    x = torch.linspace(-1, 1, 7)[:, None]
    assert torch.equal(fresh(x), model(x))
    # the parameters do not depend on the mesh, so they load into another mesh ratio
    finer = build_model("iat", 1, 8, 2, 1, seed=1, mesh_ratio=16)
    finer.load_state_dict(state)
    assert finer.acts[0].psi.shape == (128, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"n": 4, "mesh_ratio": 0}, "mesh_ratio must be an integer >= 1, got 0"),
        ({"n": 4, "mesh_ratio": 2.5}, "mesh_ratio must be an integer >= 1, got 2.5"),
        ({"n": 4, "basis_in": "sine"}, "unknown basis 'sine'"),
        ({"n": 4, "basis_out": "pwqq"}, "did you mean 'pwq'"),
        ({"n": 4, "sigma": "gelu"}, r"unknown activation 'gelu' \(known: relu, tanh, sigmoid, identity\)"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IAT(**kwargs)


LOCAL = [b for b in bases.table_bases() if not bases.properties(b)["global"]]  # banded ones


MIXED = [("fourier", "pwq"), ("pwq", "fourier"), ("pwl-w", "pwq"), ("pwq", "rect-w"), ("pwl-wd", "pwq")]


@pytest.mark.parametrize("bi, bo", [(b, b) for b in LOCAL] + MIXED)
def test_banded_kernel_equals_dense(bi, bo, device):
    """The banded products agree with the dense matmuls: values and input gradients, both dtypes;
    for every local basis on both sides, a wavelet beside a translate (per-row and per-lag weights
    in one fused pass), and a dyadic wavelet (too wide a band: the sparse products)."""
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        dense, banded = (IAT(40, bi, bo, 3, kernel=k).to(device, dtype) for k in ("dense", "banded"))
        x = torch.randn(50, 40, dtype=dtype, device=device, requires_grad=True)
        g = torch.randn(50, 40, dtype=dtype, device=device)
        outs = []
        for layer in (dense, banded):
            y = layer(x)
            (gx,) = torch.autograd.grad(y, x, g)
            outs.append((y, gx))
        (y0, g0), (y1, g1) = outs
        scale = y0.abs().max()
        assert scale > 0.1 and (y1 - y0).abs().max() <= tol * scale
        assert (g1 - g0).abs().max() <= tol * g0.abs().max()


def test_banded_kernel_choice_and_saved_memory():
    cpu = torch.device("cpu")
    assert IAT(128, "pwl", "pwq", 4).uses_banded(cpu)  # auto: both sides banded, M = 512
    assert not IAT(64, "pwl", "pwq", 16).uses_banded(cpu)  # below the width where it pays
    assert not IAT(128, "pwl", "pwq", 2).uses_banded(cpu)  # M = 256: dense is faster
    assert IAT(64, "fourier", "pwq", 4).banded_sides == (False, True)
    assert not IAT(128, "fourier", "pwq", 4).uses_banded(cpu)  # one side banded needs M >= 1024
    assert not IAT(64, "pwq", "fourier", 16).uses_banded(cpu)  # ... and n >= 128
    assert IAT(128, "pwq", "fourier", 8).uses_banded(cpu)
    assert not IAT(256, "fourier", "fourier", 4).uses_banded(cpu)  # nothing banded
    assert not IAT(64, "pwl", "pwq", 4).uses_banded(torch.device("cuda"))  # auto stays dense on GPUs
    assert IAT(8, "rect", "rect", 4, kernel="banded").uses_banded(torch.device("cpu"))
    with pytest.raises(ValueError, match="kernel 'banded' needs a local basis"):
        IAT(8, "fourier", "fourier", kernel="banded")
    with pytest.raises(ValueError, match=r"unknown IAT kernel 'csr' \(known: auto, dense, banded\)"):
        IAT(8, kernel="csr")
    layer = IAT(8, "pwq", "pwq", 4, kernel="banded")
    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(torch.randn(16, 8, requires_grad=True))
    assert saved == [(torch.bool, 16 * 32)]  # only the pattern, as the dense kernel
    mixed = IAT(8, "fourier", "pwq", 4, kernel="banded")  # one side banded: the unfused path
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mixed(torch.randn(16, 8, requires_grad=True))
    assert saved == [(torch.bool, 16 * 32)]
    # the sparse tables follow the layer's dtype
    assert layer.double()(torch.randn(3, 8, dtype=torch.float64)).dtype == torch.float64
