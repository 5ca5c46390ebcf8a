"""Figures that stay legible at every sweep size: titles wrapped to the canvas, legends that fit inside it, integer
axes with integer ticks, a few readable ticks on small costs, and a word in the legend for methods drawn on top of
ce. tests/test_figures.py renders every figure of the report for several sweep shapes and checks, with the
renderer's text extents, that no tick labels overlap, nothing leaves the canvas and no panel is empty.
"""

from __future__ import annotations

import re
import textwrap
import warnings

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator


def _fits_across(fig: Figure, artist) -> bool:
    """Whether a horizontally centred artist (the title, the legend below the panels) is narrower than the canvas:
    its own extent, measured without drawing the figure (a draw lays out every panel: tenths of a second each)."""
    return artist.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width + 2


def fit_suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """The figure's title, wrapped into as few lines as fit the canvas width."""
    width = max(20, len(text))
    while True:
        title = fig.suptitle(textwrap.fill(text, width), fontsize=fontsize)
        if _fits_across(fig, title) or width <= 20:
            return
        width = int(width * 0.85)


def fit_legend(fig: Figure, handles: list, labels: list[str], fontsize: float = 9) -> None:
    """One legend below the panels, in as many columns as fit inside the canvas. A canvas narrower than one column
    (one panel, long labels) is widened to it, and one whose legend would leave the panels too little height is
    made taller, so nothing is cut off and no panel collapses. Widths are measured without drawing; the figure is
    laid out once, for the height."""
    if not handles:
        return
    for widened in (False, True):
        for ncols in range(min(len(handles), 6), 0, -1):
            legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=fontsize,
                                frameon=False)
            box = legend.get_window_extent(fig.canvas.get_renderer())
            if _fits_across(fig, legend) or (widened and ncols == 1):
                with warnings.catch_warnings():  # a layout the taller canvas below undoes is not reported
                    warnings.filterwarnings("ignore", "constrained_layout not applied")
                    fig.canvas.draw()
                box = legend.get_window_extent(fig.canvas.get_renderer())
                if box.height > 0.4 * fig.bbox.height:  # the panels keep at least their own height
                    fig.set_figheight(fig.get_figheight() + box.height / fig.dpi)
                    fig.canvas.draw()
                return
            legend.remove()
        fig.set_figwidth(box.width / fig.dpi + 0.3)  # box: the one-column legend, the narrowest there is


def wrap_name(name: str, width: int = 20) -> str:
    """A long student name on lines of at most `width` characters where it can be: broken after its '@' first, then
    after commas and slashes ('zoo:smollm2-135m@' / '0,6,12,18,24,29'), so a row label stays beside its own row of panels
    instead of running into the next row's."""
    if len(name) <= width:
        return name
    lines = []
    for part in re.split(r"(?<=@)", name):
        line = ""
        for piece in re.split(r"(?<=[,/])", part):
            if line and len(line) + len(piece) > width:
                lines.append(line)
                line = ""
            line += piece
        lines.append(line)
    return "\n".join(line for line in lines if line)


def integer_ticks(axis) -> None:
    """Epochs and other counts: ticks on whole numbers only."""
    axis.set_major_locator(MaxNLocator(integer=True))


def few_ticks(axis, fmt: str = "%.3g") -> None:
    """Small costs (device-hours of 0.00825...): at most four ticks, three significant digits, no overlap."""
    axis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2))
    axis.set_major_formatter(FormatStrFormatter(fmt))


def equal_to_ce(board: pd.DataFrame | None) -> set[str]:
    """Methods whose every leaderboard row scores exactly ce's score at every seed (identical students, same
    predictions, ties): drawn on top of ce, which the legend must say."""
    if board is None or board.empty or "agreement_vs_ce" not in board:
        return set()
    rows = board[board["loss"] != "ce"]
    agreed = rows["agreement_vs_ce"].map(lambda a: isinstance(a, str) and bool(a))
    return {loss for loss, part in agreed.groupby(rows["loss"]) if part.all()}


def legend_label(method: str, overlapping: set[str], where: str) -> str:
    """'taylor (= ce: on its line)' for a method drawn on top of ce; the method alone otherwise."""
    return f"{method} (= ce: {where})" if method in overlapping else method
