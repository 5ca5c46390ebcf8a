"""What a search over `search_space` found: the search stage's score against each searched key (one panel per key)
and each key's importance for the score (Optuna's fANOVA evaluator, fitted on the finished trials as they are: it
works on any trials, not only an Optuna study's). Pure pandas, matplotlib and optuna: Ray is never imported."""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from makd_sweep.experiment_dir import SETTING_KEYS
from makd_sweep.report.plots import method_color

LOG_SCALE_SPAN = 10.0  # a positive key whose values span more than this factor is drawn (and fitted) on a log axis


def varied_keys(trials: pd.DataFrame) -> list[str]:
    """The setting keys these trials tried two or more values of (λ of KD losses only: ce is always λ = 1)."""
    found = []
    for key in SETTING_KEYS:
        if key not in trials:
            continue
        values = trials.loc[trials["loss"] != "ce", key] if key in ("lam", "tau") else trials[key]
        if values.dropna().nunique() > 1:
            found.append(key)
    return found


def _log_scale(values: pd.Series) -> bool:
    values = values.dropna()
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > LOG_SCALE_SPAN


def plot_searched_keys(trials: pd.DataFrame) -> Figure | None:
    """Selection score (×100) of every finished search trial against each key it varied, colored by method; one
    row of panels per task. None when no key other than λ varied (the λ figure shows λ)."""
    keys = varied_keys(trials)
    if not [k for k in keys if k != "lam"]:
        return None
    tasks = list(dict.fromkeys(trials["task"]))
    fig = Figure(figsize=(3.2 * len(keys) + 1.6, 2.9 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), len(keys), squeeze=False)
    for row, task in enumerate(tasks):
        panel = trials[trials["task"] == task]
        for col, key in enumerate(keys):
            ax = axes[row][col]
            # methods on one point (every method trains the same sampled settings) are drawn nested: the first
            # method largest, so that ce stays visible under a method that scored the same
            for i, (loss, group) in enumerate(panel.groupby("loss", sort=False)):
                ax.scatter(group[key], group["best_score"] * 100, s=max(60 - 18 * i, 10), color=method_color(loss),
                           edgecolors="white", linewidths=0.5, label=loss, zorder=2 + i)
            if _log_scale(panel[key]):
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel(f"{task}: selection score ×100" if col == 0 else "")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="method", fontsize="small")
    return fig


def parameter_importance(trials: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per task: each varied key's (and the loss's, where several ran) share of the selection score's variance,
    by Optuna's fANOVA evaluator over the finished search trials. Empty where too few trials or keys."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for task, panel in trials.groupby("task", sort=False):
        panel = panel[panel["best_score"].notna()]
        keys = varied_keys(panel)
        losses = sorted(set(panel["loss"]))
        if not keys or len(panel) < 4:
            continue
        distributions = {key: FloatDistribution(float(panel[key].min()), float(panel[key].max()),
                                                log=_log_scale(panel[key])) for key in keys}
        if len(losses) > 1:
            distributions["loss"] = CategoricalDistribution(losses)
        study = optuna.create_study(direction="maximize")
        for _, trial in panel.iterrows():
            params = {key: float(trial[key]) for key in keys if pd.notna(trial[key])}
            if len(losses) > 1:
                params["loss"] = trial["loss"]
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: distributions[k] for k in params}, value=float(trial["best_score"])))
        try:
            importance = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), params=list(distributions))
        except (RuntimeError, ValueError):  # e.g. every trial scored the same: nothing to apportion
            continue
        rows += [{"task": task, "key": key, "importance": value, "trials": len(panel)}
                 for key, value in importance.items()]
    return pd.DataFrame(rows, columns=["task", "key", "importance", "trials"])
