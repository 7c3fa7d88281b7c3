"""Pieces shared by the commands: config defaults for help texts, overrides, console output."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import yaml


@cache
def conf_default(group_file: str, key: str) -> str:
    """A value from a packaged YAML file, read without Hydra, for ``--help`` texts."""
    from importlib import resources

    path = Path(str(resources.files("iatrun.conf"))) / group_file
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError:
        return "from config"
    return str(data.get(key, "from config"))


def flag_overrides(pairs: list[tuple[str, object]], explicit: list[str]) -> list[str]:
    """Turn given flags into Hydra overrides, placed before the explicit ones.

    An explicit override of the same key wins over the flag (it is the more specific request).
    """
    explicit_keys = {o.split("=", 1)[0].lstrip("+~") for o in explicit if "=" in o}
    out = [f"{key}={value}" for key, value in pairs if value is not None and key not in explicit_keys]
    return out + list(explicit)


def interactive(quiet: bool) -> bool:
    """Animate only for a terminal, and never with --quiet."""
    return not quiet and sys.stdout.isatty()
