"""make gpu-check: refused in one line without CUDA; its code path, run on the CPU with a small grid."""

import csv

import pytest
import torch
from typer.testing import CliRunner

from iatrun import gpucheck
from iatrun.cli import app

SMALL = ["train.steps=5", "model.basis_in=fourier,pwq", "model.basis_out=pwq,rect"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_gpu_check_is_one_error_line_and_writes_nothing(tmp_path):
    res = CliRunner().invoke(app, ["gpu-check", "--out", str(tmp_path / "g")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: gpu-check needs a CUDA device") and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_the_check_times_stacks_and_splits_the_sweeps_wall_time(tmp_path, one_thread):
    rows = gpucheck.check(torch.device("cpu"), tmp_path / "g", "quick", (0,), SMALL)
    by = {(s, i): v for s, i, v, _ in rows}
    assert by[("sweep", "quick: cells ok of 14")] == 14  # 2 x 2 pairs and 3 baselines, per task
    phases = [
        "start-up (composing the grid)",
        "training (the cells' own time)",
        "writing not hidden by training (the rest)",
        "report",
    ]
    parts = [by[("sweep", p)] for p in phases]
    assert all(p >= 0 for p in parts) and sum(parts) == pytest.approx(by[("sweep", "end to end")], rel=1e-9)
    stacks = [i for s, i, _, _ in rows if s == "step" and i.endswith("cells")]
    assert stacks == ["fitting stack of 7 cells", "memorization stack of 7 cells"]
    assert by[("step", "batched vs serial training speed-up (median per-cell step)")] > 0
    with open(tmp_path / "g" / "gpu.csv") as f:
        written = list(csv.reader(f))
    assert written[0] == ["section", "item", "value", "unit"] and len(written) == len(rows) + 1
