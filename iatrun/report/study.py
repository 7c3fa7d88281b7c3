"""study.md: the paper's eight claims under every variant of a split sweep (the protocol study).

A sweep that varies settings the paper leaves open (``model.norm``, ``model.wavelets``, the learning
rate, …) is split into variants (:mod:`iatrun.report.split`), and each variant's claims are tested
as in report.md (:func:`iatrun.report.claims.claims`). study.md sets them side by side:

* a header saying what the study rests on: grid, seeds, budget, the learning-rate protocol, the
  device(s) and the git commit(s) the cells recorded in their ``provenance.json`` and the commit(s)
  in sweep.yaml's ``provenance:`` block;
* one row per claim, one column per variant, each cell the verdict with its effect and 95 %
  interval, and a last column "holds under k of K": k variants where the claim holds, K those where
  it was tested (holds, fails or inconclusive, one-seed included); ``not tested: …`` variants are
  left out of K and counted beside it;
* per variant and task, the Spearman rank correlation of our 6×6 table with the paper's and with
  the paper's transposed (a diagnostic of rows and columns swapped), withheld below a full table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iatrun.report import paper
from iatrun.report.budget import budget_lines, lr_text, toy_tasks
from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.markdown import num, provenance, rests_on_md, split_md
from iatrun.report.scores import complete
from iatrun.report.stats import FAILS, HOLDS, INCONCLUSIVE, LEVEL, ONE_SEED, Verdict, not_tested
from iatrun.report.tables import spearman
from iatrun.sweep.cells import cell_dir
from iatrun.sweep.spec import read_spec

TESTED = (HOLDS, FAILS, INCONCLUSIVE, ONE_SEED)  # the verdicts K counts


def study_md(sweep_dir: Path, df: pd.DataFrame, axes: list[str], parts: list) -> str:
    """The study page; ``parts`` carry ``variant``, ``df``, ``tables`` and ``verdicts`` per variant."""
    lines = _header(sweep_dir, df, axes, parts)
    lines += _claims_table(parts)
    lines += _spearman_table(parts)
    return "\n".join(lines) + "\n"


# --- what the study rests on ---------------------------------------------------------------------


def _selection_seeds(sweep_dir: Path, df: pd.DataFrame) -> str:
    """``train.tune.seeds`` of a finished cell with ``train.lr: auto``, or '' if none is readable."""
    from iatrun.results import read_config

    ok = ok_cells(df)
    auto = ok[ok["lr"].astype(str) == "auto"] if not ok.empty and "lr" in ok else ok.iloc[:0]
    for key in auto.get("key", [])[:1]:
        try:
            return str(read_config(cell_dir(sweep_dir, key))["train"]["tune"]["seeds"])
        except (OSError, KeyError, TypeError, ValueError):
            return ""
    return ""


def _header(sweep_dir: Path, df: pd.DataFrame, axes: list[str], parts: list) -> list[str]:
    spec = read_spec(sweep_dir)
    ok = ok_cells(df)
    seeds = sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []
    prov = provenance(sweep_dir, df)
    selection = _selection_seeds(sweep_dir, df)
    overrides = " ".join(spec.get("overrides") or []) or "none"
    n_cells = int(df["task"].notna().sum()) if len(df) else 0
    tuned = f"; learning rates chosen on the selection seeds {selection}, never reported" if selection else ""
    lines = [
        f"# Protocol study: `{spec.get('grid')}`",
        "",
        f"{spec.get('description', '')}",
        "",
        "What the study rests on:",
        "",
        f"- grid `{spec.get('grid')}`, command-line overrides: {overrides}",
        f"- cells: {n_cells} ({len(ok)} ok); reported seeds: {seeds}{tuned}",
        *split_md(df, axes, [p.variant for p in parts], where="in report.md"),
        "- budget as run, per task (steps, width, depth, training points; learning rate; norm; wavelets):",
        *("  " + b for b in budget_lines(df)),
        *rests_on_md(spec, prov),
        "",
        "| variant | files | cells (ok) | seeds | learning rate (per setting where auto; `lr_at_edge`) |",
        "|---|---|---|---|---|",
    ]
    for p in parts:
        pok = ok_cells(p.df)
        pseeds = ", ".join(map(str, sorted(set(pok["seed"].dropna().astype(int))))) if not pok.empty else "—"
        lines.append(
            f"| {p.variant.label} | `*{p.variant.suffix()}.*` | {int(p.df['task'].notna().sum())} "
            f"({len(pok)}) | {pseeds} | {lr_text(pok) if not pok.empty else '—'} |"
        )
    return lines + _reading(len(seeds))


def _reading(n_seeds: int) -> list[str]:
    few = (
        "With one seed there is no interval at all: a tested claim reads `inconclusive (one seed)`."
        if n_seeds < 2
        else f"With {n_seeds} seeds the interval is wide unless the seeds agree closely, so most "
        "verdicts are expected to be inconclusive: that is the answer the data give, not a failure of "
        "the claim nor evidence for it."
    )
    return [
        "",
        f"How to read it: each verdict is a paired t test over the seeds (as in report.md); a claim "
        f"**holds** or **fails** only where the {LEVEL:.0%} interval of the per-seed effect lies wholly "
        f"on one side of zero, and is **inconclusive** where it straddles zero. {few} The variants are "
        f"tested separately, each at {LEVEL:.0%} confidence, with no correction for testing several: "
        "one `holds` among many variants can arise by chance, and a claim that holds under some "
        "variants and fails under others depends on the protocol.",
    ]


# --- the claims under every variant ------------------------------------------------------------


def _effect(v: Verdict) -> str:
    """``+3 [+2.1, +3.9] points``; '' without a finite effect."""
    if not np.isfinite(v.effect):
        return ""
    ci = f" [{num(v.ci_low)}, {num(v.ci_high)}]" if np.isfinite(v.ci_low) else ""
    return f"{num(v.effect)}{ci} {v.unit}".strip()


def verdict_cell(v: Verdict) -> str:
    """One claim under one variant: the verdict, its effect and interval (each part's, for a claim
    of parts); a verdict a toy budget withheld names what the numbers gave."""
    if not_tested(v.verdict) and not_tested(v.withheld):  # withheld for two reasons
        text = f"{v.verdict}, {v.withheld.removeprefix('not tested: ')}"
    elif not_tested(v.verdict):
        text = v.verdict + (f" (the numbers: {v.withheld})" if v.withheld else "")
    elif v.parts:
        per = [f"{p.claim}: {p.verdict} {_effect(p)}".strip() for p in v.parts]
        text = f"**{v.verdict}**<br>" + "<br>".join(per)
    else:
        text = f"**{v.verdict}** {_effect(v)}".strip()
    return text.replace("|", "\\|")


def tally(verdicts: list[Verdict]) -> str:
    """``holds under k of K`` (K: the variants where the claim was tested), with the untested count."""
    tested = [v for v in verdicts if v.verdict in TESTED]
    k, untested = sum(v.verdict == HOLDS for v in tested), len(verdicts) - len(tested)
    if not tested:
        return "not tested under any variant"
    return f"holds under {k} of {len(tested)}" + (f" ({untested} not tested)" if untested else "")


def _claims_table(parts: list) -> list[str]:
    labels = [p.variant.label for p in parts]
    lines = [
        "",
        "## The paper's claims under each variant",
        "",
        "Each cell: the verdict, then the effect (mean per-seed difference, in the claim's units, "
        f"positive favours the claim) and its {LEVEL:.0%} interval. The last column counts the variants "
        "where the claim holds among those where it was tested (holds, fails or inconclusive); variants "
        "where it was `not tested` are not in K.",
        "",
        "| claim | " + " | ".join(labels) + " | holds under k of K |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for i in range(min(len(p.verdicts) for p in parts)):
        row = [p.verdicts[i] for p in parts]
        cells = [row[0].claim.replace("|", "\\|"), *map(verdict_cell, row), tally(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- rank correlation with the paper -----------------------------------------------------------


def spearman_pair(mean: pd.DataFrame | None, task: str) -> tuple[float, float] | str:
    """(ρ with the paper's table, ρ with it transposed), or why they are withheld."""
    theirs = paper.table(task)
    if mean is None or mean.empty:
        return "withheld: no table"
    if not complete(mean, theirs.index, theirs.columns):
        sub = mean.reindex(index=theirs.index, columns=theirs.columns).to_numpy(dtype=float)
        return f"withheld: partial table ({int(np.isfinite(sub).sum())} of {theirs.size} cells)"
    return spearman(mean, theirs), spearman(mean, theirs.T)


def _spearman_table(parts: list) -> list[str]:
    lines = [
        "",
        "## Rank correlation with the paper's tables",
        "",
        "Spearman ρ of our 6×6 table (mean over seeds) with the paper's, and with the paper's table "
        "transposed (its rows as our columns): a diagnostic, not a claim — a ρ against the transpose "
        "well above the one against the paper would point to rows and columns swapped. Withheld unless "
        "our table has all 36 cells.",
        "",
        "| variant | task | ρ with the paper | ρ with the paper transposed |",
        "|---|---|---|---|",
    ]
    for p in parts:
        toy = toy_tasks(p.df)
        for task in MAIN:
            table = p.tables.get((task, MAIN[task][0]))
            res = spearman_pair(table[0] if table else None, task)
            if isinstance(res, str):
                cells = [res, res]
            else:
                note = " (toy budget)" if task in toy else ""
                cells = [("n/a" if not np.isfinite(r) else f"{r:.2f}") + note for r in res]
            lines.append(f"| {p.variant.label} | {task} | {cells[0]} | {cells[1]} |")
    return lines
