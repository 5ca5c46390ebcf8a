"""Ctrl+C and SIGTERM (`makd stop`, `ray job stop`, a batch scheduler's pre-emption) stop a sweep so that `--resume`
can finish it, and stop the *whole* sweep, not just the Tune run in progress.

Tune's own SIGINT handler ends `Tuner.fit()` gracefully (it saves the experiment state one last time), but then
fit() simply returns: the driver went on to the final stage and the next task with half-run trials, and a SIGTERM
killed the driver at any instant, possibly while its saved state still named a checkpoint Tune had just deleted (a
trial that then could not resume). Here both signals take the graceful path, which Tune also offers on SIGUSR1, and
the driver stops after it with `SweepStopped`; a second signal aborts at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAVED = (*SIGNALS, signal.SIGUSR1)


class SweepStopped(KeyboardInterrupt):
    """The sweep was stopped by a signal after Tune saved its state: `--resume` finishes it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; the experiment state is saved: rerun with "
                         "--resume to finish the sweep")


class StopSignals:
    """While installed, SIGINT/SIGTERM end a running `fit()` the way Tune ends one on SIGINT, then stop the sweep."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._in_fit = False

    @staticmethod
    def _before_tune(signum: int, frame: Any) -> None:
        """SIGUSR1's handler until Tune installs its own inside fit(): a marker that Tune is not listening yet."""

    def _tune_listening(self) -> bool:
        return self._in_fit and signal.getsignal(signal.SIGUSR1) is not self._before_tune

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if first and self._tune_listening():
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop: save the experiment state, end fit()
        else:  # a second signal, or nothing of Tune's running: stop here
            raise SweepStopped(signum)

    def fit(self, tuner):
        """tuner.fit(), but a stop signal during it ends the sweep (after Tune saved its state)."""
        if self.signum is not None:
            raise SweepStopped(self.signum)
        signal.signal(signal.SIGUSR1, self._before_tune)  # Tune leaves its handler of an earlier fit() behind
        self._in_fit = True
        try:
            result_grid = tuner.fit()
        finally:
            self._in_fit = False
            signal.signal(signal.SIGUSR1, self._before_tune)
        if self.signum is not None:
            raise SweepStopped(self.signum)
        return result_grid


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install the handlers for the sweep's lifetime (main thread only: elsewhere Python cannot catch signals)."""
    stops = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return
    previous = {sig: signal.getsignal(sig) for sig in SAVED}
    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT stays ours inside fit(); Tune still listens on SIGUSR1
    for sig in SIGNALS:
        signal.signal(sig, stops._handle)
    try:
        yield stops
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env
