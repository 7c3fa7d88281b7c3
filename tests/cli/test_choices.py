"""The command line's choices (help, completion, `-h`, switches) and `iatrun list ... --json`."""

import json

from typer.testing import CliRunner

from iatrun.cli import app, choices

runner = CliRunner()


def test_the_closed_choices_are_the_registries():
    from iatrun.nn.bases import BASES
    from iatrun.nn.iat import METHODS
    from iatrun.sweep.run import ENGINES
    from iatrun.train import DTYPES

    assert list(choices.BASES) == BASES.names()
    assert set(choices.METHODS) == set(METHODS)
    assert set(choices.ENGINES) == set(ENGINES)
    assert set(choices.DTYPES) == set(DTYPES)


def test_help_lists_the_choices_and_no_type_beside_switches():
    res = runner.invoke(app, ["fit", "-h"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "<rect|pwl|pwq|fourier|pwl-w|rect-w|pwl-wd|rect-wd>" in res.output
    assert "<mesh|exact>" in res.output and "<float32|float64>" in res.output
    assert "<bool>" not in res.output
    assert "--help" in res.output and "-h" in res.output


def test_a_value_outside_a_choice_is_one_error_line():
    res = runner.invoke(app, ["fit", "--basis-in", "sine"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: Invalid value for '--basis-in': 'sine' is not one of 'rect', 'pwl', 'pwq', 'fourier', "
        "'pwl-w', 'rect-w', 'pwl-wd', 'rect-wd'."
    ]
    res = runner.invoke(app, ["fit", "--basis-out", "pwqq"])
    assert res.output.strip().endswith("'pwl-wd', 'rect-wd' (did you mean 'pwq'?)")


def test_completion_offers_names_from_the_config_folders():
    assert choices.complete_grid("stu") == ["study", "study-check"]
    assert choices.complete_task("") == ["fitting", "memorization"]
    assert choices.complete_launcher("s") == ["submitit_local", "submitit_slurm"]
    assert "none" in choices.complete_launcher("")
    assert choices.complete_device("cu") == ["cuda"]


def test_list_json_gives_objects_a_script_can_read():
    res = runner.invoke(app, ["list", "bases", "--json"])
    rows = json.loads(res.output)
    fourier = next(r for r in rows if r["basis"] == "fourier")
    assert fourier["global"] is True and fourier["zero_integral"] is True and fourier["continuous"] is True
    assert next(r for r in rows if r["basis"] == "rect")["continuous"] is False
    grids = {r["grid"]: r for r in json.loads(runner.invoke(app, ["list", "grids", "--json"]).output)}
    assert grids["paper"]["seeds"] == 3 and grids["paper"]["file"] == "conf/sweep/paper.yaml"
    assert grids["quick"]["seeds"] == 1
    launchers = json.loads(runner.invoke(app, ["list", "launchers", "--json"]).output)
    assert {r["launcher"]: r["cluster"] for r in launchers} == {
        "submitit_local": "local",
        "submitit_slurm": "slurm",
    }
    models = json.loads(runner.invoke(app, ["list", "models", "--json"]).output)
    assert {"model": "iat", "option": "basis_in", "type": "str", "default": "fourier"} in models


def test_list_grids_includes_a_users_config_dir_first(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "mine.yaml").write_text(
        "description: my grid\nseeds: [0, 1]\nblocks: [{task: fitting}]\n"
    )
    res = runner.invoke(app, ["list", "grids", "--json", "--config-dir", str(tmp_path)])
    mine = next(r for r in json.loads(res.output) if r["grid"] == "mine")
    assert mine == {
        "grid": "mine",
        "description": "my grid",
        "seeds": 2,
        "file": str(tmp_path / "sweep" / "mine.yaml"),
    }
