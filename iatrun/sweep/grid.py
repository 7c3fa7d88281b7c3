"""Grids → cells: named grids in ``conf/sweep/``, command-line sweep overrides, one composed config per cell.

A grid file has ``blocks`` (each the cartesian product of its axes), ``overrides`` applied to every
cell and ``seeds``. :func:`expand` turns a grid and the command line into :class:`Cell` objects,
each with a stable key (its folder name) and a fully composed, validated config.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iatrun.digest import digest_view
from iatrun.errors import IatrunError

# Axis keys that name a cell by themselves; any other varying key is appended to the name.
_NAMED = ("task", "model", "model.basis_in", "model.basis_out", "model.mesh_ratio", "model.method", "seed")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep."""

    key: str  # stable folder name, e.g. "fitting/iat-fourier-pwq-r4/seed0"
    config: dict  # fully resolved config (its "out" is set when it runs)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A digest of everything that determines a cell's result: not where or how it is written
    (:data:`iatrun.digest.PRESENTATION`: ``out``, ``artifacts``, ``logger``, ``plots``), nor the
    ``train.tune`` block of a cell whose rate is fixed.
    The device enters as its kind only when that is not the CPU (``auto`` as it resolves here), so
    cells trained on a GPU and on the CPU never pass for one another, and CPU hashes are unchanged."""
    from iatrun.train import resolve_device

    keep = {k: v for k, v in digest_view(cfg).items() if k != "device"}
    kind = resolve_device(str(cfg.get("device", "auto"))).type
    if kind != "cpu":
        keep["device_kind"] = kind
    if isinstance(keep.get("train"), Mapping) and keep["train"].get("lr") != "auto":
        keep["train"] = {k: v for k, v in keep["train"].items() if k != "tune"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grid_dirs(user_dir: str | Path | None = None) -> list[Path]:
    from iatrun.config import config_dir

    dirs = [config_dir() / "sweep"]
    if user_dir is not None:
        dirs.insert(0, Path(user_dir) / "sweep")
    return dirs


def list_grids(user_dir: str | Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in grid_dirs(user_dir):
        names |= {p.stem for p in d.glob("*.yaml")}
    return sorted(names)


def grid_path(name: str, user_dir: str | Path | None = None) -> Path | None:
    """The file of grid ``name`` (a user's ``--config-dir`` first), or None."""
    return next((d / f"{name}.yaml" for d in grid_dirs(user_dir) if (d / f"{name}.yaml").is_file()), None)


def load_grid(name: str, user_dir: str | Path | None = None) -> dict:
    """Read ``conf/sweep/<name>.yaml`` (a user's ``--config-dir`` is searched first)."""
    path = grid_path(name, user_dir)
    if path is not None:
        try:
            grid = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise IatrunError(f"grid file {path} is not valid YAML: {' '.join(str(e).split())}") from None
        bad = sorted(set(grid) - {"description", "seeds", "overrides", "blocks"})
        if bad or not isinstance(grid.get("blocks"), list):
            raise IatrunError(f"grid {name!r}: needs a 'blocks' list; unknown keys: {bad}")
        grid["name"] = name
        return grid
    from iatrun.registry import Registry

    known: Registry[None] = Registry("grid")
    for g in list_grids(user_dir):
        known.add(g, None)
    raise IatrunError(known.unknown_message(name))


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Hydra override syntax, sweeps included: ``k=a,b`` and ``k=range(0,3)`` give several values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise IatrunError(f"bad override: {' '.join(str(e).split(chr(10))[0].split())}") from None
    out = []
    for o in parsed:
        if o.is_sweep_override():
            values = [str(v) for v in o.sweep_string_iterator()]
        else:
            values = [o.get_value_element_as_str()]
        out.append((o.get_key_element(), values))
    return out


def _values(key: str, raw: Any) -> list[str]:
    from iatrun.nn.bases import table_bases

    if raw == "all" and key in ("model.basis_in", "model.basis_out"):
        return table_bases()  # every registered basis (user-registered ones too) but family members
    if isinstance(raw, list):
        return [_scalar(v) for v in raw]
    return [_scalar(raw)]


def _scalar(v: Any) -> str:
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def cell_key(axes: Mapping[str, str], varying: Sequence[str]) -> str:
    """``<task>/<model>[-<basis_in>-<basis_out>-r<r>][-<method>][-<extra><v>...]/seed<s>``."""
    model = axes.get("model", "model")
    part = [model]
    if "model.basis_in" in axes or "model.basis_out" in axes:
        part += [axes.get("model.basis_in", "_"), axes.get("model.basis_out", "_")]
    if "model.mesh_ratio" in axes:
        part.append(f"r{axes['model.mesh_ratio']}")
    if axes.get("model.method", "mesh") != "mesh":
        part.append(axes["model.method"])
    for k in varying:
        if k in axes:
            part.append(f"{k.rsplit('.', 1)[-1]}{axes[k]}")
    safe = "-".join(str(p) for p in part)
    for ch in "/\\ =,[]{}'\"":
        safe = safe.replace(ch, "_")
    return f"{axes.get('task', 'task')}/{safe}/seed{axes.get('seed', '0')}"


def expand(grid: Mapping[str, Any], overrides: Sequence[str] = (), user_dir=None) -> list[Cell]:
    """All cells of ``grid`` with command-line ``overrides`` applied, each fully composed.

    An override of a key that a block sweeps replaces that axis; an override of a key no block
    names applies to every cell (with several values it becomes a new axis of every block).
    Every cell's config is validated here, before anything runs.
    """
    from iatrun.config import compose
    from iatrun.schema import check_selection_seeds
    from iatrun.train import prepare

    cli = parse_overrides(overrides)
    fixed = [str(o) for o in grid.get("overrides") or []]
    seeds = [str(s) for s in grid.get("seeds") or [0]]
    blocks = []
    named_anywhere = {k for b in grid["blocks"] for k in b}
    for block in grid["blocks"]:
        axes = {k: _values(k, v) for k, v in block.items()}
        for k, vals in cli:
            bare = k.lstrip("+~")
            if bare == "seed":
                continue
            if bare in axes or bare not in named_anywhere:
                axes[bare if bare in axes else k] = _values(bare, vals if len(vals) > 1 else vals[0])
        blocks.append(axes)
    for k, vals in cli:
        if k == "seed":
            seeds = vals
    # a key names every axis whose value differs between cells, within a block or across blocks, in the
    # grid file or on the command line: narrowing a grid's axis on the command line (running a grid in
    # parts) keeps the cells' folder names
    seen: dict[str, set[str]] = {}
    for b in blocks + [{k: _values(k, v) for k, v in b.items()} for b in grid["blocks"]]:
        for k, v in b.items():
            seen.setdefault(k.lstrip("+~"), set()).update(v)
    varying = sorted(k for k, v in seen.items() if k not in _NAMED and len(v) > 1)
    cells: dict[str, Cell] = {}
    cache: dict[tuple, dict] = {}
    for axes in blocks:
        keys = list(axes)
        for combo in itertools.product(*(axes[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            ov = tuple(fixed + [f"{k}={v}" for k, v in chosen.items()])
            if ov not in cache:
                cfg = compose(list(ov), user_dir=user_dir)
                prepare(cfg)  # refuse a bad cell before any cell starts
                cache[ov] = cfg
            for s in seeds:
                cfg = copy.deepcopy(cache[ov])
                try:
                    cfg["seed"] = int(s)
                except ValueError:
                    raise IatrunError(f"seed must be an integer, got {s!r}") from None
                check_selection_seeds(cfg)
                named = {k.lstrip("+~"): v for k, v in chosen.items()}
                named.setdefault("task", cfg["task"]["name"])
                named.setdefault("model", cfg["model"]["kind"])
                for opt in ("basis_in", "basis_out", "mesh_ratio", "method"):  # IAT-like models
                    if opt in cfg["model"]:
                        named.setdefault(f"model.{opt}", str(cfg["model"][opt]))
                named["seed"] = s
                key = cell_key(named, varying)
                if key in cells and config_hash(cells[key].config) != config_hash(cfg):
                    raise IatrunError(f"two cells of the grid would share the folder {key!r}")
                cells.setdefault(key, Cell(key, cfg))
    return list(cells.values())


_GROUP_NAME = {"task": "name", "model": "kind"}  # --where task=fitting reads task.name, model=iat model.kind


def select(cells: Sequence[Cell], where: Sequence[str]) -> list[Cell]:
    """The cells whose config matches every ``KEY=V1[,V2...]`` of ``where`` (a dotted key; ``task``
    and ``model`` match the group's name). Unlike an override, this changes no cell: the cells keep
    their configs and folder names, so a grid can be run in parts into one folder."""
    chosen = list(cells)
    for text in where:
        key, eq, raw = text.partition("=")
        if not eq or not key or not raw:
            raise IatrunError(f"--where {text!r} needs the form KEY=VALUE[,VALUE...]")
        wanted = [yaml.safe_load(v) for v in raw.split(",")]
        values = [_lookup(c.config, key) for c in chosen]
        if all(v is _MISSING for v in values):
            raise IatrunError(f"--where {text!r}: no cell of the grid has the key {key!r}")
        chosen = [c for c, v in zip(chosen, values) if v is not _MISSING and _matches(v, wanted)]
        if not chosen:
            raise IatrunError(f"--where {text!r} leaves no cell of the grid's {len(cells)}")
    return chosen


_MISSING = object()


def _lookup(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    if isinstance(node, Mapping) and key in _GROUP_NAME:
        return node.get(_GROUP_NAME[key], _MISSING)
    return node


def _matches(value: Any, wanted: Sequence[Any]) -> bool:
    return any(value == w or str(value) == str(w) for w in wanted)
