"""Writer processes (iatrun.sweep.writers): a stack's folders written beside training, the same bytes."""

import json

import pytest

from iatrun.config import compose
from iatrun.sweep import cells as sw
from iatrun.sweep import writers as wr
from iatrun.sweep.grid import Cell
from iatrun.sweep.run import run_cells

pytestmark = pytest.mark.usefixtures("one_thread")

# stable per cell: everything but timings and the moment the folder was written
TIMING = ("wall_time_s", "steps_per_s")


def _cells(tag: str) -> list[Cell]:
    base = ["task=fitting", "task.n_train=48", "task.holdout_factor=2", "model.width=8", "model.depth=1"]
    out = []
    for i, model in enumerate(
        [["model=iat", "model.basis_in=fourier", "model.basis_out=pwq"], ["model=iat"], ["model=relu"]]
    ):
        cfg = dict(compose([*base, *model, "train.steps=20", "device=cpu", "dtype=float64"]), seed=0)
        out.append(Cell(f"{tag}{i}", cfg))
    return out


def _folder(root, key):
    metrics = json.loads((sw.cell_dir(root, key) / "metrics.json").read_text())
    prov = json.loads((sw.cell_dir(root, key) / "provenance.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}, prov


def test_writer_processes_write_what_the_trainer_would(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    rows0 = run_cells(here, _cells("c"), engine="batched", writers=0)
    rows1 = run_cells(there, _cells("c"), engine="batched", writers=2)
    assert sorted(r["key"] for r in rows1) == ["c0", "c1", "c2"]
    assert all(r["state"] == "done" and r["status"] == "ok" and r["ran"] for r in rows0 + rows1)
    for key in ("c0", "c1", "c2"):
        (m0, p0), (m1, p1) = _folder(here, key), _folder(there, key)
        assert m0 == m1  # the same metrics, region count and Lipschitz constant included
        assert "num_regions" in m1 and m1["num_regions"] > 1
        # provenance is the trainer's (its device and threads), not the writer process's
        assert (p1["device"], p1["threads"]) == (p0["device"], p0["threads"])
        assert (sw.cell_dir(there, key) / "loss.png").stat().st_size > 0
        lock = sw.claim(there, Cell(key, {}))  # every lock is released
        assert lock is not None
        lock.release()


def test_a_writer_that_fails_leaves_its_cells_to_the_trainer(tmp_path, monkeypatch):
    monkeypatch.setattr(wr, "_pack", lambda result: b"not a pickled result")
    rows = run_cells(tmp_path, _cells("c"), engine="batched", writers=1)
    ok = sorted(r["key"] for r in rows if r["state"] == "done" and r["status"] == "ok")
    assert ok == ["c0", "c1", "c2"]
    assert all(sw.cell_state(tmp_path, c)[0] == "done" for c in _cells("c"))


def test_no_writers_on_the_cpu():
    assert wr.default_writers({"device": "cpu"}) == 0
