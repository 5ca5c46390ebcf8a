"""The sweep's console: one line when a trial starts and one when it ends, with the stage's progress and ETA,
instead of Ray Tune's status tables and per-checkpoint log lines (those come back with `makd sweep --verbose`).
Lines, not a redrawn display, so that a CI log or `makd logs` reads the same as a terminal; a failed trial's
error is printed whole.

    makd: [rte search] start 3/6: vanilla λ=0.5 τ=1 seed 0
    makd: [rte search] done 3/6 in 31 s: vanilla λ=0.5 τ=1 seed 0: accuracy 55.2 at epoch 2 of 2; stage ETA 1 min
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ray.tune import Callback

from makd_sweep import experiment_dir as layout
from makd_sweep.experiment_dir import trial_params


def _setting(config: dict) -> str:
    params = trial_params(config or {})
    configs = layout.members(params)
    if configs is not None:
        return f"pack of {len(configs)} {params.get('student', '')}: " + "; ".join(_setting(c) for c in configs)
    text = f"{params.get('loss', '?')} λ={params.get('lam', '?'):g} τ={params.get('tau', '?'):g}"
    if params.get("lr") is not None:
        text += f" lr={params['lr']:g}"
    return text + f" seed {params.get('seed', '?')}" + (f" {params['student']}" if params.get("student") else "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class ProgressLines(Callback):
    """Tune callback for one stage of one task: `total` trials of `max_epochs`, at most `concurrent` at a time."""

    def __init__(self, label: str, total: int, concurrent: int | None, max_epochs: int, stream=None):
        self.label, self.total, self.concurrent, self.max_epochs = label, max(total, 1), concurrent, max_epochs
        self.stream = stream
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.best: dict[str, tuple[float, int, str]] = {}  # trial -> (score, epoch, metric) of its best epoch
        self.last_epoch: dict[str, int] = {}
        self.ended = 0

    def __getstate__(self) -> dict:  # Tune pickles callbacks with the experiment state: not the stream
        return {k: v for k, v in self.__dict__.items() if k != "stream"}

    def __setstate__(self, state: dict) -> None:  # `--resume` runs the restored callback: it writes to stderr
        self.__dict__.update(state, stream=None)

    def _say(self, line: str) -> None:
        print(f"makd: [{self.label}] {line}", file=self.stream or sys.stderr, flush=True)

    def _eta(self) -> str:
        left = self.total - self.ended
        if left <= 0:
            return "stage done"
        if not self.durations:
            return "stage ETA after the first trial"
        parallel = max(1, min(self.concurrent or left, left))
        return f"stage ETA {_duration(left * sum(self.durations) / len(self.durations) / parallel)}"

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.monotonic()
        self._say(f"start {len(self.started)}/{self.total}: {_setting(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get(layout.MEMBER) is not None:  # a pack: one line as each member ends (not counted as trials)
            self._member_result(trial, result)
            return
        score, epoch = result.get("score"), result.get("epoch")
        self.last_epoch[trial.trial_id] = int(epoch or 0)
        metric = str(result.get("metric") or "score")
        if result.get("best_score_so_far") is not None:  # the trial's own record: right after a resume too
            self.best[trial.trial_id] = (float(result["best_score_so_far"]), int(result.get("best_epoch_so_far") or 0),
                                         metric)
        elif score is not None and score > self.best.get(trial.trial_id, (float("-inf"),))[0]:
            self.best[trial.trial_id] = (float(score), int(epoch or 0), metric)

    def _member_result(self, trial, result: dict) -> None:
        index, size = int(result[layout.MEMBER]), int(result.get("pack_size") or 0)
        configs = layout.members(trial_params(trial.config or {})) or []
        setting = _setting(configs[index]) if index < len(configs) else f"member {index}"
        if result.get(layout.MEMBER_ERROR):
            self._say(f"member {index + 1}/{size} FAILED: {setting}: {result[layout.MEMBER_ERROR]}")
        elif int(result.get("epoch") or 0) >= self.max_epochs and result.get("best_score_so_far") is not None:
            self._say(f"member {index + 1}/{size} done: {setting}: {result.get('metric') or 'score'} "
                      f"{100 * float(result['best_score_so_far']):.1f} at epoch {result.get('best_epoch_so_far')}")
        self.last_epoch[trial.trial_id] = self.max_epochs

    def _ended(self, trial, trials) -> float:
        # after --resume, trials that ended before the restart count too (Tune lists them as ended already)
        before = sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        self.ended = max(self.ended, before) + 1
        seconds = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        self.durations.append(seconds)
        return seconds

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        seconds = self._ended(trial, trials)
        score = self.best.get(trial.trial_id)
        last = self.last_epoch.get(trial.trial_id, 0)
        if layout.members(trial_params(trial.config or {})) is not None:
            self._say(f"done {self.ended}/{self.total} in {_duration(seconds)}: {_setting(trial.config)}; "
                      f"{self._eta()}")
            return
        what = f"{score[2]} {100 * score[0]:.1f} at epoch {score[1]} of {last}" if score else "no score"
        stopped = "" if last >= self.max_epochs else " (stopped early)"
        self._say(f"done {self.ended}/{self.total} in {_duration(seconds)}: {_setting(trial.config)}: "
                  f"{what}{stopped}; {self._eta()}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        seconds = self._ended(trial, trials)
        self._say(f"FAILED {self.ended}/{self.total} after {_duration(seconds)}: {_setting(trial.config)}; "
                  f"{self._eta()}")
        error = _error_text(trial)
        if error:
            print(error.rstrip(), file=self.stream or sys.stderr, flush=True)


def _error_text(trial) -> str | None:
    """The trial's error as Ray recorded it (error.txt in its folder), whole."""
    for path in (getattr(trial, "error_file", None), Path(getattr(trial, "local_path", "") or "") / "error.txt"):
        try:
            if path and Path(path).is_file():
                return Path(path).read_text(errors="replace")
        except OSError:
            continue
    return None
