"""Transfer data: training examples the student sees without their gold label (only the KD term learns from them).

The classic setting where distillation wins (Turc et al., 2019; DistilBERT) trains the student on the teacher's
soft labels over many examples that carry no gold label. Two sources (TrainOptions `transfer_labeled` and
`transfer_file`; a sweep's `transfer:` block):

- `labeled: N`: a seeded subset of N examples of the task's own training split keeps its labels; the rest become
  transfer examples. The selection hold-out is carved from the N labeled ones (a user with N labels has no more to
  choose settings on). The teacher is fine-tuned (`teacher_finetune:`) on every training example with its label:
  it stands for a model trained where labels exist, as in DistilBERT and Turc et al., so its soft labels on the
  transfer examples are those of examples it has seen.
- `file`: unlabeled texts (csv / tsv / jsonl / parquet with the task's text columns) appended to the training split.

A row's `labeled` flag (TextDataset.labeled) says whether the student may read its label; a row from a file has
none (NO_LABEL). Losses whose every term needs a gold label (ce, taylor, ortho) train on the labeled rows only, with
as many examples per epoch as the whole set, so every method of a sweep takes the same number of steps.
"""

from __future__ import annotations

import numpy as np

from makd.data import TextDataset, holdout_positions, read_text_columns
from makd.errors import UsageError
from makd.tasks import TaskSpec

NO_LABEL_CLASS = -1  # the label of a transfer row read from a file (a class task): one_hot(-1) fails loudly
TRANSFER_SEED = 2042  # mixed with data_seed: which rows keep their labels, a draw of its own


def split_labeled(train_ds: TextDataset, labeled: int, holdout_fraction: float,
                  seed: int) -> tuple[TextDataset, TextDataset | None]:
    """(the training rows in file order, each flagged labeled or not; the hold-out, or None): `labeled` seeded rows
    keep their labels, `holdout_fraction` of them are the hold-out, every other row is a transfer example."""
    n = len(train_ds)
    if labeled >= n:
        raise UsageError("transfer_labeled", f"{labeled} is not fewer than the {n} training examples, so no example "
                                             "would be a transfer example (leave transfer out to use every label)")
    chosen = np.sort(np.random.default_rng([seed, TRANSFER_SEED]).permutation(n)[:labeled])
    held = np.empty(0, dtype=np.int64)
    if holdout_fraction > 0:
        count = max(1, round(holdout_fraction * labeled))
        if count >= labeled:
            raise UsageError("transfer_labeled", f"{labeled} labeled examples leave none to train on after a "
                                                 f"hold-out of {count} (selection fraction {holdout_fraction})")
        held = chosen[holdout_positions(labeled, holdout_fraction, seed)]
    rest = np.setdiff1d(np.arange(n), held)
    train = train_ds.select(rest)
    train.labeled = np.isin(rest, chosen)
    return train, (train_ds.select(held) if len(held) else None)


def labeled_only(loss: str, train_ds: TextDataset) -> bool:
    """Does this loss train on the labeled rows only? (It reads a label in every term, and there are transfer rows.)"""
    from makd.losses import get_loss

    return train_ds.labeled is not None and not bool(train_ds.labeled.all()) and get_loss(loss).needs_label


def student_labels(task, train_ds: TextDataset) -> np.ndarray:
    """train_ds's labels as the student may read them: a transfer row's is NO_LABEL (or NaN for a score), so no
    code path of the student's can read the gold label the teacher was fine-tuned on."""
    if train_ds.labeled is None:
        return train_ds.labels
    labels = np.array(train_ds.labels, copy=True)
    labels[~train_ds.labeled] = np.nan if task.is_regression else NO_LABEL_CLASS
    return labels


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                  rows: np.ndarray | None = None) -> list[np.ndarray]:
    """One epoch's batches: length-grouped over every row, or (rows given: the labeled ones) over those rows pass
    after pass until the epoch has as many batches as one over every row, so each method takes the same steps."""
    from makd.batching import length_grouped_batches

    if rows is None:
        return length_grouped_batches(lengths, batch_size, rng)
    steps = -(-len(lengths) // batch_size)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        batches += [rows[b] for b in length_grouped_batches(lengths[rows], batch_size, rng)]
    return batches[:steps]


def with_transfer_file(task: TaskSpec, train_ds: TextDataset, path: str, text_columns: tuple[str, ...]) -> TextDataset:
    """train_ds followed by the file's texts as transfer rows (no label: NO_LABEL, or NaN for a score)."""
    if (train_ds.text_b is None) != (len(text_columns) == 1):
        raise UsageError("transfer.file", f"task {task.name} has {1 if train_ds.text_b is None else 2} text "
                                          f"column(s); got {len(text_columns)}: {', '.join(text_columns)}")
    table = read_text_columns(path, text_columns, ("text",) * len(text_columns))
    n = len(table[text_columns[0]])
    missing = np.full(n, np.nan if task.is_regression else NO_LABEL_CLASS, dtype=train_ds.labels.dtype)
    flags = train_ds.labeled if train_ds.labeled is not None else np.ones(len(train_ds), dtype=bool)
    return TextDataset(train_ds.task, train_ds.split, train_ds.text_a + table[text_columns[0]],
                       None if train_ds.text_b is None else train_ds.text_b + table[text_columns[1]],
                       np.concatenate([train_ds.labels, missing]), f"{train_ds.source} + {path}",
                       labeled=np.concatenate([flags, np.zeros(n, dtype=bool)]))


def gold_rows(task: TaskSpec, train_ds: TextDataset) -> TextDataset:
    """The rows that have a gold label (what the teacher is fine-tuned on): all but those read from a transfer file.
    The dataset itself when every row has one (the fine-tuned teacher's cache key is its fingerprint)."""
    has = ~np.isnan(train_ds.labels) if task.is_regression else train_ds.labels != NO_LABEL_CLASS
    return train_ds if bool(has.all()) else train_ds.select(np.flatnonzero(has))


def transfer_references(task: TaskSpec, train_ds: TextDataset, teacher_train: np.ndarray | None) -> dict:
    """labeled_examples and transfer_examples (what a table's transfer line says), and teacher_transfer_score: the
    teacher's main metric on the transfer rows that have a gold label (None: none has, or no teacher ran)."""
    from makd.tasks import compute_metrics

    labeled = np.asarray(train_ds.labeled, dtype=bool)
    out: dict = {"labeled_examples": int(labeled.sum()), "transfer_examples": int((~labeled).sum()),
                 "teacher_transfer_score": None}
    gold = ~np.isnan(train_ds.labels) if task.is_regression else train_ds.labels != NO_LABEL_CLASS
    rows = np.flatnonzero(~labeled & gold)
    if teacher_train is not None and len(rows) > 1:
        predictions = task.predictions(np.asarray(teacher_train)[rows])
        out["teacher_transfer_score"] = compute_metrics(task, predictions, train_ds.labels[rows])[task.metric]
    return out
