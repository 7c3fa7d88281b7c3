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
from iatrun.report.budget import budget_lines, toy_tasks
from iatrun.report.claims import Verdict, claims, variant_verdicts
from iatrun.report.collect import MAIN, collect, ok_cells, region_columns
from iatrun.report.scores import complete
from iatrun.report.stats import LEVEL, not_tested
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
                seeds = int(pair_table(df, task, metric, "count").max().max())
                tables[(task, metric)] = (mean, std, seeds)
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


VERDICT_HEADER = [
    f"| claim | statistic | ours | effect (mean) | {LEVEL:.0%} CI | p | n seeds | verdict |",
    "|---|---|---|---|---|---|---|---|",
]


def _num(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def _stat_cells(v: Verdict) -> list[str]:
    """effect (with its unit), CI, p and n of one tested part."""
    effect = f"{_num(v.effect)} {v.unit}".strip() if np.isfinite(v.effect) else "n/a"
    ci = f"[{_num(v.ci_low)}, {_num(v.ci_high)}]" if np.isfinite(v.ci_low) else "n/a"
    p = "n/a" if not np.isfinite(v.p) else "< 0.0001" if v.p < 1e-4 else f"{v.p:.2g}"
    return [effect, ci, p, str(v.n)]


def _verdict_row(v: Verdict) -> str:
    """One claim: a claim with parts shows each part's numbers on its own line in the cell."""
    if v.parts:
        per = [[f"{p.claim}: {c}" for c in _stat_cells(p)] for p in v.parts]
        cells = ["<br>".join(col) for col in zip(*per)]
    else:
        cells = _stat_cells(v)
    verdict = f"**{v.verdict}**"
    if v.parts and not not_tested(v.verdict):
        verdict += " (" + "; ".join(f"{p.claim}: {p.verdict}" for p in v.parts) + ")"
    cells = [c.replace("|", "\\|") for c in (v.claim, v.statistic, v.ours, *cells)]
    return "| " + " | ".join([*cells, verdict]) + " |"


def _verdict_rows(verdicts: list[Verdict]) -> list[str]:
    return [_verdict_row(v) for v in verdicts]


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
    budget = budget_lines(df)
    if budget:
        lines += ["- budget as run, per task (steps, width, depth, training points; learning rate; norm):"]
        lines += ["  " + b for b in budget]
    return lines


# why a verdict is missing, in words, by the verdict's text
WHY = {
    "not tested: toy budget": "the cells ran below the calibrated budget ({toy}); a toy budget tests "
    "nothing the paper claims, so no claim reading those tasks gets a verdict. Rerun at the default "
    "budget (no lower `train.steps`, `model.width`, `model.depth` or training points).",
    "not tested: partial grid": "the sweep lacks rows, columns, baselines or mesh ratios the claim "
    "needs (a claim is tested only on the complete part of the grid it names; claim 6 needs the "
    "`mesh` grid).",
    "inconclusive (one seed)": "one seed gives no confidence interval; a verdict needs at least two "
    "seeds (three for claim 4).",
    "not tested: needs ≥ 3 seeds (selection and evaluation)": "the best pair is chosen on the lowest "
    "third of the seeds and tested on the others, which needs at least three seeds.",
    "not tested: no data": "no finished cell has the values the claim compares.",
}


def _why_md(df: pd.DataFrame, verdicts: list[Verdict]) -> list[str]:
    """The header's account of every verdict that is missing, and the rule verdicts follow."""
    toy = "; ".join(f"{t}: {', '.join(r)}" for t, r in toy_tasks(df).items())
    found: dict[str, list[str]] = {}
    for v in verdicts:
        number = v.claim.split(".")[0]
        for verdict in [v.verdict, v.withheld, *(p.verdict for p in v.parts)]:
            if verdict in WHY and number not in found.setdefault(verdict, []):
                found[verdict].append(number)
    lines = [
        "",
        f"Verdicts: a paired t test over seeds; **holds** / **fails** only when the {LEVEL:.0%} "
        "confidence interval of the per-seed effect excludes zero on one side, **inconclusive** when "
        "it straddles zero (see README, Sweeps).",
    ]
    if found:
        lines += ["", "**Why verdicts are missing:**", ""]
        for verdict, numbers in found.items():
            which = f"claim{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
            lines.append(f"- `{verdict}` ({which}): " + WHY[verdict].format(toy=toy))
    return lines


def _task_md(task: str, mean: pd.DataFrame, std: pd.DataFrame, seeds: int, toy: bool = False) -> list[str]:
    """Paper's table, ours (mean and std over seeds) and their rank correlation (complete tables only)."""
    theirs = paper.table(task)
    unit = "training accuracy, %" if MAIN[task][1] else "held-out MSE"
    if complete(mean, theirs.index, theirs.columns):
        rho = spearman(mean, theirs)
        corr = f"**{rho:.2f}**" if np.isfinite(rho) else "n/a"
        corr += " (at a toy budget: see the header)" if toy else ""
    else:
        corr = "n/a: partial table (our table lacks some of the paper's 6×6 cells)"
    std_md = _md_table(std, _fmt_metric(task)) if seeds > 1 else "n/a (one seed)"
    return [
        "",
        f"## {task} ({unit})",
        "",
        f"Spearman rank correlation with the paper's table: {corr}",
        "",
        "Paper:",
        "",
        _md_table(theirs, _fmt_metric(task)),
        "",
        f"Ours (mean over {seeds} seed{'s' if seeds != 1 else ''}):",
        "",
        _md_table(mean, _fmt_metric(task)),
        "",
        "Ours (std over seeds):",
        "",
        std_md,
    ]


def _baselines_md(base: pd.DataFrame) -> list[str]:
    std = base[[c for c in base.columns if str(c).endswith("_std")]]
    return [
        "",
        "## Scalar baselines",
        "",
        "Paper:",
        "",
        _md_table(paper.baselines(), lambda v: f"{v:.3g}"),
        "",
        "Ours:" if std.notna().any().any() else "Ours (std: n/a, one seed):",
        "",
        _md_table(base if std.notna().any().any() else base.drop(columns=std.columns), _fmt_mixed),
    ]


def _variants_md(df: pd.DataFrame, variants: pd.DataFrame) -> list[str]:
    lines = [
        "",
        "## Exact and decoupled IAT-ReLU (fitting, held-out MSE)",
        "",
        _md_table(variants.set_index("pair"), _fmt_mixed),
        "",
        *VERDICT_HEADER,
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
    lines = _header_md(sweep_dir, df) + _why_md(df, verdicts)
    lines += ["", "## The paper's claims (SPEC §6)", "", *VERDICT_HEADER]
    lines += _verdict_rows(verdicts)
    for task in MAIN:
        if (task, MAIN[task][0]) in tables:
            lines += _task_md(task, *tables[(task, MAIN[task][0])], toy=task in toy_tasks(df))
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
