"""Score against cost: the Pareto front of (student, method) cells per task, against student parameters and against
device-hours per trial. The point of "cost-effective distillation" is this trade-off, so the report shows it first."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from tune.report.order import loss_rank, student_order, task_header, task_rank
from tune.report.plots import method_color

COSTS = (("student_parameters_m", "student parameters (M)"), ("device_hours_per_trial", "device-hours per trial"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def pareto_mask(cost: pd.Series, score: pd.Series) -> list[bool]:
    """True where no other point is at most as costly and at least as good, and strictly better in one of them."""
    points = list(zip(cost.tolist(), score.tolist(), strict=True))
    return [not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in points) for c, s in points]


def cost_frame(leaderboard: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with the two costs and the score ×100 (NaN costs dropped) and `pareto_<cost>` flags per task."""
    frame = leaderboard.copy()
    frame["score"] = 100 * pd.to_numeric(frame["score_mean"], errors="coerce")
    frame["device_hours_per_trial"] = (pd.to_numeric(frame["device_hours_total"], errors="coerce")
                                       / pd.to_numeric(frame["n_trials"], errors="coerce"))
    frame["student_parameters_m"] = pd.to_numeric(frame["student_parameters_m"], errors="coerce")
    for cost, _ in COSTS:
        frame[f"pareto_{cost}"] = False
        for _, part in frame.dropna(subset=[cost, "score"]).groupby("task"):
            frame.loc[part.index, f"pareto_{cost}"] = pareto_mask(part[cost], part["score"])
    return frame


def _nested_size(depth: int) -> float:
    """Marker area of the depth-th marker under the top one at a shared point (0: the top one, smallest)."""
    return 42.0 * (1 + 1.5 * depth)


def plot_pareto(leaderboard: pd.DataFrame) -> Figure:
    """A column per task, a row per cost: one marker per method (colour) and student (shape), the CE baseline in
    grey, the Pareto-optimal cells ringed in black and joined by the front's staircase. Methods on the same point
    are nested (the first drawn largest), so that none hides another."""
    frame = cost_frame(leaderboard)
    tasks = sorted(frame["task"].dropna().unique(), key=task_rank)
    students = student_order(frame)
    fig = Figure(figsize=(3.3 * max(1, len(tasks)), 6.2), layout="constrained")
    axes = fig.subplots(len(COSTS), max(1, len(tasks)), squeeze=False)
    methods = sorted(frame["loss"].dropna().unique(), key=loss_rank)
    for col, task in enumerate(tasks):
        part = frame[frame["task"] == task]
        metric = part["metric"].dropna().iloc[0] if part["metric"].notna().any() else None
        for row, (cost, label) in enumerate(COSTS):
            ax = axes[row][col]
            points = part.dropna(subset=[cost, "score"])
            # methods that land on one point (taylor at tau 1 = ce) are drawn as nested markers, largest first
            place = points[[cost, "score"]].round(6).apply(tuple, axis=1)
            rank, count = place.groupby(place).cumcount(), place.map(place.value_counts())
            for i, cell in points.iterrows():
                marker = _MARKERS[students.index(cell["student"]) % len(_MARKERS)] if cell["student"] in students else "o"
                ax.scatter(cell[cost], cell["score"], color=method_color(cell["loss"]), marker=marker,
                           s=_nested_size(count[i] - 1 - rank[i]), edgecolors="white", linewidths=0.6,
                           zorder=3 + 0.01 * rank[i])
            front = points[points[f"pareto_{cost}"]].sort_values(cost)
            ax.scatter(front[cost], front["score"], s=[_nested_size(count[i] - 1) + 80 for i in front.index],
                       facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
            if len(front) > 1:
                ax.step(front[cost], front["score"], where="post", color="black", linewidth=0.8, alpha=0.6)
            ax.set_xlabel(label)
            if row == 0:
                ax.set_title(task_header(task, metric))
            if col == 0:
                ax.set_ylabel("dev score ×100")
            ax.grid(alpha=0.3)
    handles = [axes[0][0].scatter([], [], color=method_color(m), marker="o", label=m) for m in methods]
    handles += [axes[0][0].scatter([], [], color="0.6", marker=_MARKERS[i % len(_MARKERS)], label=f"student {s}")
                for i, s in enumerate(students)]
    handles.append(axes[0][0].scatter([], [], s=120, facecolors="none", edgecolors="black", label="Pareto-optimal"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), frameon=False)
    fig.suptitle("Score against cost: a point per task × student × method (mean over seeds)")
    return fig
