"""``iatrun bench``: speed and memory ratios measured side by side (see iatrun/bench.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from iatrun.cli.choices import complete_device
from iatrun.cli.common import examples

app = typer.Typer()


@app.command(epilog=examples("iatrun bench", "iatrun bench --no-sweep --out results/bench/mine"))
def bench(
    device: str = typer.Option(
        "auto",
        help="auto | cpu | cuda | cuda:N for the layer and step benchmarks.",
        autocompletion=complete_device,
    ),
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


@app.command(
    "gpu-check",
    epilog=examples(
        "iatrun gpu-check", "iatrun gpu-check --grid quick --seeds 0 --out results/bench/gpu-quick"
    ),
)
def gpu_check(
    grid: str = typer.Option("paper", help="The grid whose stacks are timed and which runs end to end."),
    seeds: str = typer.Option("0,1,2", help="Seeds of the end-to-end run, comma-separated."),
    out: Path = typer.Option(None, help="Output folder.", show_default="results/bench/gpu-<stamp>"),
) -> None:
    """On a CUDA machine: the device tests, one step of each stack and of a serial cell, the grid
    end to end on the batched engine; writes gpu.csv and prints one table (iatrun/gpucheck.py)."""
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from iatrun import gpucheck
    from iatrun.errors import IatrunError
    from iatrun.files import check_new_dir
    from iatrun.sweep.grid import load_grid

    device = gpucheck.require_cuda()  # first: on a CPU-only machine, one line and exit 2
    load_grid(grid)
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise IatrunError(f"--seeds must be integers separated by commas, got {seeds!r}") from None
    folder = Path(out) if out else Path("results") / "bench" / datetime.now().strftime("gpu-%Y%m%d-%H%M%S")
    check_new_dir(folder)
    root = Path(__file__).resolve().parents[2]  # the checkout, when there is one (for tests/)
    rows = gpucheck.check(
        device, folder, grid, seed_list, tests_root=root if (root / "tests").is_dir() else None
    )
    table = Table("section", "item", "value", title=f"iatrun gpu-check ({rows[0][1]})")
    for section, item, value, unit in rows[1:]:
        table.add_row(section, item, f"{value:.4g} {unit}".strip())
    Console().print(table)
    Console().print(f"gpu.csv: {folder / 'gpu.csv'}", soft_wrap=True, highlight=False)
