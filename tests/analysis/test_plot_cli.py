"""`iatrun plot bases` and `iatrun plot pattern` write their pictures (paper Figures 2, 3 and 5)."""

import pytest
from typer.testing import CliRunner

from iatrun.cli import app

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_plot_bases_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("plot", "bases", "--n", "5")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "results/figures/bases-n5.png"
    assert (tmp_path / "results/figures/bases-n5.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF-")])
def test_plot_bases_in_a_vector_format(tmp_path, suffix, magic):
    res = invoke("plot", "bases", "--n", "4", "--out", tmp_path / f"b{suffix}")
    assert res.exit_code == 0, res.output
    assert (tmp_path / f"b{suffix}").read_bytes()[:5] == magic


@pytest.mark.parametrize("basis", ["fourier", "rect"])
def test_plot_pattern_to_a_file_and_to_a_folder(tmp_path, basis):
    res = invoke("plot", "pattern", "--basis-in", basis, "--seed", "3", "--out", tmp_path / "p.png")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG
    res = invoke("plot", "pattern", "--basis-in", basis, "--n", "6", "--out", tmp_path / "figs")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figs" / f"pattern-{basis}-n6-s0.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    "args, needle",
    [
        (["plot", "pattern", "--basis-in", "fourrier"], "did you mean 'fourier'"),
        (["plot", "pattern", "--basis-in", "pwl", "--n", "0"], "--n must be an integer >= 1"),
        (["plot", "bases", "--n", "-2"], "--n must be an integer >= 1"),
        (["plot", "bases", "--out", "x.jpg"], "--out must end in .png, .svg or .pdf (or name a folder), got"),
        (["plot", "pattern"], "--basis-in"),
    ],
)
def test_plot_errors_are_one_line(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and needle in res.output, res.output
    assert list(tmp_path.iterdir()) == []
