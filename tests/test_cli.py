"""`makd` CLI: the JSON line, cache reuse across runs, resume, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from makd import models
from makd_sweep.main import main
from tests.conftest import FIXTURES, REPO

FIXTURE_GLUE = FIXTURES / "glue"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def distill_args(tiny_bert_dir, tmp_path, *extra: str) -> list[str]:
    return ["distill", "--task", "rte", "--glue-dir", str(FIXTURE_GLUE), "--teacher", str(tiny_bert_dir),
            "--student", "2x64", "--student-tokenizer", str(tiny_bert_dir), "--loss", "vanilla", "--lam", "0.5",
            "--epochs", "2", "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "--quiet", *extra]


def test_distill_prints_one_json_line_and_reuses_the_teacher_cache(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path))
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    first = json.loads(lines[0])
    assert first["task"] == "rte" and first["metric"] == "accuracy"
    # selection on a train hold-out by default: its score chose the epoch, dev is reported untouched
    assert set(first["metrics"]) == {"accuracy", "holdout_accuracy"} and first["selection"] == "train_holdout"
    assert first["history"][-1]["score"] == first["metrics"]["holdout_accuracy"]  # the epochs' selection scores
    assert first["best_score"] == max(h["score"] for h in first["history"])
    assert first["score"] == first["metrics"]["accuracy"] and 0 <= first["dev_score"] <= 1
    best = first["history"][first["best_epoch"] - 1]["score"]  # the chosen epoch's metrics, dev and hold-out
    assert first["best_metrics"] == {"accuracy": first["dev_score"], "holdout_accuracy": best}
    assert first["epochs"] == 2 and first["wall_seconds"] > 0 and first["train_examples_per_s"] > 0
    assert first["teacher_cache"] == "miss" and first["teacher_loaded"] is True

    def forbidden(*a, **k):
        raise AssertionError("teacher loaded despite a cache entry")

    monkeypatch.setattr(models, "load_teacher", forbidden)
    code, out, _ = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path))
    second = json.loads(out)
    assert code == 0 and second["teacher_cache"] == "hit" and second["teacher_loaded"] is False
    assert second["score"] == first["score"]  # same seed, same cached logits: the same run
    # the references beside the score: the majority class and the teacher (its dev logits cached too)
    assert first["majority_prediction"].endswith("% of train)") and 0 < first["majority_score"] < 1
    assert 0 < first["teacher_score"] < 1
    assert (second["majority_score"], second["teacher_score"]) == (first["majority_score"], first["teacher_score"])


def test_every_glue_task_distils_from_fixtures(tiny_bert_dir, tmp_path, capsys):
    for task, metrics in [("cola", {"mcc"}), ("sst2", {"accuracy"}), ("mrpc", {"f1", "accuracy"}),
                          ("qqp", {"f1", "accuracy"}), ("stsb", {"pearson", "spearman"}),
                          ("mnli", {"accuracy_m", "accuracy_mm"}), ("qnli", {"accuracy"}), ("wnli", {"accuracy"})]:
        args = distill_args(tiny_bert_dir, tmp_path, "--epochs", "1")
        args[args.index("rte")] = task
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
        result = json.loads(out)
        assert {m for m in result["metrics"] if not m.startswith("holdout_")} == metrics, task
        assert {"majority_score", "teacher_score"} <= set(result), task


def test_output_dir_resumes_a_finished_run_without_training(tiny_bert_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path, "--output-dir", str(out_dir)))
    assert code == 0 and (out_dir / "checkpoint.pt").exists()
    assert json.loads((out_dir / "result.json").read_text())["score"] == json.loads(out)["score"]
    code, out, _ = run_cli(capsys, *distill_args(tiny_bert_dir, tmp_path, "--output-dir", str(out_dir)))
    assert code == 0 and json.loads(out)["resumed_from_epoch"] == 2


@pytest.mark.parametrize("change, field", [
    (("--task", "squad"), "task"),
    (("--loss", "kl"), "loss"),
    (("--lam", "1.5"), "lam"),
    (("--lam", "-0.1"), "lam"),
    (("--tau", "0"), "tau"),
    (("--student", "3x"), "student"),
    (("--student", "0x128"), "student"),
    (("--epochs", "0"), "epochs"),
    (("--max-train-samples", "0"), "max-train-samples"),
    (("--micro-batch-size", "5"), "micro-batch-size"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_bert_dir, tmp_path, capsys, change, field):
    args = distill_args(tiny_bert_dir, tmp_path, "--output-dir", str(tmp_path / "out"))
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"makd: error: {field}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_unknown_model_and_missing_data_file_are_named(tiny_bert_dir, tmp_path, capsys):
    args = distill_args(tiny_bert_dir, tmp_path)
    args[args.index("--teacher") + 1] = str(tmp_path / "no-such-model")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "teacher" in err and len(err.strip().splitlines()) == 1

    args = distill_args(tiny_bert_dir, tmp_path)
    args[args.index("--glue-dir") + 1] = str(tmp_path / "nowhere")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "nowhere" in err and "train.tsv" in err


def test_malformed_file_error_names_file_and_line(tiny_bert_dir, tmp_path, capsys):
    bad = tmp_path / "glue" / "RTE"
    bad.mkdir(parents=True)
    good = (FIXTURE_GLUE / "RTE" / "train.tsv").read_text(encoding="utf-8").splitlines()
    (bad / "train.tsv").write_text("\n".join(good[:3] + ["7\tonly two fields"] + good[3:]) + "\n")
    (bad / "dev.tsv").write_text((FIXTURE_GLUE / "RTE" / "dev.tsv").read_text(encoding="utf-8"))
    args = distill_args(tiny_bert_dir, tmp_path)
    args[args.index("--glue-dir") + 1] = str(tmp_path / "glue")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "train.tsv" in err and "line 4" in err


def test_argparse_misuse_is_one_line_exit_2(capsys):
    code, _, err = run_cli(capsys, "distill", "--task", "rte")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--student" in err
    code, _, err = run_cli(capsys, "frobnicate")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_zoo_list_and_path(capsys, minilm_dir):
    code, out, _ = run_cli(capsys, "zoo", "list")
    assert code == 0 and "zoo:minilm-l6" in out and "zoo:mpnet-base" in out
    code, out, _ = run_cli(capsys, "zoo", "path", "minilm-l6")
    assert code == 0 and out.strip() == str(minilm_dir)
    code, _, err = run_cli(capsys, "zoo", "path", "nope")
    assert code == 2 and "nope" in err


def test_console_script_exit_code(tmp_path):
    """The installed `makd` entry point (a real process): misuse exits 2 with no traceback."""
    exe = os.path.join(os.path.dirname(sys.executable), "makd")
    proc = subprocess.run([exe, "distill", "--task", "rte", "--student", "2x128", "--lam", "7"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "makd: error: lam: must be in [0, 1], got 7.0"


def test_progress_bars_stay_off_a_log_file(tiny_bert_dir, tmp_path, capsys):
    """Without --quiet and without a terminal (CI, `makd logs`, a sweep's log file) no bar is redrawn line by line:
    tqdm's bars show only on a TTY."""
    args = [a for a in distill_args(tiny_bert_dir, tmp_path, "--epochs", "1") if a != "--quiet"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0 and "epoch 1/1" not in err and "teacher logits" not in err
