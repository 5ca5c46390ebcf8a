"""`search_space:` (makd_sweep/search_space.py): any training key with a Ray Tune distribution, searched by the grid,
random or Optuna kinds; the final stage reruns every searched key's winning value and the leaderboard reports it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from makd.errors import UsageError
from makd_sweep.config import load_config, parse_config, sweep_yaml
from makd_sweep.search import get_search_kind, trial_budget
from makd_sweep.search.grid import grid_points
from makd_sweep.search_space import parse_space

SPACE = {"lr": {"loguniform": [1.0e-5, 1.0e-3]}, "batch_size": {"choice": [16, 32]},
         "weight_decay": {"uniform": [0.0, 0.1]}, "warmup_ratio": {"quniform": [0.0, 0.2, 0.05]},
         "max_grad_norm": {"grid": [0.5, 1.0]}}


def raw(**overrides) -> dict:
    base = {"name": "exp", "tasks": ["rte"], "teacher": "zoo:minilm-l6", "students": ["2x128"],
            "losses": ["vanilla", "taylor"], "seeds": [0, 1], "search_space": SPACE,
            "search": {"kind": "random", "num_samples": 3, "seed": 5}}
    base.update(overrides)
    return base


def test_every_distribution_becomes_ray_tunes_own_sampling_object():
    from ray.tune.search.sample import Categorical, Float, Integer

    dims = {d.key: d for d in parse_space({**SPACE, "lam": {"uniform": [0, 1]}, "tau": {"qloguniform": [1, 8, 1]}})}
    assert isinstance(dims["lr"].to_ray(), Float) and dims["lr"].to_ray().lower == 1.0e-5
    assert isinstance(dims["batch_size"].to_ray(), Categorical) and dims["batch_size"].args == (16, 32)
    assert dims["max_grad_norm"].to_ray() == {"grid_search": [0.5, 1.0]}
    assert isinstance(parse_space({"batch_size": {"randint": [8, 33]}})[0].to_ray(), Integer)
    assert dims["warmup_ratio"].start_value() == 0.1 and dims["tau"].start_value() == 3.0  # on the q grid


def test_random_search_gives_every_method_the_same_sampled_settings_and_a_rerun_the_same_draw():
    cfg = parse_config(raw())
    points = get_search_kind("random").points(cfg)
    settings = lambda loss: [{k: p[k] for k in ("lr", "batch_size", "weight_decay", "warmup_ratio", "max_grad_norm")}  # noqa: E731
                             for p in points if p["loss"] == loss and p["seed"] == 0]
    assert settings("ce") == settings("vanilla") == settings("taylor")  # common random numbers: paired methods
    assert len(settings("ce")) == 3 * 2  # num_samples x the grid key's two values
    assert len({s["lr"] for s in settings("ce")}) == 6 and all(1e-5 <= s["lr"] <= 1e-3 for s in settings("ce"))
    assert {s["batch_size"] for s in settings("ce")} <= {16, 32} and all(type(s["batch_size"]) is int
                                                                         for s in settings("ce"))
    assert all(round(s["warmup_ratio"] / 0.05, 9).is_integer() for s in settings("ce"))
    assert get_search_kind("random").points(parse_config(raw())) == points  # seeded: a resume draws the same
    assert get_search_kind("random").points(parse_config(raw(search={"kind": "random", "num_samples": 3,
                                                                     "seed": 6}))) != points
    assert trial_budget(cfg) == len(points) == 3 * 2 * 3 * 2  # settings x losses x seeds


def test_a_searched_lambda_replaces_the_lams_list_and_ce_still_runs_once_per_setting():
    cfg = parse_config(raw(search_space={"lam": {"grid": [0.0, 0.5, 1.0]}, "lr": {"grid": [1e-4, 1e-3]}},
                           search={"kind": "grid"}))
    points = grid_points(cfg)
    assert {p["lam"] for p in points if p["loss"] == "vanilla"} == {0.0, 0.5}  # λ = 1 is ce: not run again
    assert len([p for p in points if p["loss"] == "ce"]) == 2 * 2  # lr values x seeds
    assert {p["lr"] for p in points} == {1e-4, 1e-3}


def test_the_reports_sweep_yaml_reruns_a_searched_sweep_as_written(tmp_path):
    for spec in (raw(), raw(search_space={"lam": {"uniform": [0.0, 1.0]}, "tau": {"choice": [1.0, 2.0]}},
                            search={"kind": "optuna", "n_trials": 12}, final={"seeds": {"min": 2, "max": 4}})):
        cfg = parse_config(spec)
        assert parse_config(yaml.safe_load(sweep_yaml(cfg.as_dict()))) == cfg


def test_the_optuna_space_holds_the_searched_keys_and_a_first_point_inside_them():
    cfg = parse_config(raw(search={"kind": "optuna", "n_trials": 6}, search_space={
        "weight_decay": {"loguniform": [1e-4, 1e-1]}, "batch_size": {"choice": [16, 32]}}))
    kind = get_search_kind("optuna")
    space = kind.param_space(cfg)
    assert {"weight_decay", "batch_size", "lam", "tau", "lr"} <= set(space)
    searcher = kind.algorithm(cfg)  # one study per (student, loss, seed), each starting inside the space
    assert [c["loss"] for c in searcher.categories] == ["ce", "ce", "vanilla", "vanilla", "taylor", "taylor"]
    first = searcher.searchers[0]._points_to_evaluate[0]
    assert first["batch_size"] == 16 and first["weight_decay"] == pytest.approx(10 ** -2.5)
    assert not {"student", "loss", "seed"} & set(first)  # the category is fixed, not sampled
    assert kind.progress_columns(cfg)[-2:] == ["weight_decay", "batch_size"]


def test_a_trial_trains_with_the_searched_options_of_its_config():
    from makd_sweep.trial import _TrialRun

    run = SimpleNamespace(task_data=SimpleNamespace(task="rte", base={"teacher": "t", "student_tokenizer": None,
                                                                      "batch_size": 32, "weight_decay": 0.01}))
    params = {"student": "2x128", "loss": "vanilla", "lam": 0.5, "tau": 2.0, "seed": 1, "lr": 1e-4,
              "batch_size": 16, "weight_decay": 0.05, "warmup_ratio": 0.0, "max_grad_norm": 0.5}
    cfg = _TrialRun.train_config(run, params)
    assert (cfg.batch_size, cfg.weight_decay, cfg.warmup_ratio, cfg.max_grad_norm) == (16, 0.05, 0.0, 0.5)
    assert (cfg.lam, cfg.tau, cfg.lr, cfg.seed) == (0.5, 2.0, 1e-4, 1)
    assert _TrialRun.train_config(run, {k: params[k] for k in ("student", "loss", "lam", "tau", "seed", "lr")}
                                  ).batch_size == 32  # not searched: the sweep's own value


@pytest.mark.parametrize("change, field, words", [
    ({"search_space": {"dropout": {"uniform": [0, 0.1]}}}, "search_space.dropout", "unknown key"),
    ({"search_space": {"epochs": {"choice": [1, 2]}}}, "search_space.epochs", "not searchable: the budget"),
    ({"search_space": {"max_length": {"choice": [64, 128]}}}, "search_space.max_length", "teacher's cached logits"),
    ({"search_space": {"lr": {"normal": [0, 1]}}}, "search_space.lr", "unknown distribution 'normal'"),
    ({"search_space": {"lr": {"uniform": [1e-3, 1e-4]}}}, "search_space.lr.uniform", "low must be below high"),
    ({"search_space": {"lr": {"loguniform": [0, 1e-3]}}}, "search_space.lr.loguniform", "needs low > 0"),
    ({"search_space": {"lr": {"quniform": [1e-4, 1e-3, 0]}}}, "search_space.lr.quniform", "q must be > 0"),
    ({"search_space": {"lam": {"uniform": [0, 2]}}}, "search_space.lam.uniform[1]", "<= 1, got 2"),
    ({"search_space": {"batch_size": {"uniform": [8, 32]}}}, "search_space.batch_size", "is an integer"),
    ({"search_space": {"batch_size": {"choice": [16, 24.5]}}}, "search_space.batch_size.choice[1]", "an integer"),
    ({"search_space": {"lr": {"choice": []}}}, "search_space.lr.choice", "non-empty list"),
    ({"search_space": {"lr": [1e-4, 1e-3]}}, "search_space.lr", "one distribution"),
    ({"search_space": {"lr": {"grid": [1e-4]}}, "lr": 1e-4}, "search_space.lr", "also fixed by the top-level `lr`"),
    ({"search_space": {"lam": {"grid": [0.5]}}, "lams": [0.5]}, "search_space.lam", "`lams`"),
    ({"search": {"kind": "grid"}}, "search_space.lr", "grid search enumerates"),
    ({"search": {"kind": "optuna", "n_trials": 12}}, "search_space.max_grad_norm", "Optuna samples"),
    ({"search": {"kind": "optuna", "n_trials": 12, "lr": [1e-5, 1e-3]}, "search_space": {"lr": {"choice": [1e-4]}}},
     "search_space.lr", "also searched by search.lr"),
    ({"search": {"kind": "optuna", "n_trials": 9}, "search_space": {"lr": {"loguniform": [1e-5, 1e-3]}}},
     "search.n_trials", "not a multiple of the 6 categories"),
    ({"search_space": None}, "search_space", "declare at least one key"),
    ({"search": {"kind": "random", "num_samples": 0}}, "search.num_samples", ">= 1"),
    ({"search": {"kind": "random", "n_trials": 3}}, "search.n_trials", "not a field of random search"),
    ({"scheduler": {"kind": "hyperband"}, "max_concurrent_trials": 2}, "max_concurrent_trials", "bracket unfilled"),
])
def test_a_bad_search_space_is_refused_in_one_line_naming_the_key(change, field, words):
    with pytest.raises(UsageError) as err:
        parse_config(raw(**change))
    assert err.value.field == field and words in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_cli_refuses_a_bad_space_with_exit_2_before_ray_starts(tmp_path, capsys):
    from makd_sweep.main import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw(search_space={"batch_size": {"loguniform": [8, 64]}})))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "search_space.batch_size" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UsageError, match="search_space"):
        load_config(path)


@pytest.mark.sweep
def test_a_random_search_sweep_reruns_each_methods_winning_setting_and_the_leaderboard_names_it(
        module_ray, tiny_bert_dir, tmp_path):
    """Search: 2 sampled settings of (lr, batch_size, weight_decay) per method on seed 0; final: each method's
    best one for seeds 0 and 1. Every searched key is a column of trials.csv, the final trials carry the
    search's winner, and the leaderboard's best_* columns are the setting its scores come from."""
    import pandas as pd

    from makd_sweep.driver import run_sweep
    from tests.test_sweep import write_config

    config = write_config(tmp_path, tiny_bert_dir, name="space", losses=["ce", "vanilla"], lams=[0.0], epochs=1,
                          search={"kind": "random", "num_samples": 2, "seed": 3}, final={"seeds": [0, 1]},
                          search_space={"lr": {"loguniform": [1e-4, 3e-3]}, "batch_size": {"choice": [4, 8]},
                                        "weight_decay": {"uniform": [0.0, 0.1]}})
    raw_config = yaml.safe_load(config.read_text())
    del raw_config["lr"], raw_config["batch_size"]  # searched, so not fixed
    config.write_text(yaml.safe_dump(raw_config))
    outcome = run_sweep(load_config(config), quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    trials = outcome.trials
    assert set(trials["status"]) == {"TERMINATED"}
    search, final = trials[trials["stage"] == "search"], trials[trials["stage"] == "final"]
    assert len(search) == 2 * 2 and len(final) == 2 * 2  # (2 settings x 2 losses) x seed 0; 2 losses x seeds 0, 1
    keys = ["lr", "batch_size", "weight_decay"]
    assert search[keys].notna().all().all() and set(search["batch_size"]) <= {4, 8}
    for loss in ("ce", "vanilla"):
        mine = search[search["loss"] == loss]
        winner = mine.sort_values("best_score", ascending=False, kind="stable").iloc[0]
        if mine["best_score"].nunique() == len(mine):  # no tie: the search's best setting is the one rerun
            assert (final.loc[final["loss"] == loss, keys] == winner[keys].values).all().all()
    board = pd.read_csv(f"{outcome.root}/leaderboard.csv")  # as the sweep wrote it
    assert {"best_batch_size", "best_weight_decay"} <= set(board.columns)
    at = list(board.columns).index("best_lr")
    assert list(board.columns)[at + 1:at + 3] == ["best_weight_decay", "best_batch_size"]  # after λ, τ, lr
    for _, row in board.iterrows():
        chosen = final[final["loss"] == row["loss"]]
        assert chosen["batch_size"].nunique() == 1 and row["best_batch_size"] == chosen["batch_size"].iloc[0]
        assert row["best_weight_decay"] == pytest.approx(chosen["weight_decay"].iloc[0])
        assert row["n_seeds"] == 2
    written = pd.read_csv(f"{outcome.root}/trials.csv")
    assert {"lr", "batch_size", "weight_decay"} <= set(written.columns)
    # the report: score against each searched key (search stage) and each key's fANOVA importance
    from makd_sweep.report.searched import parameter_importance, plot_searched_keys, varied_keys

    assert {"lr", "weight_decay"} <= set(varied_keys(search))
    fig = plot_searched_keys(search)
    assert [ax.get_xlabel() for ax in fig.axes] == varied_keys(search)
    spans = search["lr"].max() / search["lr"].min() > 10  # a log axis where the values span more than 10x
    assert fig.axes[varied_keys(search).index("lr")].get_xscale() == ("log" if spans else "linear")
    importance = parameter_importance(search)
    assert set(importance["key"]) == {*varied_keys(search), "loss"}
    assert importance["importance"].sum() == pytest.approx(1.0) and (importance["trials"] == 4).all()
    page = (Path(outcome.root) / "report.html").read_text()
    assert "Score against each searched key" in page and 'id="importance"' in page
    assert "<th>best batch_size</th>" in page and "<th>best weight_decay</th>" in page
    assert "(search_space: weight_decay, batch_size)" in (Path(outcome.root) / "table.md").read_text()


def test_the_documented_search_space_is_a_valid_config():
    from tests.docs import block_after

    section = yaml.safe_load(block_after("docs/sweeps.md", "## Searching any training key", "yaml"))
    cfg = parse_config(raw(**section))
    assert cfg.searched_keys == ("lam", "tau", "lr", "weight_decay", "warmup_ratio", "batch_size")
    assert cfg.search.kind == "random" and cfg.search.num_samples == 8 and cfg.final is not None
    points = get_search_kind("random").points(cfg)
    assert len({p["batch_size"] for p in points}) == 2 and len({p["tau"] for p in points if p["loss"] == "vanilla"}) > 1


def test_optuna_gives_each_category_its_own_study_in_turn_and_a_restored_searcher_goes_on_the_same(tmp_path):
    """Trial k goes to category k mod N (the same budget per method); each study sees only its own results; the
    searcher saved with the experiment and restored (a --resume) suggests what the original would have."""
    cfg = parse_config(raw(search={"kind": "optuna", "n_trials": 12, "seed": 3},
                           search_space={"lr": {"loguniform": [1e-5, 1e-3]}}))
    kind = get_search_kind("optuna")

    def started():
        searcher = kind.algorithm(cfg)
        assert searcher.set_search_properties("score", "max", kind.param_space(cfg))
        return searcher

    searcher = started()
    configs = [searcher.suggest(f"t{k}") for k in range(6)]
    assert [(c["loss"], c["seed"]) for c in configs] == [(c["loss"], c["seed"]) for c in searcher.categories]
    for k, config in enumerate(configs):
        searcher.on_trial_complete(f"t{k}", {"score": 0.5 + 0.01 * k, **config})
    assert [len(s._ot_study.trials) for s in searcher.searchers] == [1] * 6  # one finished trial in each study
    searcher.save(str(tmp_path / "searcher.pkl"))
    again = started()
    again.restore(str(tmp_path / "searcher.pkl"))
    assert [again.suggest(f"u{k}") for k in range(6)] == [searcher.suggest(f"u{k}") for k in range(6)]


@pytest.mark.sweep
def test_tpe_with_hyperband_brackets_runs_and_reruns_each_methods_winner_at_the_full_budget(module_ray, tiny_bert_dir,
                                                                                              tmp_path):
    """The model-based multi-fidelity recipe docs/sweeps.md gives instead of Ray's BOHB: Optuna's TPE proposes
    (one study per student x loss x seed) and HyperBand's brackets may stop a trial early; the final stage reruns
    each method's best setting for the full epochs."""
    from makd_sweep.driver import run_sweep
    from tests.test_sweep import write_config

    config = write_config(tmp_path, tiny_bert_dir, name="tpe-hb", losses=["ce", "vanilla"], lams=[0.0], epochs=2,
                          search={"kind": "optuna", "n_trials": 4, "seed": 0}, final={"seeds": [0]},
                          search_space={"lr": {"loguniform": [1e-4, 3e-3]}},
                          scheduler={"kind": "hyperband", "reduction_factor": 2})
    raw_config = yaml.safe_load(config.read_text())
    del raw_config["lr"], raw_config["max_concurrent_trials"]  # searched; HyperBand refuses a limit
    config.write_text(yaml.safe_dump(raw_config))
    trials = run_sweep(load_config(config), quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache")).trials
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    search, final = trials[trials["stage"] == "search"], trials[trials["stage"] == "final"]
    assert search["loss"].value_counts().to_dict() == {"ce": 2, "vanilla": 2}  # the same budget per method
    assert search["lr"].between(1e-4, 3e-3).all() and search["lr"].nunique() >= 3
    assert sorted(final["loss"]) == ["ce", "vanilla"] and (final["epochs_run"] == 2).all()
