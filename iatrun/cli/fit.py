"""``iatrun fit``: one training run into a run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from iatrun.cli.common import conf_default, flag_overrides, interactive, model_default

app = typer.Typer()

OVERRIDES_HELP = "Hydra overrides, e.g. train.batch_size=256 task.num_classes=10 (they win over flags)."


@app.command(context_settings={"ignore_unknown_options": False})
def fit(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    task: str = typer.Option(None, help="Task (iatrun list tasks).", show_default="fitting"),
    model: str = typer.Option(None, help="Model kind (iatrun list models).", show_default="iat"),
    basis_in: str = typer.Option(
        None,
        help="IAT input basis φ (iatrun list bases).",
        show_default=model_default("iat", "basis_in"),
    ),
    basis_out: str = typer.Option(
        None, help="IAT output basis ψ.", show_default=model_default("iat", "basis_out")
    ),
    mesh_ratio: int = typer.Option(
        None,
        help="IAT mesh ratio r (M = r·width).",
        show_default=model_default("iat", "mesh_ratio"),
    ),
    method: str = typer.Option(
        None,
        help="IAT evaluation: mesh (M-point rule) or exact (roots).",
        show_default=model_default("iat", "method"),
    ),
    width: int = typer.Option(
        None, help="Hidden width n.", show_default="per task: fitting 128, memorization 64"
    ),
    depth: int = typer.Option(
        None, help="Number of hidden activations L.", show_default="per task: fitting 3, memorization 2"
    ),
    steps: int = typer.Option(None, help="Optimisation steps.", show_default="per task: 8000"),
    lr: str = typer.Option(None, help="Adam learning rate, or auto (train.tune).", show_default="3e-3"),
    seed: int = typer.Option(
        None, help="Model initialisation seed.", show_default=conf_default("config.yaml", "seed")
    ),
    device: str = typer.Option(
        None, help="auto | cpu | cuda.", show_default=conf_default("config.yaml", "device")
    ),
    dtype: str = typer.Option(
        None, help="float32 | float64.", show_default=conf_default("config.yaml", "dtype")
    ),
    out: Path = typer.Option(
        None,
        help="Run folder (must not exist or be empty).",
        show_default="results/runs/<stamp>-<task>-<model>…",
    ),
    config_dir: Path = typer.Option(
        None, help="A folder of your own Hydra configs, searched first.", show_default=False
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar; only the final summary."),
) -> None:
    """Train one network and write a run folder: config, metrics, loss curve, model and plots."""
    from iatrun import provenance
    from iatrun.config import compose
    from iatrun.train import run

    overrides = flag_overrides(
        [
            ("task", task),
            ("model", model),
            ("model.basis_in", basis_in),
            ("model.basis_out", basis_out),
            ("model.mesh_ratio", mesh_ratio),
            ("model.method", method),
            ("model.width", width),
            ("model.depth", depth),
            ("train.steps", steps),
            ("train.lr", lr),
            ("seed", seed),
            ("device", device),
            ("dtype", dtype),
            ("out", out),
        ],
        overrides or [],
    )
    cfg = compose(overrides, user_dir=config_dir)
    with provenance.command(overrides):  # provenance.json records the overrides the flags made
        result, folder = _with_progress(cfg, quiet, run)
    _summary(result, folder, quiet)


def _with_progress(cfg, quiet, run):
    if cfg["train"].get("lr") == "auto" and not quiet:
        print(
            "choosing the learning rate (train.tune: successive halving on selection seeds) …",
            file=sys.stderr,
        )
    if not interactive(quiet):
        return run(cfg)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        tid = bar.add_task("train", total=cfg["train"]["steps"], loss="…")

        def on_step(step: int, loss: float) -> None:
            if step % 10 == 0 or step == cfg["train"]["steps"]:
                bar.update(tid, completed=step, loss=f"{loss:.3e}")

        return run(cfg, on_step=on_step)


def _summary(result, folder: Path, quiet: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table("metric", "value", title=None if quiet else "result")
    for k, v in result.metrics.items():
        t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(t)
    console.print(f"run folder: {folder}", soft_wrap=True)
