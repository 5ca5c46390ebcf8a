"""What a search kind supplies: its config fields, its param space and search algorithm, its trial budget and the
columns of the progress table. Every trial receives one flat config: student, loss, lam, tau, seed, lr."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from makd.config import option

if TYPE_CHECKING:
    from tune.config import SweepConfig

METRIC = "score"  # every trial reports its task's headline GLUE metric under this key
MODE = "max"  # every GLUE headline metric is higher-is-better
TIME_ATTR = "epoch"  # a monotonic epoch that survives restores (Tune's training_iteration restarts at 1)
SWEPT = ("student", "loss", "lam", "tau", "seed", "lr")  # the keys of every trial's config


@dataclass(frozen=True)
class SearchConfig:
    """The `search:` section, parsed by its kind. Fields a kind does not use keep their defaults."""

    kind: str = option("grid", "a search kind of tune/search/: grid (every combination of the listed values) or "
                       "optuna (Optuna's TPE, or NSGA-II, over the ranges below)")
    n_trials: int = option(0, "optuna: trials per task (at least one per (student, loss, seed) category)", low=1)
    seed: int = option(0, "optuna: the sampler's seed")
    lam: tuple[float, float] = option((0.0, 1.0), "optuna: the λ range [low, high]", low=0.0, high=1.0)
    lr: tuple[float, float] | None = option(None, "optuna: a log-uniform lr range [low, high] (null: the sweep's lr, "
                                            "fixed)", low=0.0, low_open=True)
    tau: tuple[float, float] | None = option(None, "optuna: a uniform τ range [low, high] (null: the taus list as "
                                             "a category)", low=0.0, low_open=True)
    objectives: tuple[str, ...] = option(("score",), "optuna: [score] or [score, COST], COST one of params, latency, "
                                         "device_hours (NSGA-II: a Pareto set; scheduler none)")


class SearchKind:
    """One way of choosing a task's trials. Adding one = a subclass in its own module, registered in
    tune/search/__init__.py; config validation, the driver, budgets and the progress table follow."""

    name = ""
    fields: frozenset[str] = frozenset({"kind"})  # the keys its `search:` section may hold

    def parse(self, raw: dict) -> SearchConfig:
        """The `search:` mapping (kind included) -> SearchConfig; UsageError names `search.<field>`."""
        raise NotImplementedError

    def check(self, cfg: SweepConfig) -> None:
        """Checks that need the whole sweep config (UsageError naming the field)."""

    def multi_objective(self, cfg: SweepConfig) -> bool:
        """Whether the search optimises more than the score (then Tune itself is given no single metric)."""
        return len(cfg.search.objectives) > 1

    def may_use_teacher(self, cfg: SweepConfig) -> bool:
        """Whether some trial can have lam < 1 (then a KD loss reads the teacher's logits)."""
        raise NotImplementedError

    def param_space(self, cfg: SweepConfig) -> dict[str, Any]:
        raise NotImplementedError

    def algorithm(self, cfg: SweepConfig):
        """A Ray Tune Searcher, or None for Tune's default."""
        return None

    def trials_per_task(self, cfg: SweepConfig) -> int:
        raise NotImplementedError

    def progress_columns(self, cfg: SweepConfig) -> list[str]:
        """The config keys the progress table shows (what this kind varies)."""
        return ["student", "loss", "lam", "tau", "seed"]
