"""What a student's score means: the task's majority-class baseline and the teacher's own score, on the split
every student is reported on (dev), in the same units as a trial's `dev_score`.

A student at its majority baseline learned nothing measurable (MRPC's F1 of always predicting "paraphrase" is
81.2); a teacher near that baseline (the paper's pretrained encoder with a fresh head) has nothing to teach.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from makd.data import TextDataset
from makd.epoch import HOLDOUT
from makd.tasks import TaskSpec, compute_metrics


def reported_splits(eval_sets: Mapping[str, TextDataset]) -> dict[str, TextDataset]:
    """The dev split(s) students are reported on, keyed by metric suffix: every eval set but the selection
    hold-out."""
    return {suffix: ds for suffix, ds in eval_sets.items() if suffix != HOLDOUT}


def _main_score(task: TaskSpec, predictions: Mapping[str, np.ndarray], eval_sets: Mapping[str, TextDataset]) -> float:
    metrics: dict[str, float] = {}
    for suffix, ds in reported_splits(eval_sets).items():
        metrics.update(compute_metrics(task, predictions[suffix], ds.labels, suffix=suffix))
    return metrics[task.metric]


def majority_reference(task: TaskSpec, train_ds: TextDataset, eval_sets: Mapping[str, TextDataset]) -> dict:
    """The constant predictor fitted on the training labels: the most frequent class (ties: the lower id), or for a
    regression task the mean score, whose correlation with any dev set is 0. `majority_score` is its dev score;
    `majority_prediction` says what it predicts ('equivalent (68% of train)', 'the mean score 2.70'). With transfer
    data, only the labels a student may read count."""
    labels = np.asarray(train_ds.labels if train_ds.labeled is None else train_ds.labels[train_ds.labeled])
    if task.is_regression:
        constant, said = float(labels.mean()), f"the mean score {float(labels.mean()):.2f}"
    else:
        counts = np.bincount(labels.astype(np.int64), minlength=task.num_labels)
        constant = int(counts.argmax())
        said = f"{task.labels[constant]} ({100 * counts[constant] / counts.sum():.0f}% of train)"
    predictions = {suffix: np.full(len(ds), constant) for suffix, ds in reported_splits(eval_sets).items()}
    return {"majority_score": _main_score(task, predictions, eval_sets), "majority_prediction": said}


def teacher_reference(task: TaskSpec, eval_sets: Mapping[str, TextDataset],
                      teacher_logits: Mapping[str, np.ndarray]) -> dict:
    """The teacher's own dev score from its logits on each reported split (keyed like `eval_sets`)."""
    predictions = {suffix: task.predictions(teacher_logits[suffix]) for suffix in reported_splits(eval_sets)}
    return {"teacher_score": _main_score(task, predictions, eval_sets)}
