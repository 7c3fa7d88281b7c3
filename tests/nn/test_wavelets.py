"""The wavelet family as a declared choice: single-scale (pwl-w, rect-w) or dyadic multiscale."""

import pytest
import torch

from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.nn import bases
from iatrun.nn.models import build_model
from iatrun.sweep.grid import expand, load_grid

T = torch.linspace(-1, 1, 40_001, dtype=torch.float64)[:-1] + 1 / 40_000  # midpoints


def test_dyadic_supports_fill_levels_coarse_to_fine():
    a, w = bases.dyadic_supports(7)  # levels 0, 1, 2 complete: 1 + 2 + 4
    assert w.tolist() == [1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert a.tolist() == [-1.0, -1.0, 0.0, -1.0, -0.5, 0.0, 0.5]
    a, w = bases.dyadic_supports(5)  # a partial level 2 takes evenly spaced supports
    assert a.tolist()[3:] == [-1.0, 0.0] and w.tolist()[3:] == [0.25, 0.25]
    assert bases.dyadic_levels(7) == 2 and bases.dyadic_levels(8) == 3 and bases.dyadic_levels(1) == 0


@pytest.mark.parametrize("name", ["pwl-wd", "rect-wd"])
def test_dyadic_wavelets_have_zero_integral_and_halve_their_support_per_level(name):
    v = bases.evaluate(name, 7, T)  # (T, 7)
    assert v.abs().amax(0).tolist() == pytest.approx([1.0] * 7, abs=1e-3)  # peaks between samples
    assert (v.mean(0) * 2).abs().max() < 1e-9  # ∫ φ_i = 0
    support = (v != 0).double().mean(0) * 2  # measure of each support
    assert support.tolist() == pytest.approx([2, 1, 1, 0.5, 0.5, 0.5, 0.5], abs=1e-3)


def test_haar_level_one_is_plus_then_minus_on_each_half():
    v = bases.evaluate("rect-wd", 3, torch.tensor([-0.9, -0.1, 0.1, 0.9], dtype=torch.float64))
    assert v[:, 0].tolist() == [1, 1, -1, -1]
    assert v[:, 1].tolist() == [1, -1, 0, 0] and v[:, 2].tolist() == [0, 0, 1, -1]


def test_the_family_maps_only_the_wavelets():
    assert bases.family_basis("pwl-w", "dyadic") == "pwl-wd"
    assert bases.family_basis("rect-w", "dyadic") == "rect-wd"
    assert bases.family_basis("fourier", "dyadic") == "fourier"
    assert bases.family_basis("rect-w", "single") == "rect-w"
    with pytest.raises(IatrunError, match="unknown wavelet family 'octave'"):
        bases.family_basis("rect-w", "octave")


def test_tables_keep_six_bases_and_grids_expand_all_to_them():
    assert bases.table_bases() == ["rect", "pwl", "pwq", "fourier", "pwl-w", "rect-w"]
    assert len(expand(load_grid("quick"), [])) == 78


def test_a_model_with_dyadic_wavelets_uses_them_and_keeps_its_table_names():
    cfg = compose(["model.basis_in=pwl-w", "model.basis_out=rect-w", "model.wavelets=dyadic"])
    assert cfg["model"]["basis_in"] == "pwl-w" and cfg["model"]["wavelets"] == "dyadic"
    model = build_model("iat", 1, 8, 2, 1, basis_in="pwl-w", basis_out="rect-w", wavelets="dyadic")
    assert (model.acts[0].basis_in, model.acts[0].basis_out) == ("pwl-wd", "rect-wd")
    single = build_model("iat", 1, 8, 2, 1, basis_in="pwl-w", basis_out="rect-w")
    x = torch.randn(6, 1)
    assert not torch.allclose(model(x), single(x))
