"""Per-trial results: one row per trial (config, final and best metrics, epochs, early stop, status, cost, node).

Rows are written to the experiment dir as trials.csv and trials.jsonl (temp name + rename), for the leaderboard.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from makd.cache import atomic_write_bytes
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


def rows_from_result_grid(grid, task: str, cfg: SweepConfig) -> list[dict]:
    """One row per trial of a finished (or interrupted) Tuner.fit(); unstarted trials are kept as NOT_STARTED."""
    rows = []
    for result in grid:
        params = trial_params(result.config or {})
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        started = bool(metrics) and "score" in metrics
        row = {"task": task, **teacher_fields(params.get("loss"), cfg.teacher, cfg.fine_tuned),
               "student": params.get("student"), "loss": params.get("loss"), "lam": params.get("lam"),
               "tau": params.get("tau"), "seed": params.get("seed"), "lr": params.get("lr"),
               "metric": metrics.get("metric"), "max_epochs": cfg.max_epochs,
               "trial_id": metrics.get("trial_id") or Path(str(result.path)).name,
               "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:300]}
        if started:
            scores = history.dropna(subset=["score"]) if history is not None and "score" in history else None
            best = scores.loc[scores["score"].idxmax()] if scores is not None and len(scores) else metrics
            epochs_run = int(metrics["epoch"])
            row.update(best_score=float(best["score"]), final_score=float(metrics["score"]),
                       best_epoch=int(best["epoch"]), epochs_run=epochs_run,
                       wall_seconds=float(metrics.get("time_total_s", 0.0)), device=metrics.get("device"),
                       node=metrics.get("hostname"), node_id=metrics.get("node_id"), resumed=bool(history is not None and "resumed_from_epoch" in
                                                                    history and history["resumed_from_epoch"].max() > 0),
                       teacher_loads_in_trial=int(metrics.get("teacher_loads_in_trial", 0)),
                       peak_rss_mb=metrics.get("peak_rss_mb"),
                       peak_gpu_mb=history["peak_gpu_mb"].max() if history is not None and "peak_gpu_mb" in history
                       else None,
                       **{k: v for k, v in metrics.items() if k.startswith("glue_")})
            row["device_hours"] = row["wall_seconds"] / 3600 * (cfg.gpu if cfg.gpu > 0 else cfg.cpu)
        if result.error is not None:
            row["status"] = "ERROR"
        elif not started:
            row["status"] = "NOT_STARTED"
        else:
            row["status"] = "TERMINATED" if row["epochs_run"] >= cfg.max_epochs else "STOPPED"
        row["stopped_early"] = row["status"] == "STOPPED" or (
            row["status"] == "TERMINATED" and row.get("epochs_run", 0) < cfg.max_epochs)
        rows.append(row)
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
