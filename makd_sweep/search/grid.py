"""Grid search: every (student, loss, λ, τ, seed) point once, without points that would train the same student twice."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from makd.errors import UsageError
from makd.losses import LOSSES
from makd_sweep.pack import pack_points
from makd_sweep.search.base import SearchConfig, SearchKind
from makd_sweep.search_space import grid_settings

if TYPE_CHECKING:
    from makd_sweep.sweep_config import SweepConfig


def grid_points(cfg: SweepConfig, settings: list[dict] | None = None) -> list[dict]:
    """The full grid for one task, without duplicates that would train the identical student twice.

    Each setting (of `search_space`'s keys; default: every combination of its grid values) is crossed with the
    (student, loss, λ, τ, seed) grid, its λ or τ replacing the listed ones. `ce` runs once per (student, seed,
    setting) at lam=1; a KD loss at lam=1 is exactly `ce`, so it is not run again; losses whose value ignores tau
    (ce, mse, ortho) run at tau=1 only.
    """
    points, seen = [], set()
    for setting in grid_settings(cfg.search_space) if settings is None else settings:
        lams, taus = [setting.get("lam", lam) for lam in cfg.lams], [setting.get("tau", tau) for tau in cfg.taus]
        trained = {key: value for key, value in setting.items() if key not in ("lam", "tau")}
        for student, loss, lam, tau, seed in itertools.product(cfg.students, cfg.losses, dict.fromkeys(lams),
                                                               dict.fromkeys(taus), cfg.seeds):
            if loss == "ce":
                lam, tau = 1.0, 1.0
            elif lam >= 1.0:
                continue
            if not LOSSES[loss].uses_tau:  # one tau is enough
                tau = 1.0
            point = {"student": student, "loss": loss, "lam": float(lam), "tau": float(tau), "seed": int(seed),
                     "lr": float(cfg.train.lr), **trained}
            key = tuple(sorted(point.items()))
            if key not in seen:
                seen.add(key)
                points.append(point)
    return points


class PointsSearch(SearchKind):
    """Trials at given points, in order: one flat trial config per point (Ray Tune's BasicVariantGenerator)."""

    def points(self, cfg: SweepConfig) -> list[dict]:
        raise NotImplementedError

    def packs(self, cfg: SweepConfig) -> bool:
        """Whether its points run in packs (makd_sweep/pack.py): only where no scheduler stops a trial early, which
        would stop every member of a pack at once."""
        return cfg.pack.on and cfg.scheduler.kind == "none"

    def trial_points(self, cfg: SweepConfig) -> list[dict]:
        """The Ray trials' configs: one per point, or one per pack of points."""
        if not self.packs(cfg):
            return self.points(cfg)
        return pack_points(self.points(cfg), cfg.pack)

    def param_space(self, cfg: SweepConfig) -> dict:
        """Every key of the points, as a choice over its values; the points themselves come from `algorithm`."""
        from ray import tune as ray_tune

        points = self.trial_points(cfg)
        return {key: ray_tune.choice(list(dict.fromkeys(p[key] for p in points))) for key in points[0]}

    def algorithm(self, cfg: SweepConfig):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Tune wraps only a Searcher in its ConcurrencyLimiter; this generator must apply the limit itself
        return BasicVariantGenerator(points_to_evaluate=self.trial_points(cfg),
                                     max_concurrent=cfg.max_concurrent_trials or 0)

    def trials_per_task(self, cfg: SweepConfig) -> int:
        return len(self.trial_points(cfg))

    def may_use_teacher(self, cfg: SweepConfig) -> bool:
        return any(p["lam"] < 1 for p in self.points(cfg))


class GridSearch(PointsSearch):
    name = "grid"

    def points(self, cfg: SweepConfig) -> list[dict]:
        return grid_points(cfg)

    def parse(self, raw: dict) -> SearchConfig:
        if set(raw) - {"kind"}:
            raise UsageError("search", "grid search takes no other fields (list values in lams/taus/seeds)")
        return SearchConfig()

    def check(self, cfg: SweepConfig) -> None:
        for dim in cfg.search_space:
            if not dim.is_grid:
                raise UsageError(f"search_space.{dim.key}", f"grid search enumerates: write {{grid: [...]}}, or "
                                                            f"sample {dim.distribution} with search.kind random or optuna")

