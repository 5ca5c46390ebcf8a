"""The committed results are rebuilt from the committed CSVs by committed code (issue 5's acceptance), and the
headline table shows what the method implies (issue 12): at tau = 1 taylor scores ce's score, seed for seed (these
CSVs predate fingerprints, so the tables say the identity is unknown: issue 30)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from makd_sweep.report.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "results" / "glue-cpu"
EARLIER = RESULTS / "earlier"
FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"


@pytest.mark.parametrize("folder", [RESULTS, EARLIER], ids=["final-stage", "earlier"])
def test_makd_leaderboard_reprints_the_committed_table(folder, capsys):
    if not (folder / "table.md").is_file():
        pytest.skip(f"no committed {folder}/table.md")
    csvs = sorted(str(p) for p in folder.glob("*.csv"))
    assert csvs, f"{folder} holds no trials CSV"
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (folder / "table.md").read_text().strip()


@pytest.mark.skipif(not (EARLIER / "finetuned-teacher" / "table.md").is_file(), reason="no fine-tuned-teacher table")
def test_the_fine_tuned_teacher_table_is_rebuilt_from_its_csvs(capsys):
    folder = EARLIER / "finetuned-teacher"
    csvs = [str(EARLIER / "trials-2x384.csv"), *sorted(str(p) for p in folder.glob("trials-*.csv"))]
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (folder / "table.md").read_text().strip()


@pytest.mark.skipif(not (RESULTS / "tables" / "leaderboard.csv").is_file(), reason="no committed leaderboard")
def test_in_the_committed_final_stage_taylor_at_tau_1_ties_ce_at_every_seed_and_identity_reads_unknown():
    """These CSVs predate weight fingerprints (issue 30): equal scores are reported as such, never as `=`."""
    board = pd.read_csv(RESULTS / "tables" / "leaderboard.csv")
    trials = pd.concat(pd.read_csv(p) for p in RESULTS.glob("trials-*.csv"))
    final = trials[trials["stage"] == "final"]
    assert final["status"].eq("TERMINATED").all()  # the final stage never stops a trial early
    taylor = board[(board["loss"] == "taylor") & (board["best_tau"] == 1.0)]
    assert len(taylor) == len(board[board["loss"] == "ce"]) > 0
    assert taylor["identical_to_ce"].isna().all() and (taylor["agreement_vs_ce"] == "unknown").all()
    assert (taylor["pairs_vs_ce"] == 3).all() and "weights_fingerprint" not in trials
    assert not board["identical_to_ce"].fillna(False).astype(bool).any()  # no `=` anywhere: none can be shown
    assert (taylor["ci_low_vs_ce"] == 0).all() and (taylor["ci_high_vs_ce"] == 0).all()
    for (task, student), cell in final.groupby(["task", "student"]):
        ce = cell[cell["loss"] == "ce"].set_index("seed")["dev_score"]
        ta = cell[cell["loss"] == "taylor"].set_index("seed")["dev_score"]
        assert len(ce) == 3 and ce.sort_index().equals(ta.sort_index()), (task, student)


TEACHERS = RESULTS.parent / "glue-teachers"


@pytest.mark.skipif(not (TEACHERS / "table.md").is_file(), reason="no committed glue-teachers table yet")
def test_the_glue_teachers_table_is_rebuilt_from_its_finished_sweeps_and_taylor_is_ce(capsys):
    """results/glue-teachers (issue 22): the table from the CSVs of its finished sweeps; these trials carry weight
    fingerprints, so taylor at tau = 1 reads `identical` to ce, from the weights, on every task."""
    csvs = sorted(str(p) for p in TEACHERS.glob("trials-*.csv"))
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (TEACHERS / "table.md").read_text().strip()
    board = pd.read_csv(TEACHERS / "tables" / "leaderboard.csv")
    taylor = board[board["loss"].str.startswith("taylor") & (board["best_tau"] == 1.0)]
    assert len(taylor) and set(taylor["agreement_vs_ce"]) == {"identical"}


ADAPTIVE = RESULTS.parent / "adaptive-seeds"


@pytest.mark.skipif(not (ADAPTIVE / "replay.md").is_file(), reason="no committed adaptive-seeds replay yet")
def test_the_adaptive_seed_replay_and_table_are_rebuilt_from_the_10_seed_sweep(capsys):
    """results/adaptive-seeds (issue 26): its table and the replay of the adaptive rule come from its trials CSV by
    the committed code, and the CSV is a fixed final stage of seeds 0..9 for every chosen setting."""
    from bench.adaptive_seeds import main as replay

    trials = pd.read_csv(ADAPTIVE / "trials.csv")
    final = trials[trials["stage"] == "final"]
    assert final["status"].eq("TERMINATED").all()
    seeds = final.groupby(["task", "student", "loss", "lam", "tau", "lr"])["seed"].apply(sorted)
    assert (seeds.apply(len) == 10).all() and all(s == list(range(10)) for s in seeds)
    assert main([str(ADAPTIVE / "trials.csv"), "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (ADAPTIVE / "table.md").read_text().strip()
    assert replay([str(ADAPTIVE / "trials.csv"), "--min", "3", "--max", "10", "--tolerance", "1.0"]) == 0
    assert capsys.readouterr().out == (ADAPTIVE / "replay.md").read_text()


LM = RESULTS.parent / "lm-cpu"


@pytest.mark.skipif(not (LM / "table.md").is_file(), reason="no committed lm-cpu table yet")
def test_the_lm_cpu_table_is_rebuilt_from_its_finished_pieces_and_taylor_is_ce(capsys):
    """results/lm-cpu (issue 27): the table from the CSVs of its finished pieces (one sweep per student), every final
    trial ran its 3 epochs, and taylor at tau = 1 is ce's student (equal weight fingerprints) for every student."""
    csvs = sorted(str(p) for p in LM.glob("trials-*.csv"))
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (LM / "table.md").read_text().strip()
    trials = pd.concat(pd.read_csv(p) for p in csvs)
    final = trials[trials["stage"] == "final"]
    assert final["status"].eq("TERMINATED").all() and final["epochs_run"].eq(3).all()
    board = pd.read_csv(LM / "tables" / "leaderboard.csv")
    taylor = board[board["loss"] == "taylor"]
    assert set(taylor["student"]) == set(final["student"]) and set(taylor["agreement_vs_ce"]) == {"identical"}
    assert (board["n_seeds"] == 3).all()


def test_the_committed_packed_grid_was_never_slower_and_gave_every_trial_its_unpacked_result():
    """results/bench/README.md, benchmark 7: in every repeat the auto-packed glue-cpu grid took no longer than the
    unpacked one (final stage and whole sweep), with 8 packs for its 36 final trials, and every trial both ran has
    equal scores and fingerprints."""
    bench = Path(__file__).resolve().parents[1] / "results" / "bench"
    frame = pd.read_csv(bench / "pack_grid.csv")
    seconds = frame.pivot_table(index=["repeat", "stage"], columns="way", values="seconds")
    assert len(seconds) == 3 * 3  # 3 repeats x (search, final, whole sweep)
    ratio = (seconds["packs off"] / seconds["pack: {size: auto}"]).unstack("stage")
    assert (ratio["final"] >= 1.0).all() and (ratio["whole sweep"] >= 1.0).all()
    final = frame[frame["stage"] == "final"].groupby("way")["ray_trials"].unique()
    assert list(final["packs off"]) == [36] and list(final["pack: {size: auto}"]) == [8]
    same = pd.read_csv(bench / "pack_grid_results.csv")
    assert (same["equal"] == same["trials_in_both"]).all() and (same["final_equal"] == 36).all()


def test_the_committed_cpu_compile_run_loaded_every_graph_in_the_second_process_and_says_what_it_measured():
    """results/bench/README.md, benchmark 8, and docs/performance.md: the warm process compiled nothing, the compile
    and speed numbers the pages quote are the CSV's medians, and compiling did not pay on this CPU."""
    from bench.gpu import compile_summary

    root = Path(__file__).resolve().parents[1]
    frame = pd.read_csv(root / "results" / "bench" / "compile-cpu" / "compile.csv")
    warm = frame[frame["way"] == "compiled, warm cache"]
    assert len(warm) == 2 and (warm["fxgraph_cache_misses"] == 0).all() and (warm["fxgraph_cache_hits"] > 0).all()
    summary = compile_summary(frame).set_index("way")
    cold_s, warm_s = summary.loc["compiled, cold cache", "warmup_s_median"], summary.loc["compiled, warm cache",
                                                                                          "warmup_s_median"]
    speed = summary.loc["compiled, warm cache"]
    quoted = [f"{cold_s:.1f} s in the node's first process and {warm_s:.1f} s in the next",
              f"{speed['x_eager_median']:.2f}× eager's examples/s ({speed['x_min']:.2f}–{speed['x_max']:.2f})"]
    for page in ("docs/performance.md", "results/bench/README.md"):
        text = " ".join((root / page).read_text().split())
        assert all(q in text for q in quoted), page
    assert speed["x_eager_median"] < 1.0  # hence compile stays off by default


BUDGET = RESULTS.parent / "mrpc-budget"


def _run_budget_script(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BUDGET / "run.sh"), *args], cwd=BUDGET.parents[1], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not (BUDGET / "table.md").is_file(), reason="no committed mrpc-budget table yet")
def test_the_mrpc_budget_table_is_rebuilt_from_its_runs_each_chosen_on_the_train_holdout(tmp_path):
    """results/mrpc-budget (issue 22): `run.sh --tables-only` rebuilds the committed table from the committed runs,
    and every run is what the README says: ce alone, 10 epochs, its epoch chosen on the train hold-out, 3 seeds per lr,
    each in one piece (so its wall time is the run's)."""
    runs = [json.loads(p.read_text()) for p in sorted((BUDGET / "runs").glob("*.json"))]
    assert {(r["loss"], r["epochs"], r["selection"], r["resumed_from_epoch"]) for r in runs} == {
        ("ce", 10, "train_holdout", 0)}
    seeds = pd.DataFrame(runs).groupby("lr")["seed"].apply(sorted)
    assert len(seeds) == 3 and all(s == [0, 1, 2] for s in seeds)
    shutil.copytree(BUDGET / "runs", tmp_path / "runs")
    proc = _run_budget_script({"OUT": str(tmp_path)}, "--tables-only")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "table.md").read_text() == (BUDGET / "table.md").read_text()


@pytest.mark.slow
def test_the_mrpc_budget_script_runs_at_toy_size_and_a_rerun_skips_finished_runs(tmp_path):
    """The script that made results/mrpc-budget, on the MRPC fixture: one lr, two seeds, one epoch each."""
    env = {"OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "GLUE_DIR": str(FIXTURE_GLUE),
           "LRS": "1e-3", "SEEDS": "0 1", "EPOCHS": "1", "EXTRA": "--max-train-samples 32 --max-eval-samples 16"}
    first = _run_budget_script(env)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["lr1e-3-seed0.json", "lr1e-3-seed1.json"]
    row = next(line for line in first.stdout.splitlines() if line.startswith("| 1e-03 |"))
    assert row.split("|")[2:4] == [" 1 ", " 2 "]  # 1 epoch, 2 seeds
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()}
    again = _run_budget_script(env)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").iterdir()} == written  # nothing retrained


@pytest.mark.parametrize("name", ["glue-cpu", "glue-teachers", "adaptive-seeds"])
def test_the_committed_leaderboards_give_each_student_its_re_measured_cost_and_name_the_machine(name):
    """Issue 44: one inference cost per task x student in every committed table, re-measured apart from the trials
    (`run.sh --costs` -> tables/costs.csv), the same number for the same student in every results folder."""
    folder = RESULTS.parent / name
    costs = pd.read_csv(folder / "tables" / "costs.csv").set_index(["task", "student"])
    board = pd.read_csv(folder / "tables" / "leaderboard.csv")
    assert board["cost_measured_on"].notna().all()
    for row in board.itertuples():
        assert row.latency_ms_mean == pytest.approx(costs.loc[(row.task, row.student), "latency_ms"], rel=1e-4)
        assert costs.loc[(row.task, row.student), "hardware"] in row.cost_measured_on
    shared = pd.read_csv(RESULTS / "tables" / "costs.csv").set_index(["task", "student"])["latency_ms"]
    same = costs.index.intersection(shared.index)
    assert len(same) and (costs.loc[same, "latency_ms"] == shared.loc[same]).all()
