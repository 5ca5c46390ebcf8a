"""Never overwrite or mix a previous sweep, and always let an interrupted one finish: makd_sweep.driver's experiment-dir
check, and makd_sweep/experiment_dir.py reading a dir's stages and trial folders."""

from __future__ import annotations

import json

import pytest

from makd.errors import UsageError
from makd_sweep.config import parse_config
from makd_sweep.driver import check_experiment_dir
from makd_sweep.experiment_dir import ended_trials, stage_dirs, trial_folders

CFG = parse_config({"name": "exp", "tasks": ["rte", "mrpc"], "students": ["2x128"], "losses": ["ce"]})


def test_resume_needs_an_experiment_and_a_new_sweep_needs_a_new_name(tmp_path):
    root = tmp_path / "exp"
    with pytest.raises(UsageError) as err:
        check_experiment_dir(CFG, str(root), resume=True)
    assert err.value.field == "resume"
    root.mkdir()  # stopped while filling the teacher cache: the dir, no Tuner yet
    check_experiment_dir(CFG, str(root), resume=True)
    check_experiment_dir(CFG, str(root), resume=False)
    (root / "rte").mkdir()
    with pytest.raises(UsageError) as err:
        check_experiment_dir(CFG, str(root), resume=False)
    assert err.value.field == "name" and "add --resume" in str(err.value)
    check_experiment_dir(CFG, str(root), resume=True)


def test_stages_trials_and_events_are_read_from_the_layout(tmp_path):
    for stage in ("rte", "rte-final"):
        folder = tmp_path / stage / "distill_trial_ab12c_00001_1_lam=0.5"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"loss": "ce"}))
        (folder / "result.json").write_text('{"epoch": 1, "score": 0.5}\n{"epoch": 2, "sco')  # a line being written
        (folder / "checkpoint_000010").mkdir()
        (folder / "checkpoint_000002").mkdir()
    (tmp_path / "events.jsonl").write_text('{"event": "done", "trial_id": "ab12c_00001"}\n{"event": "st')
    assert [(task, d.name) for task, d in stage_dirs(tmp_path)] == [("rte", "rte"), ("rte", "rte-final")]
    (trial,) = trial_folders(tmp_path / "rte")
    assert trial.trial_id == "ab12c_00001" and trial.history() == [{"epoch": 1, "score": 0.5}]
    assert [c.name for c in trial.checkpoints()] == ["checkpoint_000002", "checkpoint_000010"]
    assert ended_trials(tmp_path) == {"ab12c_00001"}
