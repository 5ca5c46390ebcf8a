"""The trial table: one row per trial, built by one function (`trial_row`) from whatever recorded the trial.

Sources (all feed `trial_row`, then `trial_status` and `finish_row`):

- a live Tuner.fit() ResultGrid (`rows_from_result_grid`: what the driver writes as trials.csv / trials.jsonl);
- Ray's trial folders of a running, interrupted or copied experiment dir (`read_trial_folders`: params.json,
  result.json, error.txt, and the task's newest experiment_state-*.json for the status Ray recorded);
- a trials CSV written earlier (`read_trials_csv`), e.g. results/glue-cpu/*.csv.

`trials_frame` gives every source the same columns (TRIAL_COLUMNS first) and types. Pure pandas and json: Ray is
never imported, so an experiment dir copied off a cluster reads the same as a live one.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from makd.errors import UsageError
from makd.fingerprints import FINGERPRINT_COLUMNS
from makd_sweep.experiment_dir import (
    FINISHED,
    SCHEDULE,
    SEARCHED_OPTIONS,
    TrialFolder,
    Unpacked,
    ended_trials,
    newest_result_mtime,
    ray_states,
    split_trial_id,
    stage_dirs,
    sweep_config,
    trial_folders,
    trial_params,
    unpack,
)
from makd_sweep.storage import write_bytes

TRIAL_COLUMNS = ["task", "stage", "teacher", "teacher_fine_tuned", "student", "student_parameters_m", "loss", "lam",
                 "tau", "seed", "lr", "metric", "selection", "best_score", "dev_score", "last_epoch_score", "majority_score",
                 "teacher_score", "labeled_examples", "transfer_examples", "teacher_transfer_score", "best_epoch",
                 "weights_fingerprint", "predictions_fingerprint", "predicted_classes", "epochs_run", "max_epochs",
                 "stopped_early", "status", "wall_seconds", "device", "device_hours", "peak_rss_mb", "peak_gpu_mb",
                 "latency_ms", "inference_examples_per_s", "node", "node_id", "resumed", "teacher_loads_in_trial", "trial_id", "pack_id", "pack_size", "looks",
                 "tolerance", "error"]
# older trials CSVs (results/ keeps them as they were written) -> today's name: "final" is the final stage only
LEGACY_COLUMNS = {"final_score": "last_epoch_score"}
TRANSFER_COLUMNS = ("labeled_examples", "transfer_examples", "teacher_transfer_score")
REQUIRED_COLUMNS = ("task", "student", "loss", "lam", "tau", "seed", "metric", "best_score", "status")
_NUMERIC = ("student_parameters_m", "lam", "tau", "seed", "lr", "best_score", "dev_score", "last_epoch_score",
            "majority_score", "teacher_score", "labeled_examples", "transfer_examples", "teacher_transfer_score",
            "best_epoch", "epochs_run", "max_epochs", "wall_seconds", "device_hours", "peak_rss_mb", "peak_gpu_mb",
            "teacher_loads_in_trial", "predicted_classes", "latency_ms", "inference_examples_per_s", "pack_size", "looks",
            "tolerance")


def _clean(value):
    """A JSON-ready scalar: NaN and pandas' NA become null."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value

# ----------------------------------------------------------------------------------------------------- the row


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
    # the sweep's config says which teacher; without it (a running sweep), the trial's own report does
    teacher = teacher or metrics.get("teacher")
    fine_tuned = fine_tuned or bool(metrics.get("teacher_fine_tuned"))
    row = {"task": task, "stage": params.get("stage") or "search",
           **teacher_fields(params.get("loss"), teacher, fine_tuned),
           "student": params.get("student"), "loss": params.get("loss"), "lam": params.get("lam"),
           "tau": params.get("tau"), "seed": params.get("seed"), "lr": params.get("lr"),
           **{key: params[key] for key in SEARCHED_OPTIONS if key in params},  # searched ones only (search_space)
           "metric": metrics.get("metric"), "looks": params.get("looks"), "tolerance": params.get("tolerance"), "trial_id": trial_id if metrics.get("pack_size") else metrics.get("trial_id") or trial_id, "error": error,
           "_started": bool(metrics) and number(metrics.get("score")) is not None}
    trained = metrics.get(SCHEDULE)  # PBT and its replay (makd_sweep/schedule.py): the setting from each epoch on
    if trained:
        row[SCHEDULE] = trained
    if row["_started"]:
        scored = [h for h in history if number(h.get("score")) is not None]
        best = max(scored, key=lambda h: h["score"])  # the first best epoch
        if trained and row["stage"] == "search":
            # a PBT trial's earlier reports may be of weights it gave up for a donor's: its row is the last epoch
            best = metrics
        peaks = [number(h.get("peak_gpu_mb")) for h in history]
        row.update(best_score=number(best.get("score")), last_epoch_score=number(metrics.get("score")),
                   # the task's references on dev (makd/references.py); the teacher's only where this trial used it
                   majority_score=number(metrics.get("majority_score")),
                   teacher_score=number(metrics.get("teacher_score")) if row["loss"] != "ce" else None,
                   # makd/transfer.py: the task's transfer data (absent without it)
                   **{k: number(metrics.get(k)) for k in TRANSFER_COLUMNS},
                   dev_score=number(best.get("dev_score")), selection=metrics.get("selection"),
                   best_epoch=int(best.get("epoch") or 0), epochs_run=int(metrics.get("epoch") or len(history)),
                   wall_seconds=float(metrics.get("time_total_s") or 0.0), device=metrics.get("device"),
                   node=metrics.get("hostname"), node_id=metrics.get("node_id"),
                   resumed=any((number(h.get("resumed_from_epoch")) or 0) > 0 for h in history),
                   teacher_loads_in_trial=int(metrics.get("teacher_loads_in_trial") or 0),
                   peak_rss_mb=metrics.get("peak_rss_mb"), student_parameters_m=number(metrics.get("student_parameters_m")),
                   # the student that was selected: the best epoch's weights and dev predictions (None: older trials)
                   **{k: best.get(k) or None for k in FINGERPRINT_COLUMNS}, predicted_classes=number(best.get("predicted_classes")),
                   peak_gpu_mb=max((p for p in peaks if p is not None), default=None),
                   # makd.inference_cost: the student's cost to run on the trial's device (None: older trials)
                   latency_ms=number(metrics.get("latency_ms")),
                   inference_examples_per_s=number(metrics.get("inference_examples_per_s")),
                   **{k: v for k, v in metrics.items() if k.startswith("glue_")},
                   **{f"best_{k}": v for k, v in best.items() if k.startswith("glue_")})
        if metrics.get("pack_size"):  # a member of a pack (makd_sweep/pack.py): its own time, not the pack's so far
            row.update(pack_id=metrics.get("pack_id"), pack_size=int(metrics["pack_size"]), wall_seconds=float(metrics.get("trial_seconds") or 0.0))
        row["device_hours"] = row["wall_seconds"] / 3600 * devices if devices else None
    return row


def member_ray_status(row: dict, trial: Unpacked, pack_status: str | None, max_epochs: int | None) -> str | None:
    """What Ray's status of a pack says about one member: its own error, else finished when it ran every epoch,
    else waiting while the pack runs; a single trial keeps Ray's status."""
    if not trial.packed:
        return pack_status
    if trial.error:
        return "ERROR"
    if row["_started"] and max_epochs is not None and (row.get("epochs_run") or 0) >= max_epochs:
        return "TERMINATED"
    if pack_status == "RUNNING" and not row["_started"]:
        return None  # not reached yet: NOT_STARTED
    return pack_status


def trial_status(row: dict, ray_status: str | None, max_epochs: int | None, max_known: bool,
                 sweep_done: bool, ended: bool = False) -> str:
    """Map what Ray recorded (or, without it, what the trial's files show) onto the trials.csv statuses. `ended`:
    the trial's own "done" event (events.jsonl) says its training loop returned, which Ray's saved state may not
    show yet while the sweep runs."""
    started, epochs = row["_started"], row.get("epochs_run") or 0
    complete = started and max_epochs is not None and epochs >= max_epochs
    if ray_status == "ERROR" or (ray_status is None and row["error"] and not complete):
        return "ERROR"
    if not started:
        return "RUNNING" if ray_status == "RUNNING" else "NOT_STARTED"
    if ray_status == "TERMINATED" or (ray_status is None and (complete or sweep_done)) or (max_known and complete) \
            or (ended and ray_status != "ERROR"):
        return "TERMINATED" if max_epochs is None or epochs >= max_epochs else "STOPPED"
    return "RUNNING"


def finish_row(row: dict, status: str, max_epochs: int | None) -> dict:
    """The row as written: its status, and without the builder's private fields."""
    row = {**row, "status": status, "stopped_early": status == "STOPPED", "max_epochs": max_epochs}
    return {k: v for k, v in row.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------------------- sources


def rows_from_result_grid(grid, task: str, config: dict) -> list[dict]:
    """One row per trial of a finished (or interrupted) Tuner.fit(); unstarted trials are kept as NOT_STARTED.
    config: the sweep's config as sweep.json keeps it (`SweepConfig.as_dict()`), read as the folders' source reads it."""
    rows = []
    max_epochs = _max_epochs(config)
    for result in grid:
        history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
        if result.metrics and (not history or history[-1].get("epoch") != result.metrics.get("epoch")):
            history.append(result.metrics)
        error = None if result.error is None else str(result.error).strip().splitlines()[-1][:300]
        for trial in unpack(trial_params(result.config or {}), history, TrialFolder(Path(str(result.path))).trial_id):
            row = _row(task, trial.params, trial.history, config, trial.error or error, trial.trial_id)
            # fit() has returned: a trial Ray did not mark ERROR has ended (or never started)
            ray_status = member_ray_status(row, trial, "ERROR" if result.error is not None else "TERMINATED",
                                           max_epochs)
            if ray_status != "ERROR":
                row["error"] = None
            rows.append(finish_row(row, trial_status(row, ray_status, max_epochs, True, True), max_epochs))
    return rows


def _max_epochs(config: dict | None) -> int | None:
    if not config:
        return None
    scheduler = config.get("scheduler") or {}
    value = scheduler.get("max_epochs") or _train_option(config, "epochs")
    return int(value) if value else None


def _train_option(config: dict, name: str):
    """A training option from sweep.json's config: under "train", or at the top level in older files."""
    return (config.get("train") or {}).get(name, config.get(name))


def _device_count(config: dict | None) -> float | None:
    if not config:
        return None
    gpu, cpu = float(config.get("gpu") or 0), float(config.get("cpu") or 1)
    return gpu if gpu > 0 else cpu


def _row(task: str, params: dict, history: list[dict], config: dict | None, error: str | None,
         trial_id: str) -> dict:
    """`trial_row` with the sweep-wide facts taken from sweep.json's config (None: a copied dir without it)."""
    config = config or {}
    return trial_row(task, params, history, teacher=_train_option(config, "teacher"),
                     fine_tuned=bool(_train_option(config, "fine_tuned") or config.get("teacher_finetune")),
                     error=error, devices=_device_count(config), trial_id=trial_id)


def _folder_rows(task: str, folder: TrialFolder, config: dict | None) -> list[dict]:
    """One trial folder (params.json, result.json, error.txt) -> makd_sweep.report.trials.trial_row, one per member of a
    pack (status decided later)."""
    history = folder.history()
    return [{**_row(task, trial.params, trial.history, config, trial.error or folder.error_line(), trial.trial_id),
             "_folder": folder.path.name, "_results": len(history), "_trial": trial}
            for trial in unpack(trial_params(folder.params()), history, folder.trial_id)]


def read_trial_folders(root: str | Path) -> pd.DataFrame:
    """Rows for every trial under ROOT's Ray Tune task dirs, finished or not, without trials.csv.

    Status: the task's newest experiment_state-*.json when readable (TERMINATED -> TERMINATED, or STOPPED when
    fewer epochs than max_epochs ran; ERROR; RUNNING/PENDING -> RUNNING or NOT_STARTED), else the folder (error.txt,
    epochs run). max_epochs comes from sweep.json, else the most epochs any trial of the task ran. Trials Ray
    listed but has not started yet are NOT_STARTED rows; trials Ray has not created yet are not seen at all.
    A trial restored into a second folder (after a killed driver) counts once.
    """
    root = Path(root)
    dirs = stage_dirs(root)
    experiment = root.parent if [d for _, d in dirs] == [root] else root  # a stage dir given directly
    config = sweep_config(experiment)
    rows = []
    ended = ended_trials(experiment)
    for task, task_dir in dirs:
        states = ray_states(task_dir)
        folder_rows = [row for folder in trial_folders(task_dir) for row in _folder_rows(task, folder, config)]
        max_epochs = _max_epochs(config)
        max_known = max_epochs is not None
        if max_epochs is None:
            max_epochs = max((r.get("epochs_run") or 0 for r in folder_rows), default=0) or None
        chosen: dict[str, dict] = {}
        for row in folder_rows:
            state = states.get(row["trial_id"], {})
            rank = (row["_folder"] == state.get("relative_logdir"), row["_results"], row["_folder"])
            if row["trial_id"] not in chosen or rank > chosen[row["trial_id"]]["_rank"]:
                chosen[row["trial_id"]] = {**row, "_rank": rank}
        seen = {split_trial_id(trial_id)[0] for trial_id in chosen}
        for trial_id, state in states.items():
            if trial_id not in seen:  # listed by Ray, no folder yet
                for trial in unpack(trial_params(state["config"]), [], trial_id):
                    chosen[trial.trial_id] = {**_row(task, trial.params, [], config, None, trial.trial_id),
                                              "_trial": trial}
        for trial_id, row in chosen.items():
            ray_status = member_ray_status(row, row["_trial"], states.get(split_trial_id(trial_id)[0], {}).get("status"),
                                           max_epochs)
            status = trial_status(row, ray_status, max_epochs, max_known,
                                  sweep_done=config is not None, ended=trial_id in ended)
            rows.append(finish_row({**row, "metric": row.get("metric") or _task_metric(task)}, status, max_epochs))
    return trials_frame(rows)


def _task_metric(task: str) -> str | None:
    from makd.tasks import get_task

    try:
        return get_task(task).metric
    except UsageError:
        return None


def read_trials_csv(path: str | Path) -> pd.DataFrame:
    """A trials CSV (makd_sweep.report.trials.TRIAL_COLUMNS, extra glue_* columns allowed); UsageError names a bad file."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={k: str for k in FINGERPRINT_COLUMNS})  # hex that may be all digits
    except pd.errors.EmptyDataError:
        raise UsageError(str(path), "empty file: not a trials CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(str(path), f"not a readable CSV ({problem})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(str(path), f"missing column(s) {', '.join(missing)}: not a makd trials CSV "
                                    "(see makd_sweep.report.trials.TRIAL_COLUMNS)")
    return trials_frame(frame)


def read_experiment_dir(root: str | Path) -> tuple[pd.DataFrame, str]:
    """All trials of one experiment dir (finished or not) and a line saying how they were read."""
    root = Path(root)
    csv = root / "trials.csv"
    has_folders = bool(stage_dirs(root))
    if csv.is_file():
        frame = read_trials_csv(csv)
        if not has_folders:
            return frame, f"{root}: trials.csv"
        folders = read_trial_folders(root)
        if newest_result_mtime(root) > csv.stat().st_mtime + 2.0:  # resumed since trials.csv was written
            counts = frame.dropna(subset=["student_parameters_m"]).drop_duplicates("student")
            folders = fill_parameter_counts(folders, counts.set_index("student")["student_parameters_m"].to_dict())
            return folders, f"{root}: trial folders (trials.csv is older than the newest trial result)"
        return _add_folder_best_glue(frame, folders), f"{root}: trials.csv"
    if has_folders:
        return read_trial_folders(root), f"{root}: trial folders (no trials.csv yet)"
    raise UsageError(str(root), "no trials.csv and no Ray Tune trial folders (<task>/<trial>/params.json): "
                                "not a makd sweep experiment dir")


def _add_folder_best_glue(frame: pd.DataFrame, folders: pd.DataFrame) -> pd.DataFrame:
    """trials.csv holds the final epoch's glue_* metrics; the folders also give them at the best epoch."""
    best_cols = [c for c in folders.columns if c.startswith("best_glue_")]
    if not best_cols or "trial_id" not in frame:
        return frame
    extra = folders[["task", "trial_id", *best_cols]].drop_duplicates(["task", "trial_id"])
    frame = frame.drop(columns=[c for c in best_cols if c in frame.columns])
    return trials_frame(frame.merge(extra, on=["task", "trial_id"], how="left"))


def read_trials(path: str | Path) -> tuple[pd.DataFrame, str]:
    """One input path (experiment dir or trials CSV) -> all its trials and a line saying how it was read."""
    p = Path(path)
    if not p.exists():
        raise UsageError(str(path), "no such file or directory")
    if p.is_dir():
        return read_experiment_dir(p)
    if p.suffix.lower() != ".csv":
        raise UsageError(str(path), "expected an experiment dir or a trials .csv file")
    return read_trials_csv(p), f"{path}: trials CSV"


# ----------------------------------------------------------------------------------------------------- the frame


def trials_frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Every source's trials in one shape: TRIAL_COLUMNS first (added empty when missing), then source, then the
    extra columns (glue_*, best_glue_*) sorted; numbers, statuses and flags typed alike."""
    frame = pd.DataFrame(rows) if isinstance(rows, list) else rows.copy()
    frame = frame.rename(columns={old: new for old, new in LEGACY_COLUMNS.items() if new not in frame})
    for column in TRIAL_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    for column in _NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in [c for c in frame.columns if c.startswith(("glue_", "best_glue_"))]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["status"] = frame["status"].astype("string").str.upper()
    frame.loc[frame["loss"] == "ce", "teacher_score"] = np.nan  # ce never sees the teacher (as teacher_fields)
    for column in FINGERPRINT_COLUMNS:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["stage"] = frame["stage"].astype(object).where(frame["stage"].notna(), "search")  # older CSVs: no stages
    # Older rows chose the epoch on dev: their dev score at the best epoch is the best score.
    frame["selection"] = frame["selection"].astype(object).where(frame["selection"].notna(), "dev")
    frame["dev_score"] = frame["dev_score"].where(frame["dev_score"].notna(), frame["best_score"])
    frame["stopped_early"] = frame["stopped_early"].map(_as_bool).astype("boolean")
    frame["resumed"] = frame["resumed"].map(_as_bool).astype("boolean")
    frame["teacher_fine_tuned"] = frame["teacher_fine_tuned"].map(_as_bool).astype("boolean")
    for name in [c for c in frame.columns if c.startswith("glue_")]:  # the final epoch is the best one
        best = f"best_{name}"
        same = frame["best_epoch"] == frame["epochs_run"]
        frame[best] = frame[best] if best in frame else np.nan
        frame[best] = frame[best].where(frame[best].notna() | ~same, frame[name])
    extra = sorted(c for c in frame.columns if c not in TRIAL_COLUMNS and c != "source")
    return frame[TRIAL_COLUMNS + (["source"] if "source" in frame else []) + extra]


def _as_bool(value):
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def fill_parameter_counts(frame: pd.DataFrame, known: dict | None = None) -> pd.DataFrame:
    """A student's parameter count is the same in every row: fill rows that lack it (folder-read trials)."""
    frame = frame.copy()
    counts = dict(known or {})
    for student, value in frame.dropna(subset=["student_parameters_m"])[["student", "student_parameters_m"]].values:
        counts.setdefault(student, value)
    frame["student_parameters_m"] = frame["student_parameters_m"].fillna(frame["student"].map(counts))
    return frame


def drop_duplicate_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (task, trial_id): a finished copy over an unfinished one, else the first given."""
    finished = frame["status"].isin(FINISHED).fillna(False).astype(bool)
    keyed = frame["trial_id"].notna()
    ranked = frame.assign(_finished=finished).sort_values("_finished", ascending=False, kind="stable")
    dup = ranked[keyed.loc[ranked.index]].duplicated(["task", "trial_id"], keep="first")
    frame = frame.drop(index=dup[dup].index)
    # The same run configuration (e.g. the ce baseline every sweep adds, in two sweeps of one student) is one
    # experiment, not two seeds: count it once, the first finished copy given.
    same_run = ["task", "stage", "teacher", "teacher_fine_tuned", "student", "loss", "lam", "tau", "seed", "lr", "max_epochs",
                "labeled_examples", "transfer_examples"]  # with other training data (makd/transfer.py): another run
    keys = [c for c in same_run if c in frame]
    finished = frame["status"].isin(FINISHED).fillna(False).astype(bool)
    frame = pool_fingerprints(frame, finished, keys)
    ranked = frame.assign(_finished=finished).sort_values("_finished", ascending=False, kind="stable")
    dup = ranked[ranked["_finished"]].duplicated(keys, keep="first")
    return frame.drop(index=dup[dup].index).reset_index(drop=True)


def pool_fingerprints(frame: pd.DataFrame, finished: pd.Series, keys: list[str]) -> pd.DataFrame:
    """The copies of one run configuration (ce, in each sweep of a student) give the kept copy every fingerprint
    they recorded, space-separated: the same config trained on two machines can differ in the weights' last bits
    (other CPU kernels), and a method trained beside one copy (taylor at τ = 1) must still be seen to equal it
    (makd_sweep/report/paired.py compares the sets)."""
    copies = frame[finished]
    if copies.empty or not copies.duplicated(keys, keep=False).any():
        return frame
    frame = frame.copy()
    groups = copies.groupby(keys, dropna=False, sort=False)
    for column in FINGERPRINT_COLUMNS:
        pooled = groups[column].transform(lambda values: " ".join(sorted({str(v) for v in values.dropna()})) or None)
        frame.loc[copies.index, column] = pooled.astype(object).where(pooled.notna(), None)
    return frame


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
    cols = ["task", "stage", "student", "loss", "lam", "tau", "seed", "metric", "best_score", "last_epoch_score",
            "epochs_run", "stopped_early", "status", "wall_seconds"]
    view = frame[cols].sort_values(["task", "stage", "best_score"], ascending=[True, False, False],
                                   na_position="last")
    return view.to_string(index=False, float_format=lambda v: f"{v:.4f}")
