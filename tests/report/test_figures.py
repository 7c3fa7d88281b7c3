"""The sweep figures draw on bare Figure objects: files are written and pyplot is never imported."""

import subprocess
import sys
from pathlib import Path

from _synthetic import BASES6, cells, mesh_sweep

from iatrun.report import figures, paper, tables


def test_heatmap_and_mesh_figures_are_written(tmp_path):
    df = cells(lambda bi, bo, s: 80 + BASES6.index(bi) + s, lambda bi, bo, s: 1e-3)
    ours = tables.pair_table(df, "memorization", "accuracy_pct")
    figures.heatmap(ours, paper.table("memorization"), "memorization", True, tmp_path / "heat.png")
    mesh = tables.mesh_table(mesh_sweep())
    mesh["num_regions"] = mesh["mesh_ratio"] * 3.0  # the region panel too
    figures.mesh(mesh, tmp_path / "mesh.png")
    for name in ("heat.png", "mesh.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drawing_does_not_import_pyplot(tmp_path):
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from _synthetic import mesh_sweep\n"
        "from iatrun.report import figures, tables\n"
        "figures.mesh(tables.mesh_table(mesh_sweep()), Path(sys.argv[2]) / 'mesh.png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print('clean')\n"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", code, here, str(tmp_path)], capture_output=True, text=True)
    assert out.stdout.strip() == "clean", out.stderr
    assert (tmp_path / "mesh.png").is_file()
