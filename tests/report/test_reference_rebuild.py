"""The committed reference folders are what the code makes: `iatrun report` on a copy of each one
rebuilds its cells.csv, tables, report.md and study.md byte for byte (results/reference/)."""

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iatrun.cli import app

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference"
FOLDERS = ("paper", "mesh", "study", "exact")  # the four `make reference` writes
COMMITTED = [name for name in FOLDERS if (REFERENCE / name / "cells").is_dir()]


def written(folder: Path) -> dict[str, bytes]:
    """What a report writes, figures aside (their bytes follow matplotlib's version)."""
    names = ["cells.csv", "report.md", "study.md", "budget-check.md"]
    files = [folder / n for n in names if (folder / n).is_file()] + sorted((folder / "tables").glob("*.csv"))
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def test_the_study_folder_is_committed_with_its_cells():
    assert "study" in COMMITTED  # the protocol study: 1350 lean cells


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMITTED)
def test_report_rebuilds_a_committed_reference_folder_byte_for_byte(tmp_path, name, one_thread):
    committed = REFERENCE / name
    copy = tmp_path / name
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("figures"))
    tables = sorted((copy / "tables").glob("*.csv"))
    for path in [copy / "cells.csv", copy / "report.md", *copy.glob("study.md"), *tables]:
        path.unlink()  # nothing left over: each file must be written again
    res = CliRunner().invoke(app, ["report", str(copy), "-q"])
    assert res.exit_code == 0, res.output
    before, after = written(committed), written(copy)
    assert sorted(after) == sorted(before)
    changed = [n for n in before if before[n] != after[n]]
    assert not changed, f"{name}: rebuilt files differ from the committed ones: {changed}"
