"""A fine-tuned teacher as a cached step (issue 22): trained once per (teacher, task, data, settings), never on the
hold-out or dev, atomic and resumable, shared by every trial of a sweep and by `makd distill`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from makd.config import TrainOptions
from makd.errors import UsageError
from makd.pipeline import DataSource, load_datasets
from makd.teacher_finetune import FinetuneOptions, cache_root, finetune_teacher

REPO = Path(__file__).resolve().parents[1]
FIXTURE_GLUE = REPO / "tests" / "fixtures" / "glue"
MAKD = str(Path(sys.executable).parent / "makd")
QUICK = FinetuneOptions(epochs=2, lr=1e-3, batch_size=4)


def rte(holdout: float = 0.1):
    return load_datasets("rte", DataSource(glue_dir=str(FIXTURE_GLUE)), TrainOptions(holdout_fraction=holdout))


def test_a_fine_tuned_teacher_is_trained_once_and_loads_with_its_trained_head(tiny_bert_dir, tmp_path, monkeypatch):
    import makd.train
    from makd.models import load_teacher

    train_ds, eval_sets = rte()
    first = finetune_teacher(str(tiny_bert_dir), "rte", train_ds, {"": eval_sets[""]}, QUICK, cache_dir=tmp_path)
    assert first.trained and first.record["train_examples"] == len(train_ds)
    assert [e["epoch"] for e in first.record["epochs"]] == [1, 2] and first.record["parameters_m"] > 0
    assert os.listdir(cache_root(tmp_path)) == [Path(first.path).name]  # no partial dir left behind

    def forbidden(*args, **kwargs):
        raise AssertionError("trained again despite a cached fine-tuned teacher")

    monkeypatch.setattr(makd.train, "train", forbidden)
    again = finetune_teacher(str(tiny_bert_dir), "rte", train_ds, {"": eval_sets[""]}, QUICK, cache_dir=tmp_path)
    assert not again.trained and again.path == first.path and again.record == first.record
    model, _ = load_teacher(first.path, 2, fine_tuned=True)  # its own head, not a fresh one
    assert model.config.num_labels == 2


def test_what_determines_the_weights_keys_the_cache(tiny_bert_dir, tmp_path):
    """Other settings, or another training split (another hold-out), make another entry; the hold-out is never
    in the fine-tuning data."""
    from makd.teacher_finetune import finetune_digest

    train_ds, _ = rte(0.1)
    other_split, held = rte(0.4)[0], rte(0.4)[1]["holdout"]
    key = finetune_digest(str(tiny_bert_dir), "rte", train_ds, QUICK, head_seed=0, max_length=128, data_seed=0)
    assert key != finetune_digest(str(tiny_bert_dir), "rte", other_split, QUICK, head_seed=0, max_length=128,
                                  data_seed=0)
    assert key != finetune_digest(str(tiny_bert_dir), "rte", train_ds, FinetuneOptions(epochs=3, lr=1e-3, batch_size=4),
                                  head_seed=0, max_length=128, data_seed=0)
    assert key != finetune_digest(str(tiny_bert_dir), "rte", train_ds, QUICK, head_seed=1, max_length=128, data_seed=0)
    assert not set(held.text_a) & set(other_split.text_a)


def test_a_run_killed_before_the_commit_leaves_no_teacher_and_the_next_run_resumes(tiny_bert_dir, tmp_path,
                                                                                   monkeypatch):
    import makd.models

    train_ds, eval_sets = rte()
    real_save = makd.models.save_student

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the model dir")

    monkeypatch.setattr(makd.models, "save_student", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune_teacher(str(tiny_bert_dir), "rte", train_ds, {"": eval_sets[""]}, QUICK, cache_dir=tmp_path)
    assert [p.name.endswith(".partial") for p in cache_root(tmp_path).iterdir()] == [True]  # nothing published
    monkeypatch.setattr(makd.models, "save_student", real_save)
    done = finetune_teacher(str(tiny_bert_dir), "rte", train_ds, {"": eval_sets[""]}, QUICK, cache_dir=tmp_path)
    assert done.trained and done.record["resumed_from_epoch"] == QUICK.epochs  # both epochs came from the checkpoint
    assert [p.name for p in cache_root(tmp_path).iterdir()] == [Path(done.path).name]


@pytest.mark.parametrize("block, field", [
    ({"epochs": 0}, "teacher_finetune.epochs"),
    ({"lr": -1}, "teacher_finetune.lr"),
    ({"batch": 8}, "teacher_finetune.batch"),
    ("yes", "teacher_finetune"),
])
def test_a_bad_teacher_finetune_block_is_one_line_naming_its_field(block, field):
    from makd_sweep.config import parse_config

    with pytest.raises(UsageError) as err:
        parse_config({"name": "s", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6",
                      "teacher_finetune": block})
    assert err.value.field == field and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="fine_tuned: true"):
        parse_config({"name": "s", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6",
                      "fine_tuned": True, "teacher_finetune": {"epochs": 1}})


@pytest.mark.sweep
def test_a_sweep_distils_from_its_fine_tuned_teacher_and_a_second_sweep_reuses_it(tiny_bert_dir, tmp_path):
    """One real sweep with teacher_finetune: the teacher is trained once (the driver says so), every KD trial is
    a fine-tuned-teacher row with that teacher's own dev score beside it, sweep.json records the cost; a second
    sweep over the same cache trains nothing."""
    from makd_sweep.report.build import build

    raw = {"name": "ft", "tasks": ["rte"], "teacher": str(tiny_bert_dir), "students": ["1x64"],
           "student_tokenizer": str(tiny_bert_dir), "losses": ["ce", "vanilla"], "lams": [0.0], "seeds": [0],
           "epochs": 1, "lr": 2e-3, "batch_size": 8, "max_length": 32, "scheduler": {"kind": "none"},
           "teacher_finetune": {"epochs": 2, "lr": 1e-3, "batch_size": 4},
           "data": {"glue_dir": str(FIXTURE_GLUE)}, "resources_per_trial": {"cpu": 1},
           "storage": str(tmp_path / "runs")}
    for name in ("ft", "ft-again"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**raw, "name": name}))
        done = subprocess.run([MAKD, "sweep", str(tmp_path / f"{name}.yaml"), "--num-cpus", "2", "--cache-dir",
                               str(tmp_path / "cache")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        said = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if "fine-tuned teacher:" in line]
        assert len(said) == 1 and ("trained now" if name == "ft" else "cached") in said[0], said
    report = build([tmp_path / "runs" / "ft"])
    vanilla = report.trials[report.trials["loss"] == "vanilla"]
    assert vanilla["teacher_fine_tuned"].all() and vanilla["teacher_score"].notna().all()
    assert list(report.leaderboard["loss"]) == ["ce", "vanilla, fine-tuned teacher"]
    assert "(fine-tuned)* |" in report.paper_table_markdown
    record = json.loads((tmp_path / "runs" / "ft" / "sweep.json").read_text())["teacher_cache"]["rte"]
    assert record["finetuned_teacher"]["trained_now"] and record["finetuned_teacher"]["seconds"] > 0
    again = json.loads((tmp_path / "runs" / "ft-again" / "sweep.json").read_text())["teacher_cache"]["rte"]
    assert not again["finetuned_teacher"]["trained_now"] and again["status"] == "hit"


@pytest.mark.slow
def test_makd_finetune_teacher_then_distill_from_it(tiny_bert_dir, tmp_path):
    common = ["--task", "rte", "--glue-dir", str(FIXTURE_GLUE), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    done = subprocess.run([MAKD, "finetune-teacher", *common, "--teacher", str(tiny_bert_dir), "--epochs", "1",
                           "--batch-size", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["trained_now"] and 0 <= made["teacher_score"] <= 1 and Path(made["path"]).is_dir()
    done = subprocess.run([MAKD, "distill", *common, "--teacher", made["path"], "--fine-tuned", "--student", "1x64",
                           "--student-tokenizer", str(tiny_bert_dir), "--loss", "vanilla", "--lam", "0.5",
                           "--epochs", "1", "--batch-size", "8"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["teacher_score"] == made["teacher_score"]  # the same teacher, the same dev logits
