"""Sweep figures: heatmaps beside the paper's, loss curves of the best and worst pairs, mesh ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from iatrun.plots import save
from iatrun.plotstyle import current
from iatrun.results import read_curve
from iatrun.sweep.cells import cell_dir


def _ink(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba`` (its relative luminance)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.4 else "white"


def heatmap(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    task: str,
    higher_better: bool,
    path: Path,
    shared: bool | None = None,
) -> None:
    """Paper and ours side by side (log10 for MSE), each on its own colour scale (``shared``: one
    scale for both, which flattens a table whose values sit decades from the other's; default: the
    current style's ``heatmap_scale``)."""
    from matplotlib.colors import Normalize

    if shared is None:
        shared = current().heatmap_scale == "shared"

    theirs = theirs.reindex(index=ours.index, columns=ours.columns)
    tr = (lambda v: v) if higher_better else (lambda v: np.log10(np.maximum(v, 1e-300)))
    a, b = tr(theirs.values.astype(float)), tr(ours.values.astype(float))

    def span(*arrays) -> Normalize:
        vals = np.concatenate([x[np.isfinite(x)] for x in arrays])
        return Normalize(*(vals.min(), vals.max()) if vals.size else (0, 1))

    cmap = colormaps["viridis" if higher_better else "viridis_r"]
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    label = "accuracy %" if higher_better else "log10 MSE"
    for ax, vals, title in ((axes[0], a, "paper"), (axes[1], b, "iatrun")):
        norm = span(a, b) if shared else span(vals)
        im = ax.imshow(vals, cmap=cmap, norm=norm)
        ax.set_xticks(range(len(ours.columns)), ours.columns, rotation=45)
        ax.set_yticks(range(len(ours.index)), ours.index)
        ax.set_xlabel("output basis ψ")
        ax.set_ylabel("input basis φ")
        ax.set_title(f"{task}: {title}" + ("" if higher_better else " (lower is better)"))
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    text = f"{vals[i, j]:.1f}" if higher_better else f"{vals[i, j]:.2f}"
                    ink = _ink(cmap(norm(vals[i, j])))
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color=ink)
        if not shared:
            fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    if shared:
        fig.colorbar(im, ax=axes, label=label)
    save(fig, path)


def curves(df: pd.DataFrame, sweep_dir: Path, task: str, main: tuple[str, bool], path: Path) -> bool:
    """Loss curves of the two best and two worst IAT pairs (by the mean over seeds) and of relu:
    one line per seed, one colour per model, its mean metric in the legend."""
    from matplotlib.ticker import FuncFormatter

    metric, higher = main
    ok = df[(df["state"] == "done") & (df["status"] == "ok") & (df["task"] == task)]
    if ok.empty or metric not in ok:
        return False
    ok = ok.assign(model_key=ok["key"].str.rsplit("/", n=1).str[0])
    means = ok.groupby("model_key")[metric].mean()
    iat = ok[ok["model"] == "iat"].groupby("model_key")[metric].mean().sort_values(ascending=not higher)
    picks = list(dict.fromkeys([*iat.index[:2], *iat.index[-2:], *ok[ok["model"] == "relu"]["model_key"]]))
    if not picks:
        return False
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    name = {"heldout_mse": "held-out MSE", "accuracy_pct": "accuracy"}.get(metric, metric)

    def shown(v: float) -> str:
        return f"{v:.1f} %" if metric == "accuracy_pct" else f"{v:.3g}"

    drawn = 0
    for colour, pick in enumerate(picks):
        rows = ok[ok["model_key"] == pick].sort_values("seed")
        first = rows.iloc[0]
        label = "relu" if first["model"] == "relu" else f"{first['basis_in']} → {first['basis_out']}"
        label = f"{label}: {name} {shown(means[pick])} (mean of {len(rows)} seed{'s' * (len(rows) > 1)})"
        for r in rows.itertuples():
            c = read_curve(cell_dir(sweep_dir, r.key))
            if c is not None:
                ls = "--" if first["model"] == "relu" else "-"
                ax.plot(c["step"], c["loss"], lw=0.8, ls=ls, color=f"C{colour}", label=label)
                label, drawn = None, drawn + 1  # one legend entry per model, on its first curve
    if not drawn:
        return False  # no cell kept its curve: no figure
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{task}: the best and worst pairs and relu, every seed", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path)
    return True


def mesh(table: pd.DataFrame, path: Path, relu: dict[str, float] | None = None) -> None:
    """Main metric (and region count where measured) against mesh ratio, each point the centre of
    :func:`~iatrun.report.tables.mesh_table` with its 95 % interval; ``relu``: ReLU's centre per task
    (on the same scale), drawn as a reference line."""
    tasks = sorted(table["task"].unique())
    has_regions = "num_regions" in table and table["num_regions"].notna().any()
    ncols = len(tasks) + (1 if has_regions else 0)
    fig = Figure(figsize=(5 * ncols, 3.8))
    axes = fig.subplots(1, ncols, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = table[table["task"] == task]
        for pair, g in sub.groupby("pair"):
            g = g.sort_values("mesh_ratio")
            low = (g["centre"] - g["ci_low"]).fillna(0)
            high = (g["ci_high"] - g["centre"]).fillna(0)
            ax.errorbar(
                g["mesh_ratio"], g["centre"], yerr=[low, high], marker="o", lw=1, capsize=2, label=pair
            )
        if relu and task in relu:
            ax.axhline(relu[task], color="gray", ls="--", lw=1, label=f"relu ({relu[task]:.3g})")
        ax.set_xscale("log", base=2)
        if sub["metric"].iloc[0].endswith("mse"):
            ax.set_yscale("log")
        ax.set_xlabel("mesh ratio r")
        centre = "geometric mean" if sub["scale"].iloc[0] == "log10" else "mean"
        ax.set_ylabel(f"{sub['metric'].iloc[0]} ({centre}, 95 % t interval over seeds)")
        ax.set_title(task)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if has_regions:
        ax = axes[0][-1]
        sub = table[(table["task"] == "fitting") & table["num_regions"].notna()]
        for pair, g in sub.groupby("pair"):
            g = g.sort_values("mesh_ratio")
            ax.plot(g["mesh_ratio"], g["num_regions"], marker="o", lw=1, label=pair)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("mesh ratio r")
        ax.set_ylabel("linear regions on [-1, 1]")
        ax.set_title("fitting: number of linear pieces")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    save(fig, path)
