"""The leaderboard on synthetic experiment dirs with known scores (exact expectations), plus one real sweep."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from makd.errors import OneLineParser, UsageError
from makd_sweep.report import build as build_module
from makd_sweep.report import cli as cli_module
from makd_sweep.report import order as order_module
from makd_sweep.report import paper as paper_module
from makd_sweep.report import plots as plots_module
from makd_sweep.report import rank as rank_module
from makd_sweep.report import trials as trials_module
from makd_sweep.report.build import build
from makd_sweep.report.cli import add_leaderboard_parser, main
from makd_sweep.report.plots import method_color, plot_lambda_curves
from makd_sweep.report.rank import LEADERBOARD_COLUMNS
from makd_sweep.report.trials import TRIAL_COLUMNS, trials_frame, write_trials

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARAMS = {"1x64": 2.041, "2x128": 4.386}
_IDS = itertools.count()


def trial(task="rte", student="2x128", loss="ce", lam=1.0, tau=1.0, seed=0, score=0.5, *, final=None,
          status="TERMINATED", epochs=3, wall=36.0, metric="accuracy", **extra) -> dict:
    """One trials.csv row as makd_sweep.report.trials writes it; device-hours = wall / 3600 (one CPU per trial)."""
    return {"task": task, "teacher": None if loss == "ce" else "zoo:minilm-l6", "student": student,
            "student_parameters_m": PARAMS[student], "loss": loss, "lam": lam, "tau": tau, "seed": seed, "lr": 5e-5,
            "metric": metric, "best_score": score, "last_epoch_score": score - 0.01 if final is None else final,
            "best_epoch": epochs, "epochs_run": epochs, "max_epochs": 3, "stopped_early": status == "STOPPED",
            "status": status, "wall_seconds": wall, "device": "cpu", "device_hours": wall / 3600, "node": "vm",
            "node_id": "n1", "resumed": False, "teacher_loads_in_trial": 0, "trial_id": f"abcde_{next(_IDS):05d}",
            "error": "RuntimeError: boom" if status == "ERROR" else None, f"glue_{metric}": score, **extra}


def write_experiment(root: Path, rows: list[dict], epochs: int = 3) -> Path:
    """A finished sweep's experiment dir: trials.csv + trials.jsonl (through makd_sweep.report.trials) + sweep.json."""
    root.mkdir(parents=True, exist_ok=True)
    write_trials(str(root), trials_frame(rows))
    config = {"tasks": sorted({r["task"] for r in rows}), "teacher": "zoo:minilm-l6", "epochs": epochs,
              "scheduler": {"kind": "none", "max_epochs": None}, "cpu": 1.0, "gpu": 0.0}
    (root / "sweep.json").write_text(json.dumps({"config": config, "trials": len(rows)}))
    return root


def ray_trial(task_dir: Path, trial_id: str, params: dict, scores: list[float], *, flat: bool = False,
              error: str | None = None, metric: str = "accuracy", stamp: str = "2026-01-01_00-00-00") -> Path:
    """A Ray Tune trial folder as distill_trial leaves it: params.json, result.json (one line per epoch)."""
    folder = task_dir / f"distill_trial_{trial_id}_0_cell=student_{params['student']}_{stamp}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params if flat else {"cell": params}))
    lines = [json.dumps({"epoch": i, "score": s, "metric": metric, f"glue_{metric}": s, "time_total_s": 10.0 * i,
                         "trial_id": trial_id, "hostname": "node-a", "node_id": "nid-a", "device": "cpu",
                         "teacher_loads_in_trial": 0, "resumed_from_epoch": 0, "done": False,
                         "config": {"cell": params}})
             for i, s in enumerate(scores, start=1)]
    if scores:
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    if error:
        (folder / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return folder


def cell(student="2x128", loss="ce", lam=1.0, tau=1.0, seed=0) -> dict:
    return {"student": student, "loss": loss, "lam": lam, "tau": tau, "seed": seed, "lr": 0.002}


def known_rows() -> list[dict]:
    """rte; 2x128: ce .60/.64 + taylor at λ=1 (= CE) .62; vanilla λ0 .75/.45 (mean .60), λ.5 .66/.70 (mean .68);
    taylor λ0 .61/.65 (mean .63), λ.5 .60/.62 (+ an ERROR trial at .99 that must not count); 1x64: ce .50,
    taylor λ0 .52 (no vanilla); one NOT_STARTED trial."""
    return [
        trial(loss="ce", seed=0, score=0.60), trial(loss="ce", seed=1, score=0.64),
        trial(loss="taylor", lam=1.0, seed=2, score=0.62),
        trial(loss="vanilla", lam=0.0, seed=0, score=0.75), trial(loss="vanilla", lam=0.0, seed=1, score=0.45,
                                                                   status="STOPPED", epochs=1),
        trial(loss="vanilla", lam=0.5, seed=0, score=0.66, wall=72.0),
        trial(loss="vanilla", lam=0.5, seed=1, score=0.70, wall=72.0),
        trial(loss="taylor", lam=0.0, seed=0, score=0.61), trial(loss="taylor", lam=0.0, seed=1, score=0.65),
        trial(loss="taylor", lam=0.5, seed=0, score=0.60), trial(loss="taylor", lam=0.5, seed=1, score=0.62),
        trial(loss="taylor", lam=0.5, seed=2, score=0.99, status="ERROR"),
        trial(student="1x64", loss="ce", score=0.50), trial(student="1x64", loss="taylor", lam=0.0, score=0.52),
        {**trial(loss="mse", lam=0.0), "best_score": None, "last_epoch_score": None, "status": "NOT_STARTED"},
    ]


def test_best_lambda_mean_std_and_deltas_match_hand_computed_values(tmp_path):
    result = build([write_experiment(tmp_path / "exp", known_rows())])
    board = result.leaderboard
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert list(zip(board["student"], board["loss"], strict=True)) == [
        ("1x64", "ce"), ("1x64", "taylor"), ("2x128", "ce"), ("2x128", "vanilla"), ("2x128", "taylor")]
    row = board.set_index(["student", "loss"])
    ce, van, tay = row.loc[("2x128", "ce")], row.loc[("2x128", "vanilla")], row.loc[("2x128", "taylor")]
    # CE baseline: ce seeds 0, 1 and the taylor trial at λ = 1 (exactly CE): .60 .62 .64
    assert (ce["best_lam"], ce["best_tau"], ce["n_seeds"]) == (1.0, 1.0, 3)
    assert ce["dev_score_mean"] == pytest.approx(0.62) and ce["dev_score_std"] == pytest.approx(0.02)
    # vanilla: λ=0.5 wins on the seed mean (.68) although λ=0 holds the single best trial (.75)
    assert (van["best_lam"], van["n_seeds"], van["settings_tried"], van["n_trials"]) == (0.5, 2, 2, 4)
    assert van["dev_score_mean"] == pytest.approx(0.68) and van["dev_score_std"] == pytest.approx(math.sqrt(0.0008))
    assert van["last_epoch_score_mean"] == pytest.approx(0.67)
    assert van["wall_seconds_mean"] == pytest.approx(54.0) and van["device_hours_total"] == pytest.approx(0.06)
    assert van["delta_vs_ce"] == pytest.approx(0.06) and math.isnan(van["delta_vs_vanilla"])
    assert van["teacher"] == "zoo:minilm-l6" and van["metric"] == "accuracy"
    # taylor: λ=0 (.63) beats λ=0.5 (.61; the ERROR trial at .99 is not finished and does not count)
    assert (tay["best_lam"], tay["n_seeds"], tay["n_trials"]) == (0.0, 2, 4)
    assert tay["dev_score_mean"] == pytest.approx(0.63)
    assert tay["delta_vs_vanilla"] == pytest.approx(-0.05) and tay["delta_vs_ce"] == pytest.approx(0.01)
    assert math.isnan(ce["delta_vs_ce"]) and math.isnan(ce["delta_vs_vanilla"])
    small = row.loc[("1x64", "taylor")]
    assert small["delta_vs_ce"] == pytest.approx(0.02) and math.isnan(small["delta_vs_vanilla"])
    assert math.isnan(row.loc[("1x64", "ce"), "dev_score_std"])  # one seed: no spread
    assert row.loc[("1x64", "ce"), "student_parameters_m"] == 2.041
    assert result.unfinished == 2 and result.unfinished_by_status == {"ERROR": 1, "NOT_STARTED": 1}
    assert len(result.trials) == 13 and set(result.trials["status"]) == {"TERMINATED", "STOPPED"}
    assert list(result.trials.columns[:len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS


def test_paper_table_layout_bold_average_and_tau_rows(tmp_path):
    rows = []
    for student, loss, lam, tau, cola, (m, mm), mrpc in [
        ("1x64", "ce", 1.0, 1.0, 0.10, (0.50, 0.52), 0.60),
        ("2x128", "ce", 1.0, 1.0, 0.30, (0.70, 0.71), 0.80),
        ("2x128", "vanilla", 0.0, 1.0, 0.35, (0.72, 0.73), 0.85),
        ("2x128", "vanilla", 0.5, 1.0, 0.32, (0.60, 0.60), 0.50),
        ("2x128", "vanilla", 0.0, 2.0, 0.40, (0.69, 0.70), 0.81),
        ("2x128", "taylor", 0.0, 1.0, 0.31, (0.705, 0.69), 0.82),
    ]:
        common = dict(student=student, loss=loss, lam=lam, tau=tau)
        rows += [trial("cola", score=cola, metric="mcc", **common),
                 trial("mnli", score=m, metric="accuracy_m", glue_accuracy_mm=mm, **common),
                 trial("mrpc", score=mrpc, metric="f1", **common)]
    result = build([write_experiment(tmp_path / "exp", rows)])
    lines = result.paper_table_markdown.splitlines()
    assert lines[0] == ("| Student | Params (M) | Method (epoch, λ chosen on dev) | CoLA (MCC) | MRPC (F1) | MNLI-m/mm (Acc) | Average | "
                        "Δ Average vs ce [95% CI] |")
    assert lines[2:7] == [
        "| 1x64 | 2.0 | ce | **10.0** | **60.0** | **50.0/52.0** | **40.0** |  |",
        "| 2x128 | 4.4 | ce | 30.0 | 80.0 | 70.0/71.0 | 60.0 |  |",
        "|  |  | vanilla | 35.0 | **85.0** | **72.0/73.0** | **64.0** | +4.0 (1 seed, no CI) |",
        "|  |  | vanilla τ=2 | **40.0** | 81.0 | 69.0/70.0 | 63.3 | +3.3 (1 seed, no CI) |",
        "|  |  | taylor | 31.0 | 82.0 | 70.5/69.0 | 61.2 | +1.2 (1 seed, no CI) |"]
    assert any("Average uses matched accuracy only" in line for line in lines[7:])
    assert any("taylor" in line and "seed noise" in line for line in lines[7:])
    cola = result.leaderboard.set_index(["task", "student", "loss"]).loc[("cola", "2x128", "vanilla")]
    assert (cola["best_lam"], cola["best_tau"], cola["settings_tried"]) == (0.0, 2.0, 3)


def test_running_experiment_is_read_from_trial_folders(tmp_path):
    """No trials.csv, no sweep.json, no Ray state: finished rows only, the rest counted."""
    root = tmp_path / "running"
    rte = root / "rte"
    ray_trial(rte, "aaaaa_00000", cell(), [0.5, 0.7, 0.6])
    ray_trial(rte, "aaaaa_00000", cell(), [], stamp="2025-12-31_23-59-59")  # killed before its first report
    ray_trial(rte, "aaaaa_00001", cell(loss="vanilla", lam=0.0), [0.4, 0.8, 0.75], flat=True)  # Optuna layout
    ray_trial(rte, "aaaaa_00002", cell(loss="taylor", lam=0.0), [])  # started, nothing reported yet
    ray_trial(rte, "aaaaa_00003", cell(loss="taylor", lam=0.5), [0.5])  # still running
    ray_trial(rte, "aaaaa_00004", cell(loss="vanilla", lam=0.5), [0.6], error="RuntimeError: CUDA out of memory")
    result = build([root])
    assert result.unfinished == 3
    assert result.unfinished_by_status == {"NOT_STARTED": 1, "RUNNING": 1, "ERROR": 1}
    trials = result.trials.set_index("trial_id")
    assert sorted(trials.index) == ["aaaaa_00000", "aaaaa_00001"]
    ce = trials.loc["aaaaa_00000"]
    assert (ce["loss"], ce["best_score"], ce["last_epoch_score"], ce["best_epoch"], ce["epochs_run"]) == (
        "ce", 0.7, 0.6, 2, 3)
    assert (ce["status"], ce["wall_seconds"], ce["node"], ce["metric"]) == ("TERMINATED", 30.0, "node-a", "accuracy")
    assert ce["best_glue_accuracy"] == 0.7 and ce["glue_accuracy"] == 0.6  # best epoch vs final epoch
    assert pd.isna(ce["device_hours"])  # resources are in sweep.json, written when the sweep ends
    assert trials.loc["aaaaa_00001", "loss"] == "vanilla" and trials.loc["aaaaa_00001", "lam"] == 0.0
    assert "trial folders" in result.sources[0]
    board = result.leaderboard.set_index("loss")
    assert board.loc["vanilla", "delta_vs_ce"] == pytest.approx(0.1)


def test_ray_state_and_sweep_json_decide_status_and_cost(tmp_path):
    root = tmp_path / "exp"
    rte = root / "rte"
    ray_trial(rte, "bbbbb_00000", cell(), [0.5, 0.7, 0.6])
    ray_trial(rte, "bbbbb_00001", cell(loss="vanilla", lam=0.0), [0.4, 0.45])  # ASHA stopped it after 2 of 3
    ray_trial(rte, "bbbbb_00002", cell(loss="taylor", lam=0.0), [0.55])  # Ray says RUNNING
    states = [("bbbbb_00000", "TERMINATED", cell()), ("bbbbb_00001", "TERMINATED", cell(loss="vanilla", lam=0.0)),
              ("bbbbb_00002", "RUNNING", cell(loss="taylor", lam=0.0)), ("bbbbb_00003", "PENDING", cell(seed=1))]
    (rte / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": [
        [json.dumps({"trial_id": i, "status": s, "config": {"cell": c}, "relative_logdir": "x"}), "{}"]
        for i, s, c in states]}))
    (root / "sweep.json").write_text(json.dumps({"config": {"tasks": ["rte"], "teacher": "T", "epochs": 3,
                                                            "scheduler": {"max_epochs": None}, "cpu": 2, "gpu": 0}}))
    result = build([root])
    trials = result.trials.set_index("trial_id")
    assert trials.loc["bbbbb_00001", "status"] == "STOPPED" and bool(trials.loc["bbbbb_00001", "stopped_early"])
    assert trials.loc["bbbbb_00000", "status"] == "TERMINATED"
    assert trials.loc["bbbbb_00000", "device_hours"] == pytest.approx(30.0 / 3600 * 2)  # cpu: 2 per trial
    assert trials.loc["bbbbb_00001", "teacher"] == "T" and pd.isna(trials.loc["bbbbb_00000", "teacher"])
    assert result.unfinished_by_status == {"RUNNING": 1, "NOT_STARTED": 1}


def test_trials_csv_older_than_the_trial_folders_is_not_used(tmp_path):
    """After --resume the old trials.csv is stale: the folders win, parameter counts still come from the CSV."""
    root = write_experiment(tmp_path / "exp", [trial(loss="ce", score=0.1, status="ERROR", trial_id="ccccc_00000")])
    old = time.time() - 3600
    os.utime(root / "trials.csv", (old, old))
    ray_trial(root / "rte", "ccccc_00000", cell(), [0.5, 0.9, 0.8])
    result = build([root])
    assert result.unfinished == 0 and list(result.trials["best_score"]) == [0.9]
    assert result.trials["student_parameters_m"].iloc[0] == PARAMS["2x128"]
    assert "older" in result.sources[0]


def test_cli_writes_csvs_markdown_and_plot_that_round_trip(tmp_path, capsys):
    root = write_experiment(tmp_path / "exp", known_rows())
    out = tmp_path / "out"
    files = {k: out / n for k, n in (("csv", "lb.csv"), ("trials", "trials.csv"), ("md", "t2.md"), ("png", "l.png"))}
    assert main([str(root), "--csv", str(files["csv"]), "--trials-csv", str(files["trials"]), "--markdown",
                 str(files["md"]), "--plot", str(files["png"])]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "2 not finished (1 ERROR, 1 NOT_STARTED)" in captured.err
    expected = build([root])
    board = pd.read_csv(files["csv"])
    assert list(board.columns) == LEADERBOARD_COLUMNS
    text = ["task", "student", "loss", "metric", "teacher", "cost_measured_on", "agreement_vs_ce",
            "agreement_vs_vanilla"]
    flags = ["identical_to_ce", "identical_to_vanilla", "decided_vs_ce", "decided_vs_vanilla", "constant_predictor",
             "at_majority"]  # True, False or empty (unknown)
    numbers = [c for c in LEADERBOARD_COLUMNS if c not in text + flags]
    pd.testing.assert_frame_equal(board[numbers], expected.leaderboard[numbers], check_dtype=False)
    assert board[text[-2:]].fillna("").values.tolist() == expected.leaderboard[text[-2:]].values.tolist()

    def flag_values(frame: pd.DataFrame) -> list:
        return [[None if pd.isna(v) else bool(v) for v in frame[c]] for c in flags]

    assert flag_values(board) == flag_values(expected.leaderboard)
    assert board[["task", "student", "loss"]].values.tolist() == expected.leaderboard[
        ["task", "student", "loss"]].values.tolist()
    trials = pd.read_csv(files["trials"])
    assert list(trials.columns[:len(TRIAL_COLUMNS)]) == TRIAL_COLUMNS and len(trials) == 13
    again = build([files["trials"]])  # the written trials table is itself a valid input
    pd.testing.assert_frame_equal(again.leaderboard, expected.leaderboard)
    assert files["md"].read_text() == expected.paper_table_markdown
    assert files["png"].read_bytes()[:8] == PNG_SIGNATURE
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files behind
    # no output option: the leaderboard and the paper table on stdout
    assert main([str(root)]) == 0
    printed = capsys.readouterr().out
    assert "dev_score_mean" in printed and "delta_vs_vanilla" in printed and "| Student | Params (M) |" in printed
    assert main([str(root), "--markdown", "-"]) == 0
    assert capsys.readouterr().out == expected.paper_table_markdown


def test_merging_dirs_adds_seeds_and_a_trial_given_twice_counts_once(tmp_path):
    a = write_experiment(tmp_path / "a", [trial(loss="ce", seed=0, score=0.60),
                                          trial(loss="vanilla", lam=0.0, seed=0, score=0.70)])
    b = write_experiment(tmp_path / "b", [trial(loss="ce", seed=1, score=0.64),
                                          trial(loss="vanilla", lam=0.0, seed=1, score=0.74)])
    merged = build([a, b]).leaderboard.set_index("loss")
    assert merged.loc["ce", "n_seeds"] == 2 and merged.loc["ce", "dev_score_mean"] == pytest.approx(0.62)
    assert merged.loc["vanilla", "delta_vs_ce"] == pytest.approx(0.10)
    twice = build([a, a / "trials.csv", b / "trials.csv"])
    assert len(twice.trials) == 4
    pd.testing.assert_frame_equal(twice.leaderboard, build([a, b]).leaderboard)


def test_plot_is_small_multiples_with_error_bars_a_labelled_ce_band_and_one_colour_per_method(tmp_path):
    rows = []
    for task in ("rte", "sst2", "mrpc", "stsb"):
        rows += [trial(task, loss="ce", seed=0, score=0.60), trial(task, loss="ce", seed=1, score=0.64),
                 trial(task, loss="vanilla", lam=0.0, seed=0, score=0.5), trial(task, loss="vanilla", lam=0.0,
                                                                                 seed=1, score=0.7),
                 trial(task, loss="vanilla", lam=0.5, seed=0, score=0.6)]
    rows += [trial("rte", loss="ce", seed=0, score=0.5, student="1x64")]  # a second student, run on RTE only
    trials = build([write_experiment(tmp_path / "exp", rows)]).trials
    path = tmp_path / "plots" / "lambda.png"
    fig = plot_lambda_curves(trials, path, stage="search")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert len(fig.axes) == 8  # 2 students (rows) x 4 tasks (columns, paper order)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["SST-2 (Acc)", "MRPC (Acc)", "STS-B (Acc)", "RTE (Acc)"]
    assert "search stage" in fig.get_suptitle()
    first = [ax for ax in fig.axes if ax.get_ylabel().startswith("2x128")]
    ax = first[0]
    ce_line = next(line for line in ax.lines if line.get_linestyle() == "--")
    assert list(ce_line.get_ydata()) == pytest.approx([62.0, 62.0])
    band = ax.patches[0]  # the ce band: its mean ± the std of its two seeds (60 and 64)
    assert band.get_y() == pytest.approx(62.0 - 100 * math.sqrt(0.0008))
    assert band.get_y() + band.get_height() == pytest.approx(62.0 + 100 * math.sqrt(0.0008))
    vanilla = ax.containers[0]  # the errorbar: mean 60 at both lambdas, std over the two lambda-0 seeds
    assert list(vanilla.lines[0].get_xdata()) == [0.0, 0.5]
    assert list(vanilla.lines[0].get_ydata()) == pytest.approx([60.0, 60.0])
    colours = {c.lines[0].get_color() for a in fig.axes for c in a.containers}
    assert colours == {method_color("vanilla")}  # the same colour in every panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ce (λ = 1), ± std band", "vanilla"]
    not_run = [a for a in fig.axes if any(t.get_text() == "not run" for t in a.texts)]
    assert len(not_run) == 3  # the second student's SST-2, MRPC and STS-B panels
    assert method_color("taylor") != method_color("vanilla") and method_color("ce") == "0.35"


@pytest.mark.parametrize("case", ["missing", "empty-dir", "foreign-dir", "csv-columns", "csv-empty", "not-csv",
                                  "nothing-finished", "folders-unfinished"])
def test_bad_input_is_a_usage_error_naming_the_path(tmp_path, case, capsys):
    path = tmp_path / case
    problem = {"missing": "no such file", "empty-dir": "not a makd sweep experiment dir",
               "foreign-dir": "not a makd sweep experiment dir", "csv-columns": "missing column(s)",
               "csv-empty": "empty file", "not-csv": "expected an experiment dir or a trials .csv",
               "nothing-finished": "no finished trials yet (1 ERROR)",
               "folders-unfinished": "no finished trials yet (1 NOT_STARTED)"}[case]
    if case == "empty-dir":
        path.mkdir()
    elif case == "foreign-dir":
        (path / "notes").mkdir(parents=True)
        (path / "notes" / "readme.txt").write_text("hello")
        (path / "data.json").write_text("{}")
    elif case == "csv-columns":
        path = tmp_path / "other.csv"
        path.write_text("task,student,score\nrte,2x128,0.5\n")
    elif case == "csv-empty":
        path = tmp_path / "empty.csv"
        path.write_text("")
    elif case == "not-csv":
        path = tmp_path / "results.txt"
        path.write_text("task\n")
    elif case == "nothing-finished":
        write_experiment(path, [trial(status="ERROR")])
    elif case == "folders-unfinished":
        ray_trial(path / "rte", "ddddd_00000", cell(), [])
    good = write_experiment(tmp_path / "good", [trial()])
    with pytest.raises(UsageError) as err:
        build([good, path])
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    assert "\n" not in str(err.value)
    assert main([str(good), str(path)]) == 2
    assert capsys.readouterr().err == f"makd: error: {err.value}\n"


def test_parser_uses_the_callers_parser_class(tmp_path):
    parser = OneLineParser(prog="makd")
    add_leaderboard_parser(parser.add_subparsers(dest="command", parser_class=OneLineParser))
    with pytest.raises(UsageError, match="EXP_DIR_OR_CSV"):
        parser.parse_args(["leaderboard"])
    args = parser.parse_args(["leaderboard", "a", "b.csv", "--csv", "x.csv", "--markdown", "-", "--plot", "p.png"])
    assert (args.paths, args.csv, args.markdown, args.plot, args.trials_csv) == (["a", "b.csv"], "x.csv", "-",
                                                                                  "p.png", None)
    good = write_experiment(tmp_path / "good", [trial()])
    assert main([str(good), "--plot", str(tmp_path / "p.jpg")]) == 2  # refused before anything is read
    assert not (tmp_path / "p.jpg").exists()


def test_the_leaderboard_never_imports_ray(tmp_path, monkeypatch, capsys):
    """sys.modules[name] = None makes any `import ray` fail: the command must not need it."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "ray", None)
    for module in (trials_module, order_module, rank_module, paper_module, plots_module, build_module,
                   cli_module):  # their top-level imports run again
        importlib.reload(module)
    root = tmp_path / "exp"
    ray_trial(root / "rte", "eeeee_00000", cell(), [0.5, 0.6])
    write_experiment(tmp_path / "csv", [trial(), *(trial(loss="vanilla", lam=lam) for lam in (0.0, 0.5))])  # a λ axis
    assert cli_module.main([str(root), str(tmp_path / "csv" / "trials.csv"), "--plot", str(tmp_path / "p.png"),
                 "--markdown", str(tmp_path / "t.md")]) == 0, capsys.readouterr().err
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.sweep
def test_real_sweep_reads_the_same_from_trials_csv_and_from_the_trial_folders(tiny_bert_dir, tmp_path,
                                                                              monkeypatch):
    """One real local-Ray sweep: trials.csv (written from Ray's ResultGrid) and the folder reader (Ray's own
    result.json / params.json / experiment_state, what a running sweep has) give the same trials and leaderboard."""
    import yaml

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from makd_sweep.config import load_config
    from makd_sweep.driver import run_sweep

    raw = {"name": "lb", "tasks": ["rte"], "teacher": str(tiny_bert_dir), "students": ["1x64"],
           "student_tokenizer": str(tiny_bert_dir), "losses": ["ce", "vanilla", "taylor"], "lams": [0.0, 0.5],
           "seeds": [0], "epochs": 2, "lr": 2e-3, "batch_size": 8, "max_length": 32,
           "data": {"glue_dir": str(Path(__file__).resolve().parent / "fixtures" / "glue")},
           "resources_per_trial": {"cpu": 1}, "max_concurrent_trials": 2, "storage": str(tmp_path / "runs")}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    outcome = run_sweep(load_config(tmp_path / "sweep.yaml"), quiet=True, num_cpus=2, cache_dir=str(tmp_path / "c"))
    finished = build([outcome.root])
    assert len(finished.trials) == 5 and finished.unfinished == 0 and "trials.csv" in finished.sources[0]
    running = tmp_path / "copy"
    shutil.copytree(outcome.root, running)
    (running / "trials.csv").unlink()
    (running / "sweep.json").unlink()
    from_folders = build([running])
    assert "trial folders" in from_folders.sources[0] and from_folders.unfinished == 0
    # without sweep.json (a running sweep) the teacher comes from the trials' own reports
    taught = from_folders.trials[from_folders.trials["loss"] != "ce"]
    assert (taught["teacher"] == str(tiny_bert_dir)).all() and not taught["teacher_fine_tuned"].any()
    cols = ["task", "student", "loss", "lam", "tau", "seed", "lr", "metric", "best_score", "last_epoch_score", "best_epoch",
            "epochs_run", "status", "wall_seconds", "node", "node_id", "trial_id", "glue_accuracy", "majority_score",
            "teacher_score"]
    a = finished.trials[cols].sort_values("trial_id").reset_index(drop=True)
    b = from_folders.trials[cols].sort_values("trial_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    same = [c for c in LEADERBOARD_COLUMNS if c not in ("student_parameters_m", "device_hours_total", "teacher")]
    pd.testing.assert_frame_equal(finished.leaderboard[same], from_folders.leaderboard[same], check_dtype=False)
    assert list(finished.leaderboard["loss"]) == ["ce", "vanilla", "taylor"]
    # the references every trial reports: the majority class of the fixture's train split scored on its dev split,
    # and the teacher's own dev score (on the rows that used it), computed once by the driver
    from makd.data import load_split
    from makd.references import majority_reference
    from makd.tasks import get_task

    rte, glue = get_task("rte"), raw["data"]["glue_dir"]
    expected = majority_reference(rte, load_split(rte, "train", glue_dir=glue),
                                  {"": load_split(rte, "validation", glue_dir=glue)})["majority_score"]
    assert (finished.trials["majority_score"] == expected).all()
    taught = finished.trials["loss"] != "ce"
    assert finished.trials.loc[~taught, "teacher_score"].isna().all()
    assert finished.trials.loc[taught, "teacher_score"].nunique() == 1
    assert finished.leaderboard["at_majority"].notna().all()
    table = finished.paper_table_markdown
    assert f"| *majority class (constant prediction)* | {100 * expected:.1f} |" in table.replace("| *reference* | – ", "")
    assert f"(not fine-tuned)* | {100 * finished.trials.loc[taught, 'teacher_score'].iloc[0]:.1f} |" in table


def test_the_same_run_in_two_sweeps_counts_once(tmp_path):
    """Every sweep adds the ce baseline: two sweeps of one student must not turn one seed into two."""
    base = {c: None for c in TRIAL_COLUMNS}
    base.update(task="rte", student="s", student_parameters_m=1.0, metric="accuracy", lr=1e-4, max_epochs=3,
                epochs_run=3, best_epoch=3, status="TERMINATED", stopped_early=False, wall_seconds=10.0,
                device_hours=0.003)
    rows_a = [dict(base, trial_id="a0", loss="ce", lam=1.0, tau=1.0, seed=0, best_score=0.6, last_epoch_score=0.6),
              dict(base, trial_id="a1", loss="vanilla", lam=0.0, tau=1.0, seed=0, best_score=0.5, last_epoch_score=0.5,
                   teacher="t")]
    rows_b = [dict(base, trial_id="b0", loss="ce", lam=1.0, tau=1.0, seed=0, best_score=0.6, last_epoch_score=0.6),
              dict(base, trial_id="b1", loss="vanilla", lam=0.0, tau=2.0, seed=0, best_score=0.55, last_epoch_score=0.55,
                   teacher="t")]
    pd.DataFrame(rows_a).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows_b).to_csv(tmp_path / "b.csv", index=False)
    board = build([tmp_path / "a.csv", tmp_path / "b.csv"])
    ce = board.leaderboard[board.leaderboard["loss"] == "ce"].iloc[0]
    assert ce["n_seeds"] == 1 and len(board.trials) == 3


def test_taylor_is_identical_to_the_ce_copy_of_its_own_sweep_when_another_machine_ran_the_other(tmp_path):
    """ce in two sweeps (a fine-tuned teacher's and the paper's), run on two machines: the same predictions, weights
    that differ in the last bits (other CPU kernels). Each sweep's taylor at τ = 1 equals its own sweep's ce copy,
    so both taylor rows read identical; a taylor that equals neither copy reads `same predictions`."""
    base = {c: None for c in TRIAL_COLUMNS}
    base.update(task="rte", student="s", student_parameters_m=1.0, metric="accuracy", lr=1e-4, max_epochs=3,
                epochs_run=3, best_epoch=3, status="TERMINATED", stopped_early=False, wall_seconds=10.0,
                device_hours=0.003, stage="final", predictions_fingerprint="p1")

    def sweep(name: str, fine_tuned: bool, ce_weights: str, taylor_weights: str, last_bits: float = 0.0) -> Path:
        rows = [dict(base, trial_id=f"{name}{seed}{loss}", loss=loss, lam=lam, tau=1.0, seed=seed, best_score=0.6,
                     last_epoch_score=0.6, dev_score=0.6 + seed / 100 + last_bits, teacher=None if loss == "ce" else name,
                     teacher_fine_tuned=fine_tuned and loss != "ce", weights_fingerprint=f"{weights}{seed}")
                for seed in (0, 1) for loss, lam, weights in (("ce", 1.0, ce_weights), ("taylor", 0.0, taylor_weights))]
        pd.DataFrame(rows).to_csv(tmp_path / f"{name}.csv", index=False)
        return tmp_path / f"{name}.csv"

    # a regression's Pearson from the other machine's copy differs in the last bits: still the same student
    report = build([sweep("a", True, "wa", "wa"), sweep("b", False, "wb", "wb", last_bits=2e-8)])
    board = report.leaderboard
    agreement = dict(zip(board["loss"], board["agreement_vs_ce"], strict=True))
    assert agreement["taylor, fine-tuned teacher"] == agreement["taylor"] == "identical"
    assert (board.loc[board["loss"] == "taylor", ["delta_vs_ce", "ci_low_vs_ce", "ci_high_vs_ce"]] == 0).all(axis=None)
    taylor_row = next(line for line in report.paper_table_markdown.splitlines() if "| taylor |" in line)
    assert taylor_row.endswith("| identical |") and " = " in taylor_row
    assert board[board["loss"] == "ce"].iloc[0]["n_seeds"] == 2  # still one ce run per seed
    board = build([sweep("a", True, "wa", "wa"), sweep("c", False, "wc", "wz")]).leaderboard
    assert board[board["loss"] == "taylor"].iloc[0]["agreement_vs_ce"] == "same predictions"


def test_a_fine_tuned_teacher_is_its_own_method_and_old_csvs_still_read(tmp_path):
    """Vanilla from a fine-tuned teacher is a different (costlier) experiment: never pooled with the paper's setting.
    A trials CSV written before the teacher_fine_tuned column existed reads as not fine-tuned."""
    plain = [trial(loss="ce", seed=s, score=0.60) for s in (0, 1)]
    plain += [trial(loss="vanilla", lam=0.0, seed=s, score=0.62) for s in (0, 1)]
    old = pd.DataFrame(plain).drop(columns=["teacher_fine_tuned"], errors="ignore")
    old.to_csv(tmp_path / "old.csv", index=False)
    tuned = [trial(loss="vanilla", lam=0.0, seed=s, score=0.70, teacher_fine_tuned=True, teacher="ft/model")
             for s in (0, 1)]
    write_experiment(tmp_path / "ft", tuned)
    board = build([tmp_path / "old.csv", tmp_path / "ft"]).leaderboard.set_index("loss")
    assert list(board.index) == ["ce", "vanilla", "vanilla, fine-tuned teacher"]
    assert board.loc["vanilla", "dev_score_mean"] == pytest.approx(0.62)
    assert board.loc["vanilla, fine-tuned teacher", "dev_score_mean"] == pytest.approx(0.70)
    assert board.loc["vanilla, fine-tuned teacher", "n_seeds"] == 2
    assert board.loc["vanilla, fine-tuned teacher", "delta_vs_vanilla"] == pytest.approx(0.08)
    assert board.loc["vanilla, fine-tuned teacher", "teacher"] == "ft/model"


def test_an_average_over_fewer_tasks_is_marked_and_never_bold(tmp_path):
    """A row with results on 1 of 2 tasks must not win the Average column over rows that cover both."""
    rows = [trial("rte", loss="ce", score=0.50), trial("mrpc", loss="ce", score=0.60, metric="f1"),
            trial("rte", loss="vanilla", lam=0.0, score=0.52), trial("mrpc", loss="vanilla", lam=0.0, score=0.58,
                                                                    metric="f1"),
            trial("rte", loss="taylor", lam=0.0, score=0.90)]
    lines = build([write_experiment(tmp_path / "exp", rows)]).paper_table_markdown.splitlines()
    assert lines[2:5] == ["| 2x128 | 4.4 | ce | **60.0** | 50.0 | **55.0** |  |",
                          "|  |  | vanilla | 58.0 | 52.0 | **55.0** | +0.0 (1 seed, no CI) |",
                          "|  |  | taylor | – | **90.0** | 90.0 (1 of 2) | +40.0 (1 seed, no CI) |"]
    assert any('"(n of N)"' in line for line in lines[5:])


def test_cells_at_the_majority_baseline_are_marked_and_the_references_lead_the_table(tmp_path):
    """Injected: RTE with a majority-class baseline of 52.7 and a not-fine-tuned teacher at 47.3; ce's three seeds
    straddle the baseline, vanilla's are well above it. Checked: the leaderboard flags ce only (its CI reaches the
    baseline), the paper table opens with the two reference rows and marks ce's cell ∅ with its note, the answer
    line names the references and ce, and a single seed at the baseline is flagged too."""
    from makd_sweep.report.verdict import verdict_lines

    refs = {"majority_score": 0.527, "teacher_score": 0.473}
    rows = [trial(seed=s, score=v, **refs) for s, v in enumerate([0.52, 0.54, 0.53])]
    rows += [trial(loss="vanilla", lam=0.5, seed=s, score=v, **refs) for s, v in enumerate([0.70, 0.72, 0.71])]
    report = build([write_experiment(tmp_path / "exp", rows)])
    board = report.leaderboard.set_index("loss")
    assert board.at["ce", "at_majority"] and not board.at["vanilla", "at_majority"]
    assert board.at["vanilla", "teacher_score"] == pytest.approx(0.473) and pd.isna(board.at["ce", "teacher_score"])
    lines = report.paper_table_markdown.splitlines()
    assert lines[2].startswith("| *reference* | – | *majority class (constant prediction)* | 52.7 |")
    assert lines[3].startswith("| *reference* | – | *teacher zoo:minilm-l6 (not fine-tuned)* | 47.3 |")
    ce_row = next(line for line in lines if "| ce |" in line)
    vanilla_row = next(line for line in lines if "| vanilla |" in line)
    assert "53.0 ∅" in ce_row and "∅" not in vanilla_row
    assert any(line.startswith("- ∅ the cell is not above the majority-class baseline") for line in lines)
    (answer,) = verdict_lines(report.leaderboard)
    assert "(majority class 52.7; teacher 47.3)" in answer
    assert "ce is not above the majority-class baseline at 95% confidence" in answer

    one = build([write_experiment(tmp_path / "one", [trial(score=0.527, **refs),
                                                     trial(loss="vanilla", lam=0.5, score=0.6, **refs)])])
    assert list(one.leaderboard["at_majority"]) == [True, False]  # one seed: at or below the baseline


@pytest.mark.parametrize("tasks, fine_tuned, expected", [
    (["rte"], False, "- *reference* rows, on the same dev set: the majority class of the training labels predicted for "
                     "every example (a regression task: a constant, whose correlation is 0), and the teacher's own "
                     "score (a teacher that is not fine-tuned, the paper's setting, is a pretrained model with a "
                     "freshly initialised head)."),
    (["rte"], True, "- *reference* rows, on the same dev set: the majority class of the training labels predicted "
                    "for every example (a regression task: a constant, whose correlation is 0), and the teacher's own "
                    "score."),
    (["sst2lm"], False, None),
    (["rte", "sst2lm"], False, "- *reference* rows for RTE, on the same dev set:"),
])
def test_the_reference_note_fits_the_tasks_and_teachers_in_the_table(tmp_path, tasks, fine_tuned, expected):
    """The paper's reason for a weak teacher (a fresh head) is given only for a teacher that is not fine-tuned on a
    task with a head: a causal-LM task's teacher is the LM itself, and its own note says what its references are."""
    refs = {"majority_score": 0.5, "teacher_score": 0.55, "teacher_fine_tuned": fine_tuned}
    rows = [trial(task, loss=loss, lam=lam, seed=s, score=0.6 + 0.01 * s, **refs)
            for task in tasks for loss, lam in (("ce", 1.0), ("vanilla", 0.5)) for s in (0, 1)]
    table = build([write_experiment(tmp_path / "exp", rows)]).paper_table_markdown
    notes = [line for line in table.splitlines() if line.startswith("- *reference* rows")]
    assert "fresh head" not in table
    if expected is None:
        assert notes == [] and "causal-LM task" in table
        assert "| *teacher zoo:minilm-l6 (as released)* |" in table  # an instruction-tuned LM is not "not fine-tuned"
    else:
        (note,) = notes
        assert note.startswith(expected)
        assert ("freshly initialised head" in note) == (not fine_tuned)


def test_a_users_causal_lm_task_read_back_from_its_csv_is_told_by_its_metric(tmp_path):
    """A task from files is registered only in the sweep that ran it: `makd leaderboard` on its trials CSV, in another
    process, knows a causal-LM one by its metric (agreement) and gives it the causal-LM note and label, not the fresh
    head reason; an unregistered classification task keeps the reference note, scoped to it."""
    refs = {"majority_score": 0.1, "teacher_score": 1.0, "teacher_fine_tuned": False}
    rows = [trial(task, loss=loss, lam=lam, seed=s, score=0.6 + 0.01 * s, metric=metric, **refs)
            for task, metric in (("answers", "agreement"), ("reviews", "accuracy"))
            for loss, lam in (("ce", 1.0), ("vanilla", 0.5)) for s in (0, 1)]
    assert "answers" not in order_module.TASKS and "reviews" not in order_module.TASKS
    table = build([write_experiment(tmp_path / "exp", rows)]).paper_table_markdown
    assert any(line.startswith("- answers: a causal-LM task (docs/llm.md).") for line in table.splitlines())
    assert any(line.startswith("- *reference* rows for reviews, on the same dev set:") for line in table.splitlines())
    only_lm = build([write_experiment(tmp_path / "lm", [r for r in rows if r["task"] == "answers"])])
    assert "| *teacher zoo:minilm-l6 (as released)* |" in only_lm.paper_table_markdown
    assert "- *reference* rows" not in only_lm.paper_table_markdown


def test_trials_without_references_leave_them_unknown(tmp_path):
    """Older trials CSVs have no majority_score or teacher_score: no reference rows, no ∅, unknown flags."""
    report = build([write_experiment(tmp_path / "old", [trial(), trial(loss="vanilla", lam=0.5, score=0.6)])])
    assert report.leaderboard["at_majority"].isna().all()
    assert "*reference*" not in report.paper_table_markdown and "∅" not in report.paper_table_markdown


def test_the_sweeps_own_rows_make_its_report_without_reading_the_dir_back(tmp_path):
    """The driver hands its rows to the report (makd_sweep/report/sweep_files.py): nothing is read back from trials.csv
    or Ray's folders, so no file-time race decides which copy of a trial the report shows; the tables equal the
    ones read from the written dir."""
    rows = [trial(loss=loss, lam=lam, seed=seed, score=0.5 + 0.01 * seed + (0.02 if loss == "vanilla" else 0))
            for loss, lam in (("ce", 1.0), ("vanilla", 0.5)) for seed in (0, 1, 2)]
    empty = tmp_path / "empty"
    empty.mkdir()
    own = build_module.build([empty], rows=trials_frame(rows))
    assert own.sources == [f"{empty}: the sweep's own trial rows"]
    read = build_module.build([write_experiment(tmp_path / "written", rows)])
    pd.testing.assert_frame_equal(own.leaderboard, read.leaderboard)
    with pytest.raises(ValueError):
        build_module.build([empty, empty], rows=trials_frame(rows))


def test_an_older_trials_csv_reads_its_final_score_as_the_last_epoch_score():
    """"final" names the final stage only (ARCHITECTURE.md's glossary): older trials CSVs, kept in results/ as they
    were written, call the last epoch's selection score `final_score`; they read as `last_epoch_score`."""
    path = Path(__file__).resolve().parents[1] / "results" / "glue-cpu" / "trials-2x128.csv"
    written = pd.read_csv(path)
    assert "final_score" in written and "last_epoch_score" not in written
    frame = trials_module.read_trials_csv(path)
    assert "final_score" not in frame
    assert frame["last_epoch_score"].tolist() == pytest.approx(written["final_score"].tolist(), nan_ok=True)
