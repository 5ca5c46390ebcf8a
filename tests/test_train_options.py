"""One config schema (makd/config.py): every training option is a `makd distill` flag, a sweep YAML key and a
field every trial of a sweep receives, from its one declaration; the teacher cache is keyed by a TeacherSpec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from makd import config
from makd.cli import build_parser
from makd.config import TrainConfig, TrainOptions, from_args
from makd.errors import UsageError
from makd.teacher_spec import TeacherSpec
from makd_sweep.config import KNOWN_KEYS, parse_config
from makd_sweep.search import teacher_spec

FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"
OPTIONS = dataclasses.fields(TrainOptions)


def non_default(f: dataclasses.Field):
    """A valid value for the option that differs from its default, chosen from its declared type and bounds."""
    kind, _ = config._types()[f.name]
    if f.metadata.get("choices"):
        return next(c for c in f.metadata["choices"] if c != f.default)
    if kind is bool:
        return not f.default
    if kind is int:
        return 8 if f.default is None else f.default + 1  # 8: within every bound (micro batch <= batch 32)
    if kind is float:
        return f.default / 2 if f.default else 0.25
    return "some/model"


def sweep(**extra) -> dict:
    return {"name": "x", "tasks": ["rte"], "students": ["2x128"], "teacher": "t", **extra}


@pytest.mark.parametrize("f", OPTIONS, ids=[f.name for f in OPTIONS])
def test_every_training_option_is_a_sweep_key_a_distill_flag_and_reaches_the_trial(f):
    from makd_sweep.task_prep import representative_trial

    value = non_default(f)
    assert f.name in KNOWN_KEYS
    cfg = parse_config(sweep(**{f.name: value}))
    assert getattr(cfg.train, f.name) == value
    # the trial's TrainConfig is built from the sweep's options (makd_sweep.trial: TrainConfig(**task_data.base, ...))
    assert getattr(representative_trial(cfg, "rte", "2x128"), f.name) == value

    flag = "--" + f.name.replace("_", "-")
    argv = ["distill", "--task", "rte", "--student", "2x128"]
    argv += [flag if value is True else f"--no-{flag[2:]}"] if isinstance(value, bool) and f.default is None else (
        [flag] if value is True else [flag, str(value)])
    args = build_parser().parse_args(argv)
    assert getattr(from_args(TrainConfig, args), f.name) == value
    assert f.metadata["help"], f"{f.name} has no help text"


@pytest.mark.parametrize("key, value, problem", [
    ("warmup_ratio", 1.0, "must be < 1"), ("precision", "fp8", "must be auto, fp32, bf16 or fp16"),
    ("lr", 0, "must be > 0"), ("eval_batch_size", 2.5, "expected an integer"), ("weight_decay", "x", "expected a number"),
    ("max_length", 4, "must be >= 8"), ("micro_batch_size", 64, "must be between 1 and batch-size (32)"),
])
def test_option_bounds_come_from_the_schema_in_the_sweep_and_in_distill(key, value, problem):
    with pytest.raises(UsageError) as err:
        parse_config(sweep(**{key: value}))
    assert err.value.field == key and problem in err.value.problem
    if problem.startswith("must"):  # a well-typed value out of bounds: `makd distill` refuses it alike
        run = TrainConfig(task="rte", student="2x128", loss="ce", lam=1.0, **{key: value})
        with pytest.raises(UsageError) as err:
            run.validate()
        assert err.value.field == key.replace("_", "-") and problem in err.value.problem


def test_the_teacher_cache_is_keyed_by_a_teacher_spec_not_a_training_config():
    cfg = parse_config(sweep(head_seed=3, max_length=64, fine_tuned=True, losses=["vanilla"], lams=[0.0]))
    spec = teacher_spec(cfg, "rte")
    assert spec == TeacherSpec("t", "rte", head_seed=3, fine_tuned=True, max_length=64)
    # every trial that reads the teacher asks for the same spec, whatever its student, loss, λ, τ, seed or lr
    for student, loss, lam, tau, seed, lr in [("2x128", "vanilla", 0.0, 1.0, 0, 1e-4), ("1x64", "taylor", 0.5, 2.0, 3, 5e-5)]:
        run = TrainConfig(task="rte", student=student, loss=loss, lam=lam, tau=tau, seed=seed,
                          **dataclasses.asdict(cfg.train) | {"lr": lr})
        assert run.teacher_spec == spec
    assert TrainConfig(task="rte", student="2x128", loss="ce", lam=1.0, teacher="t").teacher_spec is None
    ce_only = parse_config(sweep(losses=["ce"]))
    assert teacher_spec(ce_only, "rte") is None


def test_cache_teacher_and_distill_share_one_cache_entry(tiny_bert_dir, tmp_path, capsys):
    """`makd cache-teacher` (no training config at all) fills exactly the entry `makd distill` then hits."""
    import json

    from makd_sweep.main import main

    common = ["--task", "rte", "--glue-dir", str(FIXTURE_GLUE), "--teacher", str(tiny_bert_dir), "--max-length", "32",
              "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(["cache-teacher", *common]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["misses"] == 2  # train and dev
    assert main(["distill", *common, "--student", "1x64", "--student-tokenizer", str(tiny_bert_dir), "--loss",
                 "vanilla", "--lam", "0.5", "--epochs", "1", "--batch-size", "8"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_cache"] == "hit"


def test_selection_defaults_to_a_train_hold_out_and_dev_only_when_asked():
    """Issue 22: a sweep (and `makd distill`) chooses epochs and settings on a seeded 10% of train unless told
    otherwise; `selection: {split: dev}` is the only way back to choosing on the reported set."""
    assert parse_config(sweep()).train.holdout_fraction == 0.1
    assert from_args(TrainOptions, build_parser().parse_args(["distill", "--task", "rte", "--student", "2x128"]))\
        .holdout_fraction == 0.1
    assert parse_config(sweep(selection={"split": "dev"})).train.holdout_fraction == 0.0
    assert parse_config(sweep(selection={"split": "train_holdout", "fraction": 0.2})).train.holdout_fraction == 0.2
    with pytest.raises(UsageError, match="selection.fraction"):
        parse_config(sweep(selection={"split": "dev", "fraction": 0.2}))
