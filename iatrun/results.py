"""THE run folder: its files, its name, writing it, checking it and loading it back.

A run folder is what ``iatrun fit`` writes, what every sweep cell holds, and what ``iatrun
construct`` writes for a hand-built network. This module is the only one that knows its layout:

    config.yaml    the resolved config (a trained run) or the construction's config
    curve.csv      step,loss,lr — the training loss every ``train.log_every`` steps (trained runs)
    model.pt       {"state_dict", "config", "dims": {"d", "o"}} (torch.save, a zip file)
    loss.png       the training loss (trained runs)
    prediction.png the model against the target (fitting runs that finished ok)
    provenance.json command, source commit, versions, host, device and dtype (:mod:`iatrun.provenance`);
                   folders written before it existed lack it and are still sound
    tune.json      with ``train.lr: auto``: the chosen rate and every candidate's score (:mod:`iatrun.tune`)
    metrics.json   written last: its presence means the folder is complete

A run with ``artifacts: lean`` keeps config.yaml, curve.csv, provenance.json, tune.json and
metrics.json only (about 10 KB at ``train.log_every: 10``): a large study's cells fit in a commit,
and a sweep still resumes from them; the model, the figures and the report's region counts need
``artifacts: full`` (the default).

Every file is written atomically and the folder itself appears complete in one rename
(:func:`iatrun.files.staged_dir`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iatrun import plotstyle
from iatrun.errors import IatrunError
from iatrun.files import atomic_path, read_json, stamp, unique_dir, write_json, write_text
from iatrun.plotstyle import PlotStyle
from iatrun.provenance import collect

CONFIG, METRICS, CURVE, MODEL = "config.yaml", "metrics.json", "curve.csv", "model.pt"
# the figures' names in the default format (plots.format: png); a run folder may hold .svg or .pdf
LOSS_PLOT, PREDICTION_PLOT, PROVENANCE = "loss.png", "prediction.png", "provenance.json"
TUNE = "tune.json"
# The files check_run requires: every trained run has these. provenance.json is written too but not
# required, so folders made before it (the committed reference results among them) stay sound.
TRAINED_FILES = (CONFIG, METRICS, CURVE, MODEL, LOSS_PLOT)
BUILT_FILES = (CONFIG, METRICS, MODEL)  # a network set by hand (iatrun construct) has these
LEAN_FILES = (CONFIG, METRICS, CURVE)  # a trained run with artifacts: lean
CURVE_HEADER = "step,loss,lr"


# --- names -------------------------------------------------------------------------------------


def run_name(cfg: Mapping[str, Any], when: str | None = None) -> str:
    """``<YYYYmmdd-HHMMSS>-<task>-<model>[-<basis_in>-<basis_out>-r<r>][-<method>]``."""
    m = cfg["model"]
    parts = [when or stamp(), cfg["task"]["name"], m["kind"]]
    if "basis_in" in m:
        parts += [m["basis_in"], m["basis_out"], f"r{m['mesh_ratio']}"]
    if m.get("method", "mesh") != "mesh":
        parts.append(m["method"])
    return "-".join(str(p) for p in parts)


def runs_root(cfg: Mapping[str, Any]) -> Path:
    """``<results_dir>/runs``, where runs go when no ``out`` is given."""
    return Path(cfg.get("results_dir") or "results") / "runs"


def new_run_dir(cfg: Mapping[str, Any]) -> Path:
    """A fresh folder under ``<results_dir>/runs`` named by :func:`run_name` (-2, -3, … on a clash)."""
    return unique_dir(runs_root(cfg), run_name(cfg))


# --- writing -----------------------------------------------------------------------------------


def curve_csv(curve: Sequence[tuple[int, float, float]]) -> str:
    lines = [CURVE_HEADER] + [f"{s},{loss!r},{lr!r}" for s, loss, lr in curve]
    return "\n".join(lines) + "\n"


def write_model(path: Path, model, config: Mapping[str, Any], dims: Mapping[str, int]) -> None:
    """``model.pt``: the state dict on the CPU, the config and the input/output dimensions."""
    import torch

    with atomic_path(path) as tmp:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "config": dict(config), "dims": dict(dims)}, tmp)


def write_provenance(path: Path, model, config: Mapping[str, Any]) -> None:
    """``provenance.json``, with the device and dtype the model's tensors are actually on."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    if tensor is not None:
        device, dtype = tensor.device, tensor.dtype
    else:  # a network without tensors: what the config asked for
        device, dtype = config.get("device", "cpu"), config.get("dtype")
    write_json(path, collect(device=device, dtype=dtype))


def save_result(result, folder: str | os.PathLike, config_yaml: str | None = None, title: str = "") -> None:
    """Write a trained run into ``folder`` (normally a staging folder), metrics.json last.

    ``result`` is an :class:`iatrun.train.Result` (anything with its ``config``, ``metrics``,
    ``curve``, ``model`` and ``task``); ``title`` heads the loss plot.
    """
    from iatrun import plots
    from iatrun.config import to_yaml

    folder = Path(folder)
    write_text(folder / CONFIG, config_yaml if config_yaml is not None else to_yaml(dict(result.config)))
    write_text(folder / CURVE, curve_csv(result.curve))
    if result.config.get("artifacts", "full") != "lean":
        write_model(folder / MODEL, result.model, result.config, {"d": result.task.d, "o": result.task.o})
        heading = plots.describe(result.config, result.metrics)
        with plotstyle.style(PlotStyle.from_config(result.config.get("plots"))):
            loss = folder / plotstyle.figure_name(Path(LOSS_PLOT).stem)
            plots.loss_plot(result.curve, loss, title=f"{title}\n{heading}" if title else heading)
            if result.task.name == "fitting" and result.metrics["status"] == "ok":
                prediction = folder / plotstyle.figure_name(Path(PREDICTION_PLOT).stem)
                plots.prediction_plot(result.model, result.task, prediction, title=heading)
    if getattr(result, "provenance", None) is not None:  # collected where it trained (iatrun.sweep.writers)
        write_json(folder / PROVENANCE, result.provenance)
    else:
        write_provenance(folder / PROVENANCE, result.model, result.config)
    if getattr(result, "tune", None) is not None:
        write_json(folder / TUNE, result.tune)
    write_json(folder / METRICS, result.metrics)  # last: its presence means complete


def save_built(
    folder: str | os.PathLike,
    config: Mapping[str, Any],
    model,
    metrics: Mapping[str, Any],
    dims: Mapping[str, int],
) -> None:
    """Write the run folder of a network set by hand, not trained: config, model, provenance, metrics.json
    last."""
    import yaml

    folder = Path(folder)
    write_text(folder / CONFIG, yaml.safe_dump(dict(config), sort_keys=False))
    write_model(folder / MODEL, model, config, dims)
    write_provenance(folder / PROVENANCE, model, config)
    write_json(folder / METRICS, metrics)  # last: its presence means complete


# --- checking and reading ----------------------------------------------------------------------


def _present(path: Path) -> bool:
    """Whether a run's file is there; a figure in any of the formats ``plots.format`` allows."""
    if path.name in (LOSS_PLOT, PREDICTION_PLOT):
        return any(path.with_suffix(f".{fmt}").is_file() for fmt in plotstyle.FORMATS)
    return path.is_file()


def check_run(folder: str | os.PathLike, files: Sequence[str] = TRAINED_FILES) -> str | None:
    """None if a finished run folder's ``files`` are intact, else what is wrong (one phrase).

    A run whose config says ``artifacts: lean`` is held to :data:`LEAN_FILES` instead of
    :data:`TRAINED_FILES`."""
    import yaml

    folder = Path(folder)
    if files == TRAINED_FILES and _lean(folder):
        files = LEAN_FILES
    for name in files:
        if not _present(folder / name):
            return f"{name} missing"
    try:
        if "status" not in read_json(folder / METRICS):
            return "metrics.json has no status"
    except (OSError, ValueError):
        return "metrics.json unreadable"
    try:
        cfg = yaml.safe_load((folder / CONFIG).read_text())
        if not isinstance(cfg, dict) or "model" not in cfg:
            return "config.yaml is not a run config"
    except (OSError, yaml.YAMLError):
        return "config.yaml unreadable"
    if CURVE in files:
        lines = (folder / CURVE).read_text().splitlines()
        if len(lines) < 2 or lines[0] != CURVE_HEADER:
            return "curve.csv empty or malformed"
    if MODEL in files and not zipfile.is_zipfile(folder / MODEL):
        return "model.pt unreadable"
    return None


def _lean(folder: Path) -> bool:
    """Whether the run folder's config.yaml (if readable) says ``artifacts: lean``."""
    try:
        return read_config(folder).get("artifacts") == "lean"
    except Exception:  # unreadable or not a mapping: check_run reports it
        return False


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((Path(folder) / CONFIG).read_text()) or {}


def read_metrics(folder: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(folder) / METRICS)


def read_provenance(folder: str | os.PathLike) -> dict[str, Any]:
    """provenance.json, or {} where the folder predates it or the file is unreadable."""
    try:
        data = read_json(Path(folder) / PROVENANCE)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_curve(folder: str | os.PathLike):
    """curve.csv as a DataFrame (step, loss, lr), or None if it is missing or unreadable."""
    import pandas as pd

    try:
        return pd.read_csv(Path(folder) / CURVE)
    except (OSError, ValueError):
        return None


@dataclass
class Run:
    """A finished run loaded from its folder."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    model: Any  # torch.nn.Module, in eval mode
    provenance: dict[str, Any] = field(default_factory=dict)  # {} for folders that predate it

    @property
    def curve(self):
        """The loss curve as a DataFrame (step, loss, lr) from curve.csv; None where it is missing."""
        return read_curve(self.path)


def load_run(path: str | os.PathLike, device: str = "cpu") -> Run:
    """Rebuild a run's trained model from ``<path>/model.pt``, with its config, metrics and provenance."""
    import torch

    from iatrun.nn.models import model_from_config

    path = Path(path)
    if not path.is_dir():
        raise IatrunError(f"{path} is not a run folder (no such folder)")
    try:
        blob = torch.load(path / MODEL, map_location=device, weights_only=False)
        cfg, state, dims = blob["config"], blob["state_dict"], blob["dims"]
    except FileNotFoundError:
        if _lean(path):
            raise IatrunError(f"{path} was written with artifacts: lean and keeps no model.pt") from None
        raise IatrunError(f"{path} is not a run folder: model.pt is missing") from None
    except Exception as e:  # corrupt pickle, wrong content
        raise IatrunError(f"{path}/model.pt is unreadable ({type(e).__name__})") from None
    model = model_from_config(cfg, d=dims["d"], o=dims["o"])
    model.load_state_dict(state)
    model.to(device=device, dtype=next(iter(state.values())).dtype)
    try:
        metrics = read_metrics(path)
    except (OSError, ValueError):
        metrics = {}
    return Run(path=path, config=cfg, metrics=metrics, model=model.eval(), provenance=read_provenance(path))
