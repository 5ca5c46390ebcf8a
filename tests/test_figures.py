"""Every figure of the report stays legible at every sweep size (issue 28): rendered for several sweep shapes, no two
tick labels overlap, no title, label or legend leaves the canvas, no panel is empty, epochs get integer ticks, and a
panel is drawn only where it says something (no parameter axis with one student, no λ axis with one λ). Measured
with the renderer's text extents, not by looking at pixels."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from makd.tasks import get_task
from makd_sweep.report.build import build
from makd_sweep.report.curves import plot_learning_curves
from makd_sweep.report.pareto import plot_pareto
from makd_sweep.report.plots import MAJORITY_LABEL, SEARCH_LABEL, TEACHER_LABEL, plot_lambda_curves
from tests.test_leaderboard import trial, write_experiment

RESULTS = Path(__file__).resolve().parents[1] / "results" / "glue-cpu"


def sweep_rows(students: list[str], tasks: list[str], seeds=(0,), lams=(0.0, 0.5), stage="search") -> list[dict]:
    """A finished sweep's trials: ce, vanilla and taylor at each λ per seed; taylor is ce's student (same weights and
    score); vanilla differs; walls of 20-40 s (device-hours of ~0.008, the demo's scale)."""
    rng = np.random.default_rng(0)
    rows = []
    for student, task, seed in itertools.product(students, tasks, seeds):
        metric = get_task(task).metric
        ce = float(rng.uniform(0.5, 0.8))

        def add(loss, lam, score, weights, student=student, task=task, seed=seed, metric=metric):
            rows.append(trial(task=task, student="2x128", loss=loss, lam=lam, seed=seed, score=score, metric=metric,
                              stage=stage, wall=float(rng.uniform(20, 40)), weights_fingerprint=weights,
                              predictions_fingerprint=weights + "-p", predicted_classes=2, majority_score=0.45,
                              teacher_score=None if loss == "ce" else 0.6)
                        | {"student": student, "student_parameters_m": PARAMS[student]})

        add("ce", 1.0, ce, f"ce-{student}-{task}-{seed}")
        for lam in lams:
            add("taylor", lam, ce, f"ce-{student}-{task}-{seed}")
            add("vanilla", lam, float(np.clip(ce + rng.normal(0, 0.03), 0, 1)), f"v-{lam}-{student}-{task}-{seed}")
    return rows


PARAMS = {"2x128": 4.4, "2x384": 15.6, "zoo:minilm-l6@0,5": 15.6, "6x384": 22.7, "zoo:smollm2-135m@0,10,19,29": 42.5,
          "zoo:smollm2-135m@0,6,12,18,24,29": 49.6}


def report_for(tmp_path: Path, rows: list[dict]):
    return build([write_experiment(tmp_path / "exp", rows)])


def curves_for(trials: pd.DataFrame, epochs: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"task": t.task, "trial_id": t.trial_id, "epoch": e, "score": 100 * t.best_score - 3 + e}
                         for t in trials.itertuples() for e in range(1, epochs + 1)])


def visible_tick_labels(axis) -> list[Text]:
    low, high = sorted(axis.get_view_interval())
    return [tick.label1 for tick in axis.get_major_ticks()
            if low - 1e-12 <= tick.get_loc() <= high + 1e-12 and tick.label1.get_visible() and tick.label1.get_text()]


def assert_legible(fig, name: str) -> None:
    fig.canvas.draw()
    renderer, canvas = fig.canvas.get_renderer(), fig.bbox
    ticks = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    every_tick_label = {id(t.label1) for axis in ticks for t in axis.get_major_ticks() + axis.get_minor_ticks()}
    drawn_tick_labels = {id(t) for axis in ticks for t in visible_tick_labels(axis)}
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if id(text) in every_tick_label and id(text) not in drawn_tick_labels:
            continue  # a tick outside the view: matplotlib does not draw it
        box = text.get_window_extent(renderer)
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1 and \
            box.y1 <= canvas.y1 + 1, f"{name}: {text.get_text()!r} extends past the figure"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1, f"{name}: the legend is wider than the figure"
    labels = [t for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text().strip()]
    for a, b in itertools.combinations(labels, 2):  # a long row label must not run into its neighbour's
        assert not a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer)), \
            f"{name}: {a.get_text()!r} overlaps {b.get_text()!r}"
    for ax in fig.axes:
        assert ax.has_data(), f"{name}: an empty panel ({ax.get_title()!r})"
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [t.get_window_extent(renderer) for t in visible_tick_labels(axis)]
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), f"{name}: tick labels overlap on {ax.get_title()!r}"


SHAPES = {
    "1 student x 1 task": dict(students=["zoo:minilm-l6@0,5"], tasks=["rte"]),
    "1 student x 2 tasks": dict(students=["zoo:minilm-l6@0,5"], tasks=["rte", "mrpc"]),
    "2 long-named students x 1 task": dict(students=["zoo:smollm2-135m@0,10,19,29",
                                                     "zoo:smollm2-135m@0,6,12,18,24,29"], tasks=["rte"]),
    "3 students x 4 tasks, 3 seeds": dict(students=["2x128", "6x384", "zoo:minilm-l6@0,5"],
                                          tasks=["sst2", "mrpc", "stsb", "rte"], seeds=(0, 1, 2)),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_figure_is_legible_at_every_sweep_shape(shape, tmp_path):
    report = report_for(tmp_path, sweep_rows(**SHAPES[shape]))
    board = report.leaderboard
    figures = {"pareto": plot_pareto(board), "lambda": plot_lambda_curves(report.trials, stage="search", board=board),
               "curves": plot_learning_curves(curves_for(report.trials), report.trials, board)}
    for name, fig in figures.items():
        assert fig is not None, f"{shape}: no {name} figure"
        assert_legible(fig, f"{shape} {name}")
    # a method drawn on top of ce is said so in every legend
    for name, fig in figures.items():
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert any(label.startswith("taylor (= ce:") for label in labels), (name, labels)
    # the references are lines in every score panel, named once in the legend
    for name in ("pareto", "lambda"):
        fig = figures[name]
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        assert labels.count(MAJORITY_LABEL) == 1 and labels.count(TEACHER_LABEL) == 1, (name, labels)
        for ax in fig.axes:
            levels = {round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if line.get_linestyle() in (":", "-.")}
            assert levels == {45.0, 60.0}, (name, levels)
    curves = figures["curves"]
    assert all(float(t.get_text()).is_integer() for ax in curves.axes for t in visible_tick_labels(ax.xaxis))


def test_a_panel_row_is_drawn_only_where_its_cost_varies(tmp_path):
    one = report_for(tmp_path / "one", sweep_rows(["zoo:minilm-l6@0,5"], ["rte", "mrpc"]))
    fig = plot_pareto(one.leaderboard)
    assert len(fig.axes) == 2 and {ax.get_xlabel() for ax in fig.axes} == {"device-hours per trial"}
    three = report_for(tmp_path / "three", sweep_rows(["2x128", "6x384", "zoo:minilm-l6@0,5"], ["rte"]))
    assert {ax.get_xlabel() for ax in plot_pareto(three.leaderboard).axes} == {
        "student parameters (M)", "device-hours per trial"}


def test_no_lambda_figure_with_one_lambda(tmp_path):
    report = report_for(tmp_path, sweep_rows(["zoo:minilm-l6@0,5"], ["rte"], lams=(0.0,), stage="final"))
    assert plot_lambda_curves(report.trials, stage="final", board=report.leaderboard) is None


@pytest.mark.skipif(not list(RESULTS.glob("trials-*.csv")), reason="no committed results")
@pytest.mark.parametrize("results", ["glue-cpu", "lm-cpu"])
def test_the_committed_results_figures_are_legible(results):
    report = build(sorted((RESULTS.parent / results).glob("trials-*.csv")))
    for name, fig in (("pareto", plot_pareto(report.leaderboard)),
                      ("lambda", plot_lambda_curves(report.trials, stage=report.stage, board=report.leaderboard,
                                                    search=report.search_trials))):
        assert fig is not None
        assert_legible(fig, f"committed {results} {name}")


def test_a_final_stage_lambda_figure_shows_the_search_curves_from_the_majority_baseline_up(tmp_path):
    """Issue 22: the final stage has one λ per method, the search had two: the figure draws each method's search
    curve (thin, dashed) beside its final point, and every panel's axis starts just under the majority class."""
    rows = sweep_rows(["2x128", "zoo:minilm-l6@0,5"], ["rte", "mrpc"], lams=(0.0, 0.5))
    rows += sweep_rows(["2x128", "zoo:minilm-l6@0,5"], ["rte", "mrpc"], seeds=(0, 1, 2), lams=(0.5,), stage="final")
    report = report_for(tmp_path, rows)
    assert report.stage == "final" and report.search_trials is not None
    fig = plot_lambda_curves(report.trials, stage="final", board=report.leaderboard, search=report.search_trials)
    assert fig is not None
    assert_legible(fig, "final with search curves")
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert SEARCH_LABEL in labels
    for ax in fig.axes:
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--" and list(line.get_xdata()) == [0, 0.5]]
        assert len(dashed) == 2  # vanilla's and taylor's search curves at λ 0 and 0.5
        low, high = ax.get_ylim()
        assert 40 <= low <= 44.0 + 1e-9 and high >= 60  # from under the majority class (45) up past the teacher (60)
    assert plot_lambda_curves(report.trials, stage="final", board=report.leaderboard) is None  # no search: one λ


TEACHERS = RESULTS.parent / "glue-teachers"


@pytest.mark.slow
@pytest.mark.skipif(len(list(TEACHERS.glob("trials-*.csv"))) < 3, reason="no committed glue-teachers sweeps")
def test_a_figure_with_two_teachers_names_each_teacher_line_in_every_panel():
    """results/glue-teachers: the 2x128 row has both teachers, the minilm row only the fine-tuned one; one legend
    serves every panel, so each teacher line is named by its kind there too (no unnamed third entry)."""
    report = build(sorted(TEACHERS.glob("trials-*.csv")))
    for fig in (plot_lambda_curves(report.trials, stage=report.stage, board=report.leaderboard,
                                   search=report.search_trials), plot_pareto(report.leaderboard)):
        labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        teachers = [label for label in labels if label.startswith(TEACHER_LABEL)]
        assert sorted(teachers) == [f"{TEACHER_LABEL} (fine-tuned teacher)", f"{TEACHER_LABEL} (teacher not fine-tuned)"]


def assert_every_point_inside(fig, what: str) -> None:
    """No marker or error bar of a panel lies outside its axes' limits (clipped points mislead silently)."""
    for ax in fig.axes:
        (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
        for container in ax.containers:  # errorbar: (data line, caps, bar line collections)
            line = container.lines[0]
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                assert x_low < x < x_high and y_low < y < y_high, (what, ax.get_title(), x, y)
            for bars in container.lines[2]:
                for segment in bars.get_segments():
                    (x0, y0), (x1, y1) = segment
                    assert x_low < min(x0, x1) and max(x0, x1) < x_high, (what, ax.get_title(), segment)
                    assert y_low <= min(y0, y1) and max(y0, y1) <= y_high, (what, ax.get_title(), segment)


def test_a_final_stage_with_many_methods_keeps_every_dodged_point_inside_its_panel(tmp_path):
    """Eight methods at λ 0 are dodged sideways past λ 0: the x axis widens to hold them, and the y axis holds every
    error bar (results/glue-teachers had its leftmost point cut off at λ −0.105)."""
    rng = np.random.default_rng(1)
    rows = []
    for stage, seeds, lams in (("search", (0,), (0.0, 0.5)), ("final", (0, 1, 2), (0.0,))):
        for seed in seeds:
            rows.append(trial(task="rte", loss="ce", seed=seed, score=0.55, stage=stage, majority_score=0.527,
                              weights_fingerprint=f"ce-{seed}", predicted_classes=2))
            for loss, tau, lam in itertools.product(("vanilla", "taylor", "reverse_kl", "jsd"), (1.0, 2.0), lams):
                rows.append(trial(task="rte", loss=loss, lam=lam, tau=tau, seed=seed, stage=stage,
                                  score=float(rng.uniform(0.45, 0.6)), majority_score=0.527, teacher_score=0.5,
                                  weights_fingerprint=f"{loss}-{tau}-{lam}-{seed}", predicted_classes=2))
    report = report_for(tmp_path, rows)
    fig = plot_lambda_curves(report.trials, stage="final", board=report.leaderboard, search=report.search_trials)
    assert fig is not None and sum(len(ax.containers) for ax in fig.axes) == 8
    assert_every_point_inside(fig, "eight methods")
    assert_legible(fig, "eight methods")


@pytest.mark.slow
@pytest.mark.skipif(len(list(TEACHERS.glob("trials-*.csv"))) < 3, reason="no committed glue-teachers sweeps")
def test_the_committed_glue_teachers_figure_keeps_every_point_inside_its_panel():
    report = build(sorted(TEACHERS.glob("trials-*.csv")))
    fig = plot_lambda_curves(report.trials, stage=report.stage, board=report.leaderboard, search=report.search_trials)
    assert_every_point_inside(fig, "results/glue-teachers")


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["1 student x 1 task", "3 students x 4 tasks, 3 seeds"])
def test_the_searched_keys_figure_is_legible_with_every_key_searched(shape, tmp_path):
    """makd_sweep/report/searched.py at its widest: all seven setting keys varied, one row of panels per task."""
    from makd_sweep.report.searched import SETTING_KEYS, plot_searched_keys

    rng = np.random.default_rng(1)
    rows = sweep_rows(**SHAPES[shape])
    for row in rows:
        row.update(tau=float(rng.choice([1.0, 2.0, 4.0])), lr=float(10 ** rng.uniform(-5, -3)),
                   weight_decay=float(rng.uniform(0, 0.1)), warmup_ratio=float(rng.choice([0.0, 0.05, 0.1])),
                   max_grad_norm=float(rng.choice([0.5, 1.0])), batch_size=int(rng.choice([16, 32, 64])))
    report = report_for(tmp_path, rows)
    fig = plot_searched_keys(report.trials)
    tasks = report.trials["task"].nunique()
    assert len(fig.axes) == len(SETTING_KEYS) * tasks
    assert [ax.get_xlabel() for ax in fig.axes[:len(SETTING_KEYS)]] == list(SETTING_KEYS)
    assert fig.axes[SETTING_KEYS.index("lr")].get_xscale() == "log"
    assert_legible(fig, f"{shape} searched keys")
