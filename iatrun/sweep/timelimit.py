"""How long an array task runs: the time limit that a launcher's ``timeout_min: auto`` asks for.

A task's time is estimated from the grid's budget: every cell trains ``train.steps`` steps, plus
the steps of the learning-rate tuner's halving for each setting it may have to tune (all of its
rungs and extensions, for every selection seed: an upper bound). The seconds a step takes are
measured here, on the submitting machine, by training each setting briefly at two lengths with the
task's thread count (:func:`probe`), so the fixed cost of a cell (data, model, evaluation) is
measured too. A cell for a GPU that this machine lacks is measured on its CPU, which overstates a
GPU's time.

Settings are probed within :data:`PROBE_BUDGET_S`, those with the longest budget first; those left
over take the mean step and set-up measured for their task (an estimate, not a bound: the
:data:`MARGIN` covers the spread). The limit is :data:`MARGIN` times the slowest task's estimate plus
:data:`STARTUP_MIN`, at least :data:`FLOOR_MIN` minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from iatrun.sweep.grid import Cell

PROBE_SHORT = 2  # steps of the short run: its time, less its steps, is a cell's fixed cost
PROBE_SPREAD_S = 0.3  # the longer run must take this much longer than the short one...
PROBE_MAX = 1024  # ...or be this many steps
PROBE_BUDGET_S = 15.0  # seconds of probing at most; the settings left over are bounded, not measured
MARGIN = 1.5  # the limit over the estimate: shared nodes, slower GPUs, noisy neighbours
STARTUP_MIN = 3  # minutes for a task's Python, torch and submitit start-up and its last writes
FLOOR_MIN = 10  # no task asks for less


@dataclass(frozen=True)
class Cost:
    """What one setting costs: a fixed part per cell and seconds per step (``measured`` or bounded)."""

    fixed_s: float
    step_s: float
    measured: bool


@dataclass(frozen=True)
class Estimate:
    """The slowest task's estimated minutes, the time limit derived from it, and how it was made."""

    minutes: float
    limit: int
    how: str


def cost_key(cfg: Mapping[str, Any]) -> str:
    """The part of a config that sets a step's cost: everything but seeds, rate and budget."""
    import hashlib
    import json

    from iatrun.digest import PRESENTATION

    train = {k: v for k, v in cfg["train"].items() if k not in ("lr", "steps", "tune", "log_every")}
    keep = {k: v for k, v in cfg.items() if k not in ("seed", "train", *PRESENTATION)}
    text = json.dumps({**keep, "train": train}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tune_plan(cfg: Mapping[str, Any], extensions: bool = True) -> tuple[int, int]:
    """At most how many steps and trials tuning ``cfg``'s setting trains: every rung of the halving,
    then (``extensions``) every extension beyond the grid's edge, for each selection seed ((0, 0)
    when the rate is given)."""
    from iatrun.tune import is_auto, rung_steps, schedule

    if not is_auto(cfg):
        return 0, 0
    t = cfg["train"]["tune"]
    rungs = rung_steps(int(cfg["train"]["steps"]), int(t["eta"]), float(t["min_fraction"]))
    plan = schedule(len(set(float(c) for c in t["candidates"])), len(rungs), int(t["eta"]))
    steps, trials, last = sum(n * rungs[i] for i, n in plan), sum(n for _, n in plan), len(rungs) - 1
    extend = int(t["extend"]) if extensions else 0
    steps, trials = steps + extend * rungs[last], trials + extend
    return steps * len(t["seeds"]), trials * len(t["seeds"])


def probe(cfg: Mapping[str, Any], threads: int, warm: bool = False) -> Cost:
    """Train ``cfg`` briefly at a short and at a longer length with ``threads`` torch threads (on the
    CPU when its GPU is not on this machine) and split the time into a fixed part and a step's part.
    The longer length doubles until it takes :data:`PROBE_SPREAD_S` more than the short one, so the
    step's part stands above the timing noise. ``warm``: train one untimed step first, so that the
    process's one-time costs (imports, first allocations) are not counted as the cell's."""
    import torch

    from iatrun.train import train

    device = str(cfg.get("device", "auto"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    lr = 1e-3 if cfg["train"]["lr"] == "auto" else cfg["train"]["lr"]

    def seconds(n: int) -> float:
        run = {**cfg, "device": device, "train": {**cfg["train"], "steps": n, "lr": lr}}
        start = time.perf_counter()
        train(run)
        return time.perf_counter() - start

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        if warm:
            seconds(1)
        short = seconds(PROBE_SHORT)
        n = 4 * PROBE_SHORT
        while True:
            spread = seconds(n) - short
            if spread >= PROBE_SPREAD_S or n >= PROBE_MAX:
                break
            n *= 2
    finally:
        torch.set_num_threads(before)
    step_s = max(spread, 0.0) / (n - PROBE_SHORT)
    return Cost(fixed_s=max(0.0, short - PROBE_SHORT * step_s), step_s=step_s, measured=True)


def costs(cells: Sequence[Cell], threads: int, budget_s: float = PROBE_BUDGET_S) -> dict[str, Cost]:
    """A :class:`Cost` for every setting of ``cells``: probed, longest budget first, within
    ``budget_s``; the rest take the mean cost measured for their task."""
    first: dict[str, Mapping[str, Any]] = {}
    for cell in sorted(cells, key=lambda c: -int(c.config["train"]["steps"])):
        first.setdefault(cost_key(cell.config), cell.config)
    out: dict[str, Cost] = {}
    start = time.perf_counter()
    for key, cfg in first.items():
        if out and time.perf_counter() - start > budget_s:  # at least one setting is timed
            break
        out[key] = probe(cfg, threads, warm=not out)

    def mean(found: list[Cost]) -> Cost:
        n = max(1, len(found))
        return Cost(sum(c.fixed_s for c in found) / n, sum(c.step_s for c in found) / n, False)

    by_task: dict[str, list[Cost]] = {}
    for key, cost in out.items():
        by_task.setdefault(first[key]["task"]["name"], []).append(cost)
    fallback = mean(list(out.values()))
    for key, cfg in first.items():
        out.setdefault(
            key, mean(by_task[cfg["task"]["name"]]) if cfg["task"]["name"] in by_task else fallback
        )
    return out


def task_seconds(
    part: Sequence[Cell], cost: Mapping[str, Cost], tuned: Set[str], extensions: bool = True
) -> float:
    """The estimated seconds of one task: its cells' training, and tuning each setting it may tune
    (those not in ``tuned``, the settings whose rate is already chosen) once, counting every
    extension beyond the rate grid's edge unless ``extensions`` is false."""
    from iatrun.tune import setting_hash

    total, tuning = 0.0, set()
    for cell in part:
        c = cost[cost_key(cell.config)]
        total += c.fixed_s + int(cell.config["train"]["steps"]) * c.step_s
        steps, trials = tune_plan(cell.config, extensions)
        h = setting_hash(cell.config) if trials else None
        if h and h not in tuned and h not in tuning:
            tuning.add(h)
            total += steps * c.step_s + trials * c.fixed_s
    return total


def estimate(
    parts: Sequence[Sequence[Cell]],
    threads: int,
    tuned: Set[str] = frozenset(),
    cost: Mapping[str, Cost] | None = None,
) -> Estimate:
    """The :class:`Estimate` for tasks ``parts`` run with ``threads`` threads each (``cost``: each
    setting's, by :func:`cost_key`; measured by :func:`costs` when not given)."""
    cost = costs([c for part in parts for c in part], threads) if cost is None else cost
    minutes = max((task_seconds(p, cost, set(tuned)) for p in parts), default=0.0) / 60
    limit = max(FLOOR_MIN, math.ceil(MARGIN * minutes) + STARTUP_MIN)
    probed = sum(c.measured for c in cost.values())
    how = f"{probed} of {len(cost)} settings timed here at {threads} thread(s)"
    return Estimate(minutes=minutes, limit=limit, how=how)


def span(seconds: float) -> str:
    """A duration as people read it: seconds under 90 s, minutes under 90 min, else hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"
