"""``iatrun converge``: how fast the mesh layer T_M approaches the exact IAT-ReLU T (paper §4.3)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer()


@app.command()
def converge(
    basis_in: str = typer.Option("pwq", help="Input basis φ (iatrun list bases)."),
    basis_out: str = typer.Option("pwq", help="Output basis ψ."),
    n: int = typer.Option(16, help="Layer width n."),
    r_max: int = typer.Option(256, help="Largest mesh ratio r; M = n·r for r = 1..r_max."),
    samples: int = typer.Option(256, help="Random inputs x ~ N(0, I) the error is averaged over."),
    seed: int = typer.Option(0, help="Seed of the random inputs."),
    out: Path = typer.Option(  # noqa: B008 - Typer's declaration style
        None,
        help="Plot file (PNG); a CSV of every r is written beside it.",
        show_default="results/converge/<in>-<out>-n<n>.png",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the fitted order and the file written."),
) -> None:
    """Measure ‖T_M(x) − T(x)‖/‖T(x)‖ against M, print the fitted order and write a log–log plot.

    T is the exact layer (ψ normalised by the exact ∫|ψ|); T_M is the mesh layer as trained.
    """
    from iatrun.analysis.converge import convergence, write_convergence
    from iatrun.errors import IatrunError

    for name, value in (("n", n), ("r-max", r_max), ("samples", samples)):
        if value < 1:
            raise IatrunError(f"--{name} must be an integer >= 1, got {value}")
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
