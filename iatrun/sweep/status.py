"""Where a sweep stands: its cells' states from the folder, and the SLURM jobs that hold the rest.

A sweep run with a ``--launcher`` records each job array task it submits in ``jobs.json`` (job id,
its cells, when). ``iatrun status DIR`` reads that, the cell folders and ``squeue``; a rerun of the
sweep command leaves out the cells whose task is still queued or running, so a detached sweep
(``--detach``) can be resumed as often as one likes without submitting a cell twice.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import yaml

from iatrun.errors import IatrunError
from iatrun.files import read_json, write_json
from iatrun.sweep.cells import key_state
from iatrun.sweep.spec import SPEC

JOBS = "jobs.json"


def record_jobs(sweep_dir: Path, tasks: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Append submitted tasks, (job id, cell keys), to the sweep's ``jobs.json``."""
    known = _tasks(sweep_dir)
    now = datetime.now().isoformat(timespec="seconds")
    known += [{"job_id": job, "cells": list(keys), "submitted": now} for job, keys in tasks]
    write_json(Path(sweep_dir) / JOBS, {"tasks": known})


def _tasks(sweep_dir: Path) -> list[dict]:
    """The tasks ``jobs.json`` records, oldest first ([] without one)."""
    path = Path(sweep_dir) / JOBS
    return list(read_json(path).get("tasks", [])) if path.is_file() else []


def queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """SLURM's state of each of ``job_ids`` still in the queue (``squeue -r``, lower case); None if
    squeue cannot be asked (then nothing is known about the jobs)."""
    if not job_ids:
        return {}
    try:
        cmd = ["squeue", "-h", "-r", "-o", "%i %T"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    wanted = set(job_ids)
    states = dict(line.split(maxsplit=1) for line in done.stdout.splitlines() if " " in line)
    return {job: state.strip().lower() for job, state in states.items() if job in wanted}


def live_cells(sweep_dir: Path) -> dict[str, str]:
    """Cell key → job id of the cells whose recorded task SLURM still holds."""
    jobs = _tasks(sweep_dir)
    states = queue_states([j["job_id"] for j in jobs]) or {}
    return {key: j["job_id"] for j in jobs if j["job_id"] in states for key in j["cells"]}


def sweep_status(sweep_dir: Path) -> list[dict]:
    """One row per cell of the sweep's latest run: key, state and, for a queued cell, its job.

    state is done | failed | queued (pending in SLURM) | running | to run (not submitted, or its
    task ended without finishing it) | stale (finished under another config).
    """
    sweep_dir = Path(sweep_dir)
    spec_path = sweep_dir / SPEC
    if not spec_path.is_file():
        raise IatrunError(f"{sweep_dir} is not a sweep folder (no {SPEC})")
    cells = (yaml.safe_load(spec_path.read_text()) or {}).get("cells") or {}
    jobs = _tasks(sweep_dir)
    job_of = {key: j["job_id"] for j in jobs for key in j["cells"]}  # the latest submission wins
    states = queue_states(sorted(set(job_of.values()))) or {}
    rows = []
    for key, digest in cells.items():
        state, detail = key_state(sweep_dir, key, digest)
        job = job_of.get(key)
        row = {"key": key, "state": state, "job": job or "", "detail": detail}
        if state in ("done", "failed", "stale"):
            rows.append(row)
            continue
        queued = states.get(job or "")
        row["state"] = {"pending": "queued", "running": "running"}.get(queued or "", "to run")
        if queued and queued not in ("pending", "running"):
            row["state"] = queued  # completing, requeued, suspended, ...
        rows.append(row)
    return rows


def summary(rows: Sequence[dict]) -> str:
    """``12 done, 3 running, 63 queued`` in a fixed order of states."""
    counts = Counter(r["state"] for r in rows)
    order = ["done", "running", "queued", "to run", "failed", "stale"]
    parts = [f"{counts[s]} {s}" for s in order if counts[s]]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in order]
    return ", ".join(parts) or "no cells"
