"""iatrun.plots draws on bare Figure objects: importing or using it leaves pyplot and the backend alone."""

import subprocess
import sys

from matplotlib.image import imread
from matplotlib.ticker import NullFormatter

from iatrun.plots import _minor_log_labels

PNG = b"\x89PNG\r\n\x1a\n"


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout (stderr in the failure message)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_leaves_pyplot_and_the_backend_alone():
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')  # a user's choice, which importing iatrun.plots must keep\n"
        "import iatrun.plots\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print(matplotlib.get_backend())\n"
    )
    assert python(code) == "svg"


def test_run_folder_figures_are_written_without_pyplot(tmp_path):
    """A loss plot and a regions plot are valid PNGs, drawn with neither pyplot nor a backend switch."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from iatrun import plots\n"
        "from iatrun.analysis.construct import construct_model\n"
        "from iatrun.analysis.regions import regions\n"
        f"plots.loss_plot([(s, 1 / (1 + s), 1e-3) for s in range(50)], {str(tmp_path / 'loss.png')!r})\n"
        "reg = regions(construct_model([(-1, -1), (-0.5, 1), (0, -1), (1, 0)]), -1, 1)\n"
        f"plots.regions_plot(reg, {str(tmp_path / 'regions.png')!r}, title='blog')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "print(matplotlib.get_backend())\n"
    )
    assert python(code) == "svg"
    for name in ("loss.png", "regions.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert imread(tmp_path / "loss.png").shape == (385, 660, 4)  # 6 × 3.5 inches at 110 dpi, untrimmed
    assert imread(tmp_path / "regions.png").ndim == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "regions.png"]  # no temporary left


def test_loss_plot_minor_labels_fill_in_where_powers_of_ten_are_few():
    assert isinstance(_minor_log_labels([1e-4, 0.5]), NullFormatter)  # 1e-3 … 0.1: majors suffice
    one = _minor_log_labels([0.03, 0.7])  # only 0.1 is a power of ten inside
    assert [one(v, None) for v in (0.02, 0.03, 0.05, 0.2, 0.3)] == ["0.02", "", "0.05", "0.2", ""]
    none = _minor_log_labels([0.13, 0.7])  # no power of ten inside: label every minor tick
    assert [none(v, None) for v in (0.2, 0.3, 0.7)] == ["0.2", "0.3", "0.7"]
    assert isinstance(_minor_log_labels([]), NullFormatter)
