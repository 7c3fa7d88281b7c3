"""Checkpoints of a training run on disk, so a killed, pre-empted or requeued run resumes.

:func:`iatrun.train.train` given a checkpoint path saves, at the end of a block of steps (see
:mod:`iatrun.loop`) and at most every ``CHECKPOINT_EVERY_S`` seconds, everything the next step
depends on: the parameters, the optimiser's and scheduler's state, the mini-batch order and its
random generator, the losses and curve so far and the training time spent. A run started with the
same path and the same config continues from there and, on the CPU with the same thread count,
ends with the same bits as a run that was never interrupted (tested with a kill at a random step).

The file sits beside the run folder, ``.<name>.checkpoint.pt``, so the folder itself is still
written in one rename when the run ends (after which the file is deleted). A checkpoint of another
config (any key differs) is ignored and replaced. Written to a temporary name and
renamed, so a kill while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_EVERY_S = 120.0  # seconds of training between two checkpoints (IATRUN_CHECKPOINT_S sets it)


def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where the checkpoint of a run written to ``out`` lives: beside it, hidden."""
    out = Path(out)
    return out.parent / f".{out.name}.checkpoint.pt"


def every_seconds() -> float:
    """The interval between checkpoints: ``IATRUN_CHECKPOINT_S`` if set (0: every block), else the default."""
    raw = os.environ.get("IATRUN_CHECKPOINT_S")
    try:
        return max(0.0, float(raw)) if raw is not None else CHECKPOINT_EVERY_S
    except ValueError:
        return CHECKPOINT_EVERY_S


class Saver:
    """Saves and loads one run's checkpoint; ``digest`` identifies the config it belongs to."""

    def __init__(self, path: str | os.PathLike, cfg: Mapping[str, Any]):
        self.path = Path(path)
        self.digest = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
        self.every = every_seconds()
        self.last = time.monotonic()

    def load(self) -> dict | None:
        """The saved state of this config, or None (no file, another config, or unreadable)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # a torn or foreign file: start over
            return None
        return state if isinstance(state, dict) and state.get("digest") == self.digest else None

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def save(self, state: dict) -> None:
        """Write ``state`` (tagged with the config digest) atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({**state, "digest": self.digest}, tmp)
        os.replace(tmp, self.path)
        self.last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
