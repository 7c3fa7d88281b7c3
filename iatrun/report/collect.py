"""A sweep folder's cells as one table (cells.csv): state, the config values that vary, every metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from iatrun.results import read_config, read_metrics
from iatrun.sweep.cells import cell_dir, failed_config, key_state
from iatrun.sweep.spec import read_spec

# The headline metric of each task, as the paper reports it, and whether larger is better.
MAIN = {"fitting": ("heldout_mse", False), "memorization": ("accuracy_pct", True)}
BASELINE_COLUMN = {"fitting": "fitting_mse", "memorization": "memorization_accuracy_pct"}
CONFIG_COLUMNS = {
    "task": ("task", "name"),
    "model": ("model", "kind"),
    "basis_in": ("model", "basis_in"),
    "basis_out": ("model", "basis_out"),
    "mesh_ratio": ("model", "mesh_ratio"),
    "method": ("model", "method"),
    "width": ("model", "width"),
    "depth": ("model", "depth"),
    "norm": ("model", "norm"),
    "n_train": ("task", "n_train"),
    "n_points": ("task", "n_points"),
    "steps": ("train", "steps"),
    "lr": ("train", "lr"),
    "seed": ("seed",),
}
# config keys a column is kept for even when every cell has the same value (the tables' captions
# state them), under their dotted names
PROTOCOL_KEYS = ("model.wavelets",)


def _get(cfg: dict, path: tuple) -> object:
    for p in path:
        if not isinstance(cfg, dict) or p not in cfg:
            return None
        cfg = cfg[p]
    return cfg


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            # a list as JSON text; a null as "null", so that a cell that has the key apart from one
            # that lacks it (NaN) shows in the column (the report's split tells the two apart)
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) or v is None else v
    return out


def _cell_row(sweep_dir: Path, key: str, digest: str) -> tuple[dict, dict]:
    """One cell's row and its full config (empty when the cell never recorded one)."""
    state, detail = key_state(sweep_dir, key, digest)
    folder = cell_dir(sweep_dir, key)
    row: dict = {"key": key, "state": state}
    cfg, metrics = {}, {}
    if state == "done":
        cfg, metrics = read_config(folder), read_metrics(folder)
    else:
        row["error"] = detail
        if state == "failed":
            cfg = failed_config(sweep_dir, key)
    for col, path in CONFIG_COLUMNS.items():
        row[col] = _get(cfg, path)
    if row["model"] not in (None, "iat", "decoupled"):
        row["basis_in"] = row["basis_out"] = row["mesh_ratio"] = row["method"] = None
    row["status"] = metrics.get("status", "failed" if state == "failed" else None)
    for k, v in metrics.items():
        if k != "status":
            row[k] = np.nan if v is None else v
    if metrics.get("train_accuracy") is not None:
        row["accuracy_pct"] = 100.0 * metrics["train_accuracy"]
    return row, cfg


def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per cell: state, the config values that matter and vary, and every metric."""
    sweep_dir = Path(sweep_dir)
    rows, flats = [], []
    for key, digest in read_spec(sweep_dir)["cells"].items():
        row, cfg = _cell_row(sweep_dir, key, digest)
        rows.append(row)
        flats.append(_flatten(cfg))
    df = pd.DataFrame(rows)
    for col in ("mesh_ratio", "width", "depth", "steps", "seed", "n_train", "n_points"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    # every other config value that varies across the cells gets a column too (and the protocol keys)
    flat = pd.DataFrame(flats)
    known = {".".join(p) for p in CONFIG_COLUMNS.values()} | {"out"}
    for col in flat.columns:
        if col not in known and (col in PROTOCOL_KEYS or flat[col].astype(str).nunique() > 1):
            df[col] = flat[col]
    return df


def ok_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The cells that finished with status ok."""
    return df[(df["state"] == "done") & (df["status"] == "ok")] if len(df) else df


def region_columns(df: pd.DataFrame, sweep_dir: str | Path) -> pd.DataFrame:
    """Region count and exact Lipschitz constant of each finished fitting cell (1-D input): read from
    its metrics, or for a cell finished before they were recorded there, computed from its model."""
    from iatrun.analysis.regions import summarize
    from iatrun.results import load_run

    if not len(df):
        return df
    have = df["num_regions"].notna() if "num_regions" in df else pd.Series(False, index=df.index)
    for i, row in df.iterrows():
        if have[i]:  # computed when the cell finished (iatrun.sweep.cells.region_metrics)
            continue
        if row["state"] == "done" and row["status"] == "ok" and row["task"] == "fitting":
            try:
                run = load_run(cell_dir(sweep_dir, row["key"]))
                s = summarize(run.model.double())
            except Exception:  # a network regions cannot analyse (tanh, norms): leave blank
                continue
            df.loc[i, "num_regions"] = s["num_regions"]
            df.loc[i, "lipschitz"] = s["lipschitz"]
    return df
