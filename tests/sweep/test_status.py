"""iatrun status (iatrun.sweep.status): each cell's state from the folder and the recorded jobs."""

from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.sweep import status as st

runner = CliRunner()


def _sweep(tmp_path, confdir):
    out = tmp_path / "sw"
    args = ["sweep", "-q", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


def test_status_reads_the_cells_and_the_recorded_jobs(tmp_path, confdir):
    out = _sweep(tmp_path, confdir)
    rows = st.sweep_status(out)
    assert len(rows) == 10 and {r["state"] for r in rows} == {"done"}
    first, second = sorted(out.rglob("done.json"))[:2]
    first.unlink()  # one cell no longer finished
    (second.parent / "error.json").write_text('{"error": "RuntimeError: boom"}')
    second.unlink()
    st.record_jobs(out, [("999999_0", [r["key"] for r in rows[:3]])])  # a task no queue knows
    states = {r["key"]: r for r in st.sweep_status(out)}
    assert sorted(r["state"] for r in states.values()).count("done") == 8
    failed = [r for r in states.values() if r["state"] == "failed"]
    assert len(failed) == 1 and "boom" in failed[0]["detail"]
    assert [r["state"] for r in states.values()].count("to run") == 1
    assert st.summary(states.values()) == "8 done, 1 to run, 1 failed"
    assert st.live_cells(out) == {}  # the recorded task is in no queue
    res = runner.invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "10 cells: 8 done, 1 to run, 1 failed" in res.output
    assert "boom" in res.output


def test_status_of_a_folder_that_is_no_sweep_is_one_error_line(tmp_path):
    res = runner.invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "not a sweep folder" in res.stderr


def test_detach_needs_a_launcher(tmp_path):
    res = runner.invoke(app, ["sweep", "--grid", "quick", "--out", str(tmp_path / "x"), "--detach"])
    assert res.exit_code == 2 and "--detach needs --launcher" in res.stderr
    assert not (tmp_path / "x").exists()
