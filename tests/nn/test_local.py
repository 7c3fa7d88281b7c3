"""The banded kernel's products (iatrun.nn.local) against the dense mesh matrices."""

import pytest
import torch

from iatrun.nn import bases
from iatrun.nn.local import Dense, Rows, Sparse, Translates, cell_major, rows, side, translates

LOCAL = [b for b in bases.table_bases() if not bases.properties(b)["global"]]
CELL_TRANSLATES = ("rect", "pwl", "pwq")  # translates of one function by whole cells


def _matrices(name, n, r):
    m = n * r
    return bases.input_matrix(name, n, m), bases.output_matrix(name, n, m) * (2.0 / m)


DYADIC = [bases.family_basis(b, "dyadic") for b in ("pwl-w", "rect-w")]


SIZES = [(3, 2), (4, 1), (17, 5), (32, 4)]
CASES = [(b, n, r) for b in LOCAL + ["fourier"] for n, r in SIZES] + [(b, 17, 5) for b in DYADIC]


@pytest.mark.parametrize("name, n, r", CASES)
def test_sides_are_the_dense_products_in_cell_major_order(name, n, r):
    for matrix in _matrices(name, n, r):
        op = side(matrix, r, local=name != "fourier")
        expected = {"fourier": Dense}.get(name, Translates if name in CELL_TRANSLATES else Rows)
        expected = Sparse if name in DYADIC else expected  # coarse levels span over ROWS_SPAN cells
        assert isinstance(op, expected), (name, type(op))
        ordered = cell_major(matrix, r)
        v, u = torch.randn(n, 6, dtype=torch.float64), torch.randn(n * r, 6, dtype=torch.float64)
        scale = matrix.abs().max()
        assert torch.allclose(op.expand(v), ordered @ v, rtol=0, atol=1e-13 * scale * n)
        assert torch.allclose(op.adjoint(u), ordered.T @ u, rtol=0, atol=1e-13 * scale * n * r)


def test_cell_major_order_puts_offset_before_cell():
    matrix = torch.arange(12.0).view(6, 2)  # n = 2, r = 3: rows k = i*3 + p
    assert cell_major(matrix, 3)[:, 0].tolist() == [0, 6, 2, 8, 4, 10]  # (p, i) = (0,0), (0,1), (1,0), …


def test_translates_finds_the_table_and_refuses_anything_else():
    phi, psi = _matrices("pwq", 16, 4)
    table, d0, scale = translates(phi, 4)
    assert table.shape == (3, 4) and d0 == -1  # a quadratic B-spline spans 3 cells
    assert torch.allclose(scale, torch.ones(16, dtype=torch.float64))
    _, _, out_scale = translates(psi, 4)
    assert out_scale[0] > out_scale[8] == pytest.approx(out_scale[7])  # the cut boundary function
    bent = phi.clone()
    bent[20, 5] += 1e-9  # one entry off the family
    assert translates(bent, 4) is None
    stray = phi.clone()
    stray[0, 15] = 0.5  # mass outside the band
    assert translates(stray, 4) is None
    assert translates(_matrices("pwl-w", 16, 4)[0], 4) is None  # nodes on n + 1 cells, not n


def test_a_layer_pickles_without_its_kernel_cache():
    import copy
    import io

    from iatrun.nn.iat import IAT

    layer = IAT(16, "pwq", "pwq", 4, kernel="banded")
    x = torch.randn(8, 16)
    y = layer(x)
    assert layer._ops_cache[0] is not None  # built by the forward
    buf = io.BytesIO()
    torch.save(layer, buf)
    again = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert again._ops_cache == (None, None) and copy.deepcopy(layer)._ops_cache == (None, None)
    assert torch.equal(again(x), y)


def test_rows_reads_the_band_off_the_matrix_exactly_and_refuses_a_wide_one():
    phi, _ = _matrices("pwl-w", 16, 4)  # nodes on 17 cells: not translates, but a band of 3 lags
    table, d0 = rows(phi, 4)
    assert table.shape == (3, 4, 16) and d0 == -1
    k, j = torch.nonzero(phi, as_tuple=True)
    i, p = k // 4, k % 4
    assert torch.equal(table[i - j - d0, p, i], phi[k, j])  # every entry, bit for bit
    assert int((table != 0).sum()) == len(k)  # and nothing else
    stray = phi.clone()
    stray[0, 15] = 0.5  # cell 0 touching function 15: a lag of -15
    assert rows(stray, 4) is None
    assert rows(stray, 4, max_span=17) is not None
    assert rows(torch.zeros(64, 16, dtype=torch.float64), 4) is None
