"""`iatrun bench`'s measurements (ratios, not timings: these machines are too noisy to time)."""

import pytest
import torch
from typer.testing import CliRunner

from iatrun import bench
from iatrun.cli import app


def test_saved_bytes_of_the_mask_backward_are_a_quarter_of_autograd():
    (row,) = bench.saved_bytes(batch=100, n=8, r=4)
    assert row.value == 100 * 32  # one bool byte per mesh value
    assert row.reference == 4 * 100 * 32  # autograd keeps the float32 relu output
    assert row.ratio == pytest.approx(0.25)


def test_roofline_rows_cover_the_grid_and_are_positive():
    rows = bench.iat_roofline(torch.device("cpu"), batch=16, widths=(4, 128), ratios=(1, 8))
    assert [r.params.split(" ")[1:4] for r in rows] == [
        ["n=4", "r=1", "kernel=dense"],
        ["n=4", "r=8", "kernel=dense"],
        ["n=128", "r=1", "kernel=dense"],
        ["n=128", "r=8", "kernel=dense"],
        ["n=128", "r=8", "kernel=auto"],  # M = 1024: auto runs the banded Ψ side on CPU
    ]
    assert all(
        r.value > 0 and r.reference > 0 and r.ratio == pytest.approx(r.value / r.reference) for r in rows
    )


def test_banded_rows_compare_the_two_kernels():
    rows = bench.banded_speedup(torch.device("cpu"), batch=32, widths=(8, 16), ratios=(4,))
    assert [r.params.split(" ")[1:3] for r in rows] == [["n=8", "r=4"], ["n=16", "r=4"]]
    assert all(r.value > 0 and r.ratio == pytest.approx(r.reference / r.value) for r in rows)


def test_exact_rows_compare_with_both_meshes():
    rows = bench.exact_cost(torch.device("cpu"), batch=16, widths=(4,), pairs=(("pwl", "pwq"),))
    assert [r.params.split(" ")[4] for r in rows] == ["r=4", "r=64"]
    assert rows[0].value == rows[1].value  # one exact timing, two references
    assert all(r.ratio == pytest.approx(r.value / r.reference) for r in rows)


@pytest.mark.slow
def test_bench_cli_writes_its_csv(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--no-sweep", "--device", "cpu", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "b" / "bench.csv").read_text().splitlines()
    assert lines[0] == "name,params,value,unit,reference,ratio,target"
    names = {line.split(",")[0] for line in lines[1:]}
    assert names == {
        "iat_fwd_bwd_vs_mm_roofline",
        "iat_banded_vs_dense",
        "iat_exact_vs_mesh",
        "iat_saved_bytes_vs_autograd",
        "train_step_iat_vs_relu",
        "help_startup_vs_python",
    }
    assert len(lines) == 1 + (9 + 2) + 10 + 8 + 1 + 3 + 1  # roofline, banded, exact, saved, steps, start-up
