"""The package layout holds: no import cycle (imports inside functions included), small modules,
no process-wide side effect at import, and the README's layout section matches the tree."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iatrun"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every iatrun module ``path`` imports, at top level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from iatrun.nn import bases`` imports the submodule iatrun.nn.bases
            names = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            names = names or [node.module]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) - {name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_parser_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from iatrun.nn import bases\n    import iatrun.files\n")
    assert imports(src, {"iatrun.nn", "iatrun.nn.bases", "iatrun.files"}) == {
        "iatrun.nn.bases",
        "iatrun.files",
    }


def test_no_import_cycle():
    edges = graph()
    assert len(edges) > 30  # every module was found
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


@pytest.mark.parametrize(
    "lower, upper",
    [("iatrun.nn", "iatrun.train"), ("iatrun.nn", "iatrun.results"), ("iatrun", "iatrun.cli")],
)
def test_lower_layers_do_not_import_upper_ones(lower, upper):
    """The mathematics knows no disk or config; nothing below the CLI imports the CLI."""
    bad = [
        (m, i)
        for m, deps in graph().items()
        if (m == lower or m.startswith(lower + ".")) and not m.startswith(upper) and m != "iatrun.__main__"
        for i in deps
        if i == upper or i.startswith(upper + ".")
    ]
    assert not bad


def test_no_module_over_400_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long


def test_no_function_over_80_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {size} lines")
    assert not long


def test_import_has_no_process_wide_side_effect():
    """Importing the library changes neither the umask, the matplotlib backend nor torch's threads."""
    code = (
        "import os, sys, torch\n"
        "torch.set_num_threads(1); os.umask(0o027)\n"
        "import iatrun.results, iatrun.plots, iatrun.sweep.run, iatrun.report.build\n"
        "import iatrun.analysis.regions, iatrun.train, iatrun.batched, iatrun.bench\n"
        "assert os.umask(0o027) == 0o027, 'umask changed'\n"
        "assert torch.get_num_threads() == 1, 'threads changed'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "clean", out.stderr


def test_layout_page_lists_every_module():
    """Every module in the tree appears in docs/layout.md's layout section, and nothing else does."""
    text = (ROOT / "docs" / "layout.md").read_text()
    section = text.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    listed = set()
    folder = ""
    for line in tree.splitlines():
        if m := re.match(r"^  (\w+)/", line):
            folder = m.group(1)
        for word in re.findall(r"\b([a-z_]+\.py)\b", line):
            indent = len(line) - len(line.lstrip())
            listed.add(f"{folder}/{word}" if indent > 2 and folder else word)
    actual = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    assert listed == actual
