"""docs/cluster.md's local-cluster commands, exactly as printed, from the project root: `cluster/local.sh up`, source its
env, `makd submit` with no --python, `makd jobs`, `makd logs`, `cluster/local.sh down` (issue 15: the suite used
to pass --python itself and never walked the newcomer's path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.docs import block_after

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.sweep
INTRO = "From the project root, after `make setup`:"


def documented_cluster_commands() -> list[str]:
    return [line for line in block_after("docs/cluster.md", INTRO).splitlines() if line.strip()]


def test_the_documented_cluster_commands_run_as_printed(glue_dir):
    lines = documented_cluster_commands()
    assert lines[0].startswith("bash cluster/local.sh up") and lines[-1].startswith("bash cluster/local.sh down")
    storage = Path("/tmp/makd-cluster-runs/local-cluster")
    shutil.rmtree(storage, ignore_errors=True)  # a rerun would otherwise find the last run's experiment
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MAKD_JOBS_ADDRESS", "MAKD_CLUSTER_PYTHON")}
    env["MAKD_GLUE_DIR"] = str(Path(glue_dir).resolve())  # as docs/cluster.md says: the job reads it
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    try:
        run = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["bash", "cluster/local.sh", "down"], cwd=REPO, env=env, capture_output=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    job_id = next(line for line in run.stdout.splitlines() if line.startswith("makd-local-cluster-"))
    assert f"makd: job {job_id} SUCCEEDED" in run.stdout, out[-4000:]
    assert run.stdout.count(job_id) >= 3  # submit's id, its SUCCEEDED line, the `makd jobs` listing
    assert run.stdout.count("trials in") >= 2  # the sweep's summary line: once while --wait follows, once from logs
    frame = pd.read_csv(storage / "trials.csv")
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"} and set(frame["loss"]) == {"ce", "taylor"}
    assert "local cluster down" in run.stdout
