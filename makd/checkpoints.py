"""A run's checkpoints (makd/train.py, makd/lm/train.py): the epoch's state (weights, optimizer, schedule, RNG,
history) written atomically, read back only into the same run, and the best epoch's weights beside it (what
`makd export` ships). A full disk or a kill mid-write leaves the previous checkpoint whole."""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from makd.config import CHANGEABLE_SETTINGS, TrainConfig
from makd.epoch import TrainResult, restored_history
from makd.errors import UsageError
from makd.runtime import rng_state, set_rng_state

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best_model.pt"  # beside the checkpoint: the weights of the first epoch with the best score
IN_EPOCH_NAME = "in_epoch.pt"  # beside the checkpoint: an unfinished epoch's state (runs longer than a session)
CHECKPOINT_FORMAT = 1
DISK_FULL_ENV = "MAKD_FAULT_DISK_FULL_ONCE"  # tests only: see _injected_disk_full


def _injected_disk_full(tmp: str, epoch: int | None) -> None:
    """Tests of a full disk: with $MAKD_FAULT_DISK_FULL_ONCE = "MARKER:EPOCH", the first checkpoint write of EPOCH
    (in any process, while MARKER does not exist) stops half-written with ENOSPC, as a full disk would."""
    spec = os.environ.get(DISK_FULL_ENV)
    if not spec:
        return
    marker, _, at = spec.rpartition(":")
    if epoch != int(at) or os.path.exists(marker):
        return
    Path(marker).touch()
    with open(tmp, "r+b") as f:
        f.truncate(os.path.getsize(tmp) // 2)
    raise OSError(errno.ENOSPC, "No space left on device (injected by $" + DISK_FULL_ENV + ")", tmp)


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a run killed mid-write, or out of disk, leaves the previous checkpoint intact and no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        _injected_disk_full(tmp, state.get("epoch"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, cfg: TrainConfig, changed: frozenset[str] = frozenset()) -> dict:
    """The checkpoint at `path`, refused when it is of another run: its config must equal cfg except in `changed`
    (a subset of CHANGEABLE_SETTINGS)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(str(path), f"unsupported checkpoint format {state.get('format')}")
    saved = state["config"]
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    # a field added to TrainConfig since the checkpoint was written, at its default, is the same run
    differing = sorted(k for k, v in dataclasses.asdict(cfg).items()
                       if saved.get(k, defaults.get(k)) != v and k not in changed)
    if differing:
        raise UsageError(str(path), "holds a checkpoint of a different run (differs in: "
                         f"{', '.join(differing)}); use another output dir or delete it")
    return state


def _load_run_state(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                    scaler: torch.amp.GradScaler) -> None:
    """Weights, RNG and, when the checkpoint has them, optimizer, schedule and scaler into the run's own objects
    (an epoch checkpoint and an in-epoch one alike)."""
    model.load_state_dict(state["model"])
    if "optimizer" in state:  # absent from a finished run's checkpoint: no epoch is left to train
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])


def apply_settings(optimizer: torch.optim.Optimizer, scheduler, cfg: TrainConfig) -> None:
    """cfg's lr and weight decay on an optimizer and linear schedule restored from a run with other values: the
    schedule keeps its position (its step, warm-up and decay) and scales the new lr from there; the decay group
    (make_optimizer: the one with weight decay) takes the new weight decay, the no-decay group keeps 0."""
    scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = cfg.lr
        group["lr"] = cfg.lr * lr_lambda(scheduler.last_epoch)
    optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def restore_run(source: Path | None, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler, scaler: torch.amp.GradScaler, result: TrainResult,
                changed: frozenset[str] = frozenset()) -> int:
    """Resume from the checkpoint at `source` when there is one (weights, optimizer, RNG, history into `result`);
    returns the number of epochs already trained. `changed`: settings cfg may hold other values of than the
    checkpoint (CHANGEABLE_SETTINGS; PBT), applied to the restored optimizer."""
    if source is None or not source.exists():
        return 0
    if not changed <= CHANGEABLE_SETTINGS:
        raise UsageError("changed", f"only {', '.join(sorted(CHANGEABLE_SETTINGS))} may change between epochs, not "
                                    f"{', '.join(sorted(changed - CHANGEABLE_SETTINGS))}")
    state = load_checkpoint(source, cfg, changed)
    _load_run_state(state, model, optimizer, scheduler, scaler)
    if changed and "optimizer" in state:
        apply_settings(optimizer, scheduler, cfg)
    result.resumed_from_epoch = state["epoch"]
    result.history = restored_history(state["history"])
    return result.resumed_from_epoch


def save_epoch(ckpt_path: Path, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, scaler: torch.amp.GradScaler, result: TrainResult) -> float:
    """The checkpoint of the epoch just ended (result.history[-1]), and the best model when it improved (first
    best: what `makd export` ships, not the last epoch); returns the seconds it took."""
    start = time.perf_counter()
    last = result.history[-1]
    state = {"format": CHECKPOINT_FORMAT, "epoch": last.epoch, "config": dataclasses.asdict(cfg),
             "model": model.state_dict(), "rng": rng_state(), "history": [dataclasses.asdict(h) for h in result.history]}
    if last.epoch < cfg.epochs:
        # Only an unfinished run resumes, so only its checkpoint carries the optimizer (AdamW's two moments: twice
        # the model's size, which every trial would write and Ray copy once more).
        state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict())
    save_checkpoint(ckpt_path, state)
    earlier = [h.score for h in result.history[:-1]]
    if not earlier or last.score > max(earlier):
        save_checkpoint(ckpt_path.with_name(BEST_NAME), {
            "format": CHECKPOINT_FORMAT, "epoch": last.epoch, "score": last.score, "metrics": last.metrics,
            "config": state["config"], "model": state["model"]})
    return time.perf_counter() - start


@dataclass
class InEpochProgress:
    """Where an unfinished epoch stopped: the batches done and the running loss and time (the weights, optimizer,
    schedule and RNG are restored into the run's own objects)."""

    epoch: int  # 0-based: the epoch in progress
    steps: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    train_seconds: float = 0.0


def save_in_epoch(ckpt_path: Path, cfg: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler, scaler: torch.amp.GradScaler, progress: InEpochProgress) -> None:
    """The state part-way through an epoch, so that a run whose epoch outlasts its machine (a 110M teacher
    fine-tuned on CPU, a preemptible node) loses at most the interval since this write. Beside, not instead of,
    the epoch checkpoint: what a sweep reports and `makd export` reads stays the last finished epoch."""
    save_checkpoint(ckpt_path.with_name(IN_EPOCH_NAME), {
        "format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(cfg), "progress": dataclasses.asdict(progress),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "rng": rng_state()})


def restore_in_epoch(ckpt_path: Path | None, epoch: int, cfg: TrainConfig, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler) -> InEpochProgress:
    """Resume epoch `epoch` (0-based) where its in-epoch checkpoint stopped, or at its start when there is none
    (or the one there belongs to an epoch already finished: the epoch checkpoint is newer)."""
    path = ckpt_path.with_name(IN_EPOCH_NAME) if ckpt_path is not None else None
    if path is None or not path.exists():
        return InEpochProgress(epoch)
    state = load_checkpoint(path, cfg)
    progress = InEpochProgress(**state["progress"])
    if progress.epoch != epoch:
        return InEpochProgress(epoch)
    _load_run_state(state, model, optimizer, scheduler, scaler)
    return progress


def drop_in_epoch(ckpt_path: Path | None) -> None:
    """After the epoch's own checkpoint: the in-epoch one is older and would only cost disk."""
    if ckpt_path is not None:
        ckpt_path.with_name(IN_EPOCH_NAME).unlink(missing_ok=True)
