"""``iatrun converge``: how fast the mesh layer T_M approaches the exact IAT-ReLU T (paper §4.3)."""

from __future__ import annotations

from pathlib import Path

import typer

from iatrun.cli.choices import Basis, flag, value
from iatrun.cli.common import examples

app = typer.Typer()


@app.command(
    epilog=examples(
        "iatrun converge", "iatrun converge --basis-in fourier --basis-out pwl --r-max 64 --quiet"
    )
)
def converge(
    basis_in: Basis = typer.Option(Basis.pwq, help="Input basis φ (iatrun list bases)."),
    basis_out: Basis = typer.Option(Basis.pwq, help="Output basis ψ."),
    n: int = typer.Option(16, help="Layer width n."),
    r_max: int = typer.Option(256, help="Largest mesh ratio r; M = n·r for r = 1..r_max."),
    samples: int = typer.Option(256, help="Random inputs x ~ N(0, I) the error is averaged over."),
    seed: int = typer.Option(0, help="Seed of the random inputs."),
    out: Path = typer.Option(  # noqa: B008 - Typer's declaration style
        None,
        help="Plot file (.png, .svg or .pdf); a CSV of every r is written beside it.",
        show_default="results/converge/<in>-<out>-n<n>.png",
    ),
    quiet: bool = flag("--quiet", "-q", help="Only the fitted order and the file written."),
) -> None:
    """Measure ‖T_M(x) − T(x)‖/‖T(x)‖ against M, print the fitted order and write a log–log plot.

    T is the exact layer (ψ normalised by the exact ∫|ψ|); T_M is the mesh layer as trained.
    """
    from iatrun.analysis.converge import convergence, write_convergence
    from iatrun.errors import IatrunError
    from iatrun.plotstyle import format_of

    basis_in, basis_out = value(basis_in), value(basis_out)
    for name, given in (("n", n), ("r-max", r_max), ("samples", samples)):
        if given < 1:
            raise IatrunError(f"--{name} must be an integer >= 1, got {given}")
    if out is not None:
        format_of(out, "--out")
    ratios = range(1, r_max + 1)
    ms, errs, order = convergence(basis_in, basis_out, n=n, ratios=ratios, samples=samples, seed=seed)
    out = Path(out) if out else Path("results") / "converge" / f"{basis_in}-{basis_out}-n{n}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_convergence(ms, errs, order, out, f"{basis_in} → {basis_out}, n = {n}")
    if not quiet:
        print("       M   rel. error")
        for m, e in zip(ms, errs, strict=True):
            r = m // n
            if r & (r - 1) == 0:  # powers of two
                print(f"{m:8d}   {e:.3e}")
    print(f"fitted order: {order:.2f}  (error ∝ M^-{order:.2f}; SPEC §4 expects 2 on smooth pieces)")
    print(f"wrote {out} and {out.with_suffix('.csv')}")
