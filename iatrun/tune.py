"""The learning rate chosen per setting: ``train.lr: auto`` and the ``train.tune`` block.

One Adam learning rate shared by every cell of a grid gives each basis pair a different effective
step, so a grid may leave the rate to this module. For one *setting* (a cell's config without its
seed) it runs **successive halving** over a log grid of candidate rates:

1. every candidate trains for the first rung, ``steps · min_fraction`` steps;
2. the best ``ceil(k / eta)`` of the ``k`` candidates go on to the next rung, ``eta`` times longer
   (each rung trains from scratch, so any schedule means what it says at that length), but never
   fewer than two: the last two always train for the full budget, and the choice is made there;
3. a rung that would not cut the candidates any further is skipped.

A choice made on a shorter run favours large rates: with a constant rate a short run rewards
speed, and a large rate that leads after a third of the budget can oscillate or spike by the end
(measured: fitting, relu, 4000 steps: 3e-2 won at 1333 steps and ended at held-out MSE 6.9e-2
where 3e-3 gives 2.5e-3). With the defaults (six candidates, 1e-4 … 3e-2, ``eta = 3``,
``min_fraction = 1/9``) that is 6 runs of ``steps/9`` and 2 of ``steps``: the cost of 2.67 full
runs per selection seed.

**Edges.** If the chosen rate is the smallest or the largest candidate, the grid is extended one
step beyond that edge while that keeps improving, at most
``extend`` times (each at the full budget); a choice still at an edge after that is flagged
(``lr_at_edge``).

**What is scored.** Training runs use the *selection seeds* (``train.tune.seeds``), which a sweep
refuses to report. Fitting is scored on a validation set disjoint from the training points and the
held-out grid (:func:`iatrun.tasks.validation`): its MSE, compared in decades. Memorisation is scored
on its own metric, training accuracy (its task *is* the training set), ties broken by the loss. A
diverged trial scores worst. The score of a rate is the mean over the selection seeds.

Nothing here trains or writes a run folder: the trials are :func:`iatrun.train.trial`, passed in;
a sweep caches each setting's record in ``<sweep>/tune/``.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from iatrun.digest import digest_view
from iatrun.errors import IatrunError

AUTO = "auto"
# The tuner's rule, stored in every record: a cached record made by another rule is not reused.
# 1: the choice made at a third of the budget; 2: the finalists trained to the full budget.
TUNER_VERSION = 2
FINALISTS = 2  # candidates that always reach the full budget, where the choice is made
TUNE_DIR = "tune"  # a sweep folder's cache of tuning records, one JSON per setting

Score = tuple[float, ...]  # lower is better, compared as a tuple
WORST: Score = (math.inf, math.inf)


@dataclasses.dataclass
class Tune:
    """``train.tune:`` in the config schema (:mod:`iatrun.schema`; values in conf/train/<task>.yaml)."""

    candidates: list[float] = MISSING  # the log grid of rates tried first
    seeds: list[int] = MISSING  # selection seeds: trained to choose, never reported
    eta: int = MISSING  # successive halving: keep 1/eta of the candidates per rung, rungs eta× longer
    min_fraction: float = MISSING  # the first rung's share of train.steps
    extend: int = MISSING  # candidates added beyond an edge of the grid, at most


def positive(value: Any) -> bool:
    """A finite number > 0 (not a bool)."""
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > 0
    )


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def validate_tune(t: Any, task: str | None = None) -> None:
    """Raise IatrunError naming the first bad value of the ``train.tune`` block ``lr: auto`` needs."""
    if not isinstance(t, Mapping):
        raise IatrunError(f"train.lr 'auto' needs a train.tune block (conf/train/<task>.yaml), got {t!r}")
    if task is not None and task not in OBJECTIVES:
        raise IatrunError(f"train.lr 'auto' cannot score task {task!r} (it can: {', '.join(OBJECTIVES)})")
    c, s, f = t.get("candidates"), t.get("seeds"), t.get("min_fraction")
    rules = [
        (
            "candidates",
            isinstance(c, list) and all(map(positive, c)) and len(set(c)) > 1,
            "a list of at least two distinct positive numbers",
        ),
        (
            "seeds",
            isinstance(s, list) and all(_whole(x, -(2**63)) for x in s) and 0 < len(set(s)) == len(s),
            "a non-empty list of distinct integers",
        ),
        ("eta", _whole(t.get("eta"), 2), "an integer >= 2"),
        ("min_fraction", positive(f) and f <= 1, "a number in (0, 1]"),
        ("extend", _whole(t.get("extend"), 0), "an integer >= 0"),
    ]
    for key, ok, must in rules:
        if not ok:
            raise IatrunError(f"train.tune.{key} must be {must}, got {t.get(key)!r}")


def is_auto(cfg: Mapping[str, Any]) -> bool:
    """Whether a config leaves its learning rate to the tuner."""
    return cfg["train"].get("lr") == AUTO


def rung_steps(steps: int, eta: int, min_fraction: float) -> list[int]:
    """The training length of each rung, shortest first, ending at ``steps`` (no rung under 1 step)."""
    if steps < 1 or eta < 2 or not 0 < min_fraction <= 1:
        raise ValueError(f"bad halving parameters: steps={steps}, eta={eta}, min_fraction={min_fraction}")
    count = max(0, math.floor(math.log(1 / min_fraction, eta) + 1e-9))
    out = [max(1, round(steps / eta**k)) for k in range(count, -1, -1)]
    return sorted(set(out))


def halving(
    candidates: Sequence[float],
    rungs: Sequence[int],
    evaluate: Callable[[float, int], Score],
    eta: int = 3,
    extend: int = 2,
) -> dict[str, Any]:
    """Successive halving of ``candidates`` over ``rungs``; ``evaluate(lr, steps)`` scores a rate.

    Returns the record: ``chosen``, ``at_edge``, the rung each decision was made at, and every
    score (``trials``: one entry per evaluated (lr, steps)).
    """
    rates = sorted(float(c) for c in candidates)
    if len(set(rates)) < 2 or any(not (math.isfinite(r) and r > 0) for r in rates):
        raise ValueError(f"candidates must be at least two distinct positive numbers, got {list(candidates)}")
    trials: list[dict[str, Any]] = []

    def score(lr: float, steps: int) -> Score:
        s = tuple(float(v) for v in evaluate(lr, steps))
        s = tuple(v if math.isfinite(v) else math.inf for v in s)
        trials.append({"lr": lr, "steps": steps, "score": [v if v < math.inf else None for v in s]})
        return s

    alive: list[float] = list(rates)
    scores: dict[float, Score] = {}
    for i, count in schedule(len(rates), len(rungs), eta):
        if scores:  # the best ``count`` of the rung before go on
            alive = sorted(alive, key=lambda lr: (scores[lr], lr))[:count]
        scores = {lr: score(lr, rungs[i]) for lr in alive}
    deciding = rungs[-1]
    best = min(alive, key=lambda lr: (scores[lr], lr))
    tried = list(rates)
    for _ in range(extend):
        if best not in (tried[0], tried[-1]):
            break
        nxt = beyond(tried, upward=best == tried[-1])
        if not nxt < tried[0] and not nxt > tried[-1]:  # rounding gave back a rate of the grid
            break
        tried = sorted(tried + [nxt])
        s = score(nxt, deciding)
        scores[nxt] = s
        if s < scores[best]:  # only a strict improvement moves the choice (a tie keeps it)
            best = nxt
        else:
            break
    return {
        "version": TUNER_VERSION,
        "chosen": best,
        "at_edge": best in (tried[0], tried[-1]),
        "all_diverged": scores[best] == WORST,  # no candidate trained: the choice means nothing
        "candidates": tried,
        "rungs": list(rungs),
        "decided_at_steps": deciding,
        "trials": trials,
    }


def schedule(n: int, n_rungs: int, eta: int) -> list[tuple[int, int]]:
    """What successive halving of ``n`` candidates over ``n_rungs`` rungs trains, as (rung index,
    candidates trained there) pairs: after each rung the best 1/eta go on (at least the finalists),
    and a rung that would not cut them is skipped, so they go straight to the last rung.
    :func:`halving` follows it, and the sweep's time limit counts from it."""
    plan, alive, i, last = [], n, 0, n_rungs - 1
    while True:
        plan.append((i, alive))
        if i == last:
            return plan
        alive = _keep(alive, eta)
        i = last if _keep(alive, eta) >= alive else i + 1


def _keep(n: int, eta: int) -> int:
    """How many of ``n`` candidates go on to the next rung: the best 1/eta, but at least the finalists."""
    return max(math.ceil(n / eta), min(FINALISTS, n))


def beyond(rates: Sequence[float], upward: bool) -> float:
    """The next rate past an edge of the sorted grid ``rates``, repeating the grid's pattern: the
    step two places back (1e-4, 3e-4, …, 1e-2, 3e-2 continues 1e-1, 3e-1 and 3e-5, 1e-5), or the
    only step there is for a two-point grid; three significant digits."""
    r = list(rates) if upward else [1 / x for x in reversed(rates)]
    step = r[-2] / r[-3] if len(r) >= 3 else r[-1] / r[-2]
    nxt = r[-1] * step if upward else 1 / (r[-1] * step)
    return float(f"{nxt:.3g}")


# --- tuning a config -------------------------------------------------------------------------------


def setting(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a tuning record depends on: the config without seed, device and how results are written."""
    return {k: v for k, v in digest_view(cfg).items() if k not in ("seed", "device")}


def setting_hash(cfg: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(setting(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def objective(task_name: str, m: Mapping[str, Any]) -> Score:
    """A trial's score, lower is better: decades of validation MSE, or (−accuracy, loss)."""
    if m.get("status") != "ok":
        return WORST
    if task_name == "fitting":
        mse = float(m["validation_mse"])
        return (math.log10(max(mse, 1e-300)), 0.0) if math.isfinite(mse) else WORST
    return (-100 * float(m["train_accuracy"]), float(m["train_loss"]))


OBJECTIVES = ("fitting", "memorization")  # the tasks objective() can score


def trial_config(cfg: Mapping[str, Any], lr: float, steps: int, seed: int) -> dict[str, Any]:
    """The config of one trial: the cell's, at a selection seed, a candidate rate and a rung's length."""
    out = copy.deepcopy(dict(cfg))
    out["seed"] = int(seed)
    out["train"] = {**out["train"], "lr": float(lr), "steps": int(steps)}
    out.pop("out", None)
    return out


Trial = Callable[[Mapping[str, Any]], Score]  # trains one trial config and scores it (iatrun.train.trial)


def tune(cfg: Mapping[str, Any], trial: Trial) -> dict[str, Any]:
    """Choose the learning rate of ``cfg`` (whose ``train.lr`` is ``auto``); return the record."""
    t = cfg["train"]["tune"]
    seeds = [int(s) for s in t["seeds"]]
    steps = int(cfg["train"]["steps"])

    def evaluate(lr: float, n: int) -> Score:
        scores = [trial(trial_config(cfg, lr, n, s)) for s in seeds]
        return tuple(sum(col) / len(col) for col in zip(*scores))

    eta = int(t["eta"])
    record = halving(
        t["candidates"], rung_steps(steps, eta, float(t["min_fraction"])), evaluate, eta, int(t["extend"])
    )
    record["seeds"] = seeds
    record["score"] = "log10 validation MSE" if cfg["task"]["name"] == "fitting" else "-accuracy %, loss"
    return record


def with_lr(cfg: Mapping[str, Any], lr: float) -> dict[str, Any]:
    """``cfg`` with its ``train.lr`` set to ``lr`` (a copy)."""
    out = dict(cfg)
    out["train"] = {**cfg["train"], "lr": float(lr)}
    return out


@contextmanager
def locked(path: Path):
    """Hold an exclusive OS lock on ``path`` (a setting's ``.lock`` beside its record) for the body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def chosen_settings(cache: str | Path) -> set[str]:
    """The setting hashes whose rate ``cache`` (a sweep's tune folder) holds a record of."""
    return {p.stem for p in Path(cache).glob("*.json")}


def cached(cfg: Mapping[str, Any], cache: str | Path) -> dict[str, Any] | None:
    """The stored record of ``cfg``'s setting in ``cache``, or None."""
    path = Path(cache) / f"{setting_hash(cfg)}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = record.get("setting") == json.loads(json.dumps(setting(cfg), default=str))
    return record if same and record.get("version") == TUNER_VERSION else None


def forget(cfg: Mapping[str, Any], cache: str | Path) -> None:
    """Drop the stored record of ``cfg``'s setting (``--force``), under its lock."""
    path = Path(cache) / f"{setting_hash(cfg)}.json"
    if path.exists():
        with locked(path.with_suffix(".lock")):
            path.unlink(missing_ok=True)


def ensure(cfg: Mapping[str, Any], trial: Trial, cache: str | Path | None = None) -> dict[str, Any]:
    """The tuning record of ``cfg``'s setting: read from ``cache`` or made (once, under a lock) and stored."""
    if cache is None:
        return tune(cfg, trial)
    from iatrun.files import write_json

    cache = Path(cache)
    with locked(cache / f"{setting_hash(cfg)}.lock"):
        record = cached(cfg, cache)
        if record is None:
            record = tune(cfg, trial)
            record["setting"] = json.loads(json.dumps(setting(cfg), default=str))
            write_json(cache / f"{setting_hash(cfg)}.json", record)
    return record


def resolve(
    cfg: Mapping[str, Any], trial: Trial, cache: str | Path | None = None
) -> tuple[dict, dict | None]:
    """``cfg`` ready to train (its ``lr`` a number) and the tuning record (None when lr was given)."""
    if not is_auto(cfg):
        return dict(cfg), None
    record = ensure(cfg, trial, cache)
    return with_lr(cfg, record["chosen"]), record
