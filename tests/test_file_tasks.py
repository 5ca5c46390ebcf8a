"""Your own data in a sweep (issue 22): a `tasks:` entry defined by csv / tsv / jsonl files, with string labels,
classification or regression; bad files, columns and labels refused in one line before Ray starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from makd.errors import UsageError
from makd.file_tasks import FileTask, parse_file_task
from makd.tasks import GLUE_TASK_NAMES
from tests.docs import block_after

REPO = Path(__file__).resolve().parents[1]
MAKD = str(Path(sys.executable).parent / "makd")
WORDS = {"positive": ["great", "lovely", "superb", "fun"], "negative": ["awful", "dull", "boring", "bad"],
         "neutral": ["long", "blue", "plain", "usual"]}


def reviews(n: int, labels=("negative", "positive"), seed: int = 0) -> list[dict]:
    """Learnable toy rows: a label's words in a sentence, a second text column, string labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        word = WORDS[label][int(rng.integers(4))]
        rows.append({"text": f"the film was {word} overall", "title": f"review {i}", "label": label,
                     "score": float(labels.index(label)) * 2.0 + float(rng.uniform(0, 0.5))})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        keys = list(rows[0])
        path.write_text(sep.join(keys) + "\n" + "".join(sep.join(str(r[k]) for k in keys) + "\n" for r in rows))
    return path


def test_a_file_task_reads_every_format_with_string_labels(tmp_path):
    for suffix in (".csv", ".tsv", ".jsonl"):
        train = write(tmp_path / f"train{suffix}", reviews(30, ("negative", "neutral", "positive")))
        dev = write(tmp_path / f"dev{suffix}", reviews(9, ("negative", "neutral", "positive"), seed=1))
        task = FileTask(f"mine{suffix[1:]}", str(train), str(dev), ("text", "title"), "label", metric="mcc")
        spec = task.register()
        assert spec.labels == ("negative", "neutral", "positive") and spec.metric == "mcc" and spec.num_labels == 3
        train_ds, dev_ds = task.load()
        assert len(train_ds) == 30 and train_ds.text_b[0] == "review 0" and list(dev_ds.labels[:3]) == [0, 1, 2]


def test_a_file_task_named_with_separators_is_found_by_its_name(tmp_path):
    """docs/sweeps.md allows '-' and '_' in a task's name: the task is looked up under that name, not under the
    separator-free spelling that GLUE names accept ('sts-b' = 'stsb')."""
    from makd.tasks import get_task

    train, dev = write(tmp_path / "train.csv", reviews(10)), write(tmp_path / "dev.csv", reviews(4, seed=1))
    for name in ("reviews-2026", "my_reviews"):
        spec = FileTask(name, str(train), str(dev), ("text",), "label").register()
        assert get_task(name) is spec and get_task(name.upper()) is spec
    assert get_task("sts-b").name == "stsb"
    with pytest.raises(UsageError, match="unknown task 'reviews2026'"):
        get_task("reviews2026")


def test_a_regression_task_is_platt_scaled_around_the_middle_of_its_range(tmp_path):
    rows = [{"text": f"t{i}", "score": s} for i, s in enumerate([10.0, 20.0, 30.0])]
    task = FileTask("ratings", str(write(tmp_path / "r.jsonl", rows)), str(write(tmp_path / "d.jsonl", rows)),
                    ("text",), "score", type="regression")
    spec = task.register()
    assert spec.is_regression and spec.metric == "pearson" and spec.platt_center == 20.0
    train, _ = task.load()
    assert np.allclose(spec.predictions(np.log(spec.target_probs(train.labels))), train.labels, atol=1e-4)


@pytest.mark.parametrize("raw, field, problem", [
    ("rte2", "tasks[1]", "a GLUE task name or a mapping"),
    ({"train_file": "a.csv", "eval_file": "b.csv"}, "tasks[1].name", "required"),
    ({"name": "x", "train_file": "a.csv"}, "tasks[1].eval_file", "required"),
    ({"name": "sst-2", "train_file": "a.csv", "eval_file": "b.csv"}, "tasks[1].name", "is a GLUE task"),
    ({"name": "x", "train_file": "a.csv", "eval_file": "b.csv", "colour": 1}, "tasks[1].colour", "unknown field"),
    ({"name": "x", "train_file": "a.csv", "eval_file": "b.csv", "type": "ranking"}, "tasks[1].type", "regression"),
    ({"name": "x", "train_file": "a.csv", "eval_file": "b.csv", "metric": "pearson"}, "tasks[1].metric",
     "accuracy, f1, mcc"),
    ({"name": "x", "train_file": "a.csv", "eval_file": "b.csv", "text_columns": ["a", "b", "c"]},
     "tasks[1].text_columns", "one or two"),
    ({"name": "x", "train_file": "a.csv", "eval_file": "b.csv", "type": "regression", "labels": ["a", "b"]},
     "tasks[1].labels", "classification only"),
])
def test_a_malformed_task_entry_is_one_line_naming_its_field(raw, field, problem):
    if isinstance(raw, str):  # not a mapping and not a GLUE name: the config parser's own message
        from makd_sweep.config import parse_config

        with pytest.raises(UsageError) as err:
            parse_config({"name": "s", "tasks": ["rte", raw], "students": ["2x128"]})
        assert err.value.field == field and "unknown task" in str(err.value)
        return
    with pytest.raises(UsageError) as err:
        parse_file_task(raw, "tasks[1]", GLUE_TASK_NAMES)
    assert err.value.field == field and problem in str(err.value) and "\n" not in str(err.value)


def config(tmp_path: Path, tiny_bert_dir: Path, tasks: list, **extra) -> Path:
    raw = {"name": "own", "tasks": tasks, "teacher": str(tiny_bert_dir), "students": ["1x64"],
           "student_tokenizer": str(tiny_bert_dir), "losses": ["ce", "vanilla"], "lams": [0.0], "seeds": [0],
           "epochs": 1, "lr": 2e-3, "batch_size": 8, "max_length": 32, "scheduler": {"kind": "none"},
           "resources_per_trial": {"cpu": 1}, "max_concurrent_trials": 2, "storage": str(tmp_path / "runs"), **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", ["missing file", "wrong column", "label not declared", "score not a number",
                                  "unreadable"])
def test_bad_files_are_refused_in_one_line_before_ray_starts(case, tiny_bert_dir, tmp_path, capsys):
    train = write(tmp_path / "train.csv", reviews(20))
    dev = write(tmp_path / "dev.csv", reviews(6, seed=1))
    entry = {"name": "mine", "train_file": str(train), "eval_file": str(dev), "text_columns": ["text"],
             "label_column": "label"}
    named = str(dev)
    if case == "missing file":
        entry["eval_file"] = named = str(tmp_path / "nope.csv")
    elif case == "wrong column":
        entry["text_columns"], named = ["body"], str(train)
    elif case == "label not declared":
        entry["labels"], named = ["negative", "mixed"], str(train)
    elif case == "score not a number":
        entry.update(type="regression", label_column="label")
        named = str(train)
    else:
        (tmp_path / "dev.jsonl").write_text("{not json\n")
        entry["eval_file"] = named = str(tmp_path / "dev.jsonl")
    import ray

    from makd_sweep.main import main

    code = main(["sweep", str(config(tmp_path, tiny_bert_dir, ["rte", entry])), "--glue-dir",
                 str(REPO / "tests" / "fixtures" / "glue"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0, err
    assert named in err, err
    assert not (tmp_path / "runs").exists() and not ray.is_initialized()  # nothing written, no Ray started


@pytest.mark.sweep
def test_a_sweep_runs_on_csv_tsv_and_jsonl_tasks_with_string_labels(tiny_bert_dir, tmp_path):
    """Three tasks from the user's files (csv with two text columns and a declared label order, tsv with three
    string labels scored by MCC, jsonl regression; names with '-' and '_', as docs/sweeps.md allows), one real sweep: every trial finishes, each task is scored
    with its own metric and references, and the report names the tasks."""
    from makd_sweep.config import load_config
    from makd_sweep.report.build import build

    three = ("negative", "neutral", "positive")
    tasks = [
        {"name": "reviews", "train_file": str(write(tmp_path / "r-train.csv", reviews(40))),
         "eval_file": str(write(tmp_path / "r-dev.csv", reviews(12, seed=1))), "text_columns": ["text", "title"],
         "labels": ["positive", "negative"], "metric": "f1"},
        {"name": "moods-2026", "train_file": str(write(tmp_path / "m-train.tsv", reviews(30, three))),
         "eval_file": str(write(tmp_path / "m-dev.tsv", reviews(9, three, seed=1))), "metric": "mcc"},
        {"name": "star_ratings", "train_file": str(write(tmp_path / "s-train.jsonl", reviews(30))),
         "eval_file": str(write(tmp_path / "s-dev.jsonl", reviews(10, seed=1))), "label_column": "score",
         "type": "regression"},
    ]
    path = config(tmp_path, tiny_bert_dir, tasks)
    cfg = load_config(path)
    # a child process, as users run it: a sweep inside pytest left later in-process sweeps unable to start actors
    done = subprocess.run([MAKD, "sweep", str(path), "--quiet", "--num-cpus", "2", "--cache-dir",
                           str(tmp_path / "cache")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = type("Outcome", (), {"root": str(tmp_path / "runs" / "own")})
    report = build([outcome.root])
    assert report.unfinished == 0 and len(report.trials) == 6
    metrics = report.leaderboard.groupby("task")["metric"].first().to_dict()
    assert metrics == {"reviews": "f1", "moods-2026": "mcc", "star_ratings": "pearson"}
    assert report.trials["majority_score"].notna().all()
    majority = report.trials.groupby("task")["majority_score"].first()
    assert majority["star_ratings"] == 0.0 and majority["moods-2026"] == 0.0  # a constant: correlation 0, MCC 0
    taught = report.trials[report.trials["loss"] == "vanilla"]
    assert taught["teacher_score"].notna().all()
    assert "reviews (F1)" in report.paper_table_markdown and "star_ratings (Pearson)" in report.paper_table_markdown
    saved = json.loads((Path(outcome.root) / "sweep.json").read_text())["config"]
    from makd_sweep.config import parse_config, sweep_yaml

    again = parse_config(yaml.safe_load(sweep_yaml(saved)))  # the report's folded YAML reruns the same sweep
    assert again.file_tasks == cfg.file_tasks and again.tasks == cfg.tasks
    # `makd export` in a fresh process (no files read): the task's labels as the sweep recorded them
    done = subprocess.run([MAKD, "export", outcome.root, "--task", "moods-2026", "--student", "1x64", "--loss",
                           "vanilla", "--out", str(tmp_path / "model")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from transformers import AutoConfig

    exported = AutoConfig.from_pretrained(tmp_path / "model")
    assert exported.num_labels == 3 and list(exported.id2label.values()) == list(three)


@pytest.mark.sweep
def test_the_documented_example_of_your_own_data_runs(tiny_bert_dir, tmp_path):
    """docs/sweeps.md's `tasks:` example, with files of those names written here, is a valid sweep that runs (as
    `makd sweep` in a child process: a CE-only sweep run inside pytest leaves Ray unable to start the next
    in-process sweep's actors)."""
    example = yaml.safe_load(block_after("docs/sweeps.md", "## Your own data", "yaml"))
    for task in example["tasks"]:
        if isinstance(task, dict):
            write(tmp_path / task["train_file"], reviews(30))
            write(tmp_path / task["eval_file"], reviews(8, seed=1))
    path = config(tmp_path, tiny_bert_dir, example["tasks"], losses=["ce"], data={
        "glue_dir": str(REPO / "tests" / "fixtures" / "glue")})
    done = subprocess.run([MAKD, "sweep", str(path), "--quiet", "--num-cpus", "2", "--cache-dir",
                           str(tmp_path / "cache")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import pandas as pd

    trials = pd.read_csv(tmp_path / "runs" / "own" / "trials.csv")
    assert set(trials["task"]) == {t if isinstance(t, str) else t["name"] for t in example["tasks"]}
    assert (trials["status"] == "TERMINATED").all()


def test_a_file_is_parsed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    """A sweep reads the user's files to check them before Ray starts, then loads them: one parse, not two."""
    import os

    from makd import data

    parsed = []
    real = data._load_file
    monkeypatch.setattr(data, "_load_file", lambda *a: parsed.append(a[2]) or real(*a))
    data._load_file_once.cache_clear()
    train = write(tmp_path / "train.csv", reviews(20))
    task = FileTask("twice", str(train), str(write(tmp_path / "dev.csv", reviews(6, seed=1))), ("text",), "label")
    first = task.load()
    second = task.load()
    assert len(parsed) == 2 and first[0] is second[0]  # train and dev once each
    write(train, reviews(24))
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 10**9))  # changed since: parsed again
    assert len(task.load()[0]) == 24 and len(parsed) == 3
