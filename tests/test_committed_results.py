"""The committed results are rebuilt from the committed CSVs by committed code (issue 5's acceptance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.report.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "results" / "glue-cpu"


@pytest.mark.skipif(not (RESULTS / "table.md").is_file(), reason="no committed results/glue-cpu/table.md")
def test_makd_leaderboard_reprints_the_committed_table(capsys):
    csvs = sorted(str(p) for p in RESULTS.glob("*.csv"))
    assert csvs, "results/glue-cpu holds no trials CSV"
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (RESULTS / "table.md").read_text().strip()


@pytest.mark.skipif(not (RESULTS / "finetuned-teacher" / "table.md").is_file(), reason="no fine-tuned-teacher table")
def test_the_fine_tuned_teacher_table_is_rebuilt_from_its_csvs(capsys):
    folder = RESULTS / "finetuned-teacher"
    csvs = [str(RESULTS / "trials-2x384.csv"), *sorted(str(p) for p in folder.glob("trials-*.csv"))]
    assert main([*csvs, "--markdown", "-"]) == 0
    assert capsys.readouterr().out.strip() == (folder / "table.md").read_text().strip()
