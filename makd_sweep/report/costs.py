"""Inference costs measured again, apart from the trials (`makd inference-cost`): one number per task × student on
one named machine, which a leaderboard or report uses instead of the trials' own (`--costs FILE`).

Why: older trials each measured their own latency on a loaded machine, so one architecture read 3 to 10 ms; a table
rebuilt from them can only take their median. A costs file re-measures each architecture by makd's fixed protocol
(makd/inference_cost.py) and says where: the rebuilt tables name that machine in `cost_measured_on`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from makd.errors import UsageError

COST_COLUMNS = ["task", "student", "latency_ms", "inference_examples_per_s", "batch_size", "hardware", "torch",
                "measured_at"]
REPLACED = ("latency_ms", "inference_examples_per_s")  # the trial columns a costs file stands in for


def read_costs(path: str | Path) -> pd.DataFrame:
    """A costs CSV written by `makd inference-cost`; UsageError names the file and what is wrong."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UsageError(str(path), f"not a readable costs CSV ({type(err).__name__})") from None
    missing = [c for c in COST_COLUMNS if c not in frame]
    if missing:
        raise UsageError(str(path), f"missing column(s) {', '.join(missing)}: not written by makd inference-cost")
    if frame.duplicated(["task", "student"]).any():
        raise UsageError(str(path), "a task x student appears twice")
    return frame


def measured_on(row: pd.Series) -> str:
    """'<hardware>, torch <version>, <date>': where and when a costs file's number was measured."""
    return f"{row['hardware']}, torch {row['torch']}, {row['measured_at']}"


def apply_costs(trials: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """`trials` with each task × student's inference cost taken from `costs` where it has one (cost_measured_on
    names the machine), and the trials' own numbers, unchanged, elsewhere (cost_measured_on empty)."""
    trials = trials.copy()
    trials["cost_measured_on"] = None
    if costs is None or trials.empty:
        return trials
    keyed = costs.assign(cost_measured_on=costs.apply(measured_on, axis=1)).set_index(["task", "student"])
    index = pd.MultiIndex.from_frame(trials[["task", "student"]])
    found = index.isin(keyed.index)
    if found.any():
        rows = keyed.loc[index[found]]
        for column in (*REPLACED, "cost_measured_on"):
            trials.loc[found, column] = rows[column].to_numpy()
    return trials
