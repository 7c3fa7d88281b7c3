"""``make gpu-check`` (``iatrun gpu-check``): the GPU path checked and timed in one prepared run.

On a machine with a CUDA device it

(a) runs the device-parametrised tests (the layer, both engines, the meta-device and host-read
    tests) with pytest, when run from a checkout that has ``tests/``;
(b) times one training step of each stack the batched engine forms from the grid (seed 0), and
    one step of one serial cell per task, each synchronised, median of 7 after a warm-up;
(c) runs the grid with its seeds on the batched engine end to end at one fixed learning rate
    (tuning trains its trials one by one, which is not what this measures), and splits the wall
    time into start-up (composing the grid), training (the cells' own training time), writing
    not hidden by training (the rest of the run: cell folders and figures, most of them written by
    :mod:`iatrun.sweep.writers` while the next stack trains) and the report;
(d) writes ``<out>/gpu.csv`` (section, item, value, unit) and returns the rows for a table.

:func:`check` takes any device, so the same code is tested on the CPU with a small grid; the
command refuses to run without CUDA.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from iatrun.bench import _sync, timeit
from iatrun.errors import IatrunError

TESTS = ("tests/nn/test_iat.py", "tests/test_batched.py", "tests/test_meta.py", "tests/test_host_reads.py")
FIXED_LR = "train.lr=3e-3"  # the grid's cells at one rate: see (c)


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise IatrunError("gpu-check needs a CUDA device and torch sees none: run it on a machine with a GPU")
    return torch.device("cuda")


def run_tests(root: Path) -> list[tuple[str, str, float, str]]:
    """(a): the device-parametrised tests, in a subprocess; their exit status and wall time."""
    files = [f for f in TESTS if (root / f).is_file()]
    if not files:
        return [("tests", "not run (no tests/ beside the package)", float("nan"), "")]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=root)
    return [
        ("tests", "pytest exit status (0: passed)", float(done.returncode), ""),
        ("tests", "pytest wall time", time.perf_counter() - start, "s"),
    ]


def _stack_step(cfgs: Sequence[dict], device: torch.device) -> float:
    """Seconds of one training step of the stack of ``cfgs`` (median, synchronised)."""
    from iatrun.batched import _masked_step, _stacked_loss, prepare_stack
    from iatrun.train import data, optimizer

    st = prepare_stack(cfgs)
    x, y = data(st.task, device, st.dtype)
    params = list(st.model.parameters())
    opt, _ = optimizer(params, cfgs[0]["train"], device)
    loss_fn = _stacked_loss(st.task)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        _masked_step(loss_fn(st.model(x), y), None, params, [], opt)

    return timeit(step, sync=_sync(device))


def _serial_step(cfg: dict, device: torch.device) -> float:
    from iatrun.train import data, optimizer, prepare

    task, model, _, dtype = prepare(cfg)
    x, y = data(task, device, dtype)
    opt, _ = optimizer(model.parameters(), cfg["train"], device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        task.loss(model(x), y).backward()
        opt.step()

    return timeit(step, sync=_sync(device))


def step_times(grid: str, device: torch.device, overrides: Sequence[str] = ()) -> list[tuple]:
    """(b): one step of each stack of the grid's seed-0 cells, and of one serial cell per task."""
    from iatrun.sweep import run
    from iatrun.sweep.grid import expand, load_grid

    cells = expand(load_grid(grid), [FIXED_LR, f"device={device.type}", "seed=0", *overrides])
    rows, serial = [], {}
    for item in run.plan(cells, engine="batched", jobs=1):
        cfgs = [c.config for c in item]
        task = cfgs[0]["task"]["name"]
        if len(cfgs) >= 2:
            sec = _stack_step(cfgs, device)
            rows.append(("step", f"{task} stack of {len(cfgs)} cells", sec * 1e3, "ms"))
            rows.append(("step", f"{task} stack, per cell", sec * 1e3 / len(cfgs), "ms"))
        serial.setdefault(task, cfgs[0])
    for task, cfg in serial.items():
        rows.append(
            ("step", f"{task} serial cell ({cfg['model']['kind']})", _serial_step(cfg, device) * 1e3, "ms")
        )
    return rows


def end_to_end(grid: str, seeds: Sequence[int], device: torch.device, out: Path, overrides=()) -> list[tuple]:
    """(c): the grid on the batched engine into ``out``, its wall time split into phases."""
    import pandas as pd

    from iatrun.report.build import build
    from iatrun.sweep import run
    from iatrun.sweep import spec as sweep_spec
    from iatrun.sweep.grid import expand, load_grid

    t0 = time.perf_counter()
    spec = load_grid(grid)
    seed_list = f"seed={','.join(str(s) for s in seeds)}"
    over = [FIXED_LR, f"device={device.type}", seed_list, *overrides]
    cells = expand(spec, over)
    sweep_spec.prepare_sweep_dir(out, spec, over, cells)
    t1 = time.perf_counter()
    run.run_cells(out, cells, jobs=1, engine="batched")
    t2 = time.perf_counter()
    build(out)
    t3 = time.perf_counter()
    df = pd.read_csv(out / "cells.csv")
    training = float(pd.to_numeric(df.get("wall_time_s"), errors="coerce").sum())
    ok = int((df["status"] == "ok").sum()) if "status" in df else 0
    return [
        ("sweep", f"{grid}: cells ok of {len(cells)}", float(ok), "cells"),
        ("sweep", "end to end", t3 - t0, "s"),
        ("sweep", "start-up (composing the grid)", t1 - t0, "s"),
        ("sweep", "training (the cells' own time)", training, "s"),
        ("sweep", "writing not hidden by training (the rest)", (t2 - t1) - training, "s"),
        ("sweep", "report", t3 - t2, "s"),
    ]


def check(
    device: torch.device,
    out: Path,
    grid: str = "paper",
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    tests_root: Path | None = None,
) -> list[tuple]:
    """(a)–(d); ``tests_root`` None skips (a). Returns the rows written to ``out/gpu.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", float("nan"), "")
    ]
    if tests_root is not None:
        rows += run_tests(tests_root)
    steps = step_times(grid, device, overrides)
    rows += steps
    rows += end_to_end(grid, seeds, device, out / "sweep", overrides)
    stack = [r[2] for r in steps if r[1].endswith("per cell")]
    single = [r[2] for r in steps if "serial cell" in r[1]]
    if stack and single:
        speedup = statistics.median(single) / statistics.median(stack)
        rows.append(("step", "batched vs serial training speed-up (median per-cell step)", speedup, "x"))
    with open(out / "gpu.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "item", "value", "unit"])
        w.writerows(rows)
    return rows
