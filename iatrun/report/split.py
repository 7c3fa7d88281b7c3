"""A table cell is one setting: the config axes a sweep varies beyond its tables, and the variants
they split the report into.

The report's tables have axes of their own: task, model kind, input and output basis and seed (the
mesh-ratio table adds ``model.mesh_ratio``, the exact/decoupled table ``model.method``). Any other
config key that takes two or more values among cells of the same task, model, basis pair, mesh ratio
and method is an **extra axis** (``train.lr=1e-3,3e-3``, ``model.norm``, ``model.wavelets``, a
budget key): averaging over it would put several settings into one table cell, so the report is
split into **variants**, one per combination of the extra axes' values that some cell has in full.

A cell belongs to every variant that agrees with it on the extra axes it has: a key a cell does not
have (``model.wavelets`` of a relu baseline) does not exclude it, so the baselines are shared by the
variants that agree with them on the rest (a cell that lacks an axis and agrees with no such
variant opens one per value of the axes it lacks). Keys that are constant, or that change only with
the table's own axes (the per-task budget), are not axes; neither are metrics (``lr_chosen``).

A variant's name, used in file names, is ``<axis>-<value>`` per extra axis joined by ``_``, in the
order of the axes' config keys; the axis is the key's last part (``model.norm`` → ``norm``, the
full key where two last parts would collide); a value character other than a letter, digit, ``.``,
``+``, ``-`` or ``_`` becomes ``~`` and its two hex digits. A split that cannot be reported sensibly
is refused with one :class:`~iatrun.errors.IatrunError` line before anything is written.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from iatrun.errors import IatrunError
from iatrun.report.collect import CONFIG_COLUMNS

# the tables' own axes beside the seed: a key varying within one such group is an extra axis
GROUP = ("task", "model", "basis_in", "basis_out", "mesh_ratio", "method")
NOT_AXES = {"out", "results_dir", "artifacts"}  # where a run was written and what it kept, not how it ran
MAX_VARIANTS = 12  # more are refused: no one reads more sections side by side
MAX_NAME = 160  # characters of a variant's name (file names stay well under 255 bytes)


@dataclass(frozen=True)
class Variant:
    """One combination of the extra axes' values: ((config key, short name, value label), ...)."""

    values: tuple[tuple[str, str, str], ...]

    @property
    def label(self) -> str:
        """For people: ``norm=layer, wavelets=dyadic``."""
        return ", ".join(f"{short}={value}" for _, short, value in self.values)

    @property
    def name(self) -> str:
        """For file names: ``norm-layer_wavelets-dyadic``."""
        return "_".join(f"{short}-{_safe(value)}" for _, short, value in self.values)

    def suffix(self) -> str:
        """What a file name gets before its extension: ``__<name>``."""
        return f"__{self.name}"


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", lambda m: f"~{ord(m.group()):02x}", value) or "~"


def value_label(v) -> str | None:
    """A config value as text, None where the cell lacks the key (None or NaN)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return str(int(v)) if float(v).is_integer() else format(float(v), ".12g")
    return str(v)


def key_of(column: str) -> str:
    """The config key behind a cells.csv column (``lr`` → ``train.lr``)."""
    return ".".join(CONFIG_COLUMNS[column]) if column in CONFIG_COLUMNS else column


def candidates(df: pd.DataFrame) -> list[str]:
    """The columns that hold config values other than the tables' own axes."""
    short = [c for c in CONFIG_COLUMNS if c not in (*GROUP, "seed") and c in df]
    dotted = [c for c in df.columns if isinstance(c, str) and "." in c and c not in NOT_AXES]
    return short + dotted


def _configured(df: pd.DataFrame) -> pd.DataFrame:
    """The cells that recorded a config (a cell that never ran has no task)."""
    return df[df["task"].notna()] if len(df) and "task" in df else df.iloc[:0]


def _labels(df: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({a: df[a].map(value_label) for a in axes}, index=df.index, dtype=object)


def extra_axes(df: pd.DataFrame) -> list[str]:
    """The columns whose values differ among cells of the same task, model, pair, ratio and method,
    in the order of their config keys."""
    cells = _configured(df)
    if cells.empty:
        return []
    group = [cells[g].map(lambda v: value_label(v) or "") for g in GROUP if g in cells]
    axes = []
    for col in candidates(cells):
        labels = cells[col].map(value_label)
        if labels.groupby(group, dropna=False).nunique().max() > 1:
            axes.append(col)
    return sorted(axes, key=key_of)


def _short_names(axes: list[str]) -> dict[str, str]:
    last = {a: key_of(a).rsplit(".", 1)[-1] for a in axes}
    counts = pd.Series(list(last.values())).value_counts()
    return {a: (s if counts[s] == 1 else key_of(a)) for a, s in last.items()}


def _order(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _combinations(labels: pd.DataFrame) -> list[tuple]:
    """The full value tuples the cells have, and for a cell that lacks axes and agrees with none of
    them, one per value of the axes it lacks."""
    full = {tuple(r) for r in labels.dropna().itertuples(index=False)}
    seen = {a: sorted(set(labels[a].dropna()), key=_order) for a in labels.columns}
    out = set(full)
    for r in labels[labels.isna().any(axis=1)].drop_duplicates().itertuples(index=False):
        if not any(_agrees(r, f) for f in full):
            out |= set(itertools.product(*(seen[a] if pd.isna(v) else [v] for a, v in zip(labels, r))))
    return sorted(out, key=lambda t: tuple(_order(v) for v in t))


def _agrees(row, values) -> bool:
    return all(pd.isna(x) or x == v for x, v in zip(row, values))


def members(df: pd.DataFrame, axes: list[str], variant: Variant) -> pd.Series:
    """Which cells belong to ``variant``: those that agree with it on every axis they have."""
    labels = _labels(df, axes)
    keep = pd.Series(True, index=df.index)
    for a, (_, _, value) in zip(axes, variant.values):
        keep &= labels[a].isna() | (labels[a] == value)
    return keep


def _describe(labels: pd.DataFrame) -> str:
    return ", ".join(f"{key_of(a)} ({labels[a].nunique()} values)" for a in labels.columns)


def _check_tables(df: pd.DataFrame, axes: list[str], variant: Variant) -> None:
    """Refuse a variant in which two cells would share a table cell (task, model, pair, ratio,
    method, seed): then a cell lacks an axis that another of the same setting has."""
    cells = _configured(df)
    position = [cells[g].map(lambda v: value_label(v) or "") for g in (*GROUP, "seed") if g in cells]
    dup = cells[pd.Series(list(zip(*position)), index=cells.index).duplicated(keep=False)]
    if not dup.empty:
        lacking = [key_of(a) for a in axes if dup[a].isna().any()]
        raise IatrunError(
            f"cannot split the tables along {', '.join(map(key_of, axes))}: in variant {variant.label} "
            f"cell {dup['key'].iloc[0]} shares its table cell with another cell, because some cells lack "
            f"{', '.join(lacking) or 'an axis'} (report folders that vary one setting per table cell)"
        )


def split(df: pd.DataFrame) -> tuple[list[str], list[tuple[Variant, pd.DataFrame]]]:
    """(the extra axes, [(variant, its cells)]); ([], []) when the sweep has no extra axis.

    Raises IatrunError (one line, naming the axes) for more than MAX_VARIANTS variants, a name too
    long for a file, or a variant whose cells do not form tables (see :func:`_check_tables`)."""
    axes = extra_axes(df)
    if not axes:
        return [], []
    labels = _labels(_configured(df), axes)
    combos = _combinations(labels)
    if len(combos) > MAX_VARIANTS:
        raise IatrunError(
            f"the sweep varies {_describe(labels)} beyond the tables' axes: {len(combos)} variants, "
            f"more than {MAX_VARIANTS} to report one by one (report folders that vary fewer settings)"
        )
    short = _short_names(axes)
    out = []
    for combo in combos:
        variant = Variant(tuple((key_of(a), short[a], v) for a, v in zip(axes, combo)))
        if len(variant.name) > MAX_NAME:
            raise IatrunError(f"the values of {_describe(labels)} are too long to name the variants' files")
        cells = df[members(df, axes, variant)]
        _check_tables(cells, axes, variant)
        out.append((variant, cells))
    return axes, out
