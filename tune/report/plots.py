"""Leaderboard plot: dev score against λ, one panel per task (matplotlib, Agg canvas; pyplot is never used)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tune.report.order import loss_rank, student_order, task_header, task_rank
from tune.report.rank import setting_view

PLOT_FORMATS = ("png", "pdf", "svg")
_STYLES = ("-", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def plot_lambda_curves(trials: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Score ×100 against λ for each task (one axes per task, in the paper's task order).

    A line per (method, student): the mean over the finished trials at each λ (seeds, and any lr), with a shaded
    band of ± one standard deviation over them; the CE-only baseline (any loss at λ = 1) is a horizontal dashed
    line per student. Written atomically to `path` (png, pdf or svg by its suffix) when given.
    """
    df = setting_view(trials)
    tasks = sorted(df["task"].dropna().unique(), key=task_rank)
    students = student_order(df)
    ncols = max(1, min(3, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(tasks):]:
        fig.delaxes(ax)
    methods = sorted({m for m in df["_method"].dropna() if m != "ce"}, key=loss_rank)
    color = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    style = {s: _STYLES[i % len(_STYLES)] for i, s in enumerate(students)}
    for ax, task in zip(axes, tasks, strict=False):
        sub = df[df["task"] == task]
        metric = sub["metric"].dropna().iloc[0] if sub["metric"].notna().any() else "score"
        for student in students:
            mine = sub[sub["student"] == student]
            ce = mine.loc[mine["_method"] == "ce", "best_score"].dropna()
            if len(ce):
                ax.axhline(ce.mean() * 100, color="0.3", linestyle="--", linewidth=1.2,
                           label=f"ce (λ=1) {student}" if len(students) > 1 else "ce (λ=1)")
            for method in methods:
                points = mine[mine["_method"] == method].groupby("_lam")["best_score"].agg(["mean", "std"])
                if points.empty:
                    continue
                points = points.sort_index() * 100
                label = f"{method} {student}" if len(students) > 1 else method
                ax.plot(points.index, points["mean"], marker="o", markersize=3.5, color=color[method],
                        linestyle=style[student], label=label)
                spread = points["std"].fillna(0.0)
                ax.fill_between(points.index, points["mean"] - spread, points["mean"] + spread,
                                color=color[method], alpha=0.15, linewidth=0)
        ax.set_title(task_header(task, metric))
        ax.set_xlabel("λ (weight of CE; 1 = CE only)")
        ax.set_ylabel(f"dev {metric} ×100")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Dev score vs λ: mean ± std over seeds")
    if path is not None:
        write_figure(fig, path)
    return fig


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
