"""Hydra configs, composed through the Compose API (no Hydra app, no working-dir change)."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    Every Hydra or OmegaConf failure becomes an IatrunError with a one-line message.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    if user_dir is not None:
        user = Path(user_dir).expanduser().resolve()
        if not user.is_dir():
            raise IatrunError(f"--config-dir {user_dir} is not a folder")
        overrides.append(f"hydra.searchpath=[file://{user}]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
            return OmegaConf.to_container(cfg, resolve=True)
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
        msg = _one_line(e)
        m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
        if m:
            raise IatrunError(_unknown_key(m.group(1), overrides)) from None
        raise IatrunError(f"bad override: {msg}") from None
    except OmegaConfBaseException as e:
        raise IatrunError(f"bad config: {_one_line(e)}") from None
    finally:
        GlobalHydra.instance().clear()


def _unknown_key(key: str, overrides: list[str]) -> str:
    """Explain an override of a key that does not exist, listing the keys that do."""
    groups = [o for o in overrides if re.match(r"^(task|model|train)=", o)]
    try:
        base = compose(groups)
    except IatrunError:
        base = {}
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
