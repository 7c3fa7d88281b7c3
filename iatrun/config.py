"""Hydra configs, composed through the Compose API (no Hydra app, no working-dir change)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from iatrun.errors import IatrunError


def config_dir() -> Path:
    """The packaged ``conf/`` folder (the repository's conf/, or the wheel's iatrun/conf)."""
    return Path(str(resources.files("iatrun.conf")))


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n")[0].split())


def _group_options(group: str) -> list[str]:
    path = config_dir() / group
    return sorted(p.stem for p in path.glob("*.yaml")) if path.is_dir() else []


def compose(overrides: Sequence[str] = (), user_dir: str | Path | None = None, name: str = "config") -> dict:
    """Compose ``name`` with Hydra ``overrides``; return the typed, validated config as a plain dict.

    ``user_dir`` is searched before the packaged configs, so a user's files add or shadow ours.
    Group choices (``task=...``) go through Hydra's composition, which is cached; the result is
    merged onto the schema of its task and model kind (:mod:`iatrun.schema`), then value overrides
    (``train.lr=...``) are parsed by Hydra's override grammar and applied to the typed config, and
    :func:`iatrun.schema.validate` checks every value. Every failure becomes a one-line IatrunError.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from iatrun import schema

    overrides = list(overrides)
    user = None
    if user_dir is not None:
        user = Path(user_dir).expanduser().resolve()
        if not user.is_dir():
            raise IatrunError(f"--config-dir {user_dir} is not a folder")
    groups = set(_group_names(user))
    parsed = _parse(overrides)
    group_ov = tuple(
        o
        for o, p in zip(overrides, parsed)
        if _bare(p.key_or_group) in groups or p.key_or_group.startswith("hydra")
    )
    base = _compose_groups(group_ov, str(user) if user else None, name)
    try:
        cfg = schema.typed(base)
        for o, p in zip(overrides, parsed):
            if o not in group_ov:
                _apply(cfg, o, p)
        out = schema.to_plain(cfg)
    except HydraException as e:
        raise IatrunError(f"bad override: {_one_line(e)}") from None
    except OmegaConfBaseException as e:
        raise IatrunError(f"bad config: {_one_line(e)}") from None
    schema.validate(out)
    return out


def _lookup(cfg, key: str):
    """``(holder, leaf, state)``: the node that holds (or would hold) ``key``'s next part, and
    ``"set"`` (the key exists), ``"free"`` (it may be added: a free-form section) or ``"none"``."""
    from omegaconf import DictConfig

    from iatrun.schema import has, is_free

    *path, last = key.split(".")
    node = cfg
    for part in path:
        if not has(node, part):
            return node, part, "free" if is_free(node) else "none"
        child = node._get_node(part)
        if not isinstance(child, DictConfig) or child._is_missing():  # a value, or an unset section
            return node, part, "free" if is_free(child) else "none"
        node = child
    return node, last, "set" if has(node, last) else ("free" if is_free(node) else "none")


def _apply(cfg, o: str, p) -> None:
    """Apply one value override to the typed config ``cfg`` (struct mode)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from iatrun.schema import has, is_free, type_error, unknown_key

    key = p.key_or_group
    if p.is_sweep_override():
        raise IatrunError(f"override {o!r} is a sweep; use `iatrun sweep` for several values")
    holder, leaf, state = _lookup(cfg, key)
    adding = p.is_add() or p.is_force_add()
    if state == "none" or (state == "free" and not adding):
        raise IatrunError(unknown_key(cfg, key, adding=adding))
    if p.is_delete():
        if not is_free(holder):
            raise IatrunError(f"cannot delete {key!r}: it is a key of the config schema; set it instead")
        with _open(cfg):
            del holder[leaf]
        return
    value = p.value()
    if state == "set" and p.is_add() and not OmegaConf.is_missing(holder, leaf):
        raise IatrunError(f"cannot add {key!r}: it already exists (use {key}=... to override it)")
    try:
        with _open(cfg):
            if state == "free" and has(holder, leaf):  # an unset free-form section
                holder[leaf] = {}
            OmegaConf.update(cfg, key, value, merge=False)
    except ValidationError as e:
        raise IatrunError(type_error(cfg, e.full_key or key, value)) from None


class _open:
    """Temporarily lift OmegaConf's struct flag (to add or delete keys)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __enter__(self):
        from omegaconf import OmegaConf

        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        from omegaconf import OmegaConf

        OmegaConf.set_struct(self.cfg, True)


def _bare(key: str) -> str:
    return key.lstrip("+~")


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise IatrunError(f"bad override: {_one_line(e)}") from None


def _group_names(user: Path | None) -> list[str]:
    dirs = [config_dir()] + ([user] if user else [])
    return sorted({p.name for d in dirs for p in d.iterdir() if p.is_dir() and not p.name.startswith("_")})


@cache
def _compose_groups(group_overrides: tuple[str, ...], user_dir: str | None, name: str) -> dict:
    """Hydra composition of the group choices alone (cached: it is the slow part)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(group_overrides)
    if user_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{user_dir}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
            return OmegaConf.to_container(cfg, resolve=False)
    except MissingConfigException as e:
        m = re.search(r"Could not find '([^/']+)/([^']+)'", str(e))
        if m:
            group, value = m.groups()
            from iatrun.registry import Registry

            reg = Registry(group)
            for opt in getattr(e, "options", None) or _group_options(group):
                reg.add(opt, None)
            raise IatrunError(reg.unknown_message(value)) from None
        raise IatrunError(_one_line(e)) from None
    except HydraException as e:
        m = re.search(r"Could not override '([^']+)'\. No match in the defaults list", str(e))
        if m:
            raise IatrunError(_not_a_run_group(m.group(1))) from None
        raise IatrunError(f"bad override: {_one_line(e)}") from None
    except OmegaConfBaseException as e:
        raise IatrunError(f"bad config: {_one_line(e)}") from None
    finally:
        GlobalHydra.instance().clear()


# config folders that are not groups of a run, and where each is chosen instead
ELSEWHERE = {"launcher": "--launcher NAME on `iatrun sweep`", "sweep": "--grid NAME on `iatrun sweep`"}


def _not_a_run_group(group: str) -> str:
    """The error for ``group=value`` where ``group`` is a config folder but not one of a run's groups."""
    how = ELSEWHERE.get(group)
    where = f"; it is chosen with {how}" if how else ""
    return f"{group!r} is not a config group of a run (its groups: task, model, train){where}"


def to_yaml(cfg: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(cfg))
