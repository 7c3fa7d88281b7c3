"""Sweep results → cells.csv, tables in the paper's layout, figures, and report.md with the claims.

Everything here reads only the sweep folder, so `iatrun report DIR` rebuilds it at any time. A sweep
that varies a setting beyond the tables' axes (:mod:`iatrun.report.split`) gets one set of tables,
figures and claims per variant, named ``<name>__<variant>``, one report.md section per variant, and
study.md (:mod:`iatrun.report.study`); a split that cannot be made is refused before anything is
written. A sweep with settings at both the calibrated and a declared budget also gets
budget-check.md (:mod:`iatrun.report.budget_check`). Figures take the sweep's ``plots.*`` overrides
(format, dpi, heatmap colour scale) unless the caller gives a style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from iatrun import plotstyle
from iatrun.files import write_text
from iatrun.plotstyle import PlotStyle
from iatrun.report import markdown, paper
from iatrun.report.budget_check import budget_check_md, checks
from iatrun.report.claims import Verdict, claims
from iatrun.report.collect import MAIN, collect, region_columns
from iatrun.report.markdown import body_md, demote, figures_md, header_md, split_md, unfinished_md, why_md
from iatrun.report.split import Variant, split
from iatrun.report.tables import baselines_table, centre, mesh_table, pair_table, variant_table
from iatrun.report.versus import versus_relu
from iatrun.sweep.grid import parse_overrides
from iatrun.sweep.spec import read_spec

# The metrics tabulated per task, beside each task's main metric.
TABLE_METRICS = {
    "fitting": ["heldout_mse", "train_mse", "max_abs_error"],
    "memorization": ["accuracy_pct", "train_loss"],
}
STUDY = "study.md"
BUDGET_CHECK = "budget-check.md"  # a sweep with settings at the calibrated and a declared budget
# the files a report writes in tables/ and figures/ (an earlier report's that this one does not
# write again are removed, so a folder never mixes two splits)
_TABLES = "|".join(f"{t}_{m}(_std)?" for t, ms in TABLE_METRICS.items() for m in ms)
OWN_FILES = re.compile(
    rf"^({_TABLES}|(fitting|memorization)_vs_relu|baselines|mesh|variants)(__[A-Za-z0-9.+_~-]+)?\.csv$"
    rf"|^((fitting|memorization)_(heatmap|curves)|mesh)(__[A-Za-z0-9.+_~-]+)?\.({'|'.join(plotstyle.FORMATS)})$"
)

# report.md's pieces (markdown.py), under the names the tests have always used
_task_md, _verdict_row = markdown.task_md, markdown.verdict_row


@dataclass
class Part:
    """What the report holds for the whole sweep or for one variant of it."""

    df: pd.DataFrame
    tables: dict = field(default_factory=dict)  # (task, metric) → (mean, std, max seeds per cell)
    base: pd.DataFrame = field(default_factory=pd.DataFrame)
    mesh: pd.DataFrame = field(default_factory=pd.DataFrame)
    exact: pd.DataFrame = field(default_factory=pd.DataFrame)  # the exact / decoupled table
    verdicts: list[Verdict] = field(default_factory=list)
    versus: dict = field(default_factory=dict)  # task → each pair against relu (versus_relu)
    figures: list[Path] = field(default_factory=list)
    variant: Variant | None = None


def sweep_style(sweep_dir: str | Path) -> PlotStyle:
    """The figure style a sweep asked for: the ``plots.*`` overrides of its grid and of its latest
    command line (sweep.yaml), over the defaults. IatrunError for a bad value."""
    spec = read_spec(sweep_dir)
    overrides = [*((spec.get("grid_spec") or {}).get("overrides") or []), *(spec.get("overrides") or [])]
    section = {
        key.lstrip("+~").removeprefix("plots."): yaml.safe_load(values[-1])
        for key, values in parse_overrides([str(o) for o in overrides])
        if key.lstrip("+~").startswith("plots.")
    }
    return PlotStyle.from_config(section)


def build(sweep_dir: str | Path, style: PlotStyle | None = None) -> dict:
    """Write cells.csv, tables/, figures/ and report.md (and study.md for a split sweep); return a
    summary for the terminal. Raises IatrunError, having written nothing, for a split it cannot make
    or a bad figure style. ``style``: how figures are written (default: :func:`sweep_style`)."""
    sweep_dir = Path(sweep_dir)
    with plotstyle.style(style or sweep_style(sweep_dir)):
        return _build(sweep_dir)


def _build(sweep_dir: Path) -> dict:
    df = collect(sweep_dir)
    axes, variants = split(df)  # may refuse: before anything is written
    df = region_columns(df, sweep_dir)
    written = {sweep_dir / "cells.csv", sweep_dir / "report.md"}
    _csv(sweep_dir / "cells.csv", df, index=False)
    (sweep_dir / "tables").mkdir(exist_ok=True)
    (sweep_dir / "figures").mkdir(exist_ok=True)
    study = None
    if not variants:
        part = _write_part(sweep_dir, df, None, written)
        text = _report_md(
            sweep_dir,
            df,
            part.tables,
            part.base,
            part.mesh,
            part.verdicts,
            part.figures,
            part.exact,
            part.versus,
        )
        verdicts = part.verdicts
    else:
        from iatrun.report.study import study_md

        parts = [_write_part(sweep_dir, df.loc[cells.index], v, written) for v, cells in variants]
        text = _split_report_md(sweep_dir, df, axes, parts)
        study = sweep_dir / STUDY
        write_text(study, study_md(sweep_dir, df, axes, parts))
        written.add(study)
        verdicts = [replace(v, claim=f"{p.variant.label}: {v.claim}") for p in parts for v in p.verdicts]
    write_text(sweep_dir / "report.md", text)
    if found := checks(df):
        write_text(sweep_dir / BUDGET_CHECK, budget_check_md(read_spec(sweep_dir)["grid"], found))
        written.add(sweep_dir / BUDGET_CHECK)
    _remove_stale(sweep_dir, written)
    return {"cells": df, "verdicts": verdicts, "report": sweep_dir / "report.md", "study": study}


def _write_part(sweep_dir: Path, df: pd.DataFrame, variant: Variant | None, written: set) -> Part:
    """The tables, figures and claims of ``df`` (the sweep, or one variant's cells), written to
    ``tables/<name>[__<variant>].csv`` and ``figures/<name>[__<variant>].<format>``."""
    suffix = variant.suffix() if variant else ""
    tables_dir = sweep_dir / "tables"
    part = Part(df, variant=variant)

    def csv(name: str, frame: pd.DataFrame, index: bool = True) -> None:
        path = tables_dir / f"{name}{suffix}.csv"
        _csv(path, frame, index)
        written.add(path)

    for task, metrics in TABLE_METRICS.items():
        for metric in metrics:
            mean, std = pair_table(df, task, metric), pair_table(df, task, metric, "std")
            if not mean.empty:
                csv(f"{task}_{metric}", mean)
                csv(f"{task}_{metric}_std", std)
                seeds = int(pair_table(df, task, metric, "count").max().max())
                part.tables[(task, metric)] = (mean, std, seeds)
        part.versus[task] = versus_relu(df, task)
        if not part.versus[task].empty:
            csv(f"{task}_vs_relu", part.versus[task], index=False)
    part.base = baselines_table(df)
    csv("baselines", part.base)
    part.mesh = mesh_table(df)
    if not part.mesh.empty:
        csv("mesh", part.mesh, index=False)
    part.figures = _figures(df, sweep_dir, sweep_dir / "figures", part.tables, part.mesh, suffix)
    written.update(part.figures)
    part.exact = variant_table(df)
    if not part.exact.empty:
        csv("variants", part.exact, index=False)
    part.verdicts = claims(df)
    return part


def _figures(
    df: pd.DataFrame, sweep_dir: Path, fig_dir: Path, tables: dict, mesh: pd.DataFrame, suffix: str = ""
) -> list[Path]:
    """Draw the heatmaps, loss curves and mesh figure; the paths written, in the report's order."""
    from iatrun.report import figures as sweep_plots  # matplotlib: only when drawing

    figures = []
    for task in MAIN:
        key = (task, MAIN[task][0])
        if key in tables:
            path = fig_dir / plotstyle.figure_name(f"{task}_heatmap{suffix}")
            sweep_plots.heatmap(tables[key][0], paper.table(task), task, MAIN[task][1], path)
            figures.append(path)
        path = fig_dir / plotstyle.figure_name(f"{task}_curves{suffix}")
        if sweep_plots.curves(df, sweep_dir, task, MAIN[task], path):
            figures.append(path)
    if not mesh.empty:
        path = fig_dir / plotstyle.figure_name(f"mesh{suffix}")
        ok = df[(df["state"] == "done") & (df["status"] == "ok") & (df["model"] == "relu")]
        relu = {t: centre(ok[ok["task"] == t][MAIN[t][0]]) for t in MAIN if (ok["task"] == t).any()}
        sweep_plots.mesh(mesh, path, relu)
        figures.append(path)
    return figures


def _remove_stale(sweep_dir: Path, written: set) -> None:
    """Remove what an earlier report wrote and this one did not (another split, or none)."""
    stale = [p for d in ("tables", "figures") for p in (sweep_dir / d).iterdir() if OWN_FILES.match(p.name)]
    stale += [sweep_dir / STUDY, sweep_dir / BUDGET_CHECK]
    for path in stale:
        if path not in written and path.is_file():
            path.unlink()


# --- report.md ---------------------------------------------------------------------------------


def _csv(path: Path, frame: pd.DataFrame, index: bool = True) -> None:
    write_text(path, frame.to_csv(index=index))


def _report_md(sweep_dir, df, tables, base, mesh, verdicts, figures, variants=None, versus=None) -> str:
    """report.md: the sweep, the claims' verdicts, the tables beside the paper's, the figures."""
    lines = header_md(sweep_dir, df) + why_md(df, verdicts)
    lines += body_md(df, tables, base, mesh, verdicts, variants, versus=versus)
    bad = df[(df["state"] != "done") | (df["status"] != "ok")]
    if len(bad):
        lines += unfinished_md(bad)
    lines += figures_md(figures)
    return "\n".join(lines) + "\n"


def _split_report_md(sweep_dir: Path, df: pd.DataFrame, axes: list[str], parts: list[Part]) -> str:
    """report.md of a split sweep: the header, then one section per variant (its budget, claims,
    tables and figures), then the cells that did not finish ok, once."""
    every = [v for p in parts for v in p.verdicts]
    lines = header_md(sweep_dir, df) + split_md(df, axes, [p.variant for p in parts]) + why_md(df, every)
    for p in parts:
        lines += markdown.variant_md(p.variant, p.df)
        body = body_md(p.df, p.tables, p.base, p.mesh, p.verdicts, p.exact, p.variant.suffix(), p.versus)
        lines += demote(body + figures_md(p.figures))
    bad = df[(df["state"] != "done") | (df["status"] != "ok")]
    if len(bad):
        lines += unfinished_md(bad)
    return "\n".join(lines) + "\n"
