"""``iatrun plot``: pictures of the IAT itself (its bases and its activation patterns)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from iatrun.cli.choices import Basis, value
from iatrun.cli.common import examples
from iatrun.errors import IatrunError
from iatrun.plotstyle import format_of

app = typer.Typer(
    help="Pictures of the IAT: its bases and how patterns move.",
    no_args_is_help=True,
    epilog=examples("iatrun plot bases", "iatrun plot pattern --basis-in fourier"),
)

FIGURES = Path("results") / "figures"
OUT_HELP = "A .png, .svg or .pdf file, or a folder for the default (.png) file name."
PATTERN_DEFAULT = "results/figures/pattern-<basis>-n<N>-s<seed>.png"


def png_path(out: Path | None, name: str) -> Path:
    """Where to write: ``out`` if it names a .png, .svg or .pdf file, else
    ``<out or results/figures>/<name>``."""
    if out is not None and out.suffix:
        format_of(out, "--out", " (or name a folder)")
        path = out
    else:
        path = (out or FIGURES) / name
    if path.exists() and path.is_dir():
        raise IatrunError(f"{path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IatrunError(f"cannot create {path.parent}: {e.strerror or e}") from None
    return path


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise IatrunError(f"{flag} must be an integer >= 1, got {value}")
    return value


def _write(draw, path: Path) -> None:
    """Run ``draw()`` (which writes ``path``), turning file-system failures into one error line."""
    try:
        draw()
    except OSError as e:
        raise IatrunError(f"cannot write {path}: {e.strerror or e}") from None
    print(path)


@app.command(
    "bases",
    epilog=examples("iatrun plot bases", "iatrun plot bases --n 4 --out results/figures/bases-n4.png"),
)
def bases(
    n: Annotated[int, typer.Option("--n", help="Number of functions per basis.")] = 8,
    out: Annotated[Path, typer.Option(help=OUT_HELP, show_default="results/figures/bases-n<N>.png")] = None,
) -> None:
    """Every registered basis, one panel each (the paper's Figure 5)."""
    from iatrun import plots

    _positive(n, "--n")
    path = png_path(out, f"bases-n{n}.png")
    _write(lambda: plots.bases_plot(n, path), path)


@app.command(
    "pattern",
    epilog=examples(
        "iatrun plot pattern --basis-in fourier", "iatrun plot pattern --basis-in pwl --n 16 --seed 3"
    ),
)
def pattern(
    basis_in: Annotated[Basis, typer.Option("--basis-in", help="Input basis φ (iatrun list bases).")],
    n: Annotated[int, typer.Option("--n", help="Number of basis functions.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the line's two end points x_0, x_1 ~ N(0, I).")] = 0,
    curves: Annotated[int, typer.Option(help="State functions drawn along the line.")] = 7,
    out: Annotated[Path, typer.Option(help=OUT_HELP, show_default=PATTERN_DEFAULT)] = None,
) -> None:
    """The state s_x(t), its roots and the pattern S(x) as x moves along a line (paper Figs 2–3)."""
    from iatrun import plots
    from iatrun.nn.bases import check_basis

    basis_in = value(basis_in)
    check_basis(basis_in)
    _positive(n, "--n")
    _positive(curves, "--curves")
    path = png_path(out, f"pattern-{basis_in}-n{n}-s{seed}.png")
    _write(lambda: plots.pattern_plot(basis_in, n, seed, path, curves=curves), path)
