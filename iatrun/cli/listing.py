"""``iatrun list``: what the registries hold."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="List registered bases, models, tasks, targets and activations.", no_args_is_help=True)


def _yes(b: bool) -> str:
    return "✓" if b else "✗"


@app.command("bases")
def bases() -> None:
    """The bases (paper Table 1) with their four properties."""
    from iatrun.nn.bases import BASES, properties

    t = Table("basis", "continuous", "smooth", "global", "zero integral", "doc")
    for name in BASES.names():
        p = properties(name)
        doc = (BASES.get(name).__doc__ or "").strip().splitlines()[0]
        t.add_row(
            name, *(_yes(p[k]) for k in ("continuous", "smooth", "global", "zero_integral")), escape(doc)
        )
    Console(width=140).print(t)


def _simple(title: str, names: list[str]) -> None:
    t = Table(title)
    for n in names:
        t.add_row(n)
    Console().print(t)


@app.command("models")
def models() -> None:
    """Model kinds for ``--model``, with their options (``model.KEY=VALUE``), types and defaults.

    A model option's default is its builder's keyword default (``iatrun.nn.models``).
    """
    from iatrun.nn.models import MODELS
    from iatrun.schema import model_table

    t = Table("model", "option", "type", "default")
    for kind in MODELS.names():
        for i, (option, type_name, default) in enumerate(model_table(kind)):
            t.add_row(kind if i == 0 else "", option, type_name, escape(default))
        t.add_section()
    Console().print(t)


@app.command("tasks")
def tasks() -> None:
    """Tasks for ``--task``."""
    from iatrun.tasks import TASKS

    _simple("task", TASKS.names())


@app.command("targets")
def targets() -> None:
    """Targets of the fitting task (``task.target=...``)."""
    from iatrun.tasks import TARGETS

    _simple("target", TARGETS.names())


@app.command("activations")
def activations() -> None:
    """Point-wise nonlinearities σ (``model.sigma=...``)."""
    from iatrun.nn.activations import ACTIVATIONS

    _simple("activation", ACTIVATIONS.names())
