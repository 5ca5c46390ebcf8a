"""The leaderboard: per-trial rows, the best λ per task × student × loss, and the paper-style table.

Pure pandas and json: Ray is never imported, so it works on an experiment dir copied off a cluster, on a running
sweep and on committed trials CSVs.

Inputs (any mix, merged; a trial given twice, same task and trial_id, counts once):

- a finished experiment dir written by `makd sweep` (ROOT/trials.csv, ROOT/sweep.json, ROOT/<task>/<trial>/);
- a running or partial experiment dir (no trials.csv yet, or one older than the trial folders after --resume):
  the same rows are rebuilt from each Ray trial folder (params.json, result.json, error.txt) and the task's
  latest experiment_state-*.json (the trial status Ray recorded, plain JSON);
- a trials CSV with the columns of `tune.results.TRIAL_COLUMNS` (e.g. results/glue-cpu/*.csv).

A trial is *finished* when its status is TERMINATED or STOPPED (ASHA stopped it early). Only finished trials enter
the tables; the others (RUNNING, NOT_STARTED, ERROR) are counted in `Leaderboard.unfinished`.

**The score of a trial is its `best_score`**: the task's headline dev metric at its best epoch (the epoch is chosen
on the same dev set, as is λ below, so absolute numbers are optimistic in the same way for every method; the
mean final-epoch score is carried alongside as `final_score_mean`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from makd.errors import UsageError
from tune.results import TRIAL_COLUMNS, finish_row, teacher_fields, trial_row, trial_status
from tune.trial import trial_params

FINISHED = ("TERMINATED", "STOPPED")
FINE_TUNED_SUFFIX = ", fine-tuned teacher"
REQUIRED_COLUMNS = ("task", "student", "loss", "lam", "tau", "seed", "metric", "best_score", "status")
MAX_TAU_ROWS = 4  # more distinct τ than this (an Optuna τ range): one "τ tuned" row instead of one row per τ
LEADERBOARD_COLUMNS = ["task", "student", "student_parameters_m", "loss", "metric", "best_lam", "best_tau", "best_lr",
                       "score_mean", "score_std", "n_seeds", "final_score_mean", "delta_vs_vanilla", "delta_vs_ce",
                       "settings_tried", "n_trials", "wall_seconds_mean", "device_hours_total", "peak_gpu_mb_max", "teacher"]
_NUMERIC = ("student_parameters_m", "lam", "tau", "seed", "lr", "best_score", "final_score", "best_epoch",
            "epochs_run", "max_epochs", "wall_seconds", "device_hours", "peak_rss_mb", "peak_gpu_mb", "teacher_loads_in_trial")
_SETTING = ["_lam", "_tau", "_lr"]
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")


@dataclass
class Leaderboard:
    """What `build` returns. Every table holds finished trials only."""

    trials: pd.DataFrame  # one row per finished trial: TRIAL_COLUMNS, then source, then glue_* / best_glue_*
    leaderboard: pd.DataFrame  # one row per task × student × loss: LEADERBOARD_COLUMNS
    paper_table_markdown: str  # Table 2 layout of the paper
    unfinished: int = 0  # trials seen but not TERMINATED/STOPPED (RUNNING, NOT_STARTED, ERROR)
    unfinished_by_status: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # one line per input: path and how it was read


# ----------------------------------------------------------------------------------------------------- readers


def _sweep_config(root: Path) -> dict | None:
    path = root / "sweep.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text()).get("config")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise UsageError(str(path), f"not a sweep.json written by makd sweep ({err})") from None
    return config if isinstance(config, dict) else None


def _max_epochs(config: dict | None) -> int | None:
    if not config:
        return None
    scheduler = config.get("scheduler") or {}
    value = scheduler.get("max_epochs") or config.get("epochs")
    return int(value) if value else None


def _device_count(config: dict | None) -> float | None:
    if not config:
        return None
    gpu, cpu = float(config.get("gpu") or 0), float(config.get("cpu") or 1)
    return gpu if gpu > 0 else cpu


def _is_trial_dir(path: Path) -> bool:
    return path.is_dir() and (path / "params.json").is_file()


def _is_task_dir(path: Path) -> bool:
    if not path.is_dir():
        return False
    return any(path.glob("experiment_state-*.json")) or any(_is_trial_dir(p) for p in path.iterdir())


def task_dirs(root: Path) -> list[tuple[str, Path]]:
    """(task, dir) of every Ray Tune experiment under ROOT (one per task), or ROOT itself when it is one."""
    root = Path(root)
    if not root.is_dir():
        return []
    if _is_task_dir(root):
        return [(root.name, root)]
    return [(p.name, p) for p in sorted(root.iterdir()) if _is_task_dir(p)]


def _ray_states(task_dir: Path) -> dict[str, dict]:
    """trial_id -> {status, relative_logdir, config} from the newest experiment_state-*.json (Ray's own JSON)."""
    states = sorted(task_dir.glob("experiment_state-*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    for path in reversed(states):
        try:
            data = json.loads(path.read_text())
            out = {}
            for entry in data["trial_data"]:
                trial = json.loads(entry[0] if isinstance(entry, (list, tuple)) else entry)
                out[str(trial["trial_id"])] = {"status": trial.get("status"),
                                               "relative_logdir": trial.get("relative_logdir"),
                                               "config": trial.get("config") or {}}
            return out
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # being rewritten, or another Ray version's layout: fall back to the folders alone
    return {}


def _read_history(path: Path) -> list[dict]:
    """result.json: one JSON object per reported epoch; a half-written last line (running trial) is skipped."""
    if not path.is_file():
        return []
    history = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                history.append(json.loads(line))
            except ValueError:
                continue
    return history


def _error_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(errors="replace").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "error"


def _teacher_fields(config: dict | None, params: dict) -> dict:
    config = config or {}
    return teacher_fields(params.get("loss"), config.get("teacher"), bool(config.get("fine_tuned")))


def _folder_row(task: str, folder: Path, config: dict | None) -> dict:
    """One trial folder (params.json, result.json, error.txt) -> tune.results.trial_row (status decided later)."""
    try:
        params = trial_params(json.loads((folder / "params.json").read_text()))
    except (ValueError, AttributeError) as err:
        raise UsageError(str(folder / "params.json"), f"not a Ray Tune params.json ({err})") from None
    history = _read_history(folder / "result.json")
    match = _TRIAL_ID.search(folder.name)
    config = config or {}
    row = trial_row(task, params, history, teacher=config.get("teacher"), fine_tuned=bool(config.get("fine_tuned")),
                    error=_error_line(folder / "error.txt"), devices=_device_count(config),
                    trial_id=match.group(1) if match else folder.name)
    return {**row, "_folder": folder.name, "_results": len(history)}


def read_trial_folders(root: str | Path) -> pd.DataFrame:
    """Rows for every trial under ROOT's Ray Tune task dirs, finished or not, without trials.csv.

    Status: the task's newest experiment_state-*.json when readable (TERMINATED -> TERMINATED, or STOPPED when
    fewer epochs than max_epochs ran; ERROR; RUNNING/PENDING -> RUNNING or NOT_STARTED), else the folder (error.txt,
    epochs run). max_epochs comes from sweep.json, else the most epochs any trial of the task ran. Trials Ray
    listed but has not started yet are NOT_STARTED rows; trials Ray has not created yet are not seen at all.
    A trial restored into a second folder (after a killed driver) counts once.
    """
    root = Path(root)
    dirs = task_dirs(root)
    config = _sweep_config(root.parent if dirs == [(root.name, root)] else root)  # a task dir given directly
    rows = []
    for task, task_dir in dirs:
        states = _ray_states(task_dir)
        folder_rows = [_folder_row(task, p, config) for p in sorted(task_dir.iterdir()) if _is_trial_dir(p)]
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
        for trial_id, state in states.items():
            if trial_id not in chosen:  # listed by Ray, no folder yet
                params = trial_params(state["config"])
                chosen[trial_id] = {"task": task, "student": params.get("student"), "loss": params.get("loss"),
                                    "lam": params.get("lam"), "tau": params.get("tau"), "seed": params.get("seed"),
                                    "lr": params.get("lr"), "trial_id": trial_id, "error": None, "_started": False,
                                    **_teacher_fields(config, params)}
        for trial_id, row in chosen.items():
            status = trial_status(row, states.get(trial_id, {}).get("status"), max_epochs, max_known,
                                  sweep_done=config is not None)
            rows.append(finish_row({**row, "metric": row.get("metric") or _task_metric(task)}, status, max_epochs))
    return _ordered(pd.DataFrame(rows)) if rows else _ordered(pd.DataFrame(columns=TRIAL_COLUMNS))


def _task_metric(task: str) -> str | None:
    from makd.tasks import get_task

    try:
        return get_task(task).metric
    except UsageError:
        return None


def read_trials_csv(path: str | Path) -> pd.DataFrame:
    """A trials CSV (tune.results.TRIAL_COLUMNS, extra glue_* columns allowed); UsageError names a bad file."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UsageError(str(path), "empty file: not a trials CSV") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(str(path), f"not a readable CSV ({problem})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UsageError(str(path), f"missing column(s) {', '.join(missing)}: not a makd trials CSV "
                                    "(see tune.results.TRIAL_COLUMNS)")
    return _ordered(frame)


def _newest_result_mtime(root: Path) -> float:
    newest = 0.0
    for _, task_dir in task_dirs(root):
        for folder in task_dir.iterdir():
            for name in ("result.json", "error.txt"):
                try:
                    newest = max(newest, (folder / name).stat().st_mtime)
                except OSError:
                    pass
    return newest


def read_experiment_dir(root: str | Path) -> tuple[pd.DataFrame, str]:
    """All trials of one experiment dir (finished or not) and a line saying how they were read."""
    root = Path(root)
    csv = root / "trials.csv"
    has_folders = bool(task_dirs(root))
    if csv.is_file():
        frame = read_trials_csv(csv)
        if not has_folders:
            return frame, f"{root}: trials.csv"
        folders = read_trial_folders(root)
        if _newest_result_mtime(root) > csv.stat().st_mtime + 2.0:  # resumed since trials.csv was written
            counts = frame.dropna(subset=["student_parameters_m"]).drop_duplicates("student")
            folders = _fill_parameter_counts(folders, counts.set_index("student")["student_parameters_m"].to_dict())
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
    return _ordered(frame.merge(extra, on=["task", "trial_id"], how="left"))


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


# ----------------------------------------------------------------------------------------------------- frames


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """TRIAL_COLUMNS first (added empty when missing), then source, then the extra columns sorted; typed."""
    frame = frame.copy()
    for column in TRIAL_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    for column in _NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in [c for c in frame.columns if c.startswith(("glue_", "best_glue_"))]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["status"] = frame["status"].astype("string").str.upper()
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


def _fill_parameter_counts(frame: pd.DataFrame, known: dict | None = None) -> pd.DataFrame:
    """A student's parameter count is the same in every row: fill rows that lack it (folder-read trials)."""
    frame = frame.copy()
    counts = dict(known or {})
    for student, value in frame.dropna(subset=["student_parameters_m"])[["student", "student_parameters_m"]].values:
        counts.setdefault(student, value)
    frame["student_parameters_m"] = frame["student_parameters_m"].fillna(frame["student"].map(counts))
    return frame


def _drop_duplicate_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per (task, trial_id): a finished copy over an unfinished one, else the first given."""
    finished = frame["status"].isin(FINISHED).fillna(False).astype(bool)
    keyed = frame["trial_id"].notna()
    ranked = frame.assign(_finished=finished).sort_values("_finished", ascending=False, kind="stable")
    dup = ranked[keyed.loc[ranked.index]].duplicated(["task", "trial_id"], keep="first")
    frame = frame.drop(index=dup[dup].index)
    # The same run configuration (e.g. the ce baseline every sweep adds, in two sweeps of one student) is one
    # experiment, not two seeds: count it once, the first finished copy given.
    same_run = ["task", "teacher", "teacher_fine_tuned", "student", "loss", "lam", "tau", "seed", "lr", "max_epochs"]
    finished = frame["status"].isin(FINISHED).fillna(False).astype(bool)
    ranked = frame.assign(_finished=finished).sort_values("_finished", ascending=False, kind="stable")
    dup = ranked[ranked["_finished"]].duplicated([c for c in same_run if c in frame], keep="first")
    return frame.drop(index=dup[dup].index).reset_index(drop=True)


def _setting_view(trials: pd.DataFrame) -> pd.DataFrame:
    """Add the grouping columns: _loss (λ = 1 is exactly CE, whatever the loss) and rounded _lam/_tau/_lr."""
    df = trials.copy()
    is_ce = ((df["loss"] == "ce") | (df["lam"] >= 1.0)).fillna(False).astype(bool)
    df["_loss"] = df["loss"].where(~is_ce, "ce").astype(object)
    df["_lam"] = df["lam"].where(~is_ce, 1.0).round(6)
    df["_tau"] = df["tau"].where(~(is_ce | df["_loss"].isin(_temperature_free())), 1.0).round(6)
    df["_lr"] = df["lr"].round(12)
    # Distilling from a fine-tuned teacher is a different (costlier) experiment: its own row, never pooled.
    fine_tuned = df["teacher_fine_tuned"].fillna(False).astype(bool) & (df["_loss"] != "ce")
    df.loc[fine_tuned, "_loss"] = df.loc[fine_tuned, "_loss"] + FINE_TUNED_SUFFIX
    df["_method"] = _method_labels(df)
    return df


def _method_labels(df: pd.DataFrame) -> pd.Series:
    """Paper-table method: the loss, with " τ=2" when τ ≠ 1; "(τ tuned)" when a search drew many τ values."""
    labels = df["_loss"].astype(object).copy()
    n_taus = df.groupby(["student", "_loss"], dropna=False)["_tau"].transform("nunique")
    for index in df.index:
        loss, tau = df.at[index, "_loss"], df.at[index, "_tau"]
        if loss in _temperature_free() or pd.isna(tau):
            continue
        if n_taus[index] > MAX_TAU_ROWS:
            labels[index] = f"{loss} (τ tuned)"
        elif tau != 1.0:
            labels[index] = f"{loss} τ={tau:g}"
    return labels


def _best_settings(df: pd.DataFrame, keys: list[str], extra: Iterable[str] = ()) -> pd.DataFrame:
    """For each group: the (λ, τ, lr) setting with the best mean score over its seeds, and its statistics.

    Ties go to the smaller λ, then τ, then lr (deterministic).
    """
    extra = list(extra)
    records = []
    for key, group in df.groupby(keys, dropna=False, sort=False):
        stats = group.groupby(_SETTING, dropna=False).agg(
            score_mean=("best_score", "mean"), score_std=("best_score", "std"), n_seeds=("best_score", "count"),
            final_score_mean=("final_score", "mean"), **{c: (c, "mean") for c in extra}).reset_index()
        stats = stats[stats["score_mean"].notna()]
        if stats.empty:
            continue
        ranked = stats.assign(_rank=stats["score_mean"].round(12))  # float noise must not break a tie
        best = ranked.sort_values(["_rank", *_SETTING], ascending=[False, True, True, True], kind="stable").iloc[0]
        record = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        record.update(best_lam=best["_lam"], best_tau=best["_tau"], best_lr=best["_lr"],
                      score_mean=best["score_mean"], score_std=best["score_std"], n_seeds=int(best["n_seeds"]),
                      final_score_mean=best["final_score_mean"], settings_tried=len(stats),
                      n_trials=int(group["best_score"].notna().sum()),
                      wall_seconds_mean=group["wall_seconds"].mean(),
                      device_hours_total=group["device_hours"].sum(min_count=1),
                      peak_gpu_mb_max=group["peak_gpu_mb"].max() if "peak_gpu_mb" in group else None,
                      student_parameters_m=group["student_parameters_m"].max(),
                      metric=_first(group["metric"]),
                      teacher=", ".join(sorted({str(t) for t in group["teacher"].dropna()})) or None,
                      **{c: best[c] for c in extra})
        records.append(record)
    return pd.DataFrame(records)


def _first(values: pd.Series):
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


def _task_rank(task: str) -> tuple[float, str]:
    """The task registry's paper order (makd.tasks); an unknown task (an old CSV) goes last."""
    from makd.tasks import TASKS

    return (TASKS[task].paper_order if task in TASKS else math.inf, str(task))


def _loss_rank(loss: str) -> tuple[float, str]:
    """The registry's display order (makd.losses); a loss no longer registered (an old CSV) goes last."""
    from makd.losses import LOSSES

    base = str(loss).split(" ")[0].rstrip(",")
    return (LOSSES[base].order if base in LOSSES else 10**6, str(loss))


def _temperature_free() -> list[str]:
    """Losses whose value ignores τ (makd.losses registry): their rows are at τ = 1."""
    from makd.losses import LOSSES

    return [name for name, spec in LOSSES.items() if not spec.uses_tau]


def _student_order(trials: pd.DataFrame) -> list[str]:
    params = trials.groupby("student", dropna=True)["student_parameters_m"].max()
    return sorted(params.index, key=lambda s: (math.inf if pd.isna(params[s]) else params[s], str(s)))


def leaderboard_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per task × student × loss, from finished trials (see the module docstring for the score).

    The hyperparameter setting is (λ, τ, lr); its score is the mean best_score over seeds; the row reports the
    setting with the best mean (`best_lam`, `best_tau`, `best_lr`), `score_mean` and `score_std` (ddof 1, NaN for
    one seed) over its `n_seeds` trials, and `final_score_mean` at that setting. Any loss at λ = 1 is plain CE and
    joins the `ce` row. `delta_vs_vanilla` = score_mean − vanilla's score_mean at vanilla's own best setting (KD
    losses other than vanilla); `delta_vs_ce` = score_mean − the ce row's score_mean (every row but ce). Cost
    columns cover all of the row's trials: `wall_seconds_mean` per trial, `device_hours_total` summed.
    """
    if trials.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    df = _setting_view(trials)
    board = _best_settings(df, ["task", "student", "_loss"]).rename(columns={"_loss": "loss"})
    if board.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    per_cell = board.set_index(["task", "student", "loss"])["score_mean"]

    def reference(row, loss):
        return per_cell.get((row["task"], row["student"], loss), np.nan)

    board["delta_vs_vanilla"] = [np.nan if row["loss"] in ("ce", "vanilla") else row["score_mean"] -
                                 reference(row, "vanilla") for _, row in board.iterrows()]
    board["delta_vs_ce"] = [np.nan if row["loss"] == "ce" else row["score_mean"] - reference(row, "ce")
                            for _, row in board.iterrows()]
    students = {s: i for i, s in enumerate(_student_order(trials))}
    order = sorted(board.index, key=lambda i: (_task_rank(board.at[i, "task"]),
                                               students.get(board.at[i, "student"], len(students)),
                                               _loss_rank(board.at[i, "loss"])))
    return board.loc[order, LEADERBOARD_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------- paper table


def _task_header(task: str, metric: str | None) -> str:
    """A column of the paper-style table: the task's GLUE name (task registry) and the trials' metric."""
    from makd.tasks import METRIC_LABELS, TASKS

    name = TASKS[task].glue_dir if task in TASKS else task
    if metric == "accuracy_m":
        return f"{name}-m/mm (Acc)"
    return f"{name} ({METRIC_LABELS.get(metric, metric)})" if metric else name


def _format_params(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def paper_table(trials: pd.DataFrame) -> str:
    """Table 2 of the paper, in Markdown: rows student × method, columns tasks, scores ×100, best per block bold.

    A cell is the mean dev score over seeds at the λ (and lr) with the best mean for that task, student and method;
    a method is the loss, split by τ ("vanilla τ=2") unless a search drew many τ values ("vanilla (τ tuned)").
    MNLI shows matched/mismatched accuracy (mismatched at the epoch chosen on matched); the Average is the mean of
    the row's headline numbers, MNLI counted by its matched accuracy only.
    """
    if trials.empty:
        return "(no finished trials)\n"
    df = _setting_view(trials)
    extra = [c for c in ("best_glue_accuracy_mm",) if c in df.columns]
    cells = _best_settings(df, ["task", "student", "_method"], extra=extra)
    tasks = sorted(cells["task"].unique(), key=_task_rank)
    metric = {t: _first(cells.loc[cells["task"] == t, "metric"]) for t in tasks}
    header = ["Student", "Params (M)", "Method", *[_task_header(t, metric[t]) for t in tasks], "Average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(tasks) + 1)) + "|"]
    incomplete = False
    for student in [s for s in _student_order(trials) if s in set(cells["student"])]:
        block = cells[cells["student"] == student]
        methods = sorted(block["_method"].unique(), key=_loss_rank)
        values = {m: {} for m in methods}  # method -> task -> (headline, text)
        for _, cell in block.iterrows():
            head = cell["score_mean"] * 100
            text = f"{head:.1f}"
            if metric[cell["task"]] == "accuracy_m":
                mm = cell.get("best_glue_accuracy_mm", np.nan)
                text = f"{head:.1f}/{mm * 100:.1f}" if pd.notna(mm) else f"{head:.1f}/–"
            values[cell["_method"]][cell["task"]] = (head, text)
        averages, covered = {}, {}
        for m in methods:
            heads = [values[m][t][0] for t in tasks if t in values[m]]
            averages[m] = float(np.mean(heads)) if heads else np.nan
            covered[m] = len(heads)
            incomplete |= len(heads) < len(tasks)
        best = {t: max((round(values[m][t][0], 1) for m in methods if t in values[m]), default=None) for t in tasks}
        # Averages over different task sets are not comparable: bold only among the rows that cover the most tasks.
        widest = max(covered.values(), default=0)
        best_avg = max((round(a, 1) for m, a in averages.items() if pd.notna(a) and covered[m] == widest),
                       default=None)
        params = _format_params(block["student_parameters_m"].max())
        for i, m in enumerate(methods):
            row = [str(student) if i == 0 else "", params if i == 0 else "", m]
            for t in tasks:
                if t not in values[m]:
                    row.append("–")
                    continue
                head, text = values[m][t]
                row.append(f"**{text}**" if round(head, 1) == best[t] else text)
            avg = averages[m]
            avg_text = "–" if pd.isna(avg) else f"{avg:.1f}"
            if covered[m] == widest and pd.notna(avg) and round(avg, 1) == best_avg:
                avg_text = f"**{avg_text}**"
            if 0 < covered[m] < len(tasks):
                avg_text += f" ({covered[m]} of {len(tasks)})"
            row.append(avg_text)
            lines.append("| " + " | ".join(row) + " |")
    notes = ["Dev-set scores ×100: the mean over seeds at the λ (and lr) with the best mean dev score for each task, "
             "student and method; a trial's score is its best epoch. Best per student in **bold**.",
             "ce is cross-entropy on the labels only (λ = 1). At τ = 1 the taylor loss trains exactly like ce "
             "(its gradient does not depend on the teacher), so taylor vs ce differences are seed noise."]
    if "mnli" in tasks:
        notes.insert(1, "MNLI: matched/mismatched accuracy (mismatched at the epoch chosen on matched); the "
                        "Average uses matched accuracy only.")
    if incomplete:
        notes.append("Average over the tasks a row has results for, marked \"(n of N)\" when that is not all of them "
                     "(bold compares only rows that cover the same, widest set of tasks); – marks a task with no "
                     "finished trial.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


# ----------------------------------------------------------------------------------------------------- build


def build(paths: Iterable[str | os.PathLike]) -> Leaderboard:
    """Read and merge experiment dirs and trials CSVs; UsageError names the first bad path."""
    paths = [str(p) for p in paths]
    if not paths:
        raise UsageError("leaderboard", "give at least one experiment dir or trials CSV")
    frames, sources = [], []
    for path in paths:
        frame, how = read_trials(path)
        status = frame["status"].fillna("NOT_STARTED")
        if not status.isin(FINISHED).any():
            counts = ", ".join(f"{n} {s}" for s, n in status.value_counts().items())
            raise UsageError(path, f"no finished trials yet ({counts or 'no trials'})")
        frames.append(frame.assign(source=path))
        sources.append(how)
    merged = pd.concat(frames, ignore_index=True)
    merged = _fill_parameter_counts(_drop_duplicate_trials(_ordered(merged)))
    finished_mask = merged["status"].isin(FINISHED).fillna(False).astype(bool)
    rest = merged.loc[~finished_mask, "status"].fillna("NOT_STARTED")
    trials = merged[finished_mask].reset_index(drop=True)
    return Leaderboard(trials=trials, leaderboard=leaderboard_table(trials), paper_table_markdown=paper_table(trials),
                       unfinished=int(len(rest)), unfinished_by_status={str(k): int(v) for k, v in
                                                                        rest.value_counts().items()},
                       sources=sources)


def leaderboard_text(board: pd.DataFrame) -> str:
    """The leaderboard as a plain-text table (what `makd leaderboard` prints)."""
    if board.empty:
        return "(no finished trials)"
    cols = ["task", "student", "loss", "metric", "best_lam", "best_tau", "score_mean", "score_std", "n_seeds",
            "final_score_mean", "delta_vs_vanilla", "delta_vs_ce", "n_trials", "wall_seconds_mean",
            "device_hours_total"]
    return board[cols].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4f}")


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()
