"""Population Based Training (`scheduler: {kind: pbt}`): Ray Tune's PopulationBasedTraining, run per method.

Every `perturbation_interval` epochs (before the last) the whole population waits for its slowest trial (Ray's
synchronous PBT), then each trial in the bottom `quantile_fraction` goes on from the checkpoint of one in the top,
with the donor's setting perturbed (each perturbed key multiplied by 0.8 or 1.2, or drawn anew from search_space,
then put back inside it). A population is one method's trials for one seed: same student, loss and seed (and λ or τ
where they are listed, not searched), so a ce trial never becomes a vanilla one and every method gets the same number
of trials and epochs. Only settings a run can change between epochs are perturbed (makd.config.CHANGEABLE_SETTINGS:
λ, τ, lr, weight decay, the clipping norm); other searched keys (batch size, warm-up) are drawn once per trial and
copied with the donor's checkpoint. The explore step draws from Python's and NumPy's global generators, unseeded:
two runs of one sweep may perturb differently.

A trial's setting thus changes while it runs: it records its schedule (the setting from each epoch on,
makd_sweep/trial.py), inherited with the donor's checkpoint, and the final stage replays the winning schedule for
every final seed (makd_sweep/search/final.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from makd.config import CHANGEABLE_SETTINGS
from makd.errors import UsageError
from makd.losses import LOSSES
from makd_sweep.search.base import TIME_ATTR

if TYPE_CHECKING:
    from makd_sweep.search_space import SpaceDimension
    from makd_sweep.sweep_config import SweepConfig

POPULATION_KEYS = ("student", "loss", "lam", "tau", "seed")  # what makes a method's population, less what PBT perturbs


def perturbed_keys(cfg: SweepConfig) -> tuple[str, ...]:
    """The search_space keys PBT perturbs: every searched key a run can change between epochs."""
    return tuple(dim.key for dim in cfg.search_space if dim.key in CHANGEABLE_SETTINGS)


def check_pbt(cfg: SweepConfig) -> None:
    """One line before Ray starts: PBT needs a searched key it can perturb and a search that draws a population."""
    if cfg.scheduler.kind != "pbt":
        return
    if cfg.max_concurrent_trials is not None:
        raise UsageError("max_concurrent_trials", "PBT pauses every trial until the whole population reaches the "
                                                  "perturbation: a limit on trials at once leaves it waiting (Ray "
                                                  "counts paused trials); limit resources_per_trial instead")
    if cfg.search.kind not in ("random", "grid"):
        raise UsageError("scheduler.kind", f"pbt changes a trial's setting while it runs, which {cfg.search.kind}'s "
                                           "sampler would learn from as if fixed: use search.kind random or grid")
    if not perturbed_keys(cfg):
        searched = ", ".join(cfg.searched_keys) or "nothing"
        raise UsageError("search_space", f"pbt perturbs {', '.join(sorted(CHANGEABLE_SETTINGS))}; the space searches "
                                         f"{searched}: add one of them, e.g. {{lr: {{loguniform: [1.0e-5, 1.0e-3]}}}}")
    if cfg.pack.on:
        raise UsageError("pack", "pbt restarts single trials from one another's checkpoints: leave pack off")


def population(config: dict, perturbed: tuple[str, ...]) -> tuple:
    """The population a trial config belongs to: its method and seed."""
    return tuple((key, config.get(key)) for key in POPULATION_KEYS if key not in perturbed)


def within_space(value: Any, dim: SpaceDimension) -> Any:
    """A perturbed value put back inside its dimension (Ray multiplies by 0.8 or 1.2 with no bound): clipped to
    [low, high] and onto its q grid; a listed value stays one of the list."""
    if dim.distribution in ("choice", "grid"):
        return value if value in dim.args else min(dim.args, key=lambda v: abs(float(v) - float(value)))
    low, high = dim.args[0], dim.args[1]
    value = min(max(float(value), low), high)
    if dim.distribution.startswith("q"):
        q = dim.args[2]
        value = min(max(round(value / q) * q, math.ceil(low / q) * q), math.floor(high / q) * q)
    return value


def method_constraints(config: dict, perturbed: tuple[str, ...], space: dict[str, SpaceDimension]) -> dict:
    """An explored config made valid again: every perturbed value inside its space; ce at λ = τ = 1 (the CE
    baseline), a KD loss below λ = 1 (at 1 it is ce), a loss that ignores τ at τ = 1 (grid_points' rules)."""
    config = {**config, **{key: within_space(config[key], space[key]) for key in perturbed if key in config}}
    loss = config.get("loss")
    if loss == "ce":
        config.update(lam=1.0, tau=1.0)
    elif loss in LOSSES:
        if "lam" in perturbed and config.get("lam", 0.0) >= 1.0:
            config["lam"] = float(min(space["lam"].args[0] if space["lam"].distribution not in ("choice", "grid")
                                      else min(space["lam"].args), 0.99))
        if not LOSSES[loss].uses_tau:
            config["tau"] = 1.0
    return config


def _scheduler_class():
    from ray.tune.schedulers import PopulationBasedTraining

    class MethodPopulationBasedTraining(PopulationBasedTraining):
        """Ray's PBT with its quantiles taken within each trial's own population (`population`), so a trial only
        ever continues from a trial of its own method and seed."""

        def __init__(self, *, perturbed: tuple[str, ...], last_epoch: int, **kwargs):
            super().__init__(**kwargs)
            self._perturbed, self._last_epoch = perturbed, last_epoch

        def on_trial_result(self, tune_controller, trial, result):
            if result.get(self._time_attr, 0) >= self._last_epoch:  # its last epoch: nothing left to train from a
                return self.CONTINUE  # donor's checkpoint, which would only replace its result with the donor's
            return super().on_trial_result(tune_controller, trial, result)

        def _population_quantiles(self, trial):
            everyone = self._trial_state
            mine = population(trial.config, self._perturbed)
            self._trial_state = {t: s for t, s in everyone.items() if population(t.config, self._perturbed) == mine}
            try:
                return self._quantiles()
            finally:
                self._trial_state = everyone

        def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
            lower, upper = self._population_quantiles(trial)
            super()._checkpoint_or_exploit(trial, tune_controller, upper, lower)

    return MethodPopulationBasedTraining


def pbt_scheduler(cfg: SweepConfig):
    """Ray Tune's scheduler for `scheduler: {kind: pbt}` (the metric and mode come from the Tuner)."""
    perturbed = perturbed_keys(cfg)
    space = {dim.key: dim for dim in cfg.search_space}
    mutations = {key: (list(space[key].args) if space[key].distribution in ("choice", "grid") else space[key].to_ray())
                 for key in perturbed}
    # synchronous: a population steps together, so which trial copies which depends on their scores, not on which
    # one finished its epoch first
    return _scheduler_class()(
        perturbed=perturbed, last_epoch=cfg.max_epochs, synch=True, time_attr=TIME_ATTR,
        perturbation_interval=cfg.scheduler.perturbation_interval,
        hyperparam_mutations=mutations, quantile_fraction=cfg.scheduler.quantile_fraction,
        resample_probability=cfg.scheduler.resample_probability,
        custom_explore_fn=lambda config: method_constraints(config, perturbed, space))
