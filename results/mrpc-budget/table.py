"""The results/mrpc-budget table from its runs' result.json files (`makd distill` summaries): per lr, the hold-out
score that chooses (epoch within a run, lr across runs) and the dev score reported at it, with 95% intervals over
seeds and the same "at the majority class" test as the leaderboard's `∅` (makd_sweep.report.paired.reaches_baseline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from makd_sweep.report.paired import mean_interval, reaches_baseline


def load_runs(paths: list[str]) -> pd.DataFrame:
    rows = [json.loads(Path(p).read_text()) for p in paths]
    keep = ["task", "student", "loss", "metric", "lr", "seed", "epochs", "best_epoch", "best_score", "dev_score", "score",
            "majority_score", "wall_seconds", "resumed_from_epoch", "selection"]
    return pd.DataFrame([{k: r[k] for k in keep} for r in rows]).sort_values(["lr", "seed"], ignore_index=True)


def interval(values: pd.Series, sign: str = "") -> str:
    """'mean [low, high]' ×100 over seeds; sign '+' writes a difference as the leaderboard does ('-0.5 [-1.4, +0.4]')."""
    mean, low, high = mean_interval(values.to_numpy(float) * 100)
    return f"{mean:{sign}.1f} [{low:{sign}.1f}, {high:{sign}.1f}]"


def wall(cell: pd.DataFrame) -> str:
    """Mean wall seconds of a run; a resumed run's result.json times only its last invocation, so none is shown."""
    return "resumed" if (cell["resumed_from_epoch"] > 0).any() else f"{cell['wall_seconds'].mean():.0f}"


def references(leaderboard: Path, task: str, student: str) -> tuple[float | None, pd.Series | None]:
    """The fine-tuned teacher's dev score and results/glue-teachers' ce row for this student (its 3-epoch protocol)."""
    board = pd.read_csv(leaderboard)
    board = board[board["task"] == task]
    tuned = board[board["teacher_fine_tuned"].fillna(False).astype(bool)]["teacher_score"].dropna().unique()
    ce = board[(board["student"] == student) & (board["loss"] == "ce")]
    return (float(tuned[0]) if len(tuned) == 1 else None), (ce.iloc[0] if len(ce) else None)


def table(runs: pd.DataFrame, leaderboard: Path | None) -> str:
    task, student, metric = (runs[c].iloc[0] for c in ("task", "student", "metric"))
    assert (runs["selection"] == "train_holdout").all(), "every run must choose its epoch on the train hold-out"
    majority = float(runs["majority_score"].iloc[0])
    lines = [f"# {task.upper()}: `{student}` trained with ce alone, by lr (dev {metric} ×100, mean and 95% CI over "
             "seeds)", "",
             "Each run chooses its epoch on the 10% train hold-out; dev is the score at that epoch, untouched. "
             "`∅`: the dev interval reaches the majority class.", "",
             "| lr | epochs | seeds | best epoch per seed | hold-out | dev | dev − majority | dev at the last epoch | "
             "wall s per run |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    holdout_means = {}
    for lr, cell in runs.groupby("lr"):
        holdout_means[lr] = cell["best_score"].mean()
        at = reaches_baseline(cell["dev_score"], majority)
        lines.append(f"| {lr:.0e} | {cell['epochs'].max()} | {len(cell)} | "
                     f"{', '.join(str(e) for e in cell['best_epoch'])} | {interval(cell['best_score'])} | "
                     f"{interval(cell['dev_score'])}{' ∅' if at else ''} | "
                     f"{interval(cell['dev_score'] - majority, '+')} | {interval(cell['score'])} | {wall(cell)} |")
    chosen = max(holdout_means, key=holdout_means.get)
    best = runs[runs["lr"] == chosen]
    verdict = ("at the majority class" if reaches_baseline(best["dev_score"], majority)
               else "above the majority class at 95%")
    lines += ["", f"Chosen on the hold-out (highest mean): **lr {chosen:.0e}**, dev {metric} "
                  f"{interval(best['dev_score'])} ({verdict}).",
              "", "References (dev): majority class " f"{majority * 100:.1f}"]
    if leaderboard is not None:
        teacher, ce = references(leaderboard, task, student)
        if teacher is not None:
            lines[-1] += f"; the fine-tuned MiniLM teacher of results/glue-teachers {teacher * 100:.1f}"
        if ce is not None:
            lines[-1] += (f"; results/glue-teachers' ce for this student (lr {float(ce['best_lr']):.0e}, 3 epochs) "
                          f"{ce['dev_score_mean'] * 100:.1f} (std {ce['dev_score_std'] * 100:.1f}"
                          f"{', at the majority class' if str(ce['at_majority']) == 'True' else ''})")
    lines[-1] += "."
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="result.json files of `makd distill` runs (one task and student)")
    parser.add_argument("--teacher-leaderboard", type=Path, help="a leaderboard CSV holding the reference rows")
    args = parser.parse_args(argv)
    print(table(load_runs(args.runs), args.teacher_leaderboard))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
