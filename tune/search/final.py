"""The final stage: each (student, loss)'s best search settings, rerun for every final seed to the full epoch budget
with no early stopping, so that methods are compared at the same budget over the same seeds.

The search stage (grid or Optuna, with ASHA) only ranks settings; a setting's selection score is its mean
`best_score` over the seeds it ran. The CE baseline (λ = 1) always has a final stage too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from makd.config import option
from tune.report.order import temperature_free
from tune.report.rank import MAX_TAU_ROWS, rank_settings
from tune.search.grid import PointsSearch
from tune.trial import FINISHED

if TYPE_CHECKING:
    from tune.config import SweepConfig

FINAL_DIR_SUFFIX = "-final"  # a task's final-stage Tuner lives in <experiment>/<task>-final
SETTING = ["lam", "tau", "lr"]


@dataclass(frozen=True)
class FinalConfig:
    """The `final:` section: which seeds every chosen setting reruns with, and how many settings per cell."""

    seeds: tuple[int, ...] = option(None, "seeds every chosen setting reruns with", low=0, required=True,
                                    default_text="the sweep's seeds")
    top_k: int = option(1, "settings per (student, method) carried from the search, ranked by selection score",
                        low=1)


def final_cells(cfg: SweepConfig, search_rows: list[dict]) -> list[dict]:
    """The final stage's trials for one task, from its search stage's rows (tune.report.trials.trial_row).

    Per (student, method): the `top_k` settings (λ, τ, lr) by mean best_score over the seeds that ran them, ranked
    by the leaderboard's rule (tune.report.rank.rank_settings), each once per final seed. A method is the loss, or
    with a few listed τ values (at most MAX_TAU_ROWS) the loss at each τ, as the paper table's rows ("vanilla
    τ=2"): at τ ≠ 1 taylor is tempered CE, a different method from taylor at τ = 1. Deterministic, so a resumed
    driver rebuilds the same list.
    """
    frame = pd.DataFrame(search_rows)
    if frame.empty or cfg.final is None:
        return []
    done = frame[frame["status"].isin(FINISHED) & frame["best_score"].notna()]
    cells = []
    for student in cfg.students:
        for loss in cfg.losses:
            mine = done[(done["student"] == student) & (done["loss"] == loss)]
            if mine.empty:
                continue
            taus = sorted(mine["tau"].dropna().unique())
            methods = ([mine[mine["tau"] == tau] for tau in taus]
                       if loss not in temperature_free() and 1 < len(taus) <= MAX_TAU_ROWS else [mine])
            for method in methods:
                ranked = rank_settings(method.groupby(SETTING)["best_score"].mean().reset_index(), "best_score",
                                       SETTING)
                for _, best in ranked.head(cfg.final.top_k).iterrows():
                    cells += [{"student": student, "loss": loss, "lam": float(best["lam"]), "tau": float(best["tau"]),
                               "seed": int(seed), "lr": float(best["lr"]), "stage": "final"}
                              for seed in cfg.final.seeds]
    return cells


class FinalStage(PointsSearch):
    """Not a `search.kind`: the driver builds one per task from the search stage's results."""

    name = "final"

    def __init__(self, cells: list[dict]):
        self.cells = cells

    def points(self, cfg: SweepConfig) -> list[dict]:
        return self.cells

    def packs(self, cfg: SweepConfig) -> bool:
        return cfg.pack.on  # the final stage never stops a trial early

    def may_use_teacher(self, cfg: SweepConfig) -> bool:
        return any(cell["lam"] < 1 for cell in self.cells)
