"""What a student costs to run, which is what distillation is for: milliseconds per example at batch 1 (an online
request) and examples per second at a chosen batch size (offline scoring), on the device the run trained on.

Measured once per run on the student in memory, before training: a forward pass costs the same whatever the weights'
values, so the trained student costs exactly this too. Dev examples in their order (batch 1) and longest first in
batches (throughput), with dynamic padding as in evaluation, eval mode, no gradients, after warm-up calls."""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from makd.batching import EncodedDataset, sorted_batches
from makd.masks import model_batch

SINGLE_EXAMPLES = 16  # batch-1 calls timed (their median is reported), after WARM_CALLS untimed ones
WARM_CALLS = 3
BATCHES = 3  # throughput: up to this many full batches timed, after one untimed


@dataclass(frozen=True)
class InferenceCost:
    latency_ms: float  # median milliseconds for one example at batch 1
    examples_per_s: float  # at `batch_size`
    batch_size: int
    device: str


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_inference(model: torch.nn.Module, encoded: EncodedDataset, *, batch_size: int, device: torch.device,
                      amp: torch.dtype | None, pad_to_multiple_of: int | None = None) -> InferenceCost:
    """Time the model's forward on dev examples; leaves the model in eval mode (callers set train mode again)."""
    model.eval()
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else nullcontext

    def forward(rows: np.ndarray) -> None:
        batch = model_batch(model, encoded, rows, device, pad_to_multiple_of)
        with autocast():
            model(**batch).logits.float()

    n = len(encoded)
    singles = [np.array([i % n]) for i in range(WARM_CALLS + SINGLE_EXAMPLES)]
    seconds = []
    for k, rows in enumerate(singles):
        start = time.perf_counter()
        forward(rows)
        _synchronize(device)
        if k >= WARM_CALLS:
            seconds.append(time.perf_counter() - start)
    batches = sorted_batches(encoded.lengths, batch_size)[:BATCHES + 1]
    forward(batches[0])  # untimed: the widest shape's first call
    _synchronize(device)
    timed = batches[1:] or batches  # a dev set of one batch: time that batch again
    start = time.perf_counter()
    for rows in timed:
        forward(rows)
    _synchronize(device)
    elapsed = time.perf_counter() - start
    return InferenceCost(latency_ms=1000 * statistics.median(seconds),
                         examples_per_s=sum(len(r) for r in timed) / max(elapsed, 1e-9),
                         batch_size=batch_size, device=device.type)
