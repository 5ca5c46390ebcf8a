"""Paired differences: a method against a baseline, seed by seed, with a Student-t confidence interval.

Two methods trained with the same seed share the student's initialisation, the batch order and the dropout draws,
so the difference of their scores at one seed removes most of the seed-to-seed noise. With n paired seeds the
interval is mean ± t(0.975, n − 1) · sd / √n (scipy.stats); one pair gives no interval. When every paired score is
exactly equal (taylor vs ce at τ = 1 trains bit-identical students) the difference is `identical` and its
interval is [0, 0].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean over the paired seeds of (method − reference)
    ci_low: float  # NaN with fewer than two pairs
    ci_high: float
    pairs: int
    identical: bool  # every paired score exactly equal

    @property
    def contains_zero(self) -> bool:
        """The interval does not exclude 0 (or there is none): not a difference the seeds can tell apart."""
        return self.identical or math.isnan(self.ci_low) or self.ci_low <= 0.0 <= self.ci_high

    def describe(self, scale: float = 100.0) -> str:
        """'+1.2 [-0.5, +2.9]' (×scale), 'identical', or '+1.2 (1 seed, no CI)'."""
        def signed(value: float) -> str:
            text = f"{value * scale:+.1f}"
            return "+0.0" if text == "-0.0" else text

        if self.pairs == 0:
            return "–"
        if self.identical:
            return "identical"
        if math.isnan(self.ci_low):
            return f"{signed(self.mean)} (1 seed, no CI)"
        return f"{signed(self.mean)} [{signed(self.ci_low)}, {signed(self.ci_high)}]"


NO_PAIRS = PairedDifference(math.nan, math.nan, math.nan, 0, False)


def paired_difference(method: pd.Series, reference: pd.Series) -> PairedDifference:
    """`method` and `reference`: a score per seed (the index). Seeds only one side has are left out."""
    seeds = method.index.intersection(reference.index)
    if len(seeds) == 0:
        return NO_PAIRS
    a, b = method.loc[seeds].to_numpy(float), reference.loc[seeds].to_numpy(float)
    diff = a - b
    mean, n = float(diff.mean()), len(diff)
    if np.array_equal(a, b):
        return PairedDifference(0.0, 0.0, 0.0, n, True)
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n, False)
    sem = float(diff.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return PairedDifference(mean, mean, mean, n, False)
    low, high = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
    return PairedDifference(mean, float(low), float(high), n, False)
