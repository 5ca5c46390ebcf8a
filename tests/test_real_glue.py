"""Real-data smoke tests on ../shared/glue: each of the four local tasks end to end through `makd distill`.

Skipped (with the reason) when the folder is absent. Real MiniLM teacher, small random student, small subsets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from makd_sweep.main import main
from tests.docs import block_after, commands_after

pytestmark = pytest.mark.slow

EXPECTED = {"sst2": {"accuracy"}, "mrpc": {"f1", "accuracy"}, "rte": {"accuracy"}, "stsb": {"pearson", "spearman"}}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_distill_real_task(task, glue_dir, tmp_path, capsys):
    code = main(["distill", "--task", task, "--glue-dir", str(glue_dir), "--teacher", "zoo:minilm-l6",
                 "--student", "2x128", "--loss", "taylor", "--lam", "0.5", "--epochs", "1",
                 "--max-train-samples", "128", "--max-eval-samples", "200", "--cache-dir", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    # dev metrics and, since a 10% train hold-out is the default selection split, the same metrics on it
    assert result["task"] == task
    assert set(result["metrics"]) == EXPECTED[task] | {f"holdout_{name}" for name in EXPECTED[task]}
    assert result["train_examples"] == 128 - round(0.1 * 128)  # the 13 held out for selection do not train
    for value in result["metrics"].values():
        assert -1.0 <= value <= 1.0
    if task == "stsb":
        assert result["metric"] == "pearson"


def test_stsb_scores_round_trip_through_platt_scaling(glue_dir):
    """Pearson/Spearman are computed on scores recovered by the inverse Platt transform (0-5 scale), not on
    probabilities: logits that encode the gold Platt targets give back the gold scores and a perfect Pearson."""
    import numpy as np

    from makd.data import load_glue_dir
    from makd.tasks import compute_metrics, get_task

    task = get_task("stsb")
    dev = load_glue_dir(task, "validation", glue_dir)
    assert dev.labels.min() >= 0.0 and dev.labels.max() <= 5.0
    logits = np.log(task.target_probs(dev.labels).astype(np.float64))
    scores = task.predictions(logits)
    np.testing.assert_allclose(scores, dev.labels, atol=1e-4)
    metrics = compute_metrics(task, scores, dev.labels)
    assert metrics["pearson"] > 0.9999 and metrics["spearman"] > 0.9999


def test_the_documented_distill_command_twice_second_run_skips_the_teacher(glue_dir, tmp_path):
    """docs/distill.md's command, verbatim, through the installed console script ($MAKD_GLUE_DIR: this machine's GLUE
    folder, as the doc says); the second run must not load the teacher: its JSON says teacher_cache=hit, teacher_loaded=false
    (set only inside models.load_teacher's caller)."""
    (command,) = commands_after("docs/distill.md", "## Usage")
    assert command.startswith("makd distill ") and "--glue-dir" not in command and "shared" not in command
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home"), "MAKD_GLUE_DIR": str(glue_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    runs = []
    for _ in range(2):
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1
        runs.append(json.loads(lines[0]))
    first, second = runs
    assert first["teacher_cache"] == "miss" and first["teacher_loaded"] is True
    assert second["teacher_cache"] == "hit" and second["teacher_loaded"] is False
    assert first["score"] == second["score"]  # same seed, same cached logits: same result
    assert first["wall_seconds"] < 120
    shown = json.loads(block_after("docs/distill.md", "## Usage", "json"))
    assert list(shown) == list(first)  # the doc's example is this command's output, key for key
    for key in ("task", "metric", "selection", "best_epoch", "epochs", "train_examples", "student", "loss", "lam", "tau",
                "seed", "lr", "teacher_cache", "majority_prediction"):
        assert shown[key] == first[key], key


def test_the_documented_finetune_teacher_command_runs_as_written(glue_dir, tmp_path):
    """docs/sweeps.md, "A fine-tuned teacher": its one command, verbatim, on the real RTE (MiniLM teacher, 200 examples, one
    epoch); the teacher's dev score and the majority class come back, and a rerun finds it in the cache."""
    (command,) = commands_after("docs/sweeps.md", "## A fine-tuned teacher")
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home"), "MAKD_GLUE_DIR": str(glue_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    runs = []
    for _ in range(2):
        proc = subprocess.run(command + " --quiet", shell=True, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0]["trained_now"] and not runs[1]["trained_now"] and runs[0]["path"] == runs[1]["path"]
    assert runs[0]["train_examples"] == 180  # 200 examples less the 10% selection hold-out
    assert 0 <= runs[0]["teacher_score"] <= 1 and runs[1]["teacher_cache"] == "hit"
