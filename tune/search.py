"""Param spaces, search algorithms and schedulers for one task's Tuner.

One Tuner per task: ASHA compares a single scalar across trials, and GLUE metrics (accuracy, F1, Pearson, MCC)
are not comparable across tasks.
"""

from __future__ import annotations

from tune.config import SweepConfig, categorical_cells, grid_cells

METRIC = "score"  # every trial reports its task's headline GLUE metric under this key
MODE = "max"  # every GLUE headline metric is higher-is-better
TIME_ATTR = "epoch"  # a monotonic epoch that survives restores (Tune's training_iteration restarts at 1)


def param_space(cfg: SweepConfig) -> dict:
    from ray import tune as ray_tune

    if cfg.search.kind == "grid":
        return {"cell": ray_tune.grid_search(grid_cells(cfg))}
    space = {"student": ray_tune.choice(list(cfg.students)), "loss": ray_tune.choice(list(cfg.losses)),
             "seed": ray_tune.choice(list(cfg.seeds)), "lam": ray_tune.uniform(*cfg.search.lam)}
    space["lr"] = ray_tune.loguniform(*cfg.search.lr) if cfg.search.lr else cfg.lr
    space["tau"] = ray_tune.uniform(*cfg.search.tau) if cfg.search.tau else ray_tune.choice(list(cfg.taus))
    return space


def optuna_start_points(cfg: SweepConfig) -> list[dict]:
    """One full point per (student, loss, seed) cell, so Optuna tries every categorical cell at least once."""
    lam = (cfg.search.lam[0] + cfg.search.lam[1]) / 2
    lr = cfg.lr if not cfg.search.lr else min(max(cfg.lr, cfg.search.lr[0]), cfg.search.lr[1])
    tau = (cfg.search.tau[0] + cfg.search.tau[1]) / 2 if cfg.search.tau else cfg.taus[0]
    points = []
    for cell in categorical_cells(cfg):
        point = {**cell, "lam": 1.0 if cell["loss"] == "ce" and cfg.search.lam[1] == 1.0 else lam, "tau": tau}
        if cfg.search.lr:
            point["lr"] = lr
        points.append(point)
    return points


def search_algorithm(cfg: SweepConfig):
    if cfg.search.kind != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=METRIC, mode=MODE, seed=cfg.search.seed, points_to_evaluate=optuna_start_points(cfg))


def scheduler(cfg: SweepConfig):
    if cfg.scheduler.kind != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=TIME_ATTR, max_t=cfg.max_epochs, grace_period=cfg.scheduler.grace_period,
                         reduction_factor=cfg.scheduler.reduction_factor)


def num_samples(cfg: SweepConfig) -> int:
    return cfg.search.n_trials if cfg.search.kind == "optuna" else 1
