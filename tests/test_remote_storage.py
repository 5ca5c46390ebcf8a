"""A sweep with `storage: s3://…` against a real S3-compatible server on loopback (moto's server mode): trials.csv,
the leaderboard, the paper table and the report land in the bucket; `makd leaderboard`, `makd report` and
`makd export` read them back from the URI; a driver killed mid-sweep resumes from the bucket; a bucket that does
not exist is refused in one line before Ray starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import stderr_ends
from tests.test_sweep import MAKD, write_config

pytestmark = pytest.mark.sweep
BUCKET = "makd-test"


@pytest.fixture(scope="module")
def s3() -> dict:
    """A moto S3 server on 127.0.0.1 with one bucket; the environment that points pyarrow and Ray at it."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert time.time() < deadline, "moto server did not start"
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield {"env": env, "client": client}
    finally:
        server.terminate()
        server.wait(timeout=30)


def keys(s3: dict, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def makd(args: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MAKD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_a_sweep_on_s3_killed_mid_sweep_resumes_from_the_bucket_and_every_command_reads_its_files_back(
        s3, tiny_bert_dir, tmp_path):
    """One sweep for what were two tests (each paid a sweep): SIGKILLed (driver and its Ray) once a trial's second
    checkpoint is in the bucket, resumed from the bucket; then its files are there and every command reads them."""
    env = {**os.environ, **s3["env"], "MAKD_HOME": str(tmp_path / "home")}
    config = write_config(tmp_path, tiny_bert_dir, name="remote", losses=["ce", "vanilla"], lams=[0.0],
                          seeds=[0, 1], epochs=2, storage=f"s3://{BUCKET}/runs")
    driver = subprocess.Popen([MAKD, "sweep", str(config), "--quiet", "--num-cpus", "2"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not any("/checkpoint_000001/" in k for k in keys(s3, "runs/remote/")):
        time.sleep(0.5)  # a trial has finished both of its epochs
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert "runs/remote/trials.csv" not in keys(s3, "runs/remote/"), "the driver must be killed mid-sweep"
    resumed = makd(["sweep", str(config), "--quiet", "--num-cpus", "2", "--resume"], env, tmp_path)
    assert resumed.returncode == 0, stderr_ends(resumed)
    stored = keys(s3, "runs/remote/")
    for name in ("trials.csv", "sweep.json", "leaderboard.csv", "table.md", "report.html"):
        assert f"runs/remote/{name}" in stored, (name, stored[:20])
    assert not any(".makd-write-probe" in k for k in stored)
    trials = pd.read_csv(s3["client"].get_object(Bucket=BUCKET, Key="runs/remote/trials.csv")["Body"])
    assert len(trials) == 4 and set(trials["status"]) == {"TERMINATED"} and (trials["epochs_run"] == 2).all()
    uri = f"s3://{BUCKET}/runs/remote"
    board = makd(["leaderboard", uri, "--csv", "board.csv", "--markdown", "-"], env, tmp_path)
    assert board.returncode == 0 and "| Student |" in board.stdout, board.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "board.csv")) == 2  # ce and vanilla
    page = makd(["report", uri, "-o", "report.html"], env, tmp_path)
    assert page.returncode == 0 and (tmp_path / "report.html").stat().st_size > 10_000, page.stderr[-2000:]
    exported = makd(["export", uri, "--task", "rte", "--student", "1x64", "--loss", "vanilla"], env, tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    result = json.loads(exported.stdout)
    assert Path(result["exported"]).resolve().parent == (tmp_path / "export").resolve()
    assert (tmp_path / "export" / Path(result["exported"]).name / "README.md").is_file()
    # rerunning without --resume is refused: the bucket already holds this experiment
    again = makd(["sweep", str(config), "--quiet", "--num-cpus", "2"], env, tmp_path)
    assert again.returncode == 2 and "already has results" in again.stderr


def test_a_bucket_that_does_not_exist_is_one_line_before_ray_starts(s3, tiny_bert_dir, tmp_path):
    env = {**os.environ, **s3["env"], "MAKD_HOME": str(tmp_path / "home")}
    config = write_config(tmp_path, tiny_bert_dir, storage="s3://no-such-bucket/runs")
    started = time.time()
    done = makd(["sweep", str(config), "--quiet", "--num-cpus", "2"], env, tmp_path, timeout=120)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("makd: error: storage: cannot write to s3://no-such-bucket/runs/exp")
    assert time.time() - started < 60
