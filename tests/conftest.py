import sys

import pytest
import torch
from _support import write_grids


def pytest_addoption(parser):
    parser.addoption("--slurm", action="store_true", help="run the tests marked slurm (a running cluster)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slurm`` need a running cluster (make slurm-up): they run with ``--slurm`` (as
    ``.ci/run`` does, after ``make test``) and are deselected otherwise, not skipped."""
    if config.getoption("--slurm"):
        return
    keep = [i for i in items if "slurm" not in i.keywords]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "slurm" in i.keywords])
        items[:] = keep


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


# The devices the numerical tests run on: the CPU always, CUDA where torch sees one (no skips on a
# CPU-only machine: the parameter is simply absent). Tolerances are the CPU's unless a test says.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def confdir(tmp_path):
    """A --config-dir holding the tiny sweep grids of tests/_support.py."""
    return write_grids(tmp_path / "conf")


@pytest.fixture(scope="module")
def one_thread():
    """Many tiny ops: one intra-op thread is faster, and fair on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """A counter of the tensor-to-host reads whose caller is iatrun code."""
    count = {"n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("iatrun"):
                count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return count
