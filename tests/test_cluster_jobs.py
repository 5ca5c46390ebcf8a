"""cluster/local.sh (head + worker on loopback, token auth) and the Ray Job commands against its head."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_sweep import events, write_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.sweep


def makd(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("makd"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def local_cluster():
    state = Path(tempfile.mkdtemp(prefix="mkc-", dir="/tmp"))  # short: Ray's AF_UNIX socket paths max 107 bytes
    env = {**os.environ, "MAKD_LOCAL_CLUSTER_DIR": str(state), "MAKD_RAY_PORT": "6391",
           "MAKD_DASHBOARD_PORT": "8266", "RAY": str(Path(sys.executable).with_name("ray"))}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "up"], capture_output=True, text=True, env=env,
                        timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    for line in (state / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    yield env
    down = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "down"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.strip()
    shutil.rmtree(state, ignore_errors=True)
    assert not left, f"processes of the local cluster survived `down`: {left}"


def test_submit_runs_a_sweep_on_both_nodes_and_jobs_lists_it(local_cluster, tiny_bert_dir, tmp_path):
    env = local_cluster
    config = write_config(tmp_path, tiny_bert_dir, losses=["ce"], seeds=[0, 1, 2, 3], epochs=2,
                          max_concurrent_trials=2)
    sub = makd("submit", str(config), "--python", sys.executable, "--wait", env=env)
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-2000:]
    job_id = sub.stdout.splitlines()[0].strip()
    assert job_id.startswith("makd-exp-") and "TERMINATED" in sub.stdout
    frame = pd.read_csv(tmp_path / "runs" / "exp" / "trials.csv")
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"}
    assert frame["node_id"].nunique() == 2  # trials landed on both nodes
    listed = makd("jobs", env=env)
    assert listed.returncode == 0 and job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    logs = makd("logs", job_id, env=env)
    assert logs.returncode == 0 and "trials in" in logs.stdout


def test_stop_ends_a_running_sweep(local_cluster, tiny_bert_dir, tmp_path):
    env = local_cluster
    config = write_config(tmp_path, tiny_bert_dir, name="long", losses=["ce"], seeds=list(range(8)), epochs=30,
                          max_concurrent_trials=2)
    sub = makd("submit", str(config), "--python", sys.executable, env=env)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["event"] == "epoch" for e in events(tmp_path / "runs" / "long")):
        time.sleep(0.5)
    stopped = makd("stop", job_id, env=env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{job_id} STOPPED"


def test_unknown_job_and_bad_config_are_one_line_errors(local_cluster, tmp_path):
    env = local_cluster
    res = makd("logs", "makd-nope-123", env=env)
    assert res.returncode == 2 and res.stderr.startswith("makd: error: job:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks: [squad]\nstudents: [2x128]\n")
    res = makd("submit", str(bad), env=env)
    assert res.returncode == 2 and res.stderr.startswith("makd: error: tasks[0]:")
    assert len(res.stderr.strip().splitlines()) == 1
