"""Charts as SVG or PNG bytes, drawn with matplotlib off screen.

One place sets the look (colours, fonts, sizes) so every report's chart matches, and the
non-interactive backend is chosen before pyplot is imported, so a server without a display
can draw.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import matplotlib
from cycler import cycler

matplotlib.use("Agg")

import matplotlib.pyplot as plt

Format = Literal["svg", "png"]
FORMATS: tuple[str, ...] = ("svg", "png")
MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}

# Rapport's palette: first the brand colour, then colours that stay apart for the colour-blind.
PALETTE = ["#3b5bdb", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#1098ad", "#868e96"]

_STYLE: Any = {
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "svg.fonttype": "none",  # text stays text in SVG: searchable, crisp, small
    "figure.dpi": 100,
}


def figure(width: float = 8.0, height: float = 4.5) -> tuple[Any, Any]:
    """A figure and its axes in Rapport's style."""
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def to_bytes(fig: Any, fmt: Format = "svg") -> bytes:
    """The figure as SVG or PNG; the figure is closed, so a long-running server leaks none."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    buf = io.BytesIO()
    try:
        with plt.rc_context(_STYLE):
            fig.tight_layout()
            fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    finally:
        plt.close(fig)
    return buf.getvalue()
