"""The SLURM launcher against a running single-node cluster (make slurm-up): run with --slurm.

CI runs these after ``make test`` (``.ci/run``); without a cluster they fail with one line.
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _support import STACKED_RTOL, assert_same_results, exe, stable

pytestmark = pytest.mark.slurm

SLURM = ["--launcher", "submitit_slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=1"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    try:
        up = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        up = None
    if up is None or "is UP" not in up.stdout:
        pytest.exit("slurm: no running cluster answers scontrol ping (make slurm-up)", returncode=1)


def sweep(out, *args, env=None, check=True):
    cmd = [*exe(), "sweep", "-q", "--out", str(out), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if check:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def one_thread_env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def test_the_quick_grid_through_slurm_matches_a_local_run(tmp_path):
    start = time.time()
    res = sweep(tmp_path / "slurm", "--grid", "quick", *SLURM)
    wall = time.time() - start
    assert "78 cells, 0 already finished, 78 to run" in res.stdout
    tasks = [p for p in (tmp_path / "slurm" / ".submitit").glob("*_*") if p.is_dir()]
    assert 1 <= len(tasks) <= 4, tasks  # cells_per_task auto: one chunk per core, not one per cell
    logs = [p.read_text() for p in (tmp_path / "slurm" / ".submitit").rglob("*_log.out")]
    startups = [float(m) for log in logs for m in re.findall(r"iatrun: task start-up ([0-9.]+) s", log)]
    assert len(startups) == len(tasks) and max(startups) < 0.1 * wall, (startups, wall)
    start = time.time()
    sweep(tmp_path / "local", "--grid", "quick", env=one_thread_env())
    local = time.time() - start
    assert_same_results(tmp_path / "slurm", tmp_path / "local", rtol=STACKED_RTOL)
    print(
        f"quick grid through SLURM: {wall:.0f} s in {len(tasks)} array tasks (start-up "
        f"{max(startups):.1f} s at most); locally, one process, one thread: {local:.0f} s"
    )


@pytest.mark.parametrize(
    "extra, why",
    [(["launcher.slurm_partition=nosuch"], "partition"), (["launcher.gpus_per_node=1"], "gres")],
)
def test_a_request_the_cluster_refuses_is_one_error_line_and_nothing_written(tmp_path, confdir, extra, why):
    out = tmp_path / "sw"
    res = sweep(out, "--grid", "tiny", "--config-dir", str(confdir), *SLURM, *extra, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    line = lines[0].lower()
    assert len(lines) == 1 and line.startswith("error: slurm refuses the launcher's request") and why in line
    assert not out.exists()


def _done(out):
    return sorted((out / "cells").rglob("done.json"))


def _busy_task(out) -> str | None:
    """The pid of an array task's Python process that still has a cell to finish (a task that
    finished its chunk and is exiting would crash nothing); None while there is none."""
    tasks = {t["job_id"]: t["cells"] for t in json.loads((out / "jobs.json").read_text())["tasks"]}
    found = subprocess.run(["pgrep", "-f", "submitit.core._submit"], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            text = Path(f"/proc/{pid}/environ").read_text()
            env = dict(v.split("=", 1) for v in text.split("\0") if "=" in v)
        except OSError:
            continue
        job = f"{env.get('SLURM_ARRAY_JOB_ID')}_{env.get('SLURM_ARRAY_TASK_ID')}"
        if any(not (out / "cells" / key / "done.json").exists() for key in tasks.get(job, [])):
            return pid
    return None


def test_cancelled_array_tasks_then_a_rerun_train_every_cell_once(tmp_path, confdir):
    """scancel mid-way: the sweep records the cancelled cells as failed; rerunning it trains only
    those, and the results equal a local run's."""
    out = tmp_path / "sw"
    args = ["--grid", "slow", "--config-dir", str(confdir), *SLURM, "launcher.cells_per_task=2"]
    cmd = [*exe(), "sweep", "-q", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(_done(out)) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert len(_done(out)) >= 2, "no cell finished in 10 minutes"
    subprocess.run(["scancel", "--user", os.environ.get("USER") or "root"], check=False)
    proc.wait(timeout=120)
    first = {p: p.stat().st_mtime for p in _done(out)}
    assert 2 <= len(first) < 10
    res = sweep(out, *args)
    assert f"{len(first)} already finished, {10 - len(first)} to run" in res.stdout
    assert len(_done(out)) == 10
    assert all(p.stat().st_mtime == m for p, m in first.items())  # finished cells were not redone
    sweep(tmp_path / "local", "--grid", "slow", "--config-dir", str(confdir), env=one_thread_env())
    assert_same_results(out, tmp_path / "local", rtol=STACKED_RTOL)
    assert stable(out)["status"].eq("ok").all()


def test_a_requeued_task_resumes_its_cell_from_the_checkpoint(tmp_path):
    """scontrol requeue of a running task: the cell continues from its last checkpoint and finishes
    once, with the metrics of an unbroken run."""
    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "sweep" / "long.yaml").write_text(
        "seeds: [0]\noverrides: [model.width=128, model.depth=3, train.steps=4000, task.n_train=1000]\n"
        "blocks:\n  - task: fitting\n    model: relu\n"
    )
    env = dict(one_thread_env(), IATRUN_CHECKPOINT_S="0")
    out = tmp_path / "sw"
    args = ["--grid", "long", "--config-dir", str(conf), *SLURM]
    proc = subprocess.Popen([*exe(), "sweep", "-q", "--out", str(out), *args], env=env)
    ckpt = None
    deadline = time.time() + 600
    while time.time() < deadline:
        found = list((out / "cells").rglob(".*.checkpoint.pt")) if (out / "cells").exists() else []
        if found:
            ckpt = found[0]
            try:
                if torch.load(ckpt, weights_only=False)["step"] >= 1000:
                    break
            except Exception:
                pass
        time.sleep(0.2)
    jobs = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert ckpt is not None and len(jobs) == 1, jobs
    subprocess.run(["scontrol", "requeue", jobs[0]], check=True)
    assert proc.wait(timeout=900) == 0
    done = json.loads(next((out / "cells").rglob("done.json")).read_text())
    assert done["status"] == "ok" and 1000 <= done["resumed_from_step"] < 4000
    print(f"requeued cell resumed from step {done['resumed_from_step']}")
    sweep(tmp_path / "local", *args[:4], env=one_thread_env())
    assert_same_results(out, tmp_path / "local", rtol=STACKED_RTOL)


def test_a_detached_sweep_is_followed_by_status_and_finished_by_a_rerun(tmp_path, confdir):
    out = tmp_path / "sw"
    args = ["--grid", "tiny", "--config-dir", str(confdir), *SLURM, "launcher.cells_per_task=5"]
    res = sweep(out, *args, "--detach")
    assert "iatrun status" in res.stdout and not (out / "report.md").exists()
    jobs = json.loads((out / "jobs.json").read_text())["tasks"]
    assert len(jobs) == 2 and sorted(len(j["cells"]) for j in jobs) == [5, 5]
    status = subprocess.run([*exe(), "status", str(out)], capture_output=True, text=True, check=True).stdout
    assert "10 cells" in status
    again = sweep(out, *args)  # submits nothing still queued; waits for nothing of its own
    assert "still in submitted jobs" in again.stdout or "10 already finished" in again.stdout
    deadline = time.time() + 600
    while len(_done(out)) < 10 and time.time() < deadline:
        time.sleep(1)
    status = subprocess.run([*exe(), "status", str(out)], capture_output=True, text=True, check=True).stdout
    assert "10 cells: 10 done" in status, status
    report = subprocess.run([*exe(), "report", str(out)], capture_output=True, text=True)
    assert report.returncode == 0 and (out / "report.md").is_file()


def test_a_task_that_crashes_leaves_its_cells_failed_and_a_rerun_finishes_them(tmp_path, confdir):
    """SIGKILL of one array task's Python process (a crash SLURM sees as a failed job): the sweep
    records that task's unfinished cells as failed and ends; a rerun trains exactly those."""
    out = tmp_path / "sw"
    args = ["--grid", "slow", "--config-dir", str(confdir), *SLURM, "launcher.cells_per_task=5"]
    cmd = [*exe(), "sweep", "-q", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 600
    victim = None
    while time.time() < deadline and victim is None:
        if _done(out) and (out / "jobs.json").exists():
            victim = _busy_task(out)
        time.sleep(0.2)
    assert victim, "no task was running with a finished cell"
    subprocess.run(["kill", "-KILL", victim], check=True)
    output, _ = proc.communicate(timeout=600)
    assert "failed" in output
    before = len(_done(out))
    assert before < 10
    res = sweep(out, *args)
    assert f"{before} already finished, {10 - before} to run" in res.stdout
    assert len(_done(out)) == 10
    sweep(tmp_path / "local", "--grid", "slow", "--config-dir", str(confdir), env=one_thread_env())
    assert_same_results(out, tmp_path / "local", rtol=STACKED_RTOL)
