"""Hydra configs, composed through the Compose API (no Hydra app, no working-dir change)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from iatrun.errors import IatrunError


def config_dir() -> Path:
    """The packaged ``conf/`` folder (the repository's conf/, or the wheel's iatrun/conf)."""
    return Path(str(resources.files("iatrun.conf")))


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n")[0].split())


def _group_options(group: str) -> list[str]:
    path = config_dir() / group
    return sorted(p.stem for p in path.glob("*.yaml")) if path.is_dir() else []


def _keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            out += _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
        return out
    return []


def compose(overrides: Sequence[str] = (), user_dir: str | Path | None = None, name: str = "config") -> dict:
    """Compose ``name`` with Hydra ``overrides``; return the fully resolved config as a dict.

    ``user_dir`` is searched before the packaged configs, so a user's files add or shadow ours.
    Group choices (``task=...``) go through Hydra's composition, which is cached; value overrides
    (``train.lr=...``) are then parsed by Hydra's override grammar and applied to a copy, as Hydra
    itself applies them after composing. Every failure becomes a one-line IatrunError.
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

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
    cfg = OmegaConf.create(base)
    OmegaConf.set_struct(cfg, True)
    try:
        for o, p in zip(overrides, parsed):
            key = p.key_or_group
            if o in group_ov:
                continue
            if p.is_sweep_override():
                raise IatrunError(f"override {o!r} is a sweep; use `iatrun sweep` for several values")
            if p.is_delete():
                with _open(cfg):
                    parent, _, leaf = key.rpartition(".")
                    node = OmegaConf.select(cfg, parent) if parent else cfg
                    if node is None or leaf not in node:
                        raise IatrunError(_unknown_key(key, list(group_ov), user))
                    del node[leaf]
                continue
            value = p.value()
            if p.is_add() or p.is_force_add():
                if p.is_add() and OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
                    raise IatrunError(f"cannot add {key!r}: it already exists (use {key}=... to override it)")
                with _open(cfg):
                    OmegaConf.update(cfg, key, value, merge=False)
            else:
                if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                    raise IatrunError(_unknown_key(key, list(group_ov), user))
                OmegaConf.update(cfg, key, value, merge=False)
        return OmegaConf.to_container(cfg, resolve=True)
    except HydraException as e:
        raise IatrunError(f"bad override: {_one_line(e)}") from None
    except OmegaConfBaseException as e:
        raise IatrunError(f"bad config: {_one_line(e)}") from None


_MISSING = object()


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
        raise IatrunError(f"bad override: {_one_line(e)}") from None
    except OmegaConfBaseException as e:
        raise IatrunError(f"bad config: {_one_line(e)}") from None
    finally:
        GlobalHydra.instance().clear()


def _unknown_key(key: str, group_overrides: list[str], user: Path | None = None) -> str:
    """Explain an override of a key that does not exist, listing the keys that do."""
    base = _compose_groups(tuple(group_overrides), str(user) if user else None, "config")
    known = _keys(base)
    section = key.rsplit(".", 1)[0] if "." in key else ""
    near = [k for k in known if k.startswith(section + ".")] if section else known
    if section == "model" and "kind" in base.get("model", {}):
        return (
            f"model {base['model']['kind']!r} has no option {key.split('.', 1)[1]!r} "
            f"(its keys: {', '.join(k.split('.', 1)[1] for k in near)})"
        )
    import difflib

    hint = difflib.get_close_matches(key, known, n=1)
    tip = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown config key {key!r} (known: {', '.join(near)}){tip}"


def to_yaml(cfg: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(cfg))
