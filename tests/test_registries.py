"""Adding a loss is one `register_loss` entry: `makd distill --loss`, the sweep config, grid expansion and the
leaderboard pick it up with no other file touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from makd import losses
from makd_sweep.config import parse_config
from makd_sweep.main import main
from makd_sweep.report.build import build
from makd_sweep.search import uses_teacher
from makd_sweep.search.grid import grid_points
from tests.test_leaderboard import trial, write_experiment

FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"


@pytest.fixture
def half_kd(monkeypatch):
    """A made-up loss: half of vanilla's KL, declared between vanilla (1) and taylor (2)."""
    monkeypatch.setitem(losses.LOSSES, "halfkd", None)  # restored (removed) after the test
    losses.register_loss("halfkd", teacher_in_gradient=True, uses_tau=True, order=1.5, citation="a test",
                         summary="KL(p_tau || f_tau) / 2")(lambda s, t, y, tau: 0.5 * losses.vanilla_kd(s, t, tau) / tau**2)
    return "halfkd"


def test_a_registered_loss_computes_and_validates(half_kd):
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    y = torch.tensor([0, 1, 1, 0])
    got = losses.distillation_loss(s, t, y, kind=half_kd, lam=0.0, tau=2.0)
    assert torch.allclose(got, 0.5 * losses.vanilla_kd(s, t, 2.0) / 4)
    assert losses.loss_names() == ("ce", "pseudo_label", "vanilla", "halfkd", "taylor", "reverse_kl", "jsd", "mse",
                                   "ortho")
    assert "halfkd: KL(p_tau || f_tau) / 2" in losses.loss_help()


def test_a_registered_loss_runs_in_makd_distill(half_kd, tiny_bert_dir, tmp_path, capsys):
    code = main(["distill", "--task", "rte", "--glue-dir", str(FIXTURE_GLUE), "--teacher", str(tiny_bert_dir),
                 "--student", "1x64", "--student-tokenizer", str(tiny_bert_dir), "--loss", half_kd, "--lam", "0.5",
                 "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["loss"] == half_kd and summary["teacher_cache"] == "miss"


def test_a_registered_loss_is_accepted_by_a_sweep_and_ranked_in_its_declared_order(half_kd, tmp_path):
    cfg = parse_config({"name": "x", "tasks": ["rte"], "teacher": "t", "students": ["2x128"],
                        "losses": ["vanilla", half_kd, "mse"], "lams": [0.0], "taus": [1.0, 2.0]})
    cells = {(c["loss"], c["tau"]) for c in grid_points(cfg)}
    assert {(half_kd, 1.0), (half_kd, 2.0)} <= cells and ("mse", 2.0) not in cells  # uses_tau from the registry
    assert uses_teacher(cfg)
    rows = [trial(loss="ce", score=0.6), trial(loss="taylor", lam=0.0, score=0.61),
            trial(loss=half_kd, lam=0.0, score=0.62), trial(loss="vanilla", lam=0.0, score=0.63)]
    board = build([write_experiment(tmp_path / "exp", rows)]).leaderboard
    assert list(board["loss"]) == ["ce", "vanilla", half_kd, "taylor"]


def test_an_unknown_loss_is_refused_naming_the_registry(capsys):
    assert main(["distill", "--task", "rte", "--student", "2x128", "--teacher", "t", "--loss", "kl"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss 'kl'" in err and "ortho" in err


@pytest.fixture
def toy_task(monkeypatch, tmp_path):
    """A made-up single-sentence task with its own GLUE-folder layout, declared between SST-2 and MRPC."""
    from makd import tasks
    from tests.helpers import sentiment

    monkeypatch.setitem(tasks.TASKS, "toy", None)  # restored (removed) after the test
    tasks.register_task(tasks.TaskSpec("toy", "TOY", "toy", ("text",), ("neg", "pos"), "accuracy",
                                       glue_layout=tasks.GlueLayout(("text",), "polarity"), paper_order=1.5))
    glue = tmp_path / "glue"
    (glue / "TOY").mkdir(parents=True)
    for name, ds in (("train.tsv", sentiment(24)), ("dev.tsv", sentiment(12, "validation", seed=1))):
        lines = ["polarity\ttext"] + [f"{int(y)}\t{t}" for t, y in zip(ds.text_a, ds.labels, strict=True)]
        (glue / "TOY" / name).write_text("\n".join(lines) + "\n")
    return glue


def test_a_registered_task_runs_in_makd_distill_a_sweep_config_and_the_leaderboard(toy_task, tiny_bert_dir, tmp_path,
                                                                                   capsys):
    code = main(["distill", "--task", "toy", "--glue-dir", str(toy_task), "--teacher", str(tiny_bert_dir),
                 "--student", "1x64", "--student-tokenizer", str(tiny_bert_dir), "--loss", "vanilla", "--epochs", "1",
                 "--batch-size", "8", "--max-length", "32", "--quiet", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["task"] == "toy" and summary["metric"] == "accuracy" and 0 <= summary["score"] <= 1
    cfg = parse_config({"name": "x", "tasks": ["toy", "sst2"], "teacher": "t", "students": ["2x128"]})
    assert cfg.tasks == ("toy", "sst2")
    rows = [trial(task=t, loss="ce", score=0.6, metric="f1" if t == "mrpc" else "accuracy") for t in ("mrpc", "toy", "sst2")]
    result = build([write_experiment(tmp_path / "exp", rows)])
    assert list(result.leaderboard["task"]) == ["sst2", "toy", "mrpc"]
    header = result.paper_table_markdown.splitlines()[0]
    assert header.index("SST-2 (Acc)") < header.index("TOY (Acc)") < header.index("MRPC (F1)")
