"""A report from any mix of experiment dirs and trials CSVs: the trials, the leaderboard, the paper-style table.

Inputs are merged; a trial given twice (same task and trial_id), or the same run configuration in two sweeps (the
CE baseline every sweep adds), counts once. Only finished trials (TERMINATED or STOPPED) enter the tables; the
others are counted in `Report.unfinished`. Pure pandas and matplotlib: Ray is never imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from makd.errors import UsageError
from makd_sweep.report.costs import apply_costs, read_costs
from makd_sweep.report.paper import paper_table
from makd_sweep.report.rank import leaderboard_table
from makd_sweep.report.trials import (
    FINISHED,
    drop_duplicate_trials,
    fill_parameter_counts,
    read_trials,
    trials_frame,
)


@dataclass
class Report:
    """What `build` returns. Every table holds finished trials only."""

    trials: pd.DataFrame  # one row per finished trial: TRIAL_COLUMNS, then source, then glue_* / best_glue_*
    leaderboard: pd.DataFrame  # one row per task × student × loss: rank.LEADERBOARD_COLUMNS
    paper_table_markdown: str  # Table 2 layout of the paper
    unfinished: int = 0  # trials seen but not TERMINATED/STOPPED (RUNNING, NOT_STARTED, ERROR)
    unfinished_by_status: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # one line per input: path and how it was read
    stage: str = "search"  # which stage's trials the tables hold: final (when there is one) or search
    stages: dict[str, int] = field(default_factory=dict)  # finished trials per stage in the inputs
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["task", "trial_id", "error"]))
    search_trials: pd.DataFrame | None = None  # with a final stage: the search's finished trials (the λ curves)


STAGES = ("final", "search")


def build(paths: Iterable[str | os.PathLike], stage: str | None = None, *, rows: pd.DataFrame | None = None,
          costs: str | os.PathLike | None = None) -> Report:
    """Read and merge experiment dirs and trials CSVs; UsageError names the first bad path.

    The tables hold one stage's trials: `stage`, or by default the final stage when the inputs have one (every
    method at the full budget over the same seeds), else the search stage. `rows`: the trials of the one path,
    already in hand (the driver's own rows at the end of a sweep), taken as they are instead of read back.
    `costs`: a `makd inference-cost` CSV whose re-measured numbers replace the trials' own (makd_sweep/report/costs.py)."""
    if stage is not None and stage not in STAGES:
        raise UsageError("stage", f"expected final or search, got {stage!r}")
    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError("leaderboard", "give at least one experiment dir or trials CSV")
    if rows is not None and len(paths) != 1:
        raise ValueError("rows are the trials of one experiment dir")
    frames, sources = [], []
    for path in paths:
        frame, how = (rows, f"{path}: the sweep's own trial rows") if rows is not None else read_trials(path)
        status = frame["status"].fillna("NOT_STARTED")
        if not status.isin(FINISHED).any():
            counts = ", ".join(f"{n} {s}" for s, n in status.value_counts().items())
            raise UsageError(path, f"no finished trials yet ({counts or 'no trials'})")
        frames.append(frame.assign(source=path))
        sources.append(how)
    merged = pd.concat(frames, ignore_index=True)
    merged = fill_parameter_counts(drop_duplicate_trials(trials_frame(merged)))
    merged = apply_costs(merged, read_costs(costs) if costs is not None else None)
    finished_mask = merged["status"].isin(FINISHED).fillna(False).astype(bool)
    rest = merged.loc[~finished_mask, "status"].fillna("NOT_STARTED")
    finished = merged[finished_mask]
    stages = {str(k): int(v) for k, v in finished["stage"].value_counts().items()}
    chosen = stage or ("final" if stages.get("final") else "search")
    if not stages.get(chosen):
        raise UsageError("stage", f"no finished {chosen}-stage trials in the input (finished: "
                                  f"{', '.join(f'{n} {s}' for s, n in stages.items())})")
    trials = finished[finished["stage"] == chosen].reset_index(drop=True)
    return Report(trials=trials, leaderboard=leaderboard_table(trials), paper_table_markdown=paper_table(trials, chosen),
                  stage=chosen, stages=stages,
                  unfinished=int(len(rest)), unfinished_by_status={str(k): int(v) for k, v in
                                                                   rest.value_counts().items()},
                  sources=sources, failed=merged.loc[merged["status"] == "ERROR", ["task", "trial_id", "error"]],
                  search_trials=finished[finished["stage"] == "search"].reset_index(drop=True)
                  if chosen == "final" else None)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()
