"""One Ray Tune trial: the makd training loop, reporting and checkpointing every epoch.

The trial never loads the teacher and never reads the data folder: the driver ships the task's datasets and the
cached teacher logits through the Ray object store (`tune.with_parameters`), so a trial runs on any node.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from makd.data import TextDataset
from makd.tasks import TaskSpec
from tune.search.base import SWEPT

FINISHED = ("TERMINATED", "STOPPED")  # Ray statuses of a trial that has a score: ran to the end, or ASHA stopped it
FAULT_ENV = "MAKD_FAULT_ONCE"  # "DIR:EPOCH": each trial raises once after reporting EPOCH (tests of retries)


@dataclass
class TaskData:
    """Everything a trial of one task needs, built once by the driver and shared through the object store."""

    task: str
    train: TextDataset
    eval_sets: dict[str, TextDataset]
    teacher_logits: np.ndarray | None
    base: dict  # the sweep's TrainOptions as a dict: shared by every trial (teacher, epochs, batch size, ...)
    encoded: dict = field(default_factory=dict)  # student tokenizer spec -> makd.train.encode_splits(...)
    references: dict = field(default_factory=dict)  # makd.pipeline.task_references: majority_score, teacher_score
    spec: TaskSpec | None = None  # a task defined by the user's files: registered in the trial's process
    finetuned_teacher: dict | None = None  # makd.teacher_finetune's record (teacher_finetune sweeps), for the driver


def trial_params(config: dict) -> dict:
    """Every trial's config is flat (student, loss, lam, tau, seed, lr); older experiment dirs nested a grid
    trial's under "cell": read either as one flat dict."""
    return {**config.get("cell", {}), **{k: v for k, v in config.items() if k != "cell"}}


def _log_event(events_path: str | None, **event) -> None:
    """Append one JSON line (O_APPEND keeps concurrent small writes whole): an audit trail of every epoch."""
    if not events_path:
        return
    line = json.dumps({"time": round(time.time(), 3), **event}) + "\n"
    fd = os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _maybe_inject_fault(trial_id: str, epoch: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    marker_dir, _, at_epoch = spec.rpartition(":")
    marker = Path(marker_dir) / trial_id
    if epoch == int(at_epoch) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"injected fault after epoch {epoch} ({FAULT_ENV})")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB): what a user sizes per-trial memory/fractions from."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def parameters_m(count: int) -> float:
    """A parameter count in millions as trials.csv holds it (trials report it; the driver fills what none did)."""
    return round(count / 1e6, 3)


def _assigned(resource: str, default: float) -> float:
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get(resource, default))


def distill_trial(config: dict, *, task_data: TaskData, events_path: str | None = None) -> None:
    """Ray Tune function trainable: train one student, `tune.report` metrics + checkpoint after each epoch."""
    import ray
    import torch
    from ray import tune as ray_tune

    from makd import gpu, models
    from makd.tasks import get_task, register_task
    from makd.train import BEST_NAME, CHECKPOINT_NAME, TrainConfig, train

    if task_data.spec is not None:  # the user's own task: a fresh worker knows only the GLUE tasks
        register_task(task_data.spec)
    params = trial_params(config)
    cfg = TrainConfig(task=task_data.task, **{**task_data.base, **{key: params[key] for key in SWEPT}})
    task = get_task(cfg.task)
    torch.set_num_threads(max(1, int(_assigned("CPU", 1.0))))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    # Ray does not enforce GPU fractions: cap this trial's allocations at its share so it cannot starve others.
    gpu_cap_mb = gpu.limit_memory(_assigned("GPU", 1.0), device)
    encoded = task_data.encoded.get(models.student_tokenizer_spec(cfg.student, cfg.student_tokenizer))
    context = ray_tune.get_context()
    trial_id = context.get_trial_id()
    node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    workdir = Path(tempfile.mkdtemp(prefix="makd-trial-"))
    checkpoint = ray_tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            for name in (CHECKPOINT_NAME, BEST_NAME):  # the latest epoch, and the best one so far
                if (Path(ckpt_dir) / name).exists():
                    shutil.copy(Path(ckpt_dir) / name, workdir / name)
    start = time.perf_counter()
    first_epoch: list[int] = []
    report_seconds: list[float] = [0.0]

    def epoch_metrics(result) -> dict:
        return {"epoch": result.epoch, "score": result.score, "metric": task.metric, "dev_score": result.dev_score,
                "selection": "train_holdout" if cfg.holdout_fraction > 0 else "dev",
                "train_loss": result.train_loss, "train_examples_per_s": result.train_examples_per_s,
                "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                "trial_seconds": time.perf_counter() - start, "trial_hours": (time.perf_counter() - start) / 3600, "resumed_from_epoch": first_epoch[0] - 1,
                "teacher_loads_in_trial": models.TEACHER_LOADS, "device": device, "peak_rss_mb": peak_rss_mb(),
                "peak_gpu_mb": result.peak_gpu_mb, "gpu_cap_mb": gpu_cap_mb, "warmup_seconds": result.warmup_seconds,
                "checkpoint_seconds": result.checkpoint_seconds, "previous_report_seconds": report_seconds[-1],
                "student_parameters_m": parameters_m(result.student_parameters) or None,
                "weights_fingerprint": result.weights_fingerprint,
                "predictions_fingerprint": result.predictions_fingerprint,
                "predicted_classes": result.predicted_classes,
                "latency_ms": result.latency_ms, "inference_examples_per_s": result.inference_examples_per_s,
                # the run's best epoch so far, epochs before a resume included (the console's "done" line)
                "best_epoch_so_far": result.best_epoch, "best_score_so_far": result.best_score,
                **task_data.references, **node,
                # the row's teacher without sweep.json (a running sweep read from its folders)
                "teacher": cfg.teacher if cfg.needs_teacher else None,
                "teacher_fine_tuned": bool(cfg.fine_tuned or task_data.finetuned_teacher),
                **{f"glue_{k}": v for k, v in result.metrics.items()}}

    def report(result, ckpt_dir: Path | None) -> None:
        if not first_epoch:
            first_epoch.append(result.epoch)
        # Logged before report: when ASHA stops a trial at this epoch, report does not return to us.
        _log_event(events_path, event="epoch", trial_id=trial_id, task=cfg.task, epoch=result.epoch,
                   score=result.score, **node)
        report_start = time.perf_counter()
        ray_tune.report(epoch_metrics(result), checkpoint=ray_tune.Checkpoint.from_directory(str(ckpt_dir)))
        # Ray copies the checkpoint dir to storage, then waits for Tune to take the result: reported next epoch
        report_seconds.append(time.perf_counter() - report_start)
        _maybe_inject_fault(trial_id, result.epoch)

    _log_event(events_path, event="start", trial_id=trial_id, task=cfg.task, resumed=checkpoint is not None, **node)
    try:
        result = train(cfg, task_data.train, task_data.eval_sets,
                       task_data.teacher_logits if cfg.needs_teacher else None, checkpoint_dir=workdir,
                       on_epoch_end=report, device=device, progress=False, encoded=encoded)
        if first_epoch:
            _log_event(events_path, event="done", trial_id=trial_id, task=cfg.task, epochs=len(result.history), **node)
        elif result.history:
            # Restarted from a checkpoint that already holds the last epoch (the driver died between the trial's
            # end and Tune recording it): nothing is retrained; report the stored final epoch so Tune's record of
            # this trial ends with it.
            first_epoch.append(result.resumed_from_epoch + 1)
            ray_tune.report(epoch_metrics(result.history[-1]), checkpoint=ray_tune.Checkpoint.from_directory(str(workdir)))
            _log_event(events_path, event="already-done", trial_id=trial_id, task=cfg.task, **node)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
