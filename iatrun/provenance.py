"""What a run or sweep folder rests on: command, source commit, versions, host, device and dtype.

:func:`collect` returns one flat-ish dict that :mod:`iatrun.results` writes as ``provenance.json``
into every run folder and :mod:`iatrun.sweep.cells` as the ``provenance:`` block of ``sweep.yaml``:

    argv       the command line of the process that ran: ``sys.argv`` as the command saw it when it
               started (see :func:`command`), else the writing process's own ``sys.argv``
    overrides  the Hydra overrides the command composed its config(s) from (flags turned into
               overrides, for ``iatrun fit``; the sweep's own for a sweep cell), or null
    commit     ``git rev-parse HEAD`` of the checkout iatrun runs from, or null: not a checkout (the
               package folder's parent must be the repository's top level, so a copy installed in a
               venv inside some other repository is not mistaken for it), git missing, or git failing
    dirty      whether the code that ran differs from that commit: ``git status --porcelain`` lists
               a change or an untracked file (not ignored) in the package, ``conf/`` or
               ``pyproject.toml``; results written into the checkout do not count. Null with
               ``commit``
    versions   python, torch, iatrun, and the CUDA torch was built for (null on a CPU build)
    host       the host name
    device     the device the tensors were on: ``cpu`` or ``cuda:<index>`` (only when given)
    device_name the GPU's name, or the CPU's model name (only with ``device``)
    dtype      the parameters' dtype, e.g. ``float32`` (only when given)
    threads    torch's intra-op thread count (results on a CPU depend on it; only with ``device``)
    time       when it was collected, local ISO time to the second

The git state, versions and host are computed once per process (two short subprocesses with a
timeout), since a sweep writes hundreds of run folders. Nothing here ever raises for a missing or
odd environment: what cannot be found is null.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 5.0
# The command of the running CLI invocation, as JSON. An environment variable rather than a module
# global so that the processes a command starts (--jobs workers, submitit jobs) see it too.
COMMAND_ENV = "IATRUN_COMMAND"


def package_dir() -> Path:
    """The folder of the iatrun package that is running (its parent is the checkout, if any)."""
    import iatrun

    return Path(iatrun.__file__).resolve().parent


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],  # status must not take the index lock
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # git missing, timed out, folder gone
        return None
    return out.stdout if out.returncode == 0 else None


CODE_PATHS = ("conf", "pyproject.toml")  # beside the package: what makes a result, besides the code


@cache
def git_state(folder: str) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout whose top level holds the package ``folder``; (None, None)
    when it is not one. Cached per folder: one ``rev-parse`` and one ``status`` per process."""
    path = Path(folder)
    head = _git(path, "rev-parse", "--show-toplevel", "HEAD")
    lines = (head or "").split()
    if len(lines) != 2 or Path(lines[0]).resolve() != path.parent.resolve():
        return None, None
    status = _git(path.parent, "status", "--porcelain", "--", path.name, *CODE_PATHS)
    return lines[1], (None if status is None else bool(status.strip()))


@cache
def _static() -> dict[str, Any]:
    """Everything that does not change within a process: versions and host."""
    import torch

    from iatrun import __version__

    return {
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),  # a str subclass yaml.safe_dump refuses
            "iatrun": __version__,
            "cuda": None if torch.version.cuda is None else str(torch.version.cuda),
        },
        "host": socket.gethostname(),
    }


@cache
def cpu_name() -> str | None:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what ``platform`` knows, or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _device(device: Any) -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index)}
    return {"device": str(dev), "device_name": cpu_name() if dev.type == "cpu" else None}


@contextmanager
def command(overrides: Sequence[str] | None, argv: Sequence[str] | None = None) -> Iterator[None]:
    """Within the block, :func:`collect` records ``argv`` (default ``sys.argv`` now) and
    ``overrides``; the CLI commands wrap their work in it. The previous value is restored after."""
    before = os.environ.get(COMMAND_ENV)
    cmd = {"argv": list(sys.argv if argv is None else argv), "overrides": None}
    if overrides is not None:
        cmd["overrides"] = [str(o) for o in overrides]
    os.environ[COMMAND_ENV] = json.dumps(cmd)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(COMMAND_ENV, None)
        else:
            os.environ[COMMAND_ENV] = before


def current_command() -> dict[str, Any]:
    """{"argv", "overrides"} of the running command (:func:`command`), else this process's argv."""
    try:
        cmd = json.loads(os.environ.get(COMMAND_ENV) or "null")
        if isinstance(cmd, dict) and isinstance(cmd.get("argv"), list):
            return {"argv": cmd["argv"], "overrides": cmd.get("overrides")}
    except ValueError:
        pass
    return {"argv": list(sys.argv), "overrides": None}


def collect(device: Any = None, dtype: Any = None) -> dict[str, Any]:
    """The provenance of a folder written now (see the module docstring for each key).

    ``device`` (a torch.device or its name) and ``dtype`` (a torch.dtype or its name) are what the
    run actually used; without them those keys are left out (a sweep folder's block).
    """
    commit, dirty = git_state(str(package_dir()))
    static = _static()
    out: dict[str, Any] = {**current_command(), "commit": commit, "dirty": dirty}
    out["versions"] = dict(static["versions"])
    out["host"] = static["host"]
    if device is not None:
        out.update(_device(device))
    if dtype is not None:
        out["dtype"] = str(dtype).removeprefix("torch.")
    if device is not None:
        import torch

        out["threads"] = torch.get_num_threads()
    out["time"] = datetime.now().isoformat(timespec="seconds")
    return out
