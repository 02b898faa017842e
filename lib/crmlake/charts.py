"""Charts: matplotlib set up once (one style), the chart shapes the reports draw, and the two
ways a chart leaves: a PNG file, or PNG bytes for a page that inlines it or a file system
other than the local disk.

A figure is matplotlib's ``Figure`` object, rendered by the Agg canvas it makes for itself:
never ``pyplot``, whose figure registry is shared by the whole process and not safe for the
threads of a stage's steps run side by side (:func:`crmlake.isolation.side_by_side`); no
display is needed, and a figure is freed as soon as nothing refers to it. A shape returns
its figure; :func:`save`, :func:`png` or :func:`data_uri` then writes it. Stages draw through
this module only, and it imports no stage.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import threading
from typing import Iterable, Sequence

BLUE, ORANGE, GREEN, GREY = "#3b6ea5", "#d9822b", "#5aa469", "#aaaaaa"
COLOURS = (BLUE, ORANGE, GREEN, "#b3261e", "#7b5ea7", GREY)   # lines and series take them in this order
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "legend.fontsize": 8,
}


_styling = threading.Lock()   # the first figures may be made by several threads at once


@functools.cache
def _styled() -> None:
    """Set the house style on matplotlib's defaults, once (a figure reads them when it is made)."""
    import matplotlib
    from cycler import cycler

    matplotlib.rcParams.update({**STYLE, "axes.prop_cycle": cycler(color=list(COLOURS))})


def figure(width: float, height: float, rows: int = 1, columns: int = 1, share_x: bool = False, share_y: bool = False):
    """Return (figure, axes) of ``width`` x ``height`` inches; ``rows`` or ``columns`` > 1 gives an
    array of axes (stacked, or side by side)."""
    from matplotlib.figure import Figure

    with _styling:
        _styled()
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, columns, sharex=share_x, sharey=share_y)


def png(fig) -> bytes:
    """Return the figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save(fig, path: str) -> str:
    """Write the figure as a PNG file at ``path`` (its folder made if missing); return ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(png(fig))
    return path


def data_uri(fig) -> str:
    """Return the figure as a ``data:`` URI, so an HTML page needs no other file."""
    return png_data_uri(png(fig))


def png_data_uri(image: bytes) -> str:
    """Return PNG bytes (:func:`png`) as a ``data:`` URI, for a chart both inlined and saved as a file."""
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def line_chart(lines: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
               reference: tuple[tuple[float, float], tuple[float, float], str] | None = None, markers: bool = False,
               size: tuple[float, float] = (5, 3.5)):
    """Return a figure of ``lines`` (label -> (x values, y values)) and, if given, a dotted grey
    ``reference`` line ((x0, y0), (x1, y1), label: chance, random targeting). A legend is drawn
    when more than one line is labelled."""
    fig, ax = figure(*size)
    for label, (xs, ys) in lines.items():
        ax.plot(list(xs), list(ys), marker="o" if markers else None, label=label)
    if reference is not None:
        (x0, y0), (x1, y1), label = reference
        ax.plot([x0, x1], [y0, y1], linestyle=":", color="grey", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(lines) + (reference is not None) > 1:
        ax.legend()
    return fig


def bar_chart(items: Iterable[tuple[str, float]], title: str, xlabel: str, most: int = 12):
    """Return a figure of horizontal bars, the first of ``items`` (label, value) on top, at most ``most`` of them."""
    shown = list(items)[:most]
    fig, ax = figure(6, 0.4 * max(3, len(shown)) + 1)
    ax.barh([label for label, _ in reversed(shown)], [value for _, value in reversed(shown)], color=BLUE)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return fig


def histogram(values: Sequence[float], title: str, xlabel: str, ylabel: str, value_range: tuple[float, float] = (0, 1), bins: int = 20):
    """Return a figure of the histogram of ``values`` over ``value_range``."""
    fig, ax = figure(6, 3.2)
    ax.hist(list(values), bins=bins, range=value_range, color=BLUE)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig
