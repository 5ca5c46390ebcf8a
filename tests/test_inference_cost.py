"""What a student costs to run (issue 26): batch-1 latency and throughput measured once per run, carried by every
epoch, trials.csv, the leaderboard, `makd distill`'s JSON, the model card and the Pareto panels; the measurement
does not change what is trained."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from makd.batching import encode
from makd.inference_cost import CPU_THREADS, TIMED_RUNS, cached_inference_cost, cost_key, measure_inference
from makd.models import build_student
from makd.train import train
from makd_sweep.main import main
from makd_sweep.report.pareto import cost_frame
from makd_sweep.report.trials import trial_row
from tests.helpers import sentiment
from tests.test_train import config


def test_measuring_leaves_the_weights_alone_and_reports_positive_costs(tiny_bert_dir):
    model, tokenizer = build_student(str(tiny_bert_dir), 2, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = measure_inference(model, encode(tokenizer, sentiment(40, "validation"), 32), batch_size=8,
                             device=torch.device("cpu"), amp=None)
    assert cost.latency_ms > 0 and cost.examples_per_s > 0 and (cost.batch_size, cost.device) == (8, "cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_measurement_does_not_change_the_trained_student(tiny_bert_dir):
    """The same run with and without the measurement trains bit-identical weights (equal fingerprints)."""
    ds, dev = sentiment(48), sentiment(16, "validation", seed=1)
    runs = [train(config(tiny_bert_dir, loss="ce", lam=1.0, inference_batch_size=size), ds, {"": dev}, None,
                  progress=False) for size in (0, 8)]
    assert [h.weights_fingerprint for h in runs[0].history] == [h.weights_fingerprint for h in runs[1].history]
    assert runs[0].last.latency_ms is None and runs[1].last.latency_ms > 0
    assert len({h.latency_ms for h in runs[1].history}) == 1  # measured once, carried by every epoch


def test_makd_distill_prints_the_cost(tiny_bert_dir, tmp_path, capsys):
    glue = str(__import__("tests.conftest", fromlist=["FIXTURES"]).FIXTURES / "glue")
    args = ["distill", "--task", "rte", "--glue-dir", glue, "--student", str(tiny_bert_dir), "--loss", "ce",
            "--epochs", "1", "--max-length", "32", "--cache-dir", str(tmp_path), "--quiet"]
    assert main(args + ["--inference-batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["latency_ms"] > 0 and out["inference_examples_per_s"] > 0 and out["inference_batch_size"] == 4
    assert main(args + ["--inference-batch-size", "0"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["latency_ms"] is None and off["inference_batch_size"] is None


def test_trial_rows_carry_the_cost_and_the_pareto_cost_is_one_per_student():
    epoch = {"score": 0.7, "epoch": 1, "latency_ms": 2.5, "inference_examples_per_s": 900.0, "metric": "accuracy"}
    row = trial_row("rte", {"student": "2x128", "loss": "ce", "lam": 1.0, "tau": 1.0, "seed": 0}, [epoch],
                    teacher=None, fine_tuned=False, error=None, devices=1.0, trial_id="t1")
    assert (row["latency_ms"], row["inference_examples_per_s"]) == (2.5, 900.0)
    board = pd.DataFrame({"task": ["rte"] * 4, "student": ["2x128", "2x128", "4x312", "4x312"],
                          "loss": ["ce", "vanilla"] * 2, "dev_score_mean": [0.6, 0.62, 0.65, 0.66],
                          "latency_ms_mean": [2.0, 2.4, 5.0, 5.6], "student_parameters_m": [4.4, 4.4, 14, 14],
                          "device_hours_total": [0.01] * 4, "n_trials": [3] * 4})
    costs = cost_frame(board)
    assert list(costs["latency_ms_student"]) == [2.2, 2.2, 5.3, 5.3]  # noise never separates two methods


def test_a_cost_is_measured_once_per_architecture_and_shared_by_every_student_of_it(tiny_bert_dir, tmp_path):
    """Issue 44: the cache key is the architecture (not the weights), the dev lengths, batch size, precision and
    hardware; the second student of the same architecture gets the first one's numbers without measuring, with the
    protocol's thread count restored afterwards."""
    dev = sentiment(40, "validation")
    cpu = torch.device("cpu")
    first, tokenizer = build_student(str(tiny_bert_dir), 2, seed=0)
    other_weights, _ = build_student(str(tiny_bert_dir), 2, seed=7)
    three_labels, _ = build_student(str(tiny_bert_dir), 3, seed=0)
    encoded = encode(tokenizer, dev, 32)
    threads = torch.get_num_threads()
    cost, measured = cached_inference_cost(first, encoded, cache_dir=tmp_path, batch_size=8, device=cpu, amp=None)
    assert measured and cost.runs == TIMED_RUNS >= 20 and f"{CPU_THREADS} thread" in cost.hardware
    assert torch.get_num_threads() == threads
    again, measured = cached_inference_cost(other_weights, encoded, cache_dir=tmp_path, batch_size=8, device=cpu,
                                            amp=None)
    assert not measured and again == cost  # identical architecture: the identical number
    key = {"batch_size": 8, "device": cpu, "amp": None, "pad_to_multiple_of": None}
    assert cost_key(first, encoded, **key) == cost_key(other_weights, encoded, **key)
    assert cost_key(three_labels, encoded, **key) != cost_key(first, encoded, **key)  # another head
    assert cost_key(first, encoded, **{**key, "batch_size": 16}) != cost_key(first, encoded, **key)
    assert cost_key(first, encode(tokenizer, dev, 8), **key) != cost_key(first, encoded, **key)  # other lengths
    (tmp_path / "inference-cost" / f"{cost_key(first, encoded, **key)}.json").write_text("{half")
    _, measured = cached_inference_cost(first, encoded, cache_dir=tmp_path, batch_size=8, device=cpu, amp=None)
    assert measured  # an unreadable entry is measured again, not trusted


def test_makd_inference_cost_remeasures_a_sweeps_students_and_the_tables_use_and_name_it(tiny_bert_dir, tmp_path,
                                                                                        capsys):
    """Issue 44: committed results whose trials timed themselves get their cost re-measured apart from the trials
    (`makd inference-cost CONFIG... --csv`), one number per task x student; `--costs` puts it in the leaderboard with
    the machine it was measured on, and rows it lacks keep their trials' own."""
    from tests.test_sweep import write_config

    config_path = write_config(tmp_path, tiny_bert_dir, tasks=["rte", "sst2"], students=["1x64", "2x32"],
                               inference_batch_size=8)
    costs = tmp_path / "costs.csv"
    home = {"MAKD_HOME": str(tmp_path / "home")}
    with pytest.MonkeyPatch.context() as env:
        for key, value in home.items():
            env.setenv(key, value)
        assert main(["inference-cost", str(config_path), str(config_path), "--csv", str(costs)]) == 0
    printed = capsys.readouterr().out.splitlines()
    frame = pd.read_csv(costs)
    assert sorted(zip(frame["task"], frame["student"], strict=True)) == [
        ("rte", "1x64"), ("rte", "2x32"), ("sst2", "1x64"), ("sst2", "2x32")]  # two configs: each measured once
    assert (frame["latency_ms"] > 0).all() and (frame["batch_size"] == 8).all() and len(printed) == 4
    assert frame["hardware"].str.contains(f"{CPU_THREADS} thread").all() and frame["measured_at"].notna().all()
    # trials that timed themselves: 2 x 2 trials a student, each its own number; one student missing from the file
    rows = [{"task": "rte", "student": student, "loss": loss, "lam": 0.5, "tau": 1.0, "seed": 0, "metric": "accuracy",
             "best_score": 0.6, "dev_score": 0.6, "status": "TERMINATED", "stage": "search", "trial_id": f"{student}{loss}",
             "latency_ms": latency, "inference_examples_per_s": 100.0}
            for student, loss, latency in (("1x64", "ce", 3.0), ("1x64", "vanilla", 10.0), ("2x32", "ce", 4.0),
                                           ("2x32", "vanilla", 6.0), ("3x32", "ce", 7.0), ("3x32", "vanilla", 9.0))]
    trials = tmp_path / "trials.csv"
    pd.DataFrame(rows).to_csv(trials, index=False)
    board_csv = tmp_path / "board.csv"
    assert main(["leaderboard", str(trials), "--costs", str(costs), "--csv", str(board_csv)]) == 0
    board = pd.read_csv(board_csv).set_index(["student", "loss"])
    measured = frame[frame["task"] == "rte"].set_index("student")
    for student in ("1x64", "2x32"):
        assert board.loc[(student, "ce"), "latency_ms_mean"] == pytest.approx(measured.loc[student, "latency_ms"])
        assert board.loc[(student, "vanilla"), "latency_ms_mean"] == board.loc[(student, "ce"), "latency_ms_mean"]
        assert measured.loc[student, "hardware"] in board.loc[(student, "ce"), "cost_measured_on"]
    assert board.loc[("3x32", "ce"), "latency_ms_mean"] == 8.0 and pd.isna(board.loc[("3x32", "ce"), "cost_measured_on"])
    bad = tmp_path / "bad.csv"
    bad.write_text("task,student\nrte,1x64\n")
    capsys.readouterr()
    assert main(["leaderboard", str(trials), "--costs", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "latency_ms" in err
