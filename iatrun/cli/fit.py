"""``iatrun fit``: one training run into a run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from iatrun.cli.choices import Basis, Dtype, Method, complete_device, complete_model, complete_task, flag
from iatrun.cli.common import conf_default, examples, flag_overrides, interactive, model_default

app = typer.Typer()

OVERRIDES_HELP = "Hydra overrides, e.g. train.batch_size=256 task.target=chirp (they win over flags)."
EXAMPLES = examples(
    "iatrun fit --basis-in fourier --basis-out pwq",
    "iatrun fit --task memorization --model relu --lr auto --out results/runs/relu-memorization",
    "iatrun fit --dry-run --steps 2000 train.batch_size=256 task.target=chirp",
)


DRY_RUN_HELP = (
    "Check everything, print the resolved config, the run folder and a time estimate from a few timed "
    "steps; train and write nothing."
)
# each flag and the config key it sets
FLAGS = [
    ("task", "task"),
    ("model", "model"),
    ("model.basis_in", "basis_in"),
    ("model.basis_out", "basis_out"),
    ("model.mesh_ratio", "mesh_ratio"),
    ("model.method", "method"),
    ("model.width", "width"),
    ("model.depth", "depth"),
    ("train.steps", "steps"),
    ("train.lr", "lr"),
    ("seed", "seed"),
    ("device", "device"),
    ("dtype", "dtype"),
    ("out", "out"),
]


@app.command(context_settings={"ignore_unknown_options": False}, epilog=EXAMPLES)
def fit(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    task: str = typer.Option(
        None, help="Task (iatrun list tasks).", show_default="fitting", autocompletion=complete_task
    ),
    model: str = typer.Option(
        None, help="Model kind (iatrun list models).", show_default="iat", autocompletion=complete_model
    ),
    basis_in: Basis = typer.Option(
        None,
        help="IAT input basis φ (iatrun list bases).",
        show_default=model_default("iat", "basis_in"),
    ),
    basis_out: Basis = typer.Option(
        None, help="IAT output basis ψ.", show_default=model_default("iat", "basis_out")
    ),
    mesh_ratio: int = typer.Option(
        None,
        help="IAT mesh ratio r (M = r·width).",
        show_default=model_default("iat", "mesh_ratio"),
    ),
    method: Method = typer.Option(
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
        None,
        help="auto | cpu | cuda | cuda:N.",
        show_default=conf_default("config.yaml", "device"),
        autocompletion=complete_device,
    ),
    dtype: Dtype = typer.Option(
        None, help="Floating-point type.", show_default=conf_default("config.yaml", "dtype")
    ),
    out: Path = typer.Option(
        None,
        help="Run folder (must not exist or be empty).",
        show_default="results/runs/<stamp>-<task>-<model>…",
    ),
    config_dir: Path = typer.Option(
        None, help="A folder of your own Hydra configs, searched first.", show_default=False
    ),
    quiet: bool = flag("--quiet", "-q", help="No progress bar; only the final summary."),
    as_json: bool = flag("--json", help="Print the final metrics and the run folder as one JSON object."),
    dry_run: bool = flag("--dry-run", help=DRY_RUN_HELP),
) -> None:
    """Train one network and write a run folder: config, metrics, loss curve, model and plots."""
    from iatrun import provenance
    from iatrun.config import compose
    from iatrun.train import run

    given = locals()
    overrides = flag_overrides([(key, given[name]) for key, name in FLAGS], overrides or [])
    cfg = compose(overrides, user_dir=config_dir)
    if dry_run:
        return _dry_run(cfg)
    with provenance.command(overrides):  # provenance.json records the overrides the flags made
        result, folder = _with_progress(cfg, quiet or as_json, run)
    if as_json:
        import json

        return print(
            json.dumps({"run_folder": str(folder), "metrics": result.metrics}, indent=2, default=str)
        )
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


def _dry_run(cfg) -> None:
    """What ``fit`` would do: the checks of a real run, then the config, folder, size and time."""
    import torch

    from iatrun.config import to_yaml
    from iatrun.sweep.grid import Cell
    from iatrun.sweep.timelimit import cost_key, probe, span, task_seconds, tune_plan
    from iatrun.train import plan

    (task, model, device, dtype), folder = plan(cfg)
    params = sum(p.numel() for p in model.parameters())
    t = cfg["train"]
    steps, trials = tune_plan(cfg)
    rate = (
        f"lr auto: chosen first in at most {trials} trials ({steps} steps, train.tune)"
        if trials
        else f"lr {t['lr']}"
    )
    threads = torch.get_num_threads()
    seconds = task_seconds([Cell("fit", cfg)], {cost_key(cfg): probe(cfg, threads, warm=True)}, set())
    print("# iatrun fit --dry-run: nothing is trained or written")
    print(to_yaml(cfg), end="")
    print(f"# run folder: {folder} (would be created)")
    print(f"# model: {params:,} parameters on {device.type} ({str(dtype).removeprefix('torch.')})")
    print(f"# budget: {t['steps']} steps; {rate}; {len(task.x)} training points")
    print(f"# estimated time: {span(seconds)} on this machine at {threads} thread(s) (a few steps timed)")
