"""A Ray Tune callback that rewrites the experiment dir's report (report.html, leaderboard.csv, table.md,
lambda.png) as trials finish, so that a user can keep report.html open during a long sweep.

A rewrite takes seconds (figures); Tune calls callbacks on its own loop, so a write there would hold back the next
trial's start. Writes during a run happen on one background thread; only the last one, at the end of each Tune run,
is waited for.
"""

from __future__ import annotations

import logging
import threading
import time

from ray.tune import Callback

logger = logging.getLogger(__name__)


class LiveReport(Callback):
    """After trials complete (at most every `min_interval_s`, off Tune's loop), and at the end of each Tune run
    (waited for, skipped when nothing ended since the last successful write began): rebuild the report from the
    experiment dir as `makd leaderboard` reads a running sweep. A write that finds no finished trial yet, or fails,
    is retried `retries` times, `retry_s` apart; a failure is logged, never fatal to the sweep."""

    def __init__(self, root: str, min_interval_s: float = 10.0, retry_s: float = 2.0, retries: int = 3):
        self.root = root
        self.min_interval_s = min_interval_s
        self.retry_s, self.retries = retry_s, retries
        self.last = float("-inf")  # when the last write began (time.monotonic)
        self.writes = 0
        self.ended = 0  # trials that completed or failed, as Tune told us
        self.written_ended = -1  # self.ended when the last successful write began
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> bool:
        """One rewrite now, in the caller's thread (the report thread, or Tune's once that thread has ended); False
        when nothing was written (no finished trial readable yet, or an error)."""
        from tune.report.sweep_files import write_report_files

        self.last, began_with = time.monotonic(), self.ended
        try:
            if write_report_files(self.root) is None:
                return False
        except Exception as err:  # the report is a view: the sweep goes on without it
            logger.warning("makd: could not rewrite the report in %s: %s", self.root, err)
            return False
        self.writes += 1
        self.written_ended = began_with
        return True

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks with the experiment state: not the thread and its events."""
        return {"root": self.root, "min_interval_s": self.min_interval_s, "retry_s": self.retry_s,
                "retries": self.retries}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # the throttle: wait out the rest of min_interval_s, unless the Tune run ends first
            if self._stop.wait(max(0.0, self.last + self.min_interval_s - time.monotonic())):
                return
            self._wake.clear()
            for _ in range(1 + self.retries):
                if self.written_ended == self.ended or self._write():  # a write since the wake-up may have covered it
                    break
                # Tune calls back as a trial ends; its saved state or the trial's files can lag a moment behind
                if self._stop.wait(self.retry_s):
                    return

    def _trial_ended(self) -> None:
        self.ended += 1
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="makd-live-report", daemon=True)
            self._thread.start()
        self._wake.set()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._trial_ended()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._trial_ended()

    def on_experiment_end(self, trials, **info) -> None:
        self._stop.set()
        self._wake.set()  # a thread waiting for the next completion wakes up, sees the stop and returns
        if self._thread is not None:
            self._thread.join()  # at most the write in flight
        self._wake.clear()
        if self.written_ended != self.ended:  # also true when nothing was written yet (-1 against 0)
            self._write()
