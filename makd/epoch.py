"""What every training loop reports at the end of an epoch (issue 44): the EpochResult, built in one place
(`build_epoch_result`) by the classifier loop (makd/train.py), the fused pack (makd/fused.py) and the causal-LM loop
(makd/lm/train.py), so every field means the same in each, and the run's TrainResult with its best epoch so far
(`record_epoch`). Fields a loop cannot fill are None for a stated reason (see the field's comment)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from makd import fingerprints, gpu
from makd.inference_cost import InferenceCost

HOLDOUT = "holdout"  # eval_sets key of the selection split held out of train (TrainOptions.holdout_fraction)


@dataclass
class EpochResult:
    epoch: int  # 1-based number of completed epochs
    metrics: dict[str, float]  # all GLUE metrics of the task on dev
    score: float  # the task's main metric on the selection split: the hold-out when there is one, else dev
    train_loss: float
    train_examples_per_s: float
    train_seconds: float
    eval_seconds: float
    peak_gpu_mb: float | None = None  # the allocator's peak on the GPU so far in this run (None on CPU)
    warmup_seconds: float = 0.0  # every batch shape run once just before this epoch (the first one run, on CUDA)
    dev_score: float | None = None  # the main metric on dev (= score unless a hold-out selects)
    checkpoint_seconds: float = 0.0  # writing this epoch's checkpoint (and the best model, when it improved)
    student_parameters: int = 0  # the student's size, with every epoch: a sweep trial's report carries it
    weights_fingerprint: str | None = None  # makd.fingerprints: the weights after this epoch (identity, not a tie)
    predictions_fingerprint: str | None = None  # the dev predictions after this epoch
    predicted_classes: int | None = None  # distinct classes predicted on dev (1: constant); None for regression
    # and causal LMs (a token is no class)
    latency_ms: float | None = None  # makd.inference_cost: ms per example at batch 1 (with every epoch, as its size);
    # None where not measured: causal LMs (generation, not one forward, is their inference) and compute_cost: false
    inference_examples_per_s: float | None = None  # at inference_batch_size
    best_epoch: int | None = None  # the run's first best epoch so far (by score), resumed epochs included
    best_score: float | None = None


@dataclass
class TrainResult:
    task: str
    metric: str
    history: list[EpochResult] = field(default_factory=list)
    student_parameters: int = 0
    resumed_from_epoch: int = 0
    error: str | None = None  # a fused pack's member that diverged: why it stopped (its history ends before)

    @property
    def last(self) -> EpochResult:
        """The last epoch run (the run's *last epoch*; the *final* stage is another thing)."""
        return self.history[-1]

    @property
    def best(self) -> EpochResult:
        return max(self.history, key=lambda r: r.score)


EpochCallback = Callable[[EpochResult, Path | None], None]


def divergence(train_loss: float, epoch: int) -> str | None:
    """The one-line reason a run stops after this (1-based) epoch, or None when its loss is finite."""
    if math.isfinite(train_loss):
        return None
    return f"diverged in epoch {epoch}: the mean train loss is {train_loss} (lower the lr, or check λ and τ)"


def build_epoch_result(*, epoch: int, metric: str, dev: Mapping[str, float], held: Mapping[str, float],
                       train_loss: float, examples: int, train_seconds: float, eval_seconds: float,
                       device: torch.device, student_parameters: int, weights: Mapping[str, torch.Tensor],
                       predictions: Any, classes: bool, cost: InferenceCost | None,
                       warmup_seconds: float = 0.0) -> EpochResult:
    """One epoch's result from what the loop measured. dev: the metrics on the dev splits; held: on the selection
    hold-out ({} when dev selects); the selection score is `metric` on the hold-out, else on dev. predictions: the
    dev predictions per split (fingerprinted; counted as classes when `classes`)."""
    metrics = {**dev, **{f"{HOLDOUT}_{key}": value for key, value in held.items()}}
    return EpochResult(
        epoch=epoch, metrics=metrics, score=held[metric] if held else dev[metric], dev_score=dev[metric],
        train_loss=train_loss, train_examples_per_s=examples / max(train_seconds, 1e-9), train_seconds=train_seconds,
        eval_seconds=eval_seconds, peak_gpu_mb=gpu.peak_memory_mb(device), warmup_seconds=warmup_seconds,
        student_parameters=student_parameters, weights_fingerprint=fingerprints.weights_fingerprint(weights),
        predictions_fingerprint=fingerprints.predictions_fingerprint(predictions),
        predicted_classes=fingerprints.predicted_classes(predictions, False) if classes else None,
        latency_ms=cost.latency_ms if cost else None, inference_examples_per_s=cost.examples_per_s if cost else None)


def record_epoch(result: TrainResult, epoch_result: EpochResult) -> None:
    """Append the epoch and stamp it with the run's first best epoch so far (resumed epochs included)."""
    result.history.append(epoch_result)
    epoch_result.best_epoch, epoch_result.best_score = result.best.epoch, result.best.score


def restored_history(saved: list[dict]) -> list[EpochResult]:
    """A checkpoint's history (each epoch as `dataclasses.asdict` wrote it) as the EpochResults it was."""
    return [EpochResult(**epoch) for epoch in saved]
