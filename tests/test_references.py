"""The references every student is read against: the majority-class baseline and the teacher's own dev score."""

from __future__ import annotations

import numpy as np
import pytest

from makd.data import TextDataset
from makd.epoch import HOLDOUT
from makd.references import majority_reference, teacher_reference
from makd.tasks import compute_metrics, get_task


def dataset(task: str, split: str, labels) -> TextDataset:
    labels = np.asarray(labels)
    return TextDataset(task, split, [f"text {i}" for i in range(len(labels))], None, labels, "test")


def test_the_majority_class_of_train_is_scored_on_dev_and_the_hold_out_is_not_a_reported_split():
    """MRPC: 'equivalent' is 3 of 4 training labels; predicting it for every dev pair gives F1 = 2·p/(1+p) for a
    dev set with positive fraction p. The hold-out (selection data) holds only negatives: scoring on it would
    give F1 0."""
    task = get_task("mrpc")
    train = dataset("mrpc", "train", [1, 1, 1, 0])
    dev = dataset("mrpc", "validation", [1, 1, 0, 0, 0])
    found = majority_reference(task, train, {"": dev, HOLDOUT: dataset("mrpc", "train", [0, 0])})
    assert found["majority_score"] == pytest.approx(2 * 0.4 / 1.4)
    assert found["majority_prediction"] == "equivalent (75% of train)"


def test_a_tie_goes_to_the_lower_class_and_mnli_scores_its_matched_split():
    task = get_task("mnli")
    train = dataset("mnli", "train", [2, 2, 1, 1, 0])  # neutral and contradiction tie: neutral (1) is the lower id
    sets = {"m": dataset("mnli", "validation_matched", [1, 1, 0, 2]),
            "mm": dataset("mnli", "validation_mismatched", [0, 0, 0, 1])}
    found = majority_reference(task, train, sets)
    assert task.metric == "accuracy_m" and found["majority_score"] == 0.5
    assert found["majority_prediction"].startswith("neutral (")


def test_a_regression_task_has_a_constant_baseline_of_zero_correlation():
    task = get_task("stsb")
    found = majority_reference(task, dataset("stsb", "train", [0.0, 2.0, 4.0, 5.0]),
                               {"": dataset("stsb", "validation", [1.0, 3.0, 4.5])})
    assert found == {"majority_score": 0.0, "majority_prediction": "the mean score 2.75"}


def test_the_teacher_is_scored_from_its_logits_like_a_student():
    """STS-B through the inverse Platt map: a teacher whose logit gap tracks the gold score has Pearson 1."""
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 20).astype(np.float32)
    logits = np.stack([np.zeros(20), labels - 2.5 + 0.0], axis=1)
    assert teacher_reference(get_task("stsb"), {"": dataset("stsb", "validation", labels)},
                             {"": logits})["teacher_score"] == pytest.approx(1.0)
    rte = get_task("rte")
    dev = dataset("rte", "validation", rng.integers(0, 2, 30))
    logits = rng.normal(size=(30, 2))
    expected = compute_metrics(rte, logits.argmax(1), dev.labels)["accuracy"]
    assert teacher_reference(rte, {"": dev}, {"": logits}) == {"teacher_score": expected}
