"""GPU memory of one training run: a cap at its share of the device, its peak, a one-line error when it runs out,
and the measurement that sizes GPU fractions (`resources_per_trial: {gpu: auto}`).

Ray does not enforce fractional GPUs: a trial at `gpu: 0.125` could take the whole device and starve its seven
neighbours. The cap (`torch.cuda.set_per_process_memory_fraction`) makes an over-budget trial fail alone, with a
message naming its peak and its cap, instead of taking others down with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

MIB = 1024 * 1024
_cap: dict[int, tuple[float, float]] = {}  # device index -> (fraction, cap MiB) set by limit_memory in this process


class GpuOutOfMemory(RuntimeError):
    """A run needed more GPU memory than it may use; the message is one line with its peak and its cap."""


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def _index(device: str | torch.device) -> int:
    device = torch.device(device)
    return device.index if device.index is not None else torch.cuda.current_device()


def total_memory_mb(device: str | torch.device) -> float:
    return torch.cuda.get_device_properties(_index(device)).total_memory / MIB


def limit_memory(fraction: float, device: str | torch.device) -> float | None:
    """Cap this process's CUDA allocations at `fraction` of the device (whole GPUs: no cap); returns the cap in MiB.
    Also resets the peak counter, so a reused worker reports each run's own peak."""
    if not is_cuda(device):
        return None
    fraction = min(max(float(fraction), 0.0), 1.0)
    index = _index(device)
    torch.cuda.set_per_process_memory_fraction(fraction if fraction > 0 else 1.0, index)
    torch.cuda.reset_peak_memory_stats(index)
    cap = total_memory_mb(device) * (fraction if fraction > 0 else 1.0)
    _cap[index] = (fraction, cap)
    return round(cap, 1)


def peak_memory_mb(device: str | torch.device) -> float | None:
    """The most memory PyTorch's allocator held on the device since the last reset (MiB); None on CPU."""
    if not is_cuda(device):
        return None
    return round(torch.cuda.max_memory_reserved(_index(device)) / MIB, 1)


def out_of_memory(err: BaseException, device: str | torch.device, what: str) -> GpuOutOfMemory:
    """The one-line error for a CUDA out-of-memory during `what` (e.g. "training batch 32 x 128 tokens")."""
    index = _index(device)
    total = total_memory_mb(device)
    fraction, cap = _cap.get(index, (1.0, total))
    asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", str(err))
    return GpuOutOfMemory(
        f"out of GPU memory during {what}: peak {peak_memory_mb(device):,.0f} MiB, cap {cap:,.0f} MiB "
        f"({fraction:g} of {total:,.0f} MiB{'; asked for ' + asked.group(1) + ' more' if asked else ''}); lower "
        "batch_size, set micro_batch_size, or give each trial a larger gpu fraction (resources_per_trial.gpu)")


def members_that_fit(cap_mb: float, member_peak_mb: float, *, margin: float = 0.2) -> int:
    """The largest fused pack whose members, each at `member_peak_mb` with `margin` on top, fit `cap_mb` (the
    trial's allocator cap; the CUDA context is outside it); 0 when not even one does."""
    return max(int(cap_mb // (member_peak_mb * (1 + margin))), 0) if member_peak_mb > 0 else 0


def pack_out_of_memory_text(members: int, peak_mb: float, cap_mb: float, fraction: float, total_mb: float,
                            member_peak_mb: float | None) -> str:
    """The one line for a fused pack of `members` that ran out of memory: its peak and cap, and a pack size that
    fits from one member's step peak, measured after the failure (None: that measurement failed too)."""
    head = (f"out of GPU memory during a fused pack of {members} members: peak {peak_mb:,.0f} MiB, cap {cap_mb:,.0f} "
            f"MiB ({fraction:g} of {total_mb:,.0f} MiB)")
    fits = members_that_fit(cap_mb, member_peak_mb) if member_peak_mb else 0
    if fits >= members:  # the measured step fits many more: the pack's own overhead, not its size, is the problem
        return (f"{head}; one member's step peaks at {member_peak_mb:,.0f} MiB, so the pack should fit: give each "
                "trial a larger gpu fraction (resources_per_trial.gpu) or lower batch_size")
    if fits > 0:
        return (f"{head}; one member's step peaks at {member_peak_mb:,.0f} MiB, so a pack of {fits} fits: set "
                f"pack.size to {fits} or give each trial a larger gpu fraction (resources_per_trial.gpu)")
    return (f"{head}; not even one member fits this cap: give each trial a larger gpu fraction "
            "(resources_per_trial.gpu), lower batch_size, or run without fused packs and set micro_batch_size")


def pack_out_of_memory(device: str | torch.device, members: int, peak_mb: float,
                       member_peak_mb: float | None) -> GpuOutOfMemory:
    """`pack_out_of_memory_text` for this process's cap on `device`."""
    index = _index(device)
    total = total_memory_mb(device)
    fraction, cap = _cap.get(index, (1.0, total))
    return GpuOutOfMemory(pack_out_of_memory_text(members, peak_mb, cap, fraction, total, member_peak_mb))


@dataclass
class StepMemory:
    """What one training step of a student's widest batch took on a GPU: the input of `trials_that_fit`."""

    student: str
    peak_mb: float  # the allocator's peak over a training step (optimizer state included) and an eval batch
    context_mb: float  # the CUDA context and libraries, outside the allocator (every process pays it once)
    total_mb: float
    device_name: str
    batch: str  # e.g. "32 x 128 tokens"

    @property
    def need_mb(self) -> float:
        return self.peak_mb + self.context_mb


def trials_that_fit(need_mb: float, total_mb: float, *, margin: float = 0.2, max_trials: int = 64) -> int:
    """The largest power-of-two number of trials per GPU whose needs, each with `margin` on top, fit the device;
    0 when not even one does."""
    trials = 0
    k = 1
    while k <= max_trials and k * need_mb * (1 + margin) <= total_mb:
        trials = k
        k *= 2
    return trials
