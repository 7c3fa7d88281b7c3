"""The typed config schema (iatrun.schema) applied by compose (iatrun.config): defaults, where they
live, types, unknown keys, value checks and launcher keys, through the library and the CLI."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from iatrun.cli import app
from iatrun.config import compose
from iatrun.errors import IatrunError
from iatrun.nn.models import MODELS, _iat
from iatrun.schema import model_defaults, validate_train
from iatrun.sweep.launch import launcher_config, launcher_names
from iatrun.tasks import TASKS

runner = CliRunner()

DEFAULT_MODEL = {
    "kind": "iat",
    "norm": "gain",
    "basis_in": "fourier",
    "basis_out": "pwq",
    "mesh_ratio": 4,
    "method": "mesh",
    "sigma": "relu",
    "wavelets": "single",
    "width": 128,
    "depth": 3,
}
DEFAULT_TRAIN = {
    "optimizer": "adam",
    "lr": 3.0e-3,
    "steps": 8000,
    "batch_size": None,
    "schedule": "constant",
    "log_every": 1,
    "tune": {
        "candidates": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        "seeds": [1000],
        "eta": 3,
        "min_fraction": 0.1111,
        "extend": 2,
    },
}


def test_defaults_compose_to_the_documented_values_in_order():
    cfg = compose([])
    assert list(cfg) == [
        "task",
        "model",
        "train",
        "seed",
        "device",
        "dtype",
        "out",
        "results_dir",
        "artifacts",
        "logger",
        "plots",
        "tf32",
    ]
    assert list(cfg["model"].items()) == list(DEFAULT_MODEL.items())  # same keys, values and order
    assert list(cfg["train"].items()) == list(DEFAULT_TRAIN.items())
    keys = ("seed", "device", "dtype", "out", "results_dir", "artifacts", "logger", "plots", "tf32")
    assert {k: cfg[k] for k in keys} == {
        "seed": 0,
        "device": "auto",
        "dtype": "float32",
        "out": None,
        "results_dir": "results",
        "artifacts": "full",
        "logger": "csv",
        "plots": {"format": "png", "dpi": 110, "heatmap_scale": "per-table"},
        "tf32": False,
    }
    assert list(cfg["task"]) == [
        "name",
        "seed",
        "target",
        "n_train",
        "holdout_factor",
        "multi_sine",
        "chirp",
        "piecewise_linear",
    ]
    assert cfg["task"]["n_train"] == 1000 and cfg["task"]["multi_sine"] == {
        "freqs": [1, 4, 8],
        "amps": [1.0, 0.5, 0.25],
    }


def test_other_kinds_and_tasks_keep_their_keys():
    relu = compose(["model=relu", "task=memorization"])
    assert relu["model"] == {"kind": "relu", "norm": "gain", "width": 64, "depth": 2}
    assert relu["task"] == {"name": "memorization", "seed": 0, "n_points": 4500, "dim": 16, "num_classes": 10}
    dec = compose(["model=decoupled"])["model"]
    assert list(dec) == list(DEFAULT_MODEL) and dec["method"] == "exact" and dec["kind"] == "decoupled"


def test_values_are_converted_to_their_schema_type():
    cfg = compose(["train.lr=1", "model.mesh_ratio=8", "task.chirp.f1=20", "train.batch_size=null"])
    assert cfg["train"]["lr"] == 1.0 and isinstance(cfg["train"]["lr"], float)
    assert cfg["model"]["mesh_ratio"] == 8
    assert cfg["task"]["chirp"] == {"f0": 1.0, "f1": 20, "amp": 1.0}  # a free-form target section


def test_free_form_target_sections_take_new_keys_and_deletions():
    cfg = compose(
        [
            "~task.chirp.amp",
            "~task.multi_sine.amps",
            "+task.multi_sine.amps=[1.0]",
            "++task.multi_sine.freqs=[2]",
        ]
    )
    assert cfg["task"]["chirp"] == {"f0": 1.0, "f1": 12.0}
    assert cfg["task"]["multi_sine"] == {"freqs": [2], "amps": [1.0]}
    with pytest.raises(IatrunError, match="target 'multi_sine' takes no parameter 'extra'"):
        compose(["+task.multi_sine.extra=1"])
    with pytest.raises(IatrunError, match="cannot delete 'model.sigma'"):
        compose(["~model.sigma"])


def test_the_builder_signature_is_the_one_place_of_model_defaults(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "probe.yaml").write_text("kind: probe\n")

    def probe(*, gain: float = 2.5, mode: str = "a", _private: int = 0):
        return lambda n: None

    MODELS.add("probe", probe)
    try:
        cfg = compose(["model=probe"], user_dir=tmp_path)
        assert list(cfg["model"].items()) == [
            ("kind", "probe"),
            ("norm", "gain"),
            ("gain", 2.5),
            ("mode", "a"),
            ("width", 128),
            ("depth", 3),
        ]
        monkeypatch.setattr(probe, "__kwdefaults__", {"gain": 7.0, "mode": "b", "_private": 0})
        cfg = compose(["model=probe"], user_dir=tmp_path)
        assert (cfg["model"]["gain"], cfg["model"]["mode"]) == (7.0, "b")
        assert model_defaults("probe") == {"norm": "gain", "gain": 7.0, "mode": "b"}
        assert compose(["model=probe", "model.gain=3"], user_dir=tmp_path)["model"]["gain"] == 3.0
        with pytest.raises(IatrunError, match=r"^model.gain must be a number, got 'x'$"):
            compose(["model=probe", "model.gain=x"], user_dir=tmp_path)
    finally:
        MODELS.remove("probe")
    assert "probe" not in MODELS


def test_editing_the_iat_builder_default_changes_the_composed_default(monkeypatch):
    monkeypatch.setattr(_iat, "__kwdefaults__", dict(_iat.__kwdefaults__, mesh_ratio=8))
    assert compose([])["model"]["mesh_ratio"] == 8
    assert model_defaults("iat")["mesh_ratio"] == 8


def test_a_task_registered_without_a_schema_is_free_form(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "train").mkdir()
    (tmp_path / "task" / "probe_task.yaml").write_text("name: probe_task\nseed: 0\nsize: 3\n")
    train = "model: {width: 4, depth: 1}\ntrain: {optimizer: adam, lr: 0.1, steps: 2, batch_size: null, "
    (tmp_path / "train" / "probe_task.yaml").write_text(
        "# @package _global_\n" + train + "schedule: constant, log_every: 1}\n"
    )
    TASKS.add("probe_task", lambda cfg: None)
    try:
        cfg = compose(["task=probe_task", "+task.extra=x"], user_dir=tmp_path)
        assert cfg["task"] == {"name": "probe_task", "seed": 0, "size": 3, "extra": "x"}
        with pytest.raises(IatrunError, match="unknown config key 'task.sise'.*did you mean 'task.size'"):
            compose(["task=probe_task", "task.sise=4"], user_dir=tmp_path)
    finally:
        TASKS.remove("probe_task")


def test_a_config_file_without_a_per_task_value_or_with_an_unknown_key_is_refused(tmp_path):
    for group in ("task", "train", "model"):
        (tmp_path / group).mkdir()
    (tmp_path / "task" / "probe_task.yaml").write_text("name: probe_task\nseed: 0\n")
    (tmp_path / "train" / "probe_task.yaml").write_text(
        "# @package _global_\nmodel: {width: 4, depth: 1}\n"
        "train: {optimizer: adam, lr: 0.1, steps: 2, batch_size: null, schedule: constant}\n"
    )
    TASKS.add("probe_task", lambda cfg: None)
    try:
        with pytest.raises(IatrunError, match=r"^config key 'train.log_every' has no value"):
            compose(["task=probe_task"], user_dir=tmp_path)
        assert compose(["task=probe_task", "train.log_every=2"], user_dir=tmp_path)["train"]["log_every"] == 2
    finally:
        TASKS.remove("probe_task")
    (tmp_path / "model" / "iat_typo.yaml").write_text("kind: iat\nbasis_inn: pwl\n")
    with pytest.raises(
        IatrunError, match=r"^config files: model 'iat' has no option 'basis_inn'.*'model.basis_in'"
    ):
        compose(["model=iat_typo"], user_dir=tmp_path)
    (tmp_path / "model" / "iat_type.yaml").write_text(
        "kind: iat\nmesh_ratio: four\n"
    )  # (compose caches files)
    with pytest.raises(IatrunError, match=r"^config files: model.mesh_ratio must be an integer, got 'four'$"):
        compose(["model=iat_type"], user_dir=tmp_path)


def test_validate_train_keeps_the_python_callers_defaults():
    validate_train({"steps": 1, "lr": 1e-3})  # schedule, optimizer and log_every may be left out
    with pytest.raises(IatrunError, match=r"^train.steps must be an integer >= 1, got 0$"):
        validate_train({"steps": 0, "lr": 1e-3})
    with pytest.raises(IatrunError, match=r"^train.lr must be a positive number or 'auto', got nan$"):
        validate_train({"steps": 1, "lr": float("nan")})


# --- the CLI: one error line, exit 2, nothing written ---------------------------------------------

FIT_ERRORS = [
    ("seed=abc", "error: seed must be an integer, got 'abc'"),
    ("artifacts=some", "error: unknown artifacts 'some' (known: full, lean)"),
    ("train.steps=1.5", "error: train.steps must be an integer >= 1, got 1.5"),
    ("model.mesh_ratio=x", "error: model.mesh_ratio must be an integer, got 'x'"),
    (
        "+foo=1",
        "error: cannot add 'foo': the config schema has no such key "
        "(known: task, model, train, seed, device, dtype, out, results_dir, artifacts, logger, plots, tf32)",
    ),
    (
        "+model.foo=1",
        "error: model 'iat' has no option 'foo' "
        "(its keys: kind, norm, basis_in, basis_out, mesh_ratio, method, sigma, wavelets, width, depth)",
    ),
    (
        "model.basis_inn=pwl",
        "error: model 'iat' has no option 'basis_inn' (its keys: kind, norm, basis_in, basis_out, "
        "mesh_ratio, method, sigma, wavelets, width, depth); did you mean 'model.basis_in'?",
    ),
    ("model.norm=group", "error: unknown norm 'group' (known: none, gain, batch, layer)"),
    ("device=cuda:x", "error: unknown device 'cuda:x' (known: auto, cpu, cuda, cuda:N)"),
    ("train.optimizer=sgd", "error: unknown train.optimizer 'sgd' (known: adam)"),
]


def one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("override, line", FIT_ERRORS, ids=[o for o, _ in FIT_ERRORS])
def test_fit_config_errors_are_one_line(tmp_path, override, line):
    res = runner.invoke(app, ["fit", "--out", str(tmp_path / "run"), f"results_dir={tmp_path}", override])
    assert one_error_line(res) == line
    assert list(tmp_path.iterdir()) == []


def test_a_launcher_key_typo_is_refused_before_the_sweep_folder(tmp_path):
    args = ["sweep", "--grid", "quick", "--out", str(tmp_path / "sw"), "--launcher", "submitit_slurm"]
    res = runner.invoke(app, [*args, "launcher.timout_min=5"])
    assert one_error_line(res) == (
        "error: unknown launcher key 'timout_min' for cluster 'slurm' (did you mean 'timeout_min'?)"
    )
    res = runner.invoke(app, [*args, "launcher.gpus_per_node=two"])
    assert one_error_line(res) == "error: launcher key 'gpus_per_node' must be int, got 'two'"
    assert list(tmp_path.iterdir()) == []


def test_a_users_launcher_is_found_by_name_and_checked(tmp_path):
    conf = tmp_path / "conf"
    (conf / "launcher").mkdir(parents=True)
    (conf / "launcher" / "mine.yaml").write_text("cluster: local\ntimeout_min: 5\ncpus_per_task: 2\n")
    assert "mine" in launcher_names(conf) and "submitit_local" in launcher_names(conf)
    assert launcher_config("mine", conf, {"gpus_per_node": 0}) == {
        "cluster": "local",
        "timeout_min": 5,
        "cpus_per_task": 2,
        "gpus_per_node": 0,
    }
    base = ["sweep", "--grid", "quick", "--config-dir", str(conf), "--out", str(tmp_path / "sw")]
    # the name is accepted: the refusal is the later one, about --jobs
    res = runner.invoke(app, [*base, "--launcher", "mine", "--jobs", "2"])
    assert one_error_line(res).startswith("error: --jobs and --launcher cannot be combined")
    (conf / "launcher" / "mine.yaml").write_text("cluster: local\ncpus_per_tsk: 2\n")
    res = runner.invoke(app, [*base, "--launcher", "mine"])
    assert one_error_line(res) == (
        "error: unknown launcher key 'cpus_per_tsk' for cluster 'local' (did you mean 'cpus_per_task'?)"
    )
    res = runner.invoke(app, [*base, "--launcher", "mien"])
    assert one_error_line(res).startswith("error: unknown launcher 'mien' (known: none, mine, submitit_local")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf"]


# --- help texts and listings show the builder defaults ----------------------------------------------


def test_fit_help_shows_the_builder_defaults():
    res = runner.invoke(app, ["fit", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    rows = {line.split()[1]: line for line in res.stdout.splitlines() if line.startswith("│ --")}
    expected = {
        "--basis-in": "(fourier)",
        "--basis-out": "(pwq)",
        "--mesh-ratio": "(4)",
        "--method": "(mesh)",
    }
    for flag, default in expected.items():
        assert f"[default: {default}]" in rows[flag], rows[flag]
    assert "[default: (0)]" in rows["--seed"]


def test_list_models_shows_each_option_with_type_and_default():
    res = runner.invoke(app, ["list", "models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in res.stdout.splitlines() if "│" in line]
    kind, table = None, {}
    for model, option, type_name, default in rows:
        kind = model or kind
        table[kind, option] = (type_name, default)
    assert table["iat", "mesh_ratio"] == ("int", "4")
    assert table["iat", "basis_in"] == ("str", "fourier")
    assert table["decoupled", "method"] == ("str", "exact")
    assert table["relu", "norm"][0] == "str" and table["relu", "norm"][1].startswith("gain")
    assert ("relu", "basis_in") not in table


def test_config_and_schema_import_no_upper_layer():
    code = (
        "import sys, iatrun.config, iatrun.schema\n"
        "bad = [m for m in sys.modules if m.startswith(('iatrun.train', 'iatrun.results', "
        "'iatrun.sweep', 'iatrun.report', 'iatrun.cli'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
