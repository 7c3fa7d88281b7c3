"""Launchers: a sweep's pending cells as a submitit job array (SLURM, or local processes).

A launcher is a YAML file in ``conf/launcher/`` or in the user's ``--config-dir``/launcher/; its
``cluster`` picks submitit's backend and every other key is a submitit parameter.
"""

from __future__ import annotations

import collections.abc
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from iatrun.errors import IatrunError
from iatrun.sweep.cells import run_cell
from iatrun.sweep.grid import Cell


class CellJob:
    """One cell as a submitit job; on pre-emption or timeout it requeues itself (see README).

    Requeueing reruns the same cell: the half-written attempt is discarded and the cell's lock
    and done marker keep it from ever being counted twice.
    """

    def __call__(self, sweep_dir: str, cell: Cell) -> dict:
        return run_cell(sweep_dir, cell, wait=True)

    def checkpoint(self, sweep_dir: str, cell: Cell):
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), sweep_dir, cell)


def _dirs(user_dir=None) -> list[Path]:
    from iatrun.config import config_dir

    return ([Path(user_dir) / "launcher"] if user_dir else []) + [config_dir() / "launcher"]


def launcher_names(user_dir=None) -> list[str]:
    """The launchers in ``conf/launcher/`` and the user's ``--config-dir``/launcher/ (``none`` aside)."""
    return sorted({p.stem for d in _dirs(user_dir) for p in d.glob("*.yaml")} - {"none"})


def launcher_path(name: str, user_dir=None) -> Path:
    """The YAML file of launcher ``name`` (the user's first); an unknown name raises IatrunError."""
    for d in _dirs(user_dir):
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    from iatrun.registry import Registry

    known: Registry[None] = Registry("launcher")
    for n in ["none", *launcher_names(user_dir)]:
        known.add(n, None)
    raise IatrunError(known.unknown_message(name))


def launcher_config(name: str, user_dir=None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read launcher ``name``, apply ``launcher.KEY=VALUE`` overrides and check every key."""
    path = launcher_path(name, user_dir)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise IatrunError(f"launcher file {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(cfg, dict):
        raise IatrunError(f"launcher file {path} must hold a mapping of submitit parameters")
    cfg.update(overrides or {})
    check_launcher(cfg, name)
    return cfg


def launcher_keys(cluster: str) -> dict[str, Any]:
    """The keys submitit's AutoExecutor accepts for ``cluster``, each with its type (Any: unchecked):
    the shared ones (timeout_min, gpus_per_node, ...) and ``<cluster>_<parameter>``."""
    import typing

    import submitit
    from submitit.core import plugins

    executors = plugins.get_executors()
    shared = {
        k: (int | float if t is float else t) for k, t in submitit.AutoExecutor._typed_parameters().items()
    }
    try:  # the SLURM backend's own parameters are typed by the function that writes the sbatch file
        from submitit.slurm.slurm import _make_sbatch_string

        hints = typing.get_type_hints(_make_sbatch_string) if cluster == "slurm" else {}
    except (ImportError, NameError, TypeError):
        hints = {}
    keys = dict(shared)
    for arg in executors[cluster]._valid_parameters() | set(shared):
        keys[f"{cluster}_{arg}"] = hints.get(arg, shared.get(arg, Any))
    return keys


def _options(tp: Any) -> tuple:
    import typing

    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    return tuple(t for t in typing.get_args(tp) if t is not type(None)) if union else (tp,)


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` has type ``tp`` (None always does: submitit reads it as "not set")."""
    import typing

    if value is None or tp is Any:
        return True
    for t in _options(tp):
        base = typing.get_origin(t) or t
        if base is collections.abc.Iterable:
            base = (list, tuple)
        elif not isinstance(base, type):
            return True  # a type this check does not know: left to submitit
        if isinstance(value, base) and not (isinstance(value, bool) and base in (int, float)):
            return True
    return False


def _type_name(tp: Any) -> str:
    import typing

    return " | ".join(getattr(typing.get_origin(t) or t, "__name__", str(t)) for t in _options(tp))


def check_launcher(cfg: Mapping[str, Any], name: str) -> None:
    """Raise IatrunError for a launcher whose cluster, keys or value types submitit would refuse."""
    import difflib

    from submitit.core import plugins

    clusters = list(plugins.get_executors())
    cluster = cfg.get("cluster")
    if cluster not in clusters:
        raise IatrunError(
            f"launcher {name!r}: cluster must be one of {' | '.join(clusters)}, got {cluster!r}"
        )
    keys = launcher_keys(cluster)
    for key, value in cfg.items():
        if key == "cluster":
            continue
        if key not in keys:
            hint = difflib.get_close_matches(str(key), list(keys), n=1)
            more = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(sorted(keys))}"
            raise IatrunError(f"unknown launcher key {key!r} for cluster {cluster!r} ({more})")
        if not _fits(value, keys[key]):
            raise IatrunError(f"launcher key {key!r} must be {_type_name(keys[key])}, got {value!r}")


def run_submitit(
    sweep_dir: Path,
    cells: Sequence[Cell],
    launcher: Mapping[str, Any],
    on_done: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Submit ``cells`` as one job array (SLURM, or local processes) and wait for them."""
    import submitit

    params = dict(launcher)
    cluster = params.pop("cluster")
    executor = submitit.AutoExecutor(folder=str(Path(sweep_dir) / ".submitit" / "%j"), cluster=cluster)
    executor.update_parameters(**params)
    jobs = executor.map_array(CellJob(), [str(sweep_dir)] * len(cells), list(cells))
    by_job = {j.job_id: c for j, c in zip(jobs, cells)}
    rows = []
    for job in submitit.helpers.as_completed(jobs):
        cell = by_job[job.job_id]
        try:
            row = job.result()
        except Exception as e:  # the job itself died (killed, node lost): recorded, rerun on resume
            row = {
                "key": cell.key,
                "state": "failed",
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
            }
        rows.append(row)
        if on_done:
            on_done(row)
    return rows
