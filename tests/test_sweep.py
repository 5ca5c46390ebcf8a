"""The Ray Tune sweep driver on local Ray with tiny random models and fixture/toy data (each test < ~1 min)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from makd import models
from makd_sweep.config import load_config, only_tasks
from makd_sweep.driver import run_sweep
from makd_sweep.loopback import loopback_cluster
from makd_sweep.main import main
from tests.helpers import sentiment, stderr_ends
from tests.sockets import SocketWatch, process_tree

FIXTURE_GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"
pytestmark = pytest.mark.sweep


@pytest.fixture(autouse=True)
def quiet_ray(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def write_config(tmp_path: Path, teacher: Path, **overrides) -> Path:
    raw = {"name": "exp", "tasks": ["rte"], "teacher": str(teacher), "students": ["1x64"],
           "student_tokenizer": str(teacher), "losses": ["ce", "vanilla", "taylor"], "lams": [0.0, 0.5], "seeds": [0],
           "epochs": 2, "lr": 2e-3, "batch_size": 8, "max_length": 32, "data": {"glue_dir": str(FIXTURE_GLUE)},
           "resources_per_trial": {"cpu": 1}, "max_concurrent_trials": 2, "storage": str(tmp_path / "runs")}
    raw.update(overrides)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def events(root: str | Path) -> list[dict]:
    path = Path(root) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def checkpoints_named_by_state(experiment: Path) -> dict[str, str]:
    """Trial id -> the checkpoint dir Tune's saved experiment state names as that trial's latest (a trial the state
    names none for is absent: Tune starts it afresh on --resume)."""
    named = {}
    for state in experiment.glob("experiment_state-*.json"):
        try:
            trial_data = json.loads(state.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):  # being rewritten
            continue
        for trial_json, runtime_json in trial_data:
            manager = bytes.fromhex(json.loads(runtime_json)["checkpoint_manager"]["value"])  # a cloudpickle
            if found := re.findall(rb"checkpoint_\d+", manager):
                named[json.loads(trial_json)["trial_id"]] = found[-1].decode()
    return named


MAKD = str(Path(sys.executable).with_name("makd"))


def start_driver(config: Path, tmp_path: Path, hold: str | None = None) -> tuple[subprocess.Popen, dict]:
    """`makd sweep CONFIG` in its own process group, so that a test can SIGKILL it with its Ray workers; `hold`:
    its trials' $MAKD_FAULT_HOLD (RELEASE:EPOCH, makd_sweep/trial.py). Returns the env a resume runs with (no hold)."""
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home")}
    driver = subprocess.Popen([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"],
                              env={**env, "MAKD_FAULT_HOLD": hold} if hold else env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return driver, env


def kill_driver(driver: subprocess.Popen) -> None:
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


def resume_driver(config: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2", "--resume"], env=env,
                          capture_output=True, text=True, timeout=300)


def toy_sst2_dir(tmp_path: Path, n_train: int = 400) -> Path:
    """A separable SST-2-like task in the GLUE layout: a good trial learns it within the first epoch."""
    root = tmp_path / "toy-glue" / "SST-2"
    root.mkdir(parents=True)
    for name, ds in (("train.tsv", sentiment(n_train)), ("dev.tsv", sentiment(64, "validation", seed=1))):
        lines = ["sentence\tlabel"] + [f"{t}\t{int(y)}" for t, y in zip(ds.text_a, ds.labels, strict=True)]
        (root / name).write_text("\n".join(lines) + "\n")
    return root.parent


def test_grid_sweep_writes_every_trial_and_loads_the_teacher_once_per_task(module_ray, tiny_bert_dir, tmp_path):
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tasks=["rte", "mrpc"], lams=[0.0],
                                   losses=["vanilla", "taylor", "mse"]))
    loads_before = models.TEACHER_LOADS
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    # ce (added automatically) + vanilla, taylor, mse at lam 0: 4 cells x 2 tasks
    assert models.TEACHER_LOADS - loads_before == 2  # once per task, in the driver
    frame = pd.read_csv(Path(outcome.root) / "trials.csv")
    assert len(frame) == 8 and set(frame["status"]) == {"TERMINATED"}
    assert sorted(frame["loss"].unique()) == ["ce", "mse", "taylor", "vanilla"]
    assert (frame["epochs_run"] == 2).all() and (frame["teacher_loads_in_trial"] == 0).all()
    assert (frame["peak_rss_mb"] > 100).all()  # a real process size in MiB, reported by every trial
    assert set(frame["metric"]) == {"accuracy", "f1"} and frame["glue_f1"].notna().sum() == 4
    assert frame["student_parameters_m"].iloc[0] > 0
    reported = {json.loads(line)["student_parameters_m"] for result in Path(outcome.root).glob("*/*/result.json")
                for line in result.read_text().splitlines() if line.strip()}
    assert reported == set(frame["student_parameters_m"])  # every trial reports its student's size
    done = Counter(e["trial_id"] for e in events(outcome.root) if e["event"] == "done")
    assert len(done) == 8 and set(done.values()) == {1}
    summary = json.loads((Path(outcome.root) / "sweep.json").read_text())
    assert summary["teacher_cache"]["rte"]["teacher_loaded"] is True and summary["trials"] == 8
    # the sweep's report is made from the driver's rows; read back from the dir, the tables are the same
    from makd_sweep.report.build import build

    assert outcome.report.sources == [f"{outcome.root}: the sweep's own trial rows"]
    pd.testing.assert_frame_equal(outcome.report.leaderboard, build([outcome.root]).leaderboard)
    # a piece of the sweep (`makd sweep --tasks mrpc`) is its own experiment and trains the same mrpc trials
    piece = only_tasks(cfg, "mrpc", rename=True)
    assert piece.name == cfg.name + "-mrpc" and piece.tasks == ("mrpc",)
    piece_frame = pd.read_csv(Path(run_sweep(piece, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache")).root)
                              / "trials.csv")
    key = ["loss", "lam", "tau", "seed"]
    pd.testing.assert_series_equal(frame[frame["task"] == "mrpc"].set_index(key).sort_index()["last_epoch_score"],
                                   piece_frame.set_index(key).sort_index()["last_epoch_score"])
    # a second sweep over the same tasks hits the cache: the teacher is not loaded at all
    again = load_config(write_config(tmp_path, tiny_bert_dir, name="exp2", tasks=["rte", "mrpc"], lams=[0.0],
                                     losses=["vanilla"], epochs=1, max_concurrent_trials=1))
    outcome2 = run_sweep(again, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    assert models.TEACHER_LOADS - loads_before == 2
    assert {v["status"] for v in outcome2.cache.values()} == {"hit"}
    # max_concurrent_trials 1 holds for a grid too (2 CPUs would fit two trials): one trial at a time
    spans = sorted((e["time"], e["trial_id"], e["event"]) for e in events(outcome2.root) if e["event"] in ("start", "done"))
    assert [event for _, _, event in spans] == ["start", "done"] * 4


def test_asha_stops_a_clearly_bad_trial_early(module_ray, tiny_bert_dir, tmp_path):
    """ce and taylor (= ce) learn the toy task in epoch 1; vanilla and mse at lam 0 imitate a random teacher and
    stay near chance. They run after the good ones (max_concurrent_trials 2), so ASHA must cut them at rung 1."""
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tasks=["sst2"], losses=["ce", "taylor", "vanilla", "mse"],
                                   lams=[0.0], epochs=4, lr=3e-3, data={"glue_dir": str(toy_sst2_dir(tmp_path))},
                                   scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
                                   final=None))
    # quiet=False: the progress reporter path that `makd sweep` without --quiet takes
    outcome = run_sweep(cfg, quiet=False, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    frame = outcome.trials.set_index("loss")
    assert frame.loc["ce", "best_score"] > 0.9 and frame.loc["ce", "epochs_run"] == 4
    stopped = frame[frame["stopped_early"]]
    assert len(stopped) >= 1 and (stopped["epochs_run"] < 4).all()
    assert set(stopped.index) <= {"vanilla", "mse"}
    assert set(stopped["status"]) == {"STOPPED"}
    logged = Counter(e["trial_id"] for e in events(outcome.root) if e["event"] == "epoch")
    assert all(logged[t] == n for t, n in zip(outcome.trials["trial_id"], outcome.trials["epochs_run"], strict=True))


def test_hyperband_stops_weak_trials_in_its_aggressive_brackets(module_ray, tiny_bert_dir, tmp_path):
    """HyperBand (scheduler.kind hyperband, Ray's HyperBandScheduler) at 4 epochs, reduction factor 2: Ray fills its
    brackets from the least aggressive one (3 trials, no rung) to one with a rung at epoch 2 (3 trials, 2 go on), so
    of these 6 trials (ce, vanilla, mse x 2 seeds, in that order) one of the last three (vanilla, mse: imitating a
    random teacher at lam 0) stops at epoch 2. A paused trial resumes from its checkpoint: no epoch trains twice."""
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tasks=["sst2"], losses=["ce", "vanilla", "mse"],
                                   lams=[0.0], seeds=[0, 1], epochs=4, lr=3e-3,
                                   data={"glue_dir": str(toy_sst2_dir(tmp_path))},
                                   scheduler={"kind": "hyperband", "reduction_factor": 2}, final=None,
                                   max_concurrent_trials=None))
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    frame = outcome.trials
    assert set(frame["status"]) <= {"TERMINATED", "STOPPED"}
    ce = frame[frame["loss"] == "ce"]
    assert (ce["best_score"] > 0.9).all() and (ce["epochs_run"] == 4).all()
    stopped = frame[frame["epochs_run"] < 4]
    assert len(stopped) >= 1 and set(stopped["loss"]) <= {"vanilla", "mse"} and (stopped["epochs_run"] == 2).all()
    trained = Counter((e["trial_id"], e["epoch"]) for e in events(outcome.root) if e["event"] == "epoch")
    assert set(trained.values()) == {1}  # every epoch trained once, paused or not
    assert all(sum(1 for t, _ in trained if t == trial) == n
               for trial, n in zip(frame["trial_id"], frame["epochs_run"], strict=True))


def test_optuna_samples_lam_in_range_and_is_reproducible(module_ray, tiny_bert_dir, tmp_path):
    sampled = []
    for name in ("opt-a", "opt-b"):
        cfg = load_config(write_config(tmp_path, tiny_bert_dir, name=name, losses=["ce", "taylor"], epochs=1,
                                       search={"kind": "optuna", "n_trials": 6, "seed": 7, "lam": [0.0, 1.0]},
                                       final=None))
        outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
        frame = outcome.trials
        assert len(frame) == 6 and set(frame["status"]) == {"TERMINATED"}
        assert frame["lam"].between(0.0, 1.0).all()
        assert frame["loss"].value_counts().to_dict() == {"ce": 3, "taylor": 3}  # one study each, the same budget
        sampled.append(sorted(zip(frame["loss"], frame["seed"], frame["lam"].round(10), strict=True)))
    assert sampled[0] == sampled[1]
    assert len({lam for _, _, lam in sampled[0]}) >= 3  # actually sampled, not one fixed value


def test_a_trial_that_raises_once_resumes_from_its_checkpoint(module_ray, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MAKD_FAULT_ONCE", f"{tmp_path / 'faults'}:1")
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1], epochs=3, max_failures=1))
    outcome = run_sweep(cfg, quiet=True, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    frame = outcome.trials
    assert len(frame) == 2 and set(frame["status"]) == {"TERMINATED"} and (frame["epochs_run"] == 3).all()
    assert frame["resumed"].all()
    assert len(list((tmp_path / "faults").iterdir())) == 2  # each trial really failed once
    log = events(outcome.root)
    for trial_id in frame["trial_id"]:
        epochs = [e["epoch"] for e in log if e["trial_id"] == trial_id and e["event"] == "epoch"]
        starts = [e for e in log if e["trial_id"] == trial_id and e["event"] == "start"]
        assert epochs == [1, 2, 3]  # epoch 1 was not trained again after the crash
        assert [s["resumed"] for s in starts] == [False, True]


def test_a_killed_driver_resumes_every_trial_exactly_once_even_from_a_state_naming_a_deleted_checkpoint(
        tiny_bert_dir, tmp_path):
    """`makd sweep` SIGKILLed mid-sweep (driver and its Ray), then `--resume`: every trial finishes exactly once and
    every epoch is trained. The kill also makes certain the race of a driver killed after Tune deleted a trial's
    older checkpoint (num_to_keep=1) but before it saved the experiment state naming the newer one: once the saved
    state names a checkpoint of an unfinished trial (and one trial is done), the driver is killed and each named
    trial's newest complete checkpoint is moved past every other one, so whatever the state names is gone (an upload
    the kill cut short stays, and must not be read). --resume starts each such trial at the epoch after the moved
    checkpoint's (makd_sweep/trial_checkpoint.py); a trial whose checkpoint the state did not name yet is started afresh by
    Tune and trains again, to the same result. (One sweep for both: it was two tests, each paying a sweep.) Trials
    wait after epoch 2 for the test's release (one trial per release), so the unfinished trial is killed at epoch 2
    whatever the machine's speed: never between its last epoch and its "done" line."""
    import pyarrow.fs as pafs

    from makd_sweep.trial_checkpoint import is_complete

    config = write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1, 2, 3], epochs=3,
                          max_concurrent_trials=1)
    root = tmp_path / "runs" / "exp"

    def done_ids() -> set[str]:
        return {e["trial_id"] for e in events(root) if e["event"] == "done"}

    release = tmp_path / "release.once"
    driver, env = start_driver(config, tmp_path, hold=f"{release}:2")

    def holding() -> set[str]:  # trials that reported epoch 2 and have not finished
        return {e["trial_id"] for e in events(root) if e["event"] == "epoch" and e["epoch"] == 2} - done_ids()

    deadline = time.time() + 120
    while time.time() < deadline and not holding():
        time.sleep(0.2)
    release.touch()  # the first trial goes on to its end; the next one waits at epoch 2
    while time.time() < deadline and not (done_ids() and holding() & set(checkpoints_named_by_state(root / "rte"))):
        time.sleep(0.2)
    kill_driver(driver)
    time.sleep(2)  # anything the dead driver left behind would show up as extra events here
    done_before = done_ids()
    assert 1 <= len(done_before) < 4, "the driver must be killed mid-sweep"
    named = checkpoints_named_by_state(root / "rte")
    assert set(named) - done_before, "the driver must be killed after the state named an unfinished trial's checkpoint"
    before = len(events(root))
    held = {}  # trial folder -> the epoch its moved checkpoint holds (checkpoint_00000N: epoch N + 1)
    for trial in (root / "rte").iterdir():
        if not any(trial_id in trial.name for trial_id in named):
            continue
        numbered = sorted(trial.glob("checkpoint_*"))
        complete = [d for d in numbered if is_complete(pafs.LocalFileSystem(), str(d))]
        if complete:
            held[trial.name] = int(complete[-1].name.split("_")[1]) + 1
            complete[-1].rename(trial / f"checkpoint_{int(numbered[-1].name.split('_')[1]) + 1:06d}")
    assert held
    resumed = resume_driver(config, env)
    assert resumed.returncode == 0, stderr_ends(resumed)
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"} and (frame["epochs_run"] == 3).all()
    log = events(root)
    done = Counter(e["trial_id"] for e in log if e["event"] == "done")
    assert sorted(done) == sorted(frame["trial_id"]) and set(done.values()) == {1}
    trained = {(e["trial_id"], e["epoch"]) for e in log if e["event"] == "epoch"}
    assert len(trained) == 4 * 3  # every epoch of every trial was trained and checkpointed
    after = [e for e in log[before:] if e["event"] == "epoch"]
    for folder, epoch in held.items():
        retrained = [e["epoch"] for e in after if e["trial_id"] in folder]
        assert retrained == list(range(epoch + 1, 4)), (folder, epoch, retrained)


def test_a_signalled_driver_stops_the_whole_sweep_and_resume_finishes_it(tiny_bert_dir, tmp_path):
    """Injected: SIGTERM (what `makd stop` and schedulers send) to the driver once the search
    stage reported an epoch (Ctrl+C's SIGINT takes the same path: tests/test_interrupt.py). Checked: the driver exits
    128+signal with one line naming --resume, the final stage never starts, and --resume finishes every trial exactly
    once, the interrupted ones from their checkpoints."""
    sig = signal.SIGTERM
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1, 2], epochs=12, max_concurrent_trials=2,
                          final={"seeds": [0, 1], "top_k": 1})
    root = tmp_path / "runs" / "exp"
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home")}
    driver = subprocess.Popen([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["event"] == "epoch" and e["epoch"] >= 2 for e in events(root)):
        time.sleep(0.2)
    driver.send_signal(sig)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 128 + sig, err[-2000:]
    ours = [line for line in err.splitlines() if line.startswith("makd:")]
    assert ours[-1].startswith(f"makd: stopped by {sig.name}") and "--resume" in ours[-1]
    before = events(root)
    done_before = {e["trial_id"] for e in before if e["event"] == "done"}
    # a trial that is training its 2nd epoch has had its 1st checkpoint registered by Tune (report blocks till then)
    interrupted = {e["trial_id"] for e in before if e["event"] == "epoch" and e["epoch"] >= 2} - done_before
    assert interrupted and not (root / "rte-final").exists()
    resumed = resume_driver(config, env)
    assert resumed.returncode == 0, stderr_ends(resumed)
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 3 + 2 and set(frame["status"]) == {"TERMINATED"}
    after = events(root)[len(before):]
    done = Counter(e["trial_id"] for e in before + after if e["event"] == "done")
    assert sorted(done) == sorted(frame["trial_id"]) and set(done.values()) == {1}
    restarts = {e["trial_id"]: e["resumed"] for e in after if e["event"] == "start"}
    assert not set(restarts) & done_before and all(restarts[t] for t in interrupted)


def test_without_resume_an_existing_experiment_is_not_overwritten(tiny_bert_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_bert_dir)
    (tmp_path / "runs" / "exp" / "rte").mkdir(parents=True)
    assert main(["sweep", str(config)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_two_node_cluster_runs_trials_on_both_nodes(own_ray, tiny_bert_dir, tmp_path):
    """...and every process of both nodes listens on loopback only, checked while the trials run."""
    cluster = loopback_cluster(2)
    try:
        cfg = load_config(write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1, 2, 3], epochs=2,
                                       max_concurrent_trials=2))
        with SocketWatch(lambda: process_tree(os.getpid())) as watch:
            outcome = run_sweep(cfg, address=cluster.address, quiet=True, cache_dir=str(tmp_path / "cache"))
    finally:
        cluster.shutdown()
    frame = outcome.trials
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"}
    assert frame["node_id"].nunique() == 2
    watch.assert_loopback_only(servers=("gcs_server", "raylet"), min_raylets=2)


def test_gpu_request_without_gpu_is_refused_before_anything_starts(tiny_bert_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_bert_dir, resources_per_trial={"cpu": 1, "gpu": 0.25})
    assert main(["sweep", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("makd: error: resources_per_trial.gpu")
    assert not (tmp_path / "runs").exists()


def test_too_many_cpus_per_trial_is_refused(tiny_bert_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_bert_dir, resources_per_trial={"cpu": 64})
    assert main(["sweep", str(config), "--quiet", "--num-cpus", "2"]) == 2
    assert capsys.readouterr().err.startswith("makd: error: resources_per_trial.cpu")


def run_cli_sweep(config: Path, tmp_path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MAKD, "sweep", str(config), "--num-cpus", "2", *extra], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MAKD_HOME": str(tmp_path / "home"), **(env or {})})


def test_the_console_prints_a_line_per_trial_start_and_end_and_the_tables_not_rays_status(tiny_bert_dir, tmp_path):
    """Issue 28: by default one line when a trial starts and one when it ends (setting, score, epoch, stage ETA), then
    the tables and the answer; Ray Tune's status tables and the trials' checkpoint lines only with --verbose."""
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce", "vanilla"], lams=[0.0], seeds=[0, 1], epochs=2)
    run = run_cli_sweep(config, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stderr.splitlines()
    starts = [line for line in lines if line.startswith("makd: [rte search] start ")]
    ends = [line for line in lines if line.startswith("makd: [rte search] done ")]
    assert len(starts) == len(ends) == 4 and ends[-1].endswith("stage done")
    assert all(" seed " in line and "λ=" in line for line in starts + ends)
    assert all("accuracy " in line and "at epoch" in line for line in ends)
    # the student's cost, measured once before any trial, on the named hardware (issue 44)
    assert sum(line.startswith("makd: [rte] inference cost, batch 1 (on ") for line in lines) == 1
    console = run.stdout + run.stderr
    for noise in ("Trial status", "== Status ==", "Checkpoint successfully created", "Current time"):
        assert noise not in console
    assert len(console.splitlines()) < 60
    assert "| Student | Params (M) |" in run.stdout and "Answer (" in run.stdout and "- RTE (Acc), student" in run.stdout

    verbose = run_cli_sweep(config, tmp_path, "--verbose", "--name", "loud")
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    loud = verbose.stdout + verbose.stderr
    assert "== Status ==" in loud and "makd: [rte search] start" not in loud


def test_a_failed_trial_prints_its_error_whole(tiny_bert_dir, tmp_path):
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0], epochs=2, max_failures=0)
    run = run_cli_sweep(config, tmp_path, env={"MAKD_FAULT_ONCE": f"{tmp_path / 'faults'}:1"})
    assert run.returncode == 1
    assert "makd: [rte search] FAILED 1/1" in run.stderr
    assert "Traceback" in run.stderr and "RuntimeError: injected fault after epoch 1" in run.stderr


def test_the_python_api_runs_a_sweep_and_returns_its_tables(module_ray, tiny_bert_dir, tmp_path):
    """Issue 45, item 5: `from makd_sweep.api import sweep` runs a sweep in the calling process (using the Ray it is
    connected to) and returns the trials, the leaderboard and the experiment dir; a dict config works alike, and bad
    input is refused before anything runs."""
    import yaml

    from makd.errors import UsageError
    from makd_sweep.api import sweep

    config = write_config(tmp_path, tiny_bert_dir, losses=["ce", "taylor"], lams=[0.5], seeds=[0], epochs=1)
    result = sweep(config, overrides={"name": "from-python"}, num_cpus=2, cache_dir=str(tmp_path / "cache"))
    root = Path(result.experiment_dir)
    assert root.name == "from-python" and (root / "trials.csv").is_file() and result.wall_seconds > 0
    assert len(result.trials) == 2 and set(result.trials["status"]) == {"TERMINATED"} and result.failed.empty
    assert sorted(result.leaderboard["loss"]) == ["ce", "taylor"]
    taylor = result.leaderboard[result.leaderboard["loss"] == "taylor"].iloc[0]
    assert taylor["agreement_vs_ce"] == "identical"  # at tau 1 the taylor student is ce's, from Python too
    assert "| Student |" in result.paper_table
    raw = yaml.safe_load(config.read_text())
    with pytest.raises(UsageError) as err:
        sweep(raw, overrides={"lams": [2.0], "storage": str(tmp_path / "never")})
    assert "lams" in str(err.value) and not (tmp_path / "never").exists()
