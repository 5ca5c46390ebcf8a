"""A causal-LM task in a whole sweep on local Ray (issue 27): search, final stage, leaderboard, paper table, report
and export as for GLUE tasks, with a tiny random llama teacher whose responses differ from prompt to prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from makd_sweep.main import main

FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"
pytestmark = pytest.mark.sweep


@pytest.fixture(autouse=True)
def quiet_ray(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def lm_config(tmp_path: Path, teacher: Path, **overrides) -> Path:
    raw = {"name": "lm", "tasks": ["sst2lm"], "teacher": str(teacher), "students": ["2x32", f"{teacher}@0,3"],
           "losses": ["ce", "vanilla", "taylor"], "lams": [0.0], "seeds": [0], "epochs": 2, "batch_size": 8,
           "lr": 1e-3, "max_length": 128, "max_train_samples": 32, "max_eval_samples": 12, "lm_max_new_tokens": 6,
           "lm_top_k": 8, "search": {"kind": "grid"}, "final": {"seeds": [0, 1], "top_k": 1},
           "data": {"glue_dir": str(FIXTURE_GLUE)}, "resources_per_trial": {"cpu": 1}, "max_concurrent_trials": 2,
           "storage": str(tmp_path / "runs")}
    raw.update(overrides)
    path = tmp_path / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_causal_lm_sweep_runs_search_final_report_and_export(module_ray, tmp_path, talking_llama_dir, capsys):
    assert main(["sweep", str(lm_config(tmp_path, talking_llama_dir)), "--quiet", "--num-cpus", "2"]) == 0
    root = tmp_path / "runs" / "lm"
    trials = pd.read_csv(root / "trials.csv")
    assert set(trials["status"]) == {"TERMINATED"} and set(trials["stage"]) == {"search", "final"}
    assert len(trials[trials["stage"] == "search"]) == 2 * 3  # ce, vanilla and taylor for each student
    assert (trials["metric"] == "agreement").all() and trials["dev_score"].between(0, 1).all()
    assert (trials["glue_perplexity"] > 1).all() and trials["glue_probe_accuracy"].between(0, 1).all()
    assert (trials["teacher_loads_in_trial"] == 0).all()  # the trials read the cache, never the teacher
    majority = trials["majority_score"].dropna().unique()
    assert len(majority) == 1 and 0 < majority[0] < 1  # the most frequent response token, scored on dev

    sweep = json.loads((root / "sweep.json").read_text())
    lm_cache = sweep["teacher_cache"]["sst2lm"]
    assert lm_cache["teacher_loaded"] and lm_cache["status"] == "miss" and "lm" in lm_cache

    board = pd.read_csv(root / "leaderboard.csv")
    taylor = board[board["loss"] == "taylor"]
    assert len(taylor) == 2 and (taylor["agreement_vs_ce"] == "identical").all()  # at τ = 1 taylor is ce
    table = (root / "table.md").read_text()
    assert "SST-2 LM (Agree)" in table and "a causal-LM task" in table
    assert "SST-2 LM" in (root / "report.html").read_text()

    out = tmp_path / "exported"
    assert main(["export", str(root), "--task", "sst2lm", "--student", "2x32", "--loss", "vanilla", "--out",
                 str(out)]) == 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 2 and "AutoModelForCausalLM" in (out / "README.md").read_text()

    # a second sweep of the same task and teacher reads the responses and the signal from the cache (reverse KL adds
    # the teacher's full logits at train's response tokens, computed once); beside it, a causal-LM task of the
    # user's own prompts and responses; the trials run in packs of two
    from tests.test_lm_train import write_answers

    train_file, eval_file = write_answers(tmp_path / "answers", n=16)
    answers = {"name": "answers", "type": "causal_lm", "train_file": str(train_file), "eval_file": str(eval_file),
               "response_column": "response"}
    again = lm_config(tmp_path, talking_llama_dir, name="lm-again", tasks=["sst2lm", answers], students=["2x32"],
                      losses=["ce", "reverse_kl"], lams=[0.0], final=None, pack={"size": 2})
    assert main(["sweep", str(again), "--quiet", "--num-cpus", "2"]) == 0
    caches = json.loads((tmp_path / "runs" / "lm-again" / "sweep.json").read_text())["teacher_cache"]
    splits = caches["sst2lm"]["lm"]["splits"]
    assert {s["responses"] for s in splits.values()} == {s["signal"] for s in splits.values()} == {"hit"}
    assert splits["train"]["full_logits"] == "miss" and caches["answers"]["lm"]["splits"]["train"]["full_logits"]
    assert {s["responses"] for s in caches["answers"]["lm"]["splits"].values()} == {"given"}
    rows = pd.read_csv(tmp_path / "runs" / "lm-again" / "trials.csv")
    assert set(rows["task"]) == {"sst2lm", "answers"} and set(rows["status"]) == {"TERMINATED"}
    assert rows.loc[rows["task"] == "answers", "glue_probe_accuracy"].isna().all()
    assert (rows["pack_size"] == 2).all() and rows["pack_id"].nunique() == 2  # one pack of ce + reverse_kl per task
    assert (rows["teacher_loads_in_trial"] == 0).all()  # full logits too come from the object store


def test_the_documented_toy_lm_sweep_runs_as_written(glue_dir, tmp_path):
    """README.md's and docs/llm.md's command, verbatim, on the real SST-2 ($MAKD_GLUE_DIR, as the docs say) and the
    real SmolLM2 (run where a copy of configs/ and the venv are): the teacher answers, the
    student learns from its cache, and taylor is ce's student."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.docs import REPO, shown_commands

    (command,) = {c for doc in ("README.md", "docs/llm.md") for c in shown_commands(doc) if "lm-toy" in c}
    assert "--glue-dir" not in command and "shared" not in command
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "lm-toy.yaml", tmp_path / "configs")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MAKD_GLUE_DIR": str(glue_dir)}
    proc = subprocess.run(command, shell=True,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "runs" / "lm-toy"
    trials = pd.read_csv(root / "trials.csv")
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}
    assert trials["dev_score"].between(0, 1).all() and (trials["glue_perplexity"] > 1).all()
    assert 0 < trials["majority_score"].iloc[0] < 1
    board = pd.read_csv(root / "leaderboard.csv")
    assert board.loc[board["loss"] == "taylor", "agreement_vs_ce"].tolist() == ["identical"]
    cache = json.loads((root / "sweep.json").read_text())["teacher_cache"]["sst2lm"]
    assert cache["lm"]["response_tokens"]["train"] > len(trials) and "SST-2 LM" in proc.stdout
