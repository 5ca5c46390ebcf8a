"""`makd leaderboard --within X`: the cheapest cell within X points of each task's best, by parameters or latency;
cells that learned nothing never qualify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from makd_sweep.report.pareto import cheapest_within

REPO = Path(__file__).resolve().parents[1]
MAKD = str(Path(sys.executable).with_name("makd"))


def board() -> pd.DataFrame:
    return pd.DataFrame({
        "task": ["rte"] * 5, "student": ["6x384", "6x384", "2x128", "2x128", "1x64"],
        "loss": ["ce", "vanilla", "ce", "vanilla", "ce"], "dev_score_mean": [0.66, 0.68, 0.655, 0.62, 0.67],
        "student_parameters_m": [22.7, 22.7, 4.4, 4.4, 1.0], "latency_ms_mean": [9.0, 9.4, 2.1, 2.0, 0.9],
        "at_majority": [False, False, False, False, True], "device_hours_total": [0.1] * 5, "n_trials": [3] * 5})


@pytest.mark.parametrize("points, cost, expected", [
    (3.0, "params", "2x128 ce"),  # 65.5 is within 3 of 68; 1x64's 67 is at the majority class: it learned nothing
    (1.0, "params", "6x384 vanilla"),  # nothing cheaper is within one point: the best itself
    (3.0, "latency", "2x128 ce"),  # the student's latency is one value (median) for both of its methods
])
def test_the_cheapest_cell_within_the_points(points, cost, expected):
    (row,) = cheapest_within(board(), points, cost).to_dict(orient="records")
    assert row["best"] == "6x384 vanilla" and row["within"] == expected
    assert row["points_given_up"] == pytest.approx(68 - row["score"]) and row["points_given_up"] <= points


def documented_command_output(heading: str) -> list[str]:
    """The stdout lines of the one command docs/reports.md shows after `heading`, run as written (makd on PATH)."""
    import os

    from tests.docs import commands_after

    (command,) = commands_after("docs/reports.md", heading)
    env = {**os.environ, "PATH": f"{Path(MAKD).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_the_documented_command_answers_on_the_committed_results():
    lines = documented_command_output("**The cheapest student that is good enough.**")
    assert lines[0] == "The cheapest cell by params within 2 points of each task's best:"
    assert {"sst2", "mrpc", "stsb", "rte"} <= {line.split()[0] for line in lines[2:6]}
    bad = subprocess.run([MAKD, "leaderboard", str(REPO / "results" / "glue-cpu" / "trials-2x128.csv"), "--within",
                          "-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("makd: error: within: expected points >= 0")


def test_the_documented_latency_command_reads_the_re_measured_costs():
    """docs/reports.md: `--within` by latency over the committed results, with the costs re-measured on one machine
    (results/glue-cpu/tables/costs.csv, issue 44): every answer's latency is the re-measured one of its student."""
    import pandas as pd

    lines = documented_command_output("**Inference cost measured again, on one machine.**")
    assert lines[0] == "The cheapest cell by latency within 2 points of each task's best:"
    costs = pd.read_csv(REPO / "results" / "glue-cpu" / "tables" / "costs.csv")
    measured = costs.set_index(["task", "student"])["latency_ms"]
    rows = [line.split() for line in lines[2:6]]  # task, best (student, loss), score, within (student, loss), ...
    assert {row[0] for row in rows} == {"sst2", "mrpc", "stsb", "rte"}
    for task, _, _, _, student, _, _, _, latency, best_latency in rows:
        assert float(latency) == pytest.approx(measured[task, student], abs=1e-3)
        assert float(best_latency) >= float(latency)
