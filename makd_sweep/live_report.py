"""A Ray Tune callback that rewrites the experiment dir's report (report.html, leaderboard.csv, table.md,
lambda.png) as trials finish, so that a user can keep report.html open during a long sweep.

A rewrite takes seconds (figures); Tune calls callbacks on its own loop, so a write there would hold back the next
trial's start. Writes happen on one background thread that lives for the whole sweep (one callback object serves
every Tune run of it), at most every `min_interval_s` and never more often than `cost_factor` times a write's own
duration, so that the report costs the sweep a bounded share of the driver's CPU. The end of a Tune run only wakes
the thread: the driver writes the report itself when the sweep ends (`close()` first), so no Tune run waits for a
figure and the last view is written once, not once per stage.
"""

from __future__ import annotations

import logging
import threading
import time

from ray.tune import Callback

logger = logging.getLogger(__name__)


class LiveReport(Callback):
    """After trials complete and at the end of each Tune run (off Tune's loop, throttled): rebuild the report from
    the experiment dir as `makd leaderboard` reads a running sweep. A write that finds no finished trial yet, or
    fails, is retried `retries` times, `retry_s` apart; a failure is logged, never fatal to the sweep. `close()`
    ends the thread (the sweep's own final write follows); `close(flush=True)`, for a sweep that ends by an error,
    writes once more if a trial ended since the last write began."""

    def __init__(self, root: str, min_interval_s: float = 10.0, retry_s: float = 2.0, retries: int = 3,
                 cost_factor: float = 4.0):
        self.root = root
        self.min_interval_s = min_interval_s
        self.retry_s, self.retries = retry_s, retries
        self.cost_factor = cost_factor
        self.last = float("-inf")  # when the last write began (time.monotonic)
        self.last_seconds = 0.0  # how long the last write took
        self.writes = 0
        self.ended = 0  # trials that completed or failed, as Tune told us
        self.written_ended = -1  # self.ended when the last successful write began
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> bool:
        """One rewrite now, in the caller's thread (the report thread, or Tune's once that thread has ended); False
        when nothing was written (no finished trial readable yet, or an error)."""
        from makd_sweep.report.sweep_files import write_report_files

        self.last, began_with = time.monotonic(), self.ended
        try:
            if write_report_files(self.root) is None:
                return False
        except Exception as err:  # the report is a view: the sweep goes on without it
            logger.warning("makd: could not rewrite the report in %s: %s", self.root, err)
            return False
        finally:
            self.last_seconds = time.monotonic() - self.last
        self.writes += 1
        self.written_ended = began_with
        return True

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks with the experiment state: not the thread and its events."""
        return {"root": self.root, "min_interval_s": self.min_interval_s, "retry_s": self.retry_s,
                "retries": self.retries, "cost_factor": self.cost_factor}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def interval(self) -> float:
        """Seconds from one write's start to the next: min_interval_s, longer when writes are slow."""
        return max(self.min_interval_s, self.cost_factor * self.last_seconds)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # the throttle: wait out the rest of the interval, unless the sweep ends first
            if self._stop.wait(max(0.0, self.last + self.interval() - time.monotonic())):
                return
            self._wake.clear()
            for _ in range(1 + self.retries):
                if self.written_ended == self.ended or self._write():  # a write since the wake-up may have covered it
                    break
                # Tune calls back as a trial ends; its saved state or the trial's files can lag a moment behind
                if self._stop.wait(self.retry_s):
                    return

    def _wake_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="makd-live-report", daemon=True)
            self._thread.start()
        self._wake.set()

    def _trial_ended(self) -> None:
        self.ended += 1
        self._wake_thread()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._trial_ended()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._trial_ended()

    def on_experiment_end(self, trials, **info) -> None:
        """One Tune run (a task's stage) ended: its last completions are written by the thread, in its time."""
        if self.written_ended != self.ended:
            self._wake_thread()

    def close(self, flush: bool = False) -> None:
        """End the thread (waiting at most for the write in flight); with `flush`, write once more, here, if a trial
        ended since the last write began."""
        self._stop.set()
        self._wake.set()  # a thread waiting for the next completion wakes up, sees the stop and returns
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._wake.clear()
        if flush and self.written_ended != self.ended:  # also true when nothing was written yet (-1 against 0)
            self._write()
