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


class _Later(str):
    """A help-text default computed only when the help is shown: a model option's default comes from
    its builder's signature, and reading it imports torch, which ``iatrun`` should not pay at start."""

    def __new__(cls, compute):
        obj = super().__new__(cls, "from config")
        obj._compute = compute
        return obj

    def __str__(self) -> str:
        return str(self._compute())

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def model_default(kind: str, key: str) -> str:
    """A model option's default for ``--help`` (``iatrun.schema.model_defaults``), read when shown."""

    def compute():
        from iatrun.schema import model_defaults

        return model_defaults(kind).get(key, "from config")

    return _Later(compute)


def flag_overrides(pairs: list[tuple[str, object]], explicit: list[str]) -> list[str]:
    """Turn given flags into Hydra overrides, placed before the explicit ones.

    An explicit override of the same key wins over the flag (it is the more specific request).
    """
    from iatrun.cli.choices import value

    explicit_keys = {o.split("=", 1)[0].lstrip("+~") for o in explicit if "=" in o}
    out = [f"{key}={value(v)}" for key, v in pairs if v is not None and key not in explicit_keys]
    return out + list(explicit)


def interactive(quiet: bool) -> bool:
    """Animate only for a terminal, and never with --quiet."""
    return not quiet and sys.stdout.isatty()


EXAMPLE_PREFIX = "  $ "


def examples(*commands: str) -> str:
    """A command's ``--help`` epilog: commands that work as pasted, in this order, from one folder
    (``tests/cli/test_help_examples.py`` runs every one of them)."""
    return "Examples:\n\n" + "\n\n".join(EXAMPLE_PREFIX + c for c in commands)
