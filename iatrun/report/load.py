"""``iatrun.load_sweep``: a sweep folder as Python objects, for notebooks and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Sweep:
    """A sweep folder read back: its ``sweep.yaml``, one row per cell and the report's tables."""

    path: Path
    spec: dict[str, Any]  # sweep.yaml: grid, overrides, provenance, each cell's config hash
    cells: pd.DataFrame  # one row per cell (the columns of cells.csv), read from the cell folders now
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # tables/<name>.csv, by name

    def run(self, key: str):
        """The :class:`iatrun.results.Run` of cell ``key`` (its model needs ``artifacts: full``)."""
        from iatrun.results import load_run
        from iatrun.sweep.cells import cell_dir

        return load_run(cell_dir(self.path, key))


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep folder without writing to it. ``cells`` is collected from the cell folders as
    they are (finished or not: see its ``state`` column); ``tables`` are those the last ``iatrun
    report`` (or sweep) wrote, indexed by their first column, and empty before any report."""
    from iatrun.report.collect import collect, region_columns
    from iatrun.sweep.spec import check_sweep_dir

    path = Path(path)
    spec = check_sweep_dir(path)
    tables = {p.stem: pd.read_csv(p, index_col=0) for p in sorted((path / "tables").glob("*.csv"))}
    return Sweep(path=path, spec=spec, cells=region_columns(collect(path), path), tables=tables)
