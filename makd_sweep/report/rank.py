"""Ranking: the best (λ, τ, lr) setting per task × student × loss over seeds, and its differences to the baselines.

**A trial is ranked by its selection score, `best_score`**: the task's headline metric at its best epoch on the
selection split (a seeded train hold-out by default, or dev when a sweep asks for it). A setting (λ, τ, lr) is
ranked by its mean selection score over seeds; the leaderboard reports its mean *dev* score (`dev_score_mean`: dev
at each trial's chosen epoch) and the mean selection score of the last epoch (`last_epoch_score_mean`). Only
finished trials (TERMINATED, or STOPPED early by ASHA) are ranked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from makd.fingerprints import FINGERPRINT_COLUMNS
from makd_sweep.experiment_dir import SCHEDULE, SEARCHED_OPTIONS
from makd_sweep.report.order import loss_rank, student_order, task_rank, temperature_free
from makd_sweep.report.paired import (
    NO_PAIRS,
    UNKNOWN,
    PairedDifference,
    paired_difference,
    reaches_baseline,
)
from makd_sweep.report.sequential import decision

FINE_TUNED_SUFFIX = ", fine-tuned teacher"
ALL_LABELS_SUFFIX = ", all labels"  # a task with transfer data: a row that trained on every label (a reference)
MAX_TAU_ROWS = 4  # more distinct τ than this (an Optuna τ range): one "τ tuned" row instead of one row per τ
BASELINES = ("ce", "vanilla")  # every other row is compared with these, paired by seed
LEADERBOARD_COLUMNS = ["task", "student", "student_parameters_m", "loss", "metric", "selection", "best_lam",
                       "best_tau", "best_lr",
                       "dev_score_mean", "dev_score_std", "n_seeds", "last_epoch_score_mean",
                       *[f"{c}_{b}" for b in BASELINES for c in ("delta_vs", "ci_low_vs", "ci_high_vs", "pairs_vs",
                                                                  "identical_to", "agreement_vs", "decided_vs")],
                       "looks",
                       "constant_predictor", "majority_score", "at_majority", "teacher_score",
                       "settings_tried", "n_trials", "wall_seconds_mean", "device_hours_total", "peak_gpu_mb_max",
                       "latency_ms_mean", "inference_examples_per_s_mean", "cost_measured_on", "teacher",
                       "teacher_fine_tuned"]
_SETTING = ["_lam", "_tau", "_lr"]  # + "_<option>" for each training option the sweep searched (setting_columns)
ADAPTIVE_COLUMNS = ["looks", "tolerance"]  # trials of an adaptive final stage (makd_sweep/search/final.py)
REFERENCE_COLUMNS = ["majority_score", "teacher_score"]  # the task's, on dev: makd/references.py


def setting_view(trials: pd.DataFrame) -> pd.DataFrame:
    """Add the grouping columns: _loss (λ = 1 is exactly CE, whatever the loss) and rounded _lam/_tau/_lr."""
    df = trials.copy()
    is_ce = ((df["loss"] == "ce") | (df["lam"] >= 1.0)).fillna(False).astype(bool)
    df["_loss"] = df["loss"].where(~is_ce, "ce").astype(object)
    df["_lam"] = df["lam"].where(~is_ce, 1.0).round(6)
    df["_tau"] = df["tau"].where(~(is_ce | df["_loss"].isin(temperature_free())), 1.0).round(6)
    df["_lr"] = df["lr"].round(12)
    for key in searched_options(df):  # makd_sweep/search_space.py: part of the setting only where a sweep searched them
        df[f"_{key}"] = pd.to_numeric(df[key], errors="coerce").round(12)
    if scheduled(df):  # PBT: a trial's setting changed as it trained; its schedule is the setting (makd_sweep/schedule.py)
        df["_schedule"] = df[SCHEDULE].fillna("").astype(str)
    # Distilling from a fine-tuned teacher is a different (costlier) experiment: its own row, never pooled.
    fine_tuned = df["teacher_fine_tuned"].fillna(False).astype(bool) & (df["_loss"] != "ce")
    df.loc[fine_tuned, "_loss"] = df.loc[fine_tuned, "_loss"] + FINE_TUNED_SUFFIX
    # Where a task has transfer data (makd/transfer.py), its rows without it used labels the others did not have.
    if "transfer_examples" in df:
        transfer = df["transfer_examples"].fillna(0) > 0
        all_labels = ~transfer & df["task"].isin(set(df.loc[transfer, "task"]))
        df.loc[all_labels, "_loss"] = df.loc[all_labels, "_loss"] + ALL_LABELS_SUFFIX
    df["_method"] = _method_labels(df)
    return df


def searched_options(trials: pd.DataFrame) -> list[str]:
    """The training options these trials searched (search_space): their columns, where some trial has a value."""
    return [key for key in SEARCHED_OPTIONS if key in trials and trials[key].notna().any()]


def scheduled(trials: pd.DataFrame) -> bool:
    """Whether these trials' settings changed as they trained (PBT and its replay): they have schedules."""
    return SCHEDULE in trials and trials[SCHEDULE].notna().any()


def setting_columns(df: pd.DataFrame) -> list[str]:
    """A `setting_view`'s setting: λ, τ, lr, every searched training option and, under PBT, the schedule (λ, τ, lr
    are then its first epoch's)."""
    return _SETTING + [f"_{key}" for key in SEARCHED_OPTIONS if f"_{key}" in df] + \
        (["_schedule"] if "_schedule" in df else [])


def leaderboard_columns(trials: pd.DataFrame) -> list[str]:
    """LEADERBOARD_COLUMNS, with best_<option> after best_lr for every training option the trials searched (and
    best_schedule under PBT)."""
    at = LEADERBOARD_COLUMNS.index("best_lr") + 1
    searched = [f"best_{key}" for key in searched_options(trials)] + (["best_schedule"] if scheduled(trials) else [])
    return [*LEADERBOARD_COLUMNS[:at], *searched, *LEADERBOARD_COLUMNS[at:]]


def _method_labels(df: pd.DataFrame) -> pd.Series:
    """Paper-table method: the loss, with " τ=2" when τ ≠ 1; "(τ tuned)" when a search drew many τ values."""
    labels = df["_loss"].astype(object).copy()
    n_taus = df.groupby(["student", "_loss"], dropna=False)["_tau"].transform("nunique")
    for index in df.index:
        loss, tau = df.at[index, "_loss"], df.at[index, "_tau"]
        if loss in temperature_free() or pd.isna(tau):
            continue
        if n_taus[index] > MAX_TAU_ROWS:
            labels[index] = f"{loss} (τ tuned)"
        elif tau != 1.0:
            labels[index] = f"{loss} τ={tau:g}"
    return labels


def rank_settings(stats: pd.DataFrame, score: str, setting: list[str]) -> pd.DataFrame:
    """One row per setting, best first: by mean selection score (rounded to 12 digits: float noise must not break
    a tie), then the smaller λ, τ, lr. The leaderboard's choice and the final stage's are this one rule."""
    ranked = stats.assign(_rank=stats[score].round(12))
    return (ranked.sort_values(["_rank", *setting], ascending=[False] + [True] * len(setting), kind="stable")
            .drop(columns="_rank"))


def best_settings(df: pd.DataFrame, keys: list[str], extra: Iterable[str] = ()) -> pd.DataFrame:
    """For each group: the (λ, τ, lr) setting with the best mean selection score (`best_score`) over its seeds,
    and its statistics, reported on dev (`dev_score`: the same number unless a train hold-out selected).

    Ties go to the smaller λ, then τ, then lr (deterministic).
    """
    extra = list(extra)
    records = []
    setting = setting_columns(df)
    for key, group in df.groupby(keys, dropna=False, sort=False):
        stats = group.groupby(setting, dropna=False).agg(
            selection_mean=("best_score", "mean"), dev_score_mean=("dev_score", "mean"), dev_score_std=("dev_score", "std"),
            n_seeds=("dev_score", "count"), last_epoch_score_mean=("last_epoch_score", "mean"),
            **{c: (c, "mean") for c in extra}).reset_index()
        stats = stats[stats["selection_mean"].notna()]
        if stats.empty:
            continue
        best = rank_settings(stats, "selection_mean", setting).iloc[0]
        record = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        record.update(best_lam=best["_lam"], best_tau=best["_tau"], best_lr=best["_lr"],
                      **{f"best{column}": best[column] for column in setting[len(_SETTING):]},
                      dev_score_mean=best["dev_score_mean"], dev_score_std=best["dev_score_std"], n_seeds=int(best["n_seeds"]),
                      last_epoch_score_mean=best["last_epoch_score_mean"], settings_tried=len(stats),
                      n_trials=int(group["best_score"].notna().sum()),
                      wall_seconds_mean=group["wall_seconds"].mean(),
                      device_hours_total=group["device_hours"].sum(min_count=1),
                      peak_gpu_mb_max=group["peak_gpu_mb"].max() if "peak_gpu_mb" in group else None,
                      latency_ms_mean=group["latency_ms"].mean() if "latency_ms" in group else None,
                      inference_examples_per_s_mean=group["inference_examples_per_s"].mean()
                      if "inference_examples_per_s" in group else None,
                      cost_measured_on=most_common(group["cost_measured_on"]) if "cost_measured_on" in group else None,
                      student_parameters_m=group["student_parameters_m"].max(),
                      metric=most_common(group["metric"]),
                      selection=selection_kind(group["selection"]) if "selection" in group else "dev",
                      teacher=", ".join(sorted({str(t) for t in group["teacher"].dropna()})) or None,
                      teacher_fine_tuned=group["teacher_fine_tuned"].map(known_true).any()
                      if "teacher_fine_tuned" in group and group["teacher_fine_tuned"].notna().any() else float("nan"),
                      **{c: best[c] for c in extra})
        records.append(record)
    return pd.DataFrame(records)


def selection_kind(values: pd.Series) -> str:
    """Where trials chose their epoch and setting (their `selection` values): train_holdout, dev (older trials
    recorded none: dev), or mixed."""
    found = set(values.dropna()) or {"dev"}
    return found.pop() if len(found) == 1 else "mixed"


def most_common(values: pd.Series):
    """The most frequent non-missing value (None when there is none)."""
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


ARCHITECTURE_COSTS = ("latency_ms", "inference_examples_per_s")  # a property of the student, not of a trial


def architecture_costs(df: pd.DataFrame) -> pd.DataFrame:
    """The inference cost columns as one number per task × student (issue 44): a forward pass costs the same
    whatever the weights, so every cell of a student shows its architecture's cost. Sweeps since then report the one
    number the driver measured for all of a student's trials; in older trials, each measured its own on a loaded
    machine, and the median over the student's trials stands for them all."""
    df = df.copy()
    for column in ARCHITECTURE_COSTS:
        if column in df:
            values = pd.to_numeric(df[column], errors="coerce")
            df[column] = values.groupby([df["task"], df["student"]]).transform("median")
    return df


def leaderboard_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per task × student × loss, from finished trials (see the module docstring for the score).

    The hyperparameter setting is (λ, τ, lr); its score is the mean best_score over seeds; the row reports the
    setting with the best mean (`best_lam`, `best_tau`, `best_lr`), `dev_score_mean` and `dev_score_std` (ddof 1, NaN for
    one seed) over its `n_seeds` trials, and `last_epoch_score_mean` at that setting. Any loss at λ = 1 is plain CE and
    joins the `ce` row. Every row but the baseline's own is compared with `ce` and with `vanilla` (each at its own
    best setting), paired by seed (makd_sweep/report/paired.py): `delta_vs_ce` is the mean paired difference, with its
    95% interval `ci_low_vs_ce`..`ci_high_vs_ce` over `pairs_vs_ce` seeds; `identical_to_ce` when the weights'
    fingerprints are equal at every paired seed (empty when the trials have none) and `agreement_vs_ce` for equal
    scores (identical, same predictions, tie, unknown: makd_sweep/report/paired.py); the same for vanilla.
    `constant_predictor`: every seed at the best setting predicts one class on dev. `majority_score`: the task's
    majority-class (regression: constant) baseline on dev; `at_majority`: the row's 95% CI over seeds reaches it
    (one seed: its score is at or below it), i.e. no measurable learning; `teacher_score`: the row's teacher's own
    dev score (empty for ce, and for trials recorded before makd scored references). Cost columns cover all of the row's trials:
    `wall_seconds_mean` per trial, `device_hours_total` summed.
    """
    columns = leaderboard_columns(trials)
    if trials.empty:
        return pd.DataFrame(columns=columns)
    df = architecture_costs(setting_view(trials))
    board = best_settings(df, ["task", "student", "_loss"], extra=REFERENCE_COLUMNS).rename(columns={"_loss": "loss"})
    if board.empty:
        return pd.DataFrame(columns=columns)
    seeds = {(r["task"], r["student"], r["loss"]): setting_seeds(df, r) for _, r in board.iterrows()}
    differences = paired_differences(seeds)
    for baseline in BASELINES:
        found = [differences.get((r["task"], r["student"], r["loss"], baseline), NO_PAIRS) for _, r in board.iterrows()]
        board[f"delta_vs_{baseline}"] = [d.mean for d in found]
        board[f"ci_low_vs_{baseline}"] = [d.ci_low for d in found]
        board[f"ci_high_vs_{baseline}"] = [d.ci_high for d in found]
        board[f"pairs_vs_{baseline}"] = [d.pairs for d in found]
        # True: the same weights at every paired seed; empty: equal scores without fingerprints (older trials)
        board[f"identical_to_{baseline}"] = pd.array([None if d.agreement == UNKNOWN else d.identical for d in found],
                                                     dtype="boolean")
        board[f"agreement_vs_{baseline}"] = [d.agreement for d in found]
        board[f"decided_vs_{baseline}"] = pd.array([_decided(d, seeds[(r["task"], r["student"], r["loss"])])
                                                    for d, (_, r) in zip(found, board.iterrows(), strict=True)],
                                                   dtype="boolean")
    board["looks"] = pd.array([_looks(seeds[(r["task"], r["student"], r["loss"])]) for _, r in board.iterrows()],
                              dtype="Int64")
    board["constant_predictor"] = pd.array([constant_predictor(seeds[(r["task"], r["student"], r["loss"])])
                                            for _, r in board.iterrows()], dtype="boolean")
    board["at_majority"] = pd.array([reaches_baseline(seeds[(r["task"], r["student"], r["loss"])]["dev_score"],
                                                      r["majority_score"]) for _, r in board.iterrows()],
                                    dtype="boolean")
    students = {s: i for i, s in enumerate(student_order(trials))}
    order = sorted(board.index, key=lambda i: (task_rank(board.at[i, "task"]),
                                               students.get(board.at[i, "student"], len(students)),
                                               loss_rank(board.at[i, "loss"])))
    return board.loc[order, columns].reset_index(drop=True)


def setting_rows(df: pd.DataFrame, cell: pd.Series, key: str = "loss") -> pd.DataFrame:
    """The `setting_view` trials behind a `best_settings` row (its task, student, method and chosen setting);
    `key` is the row's grouping column ("loss", or "_method" for the paper table's method rows)."""
    column = "_loss" if key == "loss" else key
    same = ((df["task"] == cell["task"]) & (df["student"] == cell["student"]) & (df[column] == cell[key])
            & (df["_lam"] == cell["best_lam"]) & (df["_tau"] == cell["best_tau"]) & (df["_lr"] == cell["best_lr"])
            & df["best_score"].notna())
    for setting in setting_columns(df)[len(_SETTING):]:  # a searched option: missing where a trial did not search it
        best = cell[f"best{setting}"]
        same &= df[setting].isna() if pd.isna(best) else df[setting] == best
    return df[same]


def setting_seeds(df: pd.DataFrame, cell: pd.Series, key: str = "loss") -> pd.DataFrame:
    """A `best_settings` row's setting by seed: dev_score (the mean over repeats of a seed), and the first repeat's
    weights_fingerprint, predictions_fingerprint and predicted_classes (what `paired_difference` compares)."""
    rows = setting_rows(df, cell, key)
    adaptive = [c for c in ADAPTIVE_COLUMNS if c in rows]
    firsts = rows.groupby("seed")[[*FINGERPRINT_COLUMNS, "predicted_classes", *adaptive]].first()
    return firsts.assign(dev_score=rows.groupby("seed")["dev_score"].mean())


def _looks(seeds: pd.DataFrame) -> int | None:
    """The looks an adaptive final stage planned for these trials (None: a fixed number of seeds)."""
    looks = seeds["looks"].dropna() if "looks" in seeds else pd.Series(dtype=float)
    return None if looks.empty else int(looks.max())


def _decided(difference: PairedDifference, seeds: pd.DataFrame) -> bool | None:
    """Adaptive seeds (makd_sweep/report/sequential.py): the corrected interval excludes 0 or is at most `tolerance`
    points wide; None for a fixed number of seeds or no pairs."""
    if _looks(seeds) is None or difference.pairs == 0:
        return None
    if difference.agreement:
        return True
    if math.isnan(difference.ci_low):
        return False
    return bool(decision(100 * difference.ci_low, 100 * difference.ci_high, float(seeds["tolerance"].dropna().max())))


def constant_predictor(seeds: pd.DataFrame) -> bool | None:
    """Every seed predicts one class on dev (None: unknown, a regression task or trials without the count)."""
    classes = seeds["predicted_classes"]
    if classes.isna().any() or classes.empty:
        return None
    return bool((classes == 1).all())


def known_true(flag) -> bool:
    """A leaderboard flag (True, False or empty: unknown), read as True only when it is known to be."""
    return flag is not None and not pd.isna(flag) and bool(flag)


def paired_differences(seeds: dict[tuple, pd.DataFrame]) -> dict[tuple, PairedDifference]:
    """(task, student, loss, baseline) -> the row's paired difference to the baseline at their best settings, from
    each row's `setting_seeds`."""
    out = {}
    for (task, student, loss), mine in seeds.items():
        for baseline in BASELINES:
            reference = seeds.get((task, student, baseline))
            if loss != baseline and reference is not None and not (baseline == "vanilla" and loss == "ce"):
                looks = max(_looks(mine) or 1, _looks(reference) or 1)  # adaptive seeds: corrected intervals
                out[(task, student, loss, baseline)] = paired_difference(mine, reference, looks=looks)
    return out


def leaderboard_text(board: pd.DataFrame) -> str:
    """The leaderboard as a plain-text table (what `makd leaderboard` prints)."""
    if board.empty:
        return "(no finished trials)"
    cols = ["task", "student", "loss", "metric", "best_lam", "best_tau", "dev_score_mean", "dev_score_std", "n_seeds",
            "last_epoch_score_mean", "delta_vs_ce", "ci_low_vs_ce", "ci_high_vs_ce", "pairs_vs_ce", "agreement_vs_ce",
            "delta_vs_vanilla", "n_trials", "wall_seconds_mean",
            "device_hours_total"]
    if board["looks"].notna().any():  # adaptive seeds: whether each comparison is decided
        cols[cols.index("agreement_vs_ce") + 1:cols.index("agreement_vs_ce") + 1] = ["decided_vs_ce"]
        cols[cols.index("delta_vs_vanilla") + 1:cols.index("delta_vs_vanilla") + 1] = ["decided_vs_vanilla"]
    return board[cols].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4f}")
