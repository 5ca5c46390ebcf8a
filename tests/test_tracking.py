"""`tracking:` (makd_sweep/tracking.py): MLflow against a real tracking server started here on loopback, W&B offline,
TensorBoard; bad values and unreachable servers refused in one line before Ray starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from makd.errors import UsageError
from makd_sweep import tracking
from makd_sweep.config import load_config
from tests.helpers import stderr_ends
from tests.test_sweep import MAKD, events, kill_driver, write_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback with a SQLite backend and a temp artifact dir; stopped afterwards."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen([exe, "server", "--backend-store-uri", f"sqlite:///{home / 'db.sqlite'}",
                               "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=open(home / "log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).read()
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, (home / "log").read_text()[-2000:]
            time.sleep(0.5)
    yield uri
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@pytest.mark.parametrize(("section", "field"), [
    ({"mlflow": {"tracking_uri": "localhost"}}, "tracking.mlflow.tracking_uri"),
    ({"mlflow": {"experiment": "x"}}, "tracking.mlflow.tracking_uri"),
    ({"mlflow": {"tracking_uri": "http://h:5000", "experimnt": "x"}}, "tracking.mlflow.experimnt"),
    ({"wandb": {"project": "p", "mode": "offine"}}, "tracking.wandb.mode"),
    ({"wandb": {"mode": "offline"}}, "tracking.wandb.project"),
    ({"tensorboard": "yes"}, "tracking.tensorboard"),
    ({"neptune": {}}, "tracking.neptune"),
    ("mlflow", "tracking"),
])
def test_bad_tracking_values_name_the_field(tiny_bert_dir, tmp_path, section, field):
    with pytest.raises(UsageError) as err:
        load_config(write_config(tmp_path, tiny_bert_dir, tracking=section))
    assert err.value.field == field


@pytest.mark.slow
def test_bad_tracking_is_one_line_and_exit_2_before_ray_starts(tiny_bert_dir, tmp_path):
    config = write_config(tmp_path, tiny_bert_dir, tracking={"wandb": {"project": "p", "mode": "offine"}})
    done = subprocess.run([MAKD, "sweep", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith("makd: error: tracking.wandb.mode") and "Ray" not in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_an_unreachable_mlflow_server_is_refused_before_any_trial(tiny_bert_dir, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path, tiny_bert_dir, tracking={"mlflow": {"tracking_uri": uri, "experiment": "x"}})
    done = subprocess.run([MAKD, "sweep", str(config), "--num-cpus", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("makd: error: tracking.mlflow.tracking_uri: no MLflow server answers at " + uri)
    assert not (tmp_path / "runs").exists()


def test_a_missing_tracker_package_names_the_pip_install(monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    with pytest.raises(UsageError, match=r"pip install 'makd\[mlflow\]'") as err:
        tracking.check_tracking(tracking.TrackingConfig(mlflow=tracking.MlflowTracking("file:///tmp/x", "e")))
    assert err.value.field == "tracking.mlflow"


def test_wandb_online_without_a_key_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with pytest.raises(UsageError, match="wandb login") as err:
        tracking.check_tracking(tracking.TrackingConfig(wandb=tracking.WandbTracking("p", "online")))
    assert err.value.field == "tracking.wandb"


@pytest.mark.sweep
def test_a_tracked_sweep_killed_and_resumed_leaves_one_mlflow_run_per_trial(mlflow_server, tiny_bert_dir, tmp_path):
    """Injected: SIGKILL of the driver (and its Ray) after the first trial finished, then --resume. Checked through
    mlflow.search_runs: one run per trial (none duplicated), its params (task, student, loss, λ, τ, seed, lr, stage),
    one `score` value per epoch, the sweep's tags, nested under one parent run holding the leaderboard, trials and
    report; W&B wrote offline runs and TensorBoard event files are in every trial dir."""
    import mlflow
    from mlflow.tracking import MlflowClient

    config = write_config(tmp_path, tiny_bert_dir, name="tracked", losses=["ce"], seeds=[0, 1, 2], epochs=3,
                          max_concurrent_trials=1, tracking={
                              "mlflow": {"tracking_uri": mlflow_server, "experiment": "makd-test"},
                              "wandb": {"project": "makd-test", "mode": "offline"}, "tensorboard": True})
    root = tmp_path / "runs" / "tracked"
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home"), "WANDB_SILENT": "true"}
    driver = subprocess.Popen([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not any(e["event"] == "done" for e in events(root)):
        time.sleep(0.2)
    kill_driver(driver)
    done_before = {e["trial_id"] for e in events(root) if e["event"] == "done"}
    assert 1 <= len(done_before) < 3
    resumed = subprocess.run([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2", "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, stderr_ends(resumed)
    trials = pd.read_csv(root / "trials.csv", dtype={"weights_fingerprint": str, "predictions_fingerprint": str})
    assert len(trials) == 3 and set(trials["status"]) == {"TERMINATED"}
    assert trials["weights_fingerprint"].str.fullmatch("[0-9a-f]{16}").all()

    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["makd-test"], filter_string="tags.`makd.sweep` = 'tracked'")
    parents = runs[runs["tags.makd.parent"] == "1"]
    children = runs[runs["tags.makd.parent"] != "1"]
    assert len(parents) == 1
    names = Counter(children["tags.trial_name"])
    assert len(children) == 3 and set(names.values()) == {1}  # one run per trial, none duplicated by the resume
    assert sorted(name[-11:] for name in names) == sorted(trials["trial_id"])
    assert (children["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    for key in ("task", "student", "loss", "lam", "tau", "seed", "lr", "stage"):
        assert children[f"params.{key}"].notna().all(), key
    assert set(children["params.stage"]) == {"search"} and set(children["params.task"]) == {"rte"}
    assert set(children["tags.teacher"]) == {str(tiny_bert_dir)} and set(children["tags.teacher_fine_tuned"]) == {"False"}
    client = MlflowClient(mlflow_server)
    for run_id in children["run_id"]:
        assert [m.step for m in client.get_metric_history(run_id, "score")] == [1, 2, 3]
        assert len(client.get_metric_history(run_id, "glue_accuracy")) == 3
        assert len(client.get_metric_history(run_id, "train_loss")) == 3
    assert set(children["status"]) == {"FINISHED"}
    # the selected student's fingerprints: the same in MLflow's params as in trials.csv (the resumed trials included)
    by_trial = trials.set_index("trial_id")
    for _, run in children.iterrows():
        row = by_trial.loc[run["tags.trial_name"][-11:]]
        assert run["params.weights_fingerprint"] == row["weights_fingerprint"]
        assert run["params.predictions_fingerprint"] == row["predictions_fingerprint"]
    artifacts = {a.path for a in client.list_artifacts(parents["run_id"].iloc[0])}
    assert {"leaderboard.csv", "trials.csv", "table.md", "report.html"} <= artifacts

    offline = {p.name.rsplit("-", 1)[-1] for p in (root / "wandb").glob("offline-run-*")}
    assert set(trials["trial_id"]) <= offline
    for trial_dir in (root / "rte").glob("distill_trial_*"):
        assert list(trial_dir.glob("events.out.tfevents.*")), trial_dir


def test_the_documented_tracking_section_is_a_valid_config(tiny_bert_dir, tmp_path):
    import yaml

    from tests.docs import block_after

    section = yaml.safe_load(block_after("docs/reports.md", "**Tracking.**", "yaml"))["tracking"]
    cfg = load_config(write_config(tmp_path, tiny_bert_dir, tracking=section))
    assert cfg.tracking == tracking.TrackingConfig(
        tracking.MlflowTracking("http://127.0.0.1:5000", "makd-quickstart"), tracking.WandbTracking("makd", "offline"),
        True)


@pytest.mark.sweep
def test_a_causal_lm_sweep_is_tracked_like_a_glue_one(mlflow_server, talking_llama_dir, tmp_path, monkeypatch):
    """Issue 27: an LM task's trials reach MLflow as a GLUE task's do: one run per trial under the sweep's parent,
    its swept params, its per-epoch scores (agreement, perplexity) and the report as the parent's artifacts."""
    from mlflow.tracking import MlflowClient

    from makd_sweep.main import main
    from tests.test_lm_sweep import lm_config

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("MAKD_HOME", str(tmp_path / "home"))
    config = lm_config(tmp_path, talking_llama_dir, name="lm-tracked", students=["2x32"], losses=["ce", "vanilla"],
                       final=None, tracking={"mlflow": {"tracking_uri": mlflow_server, "experiment": "makd-lm"}})
    assert main(["sweep", str(config), "--quiet", "--num-cpus", "2"]) == 0
    trials = pd.read_csv(tmp_path / "runs" / "lm-tracked" / "trials.csv")
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("makd-lm")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert len(children) == len(trials) == 2 and {r.data.params["task"] for r in children} == {"sst2lm"}
    assert {r.data.params["loss"] for r in children} == {"ce", "vanilla"}
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "score")] == [1, 2]
        assert len(client.get_metric_history(run.info.run_id, "glue_perplexity")) == 2
    assert {"leaderboard.csv", "trials.csv", "report.html"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
