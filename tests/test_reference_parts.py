"""`make reference`'s parts: for each reference folder, the parts `make reference-parts` lists cut
its grid into pieces that cover every cell exactly once (so running every part, then the whole
grid, trains nothing twice and leaves nothing out)."""

import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from iatrun.sweep.grid import expand, load_grid, select

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> str:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _parts() -> dict[str, list[str]]:
    """folder → its part targets, as `make reference-parts` prints them."""
    out = {}
    for line in _make("reference-parts").splitlines():
        folder, _, targets = line.partition(":")
        out[folder.strip()] = targets.split()
    return out


def _sweep_line(target: str) -> list[str]:
    """The `iatrun sweep` command `make -n TARGET` would run (the install lines left out)."""
    text = _make("-n", target, "JOBS=1").replace("\\\n", " ")  # a recipe's continued lines joined
    lines = [ln for ln in text.splitlines() if " sweep " in ln]
    assert len(lines) == 1, (target, lines)
    return shlex.split(lines[0])


def _selection(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """Grid name, --where selections and trailing overrides of one `iatrun sweep` command line."""
    grid, where, overrides, i = None, [], [], argv.index("sweep") + 1
    while i < len(argv):
        if argv[i] in ("--grid", "--where", "--out", "--jobs", "--device", "--reuse"):
            grid = argv[i + 1] if argv[i] == "--grid" else grid
            where += [argv[i + 1]] if argv[i] == "--where" else []
            i += 2
        else:
            overrides.append(argv[i])
            i += 1
    return grid, where, overrides


@pytest.mark.parametrize("folder", ["paper", "mesh", "study", "exact"])
def test_the_parts_of_each_reference_folder_cover_its_grid_once(folder):
    parts = _parts()[folder]
    assert parts and all(p.startswith(f"reference-{folder}") for p in parts)
    grid_name, _, overrides = _selection(_sweep_line(parts[0]))
    grid = load_grid(grid_name)
    every = expand(grid, overrides)
    seen = Counter()
    for part in parts:
        name, where, over = _selection(_sweep_line(part))
        assert (name, over) == (grid_name, overrides), part  # one grid, the same overrides: one folder
        chosen = select(every, where)
        assert chosen, f"{part} selects no cell"
        seen.update(c.key for c in chosen)
    missing = sorted({c.key for c in every} - set(seen))
    assert not missing, f"cells no part runs: {missing}"
    assert max(seen.values()) == 1, f"cells in two parts: {sorted(k for k, n in seen.items() if n > 1)}"
