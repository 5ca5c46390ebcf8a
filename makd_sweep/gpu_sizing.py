"""`resources_per_trial: {gpu: auto}`: measure one training step of every student's widest batch on a GPU node and
pack as many trials per GPU as fit.

The fraction is the largest power of two whose trials, each with its measured peak plus its CUDA context and a
20% margin, fit the GPU's memory, and whose CPUs (`resources_per_trial.cpu` each) fit the GPU node. A fused pack
(`pack: {size: K, mode: fused}`) is one trial holding K stacked students: it needs K times the step's peak (weights,
gradients, AdamW's moments and activations all gain the leading K axis) and one CUDA context; the sweep's one
fraction is sized for it, so a search stage's single-config trials get the same slice. With `pack: {size: auto}` a
fused pack gets a whole GPU and at most the members that fit it (makd_sweep/pack.py). Ray does not
enforce fractions; every trial is then capped at its fraction (makd.gpu.limit_memory), so a misjudged one fails
alone with a one-line error instead of starving its neighbours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from makd.errors import UsageError
from makd.gpu import StepMemory, members_that_fit, trials_that_fit
from makd_sweep.sweep_config import SweepConfig

MARGIN = 0.2
MAX_AUTO_MEMBERS = 64  # pack: {size: auto, mode: fused}: the most members a pack is given, however small they are


@dataclass
class Sizing:
    gpu: float  # the per-trial fraction chosen (0: no GPU in the cluster)
    trials_per_gpu: int
    widest: StepMemory | None = None
    cpu_bound: bool = False  # the node's CPUs, not the GPU's memory, limited the trials per GPU
    measured: list[StepMemory] = dataclasses.field(default_factory=list)
    members: int = 1  # students per trial: a fused pack's size, else 1

    @property
    def need_mb(self) -> float:
        """One trial's need: its students' step peaks and one CUDA context."""
        return trial_need_mb(self.widest, self.members) if self.widest else 0.0

    def members_cap(self, mode: str) -> int:
        """pack: {size: auto}: the most members one pack may take. A fused pack of `mode` "fused" holds what
        was measured to fit one GPU (1 included); sequential packs train one member at a time, and CPU trials have
        no GPU memory to fit: no cap (0)."""
        return self.members if mode == "fused" and self.widest is not None else 0

    def describe(self) -> str:
        if self.widest is None:
            return ("gpu: auto -> 0: no GPU in the Ray cluster, trials train on CPUs (a cluster whose GPU workers "
                    "are still joining: add wait_for: {gpus: N})")
        w = self.widest
        pack = f", x {self.members} members of a fused pack" if self.members > 1 else ""
        text = (f"gpu: auto -> {self.gpu:g} GPU per trial ({self.trials_per_gpu} per GPU): one training step of "
                f"{w.student} ({w.batch}) peaks at {w.peak_mb:,.0f} MiB{pack} + {w.context_mb:,.0f} MiB CUDA context, "
                f"{w.device_name} has {w.total_mb:,.0f} MiB, {MARGIN:.0%} margin")
        return text + (" (limited by the GPU node's CPUs)" if self.cpu_bound else "")

    def as_dict(self) -> dict:
        return {"gpu": self.gpu, "trials_per_gpu": self.trials_per_gpu, "cpu_bound": self.cpu_bound,
                "margin": MARGIN, "members_per_trial": self.members, "need_mb": self.need_mb,
                "measured": [dataclasses.asdict(m) for m in self.measured]}


def trial_need_mb(step: StepMemory, members: int = 1) -> float:
    """A trial of `members` stacked students (a fused pack; 1: one student): each member's step peak, one context."""
    return members * step.peak_mb + step.context_mb


def fused_members_per_gpu(step: StepMemory, total_mb: float, margin: float = MARGIN) -> int:
    """The largest fused pack whose trial (its members' peaks and one context, with the margin on both, as
    `trials_that_fit` counts a trial) fits `total_mb`; 0: not even one member."""
    return members_that_fit(total_mb - (1 + margin) * step.context_mb, step.peak_mb, margin=margin)


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
    fused = cfg.pack.on and cfg.pack.mode == "fused"
    members = cfg.pack.size if fused else 1
    measured = measure(probes)
    if fused and cfg.pack.auto:  # pack: {size: auto}: a whole GPU per pack, as many members as fit it
        widest = max(measured, key=lambda m: m.peak_mb)
        fits = min(fused_members_per_gpu(widest, min(m.total_mb for m in measured)), MAX_AUTO_MEMBERS)
        if fits:
            return Sizing(gpu=1.0, trials_per_gpu=1, widest=widest, measured=measured, members=fits)
    widest = max(measured, key=lambda m: trial_need_mb(m, members))
    total = min(m.total_mb for m in measured)
    by_memory = trials_that_fit(trial_need_mb(widest, members), total, margin=MARGIN)
    if by_memory == 0 and members > 1 and (fits := fused_members_per_gpu(widest, total)) > 0:
        raise UsageError("pack.size", f"{members}: a fused pack of {members} members of {widest.student} "
                                      f"({widest.batch}) needs {trial_need_mb(widest, members):,.0f} MiB "
                                      f"({widest.peak_mb:,.0f} MiB per member + {widest.context_mb:,.0f} MiB CUDA "
                                      f"context), more than the GPU's {total:,.0f} MiB less a {MARGIN:.0%} margin; "
                                      f"a pack of {fits} fits")
    if by_memory == 0:
        raise UsageError("resources_per_trial.gpu", f"auto: one training step of {widest.student} ({widest.batch}) "
                                                    f"needs {widest.need_mb:,.0f} MiB with the CUDA context, more "
                                                    f"than the GPU's {widest.total_mb:,.0f} MiB less a {MARGIN:.0%} "
                                                    "margin; lower batch_size or set micro_batch_size")
    node_cpus = max(n["Resources"].get("CPU", 1.0) for n in gpu_nodes)
    by_cpus = max(trials_that_fit(cfg.cpu, node_cpus, margin=0.0), 1)  # at least one trial: its CPUs were checked
    trials = min(by_memory, by_cpus)
    return Sizing(gpu=1.0 / trials, trials_per_gpu=trials, widest=widest, cpu_bound=by_cpus < by_memory,
                  measured=measured, members=members)


def apply(cfg: SweepConfig, sizing: Sizing) -> SweepConfig:
    return dataclasses.replace(cfg, gpu=sizing.gpu)
