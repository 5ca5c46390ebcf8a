"""The sweep service from Python: `from makd_sweep.api import sweep` runs (or resumes) a sweep in this process, as `makd
sweep` does, and hands back its trials, leaderboard and experiment dir as DataFrames and a path (issue 45).

    from makd_sweep.api import sweep
    result = sweep("configs/quickstart.yaml", overrides={"name": "from-python", "seeds": [0, 1]})
    result.leaderboard[["task", "student", "loss", "dev_score_mean", "delta_vs_ce"]]

A notebook's own `ray.init()` is used as it is; otherwise the sweep starts a local Ray on 127.0.0.1 and stops it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from makd_sweep.config import load_config, parse_config, with_overrides
from makd_sweep.driver import run_sweep
from makd_sweep.outcome import SweepOutcome


@dataclass(frozen=True)
class SweepResult:
    experiment_dir: str  # <storage>/<name>: trials.csv, leaderboard.csv, report.html, Ray's trial folders
    trials: pd.DataFrame  # every trial of every stage (makd_sweep.report.trials.TRIAL_COLUMNS)
    leaderboard: pd.DataFrame  # one row per task x student x method (empty until a trial finished; remote storage:
    # read it with `makd leaderboard <uri>`)
    paper_table: str  # the paper-style Markdown table ('' when there is no leaderboard)
    wall_seconds: float
    outcome: SweepOutcome  # everything the console summary is printed from

    @property
    def failed(self) -> pd.DataFrame:
        return self.outcome.failed


def sweep(config: str | os.PathLike | Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None,
          resume: bool = False, address: str | None = None, cache_dir: str | None = None, quiet: bool = True,
          num_cpus: int | None = None, num_gpus: float | None = None) -> SweepResult:
    """Run the sweep a YAML file or a dict describes (`overrides` replace its top-level keys first, as `makd sweep`'s
    --name / --storage / --glue-dir do); bad input raises makd.errors.UsageError naming the key before Ray starts."""
    if isinstance(config, Mapping):
        cfg = parse_config(with_overrides(dict(config), overrides), source="sweep()")
    else:
        cfg = load_config(Path(config), dict(overrides or {}))
    outcome = run_sweep(cfg, resume=resume, address=address, cache_dir=cache_dir, quiet=quiet, num_cpus=num_cpus,
                        num_gpus=num_gpus)
    report = outcome.report
    return SweepResult(experiment_dir=outcome.root, trials=outcome.trials,
                       leaderboard=report.leaderboard if report is not None else pd.DataFrame(),
                       paper_table=report.paper_table_markdown if report is not None else "",
                       wall_seconds=outcome.wall_seconds, outcome=outcome)
