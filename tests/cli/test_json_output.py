"""`--json` on the final summaries: `iatrun fit` and `iatrun report` (and `--quiet` on report)."""

import json

from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()
TINY = ["--width", "8", "--depth", "2", "--steps", "30", "task.n_train=64", "task.holdout_factor=2"]


def test_fit_json_is_the_metrics_and_the_folder(tmp_path):
    res = runner.invoke(app, ["fit", *TINY, "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["run_folder"] == str(tmp_path / "run")
    assert out["metrics"] == json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_report_json_and_quiet(tmp_path, confdir):
    out = tmp_path / "sw"
    args = ["sweep", "--grid", "tiny", "--config-dir", str(confdir), "--out", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, ["report", str(out), "--quiet"])
    assert res.exit_code == 0 and res.output.strip() == str(out / "report.md")
    summary = json.loads(runner.invoke(app, ["report", str(out), "--json"]).output)
    assert (summary["cells"], summary["ok"], summary["not_ok"]) == (10, 10, 0)
    assert summary["report"] == str(out / "report.md") and summary["study"] is None
    first = summary["verdicts"][0]
    assert set(first) == {"claim", "verdict", "effect", "ci_low", "ci_high", "unit", "seeds"}
    assert first["claim"].startswith("1. rect/rect IAT-ReLU is the same as ReLU")
    text = (out / "report.md").read_text()
    assert all(v["verdict"] in text for v in summary["verdicts"])
