"""Optuna (TPE) over λ (and lr, τ ranges when given, and search_space): one study per (student, loss, seed)
category, each given the same number of trials in turn (search/per_category.py); with `objectives: [score, COST]`
NSGA-II searches the score and a cost (student parameters, inference latency or trial hours) together, students
and losses included, for a Pareto set instead of one best setting."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from makd.config import parse_field
from makd.errors import UsageError
from makd_sweep.fields import value_range
from makd_sweep.search.base import METRIC, MODE, SearchConfig, SearchKind

if TYPE_CHECKING:
    from makd_sweep.sweep_config import SweepConfig


def categories(cfg: SweepConfig) -> list[dict]:
    """(student, loss, seed) categories: what Optuna must cover once each while it searches lam/lr/tau."""
    return [{"student": s, "loss": loss, "seed": seed}
            for s, loss, seed in itertools.product(cfg.students, cfg.losses, cfg.seeds)]


def start_points(cfg: SweepConfig) -> list[dict]:
    """One full point per (student, loss, seed) category, so Optuna tries every category at least once."""
    search = cfg.search
    lam = (search.lam[0] + search.lam[1]) / 2
    lr = cfg.train.lr if not search.lr else min(max(cfg.train.lr, search.lr[0]), search.lr[1])
    tau = (search.tau[0] + search.tau[1]) / 2 if search.tau else cfg.taus[0]
    points = []
    for category in categories(cfg):
        point = {**category, "lam": 1.0 if category["loss"] == "ce" and search.lam[1] == 1.0 else lam, "tau": tau}
        if search.lr:
            point["lr"] = lr
        for dim in cfg.search_space:  # search_space's keys: a fixed first value inside each one's range
            point[dim.key] = dim.start_value()
        points.append(point)
    return points


# a cost a multi-objective search minimises -> the per-epoch metric every trial reports (makd_sweep/trial.py)
COST_OBJECTIVES = {"params": "student_parameters_m", "latency": "latency_ms", "device_hours": "trial_hours"}


def parse_objectives(raw) -> tuple[str, ...]:
    objectives = raw if isinstance(raw, (list, tuple)) else [raw]
    if not objectives or objectives[0] != METRIC:
        raise UsageError("search.objectives", f"expected [score] or [score, COST] (COST: "
                                              f"{', '.join(COST_OBJECTIVES)}), got {raw!r}")
    for i, name in enumerate(objectives[1:], start=1):
        if name not in COST_OBJECTIVES:
            raise UsageError(f"search.objectives[{i}]", f"unknown objective {name!r} (choose from "
                                                        f"{', '.join(COST_OBJECTIVES)})")
    if len(set(objectives)) != len(objectives):
        raise UsageError("search.objectives", f"lists an objective twice: {raw!r}")
    return tuple(objectives)


class OptunaSearch(SearchKind):
    name = "optuna"
    shown = (*SearchKind.shown, "lr")
    fields = frozenset({"kind", "n_trials", "seed", "lam", "lr", "tau", "objectives"})

    def parse(self, raw: dict) -> SearchConfig:
        return SearchConfig(
            kind=self.name, n_trials=parse_field(SearchConfig, "n_trials", raw.get("n_trials", 0), "search.n_trials"),
            seed=parse_field(SearchConfig, "seed", raw.get("seed", 0), "search.seed"),
            lam=value_range(SearchConfig, "lam", raw.get("lam", [0.0, 1.0]), "search.lam"),
            lr=value_range(SearchConfig, "lr", raw["lr"], "search.lr") if "lr" in raw else None,
            tau=value_range(SearchConfig, "tau", raw["tau"], "search.tau") if "tau" in raw else None,
            objectives=parse_objectives(raw.get("objectives", [METRIC])))

    def check(self, cfg: SweepConfig) -> None:
        if self.multi_objective(cfg) and cfg.scheduler.kind != "none":
            raise UsageError("scheduler", "ASHA and HyperBand stop trials by one metric; a search over "
                                          f"{', '.join(cfg.search.objectives)} needs scheduler: {{kind: none}}")
        if "latency" in cfg.search.objectives and not cfg.train.inference_batch_size:
            raise UsageError("search.objectives", "latency is measured only with inference_batch_size > 0")
        for dim in cfg.search_space:
            if dim.is_grid:
                raise UsageError(f"search_space.{dim.key}", "Optuna samples: write {choice: [...]} (a grid is for "
                                                            "search.kind grid or random)")
            if dim.key in ("lam", "lr", "tau") and getattr(cfg.search, dim.key) != getattr(SearchConfig(), dim.key):
                raise UsageError(f"search_space.{dim.key}", f"also searched by search.{dim.key}: drop one of them")
        needed = len(categories(cfg))
        if cfg.search.n_trials < needed:
            raise UsageError("search.n_trials", f"{cfg.search.n_trials} is fewer than the {needed} categories "
                                                "(student x loss x seed): each must be tried once")
        if not self.multi_objective(cfg) and cfg.search.n_trials % needed:
            raise UsageError("search.n_trials", f"{cfg.search.n_trials} is not a multiple of the {needed} categories "
                                                "(student x loss x seed): each gets its own study and the same number "
                                                "of trials")

    def may_use_teacher(self, cfg: SweepConfig) -> bool:
        lam = next((dim for dim in cfg.search_space if dim.key == "lam"), None)
        return (min(lam.args) if lam and lam.distribution in ("choice", "grid") else
                lam.args[0] if lam else cfg.search.lam[0]) < 1

    def param_space(self, cfg: SweepConfig) -> dict:
        """Student, loss and seed as categories, λ / lr / τ from `search:`'s ranges, then search_space's keys
        (Ray's OptunaSearch turns Ray Tune's domains into Optuna's distributions)."""
        from ray import tune as ray_tune

        search = cfg.search
        return {"student": ray_tune.choice(list(cfg.students)), "loss": ray_tune.choice(list(cfg.losses)),
                "seed": ray_tune.choice(list(cfg.seeds)), "lam": ray_tune.uniform(*search.lam),
                "lr": ray_tune.loguniform(*search.lr) if search.lr else cfg.train.lr,
                "tau": ray_tune.uniform(*search.tau) if search.tau else ray_tune.choice(list(cfg.taus)),
                **{dim.key: dim.to_ray() for dim in cfg.search_space}}

    def algorithm(self, cfg: SweepConfig):
        from ray.tune.search.optuna import OptunaSearch as RayOptunaSearch

        if not self.multi_objective(cfg):  # one TPE study per category, in turn: the same budget per method
            from makd_sweep.search.per_category import PerCategorySearcher

            starts = start_points(cfg)

            def study(index: int, category: dict) -> RayOptunaSearch:
                first = {k: v for k, v in starts[index].items() if k not in category}
                return RayOptunaSearch(metric=METRIC, mode=MODE, seed=cfg.search.seed + index,
                                       points_to_evaluate=[first])

            return PerCategorySearcher(categories(cfg), study, METRIC, MODE)
        import optuna

        costs = [COST_OBJECTIVES[name] for name in cfg.search.objectives[1:]]
        return RayOptunaSearch(metric=[METRIC, *costs], mode=[MODE, *["min"] * len(costs)],
                               sampler=optuna.samplers.NSGAIISampler(seed=cfg.search.seed),
                               points_to_evaluate=start_points(cfg))

    def trials_per_task(self, cfg: SweepConfig) -> int:
        return cfg.search.n_trials
