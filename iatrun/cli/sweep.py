"""``iatrun sweep`` and ``iatrun status``: grids of fit cells, resumable, local or on SLURM."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from iatrun.cli.choices import Engine, complete_device, complete_grid, complete_launcher, flag, value
from iatrun.cli.common import examples, interactive
from iatrun.cli.report import show_report
from iatrun.sweep.launch import launcher_names

app = typer.Typer()


@app.command(
    epilog=examples(
        "iatrun sweep --grid quick --jobs 2",
        "iatrun sweep --grid paper --dry-run",
        "iatrun sweep --grid quick seed=0,1 --out results/sweeps/mine",
    )
)
def sweep(
    overrides: list[str] = typer.Argument(
        None,
        show_default=False,
        help="Hydra overrides, sweep syntax included (model.basis_in=fourier,pwq seed=0,1); "
        "launcher.KEY=VALUE sets a launcher option.",
    ),
    grid: str = typer.Option(
        "quick", help="Named grid in conf/sweep/ (iatrun list grids).", autocompletion=complete_grid
    ),
    where: list[str] = typer.Option(
        None,
        help="Run only the grid's cells whose config has KEY=VALUE[,VALUE...] (repeatable; task=, model= "
        "match the group): a part of the grid, its cells unchanged, into the same folder.",
        show_default=False,
    ),
    out: Path = typer.Option(
        None,
        help="Sweep folder; rerun into the same folder to resume.",
        show_default="results/sweeps/<grid>-<stamp>",
    ),
    jobs: int = typer.Option(1, min=1, help="Local worker processes (threads per worker = cores / jobs)."),
    engine: Engine = typer.Option(
        Engine.auto, help="batched (stack cells of one shape), serial, or auto (batched where it is faster)."
    ),
    stack_size: int = typer.Option(
        None, min=1, help="Most cells per batched stack.", show_default="activations under 1 GiB"
    ),
    launcher: str = typer.Option(
        "none",
        help=f"none | {' | '.join(launcher_names())} (conf/launcher/) or one in --config-dir/launcher/.",
        autocompletion=complete_launcher,
    ),
    force: bool = flag("--force", help="Rerun every cell, finished ones included."),
    reuse: list[Path] = typer.Option(
        None,
        help="A sweep folder whose finished cells of the same config, and chosen rates, are copied, not "
        "trained again (repeatable; e.g. the mesh grid's r=4 cells from the paper grid's folder).",
    ),
    device: str = typer.Option(
        None,
        help="auto | cpu | cuda | cuda:N for every cell.",
        show_default="from config",
        autocompletion=complete_device,
    ),
    config_dir: Path = typer.Option(
        None, help="A folder of your own configs (grids in its sweep/).", show_default=False
    ),
    quiet: bool = flag("--quiet", "-q", help="No live progress display."),
    detach: bool = flag(
        "--detach",
        help="With --launcher: return once the jobs are submitted (iatrun status DIR follows them; "
        "rerun the command to submit what is missing, iatrun report DIR when all is done).",
    ),
    dry_run: bool = flag(
        "--dry-run",
        help="Check everything and print the cells, how the engine or launcher would cut them and a time "
        "estimate from a few timed steps per setting; train, submit and write nothing.",
    ),
) -> None:
    """Run a grid of fit cells into a sweep folder, then write its tables, figures and report.md."""
    from iatrun import provenance
    from iatrun.sweep import launch
    from iatrun.sweep import spec as sweep_spec

    overrides, launch_over = _launcher_overrides(list(overrides or []))
    engine = value(engine)
    _check_flags(launcher, jobs, engine, detach, launch_over, config_dir)
    launch_cfg = launch.launcher_config(launcher, config_dir, launch_over) if launcher != "none" else None
    cell_overrides = overrides + ([f"device={device}"] if device else [])
    place = (out, reuse, force)
    spec, all_cells, folder, sources = _grid_cells(grid, config_dir, cell_overrides, where or [], place)
    change = sweep_spec.grid_change(folder, spec, cell_overrides)  # before sweep.yaml is rewritten
    if change:
        print(change, file=sys.stderr)
    if dry_run:
        return _dry_run(folder, grid, all_cells, (force, sources), (jobs, launch_cfg, engine, stack_size))
    with provenance.command(cell_overrides):  # every cell's provenance.json records them
        how = (jobs, launch_cfg, quiet, engine, stack_size, detach)
        _sweep_into(folder, spec, cell_overrides, all_cells, (force, sources), how)


def _grid_cells(grid: str, config_dir, cell_overrides: list[str], where: list[str], place):
    """The grid, its cells as composed and selected (every one validated), the sweep folder and the
    ``--reuse`` folders, checked (``place``: --out, --reuse, --force)."""
    from iatrun.sweep import grid as grids
    from iatrun.sweep import spec as sweep_spec
    from iatrun.sweep.reuse import check_sources

    out, reuse, force = place

    spec = grids.load_grid(grid, config_dir)
    all_cells = grids.select(grids.expand(spec, cell_overrides, user_dir=config_dir), where)
    results_dir = all_cells[0].config.get("results_dir") or "results"
    folder = Path(out) if out else sweep_spec.new_sweep_dir(grid, results_dir)
    return spec, all_cells, folder, check_sources(reuse or [], folder, force)


def _check_flags(launcher, jobs, engine, detach, launch_over, config_dir) -> None:
    """Refuse flags that do not go together, and an unknown launcher or engine."""
    from iatrun.errors import IatrunError
    from iatrun.sweep import launch, run

    if launcher != "none":
        launch.launcher_path(launcher, config_dir)  # an unknown launcher name: refused here
    if launcher != "none" and jobs > 1:
        raise IatrunError("--jobs and --launcher cannot be combined (the launcher sets parallelism)")
    if engine not in run.ENGINES:
        raise IatrunError(f"unknown engine {engine!r} (known: {', '.join(run.ENGINES)})")
    if detach and launcher == "none":
        raise IatrunError("--detach needs --launcher (the jobs then run without this process)")
    if launch_over and launcher == "none":
        raise IatrunError("launcher.* overrides need --launcher (e.g. submitit_local or submitit_slurm)")


def _launcher_overrides(overrides: list[str]) -> tuple[list[str], dict]:
    """The cell overrides, and the ``launcher.KEY=VALUE`` ones as a mapping (values read as YAML)."""
    from iatrun.errors import IatrunError

    launch_over = {}
    for o in [o for o in overrides if o.startswith("launcher.")]:
        k, eq, v = o.partition("=")
        if not eq or not k.split(".", 1)[1]:
            raise IatrunError(f"launcher override {o!r} needs the form launcher.KEY=VALUE")
        launch_over[k.split(".", 1)[1]] = _yaml_value(v)
        overrides.remove(o)
    return overrides, launch_over


def _dry_run(folder: Path, grid: str, all_cells, redo, how) -> None:
    """Print what the sweep would do (:mod:`iatrun.sweep.preview`); write nothing."""
    from iatrun.sweep import cells
    from iatrun.sweep import spec as sweep_spec
    from iatrun.sweep.preview import describe
    from iatrun.sweep.reuse import matches, rates

    force, sources = redo
    jobs, launch_cfg, engine, stack_size = how
    sweep_spec.check_sweep_out(folder)
    pending = [c for c in all_cells if force or cells.cell_state(folder, c)[0] != "done"]
    taken = matches(folder, pending, sources)
    reused_rates = rates(pending, sources)
    if sources:
        print(
            f"--reuse {', '.join(map(str, sources))}: {len(taken)} cells would be copied, not trained, "
            f"and the rates of {len(reused_rates)} settings"
        )
    pending = [c for c in pending if c.key not in taken]
    work = {"engine": engine, "jobs": min(jobs, os.cpu_count() or 1), "stack_size": stack_size}
    work["reused_rates"] = reused_rates
    if launch_cfg is not None and pending:
        from iatrun.sweep.launch import resolve_launcher
        from iatrun.tune import chosen_settings

        tuned = chosen_settings(cells.tune_dir(folder)) | reused_rates
        work["launcher"], work["limit"] = resolve_launcher(launch_cfg, pending, tuned)
    for line in describe(grid, folder, all_cells, pending, work):
        print(line)


def _sweep_into(folder, spec, cell_overrides, all_cells, redo, how) -> None:
    """Prepare the sweep folder, run its pending cells and write the report."""
    from rich.console import Console

    from iatrun.sweep import cells
    from iatrun.sweep import spec as sweep_spec
    from iatrun.sweep.reuse import matches, rates, reuse

    force, sources = redo
    jobs, launch_cfg, quiet, engine, stack_size, detach = how
    live: dict[str, str] = {}
    if launch_cfg is not None:  # GPUs and chunks for these cells, and the cluster asked, before writing
        from iatrun.sweep.launch import resolve_launcher
        from iatrun.sweep.status import live_cells
        from iatrun.tune import chosen_settings

        live = live_cells(folder)  # cells whose submitted task is still queued or running
        todo = all_cells if force else [c for c in all_cells if cells.cell_state(folder, c)[0] != "done"]
        taken = matches(folder, todo, sources)
        todo = [c for c in todo if c.key not in taken]
        tuned = chosen_settings(cells.tune_dir(folder)) | rates(todo, sources)
        launch_cfg, note = resolve_launcher(launch_cfg, [c for c in todo if c.key not in live], tuned)
        print(note, file=sys.stderr)
    sweep_spec.prepare_sweep_dir(folder, spec, cell_overrides, all_cells)
    if force:  # every cell again, and every learning rate chosen again
        from iatrun.tune import forget

        for cell in all_cells:
            cells.reset_cell(folder, cell)
            forget(cell.config, cells.tune_dir(folder))
    copied, rates = reuse(folder, [c for c in all_cells if c.key not in live], sources)
    pending = [c for c in all_cells if cells.cell_state(folder, c)[0] != "done"]
    held = [c for c in pending if c.key in live]
    pending = [c for c in pending if c.key not in live]
    console = Console()
    if sources:
        console.print(
            f"reused from {', '.join(map(str, sources))}: {copied} finished cells, {rates} chosen rates",
            highlight=False,
        )
    console.print(
        f"sweep [bold]{spec['name']}[/]: {len(all_cells)} cells, "
        f"{len(all_cells) - len(pending) - len(held)} already finished, {len(pending)} to run"
        + (f", {len(held)} still in submitted jobs" if held else "")
        + f" → {folder}",
        highlight=False,
    )
    if pending:
        _run(folder, pending, jobs, launch_cfg, quiet, console, (engine, stack_size, detach))
    if detach or held:
        console.print(f"jobs submitted: follow them with `iatrun status {folder}`", highlight=False)
        return
    show_report(folder, console)


def _yaml_value(v: str):
    import yaml

    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _run(folder, pending, jobs, launch_cfg, quiet, console, engine) -> None:
    def line(row: dict) -> str:
        status = row.get("status") or row.get("state")
        metric = next((f"{k}={row[k]:.4g}" for k in ("heldout_mse", "train_accuracy") if k in row), "")
        err = f" ({row['error']})" if row.get("error") else ""
        where = "" if row.get("ran", True) else " (finished by another process)"
        return f"{row['key']}: {status} {metric}{err}{where}"

    live = interactive(quiet)
    if not live:

        def on_done(row):
            console.print(line(row), highlight=False)

        return _launch(folder, pending, jobs, launch_cfg, (None, on_done, _tuned(console)), engine)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    running: set[str] = set()
    with Progress(
        TextColumn("[bold]cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[run]}"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        tid = bar.add_task("cells", total=len(pending), run="")

        def on_start(cell):
            running.add(cell.key)
            bar.update(tid, run=f"running {len(running)}: {cell.key}")

        def on_done(row):
            running.discard(row["key"])
            bar.console.print(line(row), highlight=False)
            bar.update(tid, advance=1, run=f"running {len(running)}")

        _launch(folder, pending, jobs, launch_cfg, (on_start, on_done, _tuned(bar.console)), engine)


def _tuned(console):
    """Prints a line per setting whose learning rate was just chosen (``train.lr: auto``)."""

    def on_tuned(key: str, rate: str) -> None:
        what = "learning rate not chosen:" if rate.startswith("failed") else "learning rate chosen,"
        console.print(f"{key.rsplit('/', 1)[0]}: {what} {rate}", highlight=False)

    return on_tuned


def _launch(folder, pending, jobs, launch_cfg, hooks, engine):
    from iatrun.sweep.launch import run_submitit
    from iatrun.sweep.run import run_cells

    on_start, on_done, on_tuned = hooks
    name, stack_size, detach = engine
    if launch_cfg is not None:  # each array task runs its chunk with the engine (and tunes as needed)
        return run_submitit(folder, pending, launch_cfg, on_done, (name, stack_size), detach=detach)
    jobs = min(jobs, os.cpu_count() or 1, len(pending)) if jobs > 1 else 1
    return run_cells(
        folder,
        pending,
        jobs=jobs,
        on_start=on_start,
        on_done=on_done,
        engine=name,
        stack_size=stack_size,
        on_tuned=on_tuned,
    )


@app.command(epilog=examples("iatrun status results/sweeps/mine", "iatrun status results/sweeps/mine --all"))
def status(
    folder: Path = typer.Argument(..., help="A sweep folder.", show_default=False),
    all_cells: bool = flag("--all", help="List every cell, finished ones included."),
) -> None:
    """Where a sweep stands: each cell done, failed, running, queued (with its SLURM job) or to run."""
    from rich.console import Console
    from rich.table import Table

    from iatrun.sweep.status import summary, sweep_status

    rows = sweep_status(folder)
    console = Console()
    console.print(f"{folder}: {len(rows)} cells: {summary(rows)}", highlight=False, soft_wrap=True)
    shown = rows if all_cells else [r for r in rows if r["state"] != "done"]
    if shown:
        table = Table("cell", "state", "job", "detail", box=None)
        for r in shown:
            table.add_row(r["key"], r["state"], r["job"], r["detail"])
        console.print(table)
