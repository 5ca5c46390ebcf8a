"""The answer first: one sentence per task × student, written from the leaderboard's numbers.

What a user came for is "does distillation beat cross-entropy here, by how much, and can I trust it": the best
method against ce with its paired difference and CI (or "1 seed: no CI"), what taylor's equality with ce is (the
fingerprints' agreement), cells whose students predict one class for all of dev or are not above the task's
majority-class baseline, and the references themselves (that baseline, the teacher's own score). Nothing here is a
judgement the numbers do not carry: a CI that contains 0 reads "within seed noise".
"""

from __future__ import annotations

import math

import pandas as pd

from makd_sweep.report.order import loss_rank, task_header, task_rank
from makd_sweep.report.paired import IDENTICAL, SAME_PREDICTIONS, TIE, UNKNOWN
from makd_sweep.report.rank import FINE_TUNED_SUFFIX, known_true

AGREEMENT_WORDS = {IDENTICAL: "is ce's student at every seed (identical weights)",
                   SAME_PREDICTIONS: "makes ce's dev predictions at every seed (different weights)",
                   TIE: "ties ce's score at every seed (different predictions)",
                   UNKNOWN: "scores exactly ce's score at every seed (identity unknown: no fingerprints)"}


def _difference(row: pd.Series) -> str:
    """'+1.2 [-0.5, +2.9] vs ce over 3 seeds: within seed noise', or '+1.2 vs ce (1 seed: no CI)'."""
    pairs = int(row["pairs_vs_ce"] or 0)
    delta, low, high = (100 * row[c] for c in ("delta_vs_ce", "ci_low_vs_ce", "ci_high_vs_ce"))
    if pairs < 2 or math.isnan(low):
        return f"{delta:+.1f} vs ce ({pairs} seed: no CI)" if pairs else "no seed shared with ce"
    noise = "within seed noise" if low <= 0 <= high else "a difference at 95% confidence"
    return f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] vs ce over {pairs} seeds: {noise}"


def _listed(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _references(rows: pd.DataFrame) -> str:
    """' (majority class 52.7; teacher 47.3)': what the cell's scores are read against; '' without references."""
    said = []
    majority = rows["majority_score"].dropna() if "majority_score" in rows else pd.Series(dtype=float)
    if len(majority):
        said.append(f"majority class {100 * majority.iloc[0]:.1f}")
    teachers = rows.dropna(subset=["teacher_score"]) if "teacher_score" in rows else rows.iloc[:0]
    for _, row in teachers.drop_duplicates(["teacher", "teacher_score"]).iterrows():
        fine_tuned = "fine-tuned " if str(row["loss"]).endswith(FINE_TUNED_SUFFIX) else ""
        said.append(f"{fine_tuned}teacher {100 * row['teacher_score']:.1f}")
    return f" ({'; '.join(said)})" if said else ""


def verdict_lines(board: pd.DataFrame) -> list[str]:
    """One line per task × student of the leaderboard, in its order."""
    lines = []
    if board.empty:
        return lines
    keys = board[["task", "student"]].drop_duplicates()
    keys = keys.iloc[sorted(range(len(keys)), key=lambda i: task_rank(keys.iloc[i]["task"]))]
    for _, key in keys.iterrows():
        rows = board[(board["task"] == key["task"]) & (board["student"] == key["student"])]
        rows = rows.iloc[sorted(range(len(rows)), key=lambda i: loss_rank(rows.iloc[i]["loss"]))]
        head = f"{task_header(key['task'], rows['metric'].iloc[0])}, student {key['student']}{_references(rows)}:"
        ce = rows[rows["loss"] == "ce"]
        others = rows[rows["loss"] != "ce"]
        parts = []
        if ce.empty:
            parts.append("no ce baseline finished, so no method can be compared with it")
        elif others.empty:
            parts.append(f"ce only, {100 * ce['dev_score_mean'].iloc[0]:.1f}")
        else:
            ce_score = ce["dev_score_mean"].iloc[0]
            differs = others[[not (isinstance(a, str) and a) for a in others["agreement_vs_ce"]]]
            if differs.empty:
                parts.append(f"every method scores exactly ce's {100 * ce_score:.1f} at every seed")
            else:
                best = differs.loc[differs["dev_score_mean"].idxmax()]
                if best["dev_score_mean"] > ce_score:
                    parts.append(f"best method {best['loss']}, {100 * best['dev_score_mean']:.1f} vs ce's "
                                 f"{100 * ce_score:.1f}: {_difference(best)}")
                else:
                    parts.append(f"ce scores highest, {100 * ce_score:.1f}; next {best['loss']}, "
                                 f"{100 * best['dev_score_mean']:.1f}: {_difference(best)}")
            for _, row in others.iterrows():
                agreement = row["agreement_vs_ce"]
                if isinstance(agreement, str) and agreement:
                    parts.append(f"{row['loss']} {AGREEMENT_WORDS[agreement]}")
        constant = [r["loss"] for _, r in rows.iterrows() if known_true(r.get("constant_predictor"))]
        if constant and len(constant) == len(rows):
            parts.append("every method predicts a single class for all of dev: these scores measure no learning")
        elif constant:
            parts.append(f"{_listed(constant)} predict{'s' if len(constant) == 1 else ''} a single class for all of dev")
        at = [r["loss"] for _, r in rows.iterrows() if known_true(r.get("at_majority")) and r["loss"] not in constant]
        if at and len(at) == len(rows):
            parts.append("no method is above the majority-class baseline at 95% confidence: no measurable learning")
        elif at:
            parts.append(f"{_listed(at)} {'is' if len(at) == 1 else 'are'} not above the majority-class baseline at 95% "
                         "confidence")
        lines.append(f"{head} " + "; ".join(parts) + ".")
    return lines
