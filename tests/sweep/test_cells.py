"""The cell protocol (iatrun.sweep.cells): claim → state → finish, and --force's reset."""

import pytest

from iatrun.sweep import cells
from iatrun.sweep.grid import expand, load_grid


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_thread):
    from _support import write_grids

    conf = write_grids(tmp_path_factory.mktemp("conf") / "conf")
    grid = load_grid("tiny", conf)
    all_cells = expand(grid, ["model.basis_in=rect", "model.basis_out=rect", "seed=0"], user_dir=conf)
    folder = tmp_path_factory.mktemp("sweep") / "s"
    cells.prepare_sweep_dir(folder, grid, [], all_cells)
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
