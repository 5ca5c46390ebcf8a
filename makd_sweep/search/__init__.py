"""Search kinds (how one task's trials are chosen) and the early-stopping scheduler, for one task's Tuner.

One Tuner per task: ASHA compares a single scalar across trials, and GLUE metrics (accuracy, F1, Pearson, MCC)
are not comparable across tasks. A search kind is a `SearchKind` subclass (makd_sweep/search/base.py) registered here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makd.errors import UsageError
from makd.losses import LOSSES
from makd_sweep.fields import mapping
from makd_sweep.search.base import METRIC, MODE, SWEPT, TIME_ATTR, SearchConfig, SearchKind
from makd_sweep.search.grid import GridSearch
from makd_sweep.search.optuna_search import OptunaSearch
from makd_sweep.search.pbt import pbt_scheduler
from makd_sweep.search.random_search import RandomSearch

if TYPE_CHECKING:
    from makd.teacher_spec import TeacherSpec
    from makd_sweep.sweep_config import SweepConfig

__all__ = ["METRIC", "MODE", "SEARCH_KINDS", "SWEPT", "TIME_ATTR", "SearchConfig", "SearchKind", "get_search_kind",
           "parse_search", "register_search_kind", "scheduler", "teacher_spec", "trial_budget", "uses_teacher"]

SEARCH_KINDS: dict[str, SearchKind] = {}


def register_search_kind(kind: SearchKind) -> SearchKind:
    SEARCH_KINDS[kind.name] = kind
    return kind


for _kind in (GridSearch(), RandomSearch(), OptunaSearch()):
    register_search_kind(_kind)


def get_search_kind(name: str) -> SearchKind:
    if name not in SEARCH_KINDS:
        raise UsageError("search.kind", f"expected {', '.join(SEARCH_KINDS)}, got {name!r}")
    return SEARCH_KINDS[name]


def parse_search(raw: Any) -> SearchConfig:
    """The `search:` section (missing: grid) -> SearchConfig, by its kind."""
    raw = mapping(raw, "search", set().union(*(kind.fields for kind in SEARCH_KINDS.values())),
                  "{kind: grid} or {kind: optuna, n_trials: 20}")
    kind = get_search_kind(raw.get("kind", "grid"))
    unknown = sorted(set(raw) - kind.fields)
    if unknown:
        raise UsageError(f"search.{unknown[0]}", f"not a field of {kind.name} search")
    return kind.parse(raw)


def uses_teacher(cfg: SweepConfig) -> bool:
    """Whether some trial of the sweep reads teacher logits: a KD loss, and a setting with λ < 1 (by search kind)."""
    reads = any(LOSSES[loss].needs_teacher_logits for loss in cfg.losses)
    return reads and get_search_kind(cfg.search.kind).may_use_teacher(cfg)


def teacher_spec(cfg: SweepConfig, task: str) -> TeacherSpec | None:
    """What the task's teacher-logit cache is keyed by; None when no trial reads teacher logits."""
    return cfg.train.teacher_for(task) if uses_teacher(cfg) else None


def trial_budget(cfg: SweepConfig) -> int:
    """Trials the whole sweep runs (every task)."""
    return get_search_kind(cfg.search.kind).trials_per_task(cfg) * len(cfg.tasks)


def _asha(cfg: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=TIME_ATTR, max_t=cfg.max_epochs, grace_period=cfg.scheduler.grace_period,
                         reduction_factor=cfg.scheduler.reduction_factor)


def _hyperband(cfg: SweepConfig):
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=TIME_ATTR, max_t=cfg.max_epochs,
                              reduction_factor=cfg.scheduler.reduction_factor)


# scheduler.kind -> Ray Tune's scheduler on the epoch (the metric and mode come from the Tuner); "none": Tune's FIFO
SCHEDULERS = {"asha": _asha, "hyperband": _hyperband, "pbt": pbt_scheduler}


def scheduler(cfg: SweepConfig):
    """The sweep's scheduler (ASHA or HyperBand stop trials early, PBT exploits and explores), or None (every trial
    runs all epochs as it started)."""
    make = SCHEDULERS.get(cfg.scheduler.kind)
    return make(cfg) if make else None
