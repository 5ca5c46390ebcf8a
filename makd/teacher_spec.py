"""Which teacher logits a task needs (TeacherSpec): a plain record that configs build and the teacher cache keys by.

Its own module, free of torch and of the cache, so that makd/config.py and makd_sweep/config.py can name it without
importing the cache (which imports the models, which import the config: the circle this file breaks).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher logits a task needs: the teacher, how its head is made, how text is cut. With a split's exact
    examples (TextDataset.digest) it keys the cache; every trial of a task shares one spec."""

    teacher: str
    task: str
    head_seed: int = 0
    fine_tuned: bool = False
    max_length: int = 128
