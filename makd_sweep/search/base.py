"""What a search kind supplies: its config fields, its param space and search algorithm, its trial budget and the
columns of the progress table. Every trial receives one flat config: student, loss, lam, tau, seed, lr."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from makd_sweep.experiment_dir import SWEPT  # the keys of every trial's config (re-exported: kinds list them)
from makd_sweep.sweep_config import SearchConfig

if TYPE_CHECKING:
    from makd_sweep.sweep_config import SweepConfig

__all__ = ["METRIC", "MODE", "SWEPT", "TIME_ATTR", "SearchConfig", "SearchKind"]

METRIC = "score"  # every trial reports its task's headline GLUE metric under this key
MODE = "max"  # every GLUE headline metric is higher-is-better
TIME_ATTR = "epoch"  # a monotonic epoch that survives restores (Tune's training_iteration restarts at 1)


class SearchKind:
    """One way of choosing a task's trials. Adding one = a subclass in its own module, registered in
    makd_sweep/search/__init__.py; config validation, the driver, budgets and the progress table follow."""

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

    shown: tuple[str, ...] = ("student", "loss", "lam", "tau", "seed")  # the progress table's keys of every sweep

    def progress_columns(self, cfg: SweepConfig) -> list[str]:
        """The config keys the progress table shows (what this kind varies): its own, then every searched key."""
        return [*self.shown, *(key for key in cfg.searched_keys if key not in self.shown)]
