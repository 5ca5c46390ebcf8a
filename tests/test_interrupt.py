"""makd_sweep.interrupt: Ctrl+C and SIGTERM take Tune's graceful path (its SIGUSR1 handler), then the whole sweep stops."""

from __future__ import annotations

import os
import signal

import pytest

from makd.errors import OneLineParser, run_command
from makd_sweep.interrupt import SweepStopped, stop_signals


class FakeTuner:
    """Stands in for Tuner.fit(): optionally installs a SIGUSR1 handler as Tune's tune.run does, then is signalled."""

    def __init__(self, send: signal.Signals, *, tune_listens: bool = True):
        self.send, self.tune_listens, self.graceful = send, tune_listens, 0

    def fit(self):
        if self.tune_listens:
            signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "graceful", self.graceful + 1))
        os.kill(os.getpid(), self.send)
        return "grid"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_fit_takes_tunes_graceful_path_then_stops_the_sweep(sig):
    with stop_signals() as stops:
        tuner = FakeTuner(sig)
        with pytest.raises(SweepStopped) as stopped:
            stops.fit(tuner)
        assert tuner.graceful == 1  # Tune was asked to save its state and end fit(), once
        assert stopped.value.signum == sig and "--resume" in str(stopped.value)
        with pytest.raises(SweepStopped):  # no later stage or task may start
            stops.fit(FakeTuner(sig))


def test_a_signal_before_tune_listens_stops_at_once():
    with stop_signals() as stops, pytest.raises(SweepStopped):
        stops.fit(FakeTuner(signal.SIGTERM, tune_listens=False))


def test_the_handlers_and_tunes_env_are_restored_afterwards():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    with stop_signals():
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") == env


def test_a_stopped_sweep_is_one_line_and_the_shells_exit_code(capsys):
    def stopped(args):
        raise SweepStopped(signal.SIGTERM)

    parser = OneLineParser(prog="makd")
    parser.add_subparsers(dest="command").add_parser("sweep")
    assert run_command(parser, {"sweep": stopped}, ["sweep"]) == 143
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("makd: stopped by SIGTERM") and "--resume" in err
