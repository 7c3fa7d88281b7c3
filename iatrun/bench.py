"""`iatrun bench`: speed and memory as ratios measured side by side in one process run.

Every timing is the median of several repeats after a warm-up, and each figure is a ratio of two
things measured in the same run, so it holds on a noisy machine. Results go to
``<results_dir>/bench/<stamp>/bench.csv``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from iatrun.nn import bases
from iatrun.nn.iat import IAT
from iatrun.nn.models import build_model


@dataclass
class Row:
    """One benchmark figure: what was measured, its value, the reference and their ratio."""

    name: str
    params: str
    value: float
    unit: str
    reference: float
    ratio: float
    target: str = ""


def timeit(
    fn: Callable[[], object], repeats: int = 7, warmup: int = 2, sync: Callable[[], None] = lambda: None
) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def iat_roofline(
    device: torch.device, batch: int = 1000, widths=(16, 64, 256), ratios=(1, 4, 16)
) -> list[Row]:
    """IAT forward+backward FLOP/s against a plain torch.mm of the same shapes, same run.

    The layer's useful work is its two products, forward (B·n·M each) and backward (two more for
    the input gradient): 8·B·n·M FLOPs. The reference runs exactly those four products with mm.
    Measured for the dense kernel everywhere, and for the default (``auto``) kernel where it differs
    (fourier → pwq on CPU where ``iatrun.nn.iat.BANDED_FROM`` allows it: Ψ is banded).
    """
    rows = []
    for n in widths:
        for r in ratios:
            rows.append(_roofline_case(device, batch, n, r, "dense"))
            if IAT(n, "fourier", "pwq", r).uses_banded(device):
                rows.append(_roofline_case(device, batch, n, r, "auto"))
    return rows


def _roofline_case(device: torch.device, batch: int, n: int, r: int, kernel: str) -> Row:
    sync = _sync(device)
    layer = IAT(n, "fourier", "pwq", r, kernel=kernel).to(device)
    phi_t, psi = layer.phi_t, layer.psi
    x = torch.randn(batch, n, device=device, requires_grad=True)
    g = torch.randn(batch, n, device=device)
    a, z = torch.randn(batch, n, device=device), torch.randn(batch, layer.m, device=device)

    def step():
        x.grad = None
        layer(x).backward(g)

    def mm4():
        torch.mm(a, phi_t)
        torch.mm(z, psi)
        torch.mm(g, psi.T)
        torch.mm(z, phi_t.T)

    flops = 8.0 * batch * n * layer.m
    t_layer, t_mm = timeit(step, sync=sync), timeit(mm4, sync=sync)
    target = "≥ 0.60 at n=64 r=4 (CPU)" if (n, r) == (64, 4) else ""
    return Row(
        "iat_fwd_bwd_vs_mm_roofline",
        f"B={batch} n={n} r={r} kernel={kernel} {device.type}",
        flops / t_layer / 1e9,
        "GFLOP/s",
        flops / t_mm / 1e9,
        t_mm / t_layer,
        target,
    )


def _fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    """One forward+backward of ``layer`` on x with output gradient g, as a timeable call."""

    def step() -> None:
        x.grad = None
        layer(x).backward(g)

    return step


def banded_speedup(
    device: torch.device, batch: int = 1000, widths=(16, 32, 64, 128, 256), ratios=(4, 16)
) -> list[Row]:
    """The banded kernel against the dense one (pwl → pwq, both sides banded), forward+backward.

    Ratios above 1 mean banded is faster; ``iatrun.nn.iat.BANDED_FROM`` (``kernel="auto"``) is set from them.
    """
    sync, rows = _sync(device), []
    for n in widths:
        for r in ratios:
            x = torch.randn(batch, n, device=device, requires_grad=True)
            g = torch.randn(batch, n, device=device)
            times = {
                kernel: timeit(_fwd_bwd(IAT(n, "pwl", "pwq", r, kernel=kernel).to(device), x, g), sync=sync)
                for kernel in ("dense", "banded")
            }
            rows.append(
                Row(
                    "iat_banded_vs_dense",
                    f"B={batch} n={n} r={r} pwl-pwq {device.type}",
                    times["banded"] * 1e3,
                    "ms",
                    times["dense"] * 1e3,
                    times["dense"] / times["banded"],
                    "≥ 2× at n=256 r=16 (CPU)" if (n, r) == (256, 16) else "",
                )
            )
    return rows


def exact_cost(
    device: torch.device, batch: int = 1000, widths=(16, 64), pairs=(("fourier", "pwq"), ("pwl", "pwq"))
) -> list[Row]:
    """The exact layer (roots and closed-form integrals) against the mesh layer at r = 4 and r = 64.

    Forward+backward; the ratio is how many times slower exact is than that mesh.
    """
    sync, rows = _sync(device), []
    for n in widths:
        for bi, bo in pairs:
            x = torch.randn(batch, n, device=device, requires_grad=True)
            g = torch.randn(batch, n, device=device)
            exact = timeit(_fwd_bwd(IAT(n, bi, bo, 4, method="exact").to(device), x, g), sync=sync)
            for r in (4, 64):
                mesh = timeit(_fwd_bwd(IAT(n, bi, bo, r).to(device), x, g), sync=sync)
                rows.append(
                    Row(
                        "iat_exact_vs_mesh",
                        f"B={batch} n={n} {bi}-{bo} mesh r={r} {device.type}",
                        exact * 1e3,
                        "ms",
                        mesh * 1e3,
                        exact / mesh,
                    )
                )
    return rows


def saved_bytes(batch: int = 1000, n: int = 64, r: int = 4) -> list[Row]:
    """Bytes saved for backward by one IAT-ReLU layer against plain autograd of the same expression."""
    layer = IAT(n, "fourier", "pwq", r)
    x = torch.randn(batch, n, requires_grad=True)
    buffers = {layer.phi_t.data_ptr(), layer.psi.data_ptr()}

    def measure(fn) -> int:
        total = 0

        def pack(t):
            nonlocal total
            if t.data_ptr() not in buffers:  # Φ and Ψ are shared buffers, saved by both paths
                total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return total

    ours = measure(lambda: layer(x))
    plain = measure(lambda: torch.relu(x @ layer.phi_t) @ layer.psi)
    return [
        Row(
            "iat_saved_bytes_vs_autograd",
            f"B={batch} n={n} r={r} float32",
            ours,
            "bytes",
            plain,
            ours / plain,
            "≤ 0.25",
        )
    ]


# basis pairs of the training-step rows: the default (global Φ, banded Ψ) and two pairs with both
# sides local (cell translates; wavelets, whose slabs carry a weight per row): target ≤ 2.5× relu
STEP_PAIRS = (("fourier", "pwq"), ("pwq", "pwq"), ("pwl-w", "rect-w"))


def train_step(device: torch.device, task_points: int = 1000, width: int = 128, depth: int = 3) -> list[Row]:
    """One Adam step of IAT networks (``STEP_PAIRS``, default kernel) against the relu network of
    the same shape, all timed in turn in one run."""
    x = torch.linspace(-1, 1, task_points, device=device)[:, None]
    y = torch.sin(8 * x)
    models = {"relu": build_model("relu", 1, width, depth, 1)}
    for bi, bo in STEP_PAIRS:
        models[f"{bi}/{bo}"] = build_model("iat", 1, width, depth, 1, basis_in=bi, basis_out=bo)
    times = {name: _step_time(model.to(device), x, y) for name, model in models.items()}

    def target(name: str) -> str:  # the target holds for pairs with both sides local
        return "" if any(bases.properties(b)["global"] for b in name.split("/")) else "≤ 2.5"

    return [
        Row(
            "train_step_iat_vs_relu",
            f"{name} N={task_points} width={width} depth={depth} r=4 {device.type}",
            times[name] * 1e3,
            "ms",
            times["relu"] * 1e3,
            times[name] / times["relu"],
            target(name),
        )
        for name in models
        if name != "relu"
    ]


def _step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    return timeit(step, sync=_sync(x.device))


def startup(repeats: int = 5) -> list[Row]:
    """`iatrun --help` wall time against `python -c pass`, as whole processes."""

    def run(cmd):
        return lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    help_t = timeit(run([sys.executable, "-m", "iatrun", "--help"]), repeats=repeats, warmup=1)
    pass_t = timeit(run([sys.executable, "-c", "pass"]), repeats=repeats, warmup=1)
    return [Row("help_startup_vs_python", "iatrun --help", help_t, "s", pass_t, help_t / pass_t, "< 0.5 s")]


def sweep_throughput(
    out: Path,
    grid: str = "quick",
    runs: tuple[tuple[str, int], ...] = (("serial", 1), ("serial", 2), ("batched", 1), ("batched", 2)),
) -> list[Row]:
    """Cells per minute of a grid for each (engine, jobs), each a fresh sweep folder.

    Every row's ratio is against the first run (the serial engine, one process) of this call.
    """
    rows, base = [], None
    for engine, j in runs:
        folder = out / f"sweep-{grid}-{engine}-jobs{j}"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "iatrun", "sweep", "-q", "--grid", grid, "--out", str(folder)]
            + ["--engine", engine, "--jobs", str(j)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        elapsed = time.perf_counter() - start
        n_cells = len(list(folder.glob("cells/**/done.json")))
        cpm = n_cells / elapsed * 60
        base = base or cpm
        rows.append(
            Row(
                "sweep_cells_per_minute",
                f"grid={grid} engine={engine} jobs={j}",
                cpm,
                "cells/min",
                base,
                cpm / base,
                "best ≥ 1.7× serial",
            )
        )
    return rows


def run_all(
    out: Path, device: torch.device, sweep: bool = True, log: Callable[[str], None] = print
) -> list[Row]:
    """Every benchmark, in order; each section is logged as it starts."""
    rows: list[Row] = []
    sections = [
        ("IAT layer against its matmul roofline", lambda: iat_roofline(device)),
        ("banded kernel against dense", lambda: banded_speedup(device)),
        ("exact layer against the mesh layer", lambda: exact_cost(device)),
        ("saved-for-backward memory", saved_bytes),
        ("training step: IAT against relu", lambda: train_step(device)),
        ("start-up time", startup),
    ]
    if sweep:
        sections.append(("sweep throughput (quick grid)", lambda: sweep_throughput(out)))
    for title, fn in sections:
        log(title)
        rows += fn()
    return rows
