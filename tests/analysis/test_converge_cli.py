"""``iatrun converge``: the mesh layer converges to the exact IAT-ReLU at O(M⁻²) (SPEC §4)."""

import re

import pytest
import torch
from typer.testing import CliRunner

from iatrun.analysis.converge import convergence, fitted_order
from iatrun.cli import app


def test_fitted_order_of_a_power_law():
    ms = [16, 32, 64, 128]
    assert fitted_order(ms, [3.0 * m**-2 for m in ms]) == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("bi, bo", [("pwq", "pwq"), ("fourier", "pwl")])
def test_mesh_converges_at_second_order(bi, bo):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ms, errs, order = convergence(bi, bo, n=8, ratios=range(4, 65, 4), samples=64)
    finally:
        torch.set_num_threads(before)
    assert ms == [8 * r for r in range(4, 65, 4)]
    assert 1.8 < order < 2.2
    assert errs[-1] < errs[0] / 100  # 16× more points, ~256× smaller error


def test_converge_command_prints_order_and_writes_plot(tmp_path):
    out = tmp_path / "conv" / "pwq.png"
    args = ["converge", "--n", "6", "--r-max", "48", "--samples", "32", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    order = float(re.search(r"fitted order: ([0-9.]+)", res.output).group(1))
    assert 1.8 < order < 2.2
    assert out.stat().st_size > 1000
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert rows[0] == "M,rel_error" and len(rows) == 49 and rows[1].startswith("6,")


def test_converge_rejects_an_unknown_basis():
    res = CliRunner().invoke(app, ["converge", "--basis-in", "pwz", "--r-max", "2"])
    assert res.exit_code == 2
    assert "Invalid value for '--basis-in': 'pwz' is not one of 'rect', 'pwl', 'pwq'" in res.output
    assert "(did you mean 'pwq'?)" in res.output
