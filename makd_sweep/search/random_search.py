"""Random search over `search_space`: num_samples settings drawn once (seeded, by Ray Tune's domains), each trained
by every (student, loss, λ, τ, seed) of the grid: every method gets the same budget and the very same settings
(common random numbers), so their differences are paired."""

from __future__ import annotations

from typing import TYPE_CHECKING

from makd.config import parse_field
from makd.errors import UsageError
from makd_sweep.search.base import SearchConfig
from makd_sweep.search.grid import PointsSearch, grid_points
from makd_sweep.search_space import sampled_settings

if TYPE_CHECKING:
    from makd_sweep.sweep_config import SweepConfig


class RandomSearch(PointsSearch):
    name = "random"
    fields = frozenset({"kind", "num_samples", "seed"})

    def parse(self, raw: dict) -> SearchConfig:
        return SearchConfig(
            kind=self.name,
            num_samples=parse_field(SearchConfig, "num_samples", raw.get("num_samples", 1), "search.num_samples"),
            seed=parse_field(SearchConfig, "seed", raw.get("seed", 0), "search.seed"))

    def check(self, cfg: SweepConfig) -> None:
        if not cfg.search_space:
            raise UsageError("search_space", "random search samples search_space: declare at least one key, e.g. "
                                             "{lr: {loguniform: [1.0e-5, 1.0e-3]}}")

    def points(self, cfg: SweepConfig) -> list[dict]:
        return grid_points(cfg, sampled_settings(cfg.search_space, cfg.search.num_samples, cfg.search.seed))
