"""Per-trial learning curves (dev score by epoch) from experiment dirs: Ray's per-trial result.json files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tune.report.order import loss_rank, task_header, task_rank
from tune.report.plots import method_color
from tune.report.trials import _TRIAL_ID, _is_trial_dir, _read_history, task_dirs


def learning_curves(paths: list[str]) -> pd.DataFrame:
    """One row per (trial, epoch): task, trial_id, epoch, score. Trials CSVs carry no history: they add nothing."""
    rows = []
    for path in paths:
        for task, task_dir in task_dirs(Path(path)):
            for folder in sorted(p for p in task_dir.iterdir() if _is_trial_dir(p)):
                match = _TRIAL_ID.search(folder.name)
                trial_id = match.group(1) if match else folder.name
                for result in _read_history(folder / "result.json"):
                    if result.get("epoch") is not None and result.get("score") is not None:
                        rows.append({"task": task, "trial_id": trial_id, "epoch": int(result["epoch"]),
                                     "score": 100 * float(result["score"])})
    return pd.DataFrame(rows, columns=["task", "trial_id", "epoch", "score"]).drop_duplicates(["task", "trial_id", "epoch"])


def plot_learning_curves(curves: pd.DataFrame, trials: pd.DataFrame) -> Figure | None:
    """A panel per task: every trial of the report's stage as a thin line, coloured by its method."""
    frame = curves.merge(trials[["task", "trial_id", "loss"]], on=["task", "trial_id"])
    if frame.empty:
        return None
    tasks = sorted(frame["task"].unique(), key=task_rank)
    fig = Figure(figsize=(3.3 * len(tasks), 3.2), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        for (_trial, loss), part in frame[frame["task"] == task].groupby(["trial_id", "loss"]):
            part = part.sort_values("epoch")
            ax.plot(part["epoch"], part["score"], color=method_color(loss), alpha=0.7, linewidth=1,
                    marker="." if len(part) < 3 else None)
        ax.set_title(task_header(task, None))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("selection score ×100")
    methods = sorted(frame["loss"].unique(), key=loss_rank)
    handles = [axes[0].plot([], [], color=method_color(m), label=m)[0] for m in methods]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), frameon=False)
    return fig
