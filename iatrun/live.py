"""A run's progress while it trains: the live curve, and TensorBoard events when asked for.

A run folder appears complete in one rename, so what a run logs while it trains lives beside it:

- the **live curve** ``.<name>.curve.csv`` (the columns of ``curve.csv``), appended and flushed
  every :data:`FLUSH_S` seconds: ``tail -f`` follows a run, and a killed run leaves its curve up
  to the last flush. It is removed once the run folder holds the final ``curve.csv``.
- with ``logger: tensorboard``, **event files** in ``tensorboard/<name>/`` beside the run folder
  (a sweep: ``<sweep>/tensorboard/<cell key>/``): the loss and learning rate per logged step,
  and the run's final metrics. ``tensorboard --logdir`` on the folder above shows one run each.
  TensorBoard is an optional dependency (``pip install 'iatrun[tensorboard]'``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iatrun.errors import IatrunError

FLUSH_S = 5.0  # seconds between two writes of the live curve and the events
TB_DIR = "tensorboard"


def curve_path(folder: str | Path) -> Path:
    """Where the live curve of the run folder ``folder`` is kept while it trains."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.curve.csv"


def check_logger(cfg: Mapping[str, Any]) -> None:
    """Refuse ``logger: tensorboard`` where TensorBoard is not installed (before any work)."""
    if cfg.get("logger", "csv") == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise IatrunError(
                "logger=tensorboard needs the tensorboard package: pip install 'iatrun[tensorboard]'"
            ) from None


def events_dir(cfg: Mapping[str, Any], root: Path, name: str) -> Path | None:
    """``<root>/tensorboard/<name>`` with ``logger: tensorboard``, else None."""
    return root / TB_DIR / name if cfg.get("logger", "csv") == "tensorboard" else None


def write_events(cfg: Mapping[str, Any], root: Path, name: str, curve, metrics: Mapping[str, Any]) -> None:
    """The events of a run trained without a live log (a batched stack), written once it is done."""
    where = events_dir(cfg, root, name)
    if where is not None:
        LiveLog(None, where).finish(curve, metrics)


class LiveLog:
    """Writes a run's curve rows as they come (:meth:`update`), every :data:`FLUSH_S` seconds."""

    def __init__(self, csv: Path | None, events: Path | None = None, every_s: float = FLUSH_S):
        from iatrun.results import CURVE_HEADER

        self.csv, self.every_s, self.done, self.last = csv, every_s, 0, -math.inf
        self.file = None
        if csv is not None:
            csv.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(csv, "w")  # noqa: SIM115 - held open for the whole run, closed by finish()
            self.file.write(CURVE_HEADER + "\n")
            self.file.flush()
        self.writer = None
        if events is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(events), flush_secs=int(every_s))

    @classmethod
    def for_run(cls, cfg: Mapping[str, Any], folder: Path, events_root: Path | None = None, name: str = ""):
        """The log of a run into ``folder``: the live curve beside it, and with ``logger: tensorboard``
        events in ``<events_root or folder's parent>/tensorboard/<name or folder name>``."""
        return cls(
            curve_path(folder), events_dir(cfg, Path(events_root or folder.parent), name or folder.name)
        )

    def update(self, curve: Sequence[tuple[int, float, float]], force: bool = False) -> None:
        """Write the rows of ``curve`` not written yet, if :data:`FLUSH_S` has passed (or ``force``)."""
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        rows = curve[self.done :]
        self.done = len(curve)
        if self.file is not None and rows:
            self.file.write("".join(f"{s},{loss!r},{lr!r}\n" for s, loss, lr in rows))
            self.file.flush()
        if self.writer is not None:
            for s, loss, lr in rows:
                if math.isfinite(loss):
                    self.writer.add_scalar("train/loss", loss, s)
                self.writer.add_scalar("train/lr", lr, s)

    def finish(self, curve: Sequence[tuple[int, float, float]], metrics: Mapping[str, Any] | None) -> None:
        """The last rows, the final metrics (as scalars at the last step) and close."""
        self.update(curve, force=True)
        if self.writer is not None and metrics:
            step = curve[-1][0] if curve else 0
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"metrics/{key}", value, step)
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def discard(self) -> None:
        """Remove the live curve (the run folder now holds the final one); events are kept."""
        self.close()
        if self.csv is not None:
            self.csv.unlink(missing_ok=True)
