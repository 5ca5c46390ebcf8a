"""Paired differences: a method against a baseline, seed by seed, with a Student-t confidence interval, and what
equal scores mean.

Two methods trained with the same seed share the student's initialisation, the batch order and the dropout draws,
so the difference of their scores at one seed removes most of the seed-to-seed noise. With n paired seeds the
interval is mean ± t(0.975, n − 1) · sd / √n (scipy.stats); one pair gives no interval.

Equal scores at every paired seed are not identity (two different students that both predict "paraphrase" for every
MRPC pair tie on F1), so such a pair is told apart by the trials' fingerprints (makd/fingerprints.py):
`identical` (the weights' fingerprints are equal at every paired seed: taylor at τ = 1 and ce train bit-identical
students; a baseline run by several sweeps is equal when one of its copies is), `same predictions` (different
weights, the same dev predictions at every seed), `tie` (different predictions, equal scores), or `unknown` (equal
scores from trials recorded without fingerprints: older CSVs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from makd.fingerprints import FINGERPRINT_COLUMNS

CONFIDENCE = 0.95


IDENTICAL, SAME_PREDICTIONS, TIE, UNKNOWN = "identical", "same predictions", "tie", "unknown"
AGREEMENT_ORDER = (IDENTICAL, SAME_PREDICTIONS, TIE, UNKNOWN)  # strongest first
# Scores of one student scored on two CPUs: measured up to 2e-8 apart (results/glue-teachers, STS-B's Pearson)
SAME_STUDENT_ATOL = 1e-6


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean over the paired seeds of (method − reference)
    ci_low: float  # NaN with fewer than two pairs
    ci_high: float
    pairs: int
    agreement: str = ""  # equal scores at every paired seed: IDENTICAL, SAME_PREDICTIONS, TIE or UNKNOWN; else ""

    @property
    def identical(self) -> bool:
        """The same student at every paired seed (equal weight fingerprints), never inferred from scores."""
        return self.agreement == IDENTICAL

    @property
    def contains_zero(self) -> bool:
        """The interval does not exclude 0 (or there is none): not a difference the seeds can tell apart."""
        return bool(self.agreement) or math.isnan(self.ci_low) or self.ci_low <= 0.0 <= self.ci_high

    def describe(self, scale: float = 100.0) -> str:
        """'+1.2 [-0.5, +2.9]' (×scale), 'identical', '+0.0 (same predictions)', '+0.0 (tie)',
        '+0.0 (equal scores; identity unknown)', or '+1.2 (1 seed, no CI)'."""
        def signed(value: float) -> str:
            text = f"{value * scale:+.1f}"
            return "+0.0" if text == "-0.0" else text

        if self.pairs == 0:
            return "–"
        if self.identical:
            return "identical"
        if self.agreement:
            what = {UNKNOWN: "equal scores; identity unknown"}.get(self.agreement, self.agreement)
            return f"+0.0 ({what})"
        if math.isnan(self.ci_low):
            return f"{signed(self.mean)} (1 seed, no CI)"
        return f"{signed(self.mean)} [{signed(self.ci_low)}, {signed(self.ci_high)}]"


NO_PAIRS = PairedDifference(math.nan, math.nan, math.nan, 0)


def _by_seed(values: pd.Series | pd.DataFrame) -> pd.DataFrame:
    """A per-seed frame with dev_score and the fingerprint columns (missing ones empty)."""
    frame = values.to_frame("dev_score") if isinstance(values, pd.Series) else values.copy()
    for column in FINGERPRINT_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def agreement(method: pd.DataFrame, reference: pd.DataFrame) -> str:
    """What equal paired scores mean, from the fingerprints of the paired seeds (rows aligned by seed)."""
    def equal(column: str) -> bool | None:
        a, b = method[column], reference[column]
        if a.isna().any() or b.isna().any():
            return None
        # a run recorded by several sweeps carries each copy's fingerprint (makd_sweep/report/trials.pool_fingerprints)
        return all(set(x.split()) & set(y.split()) for x, y in zip(a.astype(str), b.astype(str), strict=True))

    weights = equal("weights_fingerprint")
    if weights is None:
        return UNKNOWN
    if weights:
        return IDENTICAL
    return SAME_PREDICTIONS if equal("predictions_fingerprint") else TIE


def paired_difference(method: pd.Series | pd.DataFrame, reference: pd.Series | pd.DataFrame, *,
                      looks: int = 1) -> PairedDifference:
    """`method` and `reference`: a dev score per seed (the index), as a Series or as a frame with `dev_score` and
    the fingerprint columns (a Series has none: equal scores are then UNKNOWN). Seeds only one side has are left out.
    `looks`: how many times an adaptive final stage could look at this comparison (its interval is corrected for
    them: makd_sweep/report/sequential.py)."""
    method, reference = _by_seed(method), _by_seed(reference)
    seeds = method.index.intersection(reference.index)
    if len(seeds) == 0:
        return NO_PAIRS
    mine, theirs = method.loc[seeds], reference.loc[seeds]
    a, b = mine["dev_score"].to_numpy(float), theirs["dev_score"].to_numpy(float)
    diff, n = a - b, len(a)
    if np.array_equal(a, b):
        return PairedDifference(0.0, 0.0, 0.0, n, agreement(mine, theirs))
    # Equal weights are one student: a difference of 0, even where the baseline's score is another copy's, trained
    # on another CPU, whose float predictions (a regression's) differ in the last bits (pool_fingerprints); scores
    # further apart than that are a difference, whatever the fingerprints say.
    if np.allclose(a, b, rtol=0.0, atol=SAME_STUDENT_ATOL) and agreement(mine, theirs) == IDENTICAL:
        return PairedDifference(0.0, 0.0, 0.0, n, IDENTICAL)
    return PairedDifference(*mean_interval(diff, looks=looks), n)


def mean_interval(values: np.ndarray, *, looks: int = 1, alpha: float = 1 - CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the 95% (1 − alpha) Student-t interval of the mean over seeds; low and high NaN for one
    value. With `looks` > 1 the interval is at confidence 1 − alpha/looks (Bonferroni over an adaptive stage's
    looks: makd_sweep/report/sequential.py)."""
    values = np.asarray(values, dtype=float)
    mean, n = float(values.mean()), len(values)
    if n < 2:
        return mean, math.nan, math.nan
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(1 - alpha / looks, n - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def reaches_baseline(scores: pd.Series, baseline: float) -> bool | None:
    """A cell's scores over seeds are not above `baseline` at 95% confidence: the interval of their mean reaches
    it (one seed: the score is at or below it). None when the baseline is unknown or there are no scores."""
    scores = scores.dropna()
    if baseline is None or pd.isna(baseline) or scores.empty:
        return None
    mean, low, _ = mean_interval(scores.to_numpy(float))
    return bool((mean if math.isnan(low) else low) <= baseline + 1e-12)
