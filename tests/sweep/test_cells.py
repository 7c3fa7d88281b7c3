"""The cell protocol (iatrun.sweep.cells): claim → state → finish, and --force's reset."""

import pytest

from iatrun.errors import IatrunError
from iatrun.sweep import cells
from iatrun.sweep import spec as sweep_spec
from iatrun.sweep.grid import expand, load_grid


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_thread):
    from _support import write_grids

    conf = write_grids(tmp_path_factory.mktemp("conf") / "conf")
    grid = load_grid("tiny", conf)
    all_cells = expand(grid, ["model.basis_in=rect", "model.basis_out=rect", "seed=0"], user_dir=conf)
    folder = tmp_path_factory.mktemp("sweep") / "s"
    sweep_spec.prepare_sweep_dir(folder, grid, [], all_cells)
    rows = [cells.run_cell(folder, c) for c in all_cells]
    return folder, all_cells, rows


def test_run_cell_finishes_each_cell_once(swept):
    folder, all_cells, rows = swept
    assert [r["state"] for r in rows] == ["done"] * len(all_cells)
    assert all(cells.cell_state(folder, c) == ("done", "ok") for c in all_cells)
    again = cells.run_cell(folder, all_cells[0])
    assert again == {"key": all_cells[0].key, "state": "done", "status": "ok", "ran": False}


def test_claimed_reports_a_cell_held_elsewhere_as_busy(swept):
    folder, all_cells, _ = swept
    held = cells.claim(folder, all_cells[0])
    try:
        with cells.claimed(folder, all_cells) as (todo, rows):
            assert todo == []  # the others are finished
            assert rows[0] == {"key": all_cells[0].key, "state": "busy"}
            assert [r["state"] for r in rows[1:]] == ["done"] * (len(all_cells) - 1)
    finally:
        held.release()


def test_reset_makes_a_cell_pending_but_leaves_a_busy_one(swept, tmp_path):
    import shutil

    folder, all_cells, _ = swept
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first, second = all_cells[:2]
    held = cells.claim(copy, second)
    try:
        cells.reset_cell(copy, first)
        cells.reset_cell(copy, second)
    finally:
        held.release()
    assert cells.cell_state(copy, first)[0] == "incomplete"
    assert cells.cell_state(copy, second) == ("done", "ok")


def test_a_changed_config_makes_a_finished_cell_stale(swept):
    folder, all_cells, _ = swept
    assert cells.key_state(folder, all_cells[0].key, "0" * 16) == ("stale", "config changed since it ran")
    assert cells.key_state(folder, "fitting/nope/seed0", None) == ("missing", "")


# --- the sweep folder's provenance, the rerun warning, the report guard ------------------------


def _spec(folder):
    import yaml

    return yaml.safe_load((folder / sweep_spec.SPEC).read_text())


def test_sweep_yaml_records_provenance_and_every_cell_its_own(swept):
    import json
    import platform
    import re
    import shutil

    import torch

    folder, all_cells, _ = swept
    block = _spec(folder)["provenance"]
    assert block["grid"] == "tiny" and block["overrides"] == [] and block["resumed"] == []
    assert block["versions"]["python"] == platform.python_version()
    assert block["versions"]["torch"] == torch.__version__
    assert block["host"] == platform.node()
    assert "device" not in block  # each cell records the device it ran on
    if shutil.which("git"):
        assert re.fullmatch(r"[0-9a-f]{40}", block["commit"]) and isinstance(block["dirty"], bool)
    cell = json.loads((cells.cell_dir(folder, all_cells[0].key) / "provenance.json").read_text())
    assert (cell["device"], cell["dtype"], cell["commit"]) == ("cpu", "float32", block["commit"])


def test_a_resume_appends_to_the_provenance_block(swept, tmp_path):
    import shutil

    from _support import write_grids

    folder, all_cells, _ = swept
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first = _spec(copy)["provenance"]
    grid = load_grid("tiny", write_grids(tmp_path / "conf"))
    sweep_spec.prepare_sweep_dir(copy, grid, [], all_cells)
    sweep_spec.prepare_sweep_dir(copy, grid, ["train.lr=0.01"], all_cells)
    spec = _spec(copy)
    block = spec["provenance"]
    assert {k: v for k, v in block.items() if k != "resumed"} == {
        k: v for k, v in first.items() if k != "resumed"
    }  # the first run's entry is kept as it was
    assert [r["overrides"] for r in block["resumed"]] == [[], ["train.lr=0.01"]]
    assert all("resumed" not in r for r in block["resumed"])
    assert spec["overrides"] == ["train.lr=0.01"]  # the rest of sweep.yaml is the latest run's
    assert spec["cells"] == {c.key: c.config_hash for c in all_cells}
    assert list(sweep_spec.read_spec(copy)["cells"]) == [c.key for c in all_cells]


def test_parts_of_one_grid_add_up_and_another_grid_replaces_them(tmp_path):
    from _support import write_grids

    conf = write_grids(tmp_path / "conf")
    tiny, slow = load_grid("tiny", conf), load_grid("slow", conf)
    every = expand(tiny, ["seed=0"], user_dir=conf)
    fitting_rect = [c for c in every if "rect-rect" in c.key]
    relu = [c for c in every if "/relu/" in c.key]
    assert fitting_rect and relu and len(fitting_rect) + len(relu) < len(every)
    folder = tmp_path / "s"
    sweep_spec.prepare_sweep_dir(folder, tiny, ["seed=0"], fitting_rect)  # part 1 (--where …)
    sweep_spec.prepare_sweep_dir(folder, tiny, ["seed=0"], relu)  # part 2
    listed = sweep_spec.read_spec(folder)["cells"]
    assert list(listed) == [c.key for c in fitting_rect + relu]  # both parts, in the order they ran
    sweep_spec.prepare_sweep_dir(folder, tiny, ["seed=0"], fitting_rect)  # part 1 again: nothing new
    assert sweep_spec.read_spec(folder)["cells"] == listed
    sweep_spec.prepare_sweep_dir(folder, tiny, ["seed=0", "train.lr=0.01"], relu)  # other overrides
    assert list(sweep_spec.read_spec(folder)["cells"]) == [c.key for c in relu]
    sweep_spec.prepare_sweep_dir(folder, slow, ["seed=0", "train.lr=0.01"], fitting_rect)  # other grid
    assert list(sweep_spec.read_spec(folder)["cells"]) == [c.key for c in fitting_rect]


def test_grid_change_warns_only_for_another_grid_or_other_overrides(swept, tmp_path):
    from _support import write_grids

    folder, _, _ = swept
    conf = write_grids(tmp_path / "conf")
    tiny, slow = load_grid("tiny", conf), load_grid("slow", conf)
    assert sweep_spec.grid_change(folder, tiny, []) is None
    assert sweep_spec.grid_change(tmp_path / "new", slow, ["seed=3"]) is None  # no sweep.yaml yet
    msg = sweep_spec.grid_change(folder, tiny, ["train.lr=0.01"])
    assert msg.startswith(f"warning: {folder} was made for grid 'tiny' with overrides []; ")
    assert "now grid 'tiny' with overrides ['train.lr=0.01']:" in msg and "\n" not in msg
    assert "now grid 'slow' with overrides []:" in sweep_spec.grid_change(folder, slow, [])
    tiny["seeds"] = [5]  # the same name, its file edited since
    assert "now grid 'tiny' (its file edited since)" in sweep_spec.grid_change(folder, tiny, [])


def test_overrides_in_another_order_are_the_same_grid(tmp_path):
    from _support import write_grids

    grid = load_grid("tiny", write_grids(tmp_path / "conf"))
    folder = tmp_path / "s"
    sweep_spec.prepare_sweep_dir(folder, grid, ["a=1", "b=2"], [])
    assert sweep_spec.grid_change(folder, grid, ["b=2", "a=1"]) is None
    assert sweep_spec.grid_change(folder, grid, ["a=1"]) is not None


def test_check_sweep_dir_wants_sweep_yaml_and_cells(swept, tmp_path):
    import shutil

    from iatrun.errors import IatrunError

    folder, all_cells, _ = swept
    assert sweep_spec.check_sweep_dir(folder)["grid"] == "tiny"
    no_cells = tmp_path / "no_cells"
    no_cells.mkdir()
    shutil.copy(folder / sweep_spec.SPEC, no_cells / sweep_spec.SPEC)
    with pytest.raises(IatrunError, match=r"is not a sweep folder \(no cells/ folder\)"):
        sweep_spec.check_sweep_dir(no_cells)
    (tmp_path / "no_spec" / "cells").mkdir(parents=True)
    with pytest.raises(IatrunError, match=r"is not a sweep folder \(no readable sweep.yaml\)"):
        sweep_spec.check_sweep_dir(tmp_path / "no_spec")


def test_lean_cells_keep_only_the_small_files_and_a_rerun_finds_them_done(tmp_path, one_thread):
    from _support import write_grids

    from iatrun.results import LEAN_FILES, PROVENANCE, check_run, load_run

    conf = write_grids(tmp_path / "conf")
    grid = load_grid("tiny", conf)
    over = ["model.basis_in=rect", "model.basis_out=rect", "seed=0"]
    lean = expand(grid, [*over, "artifacts=lean"], user_dir=conf)
    full = expand(grid, over, user_dir=conf)
    assert [c.config_hash for c in lean] == [c.config_hash for c in full]  # what is kept is not the result
    folder = tmp_path / "s"
    sweep_spec.prepare_sweep_dir(folder, grid, [], lean)
    row = cells.run_cell(folder, lean[0])
    run = cells.cell_dir(folder, lean[0].key)
    assert row["state"] == "done" and check_run(run) is None
    assert {p.name for p in run.iterdir()} == {*LEAN_FILES, PROVENANCE, cells.DONE}
    assert cells.cell_state(folder, full[0]) == ("done", "ok")  # a resume without the option keeps it
    with pytest.raises(IatrunError, match="artifacts: lean"):
        load_run(run)
    (run / "curve.csv").unlink()
    assert cells.cell_state(folder, lean[0]) == ("incomplete", "curve.csv missing")


def test_tf32_and_a_gpu_enter_the_cell_hash_while_cpu_hashes_stay_as_before(monkeypatch):
    import torch

    from iatrun.config import compose
    from iatrun.sweep.grid import config_hash
    from iatrun.tune import setting_hash

    cfg = compose(["train.lr=auto"])
    before = {k: v for k, v in cfg.items() if k != "tf32"}  # a config from before the key existed
    assert cfg["tf32"] is False and config_hash(cfg) == config_hash(before)
    assert setting_hash(cfg) == setting_hash(before)  # tuning records made before it still match
    assert config_hash(dict(cfg, tf32=True)) != config_hash(cfg)
    assert setting_hash(dict(cfg, tf32=True)) != setting_hash(cfg)
    on_cpu = config_hash(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config_hash(cfg) != on_cpu  # device auto now resolves to cuda
    assert config_hash(dict(cfg, device="cpu")) == on_cpu


def test_a_fitting_cell_records_its_regions_when_it_finishes(swept):
    from iatrun.analysis.regions import summarize
    from iatrun.results import load_run, read_metrics

    folder, all_cells, _ = swept
    counted = 0
    for cell in all_cells:
        run = cells.cell_dir(folder, cell.key)
        m = read_metrics(run)
        s = summarize(load_run(run).model.double())
        assert (m["num_regions"], m["lipschitz"]) == (s["num_regions"], s["lipschitz"])
        assert str(load_run(run).model.linears[0].weight.dtype) == "torch.float32"  # saved as trained
        counted += 1
    assert counted == len(all_cells) > 0
