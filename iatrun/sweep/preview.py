"""``iatrun sweep --dry-run``: what a sweep would run, how the work would be cut, and how long it
would take. Nothing is trained, submitted or written; the time comes from the same short timing
probe as a launcher's time limit (:mod:`iatrun.sweep.timelimit`)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iatrun.sweep.grid import Cell


def describe(
    grid: str,
    folder: Path,
    cells: Sequence[Cell],
    pending: Sequence[Cell],
    work: Mapping[str, Any],
) -> list[str]:
    """The lines of a dry run. ``work``: ``engine``, ``jobs``, ``stack_size``, and for a launcher
    its resolved config (``launcher``, from :func:`iatrun.sweep.launch.resolve_launcher`) and its
    time-limit line (``limit``); ``reused_rates``: the settings whose rate ``--reuse`` would copy."""
    from iatrun.sweep.cells import tune_dir
    from iatrun.tune import chosen_settings

    tuned = chosen_settings(tune_dir(folder)) | set(work.get("reused_rates", ()))
    state = "exists: a rerun resumes it" if folder.is_dir() else "would be created"
    by_task = Counter(c.config["task"]["name"] for c in cells)
    seeds = sorted({c.config.get("seed") for c in cells}, key=str)
    lines = [
        "dry run: nothing is trained, submitted or written",
        f"grid {grid}: {len(cells)} cells, {len(cells) - len(pending)} already finished, "
        f"{len(pending)} to run → {folder} ({state})",
        "cells by task: "
        + ", ".join(f"{t} {n}" for t, n in sorted(by_task.items()))
        + f"; seeds {', '.join(map(str, seeds))}",
        _rates(pending, tuned),
    ]
    if not pending:
        return lines
    launcher = work.get("launcher")
    if launcher is not None:
        tasks = -(-len(pending) // launcher["cells_per_task"])
        lines.append(
            f"launcher {launcher['cluster']}: {tasks} array task(s) of up to {launcher['cells_per_task']} "
            f"cells, {launcher.get('gpus_per_node', 0)} GPU(s) and {launcher.get('cpus_per_task', 1)} "
            f"CPU(s) each, engine {work['engine']} inside each task"
        )
        lines.append(work["limit"])
        return lines
    lines.append(_engine(folder, pending, work))
    lines.append(_time(pending, int(work["jobs"]), tuned, work["engine"]))
    return lines


def _rates(pending: Sequence[Cell], tuned: set[str]) -> str:
    from iatrun.sweep.timelimit import tune_plan
    from iatrun.tune import setting_hash

    auto = {setting_hash(c.config): c.config for c in pending if tune_plan(c.config)[1]}
    fixed = sorted({str(c.config["train"]["lr"]) for c in pending if not tune_plan(c.config)[1]})
    parts = [f"fixed {', '.join(fixed)}"] if fixed else []
    if auto:
        todo = [cfg for h, cfg in auto.items() if h not in tuned]
        trials = max((tune_plan(cfg)[1] for cfg in todo), default=0)
        parts.append(
            f"auto for {len(auto)} setting(s): {len(todo)} to choose first (up to {trials} trials each), "
            f"{len(auto) - len(todo)} already chosen in the folder"
        )
    return "learning rate: " + ("; ".join(parts) or "none to run")


def _engine(folder: Path, pending: Sequence[Cell], work: Mapping[str, Any]) -> str:
    from iatrun.sweep.run import plan

    engine, jobs = work["engine"], int(work["jobs"])
    if engine == "serial":
        return f"engine serial: {len(pending)} cells one at a time, in {jobs} worker(s)"
    items = plan(pending, engine=engine, jobs=jobs, stack_size=work.get("stack_size"), sweep_dir=folder)
    stacks = [len(i) for i in items if len(i) > 1]
    alone = sum(1 for i in items if len(i) == 1)
    sizes = (
        "" if not stacks else f" of {min(stacks)}" + (f"–{max(stacks)}" if max(stacks) > min(stacks) else "")
    )
    sizes += " cells" if stacks else ""
    line = f"engine {engine}: {len(stacks)} stack(s){sizes} and {alone} cell(s) alone, in {jobs} worker(s)"
    if any(c.config["train"].get("lr") == "auto" for c in pending):
        line += " (a cell whose rate is not chosen yet is counted alone; once tuned, cells stack by rate)"
    return line


def _time(pending: Sequence[Cell], jobs: int, tuned: set[str], engine: str) -> str:
    """A range: at least the whole work spread evenly over ``jobs`` workers with no rate beyond the
    grid's edge; at most the slowest worker when each setting's cells are dealt to one worker
    together (it is tuned once) and every extension is trained, as the SLURM time limit counts."""
    from iatrun.sweep.timelimit import cost_key, costs, estimate, span, task_seconds

    groups: dict[str, list[Cell]] = {}
    for cell in pending:
        groups.setdefault(cost_key(cell.config), []).append(cell)
    parts: list[list[Cell]] = [[] for _ in range(max(1, jobs))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(parts, key=len).extend(group)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    cost = costs(list(pending), threads)
    est = estimate([p for p in parts if p], threads, tuned, cost)
    low = task_seconds(pending, cost, tuned, extensions=False) / max(1, min(jobs, len(pending)))
    high = max(est.minutes * 60, low)
    bound = "; stacked cells usually take less" if engine != "serial" else ""
    return (
        f"estimated time: {span(low)} to {span(high)} of training in {jobs} worker(s) at {threads} "
        f"thread(s) ({est.how}{bound}{_busy()}), plus the report"
    )


def _busy() -> str:
    """A warning when the timings were taken on a loaded machine (they scale with the load)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return ""
    return f"; timed while busy, load {load:.1f} on {cores} cores: too high" if load > cores + 0.5 else ""
