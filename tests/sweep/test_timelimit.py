"""A launcher's time limit from the grid's budget (`timeout_min: auto`) and the warning for one too short."""

import math

import pytest

from iatrun.errors import IatrunError
from iatrun.sweep.grid import expand, load_grid
from iatrun.sweep.launch import resolve_launcher
from iatrun.sweep.timelimit import (
    FLOOR_MIN,
    MARGIN,
    STARTUP_MIN,
    Cost,
    cost_key,
    costs,
    estimate,
    task_seconds,
    tune_plan,
)
from iatrun.tune import setting_hash

LOCAL = {"cluster": "local", "timeout_min": "auto", "gpus_per_node": "auto", "cpus_per_task": 1}


def cells(*overrides):
    """The quick grid's fitting cells of the pwl → pwq IAT."""
    every = expand(load_grid("quick"), ["model.basis_in=pwl", "model.basis_out=pwq", *overrides])
    return [c for c in every if c.key.startswith("fitting/iat-pwl-pwq")]


def test_tuning_plan_counts_every_rung_and_extension():
    cfg = cells("train.lr=auto", "train.steps=8000")[0].config
    # rungs 889, 2667, 8000: six candidates at 889, then the two finalists skip to 8000 (a rung that
    # would keep both is skipped), then up to two extensions at 8000: 2.67 runs plus 2
    assert tune_plan(cfg) == (6 * 889 + 2 * 8000 + 2 * 8000, 6 + 2 + 2)
    two_seeds = cells("train.lr=auto", "train.steps=8000", "train.tune.seeds=[1000,1001]")[0].config
    assert tune_plan(two_seeds) == (2 * tune_plan(cfg)[0], 20)
    assert tune_plan(cells("train.lr=0.001")[0].config) == (0, 0)
    assert tune_plan(cfg, extensions=False) == (6 * 889 + 2 * 8000, 6 + 2)  # the dry run's low end


def test_a_task_pays_for_its_cells_and_tunes_each_setting_once():
    part = cells("train.lr=auto", "train.steps=900", "seed=0,1,2")
    assert len({cost_key(c.config) for c in part}) == 1  # seeds share one cost
    cost = {cost_key(part[0].config): Cost(fixed_s=2.0, step_s=0.01, measured=True)}
    steps, trials = tune_plan(part[0].config)
    train = 3 * (2.0 + 900 * 0.01)
    assert task_seconds(part, cost, set()) == pytest.approx(train + steps * 0.01 + trials * 2.0)
    assert task_seconds(part, cost, {setting_hash(part[0].config)}) == pytest.approx(train)
    low_steps, low_trials = tune_plan(part[0].config, extensions=False)
    low = task_seconds(part, cost, set(), extensions=False)
    assert low == pytest.approx(train + low_steps * 0.01 + low_trials * 2.0)
    assert low < task_seconds(part, cost, set())


def test_estimate_is_the_slowest_task_and_its_limit_has_a_margin():
    part = cells("train.steps=6000", "seed=0,1,2")
    cost = {cost_key(part[0].config): Cost(fixed_s=3.0, step_s=0.01, measured=True)}
    one = estimate([part], threads=1, cost=cost)
    assert one.minutes == pytest.approx(3 * 63.0 / 60)
    assert one.limit == max(FLOOR_MIN, math.ceil(MARGIN * 3.15) + STARTUP_MIN)
    split = estimate([part[:2], part[2:]], threads=1, cost=cost)  # the slower task holds two cells
    assert split.minutes == pytest.approx(2 * 63.0 / 60)
    long = estimate([part], threads=1, cost={cost_key(part[0].config): Cost(3.0, 0.5, True)})
    assert long.limit == math.ceil(MARGIN * 3 * 3003 / 60) + STARTUP_MIN


def test_probing_measures_each_setting_once_within_its_budget():
    part = cells("train.steps=2000", "seed=0,1") + cells("model.width=8", "train.steps=2000")
    measured = costs(part, threads=1)
    assert len(measured) == 2  # two widths, one cost each; the seeds share theirs
    assert all(c.measured and c.step_s > 0 and c.fixed_s >= 0 for c in measured.values())
    bounded = costs(part, threads=1, budget_s=0.0)  # one probe, then the budget is spent
    assert sorted(c.measured for c in bounded.values()) == [False, True]
    slowest = max(bounded.values(), key=lambda c: c.measured)  # the one measured: the mean of one
    assert [c for c in bounded.values() if not c.measured] == [Cost(slowest.fixed_s, slowest.step_s, False)]
    assert estimate([part], threads=1).how == "2 of 2 settings timed here at 1 thread(s)"


def test_auto_limit_is_set_and_a_short_limit_is_said_to_be_short():
    part = cells("train.steps=200")
    out, note = resolve_launcher(LOCAL, part)
    assert isinstance(out["timeout_min"], int) and out["timeout_min"] >= FLOOR_MIN
    assert note.startswith(f"time limit: {out['timeout_min']} min per task; slowest of 1 task(s)")
    # a budget whose estimate is surely over a minute, with a limit of one minute
    long = cells("train.steps=1000000")
    out, note = resolve_launcher({**LOCAL, "timeout_min": 1}, long)
    assert out["timeout_min"] == 1
    assert note.startswith("warning: launcher timeout_min 1 is short: slowest of 1 task(s) estimated at")
    with pytest.raises(IatrunError, match="'timeout_min' must be an integer >= 1 or auto, got 0"):
        resolve_launcher({**LOCAL, "timeout_min": 0}, part)


def test_durations_read_in_seconds_minutes_or_hours():
    from iatrun.sweep.timelimit import span

    assert [span(s) for s in (42, 89.4, 90, 5399, 5400, 36000)] == [
        "42 s",
        "89 s",
        "1.5 min",
        "90.0 min",
        "1.5 h",
        "10.0 h",
    ]
