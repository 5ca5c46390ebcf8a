"""The one line every table and the report carry when a task has transfer data (makd/transfer.py): how many
examples had a label, which methods learned from the rest, and how good the teacher's labels on the rest were."""

from __future__ import annotations

import pandas as pd

from makd.losses import LOSSES
from makd_sweep.report.order import loss_rank, task_name, task_rank
from makd_sweep.report.rank import ALL_LABELS_SUFFIX, most_common


def transfer_note(trials: pd.DataFrame) -> str | None:
    """One sentence per task with transfer data; None when no task has any."""
    if "transfer_examples" not in trials or not (trials["transfer_examples"].fillna(0) > 0).any():
        return None
    said = []
    for task in sorted(trials.loc[trials["transfer_examples"].fillna(0) > 0, "task"].unique(), key=task_rank):
        rows = trials[(trials["task"] == task) & (trials["transfer_examples"].fillna(0) > 0)]
        labeled, transfer = int(most_common(rows["labeled_examples"])), int(most_common(rows["transfer_examples"]))
        losses = sorted(rows["loss"].dropna().unique(), key=loss_rank)
        needing = [loss for loss in losses if loss in LOSSES and LOSSES[loss].needs_label]
        learning = [loss for loss in losses if loss not in needing]
        teacher = rows["teacher_transfer_score"].dropna() if "teacher_transfer_score" in rows else rows.iloc[:0]
        text = (f"{task_name(task)}: {labeled:,} labeled training examples and {transfer:,} transfer examples (no "
                f"label for the student); {', '.join(needing) or 'no method'} (a label needed on every example) "
                f"train{'s' if len(needing) == 1 else ''} on the {labeled:,} labeled ones only, as many steps per "
                f"epoch as the others; {', '.join(learning) or 'no method'} also learn{'s' if len(learning) == 1 else ''}"
                " from the transfer examples, through the teacher")
        if not teacher.empty:
            text += f" (the teacher's own score on them: {100 * most_common(teacher):.1f})"
        if (trials["task"] == task).any() and (trials["transfer_examples"].fillna(0).eq(0)
                                               & trials["task"].eq(task)).any():
            text += f"; rows marked \"{ALL_LABELS_SUFFIX.lstrip(', ')}\" trained on every label: a reference"
        said.append(text)
    return "Transfer data (makd/transfer.py): " + ". ".join(said) + "."
