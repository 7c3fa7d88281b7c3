"""``iatrun bench``: speed and memory ratios measured side by side (see iatrun/bench.py)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer()


@app.command()
def bench(
    device: str = typer.Option("auto", help="auto | cpu | cuda for the layer and step benchmarks."),
    out: Path = typer.Option(None, help="Output folder.", show_default="results/bench/<stamp>"),
    sweep: bool = typer.Option(
        True, "--sweep/--no-sweep", help="Include the quick-grid throughput (slowest part)."
    ),
) -> None:
    """Benchmark the IAT layer, its memory, a training step, start-up and sweep throughput."""
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from iatrun import bench as b
    from iatrun.files import check_new_dir, write_text
    from iatrun.train import resolve_device

    dev = resolve_device(device)
    folder = Path(out) if out else Path("results") / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S")
    check_new_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    console = Console()
    rows = b.run_all(folder, dev, sweep=sweep, log=lambda s: console.print(f"[dim]… {s}[/]"))
    lines = ["name,params,value,unit,reference,ratio,target"]
    lines += [
        f"{r.name},{r.params},{r.value:.6g},{r.unit},{r.reference:.6g},{r.ratio:.4g},{r.target}" for r in rows
    ]
    write_text(folder / "bench.csv", "\n".join(lines) + "\n")
    t = Table(
        "benchmark", "params", "value", "reference", "ratio", "target", title=f"iatrun bench ({dev.type})"
    )
    for r in rows:
        t.add_row(
            r.name, r.params, f"{r.value:.4g} {r.unit}", f"{r.reference:.4g}", f"{r.ratio:.3f}", r.target
        )
    console.print(t)
    console.print(f"bench.csv: {folder / 'bench.csv'}", soft_wrap=True, highlight=False)
