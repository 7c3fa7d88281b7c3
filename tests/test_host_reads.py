"""The step loops read nothing back from the device between checks (iatrun.loop): host reads made by
iatrun's own code (not torch's) grow by at most one per 10 steps, in both engines."""

import pytest
import torch

from iatrun.batched import train_stack
from iatrun.config import compose
from iatrun.train import train


def _cfg(steps, model=("model=iat", "model.basis_in=fourier", "model.basis_out=pwq"), seed=0):
    over = ["model.width=8", "model.depth=2", "task.n_train=32", f"train.steps={steps}", "device=cpu"]
    return dict(compose([*over, *model]), seed=seed)


def _reads(host_reads, fn) -> int:
    before = host_reads["n"]
    fn()
    return host_reads["n"] - before


@pytest.mark.parametrize("engine", ["serial", "batched"])
def test_host_reads_grow_by_at_most_one_per_ten_steps(host_reads, engine, one_thread):
    def run(steps):
        if engine == "serial":
            return lambda: train(_cfg(steps))
        cfgs = [_cfg(steps, seed=s) for s in (0, 1)] + [_cfg(steps, model=("model=relu",))]
        return lambda: train_stack(cfgs)

    short, long = _reads(host_reads, run(200)), _reads(host_reads, run(400))
    assert long - short <= 200 / 10, (short, long)
    assert long > short  # the counter sees the loop's reads (one per block)


def test_the_counter_sees_a_read_in_iatrun_code(host_reads):
    import iatrun.loop as loop

    block = loop.LossBlock(1, torch.device("cpu"))
    block.put(1, 0.1, torch.tensor([2.0]))
    assert _reads(host_reads, block.read) == 1
