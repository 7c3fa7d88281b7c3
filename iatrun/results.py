"""The results tree: run folders, atomic file writes, and loading a run back."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from iatrun.errors import IatrunError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; results get the usual permissions instead.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Readers therefore see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN/Inf; a missing value reads back as None
    return v


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps({k: _jsonable(v) for k, v in data.items()}, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def run_name(cfg: Mapping[str, Any], stamp: str | None = None) -> str:
    """``<YYYYmmdd-HHMMSS>-<task>-<model>[-<basis_in>-<basis_out>-r<r>][-<method>]``."""
    stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
    m = cfg["model"]
    parts = [stamp, cfg["task"]["name"], m["kind"]]
    if "basis_in" in m:
        parts += [m["basis_in"], m["basis_out"], f"r{m['mesh_ratio']}"]
    if m.get("method", "mesh") != "mesh":
        parts.append(m["method"])
    return "-".join(str(p) for p in parts)


def new_run_dir(cfg: Mapping[str, Any]) -> Path:
    """A fresh folder under ``<results_dir>/runs`` (suffixed -2, -3, ... on a clash)."""
    root = Path(cfg.get("results_dir") or "results") / "runs"
    base = run_name(cfg)
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        if not path.exists():
            return path
    raise IatrunError(f"too many runs named {base} in {root}")


def check_out_dir(path: Path) -> Path:
    """Refuse an output folder that is a file, not empty, or cannot be created/written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise IatrunError(f"--out {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise IatrunError(f"--out {path} already exists and is not empty")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise IatrunError(f"cannot write to {path}: {probe} is not a writable folder")
    return path


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Build a folder under a hidden temporary name, then rename it to ``final`` in one step.

    If the body fails, the staging folder is removed: nothing half-written is left behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    os.chmod(stage, _DIR_MODE)
    try:
        yield stage
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@dataclass
class Run:
    """A finished run loaded from its folder."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    model: Any  # torch.nn.Module


def load_run(path: str | os.PathLike, device: str = "cpu") -> Run:
    """Rebuild a run's trained model from ``<path>/model.pt``, with its config and metrics."""
    import torch

    from iatrun.train import model_from_config

    path = Path(path)
    if not path.is_dir():
        raise IatrunError(f"{path} is not a run folder (no such folder)")
    try:
        blob = torch.load(path / "model.pt", map_location=device, weights_only=False)
        cfg, state = blob["config"], blob["state_dict"]
        dims = blob["dims"]
    except FileNotFoundError:
        raise IatrunError(f"{path} is not a run folder: model.pt is missing") from None
    except Exception as e:  # corrupt pickle, wrong content
        raise IatrunError(f"{path}/model.pt is unreadable ({type(e).__name__})") from None
    model = model_from_config(cfg, d=dims["d"], o=dims["o"])
    model.load_state_dict(state)
    model.to(device=device, dtype=next(iter(state.values())).dtype)
    try:
        metrics = read_json(path / "metrics.json")
    except (OSError, ValueError):
        metrics = {}
    return Run(path=path, config=cfg, metrics=metrics, model=model.eval())
