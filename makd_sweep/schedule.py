"""A trial's schedule: the setting (λ, τ, lr, weight decay, clipping norm) it trained with from each epoch on.

Population Based Training (makd_sweep/search/pbt.py) changes a trial's setting while it runs, and a trial that goes on
from a donor's checkpoint goes on with the donor's past: so the schedule lives in the trial's checkpoint dir
(`schedule.json`, copied with it) and is reported every epoch (trials.csv's `schedule`: JSON, a list of
{"from_epoch": E, key: value, ...}). The final stage replays the winning one: a trial config holding a `schedule`
trains each segment's setting from its first epoch on (makd.train's `stop_after_epoch` and `changed`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from makd.config import CHANGEABLE_SETTINGS
from makd_sweep.experiment_dir import SCHEDULE

PARAM = SCHEDULE  # a final-stage trial config's schedule to replay (JSON)
METRIC = SCHEDULE  # what a trial reports: the schedule it has trained so far (JSON; trials.csv's column)
FILE = "schedule.json"  # in the trial's (member's) checkpoint dir


@dataclass(frozen=True)
class Segment:
    """Epochs first_epoch .. last_epoch (None: to the end) trained with `setting` (over the trial config's)."""

    first_epoch: int
    setting: dict = field(default_factory=dict)
    last_epoch: int | None = None


def parse(text: str) -> list[dict]:
    """A schedule's JSON -> its entries, checked: epochs rising from 1, only changeable settings."""
    entries = json.loads(text)
    epochs = [entry.get("from_epoch") for entry in entries]
    if not entries or epochs[0] != 1 or any(not isinstance(e, int) for e in epochs) or epochs != sorted(set(epochs)):
        raise ValueError(f"a schedule starts at epoch 1 and its epochs rise: {text}")
    keys = {key for entry in entries for key in entry} - {"from_epoch"}
    if not keys <= CHANGEABLE_SETTINGS:
        raise ValueError(f"a schedule may set only {', '.join(sorted(CHANGEABLE_SETTINGS))}: {text}")
    return entries


def segments(params: dict) -> list[Segment]:
    """The trial config's schedule as segments; one segment of no changes when it has none."""
    raw = params.get(PARAM)
    if not raw:
        return [Segment(1)]
    entries = parse(raw)
    return [Segment(entry["from_epoch"], {k: v for k, v in entry.items() if k != "from_epoch"},
                    entries[i + 1]["from_epoch"] - 1 if i + 1 < len(entries) else None)
            for i, entry in enumerate(entries)]


def changed_keys(parts: list[Segment]) -> frozenset[str]:
    """The settings a replayed schedule sets (each segment resumes the one before with them changed)."""
    return frozenset(key for part in parts for key in part.setting)


class Recorder:
    """The schedule of the run in `folder` so far (a donor's past included), updated as epochs are trained."""

    def __init__(self, folder: Path):
        self.path = folder / FILE
        self.entries: list[dict] = parse(self.path.read_text()) if self.path.is_file() else []

    def train(self, epoch: int, setting: dict) -> None:
        """Epoch `epoch` was trained with `setting`: entries from that epoch on are dropped (a restored run trains
        them again), and a new one starts where the setting changed. Written before the epoch's report, so the
        checkpoint the report ships holds it."""
        self.entries = [entry for entry in self.entries if entry["from_epoch"] < epoch]
        last = self.entries[-1] if self.entries else None
        if last is None or {k: v for k, v in last.items() if k != "from_epoch"} != setting:
            self.entries.append({"from_epoch": 1 if last is None else epoch, **setting})
        tmp = self.path.with_name(f".{FILE}.tmp")
        tmp.write_text(self.as_json())
        os.replace(tmp, self.path)

    def as_json(self) -> str:
        return json.dumps(self.entries, sort_keys=True)
