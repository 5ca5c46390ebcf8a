"""Transfer data (makd/transfer.py): the labeled/transfer split, losses on rows without a label, the student never
reading a transfer row's label, equal steps for losses that need labels, pseudo_label, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from makd.config import TrainOptions
from makd.data import TextDataset
from makd.epoch import HOLDOUT
from makd.errors import UsageError
from makd.losses import distillation_loss, pseudo_label_ce, soft_cross_entropy, vanilla_kd
from makd.pipeline import DataSource, load_datasets, task_references
from makd.tasks import get_task
from makd.train import TrainConfig, train
from makd.transfer import (
    NO_LABEL_CLASS,
    epoch_batches,
    gold_rows,
    labeled_only,
    split_labeled,
    student_labels,
    with_transfer_file,
)
from tests.conftest import FIXTURES
from tests.helpers import sentiment, similarity

FIXTURE_GLUE = str(FIXTURES / "glue")


def flagged(ds: TextDataset, labeled: np.ndarray) -> TextDataset:
    out = ds.select(np.arange(len(ds)))
    out.labeled = labeled
    return out


# --- the split ------------------------------------------------------------------------------------------------

def test_labeled_rows_are_seeded_and_the_hold_out_comes_from_them():
    ds = sentiment(200)
    train_ds, holdout = split_labeled(ds, 50, 0.2, seed=0)
    assert len(holdout) == 10 and len(train_ds) == 190
    assert int(train_ds.labeled.sum()) == 40 and train_ds.transfer_rows == 150
    labeled_texts = set(np.asarray(train_ds.text_a)[train_ds.labeled]) | set(holdout.text_a)
    assert len(labeled_texts) == 50 and not set(holdout.text_a) & set(train_ds.text_a)
    again, _ = split_labeled(ds, 50, 0.2, seed=0)
    assert again.text_a == train_ds.text_a and (again.labeled == train_ds.labeled).all()
    other, _ = split_labeled(ds, 50, 0.2, seed=1)
    assert not (other.labeled == train_ds.labeled).all()
    # the teacher's view keeps every row's gold label, and the fingerprint is of the rows, not the flags
    assert (train_ds.labels == ds.select(np.setdiff1d(np.arange(200), _positions(ds, holdout))).labels).all()
    assert train_ds.digest() == ds.select(np.setdiff1d(np.arange(200), _positions(ds, holdout))).digest()


def _positions(ds: TextDataset, part: TextDataset) -> np.ndarray:
    index = {text: i for i, text in enumerate(ds.text_a)}
    return np.array([index[t] for t in part.text_a])


def test_load_datasets_splits_transfer_data_from_a_glue_folder():
    options = TrainOptions(transfer_labeled=3, holdout_fraction=0.34)
    train_ds, eval_sets = load_datasets("sst2", DataSource(glue_dir=FIXTURE_GLUE), options)
    assert len(eval_sets[HOLDOUT]) == 1 and int(train_ds.labeled.sum()) == 2 and train_ds.transfer_rows == 3


@pytest.mark.parametrize("labeled, fraction, problem", [
    (6, 0.1, "not fewer than the 6 training examples"),
    (1, 0.5, "leave none to train on after a hold-out of 1"),
])
def test_a_labeled_count_the_split_cannot_hold_is_one_line(labeled, fraction, problem):
    with pytest.raises(UsageError) as err:
        load_datasets("sst2", DataSource(glue_dir=FIXTURE_GLUE),
                      TrainOptions(transfer_labeled=labeled, holdout_fraction=fraction))
    assert err.value.field == "transfer_labeled" and problem in err.value.problem


# --- a transfer file ------------------------------------------------------------------------------------------

def test_a_transfer_file_adds_unlabeled_rows_that_the_teacher_does_not_train_on(tmp_path):
    path = tmp_path / "texts.csv"
    pd.DataFrame({"sentence": ["an unlabeled review", "another one"], "extra": [1, 2]}).to_csv(path, index=False)
    options = TrainOptions(transfer_file=str(path), holdout_fraction=0.0)
    train_ds, _ = load_datasets("sst2", DataSource(glue_dir=FIXTURE_GLUE), options)
    assert train_ds.text_a[-2:] == ["an unlabeled review", "another one"]
    assert list(train_ds.labeled[-3:]) == [True, False, False] and list(train_ds.labels[-2:]) == [NO_LABEL_CLASS] * 2
    gold = gold_rows(get_task("sst2"), train_ds)
    assert len(gold) == len(train_ds) - 2 and NO_LABEL_CLASS not in gold.labels
    stsb = with_transfer_file(get_task("stsb"), similarity(4), str(_pairs(tmp_path)), ("sentence1", "sentence2"))
    assert np.isnan(stsb.labels[-1]) and len(gold_rows(get_task("stsb"), stsb)) == 4


def _pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"sentence1": "a cat", "sentence2": "a dog"}) + "\n")
    return path


@pytest.mark.parametrize("content, problem", [
    ("text\nhello\n", "missing column 'sentence'"),
    ("sentence\n", "no data rows"),
])
def test_a_transfer_file_without_the_task_columns_is_one_line(tmp_path, content, problem):
    path = tmp_path / "texts.csv"
    path.write_text(content)
    with pytest.raises(UsageError) as err:
        load_datasets("sst2", DataSource(glue_dir=FIXTURE_GLUE), TrainOptions(transfer_file=str(path)))
    assert err.value.field == str(path) and problem in err.value.problem


# --- the loss on rows without a label ------------------------------------------------------------------------

def test_a_transfer_row_takes_the_kd_term_alone_and_its_label_is_never_read():
    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    labeled = torch.tensor([True, True, False, True, False, False])
    labels = torch.tensor([0, 1, NO_LABEL_CLASS, 1, NO_LABEL_CLASS, NO_LABEL_CLASS])
    got = distillation_loss(s, t, labels, kind="vanilla", lam=0.5, tau=2.0, labeled=labeled)
    on = labeled.nonzero().squeeze(1)
    off = (~labeled).nonzero().squeeze(1)
    eq9 = 0.5 * soft_cross_entropy(s[on], F.one_hot(labels[on], 2).float()) + 0.5 * vanilla_kd(s[on], t[on], 2.0)
    assert torch.allclose(got, 0.5 * eq9 + 0.5 * vanilla_kd(s[off], t[off], 2.0))
    all_labeled = distillation_loss(s, t, labels.clamp_min(0), kind="vanilla", lam=0.5, tau=2.0,
                                    labeled=torch.ones(6, dtype=torch.bool))
    assert torch.equal(all_labeled, distillation_loss(s, t, labels.clamp_min(0), kind="vanilla", lam=0.5, tau=2.0))
    for kind in ("ce", "taylor", "ortho"):
        with pytest.raises(ValueError, match="needs a label on every example"):
            distillation_loss(s, t, labels, kind=kind, lam=0.5, labeled=labeled)


def test_pseudo_label_is_cross_entropy_on_the_teachers_argmax():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(pseudo_label_ce(s, t), F.cross_entropy(s, t.argmax(-1)))
    with pytest.raises(UsageError) as err:
        TrainConfig(task="stsb", student="2x64", teacher="t", loss="pseudo_label").validate()
    assert err.value.field == "loss" and "regression" in err.value.problem


def test_label_needing_losses_take_as_many_steps_over_the_labeled_rows_only():
    lengths = np.arange(100) % 7 + 3
    rows = np.arange(0, 100, 9)
    batches = epoch_batches(lengths, 8, np.random.default_rng(0), rows)
    assert len(batches) == len(epoch_batches(lengths, 8, np.random.default_rng(0))) == 13
    assert set(np.concatenate(batches)) == set(rows)
    ds = flagged(sentiment(10), np.arange(10) < 4)
    assert labeled_only("ce", ds) and labeled_only("taylor", ds) and not labeled_only("vanilla", ds)
    assert not labeled_only("ce", sentiment(10))
    assert (student_labels(get_task("sst2"), ds)[4:] == NO_LABEL_CLASS).all()


# --- end to end on a tiny student -----------------------------------------------------------------------------

def run(student_dir, ds, logits, **kw):
    cfg = TrainConfig(task="sst2", student=str(student_dir), teacher="unused", epochs=2, batch_size=8, lr=2e-3,
                      max_length=32, seed=0, transfer_labeled=16, **kw)
    dev = sentiment(16, "validation", seed=1)
    return train(cfg, ds, {"": dev}, logits, progress=False).last.weights_fingerprint


def test_the_student_never_reads_a_transfer_rows_label_and_ce_never_sees_a_transfer_row(tiny_bert_dir):
    ds = flagged(sentiment(48), np.arange(48) % 3 == 0)
    logits = np.random.default_rng(0).normal(0, 2, size=(48, 2)).astype(np.float32)
    flipped = flagged(ds, ds.labeled)
    flipped.labels = np.where(ds.labeled, ds.labels, 1 - ds.labels)
    assert run(tiny_bert_dir, ds, logits, loss="vanilla") == run(tiny_bert_dir, flipped, logits, loss="vanilla")
    other_texts = flagged(ds, ds.labeled)
    other_texts.text_a = [t if keep else "something else entirely" for t, keep in zip(ds.text_a, ds.labeled,
                                                                                      strict=True)]
    assert run(tiny_bert_dir, ds, None, loss="ce", lam=1.0) == run(tiny_bert_dir, other_texts, None, loss="ce", lam=1.0)
    # Taylor KD cannot learn from transfer data: at τ = 1 it is ce's student, transfer rows or not
    assert run(tiny_bert_dir, ds, logits, loss="taylor", lam=0.5) == run(tiny_bert_dir, ds, None, loss="ce", lam=1.0)
    assert run(tiny_bert_dir, ds, logits, loss="pseudo_label", lam=0.0) != run(tiny_bert_dir, ds, None, loss="ce",
                                                                               lam=1.0)


def test_references_count_the_transfer_rows_and_score_the_teacher_on_them():
    ds = flagged(sentiment(10), np.arange(10) < 4)
    logits = np.zeros((10, 2), dtype=np.float32)
    logits[np.arange(10), ds.labels] = 1.0  # a teacher right on every row
    logits[9] = logits[9][::-1].copy()  # but the last
    dev = sentiment(8, "validation", seed=1)
    refs = task_references("sst2", ds, {"": dev}, {"train": logits, "dev": np.zeros((8, 2), dtype=np.float32)})
    assert refs["labeled_examples"] == 4 and refs["transfer_examples"] == 6
    assert refs["teacher_transfer_score"] == pytest.approx(5 / 6)


# --- the tables -------------------------------------------------------------------------------------------------

def test_tables_say_who_learned_from_transfer_data_and_keep_the_all_labels_reference_apart(tmp_path):
    from makd_sweep.report.build import build
    from tests.test_leaderboard import trial, write_experiment

    transfer = {"labeled_examples": 800, "transfer_examples": 19000, "teacher_transfer_score": 0.97,
                "dev_score": None}
    rows, all_labels = [], []  # two sweeps: transfer data, and every label
    for seed in range(3):
        rows += [trial("sst2", loss="ce", seed=seed, score=0.80 + seed / 100, **transfer),
                 trial("sst2", loss="vanilla", lam=0.0, seed=seed, score=0.85 + seed / 100, **transfer),
                 trial("sst2", loss="pseudo_label", lam=0.0, seed=seed, score=0.84 + seed / 100, **transfer)]
        all_labels.append(trial("sst2", loss="ce", seed=seed, score=0.90 + seed / 100))
    for row in rows + all_labels:
        row["dev_score"] = row["best_score"]
    report = build([str(write_experiment(tmp_path / "transfer", rows)),
                    str(write_experiment(tmp_path / "all-labels", all_labels))])
    board = report.leaderboard.set_index("loss")
    assert set(board.index) == {"ce", "ce, all labels", "pseudo_label", "vanilla"}
    assert board.loc["vanilla", "delta_vs_ce"] == pytest.approx(0.05)
    assert board.loc["ce, all labels", "delta_vs_ce"] == pytest.approx(0.10)
    assert board.loc["pseudo_label", "delta_vs_vanilla"] == pytest.approx(-0.01)
    note = next(line for line in report.paper_table_markdown.splitlines() if "Transfer data" in line)
    assert ("800 labeled training examples and 19,000 transfer examples" in note and "ce (a label needed" in note
            and "pseudo_label, vanilla also learn from the transfer examples" in note and "97.0" in note
            and "\"all labels\"" in note)


# --- the commands ---------------------------------------------------------------------------------------------

def test_makd_distill_learns_from_a_transfer_file_and_says_so(tiny_bert_dir, tmp_path, capsys):
    from tests.test_cli import distill_args, run_cli

    texts = tmp_path / "unlabeled.tsv"
    texts.write_text("sentence1\tsentence2\n" + "".join(f"a claim {i}\tits evidence {i}\n" for i in range(6)))
    code, out, err = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path, "--transfer-file", str(texts)))
    assert code == 0, err
    result = json.loads(out)
    assert result["transfer_examples"] == 6 and result["labeled_examples"] == result["train_examples"] - 6
    assert result["teacher_transfer_score"] is None  # the file's texts have no gold label to score the teacher on
    code, _, err = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path, "--transfer-labeled", "99"))
    assert code == 2 and err.strip().splitlines()[-1].startswith("makd: error: transfer_labeled: 99 is not fewer")


def test_a_sweep_config_spells_transfer_as_a_block_and_refuses_what_cannot_learn_from_it(tmp_path):
    from makd_sweep.config import parse_config

    base = {"name": "t", "tasks": ["sst2"], "students": ["2x128"], "teacher": "zoo:minilm-l6", "lams": [0.0, 0.5]}
    cfg = parse_config({**base, "losses": ["vanilla", "pseudo_label"], "transfer": {"labeled": 1000}})
    assert cfg.train.transfer_labeled == 1000 and cfg.train.transfer_file is None
    cfg = parse_config({**base, "losses": ["vanilla"], "transfer": {"file": "texts.csv"}})
    assert cfg.train.transfer_file == str((Path.cwd() / "texts.csv").resolve())
    for extra, field, problem in [
        ({"losses": ["ce", "taylor"], "transfer": {"labeled": 10}}, "transfer", "add vanilla or pseudo_label"),
        ({"losses": ["vanilla"], "transfer": {}}, "transfer", "give labeled: N"),
        ({"losses": ["vanilla"], "transfer": {"labeled": 0}}, "transfer.labeled", "must be >= 1"),
        ({"losses": ["vanilla"], "lams": [1.0], "transfer": {"labeled": 10}}, "transfer", "every λ is 1"),
        ({"losses": ["vanilla"], "transfer": {"labeled": 10}, "transfer_labeled": 20}, "transfer", "conflicts"),
        ({"tasks": ["stsb"], "losses": ["pseudo_label"]}, "losses[1]", "stsb is a regression task"),
        ({"losses": ["vanilla"], "transfer": {"labeled": 10}, "pack": {"size": 2, "mode": "fused"},
          "scheduler": {"kind": "none"}}, "pack.mode", "use sequential"),
    ]:
        with pytest.raises(UsageError) as err:
            parse_config({**base, **extra})
        assert (err.value.field, problem in err.value.problem) == (field, True), err.value


@pytest.mark.sweep
def test_a_sweep_with_transfer_data_reports_who_learned_from_it(tiny_bert_dir, tmp_path, monkeypatch):
    from makd_sweep.config import parse_config
    from makd_sweep.driver import run_sweep

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    for name, ds in (("train.csv", sentiment(48)), ("dev.csv", sentiment(16, "validation", seed=1))):
        pd.DataFrame({"sentence": ds.text_a, "label": ["pos" if y else "neg" for y in ds.labels]}).to_csv(
            tmp_path / name, index=False)
    cfg = parse_config({
        "name": "exp", "tasks": [{"name": "reviews", "train_file": str(tmp_path / "train.csv"),
                                  "eval_file": str(tmp_path / "dev.csv"), "text_columns": ["sentence"]}],
        "teacher": str(tiny_bert_dir), "students": ["1x64"], "student_tokenizer": str(tiny_bert_dir),
        "losses": ["vanilla", "pseudo_label"], "lams": [0.0], "seeds": [0], "epochs": 1, "batch_size": 8,
        "max_length": 32, "transfer": {"labeled": 20}, "storage": str(tmp_path / "runs"),
        "resources_per_trial": {"cpu": 1}, "max_concurrent_trials": 2})
    outcome = run_sweep(cfg, quiet=True, num_cpus=2)
    trials = outcome.trials.set_index("loss")
    assert set(trials.index) == {"ce", "vanilla", "pseudo_label"} and (trials["status"] == "TERMINATED").all()
    assert (trials["labeled_examples"] == 18).all() and (trials["transfer_examples"] == 28).all()
    assert trials["teacher_transfer_score"].notna().all()
    table = (Path(outcome.root) / "table.md").read_text()
    assert "18 labeled training examples and 28 transfer examples" in table
