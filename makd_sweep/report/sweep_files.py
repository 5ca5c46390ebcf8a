"""The report files a sweep keeps in its experiment dir (written at its end, and by makd_sweep/live_report.py as trials
finish): the leaderboard CSV, the paper table, the λ figure and the HTML page, from `build`'s Report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from makd.errors import UsageError
from makd.files import atomic_write_bytes
from makd_sweep.report.build import Report, build, to_csv_bytes
from makd_sweep.report.html import write_html
from makd_sweep.report.plots import plot_lambda_curves

REPORT_FILES = ("leaderboard.csv", "table.md", "lambda.png", "report.html")  # what a sweep writes into its experiment dir


def write_report_files(root: str | Path, rows: pd.DataFrame | None = None) -> Report | None:
    """REPORT_FILES into a local experiment dir, from its trials (`rows`: the driver's, as they are; else read from
    the dir); None when no trial has finished yet."""
    try:
        report = build([root], rows=rows)
    except UsageError:
        return None
    atomic_write_bytes(Path(root) / "leaderboard.csv", to_csv_bytes(report.leaderboard))
    atomic_write_bytes(Path(root) / "table.md", report.paper_table_markdown.encode())
    figure = Path(root) / "lambda.png"
    if plot_lambda_curves(report.trials, figure, stage=report.stage, board=report.leaderboard,
                          search=report.search_trials) is None:
        figure.unlink(missing_ok=True)  # fewer than two λ values now (e.g. the final stage began): no stale figure
    # the page embeds the same figure: drawn once
    write_html(report, [str(root)], Path(root) / "report.html",
               lambda_png=figure.read_bytes() if figure.is_file() else None)
    return report
