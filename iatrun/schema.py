"""The config's typed schema: one dataclass per section, applied when the config is composed.

Where each default lives:

* model options (``basis_in``, ``mesh_ratio``, ...): the keyword-only parameters of the kind's
  registered builder (:mod:`iatrun.nn.models`); the model section's schema is derived from that
  signature (names, types, defaults), and ``norm``'s default from :func:`iatrun.nn.models.build_model`.
* values with a per-task default (``train.*``, ``model.width``/``depth``, the task's keys) and the
  root values (``seed``, ``device``, ...): the YAML files in ``conf/``; their fields here carry types
  only (``MISSING``), so a config file that leaves one out is an error, not a silent default.

:func:`typed` merges a composed config onto the schema of its task and model kind; every value
check (ranges, choices) is :func:`validate`. Nothing here imports the training or results code.
"""

import copy
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from iatrun.errors import IatrunError
from iatrun.nn.layers import NORMS
from iatrun.nn.models import MODELS, build_model
from iatrun.plotstyle import PlotStyle
from iatrun.tasks import TARGETS, TASKS, target_params
from iatrun.tune import Tune, positive, validate_tune

SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam",)
DTYPES = ("float32", "float64")
ARTIFACTS = ("full", "lean")  # what a run folder keeps (iatrun.results)
LOGGERS = ("csv", "tensorboard")  # how a run is logged while it trains (iatrun.live)


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

# What a value must be, for the keys with a rule beyond their type (type errors use it too).
MUST = {
    "seed": "an integer",
    "train.steps": "an integer >= 1",
    "train.lr": "a positive number or 'auto'",
    "train.batch_size": "null (full batch) or an integer >= 1",
    "train.log_every": "an integer >= 1",
    "model.width": "an integer >= 1",
    "model.depth": "an integer >= 1",
}


@dataclasses.dataclass
class Train:
    """``train:`` (values per task in conf/train/<task>.yaml)."""

    optimizer: str = MISSING  # adam
    lr: Any = MISSING  # > 0, or "auto" (chosen per setting by train.tune)
    steps: int = MISSING  # >= 1
    batch_size: int | None = MISSING  # null (full batch) or >= 1
    schedule: str = MISSING  # constant | cosine
    log_every: int = MISSING  # >= 1
    tune: Tune | None = None  # needed by lr: auto


@dataclasses.dataclass
class Plots:
    """``plots:`` (values in conf/config.yaml): how figures are written (:mod:`iatrun.plotstyle`)."""

    format: str = MISSING  # png | svg | pdf
    dpi: int = MISSING
    heatmap_scale: str = MISSING  # per-table | shared


@dataclasses.dataclass
class Fitting:
    """``task:`` of the fitting task (conf/task/fitting.yaml); one free-form section per target follows."""

    name: str = MISSING
    seed: int = MISSING
    target: str = MISSING
    n_train: int = MISSING
    holdout_factor: int = MISSING


@dataclasses.dataclass
class Memorization:
    """``task:`` of the memorization task (conf/task/memorization.yaml)."""

    name: str = MISSING
    seed: int = MISSING
    n_points: int = MISSING
    dim: int = MISSING
    num_classes: int = MISSING


TASK_SCHEMAS: dict[str, type] = {"fitting": Fitting, "memorization": Memorization}
FREE = dict[str, Any] | None  # a free-form section (a target's parameters)


def _field(name: str, tp: Any, default: Any = MISSING) -> tuple[str, Any, Any]:
    if isinstance(default, list | dict | tuple):  # a mutable default: a fresh copy each time
        return name, tp, dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d))
    if dataclasses.is_dataclass(tp):
        return name, tp, dataclasses.field(default_factory=tp)
    return name, tp, dataclasses.field(default=default)


def _omega_type(tp: Any) -> Any:
    """The type OmegaConf checks: int, float, bool, str or Optional of one; anything else is Any."""
    if tp in (int, float, bool, str):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and len(typing.get_args(tp)) == 2
    if optional and len(args) == 1 and args[0] in (int, float, bool, str):
        return args[0] | None
    return Any


def model_options(kind: str) -> list[tuple[str, Any, Any]]:
    """``(name, type, default)`` of each option of model ``kind``, from its builder's signature
    (``MISSING`` when the builder has no default)."""
    builder = MODELS.get(kind)
    try:  # a builder whose signature cannot be read takes no options
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return []
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # a callable object, or annotations that do not resolve: untyped
        hints = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [  # a leading underscore marks a builder's private parameter (relu's ``_a``)
        (p.name, _omega_type(hints.get(p.name, Any)), MISSING if p.default is p.empty else p.default)
        for p in params
        if p.kind in named and not p.name.startswith("_")
    ]


def norm_default() -> str:
    return inspect.signature(build_model).parameters["norm"].default


def model_defaults(kind: str) -> dict[str, Any]:
    """The defaults of model ``kind``'s options (``norm`` first), for help texts and listings."""
    out = {"norm": norm_default()}
    out.update({name: d for name, _, d in model_options(kind) if d is not MISSING})
    return out


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return f"{args[0].__name__} | null" if args else getattr(tp, "__name__", str(tp))


def model_table(kind: str) -> list[tuple[str, str, str]]:
    """``(option, type, default)`` rows of model ``kind``, in the composed order, for listings."""
    rows = [("norm", "str", f"{norm_default()} ({' | '.join(NORMS)})")]
    for name, tp, d in model_options(kind):
        rows.append((name, _type_name(tp), "required" if d is MISSING else str(d)))
    return rows + [(k, "int", "per task (conf/train/<task>.yaml)") for k in ("width", "depth")]


def model_schema(kind: str) -> type:
    """``model:`` of ``kind``: kind, norm, the builder's options, then width and depth (per task)."""
    fields = [_field("kind", str), _field("norm", str, norm_default())]
    own = [(n, tp, d) for n, tp, d in model_options(kind) if n not in ("kind", "norm", "width", "depth")]
    fields += [_field(name, tp, d) for name, tp, d in own]
    fields += [_field("width", int), _field("depth", int)]
    return dataclasses.make_dataclass(f"Model_{kind}", fields)


def task_schema(name: str) -> Any:
    """``task:`` of ``name``: its dataclass (with one free-form section per target when it has a
    ``target``), or a free-form dict for a task registered without a schema."""
    base = TASK_SCHEMAS.get(name)
    if base is None:
        return dict[str, Any]
    fields = [_field(f.name, f.type) for f in dataclasses.fields(base)]  # types only: values in YAML
    if "target" in {f.name for f in dataclasses.fields(base)}:
        fields += [_field(t, FREE) for t in TARGETS.names()]
    return dataclasses.make_dataclass(base.__name__, fields)


def config_schema(task: str | None, kind: str | None) -> type:
    """The root config for a task and model kind, in the composed key order."""
    return dataclasses.make_dataclass(
        "Config",
        [
            _field("task", task_schema(task) if task else dict[str, Any]),
            _field("model", model_schema(MODELS.check(kind)) if kind else dict[str, Any]),
            _field("train", Train),
            _field("seed", int),
            _field("device", str),
            _field("dtype", str),
            _field("out", str | None),
            _field("results_dir", str),
            _field("artifacts", str),
            _field("logger", str),
            _field("plots", Plots),
            _field("tf32", bool),
        ],
    )


# --- applying the schema ---------------------------------------------------------------------------


def _get(tree: Any, key: str, default: Any = None) -> Any:
    for part in key.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return default
        tree = tree[part]
    return tree


def typed(base: Mapping[str, Any]) -> DictConfig:
    """``base`` (a composed plain dict) merged onto the schema of its task and model kind, in struct
    mode. An unknown key or a value of the wrong type in a config file raises IatrunError."""
    task, kind = _get(base, "task.name"), _get(base, "model.kind")
    schema = OmegaConf.structured(config_schema(task if isinstance(task, str) else None, kind))
    if kind:
        schema.model.kind = kind  # named in the messages below
    try:
        cfg = OmegaConf.merge(schema, base)
    except ConfigKeyError as e:
        raise IatrunError(f"config files: {unknown_key(schema, e.full_key)}") from None
    except ValidationError as e:
        raise IatrunError(f"config files: {type_error(schema, e.full_key, _get(base, e.full_key))}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def has(node: DictConfig, key: str) -> bool:
    """Whether ``node`` has ``key``, set or not (``key in node`` is False for an unset ``???``)."""
    return key in list(node)


def is_free(node: Any) -> bool:
    """A free-form section: keys may be added to it (a target's parameters, an untyped task)."""
    return isinstance(node, DictConfig) and node._metadata.object_type in (None, dict)


def type_error(cfg: DictConfig, key: str, value: Any) -> str:
    """``<key> must be <what>, got <value>``, from the key's rule or its schema type."""
    return f"{key} must be {MUST.get(key) or _expected(cfg, key)}, got {value!r}"


WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}


def _expected(cfg: DictConfig, key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not (isinstance(node, DictConfig) and has(node, leaf)):
        return "a value of its type"
    meta = node._get_node(leaf)._metadata
    what = WORDS.get(typing.get_origin(meta.ref_type) or meta.ref_type, "a value of its type")
    return f"null or {what}" if meta.optional else what


def _keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, DictConfig) and not node._is_missing():
        for k in node:
            out.append(f"{prefix}{k}")
            out += _keys(node._get_node(k), f"{prefix}{k}.")
    return out


def unknown_key(cfg: DictConfig, key: str, adding: bool = False) -> str:
    """Explain a key the schema has no place for: the keys beside it and the nearest known key."""
    import difflib

    node, where = cfg, ""
    for part in key.split(".")[:-1]:
        child = node._get_node(part) if has(node, part) else None
        if not isinstance(child, DictConfig) or child._is_missing():
            break
        node, where = child, f"{where}{part}."
    known = [f"{where}{k}" for k in node]
    if where == key.rpartition(".")[0] + "." or "." not in key:  # a wrong last part: its siblings
        hint = [f"{where}{h}" for h in difflib.get_close_matches(key.rpartition(".")[2], list(node), n=1)]
    else:  # a wrong section: any key
        hint = difflib.get_close_matches(key, _keys(cfg), n=1)
    tip = f"; did you mean {hint[0]!r}?" if hint else ""
    what = f"cannot add {key!r}: the config schema has no such key"
    what = what if adding else f"unknown config key {key!r}"
    if where == "model." and has(node, "kind") and key.count(".") == 1:
        opt = key.split(".", 1)[1]
        what = f"model {node.kind!r} has no option {opt!r}"
        return f"{what} (its keys: {', '.join(node)}){tip}"
    return f"{what} (known: {', '.join(known)}){tip}"


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict; a free-form section left unset is left out, any other
    unset value is an error."""
    missing = OmegaConf.missing_keys(cfg)
    optional = {k for k in missing if _unset_section(cfg, k)}
    for key in sorted(missing - optional):
        raise IatrunError(f"config key {key!r} has no value: set it in a config file or as {key}=...")
    out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for key in optional:
        parent, _, leaf = key.rpartition(".")
        holder = _get(out, parent) if parent else out
        if isinstance(holder, dict):
            holder.pop(leaf, None)
    lr = _get(out, "train.lr")
    if isinstance(lr, int) and not isinstance(lr, bool):  # lr is a number or "auto": a number is a float
        out["train"]["lr"] = float(lr)
    return out


def _unset_section(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and isinstance(node._get_node(leaf), DictConfig)


# --- value checks ----------------------------------------------------------------------------------


def _int(value: Any, low: int | None = None) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and (low is None or value >= low)


def _require(ok: bool, key: str, value: Any) -> None:
    if not ok:
        raise IatrunError(f"{key} must be {MUST[key]}, got {value!r}")


def _choice(value: Any, known: tuple[str, ...], what: str) -> None:
    if value not in known:
        raise IatrunError(f"unknown {what} {value!r} (known: {', '.join(known)})")


def validate_train(t: Mapping[str, Any]) -> None:
    """Raise IatrunError naming the first bad value of a ``train`` section (absent optional keys
    take their usual meaning: constant schedule, adam, every step logged)."""
    _require(_int(t.get("steps"), 1), "train.steps", t.get("steps"))
    lr = t.get("lr")
    _require(lr == "auto" or positive(lr), "train.lr", lr)
    if lr == "auto" or t.get("tune") is not None:
        validate_tune(t.get("tune"))
    bs = t.get("batch_size")
    _require(bs is None or _int(bs, 1), "train.batch_size", bs)
    _choice(t.get("schedule", "constant"), SCHEDULES, "train.schedule")
    _choice(t.get("optimizer", "adam"), OPTIMIZERS, "train.optimizer")
    _require(_int(t.get("log_every", 1), 1), "train.log_every", t.get("log_every", 1))


def check_selection_seeds(cfg: Mapping[str, Any]) -> None:
    """A tuned config's reported seed must not be one of the seeds that chose its rate (checked per
    cell, once its seed is set: not at compose, where the seed may still be the root default)."""
    t = cfg["train"]
    if t.get("lr") == "auto" and cfg.get("seed") in (t.get("tune") or {}).get("seeds", ()):
        raise IatrunError(
            f"seed {cfg.get('seed')} is a selection seed of train.tune.seeds {list(t['tune']['seeds'])}: "
            "a seed that chose the learning rate cannot be reported; use another seed"
        )


def validate_model(m: Mapping[str, Any]) -> None:
    """Width, depth and norm here; the options by the kind's own builder (which builds no layer)."""
    kind = MODELS.check(m.get("kind"))
    for key in ("width", "depth"):
        _require(_int(m.get(key), 1), f"model.{key}", m.get(key))
    _choice(m.get("norm", norm_default()), tuple(NORMS), "norm")
    options = {k: v for k, v in m.items() if k not in ("kind", "norm", "width", "depth")}
    MODELS.get(kind)(**options)


def validate(cfg: Mapping[str, Any]) -> None:
    """Every value check of a composed config; raises IatrunError naming the first bad value."""
    _require(_int(cfg.get("seed")), "seed", cfg.get("seed"))
    device = cfg.get("device")
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        raise IatrunError(f"unknown device {device!r} (known: auto, cpu, cuda, cuda:N)")
    _choice(cfg.get("dtype"), DTYPES, "dtype")
    _choice(cfg.get("artifacts", "full"), ARTIFACTS, "artifacts")
    _choice(cfg.get("logger", "csv"), LOGGERS, "logger")
    PlotStyle.from_config(cfg.get("plots"))
    validate_train(cfg["train"])
    if cfg["train"].get("lr") == "auto":
        validate_tune(cfg["train"].get("tune"), (cfg.get("task") or {}).get("name"))
    validate_model(cfg["model"])
    task = cfg["task"]
    TASKS.check(task.get("name"))
    if "target" in task:
        target_params(task, TARGETS.check(task["target"]))
