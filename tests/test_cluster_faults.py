"""Faults on a loopback cluster (cluster/local.sh, its own ports and state dir): a checkpoint write that runs out of
disk, and the worker node killed while one of its trials runs. Each test says what it injected and what it checked.
The node-kill test runs last: the cluster has one node after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cluster_jobs import makd, started_local_cluster
from tests.test_sweep import events, write_config

pytestmark = pytest.mark.sweep
PORT, DASHBOARD_PORT = "6392", "8267"


@pytest.fixture(scope="module")
def fault_cluster():
    yield from started_local_cluster("mkf-", PORT, DASHBOARD_PORT)


def test_a_checkpoint_write_that_runs_out_of_disk_is_retried_from_the_last_good_checkpoint(fault_cluster,
                                                                                           tiny_bert_dir, tmp_path):
    """Injected: the first epoch-2 checkpoint write of the sweep stops half-written with ENOSPC
    ($MAKD_FAULT_DISK_FULL_ONCE). Checked: that trial is retried from its epoch-1 checkpoint and finishes, no
    (trial, epoch) is reported twice, no half-written temp file is left (none was ever loaded: every resume read a
    whole checkpoint), and trials.csv and the leaderboard are whole."""
    env, _ = fault_cluster
    marker = tmp_path / "disk-full-fired"
    config = write_config(tmp_path, tiny_bert_dir, name="full", losses=["ce"], seeds=[0, 1], epochs=3,
                          max_failures=1)
    sub = makd("submit", str(config), "--wait", env={**env, "MAKD_FAULT_DISK_FULL_ONCE": f"{marker}:2"})
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-2000:]
    assert marker.exists(), "the fault was never injected: the test checked nothing"
    root = tmp_path / "runs" / "full"
    log = events(root)
    resumed = [e for e in log if e["event"] == "start" and e["resumed"]]
    assert len(resumed) == 1
    victim = resumed[0]["trial_id"]
    assert [e["epoch"] for e in log if e["event"] == "epoch" and e["trial_id"] == victim] == [1, 2, 3]
    done = [e["trial_id"] for e in log if e["event"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 2
    assert not list(root.rglob(".checkpoint.*.tmp"))
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 2 and set(frame["status"]) == {"TERMINATED"} and frame["best_score"].notna().all()
    assert len(pd.read_csv(root / "leaderboard.csv")) == 1


def _head_node_id(env: dict) -> str:
    code = (f"import json, ray; ray.init(address='127.0.0.1:{PORT}', logging_level='ERROR'); print(json.dumps("
            "[n['NodeID'] for n in ray.nodes() if n['Alive'] and 'node:__internal_head__' in n['Resources']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])[0]


def _worker_pgid(state: Path) -> int:
    """The process group of the node without the GCS (local.sh starts each node in its own group)."""
    groups: dict[int, list[str]] = {}
    for line in subprocess.run(["ps", "-ww", "-eo", "pgid=,args="], capture_output=True, text=True).stdout.splitlines():
        pgid, _, args = line.strip().partition(" ")
        if str(state / "ray") in args:
            groups.setdefault(int(pgid), []).append(args)
    workers = [pgid for pgid, args in groups.items() if not any("gcs_server" in a for a in args)]
    assert len(groups) == 2 and len(workers) == 1, groups
    return workers[0]


def test_the_worker_node_killed_mid_trial_its_trial_resumes_on_the_head_and_every_trial_ends_once(
        fault_cluster, tiny_bert_dir, tmp_path):
    """Injected: SIGKILL of the worker node's process group once one of its trials has reported an epoch.
    Checked: the sweep succeeds, every trial ends exactly once, and the lost trial starts again from its
    checkpoint (resumed) on the surviving head node."""
    env, state = fault_cluster
    release = tmp_path / "release"  # trials wait after their 1st epoch until it exists: the head's first trial holds
    env = {**env, "MAKD_FAULT_HOLD": f"{release}:1"}  # its node's one CPU, so the next one starts on the worker
    head = _head_node_id(env)
    config = write_config(tmp_path, tiny_bert_dir, name="nodeloss", losses=["ce"], seeds=[0, 1, 2, 3], epochs=3,
                          max_failures=2)
    driver = subprocess.Popen([str(Path(sys.executable).with_name("makd")), "submit", str(config), "--wait"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = tmp_path / "runs" / "nodeloss"
    deadline, victim = time.time() + 240, None
    while victim is None and time.time() < deadline and driver.poll() is None:
        on_worker = [e for e in events(root) if e["event"] == "epoch" and e.get("node_id") != head]
        victim = on_worker[0]["trial_id"] if on_worker else None
        time.sleep(0.2)
    if victim is None:
        ended = driver.poll() is not None
        out, err = driver.communicate(timeout=600) if ended else ("", "")
        pytest.fail(f"no trial reported an epoch on the worker node (driver {'exited ' + str(driver.returncode) if ended else 'still running'}; "
                    f"events: {[(e['event'], e.get('node_id', '')[:8]) for e in events(root)][:12]}; head {head[:8]})\n"
                    + out[-1500:] + err[-1500:])
    os.killpg(_worker_pgid(state), signal.SIGKILL)
    release.touch()
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:] + err[-2000:]
    log = events(root)
    done = [e["trial_id"] for e in log if e["event"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 4
    restarts = [e for e in log if e["event"] == "start" and e["trial_id"] == victim][1:]
    assert restarts and restarts[-1]["resumed"] and restarts[-1]["node_id"] == head
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"}
