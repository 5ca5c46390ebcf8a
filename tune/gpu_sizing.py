"""`resources_per_trial: {gpu: auto}`: measure one training step of every student's widest batch on a GPU node and
pack as many trials per GPU as fit.

The fraction is the largest power of two whose trials, each with its measured peak plus its CUDA context and a
20% margin, fit the GPU's memory, and whose CPUs (`resources_per_trial.cpu` each) fit the GPU node. Ray does not
enforce fractions; every trial is then capped at its fraction (makd.gpu.limit_memory), so a misjudged one fails
alone with a one-line error instead of starving its neighbours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from makd.errors import UsageError
from makd.gpu import StepMemory, packing
from tune.config import SweepConfig

MARGIN = 0.2


@dataclass
class Sizing:
    gpu: float  # the per-trial fraction chosen (0: no GPU in the cluster)
    trials_per_gpu: int
    widest: StepMemory | None = None
    cpu_bound: bool = False  # the node's CPUs, not the GPU's memory, limited the packing
    measured: list[StepMemory] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        if self.widest is None:
            return ("gpu: auto -> 0: no GPU in the Ray cluster, trials train on CPUs (a cluster whose GPU workers "
                    "are still joining: add wait_for: {gpus: N})")
        w = self.widest
        text = (f"gpu: auto -> {self.gpu:g} GPU per trial ({self.trials_per_gpu} per GPU): one training step of "
                f"{w.student} ({w.batch}) peaks at {w.peak_mb:,.0f} MiB + {w.context_mb:,.0f} MiB CUDA context, "
                f"{w.device_name} has {w.total_mb:,.0f} MiB, {MARGIN:.0%} margin")
        return text + (" (limited by the GPU node's CPUs)" if self.cpu_bound else "")

    def as_dict(self) -> dict:
        return {"gpu": self.gpu, "trials_per_gpu": self.trials_per_gpu, "cpu_bound": self.cpu_bound,
                "margin": MARGIN, "measured": [dataclasses.asdict(m) for m in self.measured]}


def _measure_all(probes: list) -> list[StepMemory]:
    """Runs on a GPU node (a Ray task): one step per (TrainConfig, encoded train split)."""
    import torch

    from makd.step_memory import measure_step_memory

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    return [measure_step_memory(cfg, encoded, "cuda") for cfg, encoded in probes]


def measure_on_a_gpu_node(probes: list) -> list[StepMemory]:
    """`_measure_all` as a Ray task holding one whole GPU (the driver's node may have none)."""
    import ray

    try:
        return ray.get(ray.remote(num_gpus=1, num_cpus=1)(_measure_all).remote(probes))
    except ray.exceptions.RayTaskError as err:
        if "no CUDA device" in str(err):
            raise UsageError("resources_per_trial.gpu", "auto: the Ray cluster lists a GPU but torch on its node "
                                                        "sees no CUDA device; give a number instead") from None
        raise


def size_gpu_fraction(cfg: SweepConfig, probes: list, nodes: list[dict], measure=measure_on_a_gpu_node) -> Sizing:
    """probes: (TrainConfig, EncodedDataset) per task x student. nodes: ray.nodes() of the cluster."""
    gpu_nodes = [n for n in nodes if n["Resources"].get("GPU", 0) > 0]
    if not gpu_nodes:
        return Sizing(gpu=0.0, trials_per_gpu=0)
    measured = measure(probes)
    widest = max(measured, key=lambda m: m.need_mb)
    by_memory = packing(widest.need_mb, min(m.total_mb for m in measured), margin=MARGIN)
    if by_memory == 0:
        raise UsageError("resources_per_trial.gpu", f"auto: one training step of {widest.student} ({widest.batch}) "
                                                    f"needs {widest.need_mb:,.0f} MiB with the CUDA context, more "
                                                    f"than the GPU's {widest.total_mb:,.0f} MiB less a {MARGIN:.0%} "
                                                    "margin; lower batch_size or set micro_batch_size")
    node_cpus = max(n["Resources"].get("CPU", 1.0) for n in gpu_nodes)
    by_cpus = max(packing(cfg.cpu, node_cpus, margin=0.0), 1)  # at least one trial: its CPUs were checked
    trials = min(by_memory, by_cpus)
    return Sizing(gpu=1.0 / trials, trials_per_gpu=trials, widest=widest, cpu_bound=by_cpus < by_memory,
                  measured=measured)


def apply(cfg: SweepConfig, sizing: Sizing) -> SweepConfig:
    return dataclasses.replace(cfg, gpu=sizing.gpu)
