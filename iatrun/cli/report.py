"""``iatrun report``: a sweep folder's cells.csv, tables, figures and report.md, rebuilt from its cells."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from iatrun.cli.choices import HeatmapScale, PlotFormat, flag, value
from iatrun.cli.common import examples

app = typer.Typer()


def show_report(folder: Path, console, mode: str = "full", style=None) -> None:
    """Build the report; print its summary (``full``), only the path of report.md (``quiet``) or
    one JSON object (``json``: cell counts, each verdict with its effect and interval, the files).
    ``style``: how figures are written (default: the sweep's ``plots.*`` overrides)."""
    from rich.table import Table

    from iatrun.report.build import build
    from iatrun.report.collect import MAIN

    summary = build(folder, style)
    df = summary["cells"]
    if mode == "quiet":
        return print(summary["report"])
    if mode == "json":
        return print(json.dumps(_report_json(summary), indent=2, default=str))
    ok = df[(df["state"] == "done") & (df["status"] == "ok")]
    t = Table("task", "best cells", "metric", title="best cells")
    for task, (metric, higher) in MAIN.items():
        sub = ok[ok["task"] == task] if len(ok) else ok
        if len(sub) and metric in sub:
            best = sub.sort_values(metric, ascending=not higher).head(3)
            for _, r in best.iterrows():
                t.add_row(task, r["key"], f"{metric}={r[metric]:.4g}")
    console.print(t)
    for v in summary["verdicts"]:
        console.print(f"{v.verdict:>12}  {v.claim}", highlight=False)
    bad = df[(df["state"] != "done") | (df["status"] != "ok")]
    if len(bad):
        console.print(f"{len(bad)} cell(s) did not finish ok (listed in report.md):", highlight=False)
        for _, r in bad.head(20).iterrows():
            detail = r.get("error") if isinstance(r.get("error"), str) else r.get("status")
            console.print(f"  {r['key']}: {r['state']} ({detail})", highlight=False)
    console.print(f"report: {summary['report']}", soft_wrap=True, highlight=False)


def _report_json(summary: dict) -> dict:
    df = summary["cells"]
    done = df[(df["state"] == "done") & (df["status"] == "ok")]

    def number(v):
        return None if v != v else v  # NaN → null

    verdicts = [
        {
            "claim": v.claim,
            "verdict": v.verdict,
            "effect": number(v.effect),
            "ci_low": number(v.ci_low),
            "ci_high": number(v.ci_high),
            "unit": v.unit,
            "seeds": v.n,
        }
        for v in summary["verdicts"]
    ]
    return {
        "cells": len(df),
        "ok": len(done),
        "not_ok": len(df) - len(done),
        "verdicts": verdicts,
        "report": summary["report"],
        "study": summary["study"],
    }


@app.command(
    epilog=examples(
        "iatrun report results/sweeps/mine",
        "iatrun report results/sweeps/mine --json",
        "iatrun report results/sweeps/mine --format svg --heatmap-scale shared",
    )
)
def report(
    folder: Path = typer.Argument(..., help="A sweep folder (made by iatrun sweep)."),
    quiet: bool = flag("--quiet", "-q", help="Only the path of report.md."),
    as_json: bool = flag("--json", help="One JSON object: cell counts, the verdicts, the files written."),
    fmt: PlotFormat = typer.Option(  # noqa: B008 - Typer's declaration style
        None, "--format", help="Figure format.", show_default="the sweep's plots.format, else png"
    ),
    dpi: int = typer.Option(None, help="Figure resolution.", show_default="the sweep's plots.dpi, else 110"),
    heatmap_scale: HeatmapScale = typer.Option(  # noqa: B008
        None,
        help="The heatmaps' colour scale: each table its own, or one for ours and the paper's.",
        show_default="the sweep's plots.heatmap_scale, else per-table",
    ),
) -> None:
    """Rebuild cells.csv, tables/, figures/ and report.md of a sweep folder from its cells.

    A folder without a readable sweep.yaml or without cells/ is refused before anything is written;
    figures written in another format by an earlier report are replaced.
    """
    from rich.console import Console

    from iatrun.report.build import sweep_style
    from iatrun.sweep.spec import check_sweep_dir

    check_sweep_dir(folder)
    style = sweep_style(folder).replace(format=value(fmt), dpi=dpi, heatmap_scale=value(heatmap_scale))
    show_report(folder, Console(quiet=False), "json" if as_json else "quiet" if quiet else "full", style)
