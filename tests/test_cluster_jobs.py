"""cluster/local.sh (head + worker on loopback, token auth), the Ray Job commands against its head, and faults on
it: a checkpoint write that runs out of disk, and the worker node killed while one of its trials runs (each fault
test says what it injected and what it checked). One cluster for the module; the node-kill test runs last: the
cluster has one node after it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.sockets import SocketWatch, processes_mentioning
from tests.test_sweep import events, write_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.sweep
PORT, DASHBOARD_PORT = "6391", "8266"


def makd(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("makd"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout)


def ray_preamble(line: str) -> bool:
    """The lines Ray's job manager writes into a job's log before the entrypoint's own output."""
    return line.startswith("Running entrypoint for job") or bool(re.match(r"\d{4}-\d\d-\d\d [\d:,]+\s+INFO ", line))


def release_when_both_nodes_trained(root: Path, release: Path) -> threading.Thread:
    """Trials held by $MAKD_FAULT_HOLD after their first epoch are let go once epochs were reported from two nodes:
    a held trial keeps its node's one CPU busy, so the next trial must start on the other node, on any machine."""
    def watch() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and len({e.get("node_id") for e in events(root) if e["event"] == "epoch"}) < 2:
            time.sleep(0.2)
        release.touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def started_local_cluster(prefix: str, port: str, dashboard_port: str):
    """cluster/local.sh up on its own state dir and ports; yields (env pointing at it, state dir); then down, and no
    process of it may survive."""
    state = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: Ray's AF_UNIX socket paths max 107 bytes
    env = {**os.environ, "MAKD_LOCAL_CLUSTER_DIR": str(state), "MAKD_RAY_PORT": port,
           "MAKD_DASHBOARD_PORT": dashboard_port, "RAY": str(Path(sys.executable).with_name("ray"))}
    env.pop("RAY_ADDRESS", None)
    up = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "up"], capture_output=True, text=True, env=env,
                        timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    for line in (state / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    yield env, state
    down = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "down"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.strip()
    shutil.rmtree(state, ignore_errors=True)
    assert not left, f"processes of the local cluster survived `down`: {left}"


@pytest.fixture(scope="module")
def local_cluster_and_state():
    yield from started_local_cluster("mkc-", PORT, DASHBOARD_PORT)


@pytest.fixture(scope="module")
def local_cluster(local_cluster_and_state):
    return local_cluster_and_state[0]


def test_submit_runs_a_sweep_on_both_nodes_and_jobs_lists_it(local_cluster_and_state, tiny_bert_dir, tmp_path):
    """...on your own data (a jsonl task with string labels, its files shipped with the job and read from there),
    with token auth on, and every process of both nodes (GCS, raylets, agents, the job's driver, the trials'
    workers) listening on loopback only while the sweep runs (issue 29)."""
    from tests.test_file_tasks import reviews, write

    env, state = local_cluster_and_state
    assert env["RAY_AUTH_MODE"] == "token"
    release = tmp_path / "release"
    own = tmp_path / "own"
    own.mkdir()
    task = {"name": "reviews-2026", "train_file": str(write(own / "train.jsonl", reviews(40))),
            "eval_file": str(write(own / "dev.jsonl", reviews(12, seed=1)))}
    config = write_config(tmp_path, tiny_bert_dir, tasks=[task], losses=["ce"], seeds=[0, 1], epochs=2,
                          max_concurrent_trials=2)
    watcher = release_when_both_nodes_trained(tmp_path / "runs" / "exp", release)
    with SocketWatch(lambda: processes_mentioning(str(state))) as watch:
        # the default python: $MAKD_CLUSTER_PYTHON of local.sh
        sub = makd("submit", str(config), "--wait", env={**env, "MAKD_FAULT_HOLD": f"{release}:1"})
    watcher.join()
    watch.assert_loopback_only(min_raylets=2)
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-2000:]
    job_id = sub.stdout.splitlines()[0].strip()
    assert job_id.startswith("makd-exp-") and "TERMINATED" in sub.stdout
    frame = pd.read_csv(tmp_path / "runs" / "exp" / "trials.csv")
    assert len(frame) == 2 and set(frame["status"]) == {"TERMINATED"} and set(frame["task"]) == {"reviews-2026"}
    assert frame["node_id"].nunique() == 2  # trials landed on both nodes
    (read,) = json.loads((tmp_path / "runs" / "exp" / "sweep.json").read_text())["config"]["file_tasks"]
    for key in ("train_file", "eval_file"):  # the job read the copies it carried, not this test's files
        assert not read[key].startswith(str(tmp_path)) and read[key].endswith(Path(task[key]).name), read
    listed = makd("jobs", env=env)
    assert listed.returncode == 0 and job_id in listed.stdout and "SUCCEEDED" in listed.stdout
    logs = makd("logs", job_id, env=env)
    assert logs.returncode == 0 and "trials in" in logs.stdout


def test_stop_ends_a_running_sweep_and_submit_resume_finishes_it_running_no_trial_twice(local_cluster, tiny_bert_dir,
                                                                                         tmp_path):
    """Injected: `makd stop` once the first epoch is reported, on a sweep of own data (a jsonl task whose files each
    submit ships). Checked: the stop answers `JOB STOPPED` (exit 0), the driver took the graceful path,
    `makd submit --resume --wait` succeeds and reads the files its own job carried,
    every trial ends exactly once, no trial that had ended trains again, and a trial that had reported an epoch
    starts again from its checkpoint (resumed), not from scratch. The driver saves Tune's state on the stop
    (makd_sweep/interrupt.py), so no trial's state names a checkpoint that Tune had already deleted."""
    from tests.test_file_tasks import reviews, write

    release = tmp_path / "release"  # trials wait after their 2nd epoch until it exists: the stop finds them running
    env = {**local_cluster, "MAKD_FAULT_HOLD": f"{release}:2"}
    own = tmp_path / "own"  # own data: each submit ships the task's files with its job, --resume's too
    own.mkdir()
    task = {"name": "reviews", "train_file": str(write(own / "train.jsonl", reviews(40))),
            "eval_file": str(write(own / "dev.jsonl", reviews(12, seed=1)))}
    config = write_config(tmp_path, tiny_bert_dir, name="again", tasks=[task], losses=["ce"], seeds=[0, 1, 2],
                          epochs=4, max_concurrent_trials=2)
    job_id = makd("submit", str(config), env=env).stdout.strip()
    root = tmp_path / "runs" / "again"
    deadline = time.time() + 600
    while time.time() < deadline and not any(e["event"] == "epoch" and e["epoch"] >= 2 for e in events(root)):
        time.sleep(0.2)
    assert any(e["event"] == "epoch" and e["epoch"] >= 2 for e in events(root)), makd("logs", job_id, env=env).stdout
    stopped = makd("stop", job_id, env=env)
    release.touch()
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{job_id} STOPPED", stopped.stderr
    logs = makd("logs", job_id, env=env).stdout
    assert "makd: stopped by SIGTERM" in logs, logs[-2000:]  # the driver took the graceful path, Tune saved its state
    before = events(root)
    done_before = {e["trial_id"] for e in before if e["event"] == "done"}
    # training its 2nd epoch: Tune had registered its 1st checkpoint (a report blocks until Tune took it)
    reported = {e["trial_id"] for e in before if e["event"] == "epoch" and e["epoch"] >= 2}
    assert not done_before and reported  # held after their 2nd epoch: stopped mid-sweep on any machine
    again = makd("submit", str(config), "--resume", "--wait", env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    after = events(root)[len(before):]
    trained_to_the_end = [e["trial_id"] for e in before + after if e["event"] == "done"]
    assert sorted(trained_to_the_end) == sorted(set(trained_to_the_end))
    ended = {e["trial_id"] for e in before + after if e["event"] in ("done", "already-done")}
    assert len(ended) == 3
    restarts = [e for e in after if e["event"] == "start"]
    # A trial that had reported its last epoch may be started once more if the stop came before Tune recorded its
    # end (before its "done" event, even): then it starts from its last checkpoint, trains nothing and reports its
    # stored final epoch ("already-done").
    assert not {e["trial_id"] for e in after if e["event"] == "epoch"} & done_before
    for trial_id in {e["trial_id"] for e in after if e["event"] == "already-done"} | (
            {e["trial_id"] for e in restarts} & done_before):
        assert [e["event"] for e in after if e["trial_id"] == trial_id] == ["start", "already-done"]
    assert all(e["resumed"] for e in restarts if e["trial_id"] in reported)
    frame = pd.read_csv(root / "trials.csv")
    assert len(frame) == 3 and set(frame["status"]) == {"TERMINATED"} and set(frame["task"]) == {"reviews"}
    (read,) = json.loads((root / "sweep.json").read_text())["config"]["file_tasks"]
    assert not read["train_file"].startswith(str(tmp_path)), read  # the resumed job read the copy it carried


def test_a_cluster_python_without_torch_gets_one_line_and_exit_1(local_cluster, tiny_bert_dir, tmp_path):
    """Injected: `--python` of a bare venv (no torch). Checked: the job fails before the sweep with one line naming
    torch and the fix, `makd submit --wait` exits 1, no traceback anywhere, `makd logs` shows that line first."""
    env = local_cluster
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    config = write_config(tmp_path, tiny_bert_dir, name="nodeps", losses=["ce"])
    sub = makd("submit", str(config), "--python", str(bare / "bin" / "python"), "--wait", env=env)
    out = sub.stdout + sub.stderr
    assert sub.returncode == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("makd job:")]
    assert len(errors) == 1 and "lacks torch" in errors[0] and "--python" in errors[0], out
    job_id = sub.stdout.splitlines()[0].strip()
    logs = [line for line in makd("logs", job_id, env=env).stdout.strip().splitlines() if not ray_preamble(line)]
    assert logs and logs[0] == errors[0]  # after Ray's own lines (runtime env set-up, the entrypoint), ours first
    assert not (tmp_path / "runs" / "nodeps").exists()  # nothing half-started


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_in_one_line(local_cluster, tiny_bert_dir, tmp_path):
    """Injected: resources_per_trial.gpu 1 on the GPU-less local cluster. Checked: the job refuses before any trial
    in one line naming the field; `makd submit --wait` exits 1 with no traceback."""
    env = local_cluster
    config = write_config(tmp_path, tiny_bert_dir, name="gpu", losses=["ce"],
                          resources_per_trial={"cpu": 1, "gpu": 1})
    sub = makd("submit", str(config), "--wait", env=env)
    out = sub.stdout + sub.stderr
    assert sub.returncode == 1 and "Traceback" not in out, out
    refusals = [line for line in out.splitlines() if "resources_per_trial.gpu" in line]
    assert len(refusals) == 1 and "no GPU" in refusals[0], out
    assert not any(e["event"] == "start" for e in events(tmp_path / "runs" / "gpu"))


def test_unknown_job_and_bad_config_are_one_line_errors(local_cluster, tmp_path):
    env = local_cluster
    res = makd("logs", "makd-nope-123", env=env)
    assert res.returncode == 2 and res.stderr.startswith("makd: error: job:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks: [squad]\nstudents: [2x128]\n")
    res = makd("submit", str(bad), env=env)
    assert res.returncode == 2 and res.stderr.startswith("makd: error: tasks[0]:")
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_checkpoint_write_that_runs_out_of_disk_is_retried_from_the_last_good_checkpoint(local_cluster_and_state,
                                                                                           tiny_bert_dir, tmp_path):
    """Injected: the first epoch-2 checkpoint write of the sweep stops half-written with ENOSPC
    ($MAKD_FAULT_DISK_FULL_ONCE). Checked: that trial is retried from its epoch-1 checkpoint and finishes, no
    (trial, epoch) is reported twice, no half-written temp file is left (none was ever loaded: every resume read a
    whole checkpoint), and trials.csv and the leaderboard are whole."""
    env, _ = local_cluster_and_state
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
        local_cluster_and_state, tiny_bert_dir, tmp_path):
    """Injected: SIGKILL of the worker node's process group once one of its trials has reported an epoch.
    Checked: the sweep succeeds, every trial ends exactly once, and the lost trial starts again from its
    checkpoint (resumed) on the surviving head node."""
    env, state = local_cluster_and_state
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
