"""``iatrun list``: what the registries and config folders hold, as a table or as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from iatrun.cli.common import examples

app = typer.Typer(
    help="List registered bases, models, tasks, targets, activations, grids and launchers.",
    no_args_is_help=True,
    epilog=examples("iatrun list bases", "iatrun list grids --json"),
)

JSON = typer.Option(False, "--json", help="Print a JSON list of objects instead of a table.")


def _show(rows: list[dict], as_json: bool, width: int | None = None) -> None:
    """``rows`` as a table (one column per key, booleans as ✓/✗) or as JSON."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    t = Table(*(k.replace("_", " ") for k in (rows[0] if rows else ["name"])))
    for row in rows:
        t.add_row(*(("✓" if v else "✗") if isinstance(v, bool) else escape(str(v)) for v in row.values()))
    Console(width=width).print(t)


@app.command("bases", epilog=examples("iatrun list bases", "iatrun list bases --json"))
def bases(as_json: bool = JSON) -> None:
    """The bases (paper Table 1) with their four properties."""
    from iatrun.nn.bases import BASES, properties

    rows = []
    for name in BASES.names():
        p = properties(name)
        doc = (BASES.get(name).__doc__ or "").strip().splitlines()[0]
        keys = ("continuous", "smooth", "global", "zero_integral")
        rows.append({"basis": name, **{k: bool(p[k]) for k in keys}, "doc": doc})
    _show(rows, as_json, width=140)


@app.command("models", epilog=examples("iatrun list models", "iatrun list models --json"))
def models(as_json: bool = JSON) -> None:
    """Model kinds for --model, with their options (model.KEY=VALUE), types and defaults.

    A model option's default is its builder's keyword default (iatrun.nn.models).
    """
    from iatrun.nn.models import MODELS
    from iatrun.schema import model_table

    if as_json:
        rows = [
            {"model": kind, "option": o, "type": t, "default": d}
            for kind in MODELS.names()
            for o, t, d in model_table(kind)
        ]
        return _show(rows, True)
    t = Table("model", "option", "type", "default")
    for kind in MODELS.names():
        for i, (option, type_name, default) in enumerate(model_table(kind)):
            t.add_row(kind if i == 0 else "", option, type_name, escape(default))
        t.add_section()
    Console().print(t)


@app.command("tasks", epilog=examples("iatrun list tasks", "iatrun list tasks --json"))
def tasks(as_json: bool = JSON) -> None:
    """Tasks for --task."""
    from iatrun.tasks import TASKS

    _show([{"task": n} for n in TASKS.names()], as_json)


@app.command("targets", epilog=examples("iatrun list targets", "iatrun list targets --json"))
def targets(as_json: bool = JSON) -> None:
    """Targets of the fitting task (task.target=...)."""
    from iatrun.tasks import TARGETS

    _show([{"target": n} for n in TARGETS.names()], as_json)


@app.command("activations", epilog=examples("iatrun list activations", "iatrun list activations --json"))
def activations(as_json: bool = JSON) -> None:
    """Point-wise nonlinearities σ (model.sigma=...)."""
    from iatrun.nn.activations import ACTIVATIONS

    _show([{"activation": n} for n in ACTIVATIONS.names()], as_json)


@app.command("grids", epilog=examples("iatrun list grids", "iatrun list grids --json"))
def grids(
    as_json: bool = JSON,
    config_dir: Path = typer.Option(
        None, help="A folder of your own configs (grids in its sweep/).", show_default=False
    ),
) -> None:
    """Sweep grids for iatrun sweep --grid (conf/sweep/, and --config-dir's sweep/ first)."""
    from iatrun.sweep.grid import grid_path, list_grids, load_grid

    rows = []
    for name in list_grids(config_dir):
        spec = load_grid(name, config_dir)
        rows.append(
            {
                "grid": name,
                "description": spec.get("description", ""),
                "seeds": len(spec.get("seeds") or [0]),
                "file": _short(str(grid_path(name, config_dir))),
            }
        )
    _show(rows, as_json, width=160)


@app.command("launchers", epilog=examples("iatrun list launchers", "iatrun list launchers --json"))
def launchers(
    as_json: bool = JSON,
    config_dir: Path = typer.Option(
        None, help="A folder of your own configs (launchers in its launcher/).", show_default=False
    ),
) -> None:
    """Launchers for iatrun sweep --launcher (conf/launcher/, and --config-dir's launcher/ first)."""
    from iatrun.sweep.launch import launcher_config, launcher_names, launcher_path

    rows = []
    for name in launcher_names(config_dir):
        cfg = launcher_config(name, config_dir)
        rows.append(
            {
                "launcher": name,
                "cluster": cfg.get("cluster"),
                "timeout_min": cfg.get("timeout_min"),
                "cells_per_task": cfg.get("cells_per_task"),
                "file": _short(str(launcher_path(name, config_dir))),
            }
        )
    _show(rows, as_json, width=120)


def _short(path: str) -> str:
    """A packaged config file as ``conf/…`` (where it lives in the repository); others as given."""
    from iatrun.config import config_dir

    root = str(config_dir())
    return "conf" + path[len(root) :] if path.startswith(root) else path
