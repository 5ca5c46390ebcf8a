"""Per-trial results: one row per trial (config, final and best metrics, epochs, early stop, status, cost, node).

Rows are written to the experiment dir as trials.csv and trials.jsonl (temp name + rename), for the leaderboard.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from makd.files import atomic_write_bytes
from tune.config import SweepConfig, is_remote_uri
from tune.trial import trial_params

TRIAL_COLUMNS = ["task", "teacher", "teacher_fine_tuned", "student", "student_parameters_m", "loss", "lam", "tau", "seed", "lr", "metric",
                 "best_score", "final_score", "best_epoch", "epochs_run", "max_epochs", "stopped_early", "status",
                 "wall_seconds", "device", "device_hours", "peak_rss_mb", "peak_gpu_mb", "node", "node_id", "resumed", "teacher_loads_in_trial", "trial_id",
                 "error"]


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def teacher_fields(loss: str | None, teacher: str | None, fine_tuned: bool) -> dict:
    """A trial row's teacher and teacher_fine_tuned: empty for ce, which never sees the teacher."""
    if loss == "ce":
        return {"teacher": None, "teacher_fine_tuned": None}
    return {"teacher": teacher, "teacher_fine_tuned": bool(fine_tuned)}


def number(value) -> float | None:
    """A finite float, or None (missing, NaN, a bool, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def trial_row(task: str, params: dict, history: list[dict], *, teacher: str | None, fine_tuned: bool,
              error: str | None, devices: float | None, trial_id: str) -> dict:
    """The one builder of a trials.csv row, from a trial's parameters and the metrics it reported each epoch
    (history, oldest first), whatever they were read from: a live ResultGrid or Ray's folders (result.json).
    The status is decided by `trial_status` (it needs what Ray knows of the trial)."""
    metrics = history[-1] if history else {}
    row = {"task": task, **teacher_fields(params.get("loss"), teacher, fine_tuned),
           "student": params.get("student"), "loss": params.get("loss"), "lam": params.get("lam"),
           "tau": params.get("tau"), "seed": params.get("seed"), "lr": params.get("lr"),
           "metric": metrics.get("metric"), "trial_id": metrics.get("trial_id") or trial_id, "error": error,
           "_started": bool(metrics) and number(metrics.get("score")) is not None}
    if row["_started"]:
        scored = [h for h in history if number(h.get("score")) is not None]
        best = max(scored, key=lambda h: h["score"])  # the first best epoch
        peaks = [number(h.get("peak_gpu_mb")) for h in history]
        row.update(best_score=number(best.get("score")), final_score=number(metrics.get("score")),
                   best_epoch=int(best.get("epoch") or 0), epochs_run=int(metrics.get("epoch") or len(history)),
                   wall_seconds=float(metrics.get("time_total_s") or 0.0), device=metrics.get("device"),
                   node=metrics.get("hostname"), node_id=metrics.get("node_id"),
                   resumed=any((number(h.get("resumed_from_epoch")) or 0) > 0 for h in history),
                   teacher_loads_in_trial=int(metrics.get("teacher_loads_in_trial") or 0),
                   peak_rss_mb=metrics.get("peak_rss_mb"),
                   peak_gpu_mb=max((p for p in peaks if p is not None), default=None),
                   **{k: v for k, v in metrics.items() if k.startswith("glue_")},
                   **{f"best_{k}": v for k, v in best.items() if k.startswith("glue_")})
        row["device_hours"] = row["wall_seconds"] / 3600 * devices if devices else None
    return row


def trial_status(row: dict, ray_status: str | None, max_epochs: int | None, max_known: bool,
                 sweep_done: bool) -> str:
    """Map what Ray recorded (or, without it, what the trial's files show) onto the trials.csv statuses."""
    started, epochs = row["_started"], row.get("epochs_run") or 0
    complete = started and max_epochs is not None and epochs >= max_epochs
    if ray_status == "ERROR" or (ray_status is None and row["error"] and not complete):
        return "ERROR"
    if not started:
        return "RUNNING" if ray_status == "RUNNING" else "NOT_STARTED"
    if ray_status == "TERMINATED" or (ray_status is None and (complete or sweep_done)) or (max_known and complete):
        return "TERMINATED" if max_epochs is None or epochs >= max_epochs else "STOPPED"
    return "RUNNING"


def finish_row(row: dict, status: str, max_epochs: int | None) -> dict:
    """The row as written: its status, and without the builder's private fields."""
    row = {**row, "status": status, "stopped_early": status == "STOPPED", "max_epochs": max_epochs}
    return {k: v for k, v in row.items() if not k.startswith("_")}


def rows_from_result_grid(grid, task: str, cfg: SweepConfig) -> list[dict]:
    """One row per trial of a finished (or interrupted) Tuner.fit(); unstarted trials are kept as NOT_STARTED."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
        if result.metrics and (not history or history[-1].get("epoch") != result.metrics.get("epoch")):
            history.append(result.metrics)
        error = None if result.error is None else str(result.error).strip().splitlines()[-1][:300]
        row = trial_row(task, trial_params(result.config or {}), history, teacher=cfg.teacher,
                        fine_tuned=cfg.fine_tuned, error=error, devices=cfg.gpu if cfg.gpu > 0 else cfg.cpu,
                        trial_id=Path(str(result.path)).name)
        # fit() has returned: a trial Ray did not mark ERROR has ended (or never started)
        status = trial_status(row, "ERROR" if result.error is not None else "TERMINATED", cfg.max_epochs, True, True)
        rows.append(finish_row(row, status, cfg.max_epochs))
    return rows


def add_parameter_counts(rows: list[dict], counts: dict[str, float]) -> None:
    for row in rows:
        row["student_parameters_m"] = counts.get(row.get("student"))


def trials_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    extra = sorted(c for c in frame.columns if c not in TRIAL_COLUMNS)
    for column in TRIAL_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame[TRIAL_COLUMNS + extra]


def write_bytes(root: str, name: str, data: bytes) -> str:
    """Write root/name atomically (local) or in one stream (s3://, gs:// via pyarrow.fs)."""
    if is_remote_uri(root):
        from pyarrow import fs

        filesystem, base = fs.FileSystem.from_uri(root)
        filesystem.create_dir(base, recursive=True)
        with filesystem.open_output_stream(f"{base}/{name}") as out:
            out.write(data)
        return f"{root}/{name}"
    path = Path(root) / name
    atomic_write_bytes(path, data)
    return str(path)


def write_trials(root: str, frame: pd.DataFrame) -> list[str]:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    jsonl = "".join(json.dumps({k: _clean(v) for k, v in row.items()}, default=str) + "\n"
                    for row in frame.to_dict(orient="records"))
    return [write_bytes(root, "trials.csv", buffer.getvalue().encode()),
            write_bytes(root, "trials.jsonl", jsonl.encode())]


def summary_table(frame: pd.DataFrame) -> str:
    """The plain per-trial table printed at the end of a sweep (the leaderboard builds on the same rows)."""
    if frame.empty:
        return "(no trials)"
    cols = ["task", "student", "loss", "lam", "tau", "seed", "metric", "best_score", "final_score", "epochs_run",
            "stopped_early", "status", "wall_seconds"]
    view = frame[cols].sort_values(["task", "best_score"], ascending=[True, False], na_position="last")
    return view.to_string(index=False, float_format=lambda v: f"{v:.4f}")
