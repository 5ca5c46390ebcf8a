"""Per-trial learning curves (selection score by epoch: the train hold-out, or dev when the sweep selects on dev)
from experiment dirs: Ray's per-trial result.json files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from makd_sweep.experiment_dir import stage_dirs, trial_folders
from makd_sweep.report.layout import equal_to_ce, fit_legend, fit_suptitle, integer_ticks, legend_label
from makd_sweep.report.order import loss_rank, task_header, task_rank
from makd_sweep.report.plots import method_color


def learning_curves(paths: list[str]) -> pd.DataFrame:
    """One row per (trial, epoch): task, trial_id, epoch, score. Trials CSVs carry no history: they add nothing."""
    rows = []
    for path in paths:
        for task, stage in stage_dirs(Path(path)):
            for folder in trial_folders(stage):
                for result in folder.history():
                    if result.get("epoch") is not None and result.get("score") is not None:
                        rows.append({"task": task, "trial_id": folder.trial_id, "epoch": int(result["epoch"]),
                                     "score": 100 * float(result["score"])})
    return pd.DataFrame(rows, columns=["task", "trial_id", "epoch", "score"]).drop_duplicates(["task", "trial_id", "epoch"])


def plot_learning_curves(curves: pd.DataFrame, trials: pd.DataFrame,
                         board: pd.DataFrame | None = None) -> Figure | None:
    """A panel per task: every trial of the report's stage as a thin line, coloured by its method, on whole epochs;
    a method whose students are ce's (from `board`) is said to run on ce's lines. None without per-epoch history."""
    frame = curves.merge(trials[["task", "trial_id", "loss"]], on=["task", "trial_id"])
    if frame.empty:
        return None
    tasks = sorted(frame["task"].unique(), key=task_rank)
    fig = Figure(figsize=(max(3.4 * len(tasks), 6.4), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        for (_trial, loss), part in frame[frame["task"] == task].groupby(["trial_id", "loss"]):
            part = part.sort_values("epoch")
            ax.plot(part["epoch"], part["score"], color=method_color(loss), alpha=0.7, linewidth=1,
                    marker="." if len(part) < 3 else None)
        ax.set_title(task_header(task, None))
        ax.set_xlabel("epoch")
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("selection score ×100")
    methods = sorted(frame["loss"].unique(), key=loss_rank)
    on_ce = equal_to_ce(board)
    handles = [Line2D([], [], color=method_color(m)) for m in methods]
    fit_suptitle(fig, "Learning curves: every trial's selection score by epoch")
    fit_legend(fig, handles, [legend_label(m, on_ce, "on its lines") for m in methods])
    return fig
