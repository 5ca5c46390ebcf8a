"""What a student costs to run, which is what distillation is for: milliseconds per example at batch 1 (an online
request) and examples per second at a chosen batch size (offline scoring).

A property of the architecture, not of a trial (issue 44): a forward pass costs the same whatever the weights'
values, so one measurement per (student architecture, dev sequence lengths, batch size, precision, hardware) serves
every trial of that student. A sweep's driver measures each student once per task before any trial starts, on a
quiet machine (a GPU node when trials use GPUs), keeps it in the cache (`cached_inference_cost`) and hands it to
every trial, so identical architectures get identical numbers in every table; `makd distill` measures its one run
the same way. The protocol is fixed: eval mode, no gradients, dynamic padding as in evaluation, CPU_THREADS threads
on a CPU, WARM_CALLS untimed calls, then the median of TIMED_RUNS timed calls at batch 1 (dev examples in their
order) and of TIMED_RUNS calls of the widest batch at the inference batch size."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from makd.batching import EncodedDataset, sorted_batches
from makd.files import atomic_write_bytes
from makd.masks import model_batch

TIMED_RUNS = 20  # timed calls per number (batch 1; and the inference batch): their median is reported
WARM_CALLS = 3  # untimed calls first (allocator, kernels, caches)
# on a CPU: the same thread count whatever the measuring process has (the driver, a 1-CPU trial): up to 4, the
# machine's cores below that (the count is part of the hardware every table names)
CPU_THREADS = min(4, os.cpu_count() or 1)
CACHE_VERSION = 1  # bumped when the protocol changes: older measurements are measured again


@dataclass(frozen=True)
class InferenceCost:
    latency_ms: float  # median milliseconds for one example at batch 1
    examples_per_s: float  # at `batch_size`: the widest batch's examples over its median seconds
    batch_size: int
    device: str  # cpu / cuda
    hardware: str = ""  # where it was measured: the CPU model and threads, or the GPU's name
    runs: int = TIMED_RUNS


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where there is none to read: callers choose their fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def hardware_name(device: torch.device) -> str:
    """The device's name as a table can print it: the GPU's, or the CPU model's with the threads used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = cpu_model() or platform.processor() or platform.machine()
    return f"{model}, {CPU_THREADS} thread{'s' if CPU_THREADS > 1 else ''}"


@contextmanager
def fixed_threads(device: torch.device) -> Iterator[None]:
    """CPU_THREADS intra-op threads while measuring on a CPU (the process's own count restored after)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(call, rows: list[np.ndarray], device: torch.device) -> float:
    seconds = []
    for k, batch in enumerate(rows):
        start = time.perf_counter()
        call(batch)
        _synchronize(device)
        if k >= WARM_CALLS:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


@torch.no_grad()
def measure_inference(model: torch.nn.Module, encoded: EncodedDataset, *, batch_size: int, device: torch.device,
                      amp: torch.dtype | None, pad_to_multiple_of: int | None = None) -> InferenceCost:
    """Time the model's forward on dev examples (the protocol above); leaves the model in eval mode (callers set
    train mode again)."""
    model.eval()
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else nullcontext

    def forward(rows: np.ndarray) -> None:
        batch = model_batch(model, encoded, rows, device, pad_to_multiple_of)
        with autocast():
            model(**batch).logits.float()

    n = len(encoded)
    with fixed_threads(device):
        single = _median_seconds(forward, [np.array([i % n]) for i in range(WARM_CALLS + TIMED_RUNS)], device)
        widest = sorted_batches(encoded.lengths, batch_size)[0]
        batched = _median_seconds(forward, [widest] * (WARM_CALLS + TIMED_RUNS), device)
    return InferenceCost(latency_ms=1000 * single, examples_per_s=len(widest) / max(batched, 1e-9),
                         batch_size=batch_size, device=device.type, hardware=hardware_name(device))


def architecture(model: torch.nn.Module) -> dict:
    """What a forward's cost depends on: the model class and its config without names, paths and label names."""
    config = model.config.to_dict()
    ignored = {"_name_or_path", "name_or_path", "transformers_version", "architectures", "finetuning_task",
               "id2label", "label2id", "torch_dtype", "dtype", "_commit_hash"}
    return {"class": type(model).__name__, "num_labels": model.config.num_labels,
            **{k: v for k, v in config.items() if k not in ignored}}


def cost_key(model: torch.nn.Module, encoded: EncodedDataset, *, batch_size: int, device: torch.device,
             amp: torch.dtype | None, pad_to_multiple_of: int | None) -> str:
    """The cache key: architecture, the dev split's token lengths (padding is dynamic: ids do not matter), batch
    size, precision, padding, hardware and torch's version."""
    what = {"version": CACHE_VERSION, "architecture": architecture(model), "batch_size": batch_size,
            "amp": str(amp), "pad": pad_to_multiple_of, "hardware": hardware_name(device), "torch": torch.__version__,
            "lengths": hashlib.blake2b(np.ascontiguousarray(encoded.lengths, dtype=np.int64).tobytes(),
                                       digest_size=16).hexdigest()}
    return hashlib.blake2b(json.dumps(what, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def cached_inference_cost(model: torch.nn.Module, encoded: EncodedDataset, *, cache_dir: str | Path, batch_size: int,
                          device: torch.device, amp: torch.dtype | None,
                          pad_to_multiple_of: int | None = None) -> tuple[InferenceCost, bool]:
    """(the cost, whether it was measured now): read from `<cache_dir>/inference-cost/<key>.json`, else measured
    and written there (atomically) for every later trial, sweep and resume on this hardware."""
    key = cost_key(model, encoded, batch_size=batch_size, device=device, amp=amp,
                   pad_to_multiple_of=pad_to_multiple_of)
    path = Path(cache_dir) / "inference-cost" / f"{key}.json"
    try:
        return InferenceCost(**json.loads(path.read_text())), False
    except (OSError, ValueError, TypeError):
        pass  # absent, or unreadable: measure again
    cost = measure_inference(model, encoded, batch_size=batch_size, device=device, amp=amp,
                             pad_to_multiple_of=pad_to_multiple_of)
    atomic_write_bytes(path, json.dumps(asdict(cost), indent=1).encode())
    return cost, True
