"""README's main command, `make demo`, at toy size: the Makefile's recipe as written, run twice in a copy of the
project whose configs/quickstart.yaml is the shipped one with a tiny teacher and student and 32 examples. The first
run sweeps and prints the tables and the answer; the second finds the finished sweep and reprints them (--resume)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.sweep


def test_make_demo_runs_the_quickstart_and_a_rerun_reprints_it(tiny_bert_dir, tmp_path):
    copy = tmp_path / "project"
    (copy / "configs").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", copy / "Makefile")
    (copy / ".venv").symlink_to(REPO / ".venv")
    shipped = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    toy = {**shipped, "tasks": ["rte"], "teacher": str(tiny_bert_dir), "students": ["1x64"],
           "student_tokenizer": str(tiny_bert_dir), "max_train_samples": 32, "max_eval_samples": 32,
           "max_length": 32, "batch_size": 8, "lr": 2e-3}
    (copy / "configs" / "quickstart.yaml").write_text(yaml.safe_dump(toy))
    env = {**os.environ, "MAKD_HOME": str(tmp_path / "home")}
    # -o: the copy's .venv is this checkout's, already set up (make would otherwise compare it with files not copied)
    make = ["make", "-o", ".venv/bin/python", "demo", f"GLUE_DIR={REPO / 'tests' / 'fixtures' / 'glue'}"]
    outputs = []
    for _ in range(2):
        done = subprocess.run(make, cwd=copy, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
        outputs.append(done.stdout + done.stderr)
    first, second = outputs  # the rerun passed --resume (without it an existing experiment is refused, exit 2)
    for out in outputs:
        assert "| Student |" in out and "Answer" in out and "*majority class" in out, out[-3000:]
    assert "] start 1/" in first and "] start " not in second, second[-3000:]  # the rerun trained nothing
    assert len((copy / "runs" / "quickstart" / "trials.csv").read_text().splitlines()) > 1
