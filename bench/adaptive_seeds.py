"""Adaptive seeds replayed on a finished fixed-seed final stage (issue 26): how many trials the stopping rule
(makd_sweep/report/sequential.py, as the driver runs it) would have spent, and whether the comparisons it stops on reach
the decisions that all the seeds reach.

    python -m bench.adaptive_seeds TRIALS_CSV [...] --min 3 --max 10 --tolerance 1.0

The replay is exact for a sweep whose final stage ran seeds 0 .. max-1 for every chosen setting: round r of the
rule sees the same trials the real round would have run (a seed's result does not depend on which others ran). A
decision is "0 excluded, with its sign" or "not excluded"; the fixed stage's is read from its uncorrected 95%
interval over every seed, the adaptive one's from the corrected interval it stopped on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from makd.errors import OneLineParser, UsageError
from makd_sweep.report.sequential import (
    SETTING_KEY,
    Comparison,
    compare_settings,
    planned_looks,
    undecided_settings,
)
from makd_sweep.report.trials import read_trials_csv


@dataclass(frozen=True)
class Replay:
    sweep: str
    task: str
    settings: int
    fixed_trials: int  # settings × max
    adaptive_trials: int
    comparisons: int
    same_decisions: int
    undecided_at_max: int


def _decision(comparison: Comparison) -> int:
    """+1 / -1: the interval excludes 0 above / below; 0: it does not."""
    return 1 if comparison.look.low > 0 else -1 if comparison.look.high < 0 else 0


def replay_task(final: pd.DataFrame, min_seeds: int, max_seeds: int, step: int, tolerance: float,
                sweep: str = "") -> Replay:
    """The rule's rounds on one task's finished final-stage trials (SETTING_KEY, seed, dev_score)."""
    plan = planned_looks(min_seeds, max_seeds, step)
    final = final[final["seed"] < max_seeds]
    keys = final[SETTING_KEY].drop_duplicates().apply(tuple, axis=1).tolist()
    missing = [k for k in keys if set(final.loc[(final[SETTING_KEY].apply(tuple, axis=1) == k), "seed"])
               != set(range(max_seeds))]
    if missing:
        raise UsageError("--max", f"setting {missing[0]} did not run every seed 0..{max_seeds - 1}")
    seeds = dict.fromkeys(keys, plan[0])
    for index in range(1, len(plan) + 1):
        seen = final[[row.seed < seeds[tuple(row[k] for k in SETTING_KEY)] for _, row in final.iterrows()]]
        comparisons = compare_settings(seen, len(plan), tolerance=tolerance, final=index == len(plan))
        open_settings = undecided_settings(comparisons)
        if index == len(plan) or not open_settings:
            break
        for key in open_settings:
            seeds[key] = plan[index]
    fixed = {(c.method, c.baseline): c for c in compare_settings(final, 1, tolerance=0.0, final=True)}
    same = sum(_decision(c) == _decision(fixed[(c.method, c.baseline)]) for c in comparisons)
    return Replay(sweep, str(final["task"].iloc[0]), len(keys), len(keys) * max_seeds, sum(seeds.values()),
                  len(comparisons), same, sum(not c.look.decided for c in comparisons))


def markdown(replays: list[Replay]) -> str:
    lines = ["| sweep | task | settings | trials, fixed | trials, adaptive | saved | comparisons | same decisions | "
             "undecided at max |", "|---|---|---|---|---|---|---|---|---|"]
    for r in replays:
        saved = 100 * (1 - r.adaptive_trials / r.fixed_trials)
        lines.append(f"| {r.sweep} | {r.task} | {r.settings} | {r.fixed_trials} | {r.adaptive_trials} | {saved:.0f}% | "
                     f"{r.comparisons} | {r.same_decisions} | {r.undecided_at_max} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m bench.adaptive_seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("trials", nargs="+", help="trials CSVs of finished sweeps with a fixed-seed final stage")
    parser.add_argument("--min", type=int, default=3, dest="min_seeds")
    parser.add_argument("--max", type=int, default=10, dest="max_seeds")
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1.0, help="points (×100), as final.tolerance")
    try:
        args = parser.parse_args(argv)
        if not 2 <= args.min_seeds <= args.max_seeds:
            raise UsageError("--min", f"need 2 <= min ({args.min_seeds}) <= max ({args.max_seeds})")
        replays = []
        for path in args.trials:  # one sweep at a time: two sweeps' settings may coincide (ce)
            frame = read_trials_csv(path)
            final = frame[(frame["stage"] == "final") & (frame["status"] == "TERMINATED")]
            if final.empty:
                raise UsageError(path, "has no finished final-stage trials")
            replays += [replay_task(group, args.min_seeds, args.max_seeds, args.step, args.tolerance, Path(path).stem)
                        for _, group in final.groupby("task", sort=True)]
    except UsageError as err:
        print(f"makd: error: {err}", file=sys.stderr)
        return 2
    print(markdown(replays), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
