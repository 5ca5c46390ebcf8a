"""A Ray Tune callback that rewrites the experiment dir's report (report.html, leaderboard.csv, table.md,
lambda.png) as trials finish, so that a user can keep report.html open during a long sweep."""

from __future__ import annotations

import logging
import time

from ray.tune import Callback

logger = logging.getLogger(__name__)


class LiveReport(Callback):
    """After a trial completes (at most every `min_interval_s`; always at the end of each Tune run): rebuild the
    report from the experiment dir as `makd leaderboard` reads a running sweep. A failure to write it is logged,
    never fatal to the sweep."""

    def __init__(self, root: str, min_interval_s: float = 10.0):
        self.root = root
        self.min_interval_s = min_interval_s
        self.last = float("-inf")
        self.writes = 0

    def _write(self, force: bool) -> None:
        if not force and time.monotonic() - self.last < self.min_interval_s:
            return
        from tune.report.build import write_report_files

        try:
            if write_report_files(self.root) is not None:
                self.writes += 1
        except Exception as err:  # the report is a view: the sweep goes on without it
            logger.warning("makd: could not rewrite the report in %s: %s", self.root, err)
        self.last = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._write(force=False)

    def on_experiment_end(self, trials, **info) -> None:
        self._write(force=True)
