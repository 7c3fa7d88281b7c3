"""The learning-rate tuner: successive halving, edge extension, selection seeds, the sweep's cache."""

import json
import math

import pytest
import torch

from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.schema import validate
from iatrun.tasks import fitting_grids, validation_points
from iatrun.tune import beyond, halving, rung_steps, tune

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]


def test_nine_candidates_are_cut_to_three_then_to_the_two_finalists():
    rec = halving([10.0**k for k in range(-9, 0)], [10, 30, 90], bowl(1e-4), eta=3, extend=0)
    assert [sum(t["steps"] == s for t in rec["trials"]) for s in (10, 30, 90)] == [9, 3, 2]
    assert rec["chosen"] == 1e-4


def bowl(best: float):
    """A synthetic score, lowest at ``best``; longer runs only lower it (the ranking holds at every rung)."""

    def evaluate(lr: float, steps: int):
        return ((math.log10(lr) - math.log10(best)) ** 2 - 0.001 * steps, 0.0)

    return evaluate


def test_rungs_of_the_default_halving():
    assert rung_steps(900, 3, 1 / 9) == [100, 300, 900]
    assert rung_steps(900, 3, 0.1111) == [100, 300, 900]
    assert rung_steps(60, 2, 0.25) == [15, 30, 60]
    assert rung_steps(5, 3, 1 / 9) == [1, 2, 5]


def test_halving_finds_the_known_best_rate_and_decides_at_the_full_budget():
    rec = halving(GRID, [100, 300, 900], bowl(3e-3), eta=3, extend=2)
    assert rec["chosen"] == 3e-3 and rec["at_edge"] is False
    per_rung = [sum(t["steps"] == s for t in rec["trials"]) for s in (100, 300, 900)]
    assert per_rung == [6, 0, 2]  # 6 candidates; the best 2 skip the rung that would not cut them
    assert rec["decided_at_steps"] == 900  # the choice is made at the full budget


def test_an_edge_winner_extends_the_grid_until_it_stops_improving():
    rec = halving(GRID, [100, 300, 900], bowl(0.1), eta=3, extend=3)
    assert rec["chosen"] == 0.1 and rec["at_edge"] is False  # 0.3 was tried and was worse
    assert rec["candidates"][-2:] == [0.1, 0.3]
    rec = halving(GRID, [100, 300, 900], bowl(1e-6), eta=3, extend=2)
    assert rec["chosen"] == 1e-5 and rec["at_edge"] is True  # still improving when the extensions ran out


def test_beyond_repeats_the_grid_pattern():
    assert beyond(GRID, upward=True) == 0.1
    assert beyond(GRID + [0.1], upward=True) == 0.3
    assert beyond(GRID, upward=False) == 3e-5


def test_halving_refuses_a_grid_of_one_rate():
    with pytest.raises(ValueError):
        halving([1e-3, 1e-3], [10], bowl(1e-3))


def _auto(task="fitting", **over):
    args = [f"task={task}", "model=relu", "model.width=8", "model.depth=1", "train.steps=27", "train.lr=auto"]
    return compose(args + [f"{k}={v}" for k, v in over.items()])


def test_tune_trains_only_on_selection_seeds_and_picks_the_best_trial():
    cfg = _auto(**{"train.tune.seeds": "[7,8]", "seed": 0})
    seen = []

    def trial(c):
        seen.append((c["seed"], c["train"]["lr"], c["train"]["steps"]))
        return ((math.log10(c["train"]["lr"]) + 2) ** 2 + 0.01 * (c["seed"] == 8),)

    rec = tune(cfg, trial)
    assert {s for s, _, _ in seen} == {7, 8}  # never seed 0, the reported one
    assert rec["chosen"] == 1e-2 and rec["seeds"] == [7, 8]
    assert {n for _, _, n in seen} == {3, 27}  # the first rung (27/9 steps) and the full budget


def test_a_reported_seed_that_is_a_selection_seed_is_refused(tmp_path):
    from iatrun.schema import check_selection_seeds
    from iatrun.train import run

    with pytest.raises(IatrunError, match="selection seed"):
        check_selection_seeds(_auto(seed=1000))
    with pytest.raises(IatrunError, match="selection seed"):
        run(_auto(seed=1000, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
    validate(_auto(**{"train.tune.seeds": "[0]"}))  # compose's default seed 0 is not a reported seed yet


def test_ties_keep_the_choice_and_a_grid_where_everything_diverges_says_so():
    flat = halving(GRID, [100, 300, 900], lambda lr, n: (1.0, 0.0), eta=3, extend=2)
    assert flat["chosen"] == 1e-4 and len(flat["candidates"]) == 7  # one extension, a tie: not taken
    assert flat["all_diverged"] is False
    dead = halving(GRID, [100, 300, 900], lambda lr, n: (math.nan, math.nan), eta=3, extend=2)
    assert dead["all_diverged"] is True and dead["trials"][0]["score"] == [None, None]  # JSON-safe
    json.dumps(dead, allow_nan=False)


def test_an_extension_that_rounds_back_onto_the_grid_stops():
    rec = halving([1e-3, 1.0001e-3, 1e-2], [10], bowl(1.0), eta=3, extend=2)
    assert rec["candidates"] == [1e-3, 1.0001e-3, 1e-2] and rec["chosen"] == 1e-2 and rec["at_edge"]


def test_lr_auto_refuses_a_task_it_cannot_score():
    from iatrun.tune import validate_tune

    block = {"candidates": [1e-3, 1e-2], "seeds": [1], "eta": 3, "min_fraction": 0.5, "extend": 0}
    with pytest.raises(IatrunError, match="cannot score task 'mine'"):
        validate_tune(block, "mine")


def test_a_record_of_another_tuner_rule_is_not_reused(tmp_path):
    from iatrun.tune import cached, ensure

    cfg = _auto()
    calls = []
    ensure(cfg, lambda c: calls.append(c) or (1.0, 0.0), tmp_path)
    assert cached(cfg, tmp_path)["version"] == 2 and len(calls) == 6 + 2 + 1  # one extension, a tie
    path = next(tmp_path.glob("*.json"))
    path.write_text(path.read_text().replace('"version": 2', '"version": 1'))
    assert cached(cfg, tmp_path) is None


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("train.lr", "fast", "train.lr must be a positive number or 'auto'"),
        ("train.tune.candidates", "[0.001]", "at least two distinct"),
        ("train.tune.seeds", "[]", "non-empty list"),
        ("train.tune.eta", "1", "integer >= 2"),
        ("train.tune.min_fraction", "0", "(0, 1]"),
    ],
)
def test_bad_tune_values_name_the_key(key, value, words):
    with pytest.raises(IatrunError, match=key.replace(".", r"\.")) as e:
        validate(_auto(**{key: value}))
    assert words in str(e.value)


def test_validation_points_are_disjoint_from_training_and_heldout_grids():
    x, held = fitting_grids(200, 10)
    v = validation_points(200, 10)
    assert v.numel() == 199 and v.min() > -1 and v.max() < 1
    gap = 2 / (199 * 10) / 4  # a quarter of the held-out spacing
    for other in (x, held):
        assert torch.cdist(v[:, None], other[:, None]).min() >= gap * 0.999


def test_fit_with_auto_writes_the_choice(tmp_path):
    from iatrun.train import run

    cfg = _auto(out=str(tmp_path / "run"))
    result, folder = run(cfg)
    record = json.loads((folder / "tune.json").read_text())
    assert result.metrics["lr_chosen"] == record["chosen"] in record["candidates"]
    assert result.config["train"]["lr"] == "auto"  # the folder's config says how the rate was set
    steps = {t["steps"] for t in record["trials"]}
    assert steps == {3, 27} and all(len(t["score"]) == 2 for t in record["trials"])
