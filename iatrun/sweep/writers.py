"""Writer processes: a trained stack's cell folders are written while the next stack trains.

Finishing a cell (:func:`iatrun.sweep.cells.finish_cell`: its region and Lipschitz figures, its
figures, its files) is work for the CPU that a GPU would otherwise wait on. :class:`Writers` hands it
to a few spawned processes and returns at once; the caller trains on and collects the finished rows
later. The cell's lock stays with the caller, who releases it only when the cell's folder is
complete, so no other sweep process can claim a cell whose folder is being written.

What a writer gets is the trained result on the CPU (model copied off the device, task data
rebuilt from its config), with its provenance collected beforehand in the training process, so
``provenance.json`` names the device the cell trained on, not the writer's. If a writer process
dies, the cells it held are finished in the caller instead: nothing trained is lost.

On the CPU the writers would take cores from training, so the default there is none (cells are
finished in the training process, as before); on a GPU it is :data:`GPU_WRITERS` processes, fewer
if the machine has fewer spare cores.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from iatrun.sweep.cells import finish_cell
from iatrun.sweep.grid import Cell

GPU_WRITERS = 4  # writer processes beside a GPU sweep, at most (one core is left to the trainer)


def default_writers(cfg: Mapping[str, Any]) -> int:
    """How many writer processes a sweep of cells like ``cfg`` gets: none on the CPU."""
    from iatrun.train import resolve_device

    if resolve_device(str(cfg.get("device", "auto"))).type == "cpu":
        return 0
    return max(0, min(GPU_WRITERS, (os.cpu_count() or 1) - 1))


def _writer_init() -> None:
    import torch

    torch.set_num_threads(1)


def _finish_packed(sweep_dir: Path, cell: Cell, packed: bytes, seconds: float) -> dict:
    """A writer process's job: unpack a result and finish its cell."""
    import torch

    from iatrun.tasks import make_task

    result = torch.load(io.BytesIO(packed), weights_only=False)
    result.task = make_task(result.config["task"])  # rebuilt from its config: it holds closures
    return finish_cell(sweep_dir, cell, result, seconds)


def _pack(result) -> bytes:
    """The result with its model on the CPU and its provenance fixed where it trained, serialised."""
    import copy

    import torch

    from iatrun.provenance import collect

    tensor = next(iter(result.model.parameters()), None)
    if tensor is None:
        tensor = next(iter(result.model.buffers()), None)
    if tensor is not None and getattr(result, "provenance", None) is None:
        result.provenance = collect(device=tensor.device, dtype=tensor.dtype)
    out = copy.copy(result)
    out.model, out.task = copy.deepcopy(result.model).cpu(), None
    buf = io.BytesIO()
    torch.save(out, buf)
    return buf.getvalue()


class Writers:
    """Finish trained cells in ``count`` writer processes (none: in this process, at once).

    Use :meth:`finish` for each trained cell, :meth:`collect` to take the rows that are done (each
    releasing its cell's lock), and :meth:`close` at the end, which waits for all of them.
    """

    def __init__(self, count: int):
        self.count = count
        self.pool = None
        self._pending: dict[Future, tuple] = {}

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, *exc) -> None:
        self.close(wait=exc[0] is None)

    def _start(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        self.pool = ProcessPoolExecutor(self.count, mp_context=ctx, initializer=_writer_init)

    def finish(self, sweep_dir: Path, cell: Cell, result, seconds: float, lock) -> list[dict]:
        """Finish one cell whose ``lock`` the caller holds; the rows finished by now (maybe none)."""
        if self.count <= 0:
            try:
                return [finish_cell(sweep_dir, cell, result, seconds)]
            finally:
                lock.release()
        if self.pool is None:
            self._start()
        fut = self.pool.submit(_finish_packed, sweep_dir, cell, _pack(result), seconds)
        self._pending[fut] = (sweep_dir, cell, result, seconds, lock)
        return self.collect()

    def collect(self, block: bool = False) -> list[dict]:
        """Rows of the cells whose folders are written, their locks released; ``block``: wait for one."""
        if not self._pending:
            return []
        if block:
            wait(self._pending, return_when=FIRST_COMPLETED)
        rows = []
        for fut in [f for f in self._pending if f.done()]:
            sweep_dir, cell, result, seconds, lock = self._pending.pop(fut)
            try:
                try:
                    rows.append(fut.result())
                except Exception:  # the writer died (or could not unpack): finish the cell here
                    rows.append(finish_cell(sweep_dir, cell, result, seconds))
            finally:
                lock.release()
        return rows

    def close(self, wait: bool = True) -> list[dict]:
        """Wait for every pending cell (``wait``) and stop the writers; the last rows."""
        rows = []
        try:
            while wait and self._pending:
                rows += self.collect(block=True)
        finally:
            if self.pool is not None:  # folders being written are completed, queued ones dropped
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
            for *_, lock in self._pending.values():  # dropped cells are trained again on resume
                lock.release()
            self._pending.clear()
        return rows
