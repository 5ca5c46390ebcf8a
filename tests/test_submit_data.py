"""`makd submit` ships the files a sweep's own tasks and transfer data name, so that a sweep on your own data runs on
a cluster whose head cannot read your disk (tests/test_cluster_jobs.py runs one on cluster/local.sh's cluster)."""

from __future__ import annotations

import pytest
import yaml

from makd.errors import UsageError
from makd_sweep import jobs


def raw_config(train: str, dev: str, transfer: str | None = None) -> dict:
    raw = {"name": "own", "tasks": ["rte", {"name": "reviews-2026", "train_file": train, "eval_file": dev}],
           "teacher": "zoo:minilm-l6", "storage": "/tmp/runs"}
    if transfer:
        raw["transfer"] = {"file": transfer}
    return raw


def test_task_and_transfer_files_are_copied_into_the_job_and_named_there_relatively(tmp_path, monkeypatch):
    data = tmp_path / "mine"
    data.mkdir()
    for name in ("train.jsonl", "dev.jsonl", "unlabeled.csv"):
        (data / name).write_text(f"{name}\n")
    monkeypatch.chdir(tmp_path)  # relative paths are read where makd submit runs, as `makd sweep` reads them
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setenv("HOME", str(data))
    raw = raw_config("mine/train.jsonl", str(data / "dev.jsonl"), "~/unlabeled.csv")  # relative, absolute, ~
    shipped = jobs.ship_task_files(raw, staging)
    entry = shipped["tasks"][1]
    paths = [entry["train_file"], entry["eval_file"], shipped["transfer"]["file"]]
    assert all(not p.startswith("/") and p.startswith(jobs.SHIPPED_DATA + "/") for p in paths), paths
    assert [(staging / p).read_text() for p in paths] == ["train.jsonl\n", "dev.jsonl\n", "unlabeled.csv\n"]
    assert shipped["tasks"][0] == "rte" and raw["tasks"][1]["train_file"] == "mine/train.jsonl"  # the input unchanged
    assert yaml.safe_load(yaml.safe_dump(shipped)) == shipped


def test_a_missing_file_or_too_much_data_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "train.csv").write_text("x" * 4096)
    staging = tmp_path / "staging"
    with pytest.raises(UsageError) as err:
        jobs.ship_task_files(raw_config(str(tmp_path / "train.csv"), str(tmp_path / "nope.csv")), staging)
    assert err.value.field == "tasks.reviews-2026.eval_file" and "--no-ship-data" in str(err.value)
    monkeypatch.setattr(jobs, "SHIP_LIMIT_MB", 0.001)
    with pytest.raises(UsageError) as err:
        jobs.ship_task_files(raw_config(str(tmp_path / "train.csv"), str(tmp_path / "train.csv")), staging)
    assert "--no-ship-data" in str(err.value) and "\n" not in str(err.value)
    assert not staging.exists()  # refused before anything was copied
