"""report.md's pieces: markdown tables, the verdict rows, the header, the per-task sections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from iatrun.plotstyle import current
from iatrun.report import paper
from iatrun.report.budget import budget_lines, protocol, toy_tasks
from iatrun.report.claims import Verdict, variant_verdicts
from iatrun.report.collect import MAIN, ok_cells
from iatrun.report.scores import complete, seed_list
from iatrun.report.stats import LEVEL, not_tested
from iatrun.report.tables import iat_cells, main_mesh_ratio, spearman
from iatrun.report.versus import versus_md
from iatrun.sweep.cells import DONE, cell_dir
from iatrun.sweep.spec import read_spec


def md_table(frame: pd.DataFrame, fmt: Callable[[float], str]) -> str:
    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.values]) + " |")
    return "\n".join(lines)


def fmt_metric(task: str) -> Callable[[float], str]:
    if MAIN[task][1]:
        return lambda v: "—" if pd.isna(v) else f"{v:.1f}"
    return lambda v: "—" if pd.isna(v) else f"{v:.2e}"


def fmt_mixed(v) -> str:
    """Strings as they are, numbers to 3 significant digits."""
    return v if isinstance(v, str) else ("—" if pd.isna(v) else f"{v:.3g}")


VERDICT_HEADER = [
    f"| claim | statistic | ours | effect (mean) | {LEVEL:.0%} CI | p | n seeds | verdict |",
    "|---|---|---|---|---|---|---|---|",
]


def num(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def stat_cells(v: Verdict) -> list[str]:
    """effect (with its unit), CI, p and n of one tested part."""
    effect = f"{num(v.effect)} {v.unit}".strip() if np.isfinite(v.effect) else "n/a"
    ci = f"[{num(v.ci_low)}, {num(v.ci_high)}]" if np.isfinite(v.ci_low) else "n/a"
    p = "n/a" if not np.isfinite(v.p) else "< 0.0001" if v.p < 1e-4 else f"{v.p:.2g}"
    return [effect, ci, p, str(v.n)]


def verdict_row(v: Verdict) -> str:
    """One claim: a claim with parts shows each part's numbers on its own line in the cell."""
    if v.parts:
        per = [[f"{p.claim}: {c}" for c in stat_cells(p)] for p in v.parts]
        cells = ["<br>".join(col) for col in zip(*per)]
    else:
        cells = stat_cells(v)
    verdict = f"**{v.verdict}**"
    if v.parts and not not_tested(v.verdict):
        verdict += " (" + "; ".join(f"{p.claim}: {p.verdict}" for p in v.parts) + ")"
    cells = [c.replace("|", "\\|") for c in (v.claim, v.statistic, v.ours, *cells)]
    return "| " + " | ".join([*cells, verdict]) + " |"


def verdict_rows(verdicts: list[Verdict]) -> list[str]:
    return [verdict_row(v) for v in verdicts]


def count_text(counter: Counter, what: str) -> str:
    """``x (all 12 cells)`` or ``x (10 cells), y (2 cells)``."""
    if not counter:
        return f"not recorded (no {what} in the cells' provenance.json)"
    total = sum(counter.values())
    if len(counter) == 1:
        (value,) = counter
        return f"{value} (all {total} cells)"
    return ", ".join(f"{v} ({n} cells)" for v, n in counter.most_common())


def provenance(sweep_dir: Path, df: pd.DataFrame) -> dict[str, Counter]:
    """Device, dtype and git commit (``dirty`` marked) over the finished cells' provenance.json, and
    the sweep folders cells were copied from (``iatrun sweep --reuse``, their done.json)."""
    from iatrun.files import read_json
    from iatrun.results import read_provenance

    out = {"device": Counter(), "dtype": Counter(), "commit": Counter(), "reused": Counter()}
    done = df[df["state"] == "done"] if len(df) else df
    for key in done.get("key", []):
        prov = read_provenance(cell_dir(sweep_dir, key))
        if prov.get("device"):
            name = f" ({prov['device_name']})" if prov.get("device_name") else ""
            out["device"][f"{prov['device']}{name}"] += 1
        if prov.get("dtype"):
            out["dtype"][str(prov["dtype"])] += 1
        if prov.get("commit"):
            dirty = " (tree dirty)" if prov.get("dirty") else ""
            out["commit"][f"`{str(prov['commit'])[:12]}`{dirty}"] += 1
        try:
            source = read_json(cell_dir(sweep_dir, key) / DONE).get("reused_from")
        except (OSError, ValueError):
            source = None
        if source:
            out["reused"][f"`{source}`"] += 1
    return out


def sweep_commits(spec: dict) -> str:
    """The commits in sweep.yaml's provenance block: the run that made the folder, then resumes."""
    block = spec.get("provenance") or {}
    runs = [block, *(block.get("resumed") or [])] if isinstance(block, dict) else []
    commits = [f"`{str(r['commit'])[:12]}`" for r in runs if isinstance(r, dict) and r.get("commit")]
    if not commits:
        return "none recorded"
    return f"made at {commits[0]}" + (f", resumed at {', '.join(commits[1:])}" if commits[1:] else "")


def rests_on_md(spec: dict, prov: dict[str, Counter]) -> list[str]:
    """The header lines on where the cells ran: device, dtype, commits, and cells copied in."""
    lines = [
        f"- device: {count_text(prov['device'], 'device')}; dtype: {count_text(prov['dtype'], 'dtype')}",
        f"- git commit of the cells: {count_text(prov['commit'], 'commit')}; "
        f"sweep.yaml: {sweep_commits(spec)}",
    ]
    if prov["reused"]:
        copied = ", ".join(f"{n} from {src}" for src, n in prov["reused"].most_common())
        lines.append(
            f"- cells copied, not trained here (`--reuse`; provenance the source's): {copied} "
            "(folders relative to this one)"
        )
    return lines


def header_md(sweep_dir: Path, df: pd.DataFrame) -> list[str]:
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
        *rests_on_md(spec, provenance(sweep_dir, df)),
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
    "not tested: rates differ": "rect/rect and relu trained at different learning rates: each "
    "setting's rate was tuned on its own, and on one selection seed the tuner can pick different "
    "rates for what is one network. Claim 1 asks whether the two are the same network, which only "
    "a comparison at the same rate tests (a sweep at a fixed `train.lr`, or the protocol study).",
}


def why_md(df: pd.DataFrame, verdicts: list[Verdict]) -> list[str]:
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
        "it straddles zero (see docs/sweeps.md).",
    ]
    if found:
        lines += ["", "**Why verdicts are missing:**", ""]
        for verdict, numbers in found.items():
            which = f"claim{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
            lines.append(f"- `{verdict}` ({which}): " + WHY[verdict].format(toy=toy))
    return lines


def task_md(
    task: str, mean: pd.DataFrame, std: pd.DataFrame, seeds: int, toy: bool = False, caption: str = ""
) -> list[str]:
    """Paper's table, ours (mean and std over seeds) and their rank correlation (complete tables only);
    ``caption`` (:func:`mean_caption`) replaces the bare "mean over n seeds"."""
    theirs = paper.table(task)
    unit = "training accuracy, %" if MAIN[task][1] else "held-out MSE"
    if complete(mean, theirs.index, theirs.columns):
        rho = spearman(mean, theirs)
        corr = f"**{rho:.2f}**" if np.isfinite(rho) else "n/a"
        corr += " (at a toy budget: see the header)" if toy else ""
    else:
        corr = "n/a: partial table (our table lacks some of the paper's 6×6 cells)"
    std_md = md_table(std, fmt_metric(task)) if seeds > 1 else "n/a (one seed)"
    return [
        "",
        f"## {task} ({unit})",
        "",
        f"Spearman rank correlation with the paper's table: {corr}",
        "",
        "Paper:",
        "",
        md_table(theirs, fmt_metric(task)),
        "",
        f"Ours ({caption or f'mean over {seeds} seed' + ('s' if seeds != 1 else '')}):",
        "",
        md_table(mean, fmt_metric(task)),
        "",
        "Ours (std over seeds):",
        "",
        std_md,
    ]


def mean_caption(df: pd.DataFrame, task: str) -> str:
    """What a 6×6 table's cells rest on: ``mean over 3 seeds (seeds 0, 1, 2); steps 4000, …``."""
    cells = iat_cells(df)
    cells = cells[cells["task"] == task] if not cells.empty else cells
    if cells.empty:
        return ""
    counts = cells.groupby(["basis_in", "basis_out"]).size()
    lo, hi = int(counts.min()), int(counts.max())
    n = f"{hi} seed{'s' if hi != 1 else ''}" if lo == hi else f"{lo} to {hi} seeds per cell"
    seeds = ", ".join(map(str, sorted(set(cells["seed"].astype(int)))))
    return f"mean over {n}: {seeds}; {protocol(cells, task)}"


def _baseline_cells(df: pd.DataFrame, task: str) -> pd.DataFrame:
    ok = ok_cells(df)
    return ok[(ok["task"] == task) & ok["model"].isin(["relu", "tanh", "sigmoid"])] if not ok.empty else ok


def baselines_md(base: pd.DataFrame, df: pd.DataFrame | None = None) -> list[str]:
    """The paper's scalar baselines and ours; with ``df``, a line saying what ours ran at."""
    std = base[[c for c in base.columns if str(c).endswith("_std")]]
    run = []
    for task in MAIN if df is not None else ():
        cells = _baseline_cells(df, task)
        if not cells.empty:
            seeds = seed_list(sorted(set(cells["seed"].astype(int))))
            run.append(f"{task}: {seeds}; {protocol(cells, task)}")
    return [
        "",
        "## Scalar baselines",
        "",
        "Paper:",
        "",
        md_table(paper.baselines(), lambda v: f"{v:.3g}"),
        "",
        "Ours:" if std.notna().any().any() else "Ours (std: n/a, one seed):",
        "",
        md_table(base if std.notna().any().any() else base.drop(columns=std.columns), fmt_mixed),
        *(["", "As run (mean over seeds) — " + " · ".join(run) + "."] if run else []),
    ]


def exact_md(df: pd.DataFrame, variants: pd.DataFrame) -> list[str]:
    lines = [
        "",
        "## Exact and decoupled IAT-ReLU (fitting, held-out MSE)",
        "",
        md_table(variants.set_index("pair"), fmt_mixed),
        "",
        *VERDICT_HEADER,
    ]
    return lines + verdict_rows(variant_verdicts(df))


def unfinished_md(bad: pd.DataFrame) -> list[str]:
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


def body_md(df, tables, base, mesh, verdicts, variants=None, suffix: str = "", versus=None) -> list[str]:
    """The claims, the task tables beside the paper's and each pair against relu, the baselines,
    the mesh and exact tables; ``suffix``: the variant's, in the names of its table files;
    ``versus``: task → its :func:`versus_relu` frame, as written to tables/."""
    lines = ["", "## The paper's claims (SPEC §6)", "", *VERDICT_HEADER, *verdict_rows(verdicts)]
    for task in MAIN:
        if (task, MAIN[task][0]) in tables:
            mean, std, seeds = tables[(task, MAIN[task][0])]
            toy = task in toy_tasks(df)
            lines += task_md(task, mean, std, seeds, toy, caption=mean_caption(df, task))
            lines += versus_md(df, task, f"tables/{task}_vs_relu{suffix}.csv", (versus or {}).get(task))
    if not base.empty:
        lines += baselines_md(base, df)
    if not mesh.empty:
        lines += ["", "## Mesh ratio", "", md_table(mesh.set_index("task"), fmt_mixed)]
    if variants is not None and not variants.empty:
        lines += exact_md(df, variants)
    return lines


def figures_md(figures: list[Path]) -> list[str]:
    """The figures as images (a PDF, which a Markdown viewer does not show inline, as a link)."""
    if not figures:
        return []
    return ["", "## Figures", ""] + [
        f"- [{p.stem}](figures/{p.name})" if p.suffix == ".pdf" else f"![{p.stem}](figures/{p.name})"
        for p in figures
    ]


def demote(lines: list[str]) -> list[str]:
    """Section headings one level down (a variant's sections sit under its own heading)."""
    return ["#" + line if line.startswith("## ") else line for line in lines]


def split_md(df: pd.DataFrame, axes: list[str], variants: list, where: str = "below") -> list[str]:
    """The header's account of a split: the extra axes, their values, which cells are shared;
    ``where`` the variants' sections are ("below", "in report.md")."""
    from iatrun.report.split import key_of, value_label

    cells = df[df["task"].notna()] if "task" in df else df
    values = [
        f"`{key_of(a)}` ({', '.join(sorted({value_label(v) for v in cells[a].dropna()}))})" for a in axes
    ]
    shared = [
        f"the {', '.join(sorted(set(cells.loc[cells[a].isna(), 'model'].dropna().astype(str))))} cells "
        f"lack `{key_of(a)}`"
        for a in axes
        if cells[a].isna().any()
    ]
    lines = [
        f"- **one section per variant**: beyond the tables' axes the cells vary {' and '.join(values)}; "
        f"a table cell holds one setting, so the report is split into {len(variants)} variants ({where}), "
        "each with its own tables (`tables/<table>__<variant>.csv`), figures "
        f"(`figures/<figure>__<variant>.{current().format}`) and claims; `study.md` sets the claims' "
        "verdicts side by side"
    ]
    if shared:
        lines.append(
            f"- cells that lack an axis are shared by every variant that agrees with them on the axes "
            f"they have: {'; '.join(shared)}"
        )
    return lines


def variant_md(variant, df: pd.DataFrame) -> list[str]:
    """A variant's heading, its cells and seeds, and its budget as run."""
    ok = ok_cells(df)
    seeds = sorted(set(ok["seed"].dropna().astype(int))) if not ok.empty else []
    lines = [
        "",
        f"## Variant {variant.label}",
        "",
        f"- files: `tables/*{variant.suffix()}.csv`, `figures/*{variant.suffix()}.{current().format}`",
        f"- cells: {int(df['task'].notna().sum())} ({int(ok.shape[0])} ok), seeds: {seeds}",
    ]
    budget = budget_lines(df)
    if budget:
        lines += ["- budget as run, per task:"] + ["  " + b for b in budget]
    return lines
