"""Leaderboard plot: dev score against λ, a panel per task × student (matplotlib, Agg canvas; never pyplot)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from makd.losses import LOSSES
from makd_sweep.report.layout import equal_to_ce, fit_legend, fit_suptitle, legend_label, wrap_name
from makd_sweep.report.order import base_loss, loss_rank, student_order, task_header, task_rank
from makd_sweep.report.rank import known_true, setting_view

PLOT_FORMATS = ("png", "pdf", "svg")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
DODGE = 0.03  # λ units between methods' points in a final-stage panel


def method_color(method: str) -> str:
    """One colour per loss, the same in every figure and panel: its place in the loss registry (ce is grey)."""
    base = base_loss(method)
    if base == "ce":
        return "0.35"
    order = [name for name in LOSSES if name != "ce"]
    return f"C{order.index(base) % 10}" if base in order else "C9"


def distinct_lambdas(trials: pd.DataFrame) -> int:
    """λ values the distillation methods ran at (ce's λ = 1 not counted): a λ axis needs two."""
    df = setting_view(trials)
    return int(df.loc[df["_method"] != "ce", "_lam"].nunique())


def plot_lambda_curves(trials: pd.DataFrame, path: str | Path | None = None, stage: str | None = None,
                       board: pd.DataFrame | None = None, search: pd.DataFrame | None = None) -> Figure | None:
    """Dev score ×100 against λ, small multiples: one panel per task (columns, paper order) × student (rows).

    In each panel a method is its mean dev score over seeds at each λ with ± one standard deviation as error bars
    (one point per λ in a final stage, a curve in a search); the CE-only baseline (any loss at λ = 1) is a grey
    dashed line with its ± std band; the majority-class baseline and the teacher's own score are black lines.
    Each method has one colour everywhere (`method_color`); variants of a loss (τ,
    a fine-tuned teacher) differ by marker. One legend for the figure, below the panels, fitted to the canvas; a
    method that scores exactly ce's score (from `board`) is said to lie on ce's line. With a final stage and its
    `search` trials, each method's search curve (thin, no error bars) is drawn beside its final points, so a reader
    sees how the score moved with λ and which λ the final stage took. The y axis starts at the majority-class
    baseline (or below it when a score is lower), so seed noise is not read as a trend. Written atomically to
    `path` (png, pdf or svg by its suffix) when given. None (nothing written) when the methods ran at fewer than two
    λ values (search included): a λ axis would then say nothing.
    """
    curves = setting_view(search) if search is not None and len(search) and stage == "final" else None
    if distinct_lambdas(trials) < 2 and (curves is None or distinct_lambdas(search) < 2):
        return None
    df = setting_view(trials)
    score = "dev_score" if "dev_score" in df and df["dev_score"].notna().any() else "best_score"
    tasks = sorted(df["task"].dropna().unique(), key=task_rank)
    students = student_order(df)
    methods = sorted({m for m in df["_method"].dropna() if m != "ce"}, key=loss_rank)
    marker, seen = {}, {}  # the first variant of a loss gets the first marker, the next the second, ...
    for m in methods:
        base = base_loss(m)
        marker[m] = _MARKERS[seen.get(base, 0) % len(_MARKERS)]
        seen[base] = seen.get(base, 0) + 1
    nrows, ncols = max(1, len(students)), max(1, len(tasks))
    fig = Figure(figsize=(3.1 * ncols + 0.6, 2.5 * nrows + 1.1), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles: dict[str, object] = {}
    name_kinds = teacher_kinds_differ(df)  # one legend for every panel: decided once for the figure
    for col, task in enumerate(tasks):
        for row, student in enumerate(students):
            ax = axes[row][col]
            mine = df[(df["task"] == task) & (df["student"] == student)]
            metric = (mine if len(mine) else df[df["task"] == task])["metric"].dropna()
            metric = metric.iloc[0] if len(metric) else None
            if mine.empty:
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color="0.5")
                ax.set_yticks([])
            ce = mine.loc[mine["_method"] == "ce", score].dropna() * 100
            if len(ce):
                mean, spread = ce.mean(), (ce.std() if len(ce) > 1 else 0.0)
                ax.axhspan(mean - spread, mean + spread, color=method_color("ce"), alpha=0.12, linewidth=0)
                handles["ce (λ = 1), ± std band"] = ax.axhline(mean, color=method_color("ce"), linestyle="--",
                                                                linewidth=1.3)
            draw_references(ax, mine, handles, name_kinds=name_kinds)
            if curves is not None:
                searched = curves[(curves["task"] == task) & (curves["student"] == student)]
                for method in methods:
                    line = searched[searched["_method"] == method].groupby("_lam")[score].mean().sort_index() * 100
                    if len(line) > 1:
                        ax.plot(line.index, line.values, color=method_color(method), linewidth=1.0, alpha=0.55,
                                linestyle="--")
                        # one grey legend entry for every method's search curve (each drawn in its method's colour)
                        handles[SEARCH_LABEL] = Line2D([], [], color="0.45", linewidth=1.0, linestyle="--")
            drawn_at = [0.0, 1.0]  # λ positions of the points, dodged: the x axis holds them all
            for i, method in enumerate(methods):
                points = (mine[mine["_method"] == method].groupby("_lam")[score].agg(["mean", "std"]) * 100)
                if points.empty:
                    continue
                points = points.sort_index()
                # final stage: one point per method, often at the same λ: dodge them so no error bar hides another
                dodge = (i - (len(methods) - 1) / 2) * DODGE if stage == "final" else 0.0
                drawn_at += list(points.index + dodge)
                handles[method] = ax.errorbar(points.index + dodge, points["mean"], yerr=points["std"].fillna(0.0),
                                              color=method_color(method), marker=marker[method], markersize=4.5,
                                              linewidth=1.4, capsize=3, elinewidth=1)
            ax.set_xlim(min(drawn_at) - 0.08, max(drawn_at) + 0.08)
            start_at_baseline(ax, mine)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(task_header(task, metric), fontsize=10)
            if row == nrows - 1:
                ax.set_xlabel("λ (weight of CE)")
            if col == 0:
                ax.set_ylabel(f"{wrap_name(str(student))}\ndev ×100", fontsize=9)
    what = {"final": "final stage: every method at its best λ, full budget; points dodged sideways"
                     + ("; thin dashed lines: the search" if curves is not None else ""),
            "search": "search stage: ASHA may have stopped trials early"}.get(stage or "", "")
    fit_suptitle(fig, f"Dev score vs λ, mean ± std over seeds{' (' + what + ')' if what else ''}")
    on_ce = equal_to_ce(board)
    fit_legend(fig, list(handles.values()), [legend_label(m, on_ce, "on its line") for m in handles])
    if path is not None:
        write_figure(fig, path)
    return fig


DASH_DOT_DOT = (0, (4, 1.5, 1, 1.5, 1, 1.5))  # the not fine-tuned teacher beside a fine-tuned one ("--" is ce's)
MAJORITY_LABEL, TEACHER_LABEL = "majority class (constant prediction)", "teacher's own score"
SEARCH_LABEL = "search stage: each method's mean at each λ (thin, dashed, in its colour)"


def start_at_baseline(ax, panel: pd.DataFrame) -> None:
    """The panel's y axis from just below the majority-class baseline (lower only if something is drawn lower),
    so that the distance from "learned nothing" is what the eye reads first."""
    majority = panel["majority_score"].dropna() if "majority_score" in panel else pd.Series(dtype=float)
    if majority.empty:
        return
    low, high = ax.get_ylim()
    floor = 100 * float(majority.min())
    ax.set_ylim(min(low, floor - 1), max(high, floor + 1))


def teacher_kinds_differ(frame: pd.DataFrame) -> bool:
    """Does the figure show a fine-tuned and a not fine-tuned teacher? Then every teacher line says which, in every
    panel (one legend serves them all)."""
    if "teacher_fine_tuned" not in frame or "teacher_score" not in frame:
        return False
    return frame.dropna(subset=["teacher_score"])["teacher_fine_tuned"].map(known_true).nunique() > 1


def draw_references(ax, panel: pd.DataFrame, handles: dict, horizontal: bool = True, *,
                    name_kinds: bool | None = None) -> None:
    """The panel's references as lines (makd/references.py): the majority-class baseline (dotted) and the
    teacher's own score (dash-dot; when the figure has a fine-tuned and a not fine-tuned teacher, `name_kinds`,
    dash-dot and dash-dot-dot, each named in the legend), so a reader sees at once what "learned" means here. Trials
    recorded without references draw none."""
    line = ax.axhline if horizontal else ax.axvline
    for value in panel["majority_score"].dropna().unique() if "majority_score" in panel else []:
        handles[MAJORITY_LABEL] = line(100 * value, color="black", linestyle=":", linewidth=1.1, alpha=0.8)
    teachers = panel.dropna(subset=["teacher_score"]) if "teacher_score" in panel else panel.iloc[:0]
    kinds = teachers["teacher_fine_tuned"].map(known_true) if "teacher_fine_tuned" in teachers else None
    both = teacher_kinds_differ(panel) if name_kinds is None else name_kinds  # two teachers: each line says which
    for fine_tuned, group in teachers.groupby(kinds if kinds is not None else [False] * len(teachers)):
        label = TEACHER_LABEL + ((" (fine-tuned teacher)" if fine_tuned else " (teacher not fine-tuned)") if both
                                 else "")
        for value in group["teacher_score"].unique():
            handles[label] = line(100 * value, color="black", linewidth=1.1, alpha=0.8,
                                  linestyle="-." if fine_tuned or not both else DASH_DOT_DOT)


def write_figure(fig: Figure, path: str | Path) -> Path:
    from makd.files import atomic_write_bytes

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        from makd.errors import UsageError

        raise UsageError("plot", f"expected a .png, .pdf or .svg file name, got {path}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path
