"""File-system plumbing shared by every writer: atomic files, staged folders, unique folder names.

Nothing here knows what a run or a sweep folder holds (that is :mod:`iatrun.results` and
:mod:`iatrun.sweep.cells`); it only guarantees that a reader sees a file or folder whole or not at all.
New files and folders get the process's umask like any other (``os.open``/``os.mkdir`` with 0o666
and 0o777 apply it), so nothing here reads or changes the umask.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from iatrun.errors import IatrunError

# Attempts at a fresh hidden name before giving up (names carry 64 random bits, so one suffices).
_TRIES = 100


def _fresh(parent: Path, prefix: str, suffix: str, make) -> Path:
    """Create a new entry ``<parent>/<prefix><random><suffix>`` with ``make(path)``; return it."""
    for _ in range(_TRIES):
        path = parent / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            make(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no fresh name for {prefix}*{suffix} in {parent}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Readers therefore see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    tmp = _fresh(path.parent, f".{path.name}.", ".tmp", _new_file)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN/Inf; a missing value reads back as None
    return v


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write a flat mapping as indented JSON, atomically; NaN and Inf become null."""
    write_text(path, json.dumps({k: _jsonable(v) for k, v in data.items()}, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


@contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a hidden temporary name, then rename it to ``final`` in one step.

    If the body fails, the staging folder is removed: nothing half-written is left behind. An
    existing empty ``final`` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = _fresh(final.parent, f".{final.name}.partial-", "", lambda p: os.mkdir(p, 0o777))
    try:
        yield stage
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def remove_stages(final: str | os.PathLike) -> None:
    """Delete the staging folders that killed attempts at ``final`` left behind."""
    final = Path(final)
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)


def stamp() -> str:
    """The local time as ``YYYYmmdd-HHMMSS``, the prefix of every default folder name."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def unique_dir(root: str | os.PathLike, base: str) -> Path:
    """``<root>/<base>``, or ``<base>-2``, ``-3``, … if that exists (the path is not created)."""
    root = Path(root)
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        if not path.exists():
            return path
    raise IatrunError(f"too many folders named {base} in {root}")


def check_new_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse an output folder that is a file, not empty, or cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IatrunError(f"{flag} {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise IatrunError(f"{flag} {path} already exists and is not empty")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise IatrunError(f"cannot write to {path}: {probe} is not a writable folder")
    try:  # access() says yes to root everywhere; /proc, read-only mounts and quotas say no only when tried
        os.rmdir(tempfile.mkdtemp(prefix=".iatrun-probe-", dir=probe))
    except OSError as e:
        raise IatrunError(f"cannot write to {path}: {probe} refuses new folders ({e.strerror})") from None
    return path
