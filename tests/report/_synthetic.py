"""Hand-made sweep cells for the report tests: a paper-like 6×6 sweep, a mesh-ratio sweep, IAT variants."""

import numpy as np
import pandas as pd

from iatrun.nn.bases import BASES
from iatrun.report.budget import POINTS, calibrated

BASES6 = BASES.names()[:6]


def budget(task, **change):
    """The budget columns of a cell of ``task``: the calibrated budget, with ``change`` applied
    (steps, width, depth, points), and the default lr and norm."""
    b = {**calibrated(task), **change}
    return {
        "steps": b["steps"],
        "width": b["width"],
        "depth": b["depth"],
        POINTS[task]: b["points"],
        "lr": 3e-3,
        "norm": "gain",
    }


def cells(
    acc,
    mse,
    seeds=(0, 1, 2),
    relu=(90.0, 1e-3),
    tanh=(85.0, 4e-6),
    sigmoid=(84.0, 3e-6),
    jitter=0.0,
    bases=BASES6,
    **change,
):
    """A synthetic sweep: acc(bi, bo, seed) and mse(bi, bo, seed) give each IAT cell's result; every
    cell at the calibrated budget unless ``change`` lowers it (``steps=60``)."""
    rng = np.random.default_rng(0)
    mem, fit = budget("memorization", **change), budget("fitting", **change)
    rows = []
    for s in seeds:
        for bi in bases:
            for bo in bases:
                common = dict(
                    state="done",
                    status="ok",
                    model="iat",
                    basis_in=bi,
                    basis_out=bo,
                    mesh_ratio=4,
                    method=None,
                    seed=s,
                    loss_jumps=1,
                    loss_jump_total=0.1,
                )
                rows.append(
                    dict(
                        common,
                        **mem,
                        key=f"m/{bi}-{bo}/{s}",
                        task="memorization",
                        accuracy_pct=acc(bi, bo, s) + jitter * rng.normal(),
                    )
                )
                rows.append(
                    dict(common, **fit, key=f"f/{bi}-{bo}/{s}", task="fitting", heldout_mse=mse(bi, bo, s))
                )
        for name, (a, m) in (("relu", relu), ("tanh", tanh), ("sigmoid", sigmoid)):
            common = dict(
                state="done", status="ok", model=name, seed=s, loss_jumps=5, loss_jump_total=2.0 + s
            )
            rows.append(dict(common, **mem, key=f"m/{name}/{s}", task="memorization", accuracy_pct=a))
            rows.append(dict(common, **fit, key=f"f/{name}/{s}", task="fitting", heldout_mse=m))
    return pd.DataFrame(rows)


def mesh_sweep() -> pd.DataFrame:
    """pwq/pwq at mesh ratios 1–16, three seeds: fitting improves with r, memorisation barely."""
    rows = []
    for s in (0, 1, 2):
        for r in (1, 2, 4, 8, 16):
            base = dict(state="done", status="ok", model="iat", basis_in="pwq", basis_out="pwq")
            base.update(mesh_ratio=r, seed=s)
            fit, mem = dict(base, **budget("fitting")), dict(base, **budget("memorization"))
            rows.append(dict(fit, key=f"f{r}{s}", task="fitting", heldout_mse=1e-3 / r * (1 + 0.01 * s)))
            rows.append(dict(mem, key=f"m{r}{s}", task="memorization", accuracy_pct=90 + 0.1 * r))
    return pd.DataFrame(rows)


def variant_sweep() -> pd.DataFrame:
    """Two pairs fitted by iat-mesh (1e-2), iat-exact (5e-3) and decoupled-exact (8e-3), three seeds."""
    rows = []
    for s in (0, 1, 2):
        for bi in ("pwl", "fourier"):
            for model, method, mse in (
                ("iat", "mesh", 1e-2),
                ("iat", "exact", 5e-3),
                ("decoupled", "exact", 8e-3),
            ):
                rows.append(
                    dict(
                        key=f"{model}{method}{bi}{s}",
                        state="done",
                        status="ok",
                        task="fitting",
                        model=model,
                        method=method,
                        basis_in=bi,
                        basis_out="pwq",
                        mesh_ratio=4,
                        seed=s,
                        heldout_mse=mse * (1 + 0.05 * s),
                        **budget("fitting"),
                    )
                )
    return pd.DataFrame(rows)


def variants(column, values, accs, mses=None, **kw):
    """One synthetic sweep per value of ``column`` (the i-th from ``accs[i]`` and ``mses[i]``), stacked
    into one: every cell gets ``column = values[i]`` and a key of its own."""
    mses = mses or [lambda bi, bo, s: 1e-3] * len(values)
    parts = []
    for value, acc, mse in zip(values, accs, mses):
        df = cells(acc, mse, **kw)
        df[column] = value
        df["key"] = df["key"] + f"/{value}"
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def sweep_folder(path, df, monkeypatch, figures=False, spec=None):
    """A sweep folder whose cells are ``df``: sweep.yaml written, and build's collect (and region
    columns) patched to return ``df``; figures are drawn only when asked (they take seconds)."""
    import yaml

    from iatrun.report import build

    path.mkdir(parents=True, exist_ok=True)
    base = {"grid": "synthetic", "description": "hand-made", "overrides": [], "cells": {}}
    (path / "sweep.yaml").write_text(yaml.safe_dump({**base, **(spec or {})}))
    monkeypatch.setattr(build, "collect", lambda d: df.copy())
    monkeypatch.setattr(build, "region_columns", lambda d, s: d)
    if not figures:
        monkeypatch.setattr(build, "_figures", lambda *a, **k: [])
    return path
