"""A finished (or stopped) sweep's outcome and what the console shows of it: the trials table, the leaderboard, the
paper-style table and the answer, and an exit code that says whether every trial finished."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pandas as pd

from makd.tasks import get_task
from makd_sweep.report.trials import summary_table
from makd_sweep.sweep_config import SweepConfig
from makd_sweep.trial import parameters_m


@dataclass
class SweepOutcome:
    root: str
    trials: pd.DataFrame
    cache: dict[str, dict] = field(default_factory=dict)
    wall_seconds: float = 0.0
    report: object = None  # makd_sweep.report.build.Report once any trial finished (local storage)

    @property
    def failed(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "ERROR"]

    @property
    def unfinished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "NOT_STARTED"]


def student_parameter_counts(cfg: SweepConfig, students: list[str]) -> dict[str, float]:
    """Built here only for students no trial reported (every trial reports its own): building one imports the
    model code, seconds of the driver's time."""
    from makd.lm.causal_lm import build_lm_student
    from makd.models import build_student, count_parameters

    counts = {}
    for spec in students:
        if get_task(cfg.tasks[0]).is_causal_lm:
            model, _ = build_lm_student(spec, family=cfg.train.teacher)
        else:
            model, _ = build_student(spec, get_task(cfg.tasks[0]).num_labels, tokenizer=cfg.train.student_tokenizer)
        counts[spec] = parameters_m(count_parameters(model))
    return counts


def print_outcome(outcome: SweepOutcome) -> int:
    """Print the results table; the exit code says whether every trial finished."""
    print(summary_table(outcome.trials))
    print(f"\n{len(outcome.trials)} trials in {outcome.wall_seconds:.1f} s; results: {outcome.root}/trials.csv")
    if outcome.report is not None:
        from makd_sweep.report.rank import leaderboard_text

        print(f"\nLeaderboard ({outcome.root}/leaderboard.csv, table.md, lambda.png):\n")
        print(leaderboard_text(outcome.report.leaderboard))
        print()
        print(outcome.report.paper_table_markdown, end="")
        from makd_sweep.report.verdict import verdict_lines

        answer = verdict_lines(outcome.report.leaderboard)
        if answer:
            print(f"\nAnswer ({outcome.root}/report.html has it with the figures):")
            print("\n".join(f"- {line}" for line in answer))
    problems = []
    if len(outcome.failed):
        problems.append(f"{len(outcome.failed)} trial(s) failed (see the error column of trials.csv)")
    if len(outcome.unfinished):
        problems.append(f"{len(outcome.unfinished)} trial(s) did not start: rerun with --resume")
    if problems:
        print("makd: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0
