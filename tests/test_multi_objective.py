"""`search: {kind: optuna, objectives: [score, COST]}`: NSGA-II over the score and a cost through Ray Tune; bad
objectives and a scheduler that takes one metric are refused in one line before Ray starts."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from makd.errors import UsageError
from makd_sweep.config import load_config, parse_config
from makd_sweep.search import get_search_kind
from tests.test_sweep import MAKD, write_config

BASE = {"name": "s", "tasks": ["rte"], "students": ["1x64", "2x64"], "teacher": "zoo:minilm-l6",
        "losses": ["ce", "vanilla"], "scheduler": {"kind": "none"}}


def optuna(**search) -> dict:
    return {**BASE, "search": {"kind": "optuna", "n_trials": 8, "seed": 0, **search}}


def test_a_cost_objective_builds_a_seeded_nsga2_study_over_both_metrics():
    cfg = parse_config(optuna(objectives=["score", "params"]))
    kind = get_search_kind("optuna")
    algorithm = kind.algorithm(cfg)
    assert kind.multi_objective(cfg) and cfg.search.objectives == ("score", "params")
    assert algorithm._metric == ["score", "student_parameters_m"] and algorithm._mode == ["max", "min"]
    assert type(algorithm._sampler).__name__ == "NSGAIISampler"
    assert not kind.multi_objective(parse_config(optuna()))  # the default: the score alone, TPE as before


@pytest.mark.parametrize("search, extra, field, words", [
    ({"objectives": ["score", "size"]}, {}, "search.objectives[1]", "unknown objective 'size'"),
    ({"objectives": ["params"]}, {}, "search.objectives", "[score, COST]"),
    ({"objectives": ["score", "params", "params"]}, {}, "search.objectives", "twice"),
    ({"objectives": ["score", "latency"]}, {"scheduler": {"kind": "asha"}}, "scheduler", "needs scheduler"),
    ({"objectives": ["score", "latency"]}, {"inference_batch_size": 0}, "search.objectives", "inference_batch_size"),
])
def test_bad_objectives_are_one_line(search, extra, field, words):
    with pytest.raises(UsageError) as err:
        parse_config({**optuna(**search), **extra})
    assert err.value.field == field and words in str(err.value)


@pytest.mark.sweep
def test_a_multi_objective_sweep_runs_every_trial_with_its_costs(tiny_bert_dir, tmp_path):
    config = write_config(tmp_path, tiny_bert_dir, students=["1x64", "2x64"], losses=["ce", "vanilla"], lams=[0.0],
                          epochs=1, scheduler={"kind": "none"}, final=None,
                          search={"kind": "optuna", "n_trials": 6, "seed": 0, "objectives": ["score", "params"]})
    assert get_search_kind("optuna").multi_objective(load_config(config))
    done = subprocess.run([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"], capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "MAKD_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "runs" / "exp" / "trials.csv")
    assert len(trials) == 6 and set(trials["status"]) == {"TERMINATED"}
    assert trials["student_parameters_m"].nunique() == 2 and trials["latency_ms"].notna().all()
