"""Atomic files, staged folders and folder names (iatrun.files)."""

import os
import stat

import pytest

from iatrun.errors import IatrunError
from iatrun.files import atomic_path, check_new_dir, staged_dir, unique_dir, write_json, write_text


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_new_files_and_folders_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_text(tmp_path / "a.txt", "x")
    with staged_dir(tmp_path / "run") as stage:
        write_text(stage / "b.txt", "y")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "run" / "b.txt").stat().st_mode) == file_mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1.0, "b": float("nan")})
    assert path.read_text() == '{\n  "a": 1.0,\n  "b": null\n}\n'
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text().startswith('{\n  "a": 1.0')
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_staged_folder_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "run") as stage:
        write_text(stage / "config.yaml", "a: 1\n")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_unique_dir_suffixes_a_taken_name(tmp_path):
    assert unique_dir(tmp_path, "run") == tmp_path / "run"
    (tmp_path / "run").mkdir()
    (tmp_path / "run-2").mkdir()
    assert unique_dir(tmp_path, "run") == tmp_path / "run-3"


def test_check_new_dir_refuses_a_file_and_a_full_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(IatrunError, match="exists and is not a folder"):
        check_new_dir(tmp_path / "f")
    with pytest.raises(IatrunError, match="already exists and is not empty"):
        check_new_dir(tmp_path / "full", flag="--out")
    assert check_new_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
