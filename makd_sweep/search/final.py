"""The final stage: each (student, loss)'s best search settings, rerun for every final seed to the full epoch budget
with no early stopping, so that methods are compared at the same budget over the same seeds.

The search stage (grid or Optuna, with ASHA) only ranks settings; a setting's selection score is its mean
`best_score` over the seeds it ran. The CE baseline (λ = 1) always has a final stage too. Under PBT a trial's setting
changed while it ran: the final stage replays the best trial's schedule (makd_sweep/schedule.py) for every seed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from makd.config import CHANGEABLE_SETTINGS
from makd_sweep import schedule
from makd_sweep.experiment_dir import FINISHED, SEARCHED_OPTIONS
from makd_sweep.report.order import temperature_free
from makd_sweep.report.rank import MAX_TAU_ROWS, rank_settings, scheduled
from makd_sweep.report.sequential import SETTING_KEY, compare_settings, planned_looks, undecided_settings
from makd_sweep.search.grid import PointsSearch
from makd_sweep.search_space import config_value

if TYPE_CHECKING:
    from makd_sweep.sweep_config import SweepConfig

SETTING = ["lam", "tau", "lr"]


def seed_rounds(cfg: SweepConfig) -> list[int]:
    """How many seeds the final stage has run after each round: [len(seeds)], or the adaptive plan's looks."""
    final = cfg.final
    if final is None:
        return []
    if final.adaptive is None:
        return [len(final.seeds)]
    return planned_looks(final.adaptive.min, final.adaptive.max, final.adaptive.step)


def final_points(cfg: SweepConfig, search_rows: list[dict]) -> list[dict]:
    """The final stage's trials for one task, from its search stage's rows (makd_sweep.report.trials.trial_row).

    Per (student, method): the `top_k` settings (λ, τ, lr) by mean best_score over the seeds that ran them, ranked
    by the leaderboard's rule (makd_sweep.report.rank.rank_settings), each once per final seed. A method is the loss, or
    with a few listed τ values (at most MAX_TAU_ROWS) the loss at each τ, as the paper table's rows ("vanilla
    τ=2"): at τ ≠ 1 taylor is tempered CE, a different method from taylor at τ = 1. Deterministic, so a resumed
    driver rebuilds the same list.
    """
    frame = pd.DataFrame(search_rows)
    if frame.empty or cfg.final is None:
        return []
    rounds = seed_rounds(cfg)
    first_round = cfg.final.seeds[:rounds[0]]
    # an adaptive stage's trials carry its plan: the leaderboard corrects their intervals for the looks
    adaptive = {"looks": len(rounds), "tolerance": cfg.final.tolerance} if cfg.final.adaptive else {}
    done = frame[frame["status"].isin(FINISHED) & frame["best_score"].notna()]
    # a setting is λ, τ, lr and every training option the sweep searched (each rerun with the value that won); under
    # PBT, the schedule a trial trained (its setting from each epoch on) and the searched keys PBT does not perturb
    replay = scheduled(done)
    searched_options = [key for key in SEARCHED_OPTIONS if key in cfg.searched_keys]
    setting = ([schedule.METRIC, *(key for key in searched_options if key not in CHANGEABLE_SETTINGS)] if replay
               else SETTING + searched_options)
    points = []
    for student in cfg.students:
        for loss in cfg.losses:
            mine = done[(done["student"] == student) & (done["loss"] == loss)]
            if mine.empty:
                continue
            taus = sorted(mine["tau"].dropna().unique())
            methods = ([mine[mine["tau"] == tau] for tau in taus]
                       if loss not in temperature_free() and 1 < len(taus) <= MAX_TAU_ROWS
                       and "tau" not in cfg.searched_keys else [mine])  # a searched τ is part of the setting
            for method in methods:
                ranked = rank_settings(method.groupby(setting)["best_score"].mean().reset_index(), "best_score",
                                       setting)
                for _, best in ranked.head(cfg.final.top_k).iterrows():
                    if replay:  # the row's keys, the ones PBT perturbed as the schedule starts
                        row = method[method[schedule.METRIC] == best[schedule.METRIC]].iloc[0]
                        first = {k: v for k, v in json.loads(best[schedule.METRIC])[0].items() if k != "from_epoch"}
                        best = pd.Series({**row[SETTING + searched_options].to_dict(), **first,
                                          schedule.PARAM: best[schedule.METRIC]})
                    searched = {key: config_value(key, best[key]) for key in searched_options}
                    replayed = {schedule.PARAM: best[schedule.PARAM]} if replay else {}
                    points += [{"student": student, "loss": loss, "lam": float(best["lam"]), "tau": float(best["tau"]),
                               "seed": int(seed), "lr": float(best["lr"]), **searched, **replayed, "stage": "final",
                               **adaptive}
                              for seed in first_round]
    return points


def next_round_points(cfg: SweepConfig, first_round: list[dict], final_rows: list[dict], round_index: int
                      ) -> list[dict]:
    """Adaptive seeds: the next round's trials, from the rows of every round so far. Only the settings of a
    comparison still undecided (makd_sweep/report/sequential.py: its corrected interval contains 0 and is wider than
    `final.tolerance`) get the next seeds; none once every comparison is decided."""
    plan = seed_rounds(cfg)
    frame = pd.DataFrame(final_rows)
    if frame.empty:
        return []
    done = frame[frame["status"].isin(FINISHED)]
    comparisons = compare_settings(done, len(plan), tolerance=cfg.final.tolerance, final=False)
    open_settings = undecided_settings(comparisons)
    settings = {tuple(p[k] for k in SETTING_KEY): p for p in first_round if p["seed"] == first_round[0]["seed"]}
    return [{**settings[key], "seed": seed} for key in sorted(open_settings, key=str) if key in settings
            for seed in range(plan[round_index - 1], plan[round_index])]


class FinalStage(PointsSearch):
    """Not a `search.kind`: the driver builds one per task from the search stage's results."""

    name = "final"

    def __init__(self, points: list[dict]):
        self.chosen = points

    def points(self, cfg: SweepConfig) -> list[dict]:
        return self.chosen

    def packs(self, cfg: SweepConfig) -> bool:
        # the final stage never stops a trial early; a replayed PBT schedule restarts its trial at each change
        return cfg.pack.on and not any(schedule.PARAM in point for point in self.chosen)

    def may_use_teacher(self, cfg: SweepConfig) -> bool:
        return any(point["lam"] < 1 for point in self.chosen)
