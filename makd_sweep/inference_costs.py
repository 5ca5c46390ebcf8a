"""`makd inference-cost CONFIG --csv FILE`: each task × student of a sweep config measured on this machine by
makd's fixed protocol (makd/inference_cost.py), apart from any trial, into a costs CSV that `makd leaderboard` and
`makd report` take with `--costs` (makd_sweep/report/costs.py).

It rebuilds the inference cost of committed results whose trials each timed themselves on a loaded machine: the
data, tokenizers, lengths, batch size, precision and padding are the config's, as the driver measures before trials.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd

from makd.files import atomic_write_bytes
from makd.pipeline import load_datasets
from makd.tasks import get_task
from makd_sweep.report.costs import COST_COLUMNS
from makd_sweep.sweep_config import SweepConfig
from makd_sweep.task_prep import data_source, encode_for_students, measure_students


def measure_sweep_costs(cfg: SweepConfig, cache_dir: str, device: str | None = None) -> pd.DataFrame:
    """One row per task × student (classification tasks: a causal-LM task has no inference cost), in COST_COLUMNS."""
    import torch

    when = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d}"
    rows = []
    for task in cfg.tasks:
        if get_task(task).is_causal_lm:
            continue
        train_ds, eval_sets = load_datasets(task, data_source(cfg, task), cfg.train)
        costs = measure_students(cfg, task, encode_for_students(cfg, train_ds, eval_sets), cache_dir, device)
        rows += [{"task": task, "student": student, "latency_ms": cost.latency_ms,
                  "inference_examples_per_s": cost.examples_per_s, "batch_size": cost.batch_size,
                  "hardware": cost.hardware, "torch": torch.__version__.split("+")[0], "measured_at": when}
                 for student, cost in costs.items()]
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def write_costs(frame: pd.DataFrame, path: str | Path) -> None:
    atomic_write_bytes(Path(path), frame.to_csv(index=False, float_format="%.6g").encode())
