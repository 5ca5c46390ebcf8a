"""On local Ray: the two-stage protocol (a search with ASHA, then the best settings rerun at the full budget),
resuming between stages, selection on a train hold-out, and `makd export` of the winner."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from makd_sweep.config import load_config
from makd_sweep.driver import run_sweep
from makd_sweep.report.build import build
from tests.helpers import stderr_ends
from tests.test_sweep import (  # noqa: F401 (quiet_ray: autouse)
    events,
    kill_driver,
    quiet_ray,
    resume_driver,
    start_driver,
    toy_sst2_dir,
    write_config,
)

pytestmark = pytest.mark.sweep


def test_the_final_stage_compares_every_method_at_full_budget_and_taylor_equals_ce(module_ray, tiny_bert_dir, tmp_path):
    """vanilla at lam 0 imitates a random teacher and ASHA cuts it in the search; the final stage reruns each
    loss's best setting for three seeds, three epochs each, and taylor (tau 1) equals ce at every seed."""
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tasks=["sst2"], losses=["ce", "taylor", "vanilla"],
                                   lams=[0.0, 0.5], seeds=[0, 1], epochs=3, lr=3e-3,
                                   data={"glue_dir": str(toy_sst2_dir(tmp_path))}, final={"seeds": [0, 1, 2]},
                                   scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
                                   selection={"split": "dev"}))  # the † check below needs a chosen setting ASHA
    # cut: choosing on dev gives one with this toy data (on its hold-out, the chosen settings ran to the end)
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    trials = outcome.trials
    search, final = trials[trials["stage"] == "search"], trials[trials["stage"] == "final"]
    assert len(search) == 2 + 4 + 4 and search["stopped_early"].any()  # ASHA cut some search trials
    assert len(final) == 3 * 3 and set(final["status"]) == {"TERMINATED"} and (final["epochs_run"] == 3).all()
    assert sorted(final["loss"].unique()) == ["ce", "taylor", "vanilla"] and set(final["seed"]) == {0, 1, 2}
    scores = final.pivot_table(index="seed", columns="loss", values="best_score")
    assert (scores["taylor"] == scores["ce"]).all()  # bit-identical students, hence equal scores

    report = build([outcome.root])  # default: the final stage
    assert report.stage == "final" and set(report.trials["stage"]) == {"final"}
    taylor = report.leaderboard.set_index("loss").loc["taylor"]
    assert taylor["identical_to_ce"] and taylor["pairs_vs_ce"] == 3
    assert (taylor["ci_low_vs_ce"], taylor["ci_high_vs_ce"]) == (0.0, 0.0)
    assert "Final stage:" in report.paper_table_markdown and "†" not in report.paper_table_markdown
    searched = build([outcome.root], stage="search")
    assert searched.stage == "search" and "†" in searched.paper_table_markdown  # early-stopped cells are marked
    on_disk = pd.read_csv(Path(outcome.root) / "trials.csv")
    assert Counter(on_disk["stage"]) == {"search": 10, "final": 9}


def test_a_driver_killed_after_the_search_resumes_with_exactly_the_missing_final_trials(tiny_bert_dir, tmp_path):
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1], epochs=2, max_concurrent_trials=1,
                          final={"seeds": [0, 1, 2]},
                          scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2})
    root = tmp_path / "runs" / "exp"
    driver, env = start_driver(config, tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline and not (root / "rte-final").exists():
        time.sleep(0.1)
    kill_driver(driver)
    assert (root / "rte-final").exists(), "the driver must be killed once the final stage has begun"
    search_ids = {p.name.split("_")[2] + "_" + p.name.split("_")[3] for p in (root / "rte").glob("distill_trial_*")}
    assert len(search_ids) == 2
    search_epochs = Counter(e["trial_id"] for e in events(root) if e["event"] == "epoch" and e["trial_id"] in search_ids)
    time.sleep(2)
    resumed = resume_driver(config, env)
    assert resumed.returncode == 0, stderr_ends(resumed)
    frame = pd.read_csv(root / "trials.csv")
    assert Counter(frame["stage"]) == {"search": 2, "final": 3}
    final = frame[frame["stage"] == "final"]
    assert set(final["status"]) == {"TERMINATED"} and (final["epochs_run"] == 2).all() and set(final["seed"]) == {0, 1, 2}
    assert set(frame.loc[frame["stage"] == "search", "trial_id"]) == search_ids
    log = events(root)
    # the search was not rerun by --resume: its trials trained exactly the epochs they had before the kill
    assert Counter(e["trial_id"] for e in log if e["event"] == "epoch" and e["trial_id"] in search_ids) == search_epochs
    done = Counter(e["trial_id"] for e in log if e["event"] == "done" and e["trial_id"] not in search_ids)
    assert sorted(done) == sorted(final["trial_id"]) and set(done.values()) == {1}  # each final trial once
    trained = {(e["trial_id"], e["epoch"]) for e in log if e["event"] == "epoch" and e["trial_id"] not in search_ids}
    assert len(trained) == 3 * 2


def test_makd_export_ships_the_best_epoch_that_reproduces_its_dev_score(module_ray, tiny_bert_dir, tmp_path, capsys):
    """A grid sweep (no final stage): the exported student loads with from_pretrained and scores on dev exactly
    what the leaderboard reports for its trial's best epoch."""
    import json

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from makd.data import load_split
    from makd.tasks import compute_metrics, get_task
    from makd_sweep.main import main

    cfg = load_config(write_config(tmp_path, tiny_bert_dir, losses=["ce", "vanilla"], lams=[0.5], epochs=3))
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "exported"
    assert main(["export", outcome.root, "--task", "rte", "--student", "1x64", "--loss", "vanilla", "--out",
                 str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    trial = outcome.trials.set_index("loss").loc["vanilla"]
    assert printed["dev_score"] == pytest.approx(trial["dev_score"], abs=1e-12)  # dev at the epoch the hold-out chose
    assert trial["selection"] == "train_holdout"
    card = (out / "README.md").read_text()
    assert "vanilla" in card and "vs ce, paired by seed" in card and "## Sweep config" in card
    assert "ms per example at batch 1" in card and "examples/s at batch 32 on cpu" in card

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    task = get_task("rte")
    dev = load_split(task, "validation", glue_dir=str(Path(__file__).parent / "fixtures" / "glue"))
    with torch.no_grad():
        batch = tokenizer(list(dev.text_a), list(dev.text_b), truncation=True, max_length=32, padding=True,
                          return_tensors="pt")
        logits = model(**batch).logits.numpy()
    score = compute_metrics(task, task.predictions(logits), np.asarray(dev.labels))[task.metric]
    assert score == pytest.approx(trial["dev_score"], abs=1e-6)
    assert main(["export", outcome.root, "--task", "rte", "--student", "1x64", "--loss", "mse"]) == 2


def test_selection_on_a_train_holdout_reports_dev_untouched(module_ray, tiny_bert_dir, tmp_path):
    """selection: train_holdout: the teacher cache and training see the rest of train; each epoch is scored on the
    hold-out (ASHA, the best epoch, the best setting) and dev is only reported."""
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, losses=["ce", "vanilla"], lams=[0.0, 0.5], epochs=2,
                                   selection={"split": "train_holdout", "fraction": 0.25}))
    assert cfg.train.holdout_fraction == 0.25
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    trials = outcome.trials
    assert set(trials["selection"]) == {"train_holdout"} and trials["dev_score"].notna().all()
    assert (trials["best_score"] == trials["best_glue_holdout_accuracy"]).all()  # chosen on the hold-out
    assert (trials["dev_score"] == trials["best_glue_accuracy"]).all()  # dev at that epoch, reported
    full = len(pd.read_csv(Path(__file__).parent / "fixtures" / "glue" / "RTE" / "train.tsv", sep="\t"))
    assert outcome.cache["rte"]["train_examples"] == full - round(0.25 * full)  # the teacher never saw the hold-out
    report = build([outcome.root])
    vanilla = report.trials[report.trials["loss"] == "vanilla"]
    chosen = vanilla.groupby("lam")["best_score"].mean().idxmax()  # the setting chosen on the hold-out
    row = report.leaderboard.set_index("loss").loc["vanilla"]
    assert row["best_lam"] == chosen
    assert row["dev_score_mean"] == pytest.approx(vanilla.loc[vanilla["lam"] == chosen, "dev_score"].mean())
    assert "held-out part of the training set" in report.paper_table_markdown


def test_each_listed_tau_of_a_kd_loss_is_its_own_final_method():
    """taus: [1, 2] in the search: the final stage reruns vanilla and taylor at their best λ for each τ (at τ = 2
    taylor is tempered CE, another method than taylor at τ = 1), ce once; an Optuna-like spread of τ values is
    one method (its best τ)."""
    from makd_sweep.config import parse_config
    from makd_sweep.search.final import final_points

    cfg = parse_config({"name": "f", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6",
                        "lams": [0.0, 0.5], "taus": [1.0, 2.0], "final": {"seeds": [0, 1]}})

    def row(loss, lam, tau, score):
        return {"student": "2x128", "loss": loss, "lam": lam, "tau": tau, "lr": 5e-5, "status": "TERMINATED",
                "best_score": score}

    rows = [row("ce", 1.0, 1.0, 0.5)]
    for loss in ("vanilla", "taylor"):
        rows += [row(loss, 0.0, 1.0, 0.6), row(loss, 0.5, 1.0, 0.7), row(loss, 0.0, 2.0, 0.65),
                 row(loss, 0.5, 2.0, 0.55)]
    chosen = {(c["loss"], c["tau"], c["lam"]) for c in final_points(cfg, rows)}
    assert chosen == {("ce", 1.0, 1.0), ("vanilla", 1.0, 0.5), ("vanilla", 2.0, 0.0), ("taylor", 1.0, 0.5),
                      ("taylor", 2.0, 0.0)}
    assert len(final_points(cfg, rows)) == 5 * 2
    spread = [row("vanilla", 0.0, float(t), 0.6 + t / 100) for t in range(1, 7)]
    assert {(c["loss"], c["tau"]) for c in final_points(cfg, spread)} == {("vanilla", 6.0)}


def test_adaptive_seeds_add_a_round_only_for_undecided_comparisons_and_a_resume_rebuilds_the_rounds(module_ray, tiny_bert_dir,
                                                                                                    tmp_path):
    """final.seeds {min 2, max 3}: round 1 runs every chosen setting at seeds 0 and 1; round 2 (its own Tuner,
    rte-final-r2) runs seed 2 for exactly the settings of the comparisons the rule leaves undecided after round 1;
    taylor (ce's student) is decided at once; the leaderboard carries the looks and the decisions, and --resume
    trains nothing again."""
    from makd_sweep.report.sequential import SETTING_KEY, compare_settings, undecided_settings

    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tasks=["sst2"], losses=["ce", "taylor", "vanilla"],
                                   lams=[0.5], epochs=1, lr=1e-3, data={"glue_dir": str(toy_sst2_dir(tmp_path))},
                                   scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
                                   final={"seeds": {"min": 2, "max": 3}, "tolerance": 0.0}))
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    final = outcome.trials[outcome.trials["stage"] == "final"]
    assert set(final["status"]) == {"TERMINATED"} and (final["looks"] == 2).all()
    first = final[final["seed"] < 2]
    assert len(first) == 3 * 2
    expected = undecided_settings(compare_settings(first, 2, tolerance=0.0, final=False))
    second = {tuple(r[k] for k in SETTING_KEY) for _, r in final[final["seed"] == 2].iterrows()}
    assert expected and second == expected  # one epoch at a low lr: vanilla vs ce is still open after two seeds
    assert (Path(outcome.root) / "sst2-final-r2").is_dir() == bool(expected)
    board = build([outcome.root]).leaderboard.set_index("loss")
    assert board.loc["taylor", "decided_vs_ce"] and board.loc["taylor", "identical_to_ce"]
    assert (board["looks"] == 2).all() and board.loc["vanilla", "n_seeds"] == 2 + any(k[1] == "vanilla" for k in expected)
    trained = Counter((e["trial_id"], e["epoch"]) for e in events(outcome.root) if e["event"] == "epoch")
    again = run_sweep(cfg, resume=True, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    assert Counter((e["trial_id"], e["epoch"]) for e in events(again.root) if e["event"] == "epoch") == trained
    pd.testing.assert_frame_equal(again.trials.sort_values("trial_id").reset_index(drop=True)[SETTING_KEY + ["seed"]],
                                  outcome.trials.sort_values("trial_id").reset_index(drop=True)[SETTING_KEY + ["seed"]])
