"""Sweep config validation and grid expansion (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from makd.errors import UsageError
from makd_sweep.config import load_config, only_tasks, parse_config
from makd_sweep.main import main
from makd_sweep.search import trial_budget
from makd_sweep.search.grid import grid_points

REPO = Path(__file__).resolve().parents[1]


def raw(**overrides) -> dict:
    base = {"name": "exp", "tasks": ["rte"], "teacher": "zoo:minilm-l6", "students": ["2x128"],
            "losses": ["vanilla", "taylor"], "lams": [0.0, 0.5, 1.0], "taus": [1.0, 2.0], "seeds": [0, 1]}
    base.update(overrides)
    return base


def test_ce_baseline_is_always_added_and_duplicates_are_not_run():
    cfg = parse_config(raw())
    assert cfg.losses == ("ce", "vanilla", "taylor")
    cells = grid_points(cfg)
    ce = [c for c in cells if c["loss"] == "ce"]
    assert len(ce) == 2 and all(c["lam"] == 1.0 and c["tau"] == 1.0 for c in ce)  # one per seed
    kd = [c for c in cells if c["loss"] != "ce"]
    assert all(c["lam"] < 1.0 for c in kd)  # lam = 1 is exactly CE: already run
    assert len(kd) == 2 * 2 * 2 * 2  # 2 KD losses x lam {0, 0.5} x tau {1, 2} x 2 seeds
    assert len(cells) == len({tuple(sorted(c.items())) for c in cells}) == trial_budget(cfg)


def test_temperature_free_losses_run_at_tau_1_only():
    cells = grid_points(parse_config(raw(losses=["mse", "ortho"])))
    assert {c["tau"] for c in cells} == {1.0}


@pytest.mark.parametrize("change, field", [
    ({"tasks": ["squad"]}, "tasks[0]"),
    ({"tasks": []}, "tasks"),
    ({"students": ["3x"]}, "students[0]"),
    ({"losses": ["kl"]}, "losses[0]"),
    ({"lams": [0.5, 1.5]}, "lams[1]"),
    ({"taus": [0]}, "taus[0]"),
    ({"seeds": [-1]}, "seeds[0]"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"name": "a/b"}, "name"),
    ({"teacher": None}, "teacher"),
    ({"search": {"kind": "bayes"}}, "search.kind"),
    ({"search": {"kind": "optuna", "n_trials": 3}}, "search.n_trials"),
    ({"search": {"kind": "optuna", "n_trials": 20, "lam": [0.5, 2]}}, "search.lam[1]"),
    ({"scheduler": {"kind": "asha", "grace_period": 9}}, "scheduler.grace_period"),
    ({"scheduler": {"kind": "median"}}, "scheduler.kind"),
    ({"resources_per_trial": {"cpu": 0}}, "resources_per_trial.cpu"),
    ({"resources_per_trial": {"gpu": 1.5}}, "resources_per_trial.gpu"),
    ({"resources_per_trial": {"tpu": 1}}, "resources_per_trial.tpu"),
    ({"resources_per_trial": 2}, "resources_per_trial"),
    ({"scheduler": {"kind": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor"),
    ({"scheduler": {"kind": "asha", "max_epochs": True}}, "scheduler.max_epochs"),
    ({"final": {"seeds": [0, -2]}}, "final.seeds[1]"),
    ({"final": {"top_k": 0}}, "final.top_k"),
    ({"final": {"seed": [0]}}, "final.seed"),
    ({"final": 3}, "final"),
    ({"selection": {"split": "test"}}, "selection.split"),
    ({"selection": {"fraction": 0.9}}, "selection.fraction"),
    ({"data": {"glue": "x"}}, "data.glue"),
    ({"data": {"glue_dir": 3}}, "data.glue_dir"),
    ({"teacher_finetune": {"lr": 1.5}}, "teacher_finetune.lr"),
    ({"teacher_finetune": {"epochs": "3"}}, "teacher_finetune.epochs"),
    ({"max_failures": -1}, "max_failures"),
    ({"storage": ""}, "storage"),
    ({"address": 5}, "address"),
    ({"losses": "ce"}, None),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
    ({"micro_batch_size": 0}, "micro_batch_size"),
    ({"micro_batch_size": 512}, "micro_batch_size"),
    ({"resources_per_trial": {"gpu": "Auto"}}, "resources_per_trial.gpu"),
    ({"pad_to_multiple_of": 0}, "pad_to_multiple_of"),
    ({"warm_up": "yes"}, "warm_up"),
    ({"colour": "red"}, "colour"),
])
def test_bad_fields_are_named(change, field):
    """Every key's error names it, sections' keys included (their types and bounds come from the declarations)."""
    if field is None:  # a scalar where a list is expected is a list of one
        assert parse_config(raw(**change)).losses == ("ce",)
        return
    with pytest.raises(UsageError) as err:
        parse_config(raw(**change))
    assert err.value.field == field


def test_selection_fraction_alone_means_a_train_holdout():
    """`selection: {fraction: 0.2}` holds out 20% of train (the declared default split is train_holdout)."""
    assert parse_config(raw(selection={"fraction": 0.2})).train.holdout_fraction == 0.2
    assert parse_config(raw(selection={"split": "dev"})).train.holdout_fraction == 0.0


def test_fractional_gpus_and_optuna_are_accepted():
    cfg = parse_config(raw(resources_per_trial={"cpu": 2, "gpu": 0.25},
                           search={"kind": "optuna", "n_trials": 12, "lam": [0, 1], "lr": [1e-5, 1e-4]},
                           scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 3}))
    assert cfg.gpu == 0.25 and cfg.cpu == 2 and cfg.search.lr == (1e-5, 1e-4) and cfg.scheduler.reduction_factor == 3


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw(lams=[2.0])))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "makd: error: lams[0]: must be <= 1, got 2.0"
    path.write_text("name: [unclosed\n")
    assert main(["sweep", str(path)]) == 2
    assert "line" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_piece_of_a_sweep_keeps_some_of_its_tasks_in_its_own_experiment(tmp_path, capsys):
    cfg = parse_config(raw(tasks=["rte", "mrpc", "stsb"]))
    piece = only_tasks(cfg, "stsb, rte", rename=True)
    assert piece.tasks == ("rte", "stsb") and piece.name == "exp-stsb-rte"  # the config's order; named as listed
    assert only_tasks(cfg, "mrpc", rename=False).name == "exp"  # --name given: the user's name stands
    for bad, problem in (("sst2", "sst2 not in the config's tasks (rte, mrpc, stsb)"), ("rte,rte", "listed twice"),
                         (" , ", "list at least one")):
        with pytest.raises(UsageError, match="tasks") as err:
            only_tasks(cfg, bad, rename=True)
        assert problem in str(err.value)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw(tasks=["rte", "mrpc"])))
    assert main(["sweep", str(path), "--tasks", "qqp"]) == 2
    assert capsys.readouterr().err.strip() == "makd: error: tasks: qqp not in the config's tasks (rte, mrpc)"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")) +
                         sorted((REPO / "results").glob("*/configs/*.yaml")), ids=lambda p: p.parent.name + "/" + p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert trial_budget(cfg) > 0 and "ce" in cfg.losses


def test_makd_library_never_imports_ray():
    import subprocess
    import sys

    code = ("import sys, makd.cli, makd.train, makd.pipeline, makd.cache, makd.models, makd_sweep.cli, makd_sweep.main;"
            "makd_sweep.main.build_parser(); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_makd_never_imports_tune_or_ray_even_inside_functions():
    """The library sits below the sweep service: no makd module imports makd_sweep/ (not even in a function body), and
    importing every makd module leaves ray and makd_sweep out of sys.modules."""
    import ast
    import pkgutil
    import subprocess
    import sys

    import makd

    for path in sorted((REPO / "makd").rglob("*.py")):  # makd/lm/ included
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split(".")[0] in ("makd_sweep", "ray")]
            assert not bad, f"{path.relative_to(REPO)}:{node.lineno} imports {bad[0]}"
    modules = sorted(m.name for m in pkgutil.walk_packages(makd.__path__, "makd."))
    assert "makd.lm.train" in modules
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}];"
            "print(sorted(m for m in ('ray', 'makd_sweep') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]" and len(modules) >= 12
