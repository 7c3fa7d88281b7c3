"""iatrun: experiments with ReLU and IAT-ReLU networks (Integral Activation Transform).

Heavy modules (torch) load lazily so that ``iatrun --help`` answers fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "IAT": "iatrun.nn.iat",
    "IatrunError": "iatrun.errors",
    "build_model": "iatrun.nn.models",
    "register_model": "iatrun.nn.models",
    "register_basis": "iatrun.nn.bases",
    "register_activation": "iatrun.nn.activations",
    "load_run": "iatrun.results",
    "load_sweep": "iatrun.report.load",
    "BASES": "iatrun.nn.bases",
    "MODELS": "iatrun.nn.models",
    "TASKS": "iatrun.tasks",
    "ACTIVATIONS": "iatrun.nn.activations",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'iatrun' has no attribute {name!r}")
