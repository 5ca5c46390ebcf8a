"""Population Based Training (`scheduler: {kind: pbt}`, makd_sweep/search/pbt.py) and the schedules it leaves
(makd_sweep/schedule.py): populations per method and seed, explored settings kept valid, refusals in one line, and
a sweep whose weak trials go on from strong ones' checkpoints and whose final stage replays the winning schedule."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from makd.errors import UsageError
from makd_sweep import schedule
from makd_sweep.config import load_config, parse_config
from makd_sweep.search.pbt import method_constraints, pbt_scheduler, perturbed_keys, population, within_space
from makd_sweep.search_space import parse_space

BASE = {"name": "p", "tasks": ["rte"], "teacher": "t", "students": ["1x64"], "losses": ["ce", "vanilla"],
        "lams": [0.5], "seeds": [0], "epochs": 3, "search": {"kind": "random", "num_samples": 2},
        "search_space": {"lr": {"loguniform": [1e-4, 1e-2]}}, "scheduler": {"kind": "pbt"}}


def pbt_config(**overrides):
    raw = {**BASE, **overrides}
    if "lam" in raw["search_space"]:
        del raw["lams"]  # searched, so not fixed
    return parse_config(raw)


@pytest.mark.parametrize(("overrides", "field", "says"), [
    ({"search": {"kind": "optuna", "n_trials": 4}}, "scheduler.kind", "random or grid"),
    ({"search_space": {"batch_size": {"choice": [8, 16]}}}, "search_space", "batch_size"),
    ({"max_concurrent_trials": 2}, "max_concurrent_trials", "whole population"),
    ({"pack": {"size": 2}, "search": {"kind": "grid"}, "search_space": {"lr": {"grid": [1e-3, 2e-3]}}}, "pack",
     "leave pack off"),
    ({"scheduler": {"kind": "pbt", "quantile_fraction": 0.7}}, "scheduler.quantile_fraction", "0.5"),
    ({"tasks": ["sst2lm"], "losses": ["ce", "vanilla"]}, "scheduler.kind", "causal-LM"),
])
def test_a_pbt_sweep_that_cannot_run_is_refused_in_one_line_naming_the_key(overrides, field, says):
    with pytest.raises(UsageError) as err:
        pbt_config(**overrides)
    assert err.value.field == field and says in err.value.problem and "\n" not in str(err.value)


def test_pbt_perturbs_only_the_searched_settings_a_run_can_change_between_epochs():
    cfg = pbt_config(search_space={"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [8, 16]},
                                   "lam": {"uniform": [0.0, 0.9]}})
    assert perturbed_keys(cfg) == ("lr", "lam")  # batch_size reshapes the lr schedule: drawn once, never perturbed
    scheduler = pbt_scheduler(cfg)
    assert set(scheduler._hyperparam_mutations) == {"lr", "lam"} and scheduler._synch


def test_a_population_is_one_method_and_seed_and_quantiles_are_taken_within_it():
    perturbed = ("lr",)
    ce = {"student": "1x64", "loss": "ce", "lam": 1.0, "tau": 1.0, "seed": 0}
    vanilla = {**ce, "loss": "vanilla", "lam": 0.5, "tau": 2.0}
    assert population({**ce, "lr": 1e-3}, perturbed) == population({**ce, "lr": 5e-3}, perturbed)
    assert population(ce, perturbed) != population(vanilla, perturbed) != population({**vanilla, "seed": 1}, perturbed)
    assert population({**vanilla, "lam": 0.1}, ("lam",)) == population(vanilla, ("lam",))  # a searched λ is explored

    scheduler = pbt_scheduler(pbt_config(scheduler={"kind": "pbt", "quantile_fraction": 0.5}))
    class FakeTrial:  # what _quantiles reads of Ray's Trial
        def __init__(self, config):
            self.config = config

        def is_finished(self):
            return False

    trials = [FakeTrial({**config, "lr": lr}) for config in (ce, vanilla) for lr in (1e-3, 2e-3)]
    # across methods, ce's two trials would both be the bottom half; within each population, one is
    scores = {0: 0.1, 1: 0.2, 2: 0.8, 3: 0.9}
    scheduler._trial_state = {t: SimpleNamespace(last_score=scores[i]) for i, t in enumerate(trials)}
    assert scheduler._population_quantiles(trials[0]) == ([trials[0]], [trials[1]])
    assert scheduler._population_quantiles(trials[3]) == ([trials[2]], [trials[3]])
    assert len(scheduler._trial_state) == 4  # left as it was


def test_an_explored_setting_is_put_back_inside_the_space_and_the_methods_rules():
    space = {dim.key: dim for dim in parse_space({"lr": {"loguniform": [1e-4, 1e-2]}, "lam": {"uniform": [0.0, 1.0]},
                                                  "tau": {"quniform": [1.0, 4.0, 0.5]},
                                                  "weight_decay": {"choice": [0.0, 0.01, 0.1]}})}
    assert within_space(1.2e-2, space["lr"]) == 1e-2 and within_space(0.8e-4, space["lr"]) == 1e-4
    assert within_space(3.3, space["tau"]) == 3.5 and within_space(4.8, space["tau"]) == 4.0
    assert within_space(0.012, space["weight_decay"]) == 0.01  # Ray shifts a listed value to a neighbour already
    keys = ("lr", "lam", "tau")
    ce = method_constraints({"loss": "ce", "lam": 0.6, "tau": 2.4, "lr": 1.3e-2}, keys, space)
    assert (ce["lam"], ce["tau"], ce["lr"]) == (1.0, 1.0, 1e-2)  # the CE baseline stays CE
    kd = method_constraints({"loss": "vanilla", "lam": 1.08, "tau": 2.4, "lr": 1e-3}, keys, space)
    assert kd["lam"] < 1.0 and kd["tau"] == 2.5  # a KD loss at λ = 1 would be ce's student
    mse = method_constraints({"loss": "mse", "lam": 0.3, "tau": 2.4, "lr": 1e-3}, keys, space)
    assert mse["tau"] == 1.0  # a loss that ignores τ runs at τ = 1, as grid_points has it


def test_a_schedule_records_each_change_and_a_restored_run_overwrites_what_it_trains_again(tmp_path):
    recorder = schedule.Recorder(tmp_path)
    recorder.train(1, {"lr": 1e-3})
    recorder.train(2, {"lr": 1e-3})  # unchanged: no new entry
    recorder.train(3, {"lr": 1.2e-3})
    assert json.loads(recorder.as_json()) == [{"from_epoch": 1, "lr": 1e-3}, {"from_epoch": 3, "lr": 1.2e-3}]
    again = schedule.Recorder(tmp_path)  # a trial going on from this checkpoint dir (its own, or a donor's)
    again.train(2, {"lr": 0.8e-3})
    assert json.loads((tmp_path / schedule.FILE).read_text()) == [{"from_epoch": 1, "lr": 1e-3},
                                                                  {"from_epoch": 2, "lr": 0.8e-3}]
    parts = schedule.segments({schedule.PARAM: again.as_json()})
    assert [(p.first_epoch, p.last_epoch, p.setting) for p in parts] == [(1, 1, {"lr": 1e-3}), (2, None, {"lr": 0.8e-3})]
    assert schedule.changed_keys(parts) == {"lr"} and schedule.segments({}) == [schedule.Segment(1)]
    with pytest.raises(ValueError, match="batch_size"):
        schedule.parse('[{"from_epoch": 1, "batch_size": 8}]')
    with pytest.raises(ValueError, match="rise"):
        schedule.parse('[{"from_epoch": 1, "lr": 1e-3}, {"from_epoch": 1, "lr": 2e-3}]')


@pytest.mark.sweep
def test_a_pbt_sweep_exploits_within_each_method_and_its_final_stage_replays_the_winning_schedule(
        module_ray, tiny_bert_dir, tmp_path):
    """Search: 2 sampled lr per method (ce, vanilla) on seed 0, 2 epochs; after epoch 1 each population's weaker
    trial goes on from the stronger one's checkpoint with its lr x 0.8 or 1.2. Final: each method's best schedule
    replayed for seeds 0 and 1; on seed 0 the replay is the search trial's student again."""
    from makd_sweep.driver import run_sweep
    from tests.test_sweep import write_config

    config = write_config(tmp_path, tiny_bert_dir, name="pbt", losses=["ce", "vanilla"], lams=[0.5], epochs=2,
                          search={"kind": "random", "num_samples": 2, "seed": 1}, final={"seeds": [0, 1]},
                          search_space={"lr": {"loguniform": [1e-4, 1e-2]}},
                          scheduler={"kind": "pbt", "quantile_fraction": 0.5, "resample_probability": 0.0})
    raw = yaml.safe_load(config.read_text())
    del raw["lr"], raw["max_concurrent_trials"]
    config.write_text(yaml.safe_dump(raw))
    outcome = run_sweep(load_config(config), quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    trials = outcome.trials
    assert set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 2).all()
    search, final = trials[trials["stage"] == "search"], trials[trials["stage"] == "final"]
    assert len(search) == 4 and len(final) == 4
    assert (trials.loc[trials["loss"] == "ce", ["lam", "tau"]] == 1.0).all().all()
    for loss in ("ce", "vanilla"):
        mine = search[search["loss"] == loss]
        schedules = [json.loads(s) for s in mine["schedule"]]
        drawn = {entry[0]["lr"] for entry in schedules}  # epoch 1: one of the two sampled lr (a donor's, maybe)
        assert all(entry[0]["from_epoch"] == 1 and set(entry[0]) == {"from_epoch", "lr"} for entry in schedules)
        exploited = [s for s in schedules if len(s) == 2]
        assert len(exploited) == 1 and len(drawn) == 1  # the weaker went on from the stronger's epoch 1...
        assert exploited[0][1]["from_epoch"] == 2  # ...with its lr perturbed by 0.8 or 1.2, inside the space
        assert exploited[0][1]["lr"] / exploited[0][0]["lr"] == pytest.approx(0.8) or \
            exploited[0][1]["lr"] / exploited[0][0]["lr"] == pytest.approx(1.2) or exploited[0][1]["lr"] in (1e-4, 1e-2)
        replays = final[final["loss"] == loss]
        assert replays["schedule"].nunique() == 1 and replays["schedule"].iloc[0] in set(mine["schedule"])
        chosen = mine[mine["schedule"] == replays["schedule"].iloc[0]].iloc[0]
        again = replays[replays["seed"] == 0].iloc[0]  # the same seed and schedule: the same training
        assert again["last_epoch_score"] == chosen["last_epoch_score"]
        if again["best_epoch"] == 2:
            assert again["weights_fingerprint"] == chosen["weights_fingerprint"]
    board = pd.read_csv(f"{outcome.root}/leaderboard.csv")  # each method's replayed schedule, over both seeds
    columns = list(board.columns)
    assert columns.index("best_schedule") == columns.index("best_lr") + 1
    for _, row in board.iterrows():
        assert row["best_schedule"] == final.loc[final["loss"] == row["loss"], "schedule"].iloc[0]
        assert row["n_seeds"] == 2
