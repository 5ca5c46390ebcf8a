"""One Ray Tune trial: the makd training loop, reporting and checkpointing every epoch.

The trial never loads the teacher and never reads the data folder: the driver ships the task's datasets and the
cached teacher logits through the Ray object store (`ray.tune.with_parameters`), so a trial runs on any node.
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
from typing import TYPE_CHECKING

import numpy as np

from makd.data import TextDataset
from makd.tasks import TaskSpec
from makd_sweep import experiment_dir as layout
from makd_sweep import schedule
from makd_sweep.experiment_dir import SEARCHED_OPTIONS, SWEPT, trial_params
from makd_sweep.pack import FUSED
from makd_sweep.trial_checkpoint import NewestCheckpoint, checkpoint_of

if TYPE_CHECKING:
    from makd.lm.pipeline import LmTaskData

FAULT_ENV = "MAKD_FAULT_ONCE"  # "DIR:EPOCH": each trial raises once after reporting EPOCH (tests of retries)
HOLD_ENV = "MAKD_FAULT_HOLD"  # "RELEASE:EPOCH": a trial waits after reporting EPOCH until RELEASE exists (tests)


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
    lm: LmTaskData | None = None  # a causal-LM task's sequences and teacher signal (makd/lm/pipeline.py)
    # student -> its architecture's makd.inference_cost.InferenceCost, measured once by the driver for every trial
    inference_costs: dict = field(default_factory=dict)
    perturbed: tuple[str, ...] = ()  # PBT (makd_sweep/search/pbt.py): the settings a trial may resume a donor with



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


def _path_at_epoch(name: str, epoch: int) -> Path | None:
    """The PATH of a test hook's $name = "PATH:EPOCH" when `epoch` is its EPOCH; None when unset or another epoch."""
    spec = os.environ.get(name)
    if not spec:
        return None
    path, _, at_epoch = spec.rpartition(":")
    return Path(path) if epoch == int(at_epoch) else None


def _maybe_inject_fault(trial_id: str, epoch: int) -> None:
    marker_dir = _path_at_epoch(FAULT_ENV, epoch)
    if marker_dir is not None and not (marker_dir / trial_id).exists():
        marker_dir.mkdir(parents=True, exist_ok=True)
        (marker_dir / trial_id).touch()
        raise RuntimeError(f"injected fault after epoch {epoch} ({FAULT_ENV})")


def _maybe_hold(epoch: int) -> None:
    """Tests of stops and node loss: with $MAKD_FAULT_HOLD = "RELEASE:EPOCH", a trial that has reported EPOCH waits
    until the file RELEASE exists, so a test acts while trials are known to be running, however fast the machine.
    A RELEASE named *.once lets one trial go per file the test writes (the trial deletes it: trials one at a time)."""
    release = _path_at_epoch(HOLD_ENV, epoch)
    while release is not None and not release.exists():
        time.sleep(0.2)
    if release is not None and release.suffix == ".once":
        release.unlink(missing_ok=True)


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


def distill_trial(config: dict, *, task_data: TaskData, events_path: str | None = None,
                  env: dict[str, str] | None = None) -> None:
    """Ray Tune function trainable: train one student, or each member of a pack (makd_sweep/pack.py) one after another,
    and `ray.tune.report` metrics + checkpoint after each epoch. `env`: the sweep's MAKD_* variables (makd_sweep/cluster.py
    forwarded_env), set here because the Ray the trial runs in may have started before the sweep (a notebook's)."""
    import ray
    import torch
    from ray import tune as ray_tune

    from makd import gpu
    from makd.tasks import register_task

    if env is not None:
        for key in [k for k in os.environ if k.startswith("MAKD_") and k not in env]:
            del os.environ[key]
        os.environ.update(env)
    if task_data.spec is not None:  # the user's own task: a fresh worker knows only the GLUE tasks
        register_task(task_data.spec)
    params = trial_params(config)
    configs = layout.members(params)
    torch.set_num_threads(max(1, int(_assigned("CPU", 1.0))))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    # Ray does not enforce GPU fractions: cap this trial's allocations at its share so it cannot starve others.
    gpu_cap_mb = gpu.limit_memory(_assigned("GPU", 1.0), device)
    trial_id = ray_tune.get_context().get_trial_id()
    node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    workdir = Path(tempfile.mkdtemp(prefix="makd-trial-"))
    checkpoint = ray_tune.get_checkpoint()
    if checkpoint is not None:  # the latest epoch and the best one so far (of every member of a pack)
        with checkpoint.as_directory() as ckpt_dir:
            shutil.copytree(ckpt_dir, workdir, dirs_exist_ok=True)
    run = _TrialRun(task_data, trial_id, node, device, gpu_cap_mb, events_path, workdir, resumed=checkpoint is not None)
    try:
        if configs is None:
            run.train_member(params, workdir, None)
        elif params.get(FUSED):
            run.train_fused_pack(configs)
        else:
            for index, member in enumerate(configs):
                run.train_pack_member(member, index, len(configs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# Tune builds its trainable class from these and the function: a restored trial starts from the newest complete
# checkpoint in its folder (makd_sweep/trial_checkpoint.py), even when the experiment state names an older, deleted one.
distill_trial.__mixins__ = (NewestCheckpoint,)


@dataclass
class _TrialRun:
    """What every member of one Ray trial shares: the task's data, the node, the device, the checkpoint dir."""

    task_data: TaskData
    trial_id: str
    node: dict
    device: str
    gpu_cap_mb: float | None
    events_path: str | None
    workdir: Path
    resumed: bool
    report_seconds: list[float] = field(default_factory=lambda: [0.0])
    in_report: bool = False  # inside ray's report: its exceptions (a stop, a fault) end the whole trial

    def train_pack_member(self, params: dict, index: int, size: int) -> None:
        """A member of a pack: an error of its own (raised by its training, not by Ray's reporting) is reported
        as that member's and the pack goes on with the next one."""

        try:
            self.train_member(params, self.workdir / layout.MEMBER_DIR.format(index), (index, size))
        except Exception as err:
            if self.in_report:
                raise
            self.report_member_error(index, size, f"{type(err).__name__}: {err}")

    def report_member_error(self, index: int, size: int, message: str) -> None:
        """A member's own error, as its row's error (the pack goes on with its other members)."""
        from ray import tune as ray_tune

        message = message.splitlines()[0][:300]
        _log_event(self.events_path, event="member-error", trial_id=layout.member_trial_id(self.trial_id, index),
                   error=message, **self.node)
        ray_tune.report({layout.MEMBER: index, layout.MEMBER_ERROR: message, "pack_id": self.trial_id,
                         "pack_size": size, "score": float("nan")})

    def train_fused_pack(self, configs: list[dict]) -> None:
        """A fused pack (makd/fused.py): every member at once, each member's epochs reported as a sequential
        pack's are. Restored with every member finished, it reports them again without training; restored
        unfinished, it resumes at the epoch after its checkpoint's (makd.fused's pack state), so no member epoch
        is trained twice."""

        from makd.checkpoints import CHECKPOINT_NAME
        from makd.fused import STATE_NAME, train_fused
        from makd.gpu import GpuOutOfMemory
        from makd.models import student_tokenizer_id

        size = len(configs)
        dirs = [self.workdir / layout.MEMBER_DIR.format(i) for i in range(size)]
        if all((d / CHECKPOINT_NAME).is_file() for d in dirs):
            for index, member in enumerate(configs):
                self.train_member(member, dirs[index], (index, size))
            return
        data = self.task_data
        cfgs = [self.train_config(member) for member in configs]
        start = time.perf_counter()
        for index, member_dir in enumerate(dirs):
            member_dir.mkdir(parents=True, exist_ok=True)
            _log_event(self.events_path, event="start", trial_id=layout.member_trial_id(self.trial_id, index),
                       task=data.task, resumed=self.resumed, **self.node)

        state = self.workdir / STATE_NAME
        first_epoch: dict[int, int] = {}  # per member: the first epoch this run trains
        resuming = state.is_file()  # then train_fused first reports every member's last trained epoch again

        def report_member_epoch(index: int, result) -> None:
            first_epoch.setdefault(index, result.epoch + 1 if resuming else result.epoch)
            metrics = self.epoch_metrics(cfgs[index], result, start, first_epoch[index])
            # the members train together: each one's time (and device-hours) is its share of the pack's
            metrics.update({layout.MEMBER: index, "pack_id": self.trial_id, "pack_size": size,
                            "trial_seconds": metrics["trial_seconds"] / size, "trial_hours": metrics["trial_hours"] / size})
            self.report_epoch(layout.member_trial_id(self.trial_id, index), data.task, result, metrics,
                              event="epoch" if result.epoch >= first_epoch[index] else "reported-again")

        encoded = data.encoded.get(student_tokenizer_id(cfgs[0].student, cfgs[0].student_tokenizer))
        try:
            results = train_fused(cfgs, data.train, data.eval_sets, data.teacher_logits, device=self.device,
                                  encoded=encoded, on_epoch_end=report_member_epoch, checkpoint_dirs=dirs,
                                  state_path=state, inference_cost=data.inference_costs.get(cfgs[0].student),
                                  on_member_error=lambda index, message: self.report_member_error(
                                      index, size, f"TrainingDiverged: {message}"))
        except GpuOutOfMemory as err:  # every member's row says so (a size that fits) and Ray does not retry it
            for index in range(size):
                self.report_member_error(index, size, f"GpuOutOfMemory: {err}")
            return
        for index, (cfg, result) in enumerate(zip(cfgs, results, strict=True)):
            if result.error is None:
                _log_event(self.events_path, event="done", trial_id=layout.member_trial_id(self.trial_id, index),
                           task=data.task, epochs=cfg.epochs, **self.node)

    def report_epoch(self, trial_id: str, task: str, result, metrics: dict, *, event: str = "epoch") -> None:
        """One epoch of a trial (member) to Tune, with the whole trial dir as the checkpoint; `event` says whether it
        was trained now (epoch) or in a run before a restore (reported-again)."""
        from ray import tune as ray_tune

        # Logged before report: when ASHA stops a trial at this epoch, report does not return to us.
        _log_event(self.events_path, event=event, trial_id=trial_id, task=task, epoch=result.epoch,
                   score=result.score, **self.node)
        report_start = time.perf_counter()
        self.in_report = True
        ray_tune.report(metrics, checkpoint=checkpoint_of(self.workdir))
        # Ray copies the checkpoint dir to storage, then waits for Tune to take the result: reported next epoch
        self.report_seconds.append(time.perf_counter() - report_start)
        _maybe_inject_fault(self.trial_id, result.epoch)
        self.in_report = False
        _maybe_hold(result.epoch)

    def train_config(self, params: dict):
        from makd.train import TrainConfig

        searched = {key: params[key] for key in SEARCHED_OPTIONS if key in params}  # makd_sweep/search_space.py
        return TrainConfig(task=self.task_data.task, **{**self.task_data.base, **{key: params[key] for key in SWEPT},
                                                        **searched})

    def epoch_metrics(self, cfg, result, start: float, first_epoch: int) -> dict:
        """What every epoch of a trial (member) reports to Tune."""
        from makd import models
        from makd.tasks import get_task

        data = self.task_data
        return {"epoch": result.epoch, "score": result.score, "metric": get_task(cfg.task).metric,
                "dev_score": result.dev_score, "selection": "train_holdout" if cfg.holdout_fraction > 0 else "dev",
                "train_loss": result.train_loss, "train_examples_per_s": result.train_examples_per_s,
                "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                "trial_seconds": time.perf_counter() - start, "trial_hours": (time.perf_counter() - start) / 3600,
                "resumed_from_epoch": first_epoch - 1,
                "teacher_loads_in_trial": models.TEACHER_LOADS, "device": self.device,
                "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": result.peak_gpu_mb, "gpu_cap_mb": self.gpu_cap_mb,
                "warmup_seconds": result.warmup_seconds, "checkpoint_seconds": result.checkpoint_seconds,
                "previous_report_seconds": self.report_seconds[-1],
                "student_parameters_m": parameters_m(result.student_parameters) or None,
                "weights_fingerprint": result.weights_fingerprint,
                "predictions_fingerprint": result.predictions_fingerprint,
                "predicted_classes": result.predicted_classes,
                "latency_ms": result.latency_ms, "inference_examples_per_s": result.inference_examples_per_s,
                # the run's best epoch so far, epochs before a resume included (the console's "done" line)
                "best_epoch_so_far": result.best_epoch, "best_score_so_far": result.best_score,
                **data.references, **self.node,
                # the row's teacher without sweep.json (a running sweep read from its folders)
                "teacher": cfg.teacher if cfg.needs_teacher or data.lm else None,
                "teacher_fine_tuned": bool(cfg.fine_tuned or data.finetuned_teacher),
                **{f"glue_{k}": v for k, v in result.metrics.items()}}

    def train_member(self, params: dict, member_dir: Path, member: tuple[int, int] | None) -> None:
        """Train one config (a member of a pack when `member` is (index, pack size)), reporting every epoch with
        the whole trial dir as the checkpoint; a member whose checkpoint holds its last epoch is not retrained.
        A PBT trial (makd_sweep/search/pbt.py) records the setting it trains each epoch with (its schedule, kept in
        its checkpoint, so that a trial that goes on from a donor's checkpoint inherits the donor's); a final-stage
        trial given a `schedule` replays it: each segment's setting from its first epoch on."""
        from ray import tune as ray_tune

        from makd import models
        from makd.train import train

        data = self.task_data
        segments = schedule.segments(params)
        cfg = self.train_config({**params, **segments[0].setting})
        encoded = None if data.lm else data.encoded.get(models.student_tokenizer_id(cfg.student, cfg.student_tokenizer))
        trial_id = self.trial_id if member is None else layout.member_trial_id(self.trial_id, member[0])
        packed = {} if member is None else {layout.MEMBER: member[0], "pack_id": self.trial_id, "pack_size": member[1]}
        member_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        first_epoch: list[int] = []
        changed = frozenset(data.perturbed) | schedule.changed_keys(segments)
        recorded = schedule.Recorder(member_dir) if changed else None

        def epoch_metrics(result) -> dict:
            extra = {} if recorded is None else {schedule.METRIC: recorded.as_json()}
            return {**self.epoch_metrics(cfg, result, start, first_epoch[0]), **packed, **extra}

        def report_to_tune(result, ckpt_dir: Path | None) -> None:
            if not first_epoch:
                first_epoch.append(result.epoch)
            if recorded is not None:
                recorded.train(result.epoch, {key: getattr(cfg, key) for key in sorted(changed)})
            self.report_epoch(trial_id, cfg.task, result, epoch_metrics(result))

        _log_event(self.events_path, event="start", trial_id=trial_id, task=cfg.task, resumed=self.resumed,
                   **self.node)
        for segment in segments:
            cfg = self.train_config({**params, **segment.setting})
            if data.lm is not None:
                from makd.lm.train import train_lm

                if changed:  # refused before Ray starts (makd_sweep/config.py: check_causal_lm)
                    raise ValueError("PBT and schedules train encoder students only (makd_sweep/search/pbt.py)")
                result = train_lm(cfg, data.lm, checkpoint_dir=member_dir, on_epoch_end=report_to_tune,
                                  device=self.device)
            else:
                result = train(cfg, data.train, data.eval_sets, data.teacher_logits if cfg.needs_teacher else None,
                               checkpoint_dir=member_dir, on_epoch_end=report_to_tune, device=self.device,
                               progress=False, encoded=encoded, inference_cost=data.inference_costs.get(cfg.student),
                               changed=changed, stop_after_epoch=segment.last_epoch)
        if first_epoch:
            _log_event(self.events_path, event="done", trial_id=trial_id, task=cfg.task, epochs=len(result.history),
                       **self.node)
        elif result.history:
            # Restarted from a checkpoint that already holds the last epoch (the driver died between the trial's
            # end and Tune recording it, or a later member of the pack failed): nothing is retrained; report the
            # stored final epoch so Tune's record of this trial (member) ends with it.
            first_epoch.append(result.resumed_from_epoch + 1)
            ray_tune.report(epoch_metrics(result.history[-1]), checkpoint=checkpoint_of(self.workdir))
            _log_event(self.events_path, event="already-done", trial_id=trial_id, task=cfg.task, **self.node)
