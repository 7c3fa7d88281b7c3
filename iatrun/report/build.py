"""Sweep results → cells.csv, tables in the paper's layout, figures, and report.md with the claims.

Everything here reads only the sweep folder, so `iatrun report DIR` rebuilds it at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from iatrun.files import write_text
from iatrun.report import paper
from iatrun.report.claims import Verdict, claims, variant_verdicts
from iatrun.report.collect import MAIN, collect, ok_cells, region_columns
from iatrun.report.tables import (
    baselines_table,
    iat_cells,
    main_mesh_ratio,
    mesh_table,
    pair_table,
    spearman,
    variant_table,
)
from iatrun.sweep.cells import read_spec

# The metrics tabulated per task, beside each task's main metric.
TABLE_METRICS = {
    "fitting": ["heldout_mse", "train_mse", "max_abs_error"],
    "memorization": ["accuracy_pct", "train_loss"],
}


def build(sweep_dir: str | Path) -> dict:
    """Write cells.csv, tables/, figures/ and report.md; return a summary for the terminal."""
    sweep_dir = Path(sweep_dir)
    df = region_columns(collect(sweep_dir), sweep_dir)
    _csv(sweep_dir / "cells.csv", df, index=False)
    tables_dir, fig_dir = sweep_dir / "tables", sweep_dir / "figures"
    tables_dir.mkdir(exist_ok=True)
    fig_dir.mkdir(exist_ok=True)

    tables = {}
    for task, metrics in TABLE_METRICS.items():
        for metric in metrics:
            mean, std = pair_table(df, task, metric), pair_table(df, task, metric, "std")
            if not mean.empty:
                _csv(tables_dir / f"{task}_{metric}.csv", mean)
                _csv(tables_dir / f"{task}_{metric}_std.csv", std)
                tables[(task, metric)] = (mean, std)
    base = baselines_table(df)
    _csv(tables_dir / "baselines.csv", base)
    mesh = mesh_table(df)
    if not mesh.empty:
        _csv(tables_dir / "mesh.csv", mesh, index=False)

    figures = _figures(df, sweep_dir, fig_dir, tables, mesh)
    variants = variant_table(df)
    if not variants.empty:
        _csv(tables_dir / "variants.csv", variants, index=False)
    verdicts = claims(df)
    text = _report_md(sweep_dir, df, tables, base, mesh, verdicts, figures, variants)
    write_text(sweep_dir / "report.md", text)
    return {"cells": df, "verdicts": verdicts, "report": sweep_dir / "report.md"}


def _figures(
    df: pd.DataFrame, sweep_dir: Path, fig_dir: Path, tables: dict, mesh: pd.DataFrame
) -> list[Path]:
    """Draw the heatmaps, loss curves and mesh figure; the paths written, in the report's order."""
    from iatrun.report import figures as sweep_plots  # matplotlib: only when drawing

    figures = []
    for task in MAIN:
        key = (task, MAIN[task][0])
        if key in tables:
            path = fig_dir / f"{task}_heatmap.png"
            sweep_plots.heatmap(tables[key][0], paper.table(task), task, MAIN[task][1], path)
            figures.append(path)
        path = fig_dir / f"{task}_curves.png"
        if sweep_plots.curves(df, sweep_dir, task, MAIN[task], path):
            figures.append(path)
    if not mesh.empty:
        path = fig_dir / "mesh.png"
        sweep_plots.mesh(mesh, path)
        figures.append(path)
    return figures


# --- report.md ---------------------------------------------------------------------------------


def _csv(path: Path, frame: pd.DataFrame, index: bool = True) -> None:
    write_text(path, frame.to_csv(index=index))


def _md_table(frame: pd.DataFrame, fmt: Callable[[float], str]) -> str:
    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.values]) + " |")
    return "\n".join(lines)


def _fmt_metric(task: str) -> Callable[[float], str]:
    if MAIN[task][1]:
        return lambda v: "—" if pd.isna(v) else f"{v:.1f}"
    return lambda v: "—" if pd.isna(v) else f"{v:.2e}"


def _fmt_mixed(v) -> str:
    """Strings as they are, numbers to 3 significant digits."""
    return v if isinstance(v, str) else ("—" if pd.isna(v) else f"{v:.3g}")


def _verdict_rows(verdicts: list[Verdict]) -> list[str]:
    return [f"| {v.claim} | {v.statistic} | {v.ours} | **{v.verdict}** |" for v in verdicts]


def _header_md(sweep_dir: Path, df: pd.DataFrame) -> list[str]:
    spec = read_spec(sweep_dir)
    ok = ok_cells(df)
    seeds = sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []
    lines = [
        f"# iatrun sweep report: `{spec.get('grid')}`",
        "",
        f"{spec.get('description', '')}",
        "",
        f"- cells: {len(df)} ({int((df['state'] == 'done').sum())} finished, "
        f"{int(ok.shape[0])} ok), seeds: {seeds}",
        f"- command-line overrides: {' '.join(spec.get('overrides') or []) or 'none'}",
    ]
    iat = iat_cells(df)
    if not iat.empty:
        lines.append(f"- IAT tables use mesh ratio r = {main_mesh_ratio(iat)}")
    return lines


def _task_md(task: str, mean: pd.DataFrame, std: pd.DataFrame) -> list[str]:
    """Paper's table, ours (mean and std over seeds) and their rank correlation."""
    theirs = paper.table(task)
    rho = spearman(mean, theirs)
    unit = "training accuracy, %" if MAIN[task][1] else "held-out MSE"
    return [
        "",
        f"## {task} ({unit})",
        "",
        f"Spearman rank correlation with the paper's table: **{rho:.2f}**"
        if np.isfinite(rho)
        else "Spearman: n/a",
        "",
        "Paper:",
        "",
        _md_table(theirs, _fmt_metric(task)),
        "",
        "Ours (mean over seeds):",
        "",
        _md_table(mean, _fmt_metric(task)),
        "",
        "Ours (std over seeds):",
        "",
        _md_table(std, _fmt_metric(task)),
    ]


def _baselines_md(base: pd.DataFrame) -> list[str]:
    return [
        "",
        "## Scalar baselines",
        "",
        "Paper:",
        "",
        _md_table(paper.baselines(), lambda v: f"{v:.3g}"),
        "",
        "Ours:",
        "",
        _md_table(base, lambda v: "—" if pd.isna(v) else f"{v:.3g}"),
    ]


def _variants_md(df: pd.DataFrame, variants: pd.DataFrame) -> list[str]:
    lines = [
        "",
        "## Exact and decoupled IAT-ReLU (fitting, held-out MSE)",
        "",
        _md_table(variants.set_index("pair"), _fmt_mixed),
        "",
        "| question | statistic | ours | verdict |",
        "|---|---|---|---|",
    ]
    return lines + _verdict_rows(variant_verdicts(df))


def _unfinished_md(bad: pd.DataFrame) -> list[str]:
    lines = [
        "",
        "## Cells that did not finish ok",
        "",
        "| cell | state | status | detail |",
        "|---|---|---|---|",
    ]
    for _, r in bad.iterrows():
        if isinstance(r.get("error"), str):
            detail = r.get("error")
        elif pd.notna(r.get("diverged_step")):
            detail = f"diverged at step {int(r['diverged_step'])}"
        else:
            detail = ""
        lines.append(f"| {r['key']} | {r['state']} | {r['status']} | {detail} |")
    return lines


def _report_md(sweep_dir, df, tables, base, mesh, verdicts, figures, variants=None) -> str:
    """report.md: the sweep, the claims' verdicts, the tables beside the paper's, the figures."""
    lines = _header_md(sweep_dir, df)
    lines += [
        "",
        "## The paper's claims (SPEC §6)",
        "",
        "| claim | statistic | ours | verdict |",
        "|---|---|---|---|",
    ]
    lines += _verdict_rows(verdicts)
    for task in MAIN:
        if (task, MAIN[task][0]) in tables:
            lines += _task_md(task, *tables[(task, MAIN[task][0])])
    if not base.empty:
        lines += _baselines_md(base)
    if not mesh.empty:
        lines += ["", "## Mesh ratio", "", _md_table(mesh.set_index("task"), _fmt_mixed)]
    if variants is not None and not variants.empty:
        lines += _variants_md(df, variants)
    bad = df[(df["state"] != "done") | (df["status"] != "ok")]
    if len(bad):
        lines += _unfinished_md(bad)
    if figures:
        lines += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figures]
    return "\n".join(lines) + "\n"
