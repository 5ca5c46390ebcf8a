"""Paired differences by seed with a Student-t interval (makd_sweep/report/paired.py), in the leaderboard and the table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from makd_sweep.report.build import build
from makd_sweep.report.paired import paired_difference
from tests.test_leaderboard import trial, write_experiment


def by_seed(*scores: float, seeds=None) -> pd.Series:
    return pd.Series(scores, index=list(seeds or range(len(scores))), dtype=float)


def seeds_frame(scores, weights, predictions) -> pd.DataFrame:
    return pd.DataFrame({"dev_score": scores, "weights_fingerprint": weights, "predictions_fingerprint": predictions},
                        index=range(len(scores)))


def test_equal_scores_are_identical_only_when_the_weights_fingerprints_are_equal_at_every_seed():
    ce = seeds_frame([0.61, 0.58, 0.64], ["w0", "w1", "w2"], ["p0", "p1", "p2"])
    d = paired_difference(seeds_frame([0.61, 0.58, 0.64], ["w0", "w1", "w2"], ["p0", "p1", "p2"]), ce)
    assert d.identical and d.agreement == "identical" and (d.mean, d.ci_low, d.ci_high, d.pairs) == (0, 0, 0, 3)
    assert d.describe() == "identical"
    same = paired_difference(seeds_frame([0.61, 0.58, 0.64], ["x0", "w1", "w2"], ["p0", "p1", "p2"]), ce)
    assert not same.identical and same.agreement == "same predictions"
    assert same.describe() == "+0.0 (same predictions)" and same.contains_zero
    tie = paired_difference(seeds_frame([0.61, 0.58, 0.64], ["x0", "x1", "x2"], ["p0", "q1", "p2"]), ce)
    assert tie.agreement == "tie" and tie.describe() == "+0.0 (tie)"


def test_equal_scores_without_fingerprints_are_unknown_never_identical():
    d = paired_difference(by_seed(0.61, 0.58, 0.64), by_seed(0.61, 0.58, 0.64))
    assert not d.identical and d.agreement == "unknown"
    assert d.describe() == "+0.0 (equal scores; identity unknown)"
    one_side = seeds_frame([0.61, 0.58, 0.64], ["w0", None, "w2"], ["p0", "p1", "p2"])
    assert paired_difference(one_side, seeds_frame([0.61, 0.58, 0.64], ["w0", "w1", "w2"], ["p0", "p1", "p2"])
                             ).agreement == "unknown"


def test_different_scores_have_no_agreement_whatever_the_fingerprints():
    d = paired_difference(seeds_frame([0.7, 0.6], ["w0", "w1"], ["p0", "p1"]),
                          seeds_frame([0.6, 0.6], ["w0", "w1"], ["p0", "p1"]))
    assert d.agreement == "" and not d.identical and d.mean == pytest.approx(0.05)


def test_the_interval_is_the_student_t_interval_of_the_paired_differences():
    # differences 0.01, 0.03, 0.02: mean 0.02, sd 0.01, t(0.975, df=2) = 4.302653 (a t table)
    d = paired_difference(by_seed(0.51, 0.63, 0.72), by_seed(0.50, 0.60, 0.70))
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert not d.identical and d.pairs == 3
    assert d.mean == pytest.approx(0.02) and d.ci_low == pytest.approx(0.02 - half, abs=1e-6)
    assert d.ci_high == pytest.approx(0.02 + half, abs=1e-6)
    assert d.contains_zero  # -0.0048 .. 0.0448
    assert d.describe() == "+2.0 [-0.5, +4.5]"


def test_only_shared_seeds_are_paired_and_one_pair_has_no_interval():
    d = paired_difference(by_seed(0.7, 0.8, seeds=[0, 5]), by_seed(0.6, 0.9, seeds=[0, 1]))
    assert d.pairs == 1 and d.mean == pytest.approx(0.1) and math.isnan(d.ci_low)
    assert paired_difference(by_seed(0.7, seeds=[3]), by_seed(0.6, seeds=[4])).pairs == 0


def fingerprinted(loss: str, seed: int, weights: str | None = None, predictions: str | None = None,
                  classes: int = 2, **kwargs) -> dict:
    """A trial row with its best epoch's fingerprints (its own unless given) and dev class count."""
    return trial(loss=loss, seed=seed, weights_fingerprint=weights or f"{loss}-w{seed}",
                 predictions_fingerprint=predictions or f"{loss}-p{seed}", predicted_classes=classes, **kwargs)


def test_the_leaderboard_pairs_by_seed_and_the_table_marks_identical_and_undistinguished_cells(tmp_path):
    rows = []
    for seed, ce, vanilla, mse in [(0, 0.60, 0.70, 0.61), (1, 0.62, 0.71, 0.60), (2, 0.58, 0.69, 0.605)]:
        rows += [fingerprinted("ce", seed, score=ce),
                 fingerprinted("taylor", seed, f"ce-w{seed}", f"ce-p{seed}", lam=0.0, score=ce),  # ce's weights
                 fingerprinted("vanilla", seed, lam=0.0, score=vanilla), fingerprinted("mse", seed, lam=0.0, score=mse)]
    result = build([write_experiment(tmp_path / "exp", rows)])
    board = result.leaderboard.set_index("loss")
    taylor = board.loc["taylor"]
    assert taylor["identical_to_ce"] and taylor["agreement_vs_ce"] == "identical" and taylor["pairs_vs_ce"] == 3
    assert (taylor["delta_vs_ce"], taylor["ci_low_vs_ce"], taylor["ci_high_vs_ce"]) == (0.0, 0.0, 0.0)
    vanilla = board.loc["vanilla"]
    assert not vanilla["identical_to_ce"] and vanilla["agreement_vs_ce"] == ""
    assert vanilla["delta_vs_ce"] == pytest.approx(0.1)
    assert 0 < vanilla["ci_low_vs_ce"] < 0.1 < vanilla["ci_high_vs_ce"]
    assert board.loc["taylor", "delta_vs_vanilla"] == pytest.approx(-0.1) and board.loc["ce", "pairs_vs_ce"] == 0
    lines = {line.split(" | ")[2]: line for line in result.paper_table_markdown.splitlines()[2:6]}
    assert lines["taylor"].endswith("| 60.0 = | 60.0 | identical |")
    assert lines["vanilla"].endswith("| **70.0** | **70.0** | +10.0 [+7.5, +12.5] |")  # the CI excludes 0: no °
    assert " 60.5 ° | " in lines["mse"]  # +0.17 with a CI around 0


def test_the_tables_use_the_final_stage_by_default_and_stage_search_on_request(tmp_path, capsys):
    from makd_sweep.report.cli import main

    rows = [trial(loss="ce", score=0.60, stage="search"), trial(loss="vanilla", lam=0.0, score=0.55, stage="search",
                                                              status="STOPPED", epochs=1),
            trial(loss="ce", score=0.61, stage="final"), trial(loss="vanilla", lam=0.0, score=0.64, stage="final")]
    root = write_experiment(tmp_path / "exp", rows)
    final = build([root])
    assert final.stage == "final" and final.stages == {"search": 2, "final": 2}
    assert list(final.leaderboard["dev_score_mean"]) == [0.61, 0.64] and "†" not in final.paper_table_markdown
    search = build([root], stage="search")
    assert list(search.leaderboard["dev_score_mean"]) == [0.60, 0.55]
    assert "55.0 ° †" not in search.paper_table_markdown and "55.0 †" in search.paper_table_markdown
    assert main([str(root), "--stage", "search", "--markdown", "-"]) == 0
    captured = capsys.readouterr()
    assert "| 55.0 † |" in captured.out and "2 finished search-stage trial(s)" in captured.err
    only_search = write_experiment(tmp_path / "old", rows[:2])
    assert main([str(only_search), "--stage", "final"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("makd: error: stage: no finished final-stage")


def test_constant_predictors_of_different_losses_are_same_predictions_not_identical(tmp_path):
    """The committed 2x128 MRPC case: vanilla and ce both answer "paraphrase" for every pair (F1 81.2): different
    students, one prediction; the table says so and marks the constant predictor."""
    rows = []
    for seed in (0, 1):
        constant = {"predictions": "all-ones", "classes": 1, "score": 0.812, "task": "mrpc", "metric": "f1"}
        rows += [fingerprinted("ce", seed, **constant), fingerprinted("vanilla", seed, lam=0.0, **constant),
                 fingerprinted("taylor", seed, f"ce-w{seed}", lam=0.0, **constant)]
    result = build([write_experiment(tmp_path / "exp", rows)])
    board = result.leaderboard.set_index("loss")
    assert board.loc["vanilla", "agreement_vs_ce"] == "same predictions"
    assert not board.loc["vanilla", "identical_to_ce"] and board.loc["taylor", "identical_to_ce"]
    assert board["constant_predictor"].all()
    lines = {line.split(" | ")[2]: line for line in result.paper_table_markdown.splitlines()[2:5]}
    assert "81.2** =p (1 class) |" in lines["vanilla"] and "81.2** = (1 class) |" in lines["taylor"]
    assert "81.2** (1 class) |" in lines["ce"]
    assert lines["vanilla"].endswith("| +0.0 (same predictions) |")
    assert "=p the same dev predictions" in result.paper_table_markdown
    assert "a constant predictor" in result.paper_table_markdown


def test_old_trials_without_fingerprints_read_identity_as_unknown_with_a_note(tmp_path):
    rows = [trial(loss=loss, lam=0.0 if loss == "taylor" else 1.0, seed=seed, score=0.6 + seed / 100)
            for seed in (0, 1) for loss in ("ce", "taylor")]
    root = write_experiment(tmp_path / "exp", rows)
    result = build([root / "trials.csv"])
    taylor = result.leaderboard.set_index("loss").loc["taylor"]
    assert pd.isna(taylor["identical_to_ce"]) and taylor["agreement_vs_ce"] == "unknown"
    assert " =? |" in result.paper_table_markdown and " = |" not in result.paper_table_markdown
    assert "without weight fingerprints" in result.paper_table_markdown
    assert "| +0.0 (equal scores; identity unknown) |" in result.paper_table_markdown


def test_the_answer_states_each_tasks_comparison_from_the_numbers(tmp_path):
    from makd_sweep.report.verdict import verdict_lines

    rows = []
    for seed, ce, vanilla in [(0, 0.60, 0.70), (1, 0.62, 0.71), (2, 0.58, 0.69)]:
        rows += [fingerprinted("ce", seed, score=ce), fingerprinted("vanilla", seed, lam=0.0, score=vanilla),
                 fingerprinted("taylor", seed, f"ce-w{seed}", lam=0.0, score=ce)]
    rows += [fingerprinted("ce", 0, task="mrpc", metric="f1", score=0.8),
             fingerprinted("vanilla", 0, task="mrpc", metric="f1", lam=0.0, score=0.7)]
    lines = verdict_lines(build([write_experiment(tmp_path / "exp", rows)]).leaderboard)
    assert lines == [
        "MRPC (F1), student 2x128: ce scores highest, 80.0; next vanilla, 70.0: -10.0 vs ce (1 seed: no CI).",
        "RTE (Acc), student 2x128: best method vanilla, 70.0 vs ce's 60.0: +10.0 [+7.5, +12.5] vs ce over 3 seeds: "
        "a difference at 95% confidence; taylor is ce's student at every seed (identical weights).",
    ]


def test_equal_weights_scored_on_another_cpu_are_one_student():
    """A pooled ce copy (another machine) scores the same weights 2e-8 apart: identical, a difference of 0."""
    d = paired_difference(seeds_frame([0.41341, 0.40480], ["w0", "w1"], ["p0", "p1"]),
                          seeds_frame([0.41341 + 2e-8, 0.40480 - 2e-8], ["v0 w0", "w1 v1"], ["p0", "p1"]))
    assert d.identical and (d.mean, d.ci_low, d.ci_high) == (0.0, 0.0, 0.0)
    apart = paired_difference(seeds_frame([0.41341, 0.40480], ["w0", "w1"], ["p0", "p1"]),
                              seeds_frame([0.41341 + 1e-4, 0.40480], ["v0 w0", "w1 v1"], ["p0", "p1"]))
    assert not apart.identical and apart.mean == pytest.approx(-5e-5)
