"""Sweep figures: heatmaps beside the paper's, loss curves of the best and worst pairs, mesh ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from iatrun.plots import save
from iatrun.results import read_curve
from iatrun.sweep.cells import cell_dir


def heatmap(ours: pd.DataFrame, theirs: pd.DataFrame, task: str, higher_better: bool, path: Path) -> None:
    """Paper and ours side by side on one colour scale (log10 for MSE)."""
    theirs = theirs.reindex(index=ours.index, columns=ours.columns)
    tr = (lambda v: v) if higher_better else (lambda v: np.log10(np.maximum(v, 1e-300)))
    a, b = tr(theirs.values.astype(float)), tr(ours.values.astype(float))
    both = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    vmin, vmax = (both.min(), both.max()) if both.size else (0, 1)
    cmap = colormaps["viridis" if higher_better else "viridis_r"]
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, vals, title in ((axes[0], a, "paper"), (axes[1], b, "iatrun")):
        im = ax.imshow(vals, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(ours.columns)), ours.columns, rotation=45)
        ax.set_yticks(range(len(ours.index)), ours.index)
        ax.set_xlabel("output basis")
        ax.set_ylabel("input basis")
        ax.set_title(f"{task}: {title}")
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                if np.isfinite(vals[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{vals[i, j]:.1f}" if higher_better else f"{vals[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="w",
                    )
    fig.colorbar(im, ax=axes, label="accuracy %" if higher_better else "log10 MSE")
    save(fig, path)


def curves(df: pd.DataFrame, sweep_dir: Path, task: str, main: tuple[str, bool], path: Path) -> bool:
    """Loss curves (first seed) of the two best and two worst IAT pairs and of relu."""
    metric, higher = main
    ok = df[(df["state"] == "done") & (df["status"] == "ok") & (df["task"] == task)]
    if ok.empty or metric not in ok:
        return False
    seed = ok["seed"].min()
    ok = ok[ok["seed"] == seed]
    iat = ok[ok["model"] == "iat"].sort_values(metric, ascending=not higher)
    picks = list(iat.head(2).itertuples()) + list(iat.tail(2).itertuples())
    picks += list(ok[ok["model"] == "relu"].itertuples())
    if not picks:
        return False
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    seen = set()
    for r in picks:
        if r.key in seen:
            continue
        seen.add(r.key)
        c = read_curve(cell_dir(sweep_dir, r.key))
        if c is None:
            continue
        label = "relu" if r.model == "relu" else f"{r.basis_in}/{r.basis_out}"
        ax.plot(c["step"], c["loss"], lw=1, label=f"{label} ({getattr(r, metric):.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{task}: best and worst pairs and relu (seed {int(seed)})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(fig, path)
    return True


def mesh(table: pd.DataFrame, path: Path) -> None:
    """Main metric (and region count where measured) against mesh ratio."""
    tasks = sorted(table["task"].unique())
    has_regions = "num_regions" in table and table["num_regions"].notna().any()
    ncols = len(tasks) + (1 if has_regions else 0)
    fig = Figure(figsize=(5 * ncols, 3.8))
    axes = fig.subplots(1, ncols, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = table[table["task"] == task]
        for pair, g in sub.groupby("pair"):
            g = g.sort_values("mesh_ratio")
            ax.errorbar(g["mesh_ratio"], g["mean"], yerr=g["std"].fillna(0), marker="o", lw=1, label=pair)
        ax.set_xscale("log", base=2)
        if sub["metric"].iloc[0].endswith("mse"):
            ax.set_yscale("log")
        ax.set_xlabel("mesh ratio r")
        ax.set_ylabel(sub["metric"].iloc[0])
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
