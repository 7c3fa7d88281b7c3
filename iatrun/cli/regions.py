"""``iatrun regions`` and ``iatrun construct``: linear regions, Lipschitz constants, the blog's network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from iatrun.cli.common import examples
from iatrun.errors import IatrunError

app = typer.Typer()


def parse_coords(text: str | None, flag: str) -> list[float] | None:
    """``"0.5"`` or ``"0,1,-2"`` → a list of floats; None stays None."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise IatrunError(f"{flag} must be a number or comma-separated numbers, got {text!r}") from None
    return values


def parse_points_text(text: str) -> list[list[float]]:
    """``"x0,y0 x1,y1 ..."`` → [[x0, y0], ...]; ordering is checked by :func:`iatrun.tasks.parse_points`."""
    out = []
    for item in text.split():
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            out.append([float(parts[0]), float(parts[1])])
        except ValueError:
            raise IatrunError(f"--points takes pairs 'x,y' joined by spaces; cannot read {item!r}") from None
    return out


FROM_HELP = "Start: a number (1-D input), or d numbers joined by commas."
RUN_HELP = "A run folder (iatrun fit, iatrun construct)."
JSON_HELP = "Print one JSON object instead of a table."


@app.command(
    epilog=examples(
        "iatrun regions results/runs/tent",
        "iatrun regions results/runs/tent --from -0.5 --to 0.5 --json",
    )
)
def regions(
    run_dir: Annotated[Path, typer.Argument(help=RUN_HELP, show_default=False)],
    start: Annotated[
        str, typer.Option("--from", help=FROM_HELP, show_default="-1, or x_0 of a piecewise_linear target")
    ] = None,
    end: Annotated[str, typer.Option("--to", help="End, like --from.", show_default="1, or x_N")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Exact linear regions and Lipschitz constants of a run's network; writes regions.csv and a figure.

    The figure is regions.png, or regions.svg / .pdf when the run's plots.format says so.
    """
    from iatrun.analysis import regions as lib

    p0, p1 = parse_coords(start, "--from"), parse_coords(end, "--to")
    run = lib.load_model_run(run_dir)
    reg = lib.run_regions(run, p0, p1)
    files = lib.save_regions(run, reg)
    report = lib.region_report(reg)
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), **report, "files": [str(f) for f in files]}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(
        "quantity",
        "value",
        title=f"regions on [{report['interval'][0]:g}, {report['interval'][1]:g}]"
        + ("" if "from" not in report else " (t along the segment)"),
    )
    t.add_row("linear regions", str(reg.num_regions))
    t.add_row("Lipschitz (exact)", f"{reg.lipschitz:.6g}")
    t.add_row("Lipschitz bound (layer-wise)", f"{reg.lipschitz_bound:.6g}")
    t.add_row("exact / bound", f"{reg.lipschitz_ratio:.4g}")
    console = Console()
    console.print(t)
    for f in files:
        console.print(f"wrote {f}", soft_wrap=True, markup=False, highlight=False)


@app.command(
    epilog=examples(
        'iatrun construct --points "-1,0 0,1 1,0" --out results/runs/tent',
        'iatrun construct --points "0,0 0.5,1 1,0.5 2,2" --json',
    )
)
def construct(
    points: Annotated[
        str, typer.Option("--points", help='Points "x0,y0 x1,y1 ..." with increasing x.', show_default=False)
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder (must not exist or be empty).",
            show_default="results/runs/<stamp>-construct-relu-N<k>",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the parameters as one JSON object.")] = False,
) -> None:
    """The blog's network: N relus in one hidden layer through N+1 points, saved as a run folder."""
    from iatrun.analysis.construct import save_construct

    params, folder = save_construct(parse_points_text(points), out)
    if as_json:
        print(json.dumps({**params, "run_dir": str(folder)}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(
        "relu k",
        "hidden weight v_k",
        "hidden bias b_k",
        "output weight w_k",
        title="relu_k(x) = max(0, v_k·x + b_k);  y = Σ w_k·relu_k(x) + b_0",
    )
    for k, (v, b, w) in enumerate(
        zip(params["hidden_weight"], params["hidden_bias"], params["output_weight"], strict=True), start=1
    ):
        t.add_row(str(k), f"{v:g}", f"{b:g}", f"{w:g}")
    t.add_row("output bias b_0", "", "", f"{params['output_bias']:g}")
    console = Console()
    console.print(t)
    console.print(f"run folder: {folder}", soft_wrap=True, markup=False, highlight=False)
