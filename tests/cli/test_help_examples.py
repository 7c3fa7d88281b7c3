"""Every command's `--help` ends with examples that work as pasted: each one is run here, in order
from one folder, with a tiny budget added (later arguments win), and must succeed."""

import shlex

import pytest
import torch
import typer
from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.cli.common import EXAMPLE_PREFIX

runner = CliRunner()

# what each command gets added so an example runs in seconds (nothing of its meaning changes)
TINY = {
    "fit": ["train.steps=3", "--width", "8"],
    "sweep": ["train.steps=3", "model.width=8"],
    "converge": ["--r-max", "4", "--samples", "8"],
}
# commands that make what later examples use (a run folder, a sweep folder) come first
ORDER = ["construct", "regions", "fit", "sweep", "report", "status", "list", "plot", "converge", "bench"]


def commands(group, path=()):
    """(path, click command) for every command and group below ``group``, depth first."""
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        yield (*path, name), cmd
        yield from commands(cmd, (*path, name))


def listed():
    return list(commands(typer.main.get_command(app)))


def examples_of(cmd) -> list[str]:
    return [ln.strip()[2:] for ln in (cmd.epilog or "").splitlines() if ln.startswith(EXAMPLE_PREFIX)]


def test_every_command_and_group_has_two_or_three_examples_of_itself():
    for path, cmd in listed():
        found = examples_of(cmd)
        assert 2 <= len(found) <= 3, (path, found)
        assert all(shlex.split(e)[: len(path) + 1] == ["iatrun", *path] for e in found), (path, found)


@pytest.mark.slow
def test_every_help_example_runs_as_pasted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = sorted(
        {e for _, cmd in listed() for e in examples_of(cmd)},
        key=lambda e: (ORDER.index(shlex.split(e)[1]) if shlex.split(e)[1] in ORDER else 99, e),
    )
    assert len(runs) >= 30
    for example in runs:
        args = shlex.split(example)[1:]
        if args[0] == "gpu-check" and not torch.cuda.is_available():
            res = runner.invoke(app, args)  # says in one line that it needs a GPU
            assert res.exit_code == 2 and "needs a CUDA" in res.output, (example, res.output)
            continue
        extra = [] if "--dry-run" in args else TINY.get(args[0], [])
        res = runner.invoke(app, [*args, *extra])
        assert res.exit_code == 0, (example, res.output)
