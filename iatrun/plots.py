"""Figures written into run and sweep folders (matplotlib Figure objects, atomic writes).

Every figure is a bare :class:`matplotlib.figure.Figure`, never a pyplot one: importing this module
neither imports ``matplotlib.pyplot`` nor switches the backend (a notebook keeps its own), and
``Figure.savefig`` renders with the Agg canvas (or the SVG / PDF one) by itself.

How figures are written (format, resolution) is the current :class:`iatrun.plotstyle.PlotStyle`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from iatrun.files import atomic_path
from iatrun.plotstyle import current, format_of

# Most points a run-folder line plot draws: beyond a few per pixel column they only cost time.
PLOT_POINTS = 2500


def save(fig: Figure, path: Path, tight: bool = True) -> None:
    """Save ``fig`` atomically in the format its suffix names, at the current style's dpi (a bare
    Figure is not held by pyplot: nothing to close).

    ``tight`` crops to the drawn content, which costs a second draw; the figures written for every
    run and sweep cell set fixed margins instead (``tight=False``), since sweeps draw hundreds.
    """
    path = Path(path)
    fmt = format_of(path.name)
    # no date and fixed element ids in an SVG, no date in a PDF: the same figure is the same file
    meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "iatrun"}):
        fig.savefig(tmp, format=fmt, dpi=current().dpi, bbox_inches="tight" if tight else None, metadata=meta)


def _thin(n: int) -> slice:
    """A stride that keeps at most PLOT_POINTS of ``n`` evenly spaced points."""
    return slice(None, None, max(1, math.ceil(n / PLOT_POINTS)))


def _minor_log_labels(values) -> FuncFormatter | NullFormatter:
    """Minor-tick labels for a log axis over ``values``, as many as its powers of ten leave room for."""
    if not values:
        return NullFormatter()
    powers = math.floor(math.log10(max(values))) - math.ceil(math.log10(min(values))) + 1
    if powers >= 2:
        return NullFormatter()  # the major labels suffice
    digits = "25" if powers == 1 else "23456789"

    def label(v: float, _pos) -> str:
        return f"{v:g}" if f"{v:e}"[0] in digits else ""

    return FuncFormatter(label)


HEADLINE = {"fitting": ("heldout_mse", "held-out MSE"), "memorization": ("train_accuracy", "accuracy")}


def describe(cfg, metrics=None) -> str:
    """A run in a title: model, bases and mesh ratio, size, and its headline metric when given
    (``IAT-ReLU fourier → pwq, r = 4 · width 128, depth 3 · held-out MSE 2.41e-03``)."""
    m = cfg.get("model", {})
    kind = m.get("kind", "?")
    if kind in ("iat", "decoupled"):
        name = "IAT-ReLU" if m.get("sigma", "relu") == "relu" else f"IAT-{m.get('sigma')}"
        exact = ", exact" if m.get("method") == "exact" or kind == "decoupled" else ""
        name += " decoupled" if kind == "decoupled" else ""
        model = f"{name} {m.get('basis_in')} → {m.get('basis_out')}, r = {m.get('mesh_ratio')}{exact}"
    else:
        model = kind
    parts = [model, f"width {m.get('width')}, depth {m.get('depth')}"]
    key, label = HEADLINE.get(cfg.get("task", {}).get("name"), (None, None))
    value = (metrics or {}).get(key) if key else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        parts.append(f"{label} {100 * value:.1f}%" if key == "train_accuracy" else f"{label} {value:.3g}")
    elif metrics and metrics.get("status") not in (None, "ok"):
        parts.append(str(metrics["status"]))
    return " · ".join(parts)


def loss_plot(curve, path: Path, title: str = "") -> None:
    """Training loss against step, log scale."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.16, right=0.97, top=0.86 if "\n" in title else 0.9, bottom=0.14)
    steps = [s for s, loss, _ in curve if math.isfinite(loss) and loss > 0]
    losses = [loss for _, loss, _ in curve if math.isfinite(loss) and loss > 0]
    ax.plot(steps, losses, lw=1)  # every step: a loss jump must stay visible
    ax.set_yscale("log")
    # Plain tick labels ("0.01", not mathtext 10⁻²): mathtext layout is half of this figure's cost.
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(_minor_log_labels(losses))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    save(fig, path, tight=False)


def prediction_plot(model, task, path: Path, title: str = "") -> None:
    """Target and model on the fine held-out grid, with the error below."""
    import torch

    x, y = task.extra["x_eval"], task.extra["y_eval"]
    p = next(model.parameters())
    keep = _thin(len(x))
    x, y = x[keep], y[keep]
    with torch.no_grad():
        pred = model(x.to(p)[:, None])[:, 0].double().cpu()
    fig = Figure(figsize=(7, 5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    fig.subplots_adjust(left=0.12, right=0.97, top=0.94 if title else 0.97, bottom=0.1, hspace=0.08)
    top.plot(x, y, lw=1.5, label=f"target ({task.extra['target']})")
    top.plot(x, pred, lw=1, ls="--", label="model")
    top.set_ylabel("y")
    top.set_title(title, fontsize=9)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(x, pred - y, lw=1, color="C3")
    bottom.set_ylabel("model − target")
    bottom.set_xlabel("x")
    bottom.grid(alpha=0.3)
    save(fig, path, tight=False)


def regions_plot(reg, path: Path, target=None, target_name: str = "", title: str = "") -> None:
    """A piecewise-linear network with its region boundaries (SPEC §7), and |A_r| per region below.

    ``reg`` is an :class:`iatrun.analysis.regions.Regions` (used by its attributes only, so this module
    needs nothing from ``analysis``); ``target(x) -> y`` (arrays) is drawn beside the network for
    fitting runs.
    """
    import numpy as np

    bps = reg.breakpoints
    one_d = reg.start.size == 1
    name = "x" if one_d else "t"
    ys = reg(bps)  # (R+1, o): the network is continuous, so its graph is this polyline
    ys[-1] = reg.slopes[-1] * bps[-1] + reg.intercepts[-1]
    fig = Figure(figsize=(7.5, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    if target is not None:
        xs = np.linspace(bps[0], bps[-1], 4001)
        top.plot(xs, target(xs), lw=2.5, alpha=0.4, color="C1", label=f"target ({target_name})")
    for j in range(min(ys.shape[1], 10)):
        label = "network" if ys.shape[1] == 1 else f"output {j}"
        top.plot(bps, ys[:, j], lw=1, color=f"C{0 if ys.shape[1] == 1 else j}", label=label)
    inner = bps[1:-1]
    alpha = float(min(0.5, 25.0 / max(len(inner), 1)))
    for ax in (top, bottom):
        ax.vlines(inner, 0, 1, transform=ax.get_xaxis_transform(), lw=0.6, color="0.4", alpha=alpha)
        ax.grid(alpha=0.3)
    if len(bps) <= 400:
        top.plot(bps, ys[:, 0], ".", ms=3, color="k")
    top.legend(fontsize=8)
    top.set_title(f"{title}\n{reg.num_regions} linear regions", fontsize=9)
    norms = np.linalg.norm(reg.slopes, axis=1) / np.linalg.norm(reg.direction)  # (R,)
    bottom.stairs(norms, bps, baseline=None, color="C2", label="|A_r| per region")
    bottom.axhline(reg.lipschitz, color="C3", lw=1, ls="--", label=f"Lipschitz {reg.lipschitz:.4g}")
    bottom.set_ylabel("|slope|")
    bottom.set_xlabel(name if one_d else "t along the segment (x = from + t·(to − from))")
    bottom.legend(fontsize=8, title=f"layer-wise bound {reg.lipschitz_bound:.4g}", title_fontsize=8)
    save(fig, path)


def bases_plot(n: int, path: Path) -> None:
    """Every registered basis, one panel each, as input functions (sup-norm 1) (the paper's Figure 5)."""
    import torch

    from iatrun.nn import bases

    names = bases.BASES.names()
    cols = 3
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False)
    viridis = matplotlib.colormaps["viridis"]
    t = torch.linspace(-1, 1, 4001, dtype=torch.float64)
    for ax, name in zip(axes.flat, names, strict=False):
        phi = (bases.evaluate(name, n, t) / bases.sup_norms(name, n)).numpy()  # (T, n)
        for i in range(n):
            ax.plot(t.numpy(), phi[:, i], lw=1, color=viridis(i / max(n - 1, 1)))
        props = bases.properties(name)
        tags = ", ".join(k.replace("_", " ") for k, v in props.items() if v) or "none of the four properties"
        ax.set_title(f"{name}  ({tags})", fontsize=9)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("t")
    fig.suptitle(f"The IAT bases, n = {n} (input normalisation: max |φ_i| = 1)", fontsize=11)
    save(fig, path)


def _sign_roots(t, s):
    """Where s (sampled on t) changes sign, by linear interpolation between samples: 1-D array."""
    import numpy as np

    i = np.nonzero(np.signbit(s[:-1]) != np.signbit(s[1:]))[0]
    w = s[i] / (s[i] - s[i + 1])
    return t[i] + w * (t[i + 1] - t[i])


def pattern_plot(basis_in: str, n: int, seed: int, path: Path, curves: int = 7) -> None:
    """The state s_x(t), its roots and the pattern S(x) = {t : s_x(t) > 0} as x moves (paper Figs 2–3).

    x(τ) = (1 − τ)·x_0 + τ·x_1 with x_0, x_1 ~ N(0, I_n) drawn from ``seed``; τ ∈ [0, 1].
    """
    import numpy as np
    import torch

    from iatrun.nn import bases

    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(2, n, generator=g, dtype=torch.float64)  # (n,) each: the line's ends
    t = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    phi = bases.evaluate(basis_in, n, t) / bases.sup_norms(basis_in, n)  # (T, n), SPEC §3 normalisation
    taus = torch.linspace(0, 1, 301, dtype=torch.float64)
    xs = (1 - taus)[:, None] * x0 + taus[:, None] * x1  # (K, n) inputs along the line
    s = (xs @ phi.T).numpy()  # (K, T) state functions s_x(t) = Σ_i x_i φ_i(t)
    tn = t.numpy()

    fig = Figure(figsize=(7.5, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    viridis = matplotlib.colormaps["viridis"]
    picks = np.linspace(0, len(taus) - 1, curves).round().astype(int)
    for c, k in enumerate(picks):
        color = viridis(c / max(curves - 1, 1))
        top.plot(tn, s[k], lw=1, color=color, label=f"τ = {taus[k]:.2f}")
        roots = _sign_roots(tn, s[k])
        top.plot(roots, np.zeros_like(roots), "o", ms=4, color=color, mec="k", mew=0.5)
        bottom.axhline(float(taus[k]), color=color, lw=1.2)
    top.axhline(0, color="k", lw=0.6)
    top.set_ylabel("s_x(t)")
    top.legend(fontsize=7, ncol=2)
    top.grid(alpha=0.3)
    top.set_title(f"input basis {basis_in}, n = {n}, seed {seed}: s_x(t) as x moves (dots: roots)", size=9)
    bottom.imshow(
        s > 0,
        aspect="auto",
        origin="lower",
        extent=(-1, 1, 0, 1),
        cmap="Greys",
        vmin=0,
        vmax=1.6,
        interpolation="nearest",
    )
    bottom.set_ylabel("τ  (x = (1 − τ)·x₀ + τ·x₁)")
    bottom.set_xlabel("t")
    bottom.set_title("activation pattern S(x) = {t : s_x(t) > 0} (grey)", fontsize=9)
    save(fig, path)
