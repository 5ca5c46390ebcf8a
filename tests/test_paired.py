"""Paired differences by seed with a Student-t interval (tune/report/paired.py), in the leaderboard and the table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.test_leaderboard import trial, write_experiment
from tune.report.build import build
from tune.report.paired import paired_difference


def by_seed(*scores: float, seeds=None) -> pd.Series:
    return pd.Series(scores, index=list(seeds or range(len(scores))), dtype=float)


def test_identical_scores_give_identical_and_a_zero_interval():
    d = paired_difference(by_seed(0.61, 0.58, 0.64), by_seed(0.61, 0.58, 0.64))
    assert d.identical and (d.mean, d.ci_low, d.ci_high, d.pairs) == (0.0, 0.0, 0.0, 3)
    assert d.describe() == "identical"


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


def test_the_leaderboard_pairs_by_seed_and_the_table_marks_identical_and_undistinguished_cells(tmp_path):
    rows = []
    for seed, ce, vanilla, mse in [(0, 0.60, 0.70, 0.61), (1, 0.62, 0.71, 0.60), (2, 0.58, 0.69, 0.605)]:
        rows += [trial(loss="ce", seed=seed, score=ce), trial(loss="taylor", lam=0.0, seed=seed, score=ce),
                 trial(loss="vanilla", lam=0.0, seed=seed, score=vanilla),
                 trial(loss="mse", lam=0.0, seed=seed, score=mse)]
    result = build([write_experiment(tmp_path / "exp", rows)])
    board = result.leaderboard.set_index("loss")
    taylor = board.loc["taylor"]
    assert taylor["identical_to_ce"] and taylor["pairs_vs_ce"] == 3
    assert (taylor["delta_vs_ce"], taylor["ci_low_vs_ce"], taylor["ci_high_vs_ce"]) == (0.0, 0.0, 0.0)
    vanilla = board.loc["vanilla"]
    assert not vanilla["identical_to_ce"] and vanilla["delta_vs_ce"] == pytest.approx(0.1)
    assert 0 < vanilla["ci_low_vs_ce"] < 0.1 < vanilla["ci_high_vs_ce"]
    assert board.loc["taylor", "delta_vs_vanilla"] == pytest.approx(-0.1) and board.loc["ce", "pairs_vs_ce"] == 0
    lines = {line.split(" | ")[2]: line for line in result.paper_table_markdown.splitlines()[2:6]}
    assert lines["taylor"].endswith("| 60.0 = | 60.0 | identical |")
    assert lines["vanilla"].endswith("| **70.0** | **70.0** | +10.0 [+7.5, +12.5] |")  # the CI excludes 0: no °
    assert " 60.5 ° | " in lines["mse"]  # +0.17 with a CI around 0


def test_the_tables_use_the_final_stage_by_default_and_stage_search_on_request(tmp_path, capsys):
    from tune.report.cli import main

    rows = [trial(loss="ce", score=0.60, stage="search"), trial(loss="vanilla", lam=0.0, score=0.55, stage="search",
                                                              status="STOPPED", epochs=1),
            trial(loss="ce", score=0.61, stage="final"), trial(loss="vanilla", lam=0.0, score=0.64, stage="final")]
    root = write_experiment(tmp_path / "exp", rows)
    final = build([root])
    assert final.stage == "final" and final.stages == {"search": 2, "final": 2}
    assert list(final.leaderboard["score_mean"]) == [0.61, 0.64] and "†" not in final.paper_table_markdown
    search = build([root], stage="search")
    assert list(search.leaderboard["score_mean"]) == [0.60, 0.55]
    assert "55.0 ° †" not in search.paper_table_markdown and "55.0 †" in search.paper_table_markdown
    assert main([str(root), "--stage", "search", "--markdown", "-"]) == 0
    captured = capsys.readouterr()
    assert "| 55.0 † |" in captured.out and "2 finished search-stage trial(s)" in captured.err
    only_search = write_experiment(tmp_path / "old", rows[:2])
    assert main([str(only_search), "--stage", "final"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("makd: error: stage: no finished final-stage")
