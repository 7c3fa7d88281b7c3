"""Engines: a sweep's pending cells, trained one by one, in worker processes, or as stacks.

Two engines train cells: ``serial`` (one :func:`iatrun.train.train` per cell) and ``batched``
(stacks of cells as one network, :mod:`iatrun.batched`); ``auto`` picks per group of stackable
cells. Every work item — a single cell or a stack — goes through the cell protocol of
:mod:`iatrun.sweep.cells`, so the sweep folder is the same whichever engine ran it.

* **Chunking.** A stack holds at most ``stack_size`` cells; by default as many as keep its
  (C, B, M) activations (B the batch, M the widest mesh, times depth) under ``STACK_BYTES``.
* **Jobs.** With ``--jobs J`` stacks run inside the J worker processes: each group is cut into
  at least J stacks of near-equal size, so every worker gets a share of every group. With a
  ``--launcher`` each array task runs its chunk of cells through :func:`run_cells` with the
  sweep's engine (:mod:`iatrun.sweep.launch`), so stacks form inside a task.

**The ``auto`` rule**: on a GPU, stack every stackable group of at least 2 cells (not measured
here: kernels of these sizes are launch-bound); on the CPU, stack such a group only while a
cell's batch rows times its widest mesh, B·M, is below ``AUTO_CPU_BM`` = 65 536; everything else
runs with the serial engine. Measured on a 2-core CPU (one thread; the cores shared with another
long job, so figures are medians of noisy runs), time of one training step of a stack against
the same cells stepped one by one:

* quick grid (``iatrun sweep --grid quick``): fitting, 39 cells, B·M = 12 800: 7–9 ms against
  29–30 ms (3.5× faster); memorization, 39 cells, B·M = 16 384: 14–16 ms against 37–42 ms (2.7×).
* 16 IAT cells: B·M = 25 600: 0.56–0.81 of the serial time; 51 200: 0.60–0.69; 64 000:
  0.68–0.80; 65 536 (memorization, width 64): 0.90–1.09; 128 000: 0.99–1.21.
* the paper budget (fitting B·M = 512 000, memorization 896 000): 1.2× and 1.7× *slower*, as
  ``bmm`` runs large shapes less efficiently than ``mm``.

Whole quick grid, end to end (``iatrun bench`` sweep rows, three runs on the idle 2 cores): serial
186–226 cells/min; ``--jobs 2`` 1.06–1.35×; batched 1.13–1.32×; batched ``--jobs 2`` 1.22–1.44×.
Training is a small part of a quick cell's time: the figures every cell folder holds
(``loss.png`` about 75 ms, ``prediction.png`` about 115 ms for a fitting cell) and the sweep's
fixed costs (start-up, composing the 78 configs, the report and its figures: about 10 s) are
most of the rest, and no engine batches those.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from iatrun.batched import stack_signature
from iatrun.errors import IatrunError
from iatrun.sweep.cells import claim_all, clear_cell, execute_cell, run_cell, tune_dir
from iatrun.sweep.grid import Cell
from iatrun.sweep.writers import Writers, default_writers
from iatrun.tasks import make_task
from iatrun.train import trial
from iatrun.tune import cached, ensure, is_auto, resolve, setting_hash, with_lr

ENGINES = ("auto", "batched", "serial")
STACK_BYTES = 2**30  # default cap on a stack's (C, B, M) activations, all layers together
MIN_STACK = 2  # stacks have at least this many cells (a stack of one is the serial engine)
AUTO_CPU_BM = 65536  # auto stacks CPU groups whose batch rows x mesh size B·M is below this


# --- planning: which cells share a stack -------------------------------------------------------


def _sizes(cfgs: Sequence[Mapping[str, Any]]) -> tuple[int, int, int, int]:
    """(B, M, depth, itemsize) of a group: batch rows, widest mesh (n for element-wise), layers."""
    cfg = cfgs[0]
    n, depth = int(cfg["model"]["width"]), int(cfg["model"]["depth"])
    m = max(n * int(c["model"].get("mesh_ratio", 1)) if c["model"]["kind"] == "iat" else n for c in cfgs)
    points = len(make_task(cfg["task"]).x)
    bs = cfg["train"].get("batch_size")
    batch = min(points, bs) if bs else points
    return batch, m, depth, 8 if cfg.get("dtype") == "float64" else 4


def default_stack_size(cfgs: Sequence[Mapping[str, Any]]) -> int:
    """Most cells whose (C, B, M) activations over all layers stay under ``STACK_BYTES``."""
    batch, m, depth, itemsize = _sizes(cfgs)
    return max(1, STACK_BYTES // (batch * m * depth * itemsize))


def auto_stacks(cfgs: Sequence[Mapping[str, Any]]) -> bool:
    """The ``auto`` rule: stack a group on a GPU, and on the CPU while B·M < ``AUTO_CPU_BM``."""
    from iatrun.train import resolve_device

    if resolve_device(str(cfgs[0].get("device", "auto"))).type != "cpu":
        return True
    batch, m, _, _ = _sizes(cfgs)
    return batch * m < AUTO_CPU_BM


def plan(
    cells: Sequence,
    engine: str = "auto",
    jobs: int = 1,
    stack_size: int | None = None,
    sweep_dir: str | Path | None = None,
) -> list[list]:
    """Cut ``cells`` into work items: stacks (lists of ≥ 2 cells) and single cells (serial engine).

    Cells are grouped by :func:`stack_signature`; a group is cut into near-equal stacks of at
    most ``stack_size`` cells (default :func:`default_stack_size`), and into at least ``jobs``
    stacks so every worker gets a share (not on a single GPU, which the workers share: there
    ``jobs`` does not make stacks smaller). ``batched`` stacks every group of at least
    ``MIN_STACK`` cells; ``auto`` only those :func:`auto_stacks` allows (the module docstring
    gives the measurements). A cell whose ``train.lr`` is ``auto`` stacks by the rate chosen for it
    in ``sweep_dir`` (tune first: :func:`tune_pending`); one not chosen yet runs alone.
    """
    if engine not in ("auto", "batched"):
        raise IatrunError(f"plan() is for the batched engines, got engine {engine!r}")
    if stack_size is not None and (isinstance(stack_size, bool) or stack_size < 1):
        raise IatrunError(f"--stack-size must be an integer >= 1, got {stack_size!r}")
    groups: dict[str, list] = {}
    items: list[list] = []
    for cell in cells:
        cfg = _chosen(cell.config, sweep_dir)
        sig = None if cfg is None else stack_signature(cfg)
        if sig is None:
            items.append([cell])
        else:
            groups.setdefault(sig, []).append(cell)
    for group in groups.values():
        cfgs = [_chosen(c.config, sweep_dir) for c in group]
        if len(group) < MIN_STACK or (engine == "auto" and not auto_stacks(cfgs)):
            items += [[c] for c in group]
            continue
        cap = stack_size or default_stack_size(cfgs)
        share = 1 if _one_gpu(cfgs[0]) else jobs  # workers sharing one GPU: whole stacks, not smaller ones
        count = max(math.ceil(len(group) / cap), min(share, len(group) // MIN_STACK), 1)
        size, extra = divmod(len(group), count)
        start = 0
        for i in range(count):
            stop = start + size + (i < extra)
            items.append(group[start:stop])
            start = stop
    return items


def _one_gpu(cfg: Mapping[str, Any]) -> bool:
    """Whether the cell trains on CUDA with a single device present (``auto`` as it resolves here)."""
    import torch

    from iatrun.train import resolve_device

    return resolve_device(str(cfg.get("device", "auto"))).type == "cuda" and torch.cuda.device_count() == 1


def _chosen(cfg: Mapping[str, Any], sweep_dir: str | Path | None) -> dict | None:
    """``cfg`` with its tuned rate filled in from the sweep's cache; None if not chosen yet."""
    if not is_auto(cfg):
        return dict(cfg)
    record = None if sweep_dir is None else cached(cfg, tune_dir(sweep_dir))
    return None if record is None else with_lr(cfg, record["chosen"])


# --- running work items ------------------------------------------------------------------------


def _worker_init(threads: int, parent: int | None = None, counter=None) -> None:
    """A worker process's entry point: its share of the cores as torch threads, its own GPU where
    there are several (worker i takes ``cuda:i`` modulo their number, counted by ``counter``), and a
    watch that ends the worker when ``parent`` (the sweep) is gone, so a killed sweep leaves no
    worker behind training an orphaned cell (its unfinished folder is redone on resume)."""
    import threading

    import torch

    torch.set_num_threads(threads)
    if counter is not None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        torch.cuda.set_device(index % torch.cuda.device_count())
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with(parent: int, every: float = 1.0) -> None:
    """Poll once a second; exit the process at once when it has been re-parented."""
    import time

    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _pool(jobs: int):
    """``jobs`` spawned worker processes, each with its share of the cores as torch threads."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)  # which GPU the next worker takes, where there are several
    return ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_init, initargs=(threads, os.getpid(), counter)
    )


def _run_item(sweep_dir: Path, item: Sequence[Cell], writers: Writers | None = None) -> list[dict]:
    """Run one work item: a single cell (serial engine) or a stack (:func:`run_stack`)."""
    if len(item) == 1:
        return [run_cell(sweep_dir, item[0])]
    return run_stack(sweep_dir, item, writers)


def run_stack(sweep_dir: str | Path, cells: Sequence[Cell], writers: Writers | None = None) -> list[dict]:
    """Claim, train and finish a stack of sweep cells; one row per cell, as :func:`run_cell` gives.

    Each cell's lock is tried without waiting: a cell another process holds comes back ``busy``
    (the caller waits for it as for any busy cell), a finished cell is skipped, and the rest are
    trained together. If only one is left, it runs with the serial engine. With ``writers``, the
    trained cells are finished there (:mod:`iatrun.sweep.writers`) and the rows returned are those
    finished by now; the others come from ``writers.collect``.
    """
    from iatrun.batched import train_stack
    from iatrun.live import write_events

    todo, rows, locks = claim_all(sweep_dir, cells)
    handed = False
    try:
        if len(todo) == 1:
            return rows + [execute_cell(sweep_dir, todo[0])]
        if not todo:
            return rows
        cfgs = [clear_cell(sweep_dir, c) for c in todo]
        start = time.time()
        try:
            chosen = [resolve(c, trial, tune_dir(sweep_dir)) for c in cfgs]
            results = train_stack([c for c, _ in chosen])
        except Exception:  # rerun cell by cell: a crash is then recorded as the serial engine records it
            return rows + [execute_cell(sweep_dir, c) for c in todo]
        results = [r.tuned(c, rec) for r, c, (_, rec) in zip(results, cfgs, chosen)]
        for c, r in zip(todo, results):  # a stack has no live log: its events, if asked for, now
            write_events(r.config, Path(sweep_dir), c.key, r.curve, r.metrics)
        share = (time.time() - start) / len(todo)
        writers = writers or Writers(0)
        for c, r in zip(todo, results):
            rows += writers.finish(Path(sweep_dir), c, r, share, locks.pop(c.key))
        handed = True
        return rows
    finally:
        for lock in locks.values() if not handed else ():
            lock.release()


def _tune_one(sweep_dir: Path, cfg: Mapping[str, Any]) -> str:
    """Choose one setting's learning rate into the sweep's cache; return its chosen rate as text, or
    why it failed (its cells then try again, and a failure is recorded as the cell's error)."""
    try:
        record = ensure(cfg, trial, tune_dir(sweep_dir))
    except Exception as e:  # one setting's failure must not stop the others
        return f"failed ({type(e).__name__}: {e})"
    return f"{record['chosen']:.3g}" + (" (every candidate diverged)" if record.get("all_diverged") else "")


def tune_pending(
    sweep_dir: Path, cells: Sequence[Cell], jobs: int = 1, on_tuned: Callable[[str, str], None] | None = None
) -> int:
    """Choose the rate of every ``train.lr: auto`` setting among ``cells`` not chosen yet, ``jobs``
    settings at a time; ``on_tuned(cell key, rate)`` reports each. Returns how many were chosen."""
    todo: dict[str, Cell] = {}
    for cell in cells:
        if is_auto(cell.config) and cached(cell.config, tune_dir(sweep_dir)) is None:
            todo.setdefault(setting_hash(cell.config), cell)
    for key, rate in _pool_map(_tune_one, sweep_dir, [(c.key, c.config) for c in todo.values()], jobs):
        if on_tuned:
            on_tuned(key, rate)
    return len(todo)


def _pool_map(fn, sweep_dir: Path, items: Sequence[tuple[str, Any]], jobs: int):
    """``(key, fn(sweep_dir, arg))`` for each ``(key, arg)``, here or in ``jobs`` worker processes."""
    if jobs <= 1 or len(items) <= 1:
        for key, arg in items:
            yield key, fn(sweep_dir, arg)
        return
    from concurrent.futures import as_completed

    with _pool(jobs) as pool:
        futures = {pool.submit(fn, sweep_dir, arg): key for key, arg in items}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def run_cells(
    sweep_dir: Path,
    cells: Sequence[Cell],
    jobs: int = 1,
    on_start: Callable[[Cell], None] | None = None,
    on_done: Callable[[dict], None] | None = None,
    engine: str = "serial",
    stack_size: int | None = None,
    on_tuned: Callable[[str, str], None] | None = None,
    writers: int | None = None,
) -> list[dict]:
    """Run ``cells`` (serially or in ``jobs`` worker processes); report each as it lands.

    ``engine`` is ``serial`` (one cell at a time), ``batched`` or ``auto`` (stacks of cells that
    share shapes and budget trained as one network: :func:`plan` cuts them, the module docstring
    gives the rule ``auto`` follows). Cells claimed by another
    process are waited for afterwards, and run here (serially) if that process died without
    finishing them. In this process (``jobs`` 1), ``writers`` processes write finished stacks'
    cell folders while the next stack trains (default :func:`iatrun.sweep.writers.default_writers`:
    none on the CPU); worker processes finish their own cells.
    """
    if engine not in ENGINES:
        raise IatrunError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    tune_pending(sweep_dir, cells, jobs, on_tuned)  # rates first, so stacks form by the chosen rate
    if engine == "serial":
        items: list[list[Cell]] = [[c] for c in cells]
    else:
        items = plan(cells, engine=engine, jobs=jobs, stack_size=stack_size, sweep_dir=sweep_dir)
    rows: list[dict] = []
    busy: list[Cell] = []
    by_key = {c.key: c for c in cells}

    def land(row: dict) -> None:
        if row["state"] == "busy":
            busy.append(by_key[row["key"]])
            return
        rows.append(row)
        if on_done:
            on_done(row)

    def start(item: Sequence[Cell]) -> None:
        for cell in item if on_start else ():
            on_start(cell)

    if jobs <= 1:
        count = default_writers(cells[0].config) if writers is None and cells else (writers or 0)
        with Writers(count) as pool:
            for item in items:
                start(item)
                for row in _run_item(sweep_dir, item, pool) + pool.collect():
                    land(row)
            for row in pool.close():
                land(row)
    else:
        from concurrent.futures import FIRST_COMPLETED, wait

        with _pool(jobs) as pool:
            pending = {}
            queue = list(items)
            try:
                while queue or pending:
                    while queue and len(pending) < jobs:
                        item = queue.pop(0)
                        start(item)
                        pending[pool.submit(_run_item, sweep_dir, item)] = item
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        pending.pop(fut)
                        for row in fut.result():
                            land(row)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    for cell in busy:  # claimed elsewhere: wait for that claim, then run it if still unfinished
        land(run_cell(sweep_dir, cell, wait=True))
    return rows
