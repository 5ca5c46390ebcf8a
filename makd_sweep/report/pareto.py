"""Score against cost: the Pareto front of (student, method) cells per task, against student parameters and against
device-hours per trial. The point of "cost-effective distillation" is this trade-off, so the report shows it first."""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from makd_sweep.report.layout import equal_to_ce, few_ticks, fit_legend, fit_suptitle, legend_label
from makd_sweep.report.order import loss_rank, student_order, task_header, task_rank
from makd_sweep.report.plots import draw_references, method_color, teacher_kinds_differ

COSTS = (("student_parameters_m", "student parameters (M)"), ("latency_ms_student", "ms per example, batch 1"),
         ("device_hours_per_trial", "device-hours per trial"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def pareto_mask(cost: pd.Series, score: pd.Series) -> list[bool]:
    """True where no other point is at most as costly and at least as good, and strictly better in one of them."""
    points = list(zip(cost.tolist(), score.tolist(), strict=True))
    return [not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2 in points) for c, s in points]


def cost_frame(leaderboard: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with the two costs and the score ×100 (NaN costs dropped) and `pareto_<cost>` flags per task."""
    frame = leaderboard.copy()
    frame["score"] = 100 * pd.to_numeric(frame["dev_score_mean"], errors="coerce")
    frame["device_hours_per_trial"] = (pd.to_numeric(frame["device_hours_total"], errors="coerce")
                                       / pd.to_numeric(frame["n_trials"], errors="coerce"))
    frame["student_parameters_m"] = pd.to_numeric(frame["student_parameters_m"], errors="coerce")
    # a student's inference cost does not depend on how it was trained: one value per task x student (the median
    # over its cells), so that measurement noise never separates two methods of one student
    latency = pd.to_numeric(frame.get("latency_ms_mean", pd.Series(index=frame.index, dtype=float)), errors="coerce")
    frame["latency_ms_student"] = latency.groupby([frame["task"], frame["student"]]).transform("median")
    for cost, _ in COSTS:
        frame[f"pareto_{cost}"] = False
        for _, part in frame.dropna(subset=[cost, "score"]).groupby("task"):
            frame.loc[part.index, f"pareto_{cost}"] = pareto_mask(part[cost], part["score"])
    return frame


def _nested_size(depth: int) -> float:
    """Marker area of the depth-th marker under the top one at a shared point (0: the top one, smallest)."""
    return 42.0 * (1 + 1.5 * depth)


def drawable_costs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The costs a panel row can say something about: two or more distinct values (one student: no parameter axis)."""
    return [(cost, label) for cost, label in COSTS if frame[cost].dropna().round(9).nunique() >= 2]


def plot_pareto(leaderboard: pd.DataFrame) -> Figure | None:
    """A column per task, a row per cost with two or more distinct values: one marker per method (colour) and
    student (shape), the CE baseline in grey, the Pareto-optimal cells ringed in black and joined by the front's
    staircase; the majority-class baseline and the teacher's own score are black lines. Methods on the same point are nested (the first drawn largest), so that none hides another; the
    legend says which methods score exactly ce's score. None when no cost varies (nothing to trade off)."""
    frame = cost_frame(leaderboard)
    costs = drawable_costs(frame)
    tasks = sorted(frame["task"].dropna().unique(), key=task_rank)
    if not costs or not tasks:
        return None
    students = student_order(frame)
    fig = Figure(figsize=(max(3.4 * len(tasks), 6.4), 3.1 * len(costs) + 1.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(costs), len(tasks), squeeze=False)
    methods = sorted(frame["loss"].dropna().unique(), key=loss_rank)
    references: dict[str, object] = {}  # legend label -> line (the majority class, the teacher's own score)
    name_kinds = teacher_kinds_differ(frame)  # one legend for every panel: decided once for the figure
    for col, task in enumerate(tasks):
        part = frame[frame["task"] == task]
        metric = part["metric"].dropna().iloc[0] if part["metric"].notna().any() else None
        for row, (cost, label) in enumerate(costs):
            ax = axes[row][col]
            draw_references(ax, part, references, name_kinds=name_kinds)
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
            few_ticks(ax.xaxis)
            ax.margins(x=0.15, y=0.15)
            if row == 0:
                ax.set_title(task_header(task, metric))
            if col == 0:
                ax.set_ylabel("dev score ×100")
            ax.grid(alpha=0.3)
    on_ce = equal_to_ce(leaderboard)
    handles = [Line2D([], [], color=method_color(m), marker="o", linestyle="") for m in methods]
    labels = [legend_label(m, on_ce, "its scores") for m in methods]
    if len(students) > 1:
        handles += [Line2D([], [], color="0.6", marker=_MARKERS[i % len(_MARKERS)], linestyle="")
                    for i in range(len(students))]
        labels += [f"student {s}" for s in students]
    handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=10, linestyle=""))
    labels.append("Pareto-optimal")
    handles += list(references.values())
    labels += list(references)
    fit_suptitle(fig, "Score against cost: a point per task × student × method (mean over seeds)")
    fit_legend(fig, handles, labels)
    return fig


WITHIN_COSTS = {"params": "student_parameters_m", "latency": "latency_ms_student",
                "device-hours": "device_hours_per_trial"}


def cheapest_within(leaderboard: pd.DataFrame, points: float, cost: str = "params") -> pd.DataFrame:
    """Per task: the best cell, and the cheapest cell (by `cost`, then by score) whose mean dev score is within
    `points` (×100) of it: what distillation is for, a smaller model that gives up at most that much. Cells at the
    majority-class baseline or predicting one class never qualify (they learned nothing); a task whose cells lack
    the cost is left out."""
    from makd_sweep.report.rank import known_true

    column = WITHIN_COSTS[cost]
    frame = cost_frame(leaderboard)
    rows = []
    for task, part in frame.dropna(subset=["score"]).groupby("task", sort=False):
        flags = [part.get(c, pd.Series(False, index=part.index)) for c in ("at_majority", "constant_predictor")]
        learned = part[[not (known_true(a) or known_true(c)) for a, c in zip(*flags, strict=True)]]
        if learned.empty:
            continue
        priced = learned.dropna(subset=[column])
        if priced.empty:
            continue
        best = learned.loc[learned["score"].idxmax()]
        near = priced[priced["score"] >= best["score"] - points]
        if near.empty:
            continue
        pick = near.sort_values([column, "score"], ascending=[True, False], kind="stable").iloc[0]
        rows.append({"task": task, "best": f"{best['student']} {best['loss']}", "best_score": best["score"],
                     "within": f"{pick['student']} {pick['loss']}", "score": pick["score"],
                     "points_given_up": best["score"] - pick["score"], cost: pick[column],
                     f"best_{cost}": best.get(column)})
    return pd.DataFrame(rows)
