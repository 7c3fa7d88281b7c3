"""plots.format, plots.dpi and plots.heatmap_scale: how run and sweep figures are written."""

import pytest
from _synthetic import BASES6, cells, sweep_folder
from matplotlib.image import imread

from iatrun import plotstyle
from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.plotstyle import PlotStyle
from iatrun.report import build, figures, paper, tables
from iatrun.sweep.grid import config_hash
from iatrun.tune import setting_hash


def memorization_cells():
    return cells(lambda bi, bo, s: 80 + BASES6.index(bi) + s, lambda bi, bo, s: 1e-3 * (1 + BASES6.index(bo)))


def test_a_sweeps_plots_overrides_set_its_report_figures(tmp_path, monkeypatch):
    spec = {"overrides": ["plots.format=svg"]}
    folder = sweep_folder(tmp_path / "sw", memorization_cells(), monkeypatch, figures=True, spec=spec)
    build.build(folder)
    names = sorted(p.name for p in (folder / "figures").iterdir())
    assert names == ["fitting_heatmap.svg", "memorization_heatmap.svg"]
    report = (folder / "report.md").read_text()
    assert "figures/fitting_heatmap.svg" in report and ".png" not in report
    # an explicit style wins, and the figures of the earlier format are removed
    build.build(folder, PlotStyle(format="pdf"))
    assert sorted(p.name for p in (folder / "figures").iterdir()) == [
        "fitting_heatmap.pdf",
        "memorization_heatmap.pdf",
    ]
    assert (folder / "figures" / "fitting_heatmap.pdf").read_bytes()[:5] == b"%PDF-"
    assert "- [fitting_heatmap](figures/fitting_heatmap.pdf)" in (folder / "report.md").read_text()


def test_sweep_style_reads_grid_and_command_line_overrides(tmp_path, monkeypatch):
    spec = {
        "grid_spec": {"overrides": ["plots.dpi=200", "plots.format=pdf"]},
        "overrides": ["plots.format=svg"],
    }
    folder = sweep_folder(tmp_path / "sw", memorization_cells(), monkeypatch, spec=spec)
    assert build.sweep_style(folder) == PlotStyle(format="svg", dpi=200, heatmap_scale="per-table")
    (folder / "sweep.yaml").write_text("grid: g\ncells: {}\noverrides: [plots.dpi=3]\n")
    with pytest.raises(IatrunError, match="plots.dpi must be an integer from 20 to 1200, got 3"):
        build.sweep_style(folder)


@pytest.mark.parametrize("scale, colorbars", [("per-table", 2), ("shared", 1)])
def test_heatmap_scale_gives_each_table_its_own_colour_bar_or_one_for_both(monkeypatch, scale, colorbars):
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig))
    ours = tables.pair_table(memorization_cells(), "memorization", "accuracy_pct")
    with plotstyle.style(PlotStyle(heatmap_scale=scale)):
        figures.heatmap(ours, paper.table("memorization"), "memorization", True, "heat.png")
    (fig,) = drawn
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == colorbars
    limits = {tuple(round(v, 6) for v in im.get_clim()) for ax in fig.axes[:2] for im in ax.get_images()}
    assert len(limits) == (1 if scale == "shared" else 2)  # one colour scale for both, or one each


def test_dpi_sets_a_pngs_pixels_and_svg_carries_no_date(tmp_path):
    ours = tables.pair_table(memorization_cells(), "memorization", "accuracy_pct")
    widths = {}
    for dpi in (50, 100):
        with plotstyle.style(PlotStyle(dpi=dpi)):
            figures.heatmap(ours, paper.table("memorization"), "memorization", True, tmp_path / f"h{dpi}.png")
        widths[dpi] = imread(tmp_path / f"h{dpi}.png").shape[1]
    assert 1.9 < widths[100] / widths[50] < 2.1
    for name in ("a.svg", "b.svg"):
        figures.heatmap(ours, paper.table("memorization"), "memorization", True, tmp_path / name)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    with pytest.raises(IatrunError, match="must end in .png, .svg or .pdf"):
        figures.heatmap(ours, paper.table("memorization"), "memorization", True, tmp_path / "h.gif")


def test_figure_settings_do_not_change_a_cells_hash_or_its_tuning_record():
    base = compose(["task=fitting", "model=iat", "train.lr=auto"])
    styled = compose(["task=fitting", "model=iat", "train.lr=auto", "plots.format=svg", "plots.dpi=300"])
    assert styled["plots"]["format"] == "svg" and base["plots"] == {
        "format": "png",
        "dpi": 110,
        "heatmap_scale": "per-table",
    }
    assert config_hash(styled) == config_hash(base)
    assert setting_hash(styled) == setting_hash(base)
