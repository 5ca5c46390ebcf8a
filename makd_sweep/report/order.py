"""Display order and labels of the report's tables and plots, read from the library's registries.

Tasks follow the paper's Table 2 (makd.tasks `paper_order`), losses their declared `order` (makd.losses), students
their size. A task or loss no longer registered (an old CSV) goes last, under its own name.
"""

from __future__ import annotations

import math

import pandas as pd

from makd.losses import LOSSES
from makd.tasks import METRIC_LABELS, TASKS

CAUSAL_LM_METRIC = "agreement"  # the main metric of every causal-LM task (makd/lm/train.py), and of no other


def task_rank(task: str) -> tuple[float, str]:
    return (TASKS[task].paper_order if task in TASKS else math.inf, str(task))


def base_loss(method: str) -> str:
    """The loss a method label is built on: "vanilla τ=2" and "taylor, fine-tuned teacher" -> vanilla, taylor."""
    return str(method).split(" ")[0].rstrip(",")


def loss_rank(method: str) -> tuple[float, str]:
    """A loss or a method label built on one ("vanilla τ=2", "taylor, fine-tuned teacher")."""
    base = base_loss(method)
    return (LOSSES[base].order if base in LOSSES else 10**6, str(method))


def temperature_free() -> list[str]:
    """Losses whose value ignores τ: their rows are at τ = 1."""
    return [name for name, spec in LOSSES.items() if not spec.uses_tau]


def student_order(trials: pd.DataFrame) -> list[str]:
    """Smallest student first (by parameter count; unknown counts last)."""
    params = trials.groupby("student", dropna=True)["student_parameters_m"].max()
    return sorted(params.index, key=lambda s: (math.inf if pd.isna(params[s]) else params[s], str(s)))


def task_name(task: str) -> str:
    """What tables call a task: the registry's name ('SST-2 LM'), else the name a user's task from files was given."""
    spec = TASKS.get(task)
    return spec.display_name if spec is not None else str(task)


def is_causal_lm(task: str, metric: str | None) -> bool:
    """Is this a causal-LM task? The registry says so for built-in tasks; a user's task from files is registered only
    in the sweep that ran it, so a report read back from its trials CSV knows it by the metric its trials report
    (top-1 agreement with the teacher, which only causal-LM tasks use)."""
    spec = TASKS.get(task)
    return spec.is_causal_lm if spec is not None else metric == CAUSAL_LM_METRIC


def task_header(task: str, metric: str | None) -> str:
    """A task's column: the registry's header for the task's own metric ('MNLI-m/mm (Acc)'), else its name and
    the metric its trials report."""
    spec = TASKS.get(task)
    if spec is not None and metric in (None, spec.metric):
        return spec.column_header
    name = task_name(task)
    return f"{name} ({METRIC_LABELS.get(metric, metric)})" if metric else name


def split_metrics(task: str) -> tuple[str, ...]:
    """The metrics one table cell shows, main first (MNLI: matched, then mismatched accuracy)."""
    return TASKS[task].split_metrics if task in TASKS else ()
