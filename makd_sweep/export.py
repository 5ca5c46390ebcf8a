"""`makd export EXP --task T --student S --loss L`: the winning student of one leaderboard cell as a Hugging Face
model dir, with a model card.

The cell's setting is the leaderboard's (final stage by default); of its trials, the one with the best score is
exported at its best epoch (the trial's `best_model.pt`, kept beside every checkpoint), not its last.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

from makd.errors import UsageError
from makd_sweep import experiment_dir
from makd_sweep.report.build import Report, build
from makd_sweep.report.paired import IDENTICAL, SAME_PREDICTIONS, TIE, UNKNOWN
from makd_sweep.report.rank import known_true, setting_rows, setting_view


def winning_trial(report: Report, task: str, student: str, loss: str) -> tuple[pd.Series, pd.Series]:
    """(leaderboard row, trial row) of the cell's best trial at the cell's chosen setting."""
    board = report.leaderboard
    cell = board[(board["task"] == task) & (board["student"] == student) & (board["loss"] == loss)]
    if cell.empty:
        have = ", ".join(sorted({f"{t}/{s}/{lo}" for t, s, lo in board[["task", "student", "loss"]].values}))
        raise UsageError("loss", f"no {report.stage}-stage leaderboard row for task {task}, student {student}, loss "
                                 f"{loss} (rows: {have})")
    row = cell.iloc[0]
    trials = setting_rows(setting_view(report.trials), row)
    return row, trials.sort_values("best_score", ascending=False, kind="stable").iloc[0]


def best_weights(root: Path, trial: pd.Series) -> Path:
    """The trial's best-epoch weights in its newest Ray checkpoint (<task>[-final[-rN]]/<trial folder>/checkpoint_*)."""
    from makd.checkpoints import BEST_NAME

    return experiment_dir.best_weights(root, trial["task"], trial["stage"], str(trial["trial_id"]), BEST_NAME)


def model_card(row: pd.Series, trial: pd.Series, sweep: dict, best_epoch: int) -> str:
    from makd.tasks import TASKS

    spec = TASKS.get(str(row["task"]))
    auto = "AutoModelForCausalLM" if spec is not None and spec.is_causal_lm else "AutoModelForSequenceClassification"

    def pct(value) -> str:
        return "–" if pd.isna(value) else f"{value * 100:.2f}"

    def interval(baseline: str) -> str:
        if baseline == row["loss"] or not row.get(f"pairs_vs_{baseline}"):
            return "–"
        agreement, pairs = row.get(f"agreement_vs_{baseline}"), int(row[f"pairs_vs_{baseline}"])
        if isinstance(agreement, str) and agreement:
            return {IDENTICAL: f"the identical student (equal weight fingerprints) at each of {pairs} seeds",
                    SAME_PREDICTIONS: f"+0.00: the same dev predictions from different weights at each of {pairs} "
                                      "seeds",
                    TIE: f"+0.00: equal scores from different predictions (a tie) at each of {pairs} seeds",
                    UNKNOWN: f"+0.00: equal scores at each of {pairs} seeds; whether the students are identical is "
                             "unknown (trials without fingerprints)"}[agreement]
        return (f"{row[f'delta_vs_{baseline}'] * 100:+.2f} (95% CI {pct(row[f'ci_low_vs_{baseline}'])} to "
                f"{pct(row[f'ci_high_vs_{baseline}'])}, {int(row[f'pairs_vs_{baseline}'])} paired seeds)")

    train = sweep.get("train") or sweep
    lines = [f"# {row['student']} distilled for {row['task']} with makd ({row['loss']})", "",
             "Exported by `makd export` from a makd sweep: the best trial of its leaderboard cell, at its best epoch.",
             "", "| | |", "|---|---|",
             f"| task, metric | {row['task']}, {row['metric']} (GLUE dev) |",
             f"| this student's dev score | {pct(trial['dev_score'])} (epoch {best_epoch}, seed {int(trial['seed'])}) |",
             f"| the cell's mean over {int(row['n_seeds'])} seed(s) | {pct(row['dev_score_mean'])} "
             f"(std {pct(row['dev_score_std'])}) |",
             f"| vs ce, paired by seed | {interval('ce')} |", f"| vs vanilla, paired by seed | {interval('vanilla')} |",
             f"| loss, λ, τ, lr | {row['loss']}, {row['best_lam']:g}, {row['best_tau']:g}, {row['best_lr']:g} |",
             f"| teacher | {train.get('teacher')} ({_teacher_kind(sweep, train)}, "
             f"head seed {train.get('head_seed', 0)}) |",
             f"| stage | {trial['stage']} |",
             f"| inference cost | {_inference(trial, train.get('inference_batch_size', 32))} |",
             f"| references on dev | majority class {pct(row.get('majority_score'))}; teacher's own score "
             f"{pct(row.get('teacher_score'))} |",
             *(["| warning | the cell is not above the majority-class baseline at 95% confidence: no measurable "
                "learning |"] if known_true(row.get("at_majority")) else []),
             *(["| warning | every seed of this cell predicts a single class on dev (a constant predictor): its score "
                "is that class's, not something learned |"] if known_true(row.get("constant_predictor")) else []),
             f"| weights fingerprint | {trial.get('weights_fingerprint') or '– (not recorded)'} |", "",
             ("The epoch and the setting were chosen on a held-out part of the training set; the dev score is a test "
              "score." if trial["selection"] == "train_holdout" else
              "The epoch and the setting were chosen on the dev set that is reported, so the score is optimistic."),
             "",
             "```python", f"from transformers import {auto}, AutoTokenizer",
             f"model = {auto}.from_pretrained(PATH)",
             "tokenizer = AutoTokenizer.from_pretrained(PATH)", "```", "", "## Sweep config", "", "```yaml",
             yaml.safe_dump(sweep, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def _inference(trial: pd.Series, batch_size) -> str:
    latency, rate = trial.get("latency_ms"), trial.get("inference_examples_per_s")
    if latency is None or pd.isna(latency):
        return "– (not measured: an older sweep, or inference_batch_size 0)"
    return (f"{latency:.2f} ms per example at batch 1, {rate:,.0f} examples/s at batch "
            f"{batch_size} on {trial.get('device') or 'its device'} "
            "(measured in the trial)")


def _teacher_kind(sweep: dict, train: dict) -> str:
    finetune = sweep.get("teacher_finetune")
    if finetune:
        return "fine-tuned by the sweep: " + ", ".join(f"{k} {v}" for k, v in finetune.items() if v is not None)
    return "fine-tuned" if train.get("fine_tuned") else "not fine-tuned"


def register_file_tasks(root: str | Path) -> None:
    """Register the tasks a sweep defined by files (sweep.json's `file_tasks`) from the label set and metric it
    recorded, so that a model is exported under the same labels without the files."""
    from makd.tasks import TaskSpec, register_task

    tasks = (experiment_dir.sweep_config(Path(root)) or {}).get("file_tasks") or []
    for task in tasks:
        spec = task.get("spec")
        if spec:
            register_task(TaskSpec(**{**spec, "text_fields": tuple(spec["text_fields"]),
                                      "labels": tuple(spec["labels"]) if spec["labels"] else None,
                                      "eval_splits": tuple(tuple(s) for s in spec["eval_splits"])}))


def fetch_best_weights(remote: str, root: Path, trial: pd.Series) -> None:
    """Into a local copy of a remote experiment (made without checkpoints), only the winning trial's best-epoch
    weights: a sweep's other checkpoints can be gigabytes."""
    from makd_sweep.storage import download

    try:
        download(remote, root, keep=lambda relative: experiment_dir.is_best_weights(
            relative, trial["task"], trial["stage"], str(trial["trial_id"])))
    except UsageError:
        pass  # nothing stored: best_weights says so, naming the stage dir


def export_winner(root: str | Path, task: str, student: str, loss: str, out: str | Path | None = None,
                  stage: str | None = None, remote: str | None = None) -> tuple[Path, float]:
    """Write the cell's winning student to `out` (default EXP/export/<task>-<student>-<loss>, or ./export/... for
    a `remote` experiment, of which `root` is a local copy); returns the dir and the dev score it reproduces."""
    import torch

    from makd.config import TrainConfig
    from makd.lm.causal_lm import save_lm_student
    from makd.models import save_student
    from makd.tasks import get_task

    root = Path(root)
    report = build([root], stage=stage)
    row, trial = winning_trial(report, task, student, loss)
    if remote:
        fetch_best_weights(remote, root, trial)
    weights = best_weights(root, trial)
    saved = torch.load(weights, map_location="cpu", weights_only=False)
    sweep = experiment_dir.sweep_config(root) or {}
    cfg = TrainConfig(**saved["config"])
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}-{student}-{loss}")
    target = Path(out) if out else (Path.cwd() / "export" if remote else root / "export") / name
    save = save_lm_student if get_task(cfg.task).is_causal_lm else save_student
    save(cfg, weights, target, card=model_card(row, trial, sweep, int(saved["epoch"])))
    return target, float(saved["metrics"][get_task(cfg.task).metric])  # dev, whatever chose the epoch
