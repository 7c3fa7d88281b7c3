"""Reliability: corruption, concurrent sweeps, stale locks, determinism, bad input, divergence."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _support import GRID, N_CELLS, STACKED_RTOL, assert_same_results, exe, stable, write_grids
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()


def sweep(grids, out, *args, grid="tiny"):
    return runner.invoke(
        app, ["sweep", "-q", "--grid", grid, "--config-dir", str(grids), "--out", str(out), *args]
    )


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    return write_grids(tmp_path_factory.mktemp("conf") / "conf")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, grids):
    """The tiny grid run once, uninterrupted: what every faulty run must end up equal to."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    assert sweep(grids, out).exit_code == 0
    return out


# --- corruption --------------------------------------------------------------------------------


def _truncate_metrics(cell: Path):
    text = (cell / "metrics.json").read_text()
    (cell / "metrics.json").write_text(text[: len(text) // 2])


CORRUPTIONS = {
    "truncated metrics.json": _truncate_metrics,
    "empty curve.csv": lambda cell: (cell / "curve.csv").write_text(""),
    "missing model.pt": lambda cell: (cell / "model.pt").unlink(),
    "garbage config.yaml": lambda cell: (cell / "config.yaml").write_text("::: not yaml [\n\x00"),
    "truncated done.json": lambda cell: (cell / "done.json").write_text('{"status": "o'),
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_a_corrupt_cell_is_named_by_report_and_rerun_on_resume(tmp_path, grids, reference, damage):
    out = tmp_path / "sw"
    shutil.copytree(reference, out)  # a finished sweep folder is self-contained
    key = "fitting/iat-fourier-pwq-r4/seed1"
    CORRUPTIONS[damage](out / "cells" / key)
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    assert key in res.output and "did not finish ok" in res.output
    cells = pd.read_csv(out / "cells.csv").set_index("key")
    assert cells.loc[key, "state"] == "incomplete"
    assert key in (out / "report.md").read_text()
    # the table is built from the sound cells: fourier/pwq now has only seed 0
    t = pd.read_csv(out / "tables" / "fitting_heldout_mse.csv", index_col="basis_in")
    seed0 = cells.loc["fitting/iat-fourier-pwq-r4/seed0", "heldout_mse"]
    assert t.loc["fourier", "pwq"] == pytest.approx(seed0)
    res = sweep(grids, out)
    assert res.exit_code == 0 and f"{N_CELLS - 1} already finished, 1 to run" in res.output
    assert_same_results(out, reference)


# --- concurrency and locks ---------------------------------------------------------------------


def test_two_concurrent_sweeps_run_each_cell_once(tmp_path, grids, reference):
    out = tmp_path / "both"
    cmd = [*exe(), "sweep", "-q", "--grid", "tiny", "--config-dir", str(grids), "--out", str(out)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = [line for o, _ in outputs for line in o.splitlines() if line.startswith("fitting/")]
    here = [line for line in ran if "finished by another process" not in line]
    assert sorted(line.split(":")[0] for line in here) == sorted(stable(reference)["key"])  # once each
    assert_same_results(out, reference)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, grids, reference):
    out = tmp_path / "locked"
    shutil.copytree(reference, out)
    (out / "cells" / "fitting" / "relu" / "seed0" / "done.json").unlink()  # this cell must run again
    lock = out / "locks" / "fitting__relu__seed0.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from filelock import FileLock; FileLock({str(lock)!r}).acquire(); import time; "
            "print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    res = sweep(grids, out)
    assert res.exit_code == 0, res.output
    assert f"{N_CELLS - 1} already finished, 1 to run" in res.output
    assert_same_results(out, reference)


def test_a_held_lock_makes_the_sweep_wait_then_finish(tmp_path, grids):
    from filelock import FileLock

    out = tmp_path / "wait"
    assert sweep(grids, out, "seed=0").exit_code == 0  # makes the folder; seed 1 is still to run
    lock = out / "locks" / "fitting__relu__seed1.lock"
    fl = FileLock(str(lock))
    fl.acquire()
    proc = subprocess.Popen(
        [*exe(), "sweep", "-q", "--grid", "tiny", "--config-dir", str(grids), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("cells/**/done.json"))) < N_CELLS - 1:
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None  # still waiting for the claimed cell
    assert not (out / "cells" / "fitting" / "relu" / "seed1" / "done.json").exists()
    fl.release()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(list(out.glob("cells/**/done.json"))) == N_CELLS


# --- determinism -------------------------------------------------------------------------------


def test_same_config_and_seed_are_bit_identical_across_processes(tmp_path):
    args = [
        "fit",
        "-q",
        "--width",
        "8",
        "--depth",
        "2",
        "--steps",
        "50",
        "task.n_train=64",
        "task.holdout_factor=2",
    ]
    for name in ("a", "b"):
        res = subprocess.run([*exe(), *args, "--out", str(tmp_path / name)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    for k in ("train_mse", "heldout_mse", "max_abs_error", "final_loss", "loss_jumps", "loss_jump_total"):
        assert ma[k] == mb[k], k
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()


def test_serial_and_jobs_2_are_bit_identical(tmp_path, grids, reference):
    out = tmp_path / "j2"
    assert sweep(grids, out, "--jobs", "2").exit_code == 0
    assert_same_results(out, reference)


# --- divergence --------------------------------------------------------------------------------


def test_a_diverging_cell_is_listed_and_leaves_no_nan_elsewhere(tmp_path, grids):
    out = tmp_path / "div"
    grid = grids / "sweep" / "div.yaml"
    grid.write_text(
        GRID.format(steps=100).replace(
            "  - task: fitting\n    model: relu\n",
            "  - task: fitting\n    model: relu\n    train.lr: [1.0e10]\n",
        )
    )
    res = sweep(grids, out, "seed=0", grid="div")
    assert res.exit_code == 0, res.output
    cells = pd.read_csv(out / "cells.csv").set_index("key")
    relu = cells.loc["fitting/relu/seed0"]
    assert relu["status"] == "diverged" and relu["diverged_step"] >= 1
    others = cells.drop(index="fitting/relu/seed0")
    assert (others["status"] == "ok").all() and others["heldout_mse"].notna().all()
    t = pd.read_csv(out / "tables" / "fitting_heldout_mse.csv", index_col="basis_in")
    assert t.notna().all().all()
    base = pd.read_csv(out / "tables" / "baselines.csv")
    assert "relu" not in set(base.get("activation", []))  # no NaN row for the diverged baseline
    report = (out / "report.md").read_text()
    assert "fitting/relu/seed0" in report and "diverged at step" in report


# --- kill anywhere, lose nothing ---------------------------------------------------------------


@pytest.mark.slow
def test_killing_a_jobs_2_sweep_at_ten_points_loses_nothing(tmp_path, grids, reference):
    ref = tmp_path / "slow-ref"
    assert sweep(grids, ref, grid="slow").exit_code == 0
    out = tmp_path / "killed"
    cmd = [
        *exe(),
        "sweep",
        "-q",
        "--grid",
        "slow",
        "--config-dir",
        str(grids),
        "--out",
        str(out),
        "--jobs",
        "2",
    ]
    rng = random.Random(2024)
    for _ in range(10):
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for done in out.glob("cells/**/done.json"):  # whatever is marked done must be sound
            json.loads(done.read_text())
    res = sweep(grids, out, grid="slow")
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("cells/**/done.json"))) == N_CELLS
    assert not [p for p in (out / "cells").rglob("*") if ".partial-" in p.name or p.name.endswith(".tmp")]
    assert_same_results(out, ref, rtol=STACKED_RTOL)  # each rerun stacks what was left


def test_a_worker_exits_when_its_sweep_is_killed(tmp_path):
    # the sweep's process makes its pool, learns a worker's pid, and dies without any clean-up
    script = (
        "import os, sys, time\n"
        "from iatrun.sweep.run import _pool\n"
        "pool = _pool(1)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "pool.submit(time.sleep, 120)\n"
        "time.sleep(0.5)\n"
        "os._exit(0)\n"
    )
    with open(tmp_path / "out", "w") as out:  # a file, not a pipe: an orphan holding it open blocks nothing
        subprocess.run([sys.executable, "-c", script], stdout=out, timeout=120, check=True)
    worker = int((tmp_path / "out").read_text().split()[0])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    gone = not Path(f"/proc/{worker}").exists()
    if not gone:
        os.kill(worker, signal.SIGKILL)
    assert gone, "the worker outlived its sweep by 20 s"
