"""The adaptive-seeds stopping rule (makd_sweep/report/sequential.py): with no true difference, races stopped on the
Bonferroni-corrected intervals exclude 0 at most ~5% of the time; the same rule on uncorrected intervals does not."""

from __future__ import annotations

import numpy as np
import pytest

from makd_sweep.report.sequential import corrected_interval, look, planned_looks, race

RACES = 3000


def false_positive_rate(looks: int | None, seed: int = 0) -> float:
    """Share of null races (true difference 0, noise sd 1) that stop on an interval excluding 0; looks=None uses
    the uncorrected 95% interval at every look."""
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(RACES):
        diffs = rng.normal(0.0, 1.0, size=10)
        if looks is None:  # what a naive "add seeds until significant" would do
            plan = planned_looks(3, 10)
            stopped = next((look(diffs[:n], 1) for n in plan if look(diffs[:n], 1).decided), look(diffs, 1))
        else:
            stopped = race(diffs, 3, 10)
        wrong += stopped.low > 0 or stopped.high < 0
    return wrong / RACES


@pytest.mark.slow
def test_with_no_true_difference_stopped_intervals_exclude_0_at_most_5_percent_of_the_time():
    corrected = false_positive_rate(looks=8)
    naive = false_positive_rate(looks=None)
    assert corrected <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / RACES)  # at most α, within Monte Carlo error
    assert naive > 0.08  # looking 8 times at 95% intervals finds "differences" far more often than 5%


def test_a_real_difference_is_decided_early_and_covered():
    rng = np.random.default_rng(1)
    stops, covered, found = [], 0, 0
    for _ in range(500):
        result = race(rng.normal(2.0, 1.0, size=10), 3, 10)  # a difference of 2 seed-noise sd
        stops.append(result.n)
        covered += result.low <= 2.0 <= result.high
        found += result.low > 0
    # measured: found in 98.6% of races after 5.8 seeds on average (a fixed final stage would spend 10), the
    # stopped interval covering the truth in 99.4% (Bonferroni is conservative)
    assert found / 500 >= 0.95 and np.mean(stops) < 7 and covered / 500 >= 0.95


def test_identical_students_are_decided_at_the_first_look_and_the_plan_ends_at_max():
    assert race([0.0] * 10, 3, 10, tolerance=0.001).reason == "within tolerance"
    assert planned_looks(3, 10, 3) == [3, 6, 9, 10]
    undecided = race([1.0, -1.0] * 5, 3, 10)
    assert (undecided.n, undecided.decided, undecided.reason) == (10, False, "max seeds")
    mean, low, high = corrected_interval([1.0, 2.0, 3.0], looks=1)
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 / 3 ** 0.5, abs=1e-5)
    with pytest.raises(ValueError):
        planned_looks(1, 10)


ADAPTIVE = {"name": "a", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6",
            "losses": ["ce", "vanilla", "taylor"], "lams": [0.0], "scheduler": {"kind": "asha"},
            "final": {"seeds": {"min": 2, "max": 4}, "tolerance": 1.0}}


def _final_rows(scores: dict[str, list[float]]) -> list[dict]:
    """Finished final-stage rows of one setting per loss (ce at λ 1), dev scores by seed."""
    return [{"student": "2x128", "loss": loss, "lam": 1.0 if loss == "ce" else 0.0, "tau": 1.0, "lr": 5e-5,
             "seed": seed, "dev_score": score, "status": "TERMINATED"}
            for loss, by_seed in scores.items() for seed, score in enumerate(by_seed)]


def test_the_next_round_adds_seeds_only_to_the_settings_of_undecided_comparisons():
    """Taylor (ce's student) and a vanilla 10 points above ce at every seed are decided after the first round: no
    second round. A noisy vanilla leaves vanilla vs ce and taylor vs vanilla undecided: all three settings get seed
    2, the next look of the plan (2, 3, 4 seeds)."""
    from makd_sweep.config import parse_config
    from makd_sweep.search.final import next_round_points, seed_rounds

    cfg = parse_config(ADAPTIVE)
    assert seed_rounds(cfg) == [2, 3, 4] and cfg.final.seeds == (0, 1, 2, 3) and cfg.final.top_k == 1
    first = [{k: r[k] for k in ("student", "loss", "lam", "tau", "lr", "seed")} | {"stage": "final", "looks": 3,
                                                                                   "tolerance": 1.0}
             for r in _final_rows({"ce": [0.7, 0.72], "vanilla": [0.8, 0.82], "taylor": [0.7, 0.72]})]
    decided = _final_rows({"ce": [0.7, 0.72], "vanilla": [0.8, 0.82], "taylor": [0.7, 0.72]})
    assert next_round_points(cfg, first, decided, 1) == []
    noisy = _final_rows({"ce": [0.7, 0.72], "vanilla": [0.6, 0.74], "taylor": [0.7, 0.72]})
    nxt = next_round_points(cfg, first, noisy, 1)
    assert sorted((p["loss"], p["seed"]) for p in nxt) == [("ce", 2), ("taylor", 2), ("vanilla", 2)]
    assert all(p["looks"] == 3 and p["stage"] == "final" for p in nxt)


@pytest.mark.parametrize("final, field", [({"seeds": {"min": 5, "max": 3}}, "final.seeds.max"),
                                          ({"seeds": {"min": 1, "max": 3}}, "final.seeds.min"),
                                          ({"seeds": {"min": 2, "max": 3, "every": 1}}, "final.seeds.every"),
                                          ({"seeds": {"min": 2, "max": 3}, "top_k": 2}, "final.top_k"),
                                          ({"seeds": [0, 1], "tolerance": 2.0}, "final.tolerance"),
                                          ({"seeds": {"min": 2, "max": 3}, "tolerance": -1}, "final.tolerance")])
def test_a_bad_adaptive_final_section_names_its_field(final, field):
    from makd.errors import UsageError
    from makd_sweep.config import parse_config

    with pytest.raises(UsageError) as err:
        parse_config({**ADAPTIVE, "final": final})
    assert err.value.field == field


def test_the_leaderboard_says_decided_and_corrects_intervals_for_the_looks():
    """An adaptive stage's cells carry their looks; a difference is decided when its corrected interval excludes 0
    or is at most `tolerance` points wide; the interval is wider than the uncorrected one of the same seeds."""
    import pandas as pd

    from makd_sweep.report.rank import leaderboard_table
    from makd_sweep.report.trials import trials_frame

    rows = pd.DataFrame(_final_rows({"ce": [0.70, 0.72, 0.71], "vanilla": [0.73, 0.73, 0.76],
                                     "taylor": [0.70, 0.72, 0.71]}))
    rows = rows.assign(task="rte", stage="final", metric="accuracy", best_score=rows["dev_score"], last_epoch_score=rows["dev_score"],
                       weights_fingerprint=[f"w{i % 3}" for i in range(len(rows))], predictions_fingerprint="p")
    rows.loc[rows["loss"] == "vanilla", "weights_fingerprint"] = "v"
    fixed = leaderboard_table(trials_frame(rows)).set_index("loss")
    adaptive = leaderboard_table(trials_frame(rows.assign(looks=3, tolerance=1.0))).set_index("loss")
    assert fixed["looks"].isna().all() and fixed["decided_vs_ce"].isna().all()
    assert (adaptive["looks"].dropna() == 3).all()
    assert adaptive.loc["taylor", "decided_vs_ce"] and adaptive.loc["taylor", "agreement_vs_ce"] == "identical"
    width = adaptive.loc["vanilla", "ci_high_vs_ce"] - adaptive.loc["vanilla", "ci_low_vs_ce"]
    assert width > fixed.loc["vanilla", "ci_high_vs_ce"] - fixed.loc["vanilla", "ci_low_vs_ce"]
    assert adaptive.loc["vanilla", "decided_vs_ce"] == (adaptive.loc["vanilla", "ci_low_vs_ce"] > 0)


def test_the_replay_on_a_ten_seed_final_stage_counts_the_trials_the_rule_saves(tmp_path, capsys):
    """bench/adaptive_seeds.py on a fixed 10-seed stage: taylor = ce and a vanilla 10 points above ce at every seed
    are decided at the first look (3 seeds each: 9 trials instead of 30), with the fixed stage's decisions."""
    import pandas as pd

    from bench import adaptive_seeds

    rng = np.random.default_rng(0)
    ce = 0.7 + rng.normal(0, 0.02, size=10)
    rows = pd.DataFrame(_final_rows({"ce": list(ce), "taylor": list(ce), "vanilla": list(ce + 0.1)}))
    path = tmp_path / "trials-x.csv"
    rows.assign(task="rte", stage="final", metric="accuracy", best_score=rows["dev_score"]).to_csv(path, index=False)
    assert adaptive_seeds.main([str(path), "--min", "3", "--max", "10", "--tolerance", "1.0"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == "| trials-x | rte | 3 | 30 | 9 | 70% | 3 | 3 | 0 |"
    assert adaptive_seeds.main([str(path), "--min", "4", "--max", "3"]) == 2
    assert adaptive_seeds.main([str(path), "--max", "11"]) == 2  # seed 10 never ran
