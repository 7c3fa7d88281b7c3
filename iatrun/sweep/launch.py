"""Launchers: a sweep's pending cells as a submitit job array (SLURM, or local processes).

A launcher is a YAML file in ``conf/launcher/`` or in the user's ``--config-dir``/launcher/; its
``cluster`` picks submitit's backend and every other key is a submitit parameter.
"""

from __future__ import annotations

import collections.abc
import math
import time
import types
from collections.abc import Callable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any

import yaml

from iatrun.errors import IatrunError
from iatrun.sweep.grid import Cell
from iatrun.sweep.status import queue_states, record_jobs


class CellsJob:
    """A chunk of cells as one submitit job (an array task); on pre-emption or timeout it requeues
    itself with the same chunk (see docs/sweeps.md).

    The task runs its cells with ``engine`` (stacks with ``batched``): a requeued task skips the
    cells it finished, and a cell's lock and done marker keep it from ever being counted twice.
    """

    def __init__(self, engine: str = "serial", stack_size: int | None = None):
        self.engine, self.stack_size = engine, stack_size

    def __call__(self, sweep_dir: str, cells: Sequence[Cell]) -> list[dict]:
        import os

        import torch

        from iatrun.sweep.run import run_cells

        # torch threads = the task's cores (SLURM's allocation; the local backend sets the same
        # variable), not every core of the node, which the other tasks share
        cores = os.environ.get("SLURM_CPUS_PER_TASK")
        if cores and cores.isdigit():
            torch.set_num_threads(int(cores))
        print(f"iatrun: task start-up {_process_age():.2f} s, {len(cells)} cells", flush=True)
        return run_cells(Path(sweep_dir), list(cells), engine=self.engine, stack_size=self.stack_size)

    def checkpoint(self, sweep_dir: str, cells: Sequence[Cell]):
        import submitit

        return submitit.helpers.DelayedSubmission(CellsJob(self.engine, self.stack_size), sweep_dir, cells)


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0.0 where that cannot be read): the
    task's start-up, Python, torch and iatrun imports and submitit's unpickling, logged per task."""
    import os

    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# launcher keys iatrun resolves before submitit sees them: each an int or ``auto``
OWN_KEYS = ("cells_per_task", "gpus_per_node", "timeout_min")


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
        if key == "cluster" or (key in OWN_KEYS and (value == "auto" or _fits(value, int))):
            continue
        if key not in keys:
            hint = difflib.get_close_matches(str(key), list(keys), n=1)
            more = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(sorted(keys))}"
            raise IatrunError(f"unknown launcher key {key!r} for cluster {cluster!r} ({more})")
        if not _fits(value, keys[key]):
            raise IatrunError(f"launcher key {key!r} must be {_type_name(keys[key])}, got {value!r}")


def resolve_launcher(
    cfg: Mapping[str, Any], cells: Sequence[Cell], tuned: Set[str] = frozenset()
) -> tuple[dict, str]:
    """The launcher with its ``auto`` values set for these cells, checked with the cluster before
    anything is written, and one line on its time limit. GPUs per task follow the cells' device (1
    for ``cuda``, else 0), cells per task fill the array tasks the cluster can run at once
    (:func:`task_slots`), the time limit follows the slowest task's estimate
    (:mod:`iatrun.sweep.timelimit`; ``tuned``: the settings whose rate is already chosen), and on
    SLURM an ``sbatch --test-only`` of the same request must pass (an unknown partition, GPUs on a
    cluster without them, more memory than a node has: one error line, nothing submitted). A limit
    given below the estimate is kept, and the line says it is short."""
    out = dict(cfg)
    device = str(cells[0].config.get("device", "auto")) if cells else "auto"
    if out.get("gpus_per_node", "auto") == "auto":
        out["gpus_per_node"] = 1 if device.startswith("cuda") else 0
    per_task = out.get("cells_per_task", "auto")
    if per_task == "auto":
        per_task = max(1, math.ceil(len(cells) / task_slots(out)))
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        raise IatrunError(f"launcher key 'cells_per_task' must be an integer >= 1 or auto, got {per_task!r}")
    out["cells_per_task"] = per_task
    derived = out.get("timeout_min", "auto") == "auto"
    note = _time_limit(out, cells, tuned)
    if out["cluster"] == "slurm":
        try:
            sbatch_check(out)
        except IatrunError as e:
            if not derived:
                raise
            raise IatrunError(
                f"{e}; the time limit asked for was {out['timeout_min']} min, derived from the budget:"
                " set launcher.cells_per_task lower, or launcher.timeout_min to what the partition allows"
            ) from None
    return out, note


def _time_limit(out: dict, cells: Sequence[Cell], tuned: Set[str]) -> str:
    """Set an ``auto`` ``timeout_min`` from the estimate; the line that says what it rests on."""
    from iatrun.sweep.timelimit import estimate

    given = out.get("timeout_min", "auto")
    if given != "auto" and (isinstance(given, bool) or not isinstance(given, int) or given < 1):
        raise IatrunError(f"launcher key 'timeout_min' must be an integer >= 1 or auto, got {given!r}")
    parts = chunks(cells, out["cells_per_task"])
    est = estimate(parts, int(out.get("cpus_per_task") or 1), tuned)
    said = f"slowest of {len(parts)} task(s) estimated at {est.minutes:.1f} min ({est.how})"
    if out.get("timeout_min", "auto") == "auto":
        out["timeout_min"] = est.limit
        return f"time limit: {est.limit} min per task; {said}"
    if int(out["timeout_min"]) < est.minutes:
        return (
            f"warning: launcher timeout_min {out['timeout_min']} is short: {said}; tasks will time out "
            "and requeue, cells resume from their checkpoints, tuning and batched stacks start over"
        )
    return f"time limit: {out['timeout_min']} min per task (given); {said}"


def task_slots(cfg: Mapping[str, Any]) -> int:
    """How many array tasks can run at once: the cluster's CPUs (``sinfo``; this machine's for the
    local backend) over ``cpus_per_task``, at most ``slurm_array_parallelism``."""
    import os

    cpus = int(cfg.get("cpus_per_task") or 1)
    total = os.cpu_count() or 1
    if cfg["cluster"] == "slurm":
        import subprocess

        try:  # allocated/idle/other/total CPUs of the partition
            line = subprocess.run(
                [
                    "sinfo",
                    "-h",
                    "-o",
                    "%C",
                    *(["-p", cfg["slurm_partition"]] if cfg.get("slurm_partition") else []),
                ],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split()
            total = int(line[0].split("/")[-1]) if line else total
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    slots = max(1, total // max(1, cpus))
    return min(slots, int(cfg.get("slurm_array_parallelism") or slots))


def sbatch_check(cfg: Mapping[str, Any]) -> None:
    """``sbatch --test-only`` with the launcher's partition, GPUs, CPUs, memory and time limit."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None:
        raise IatrunError("launcher cluster 'slurm' needs sbatch on this machine's PATH (a SLURM login node)")
    args = ["sbatch", "--test-only", "--job-name", "iatrun-check", "--wrap", "true"]
    if cfg.get("slurm_partition"):
        args += ["--partition", str(cfg["slurm_partition"])]
    if cfg.get("gpus_per_node"):
        args += [f"--gpus-per-node={cfg['gpus_per_node']}"]
    if cfg.get("cpus_per_task"):
        args += [f"--cpus-per-task={cfg['cpus_per_task']}"]
    if cfg.get("mem_gb"):
        args += [f"--mem={cfg['mem_gb']}G"]
    if cfg.get("timeout_min"):
        args += [f"--time={int(cfg['timeout_min'])}"]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise IatrunError(f"sbatch --test-only could not run: {e}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        why = next(
            (ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "no reason"
        )
        raise IatrunError(f"SLURM refuses the launcher's request ({why.removeprefix('sbatch: ')})")


def chunks(cells: Sequence[Cell], per_task: int) -> list[list[Cell]]:
    """``cells`` cut into array tasks of ``per_task`` cells (the last may hold fewer)."""
    return [list(cells[i : i + per_task]) for i in range(0, len(cells), per_task)]


def run_submitit(
    sweep_dir: Path,
    cells: Sequence[Cell],
    launcher: Mapping[str, Any],
    on_done: Callable[[dict], None] | None = None,
    engine: tuple[str, int | None] = ("serial", None),
    detach: bool = False,
) -> list[dict]:
    """Submit ``cells`` as one job array of chunks (SLURM, or local processes) and wait for them.

    ``launcher`` comes from :func:`resolve_launcher`; each task runs its chunk with ``engine``
    (name, stack size). The tasks are recorded in the sweep's ``jobs.json``
    (:mod:`iatrun.sweep.status`); with ``detach`` nothing is waited for and no row comes back.
    """
    import submitit

    params = dict(launcher)
    cluster = params.pop("cluster")
    per_task = params.pop("cells_per_task", 1)
    executor = submitit.AutoExecutor(folder=str(Path(sweep_dir) / ".submitit" / "%j"), cluster=cluster)
    executor.update_parameters(**params)
    parts = chunks(cells, per_task)
    try:
        jobs = executor.map_array(CellsJob(*engine), [str(sweep_dir)] * len(parts), parts)
    except Exception as e:  # sbatch refused after all: one line, nothing submitted
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise IatrunError(
            f"submitting the job array failed: {lines[-1] if lines else type(e).__name__}"
        ) from None
    record_jobs(sweep_dir, [(job.job_id, [c.key for c in part]) for job, part in zip(jobs, parts)])
    if detach:
        return []
    return _wait(jobs, parts, cluster, on_done)


GONE_POLLS = 3  # polls a task may be missing from squeue, without a result, before it counts as dead
POLL_S = 2.0


def _wait(jobs, parts, cluster: str, on_done) -> list[dict]:
    """Rows of every task's cells as the tasks end. A task that has left SLURM's queue without a
    result (cancelled, killed, its node lost) is recorded as failed: its cells run again on the next
    sweep. This does not need ``sacct`` (clusters without accounting never report such a task)."""
    import logging

    # submitit warns on every poll when the cluster keeps no accounting (sacct fails); the squeue
    # check below covers what sacct would have told
    logging.getLogger("submitit").setLevel(logging.ERROR)
    rows: list[dict] = []
    pending = dict(enumerate(jobs))
    missing = dict.fromkeys(pending, 0)

    def land(done: list[dict]) -> None:
        for row in done:
            rows.append(row)
            if on_done:
                on_done(row)

    def failed(i: int, why: str) -> list[dict]:
        return [{"key": c.key, "state": "failed", "status": "failed", "error": why} for c in parts[i]]

    while pending:
        queued = queue_states([j.job_id for j in pending.values()]) if cluster == "slurm" else None
        for i, job in list(pending.items()):
            if job.done():
                del pending[i]
                try:
                    land(job.result())
                except Exception as e:  # the task itself died: recorded, rerun on resume
                    land(failed(i, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
            elif queued is not None and job.job_id not in queued:
                missing[i] += 1
                if missing[i] >= GONE_POLLS:
                    del pending[i]
                    land(
                        failed(
                            i,
                            f"array task {job.job_id} left the queue without a result (cancelled or killed)",
                        )
                    )
            else:
                missing[i] = 0
        if pending:
            time.sleep(POLL_S)
    return rows
