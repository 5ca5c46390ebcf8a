"""Adding seeds until a comparison is decided (issue 26), without fooling oneself: a paired difference looked at
after every round of seeds needs a wider interval than one looked at once, or "keep adding seeds until the CI
excludes 0" finds differences that are not there.

The correction is Bonferroni over the looks a race may take: with at most R looks, each look's interval is a
Student-t interval at confidence 1 − α/R. The chance that any look's interval misses the true difference is then at
most R · α/R = α, whatever the stopping rule, so the interval a race stops on covers the truth with probability
≥ 1 − α (conservative; tests/test_sequential.py measures it by simulation, and shows the uncorrected rule failing)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from makd_sweep.report.paired import mean_interval

ALPHA = 0.05


def planned_looks(min_seeds: int, max_seeds: int, step: int = 1) -> list[int]:
    """The seed counts a race looks at: min, min + step, ..., max (the last look is always max)."""
    if not 2 <= min_seeds <= max_seeds or step < 1:
        raise ValueError(f"need 2 <= min ({min_seeds}) <= max ({max_seeds}) and step >= 1 ({step})")
    looks = list(range(min_seeds, max_seeds, step))
    return looks + [max_seeds]


def corrected_interval(diffs: Sequence[float], looks: int, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences at confidence 1 − alpha/looks (the leaderboard's interval,
    makd_sweep.report.paired.mean_interval; unbounded for one difference)."""
    mean, low, high = mean_interval(np.asarray(diffs, dtype=float), looks=looks, alpha=alpha)
    return (mean, -math.inf, math.inf) if math.isnan(low) else (mean, low, high)


@dataclass(frozen=True)
class Look:
    n: int
    mean: float
    low: float
    high: float
    decided: bool  # the interval excludes 0, or is narrower than the tolerance (a difference too small to matter)
    reason: str  # "excludes 0" | "within tolerance" | "undecided" (more seeds needed) | "max seeds"


def look(diffs: Sequence[float], looks: int, *, tolerance: float = 0.0, final: bool = False,
         alpha: float = ALPHA) -> Look:
    """Whether a comparison is decided after these paired differences (one per seed)."""
    mean, low, high = corrected_interval(diffs, looks, alpha)
    reason = decision(low, high, tolerance)
    if reason:
        return Look(len(diffs), mean, low, high, True, reason)
    return Look(len(diffs), mean, low, high, False, "max seeds" if final else "undecided")


def decision(low: float, high: float, tolerance: float) -> str:
    """The rule itself, on an interval (the driver's rounds and the leaderboard's decided_vs_* both ask it):
    "excludes 0", "within tolerance" (no wider than `tolerance`), or "" (undecided)."""
    if low > 0 or high < 0:
        return "excludes 0"
    if high - low <= tolerance:
        return "within tolerance"
    return ""


def race(differences: Sequence[float], min_seeds: int, max_seeds: int, *, step: int = 1, tolerance: float = 0.0,
         alpha: float = ALPHA) -> Look:
    """Run the stopping rule on a stream of paired differences (seed 0, 1, ...): the look it stops on."""
    plan = planned_looks(min_seeds, max_seeds, step)
    for n in plan:
        result = look(differences[:n], len(plan), tolerance=tolerance, final=n == plan[-1], alpha=alpha)
        if result.decided or n == plan[-1]:
            return result
    raise AssertionError("unreachable: the last look always returns")


SETTING_KEY = ["student", "loss", "lam", "tau", "lr"]  # one chosen setting of a final stage (top_k 1: a method)


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of a final stage: a setting against a baseline's setting (ce, or vanilla), looked at."""

    method: tuple
    baseline: tuple
    look: Look


def compare_settings(finished: pd.DataFrame, looks: int, *, tolerance: float, final: bool,
                     baselines: tuple[str, ...] = ("ce", "vanilla")) -> list[Comparison]:
    """Every comparison the leaderboard makes in one task's final stage, from its finished trials (SETTING_KEY,
    seed, dev_score): each setting against the same student's ce setting, and each non-baseline one against its
    vanilla setting(s); differences in points (×100), intervals corrected for `looks`."""
    scores = {key: group.set_index("seed")["dev_score"].astype(float)
              for key, group in finished.dropna(subset=["dev_score"]).groupby(SETTING_KEY, dropna=False, sort=True)}
    out = []
    for key, mine in scores.items():
        for base, theirs in scores.items():
            if base[0] == key[0] and _compared(key[1], base[1], baselines):
                seeds = mine.index.intersection(theirs.index)
                diffs = ((mine[seeds] - theirs[seeds]) * 100).tolist()
                if diffs:
                    out.append(Comparison(key, base, look(diffs, looks, tolerance=tolerance, final=final)))
    return out


def _compared(loss: str, baseline_loss: str, baselines: tuple[str, ...]) -> bool:
    """ce is compared with every other loss, vanilla with every loss but the baselines (the leaderboard's pairs)."""
    ce, vanilla = baselines
    if baseline_loss == ce:
        return loss != ce
    return baseline_loss == vanilla and loss not in baselines


def undecided_settings(comparisons: list[Comparison]) -> set[tuple]:
    """The settings that take the next round's seeds: both sides of every comparison not decided yet."""
    return {side for c in comparisons if not c.look.decided for side in (c.method, c.baseline)}
