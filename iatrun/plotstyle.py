"""How figures are written: the config's ``plots:`` section, without importing matplotlib.

A :class:`PlotStyle` holds the file format, the resolution and the sweep heatmaps' colour scale;
:func:`style` makes one current for the figures drawn inside it (:mod:`iatrun.plots` and
:mod:`iatrun.report.figures` read it), and :func:`figure_name` gives a figure's file name in the
current format.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iatrun.errors import IatrunError

FORMATS = ("png", "svg", "pdf")
HEATMAP_SCALES = ("per-table", "shared")  # each table its own colour scale, or one for ours and the paper's
DPI_RANGE = (20, 1200)


@dataclasses.dataclass(frozen=True)
class PlotStyle:
    """The config's ``plots:`` section. ``dpi`` sets a PNG's pixels (and the raster parts of an SVG
    or PDF); ``heatmap_scale`` applies to the sweep heatmaps beside the paper's tables."""

    format: str = "png"
    dpi: int = 110
    heatmap_scale: str = "per-table"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise IatrunError(f"unknown plots.format {self.format!r} (known: {', '.join(FORMATS)})")
        dpi = self.dpi
        if isinstance(dpi, bool) or not isinstance(dpi, int) or not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
            low, high = DPI_RANGE
            raise IatrunError(f"plots.dpi must be an integer from {low} to {high}, got {dpi!r}")
        if self.heatmap_scale not in HEATMAP_SCALES:
            known = ", ".join(HEATMAP_SCALES)
            raise IatrunError(f"unknown plots.heatmap_scale {self.heatmap_scale!r} (known: {known})")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> PlotStyle:
        """The style of a ``plots:`` section (absent keys, or an absent section, take the defaults)."""
        section = dict(section or {})
        unknown = sorted(set(section) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise IatrunError(f"unknown key plots.{unknown[0]} (known: format, dpi, heatmap_scale)")
        return cls(**section)

    def replace(self, **changes: Any) -> PlotStyle:
        """This style with the given fields changed (``None`` leaves a field as it is)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT = PlotStyle()
_STYLE: contextvars.ContextVar[PlotStyle | None] = contextvars.ContextVar("iatrun_plot_style", default=None)


@contextmanager
def style(value: PlotStyle) -> Iterator[PlotStyle]:
    """Make ``value`` the style of the figures drawn inside the block."""
    token = _STYLE.set(value)
    try:
        yield value
    finally:
        _STYLE.reset(token)


def current() -> PlotStyle:
    """The style of figures drawn now (:data:`DEFAULT` outside any :func:`style` block)."""
    return _STYLE.get() or DEFAULT


def format_of(path: Any, what: str = "a figure", other: str = "") -> str:
    """The figure format that ``path``'s suffix names; when it names none, an error saying that
    ``what`` must end in one (``other``: what else it may be)."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise IatrunError(f"{what} must end in .png, .svg or .pdf{other}, got {path}")
    return fmt


def figure_name(stem: str) -> str:
    """``stem`` with the current format's extension (``loss`` → ``loss.png``)."""
    return f"{stem}.{current().format}"
