"""The training loop: one student, one loss, cached teacher logits, evaluation on dev every epoch.

It knows nothing about Ray: a per-epoch callback is the hook the Ray trial uses to report metrics and
checkpoints, and a checkpoint (model + optimizer + scheduler + RNG + epoch) lets a killed run resume at the
epoch where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from makd import gpu
from makd.batching import (
    EncodedDataset,
    bucket_lengths,
    default_pad_multiple,
    encode,
    padded_length,
    sorted_batches,
    to_device,
)
from makd.checkpoints import (
    CHECKPOINT_NAME,
    InEpochProgress,
    drop_in_epoch,
    restore_in_epoch,
    restore_run,
    save_epoch,
    save_in_epoch,
)
from makd.compiled import compile_student
from makd.config import TrainConfig, TrainOptions
from makd.data import TextDataset
from makd.epoch import (
    HOLDOUT,
    EpochCallback,
    EpochResult,
    TrainResult,
    build_epoch_result,
    divergence,
    record_epoch,
)
from makd.inference_cost import InferenceCost, measure_inference
from makd.losses import distillation_loss
from makd.masks import model_batch
from makd.runtime import autocast_dtype, pick_device, rng_state, seed_everything, set_rng_state
from makd.tasks import TaskSpec, compute_metrics, get_task
from makd.transfer import epoch_batches, labeled_only, student_labels


class TrainingDiverged(RuntimeError):
    """An epoch's mean train loss is NaN or infinite: the weights are lost and every later score would be noise."""


def training_targets(task: TaskSpec, labels: np.ndarray) -> torch.Tensor:
    """Class ids for classification; Platt-scaled 2-class probabilities for STS-B."""
    if task.is_regression:
        return torch.as_tensor(task.target_probs(labels), dtype=torch.float32)
    return torch.tensor(np.array(labels), dtype=torch.long)  # a copy: arrays from Ray's object store are read-only


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (the BERT recipe).

    The fused implementation on CPU and CUDA (the HF Trainer's default too): on a 2x384 student its step took
    0.015 s against 0.125 s for the per-tensor loop, a sixth of a whole CPU training step (bench.profile_trial).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


def pad_multiple(cfg: TrainConfig, device: torch.device) -> int | None:
    """cfg.pad_to_multiple_of, or the device's default (length buckets on CUDA, exact padding on CPU)."""
    return cfg.pad_to_multiple_of if cfg.pad_to_multiple_of is not None else default_pad_multiple(device)


def train_step(model: torch.nn.Module, encoded: EncodedDataset, idx: np.ndarray, targets: torch.Tensor,
               teacher_logits: torch.Tensor | None, cfg: TrainConfig, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, *, device: torch.device, amp: torch.dtype | None,
               pad_to_multiple_of: int | None = None, step: bool = True,
               labeled: torch.Tensor | None = None) -> torch.Tensor:
    """One optimizer step on the examples idx (targets and teacher_logits are row-aligned with idx, on any device);
    returns the batch's mean loss as a 0-d tensor on the device: reading it every step would make the CPU wait
    for the GPU instead of queueing the next step.

    With cfg.micro_batch_size the batch runs forward/backward in chunks whose losses are weighted by their share
    of the batch: the gradient is the whole batch's (only dropout draws differ), and the activation memory is a
    chunk's. Gradient clipping and the optimizer step see the whole batch, as without chunks. step=False stops
    after backward (the warm-up). labeled (host, row-aligned with idx): False on transfer examples.
    """
    optimizer.zero_grad(set_to_none=True)
    chunk = cfg.micro_batch_size or len(idx)
    loss_sum = torch.zeros((), device=device)
    for start in range(0, len(idx), chunk):
        part = slice(start, start + chunk)
        rows = idx[part]
        batch = model_batch(model, encoded, rows, device, pad_to_multiple_of)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            logits = model(**batch).logits
        loss = distillation_loss(logits, to_device(teacher_logits[part], device) if teacher_logits is not None else None,
                                 to_device(targets[part], device), kind=cfg.loss, lam=cfg.lam, tau=cfg.tau,
                                 labeled=labeled[part] if labeled is not None else None)
        share = len(rows) / len(idx)
        scaler.scale(loss * share).backward()
        loss_sum += loss.detach() * share
    if not step:
        return loss_sum
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss_sum


def shape_batches(encoded: EncodedDataset, batch_size: int, pad_to_multiple_of: int | None) -> list[np.ndarray]:
    """One batch per width the data can be padded to: the batch_size longest examples of that width's bucket
    (topped up with shorter ones), so the batch has the width and, where the data allows, the full size."""
    order = np.argsort(-encoded.lengths, kind="stable")
    widths = np.array([padded_length(int(n), pad_to_multiple_of, encoded.max_length)
                       for n in encoded.lengths[order]])
    return [order[int(np.argmax(widths <= w)):][:batch_size] for w in bucket_lengths(encoded, pad_to_multiple_of)]


def placeholder_targets(task: TaskSpec, cfg: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Targets and teacher logits of the right shapes for n rows, for steps whose loss value does not matter
    (the warm-up, the gpu: auto memory measurement)."""
    targets = training_targets(task, np.zeros(n, dtype=np.float32 if task.is_regression else np.int64))
    return targets, torch.zeros((n, task.num_labels)) if cfg.needs_teacher else None


def warm_up(model: torch.nn.Module, task: TaskSpec, train_enc: EncodedDataset,
            eval_sets: list[Mapping[str, tuple[TextDataset, EncodedDataset]]], cfg: TrainConfig,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, device: torch.device,
            amp: torch.dtype | None, pad_to_multiple_of: int | None) -> float:
    """Forward/backward once per training batch shape, then one whole evaluation of every eval set (each of its
    batch shapes, the copy back and the metrics' first call), so the first epoch and the first evaluation do not
    pay CUDA's first call of each shape (kernel loading and selection, allocator growth); returns seconds.

    No optimizer step is taken and every RNG is restored: the run trains exactly as it would without it.
    """
    start = time.perf_counter()
    state = rng_state()
    model.train()
    for rows in shape_batches(train_enc, cfg.batch_size, pad_to_multiple_of):
        train_step(model, train_enc, rows, *placeholder_targets(task, cfg, len(rows)), cfg, optimizer, scaler,
                   device=device, amp=amp, pad_to_multiple_of=pad_to_multiple_of, step=False)
    optimizer.zero_grad(set_to_none=True)
    for splits in eval_sets:
        evaluate(model, task, splits, batch_size=cfg.eval_batch_size, device=device, amp=amp,
                 pad_to_multiple_of=pad_to_multiple_of)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    set_rng_state(state)
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: TaskSpec, eval_sets: Mapping[str, tuple[TextDataset, EncodedDataset]], *,
             batch_size: int, device: torch.device, amp: torch.dtype | None,
             pad_to_multiple_of: int | None = None) -> tuple[dict[str, float], list[np.ndarray]]:
    """All official metrics of the task on each dev split (mnli: matched and mismatched), and each split's
    predictions in split order (what makd.fingerprints hashes)."""
    model.eval()
    metrics: dict[str, float] = {}
    predictions: list[np.ndarray] = []
    for suffix, (ds, encoded) in eval_sets.items():
        batches = sorted_batches(encoded.lengths, batch_size)
        chunks = []
        for idx in batches:
            batch = model_batch(model, encoded, idx, device, pad_to_multiple_of)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                chunks.append(model(**batch).logits.float())
        logits = np.zeros((len(ds), task.num_labels), dtype=np.float32)
        if batches:  # one copy back to the host per split, not one wait for the GPU per batch
            logits[np.concatenate(batches)] = torch.cat(chunks).cpu().numpy()
        predictions.append(task.predictions(logits))
        metrics.update(compute_metrics(task, predictions[-1], ds.labels, suffix=suffix))
    return metrics, predictions


def encode_splits(tokenizer, cfg: TrainOptions, train_ds: TextDataset,
                  eval_sets: Mapping[str, TextDataset]) -> tuple[EncodedDataset, dict[str, EncodedDataset]]:
    """The student tokenizer's ids of the train split and every dev split (what `train(encoded=...)` takes)."""
    return (encode(tokenizer, train_ds, cfg.max_length),
            {suffix: encode(tokenizer, ds, cfg.max_length) for suffix, ds in eval_sets.items()})


@dataclass
class RunSetup:
    """What a run holds before its first step: the task, device and precision, the student on its device, the
    splits' token ids, the selection split, and the training targets and teacher logits as tensors."""

    task: TaskSpec
    device: torch.device
    amp: torch.dtype | None
    pad: int | None
    model: torch.nn.Module
    train_enc: EncodedDataset
    eval_enc: dict[str, tuple[TextDataset, EncodedDataset]]
    selection: dict[str, tuple[TextDataset, EncodedDataset]] | None
    targets: torch.Tensor
    teacher: torch.Tensor | None
    labeled: torch.Tensor | None = None  # host bool per training row, False on transfer rows (None: all labeled)
    rows: np.ndarray | None = None  # the rows this loss trains on (makd/transfer.py; None: every row)


def prepare_run(cfg: TrainConfig, train_ds: TextDataset, eval_sets: Mapping[str, TextDataset],
                teacher_logits: np.ndarray | None, *, device: str | torch.device | None,
                encoded: tuple[EncodedDataset, Mapping[str, EncodedDataset]] | None,
                compile_model: bool = True) -> RunSetup:
    """Seed, build the student (its initialisation drawn under cfg.seed; compiled when cfg.compile asks and
    compile_model: makd.fused compiles its stacked forward instead), tokenise unless `encoded`, and check the
    teacher logits (given only when some loss reads them): shared by makd.train.train and makd.fused."""
    from makd.models import build_student

    task = get_task(cfg.task)
    if teacher_logits is not None and teacher_logits.shape != (len(train_ds), task.num_labels):
        raise ValueError(f"teacher logits shape {teacher_logits.shape} != ({len(train_ds)}, {task.num_labels})")
    dev = pick_device(device)
    amp = autocast_dtype(cfg.precision, dev)
    seed_everything(cfg.seed)
    model, tokenizer = build_student(cfg.student, task.num_labels, seed=cfg.seed, tokenizer=cfg.student_tokenizer)
    with _one_line_oom(dev, "moving the student to the GPU"):
        model.to(dev)
    if cfg.compile and compile_model:
        compile_student(model, cfg.compile)
    train_enc, eval_encs = encoded if encoded is not None else encode_splits(tokenizer, cfg, train_ds, eval_sets)
    if len(train_enc) != len(train_ds) or set(eval_encs) != set(eval_sets):
        raise ValueError("encoded splits do not match the datasets")
    eval_enc = {s: (ds, eval_encs[s]) for s, ds in eval_sets.items() if s != HOLDOUT}
    # the hold-out is scored like the first dev split (its metric keys), then renamed holdout_*
    selection = {task.eval_splits[0][1]: (eval_sets[HOLDOUT], eval_encs[HOLDOUT])} if HOLDOUT in eval_sets else None
    # Rows of targets and teacher logits are gathered on the host and travel with the batch (pinned, non-blocking):
    # indexing device tensors with a host index would make the CPU wait for the GPU every step.
    teacher = torch.tensor(np.asarray(teacher_logits), dtype=torch.float32) if teacher_logits is not None else None
    transfer = train_ds.labeled is not None and not bool(train_ds.labeled.all())
    return RunSetup(task, dev, amp, pad_multiple(cfg, dev), model, train_enc, eval_enc, selection,
                    training_targets(task, student_labels(task, train_ds)), teacher,
                    labeled=torch.from_numpy(np.asarray(train_ds.labeled, dtype=bool)) if transfer else None,
                    rows=np.flatnonzero(train_ds.labeled) if labeled_only(cfg.loss, train_ds) else None)


def train(cfg: TrainConfig, train_ds: TextDataset, eval_sets: Mapping[str, TextDataset],
          teacher_logits: np.ndarray | None, *, checkpoint_dir: str | Path | None = None,
          resume_from: str | Path | None = None, on_epoch_end: EpochCallback | None = None,
          device: str | torch.device | None = None, progress: bool = True,
          encoded: tuple[EncodedDataset, Mapping[str, EncodedDataset]] | None = None,
          inference_cost: InferenceCost | None = None,
          in_epoch_checkpoint_seconds: float | None = None, changed: frozenset[str] = frozenset(),
          stop_after_epoch: int | None = None) -> TrainResult:
    """Train one student; returns the per-epoch history.

    eval_sets maps a metric suffix ("" or "m"/"mm" for MNLI) to a dev split. teacher_logits are the cached
    teacher's logits on train_ds, row-aligned (None only when the loss does not use a teacher). encoded: the
    splits already tokenised by the student's tokenizer (`encode_splits`; the sweep driver does it once per task).
    With checkpoint_dir, a checkpoint is written there after every epoch, before on_epoch_end is called; a run
    finds and resumes from an existing checkpoint there (or from resume_from when given). inference_cost: the
    student architecture's cost as the sweep's driver measured it once for every trial (makd.inference_cost);
    without it the run measures its own (cfg.inference_batch_size 0: none). in_epoch_checkpoint_seconds (with
    checkpoint_dir): also save the state part-way through an epoch at most this often, for epochs that outlast the
    machine; a resumed run goes on from the batch where it stopped and trains exactly as an unbroken run would.
    changed: the settings (makd.config.CHANGEABLE_SETTINGS) cfg may change from the checkpoint it resumes,
    as Population Based Training does; stop_after_epoch: end after that epoch (its checkpoint written), the
    schedule still planned for cfg.epochs: a PBT schedule's segment, the next one resumed with its settings.
    """
    from makd.models import count_parameters

    cfg.validate()
    if cfg.needs_teacher and teacher_logits is None:
        raise ValueError("teacher_logits are required for this loss")
    run = prepare_run(cfg, train_ds, eval_sets, teacher_logits if cfg.needs_teacher else None, device=device,
                      encoded=encoded)
    task, dev, amp, pad, model = run.task, run.device, run.amp, run.pad, run.model
    train_enc, eval_enc, selection, targets, teacher = run.train_enc, run.eval_enc, run.selection, run.targets, run.teacher

    steps_per_epoch = -(-len(train_ds) // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    result = TrainResult(task=task.name, metric=task.metric, student_parameters=count_parameters(model))
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    source = Path(resume_from) / CHECKPOINT_NAME if resume_from else ckpt_path
    start_epoch = restore_run(source, cfg, model, optimizer, scheduler, scaler, result, changed)
    last_epoch = cfg.epochs if stop_after_epoch is None else min(stop_after_epoch, cfg.epochs)

    cost = inference_cost if cfg.inference_batch_size else None
    if cost is None and start_epoch < last_epoch and cfg.inference_batch_size:  # weights do not change the cost
        first_dev = next(iter(eval_enc.values()))[1]
        with _one_line_oom(dev, f"measuring inference (batch {cfg.inference_batch_size})"):
            cost = measure_inference(model, first_dev, batch_size=cfg.inference_batch_size, device=dev, amp=amp,
                                     pad_to_multiple_of=pad)
    warmup_seconds = 0.0
    if start_epoch < last_epoch and (cfg.warm_up if cfg.warm_up is not None else dev.type == "cuda"):
        with _one_line_oom(dev, "the warm-up of every batch shape"):
            warmup_seconds = warm_up(model, task, train_enc, [eval_enc] + ([selection] if selection else []), cfg,
                                     optimizer, scaler, device=dev, amp=amp, pad_to_multiple_of=pad)
    widest = f"batch {cfg.batch_size} x up to {padded_length(int(train_enc.lengths.max()), pad, cfg.max_length)} tokens"
    for epoch in range(start_epoch, last_epoch):
        model.train()
        # The batch order depends only on (seed, epoch): a resumed run sees the same batches it would have seen.
        batches = epoch_batches(train_enc.lengths, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]), run.rows)
        done = restore_in_epoch(ckpt_path, epoch, cfg, model, optimizer, scheduler, scaler)
        start, seen, saving = time.perf_counter(), done.seen, 0.0
        loss_sum = torch.tensor(done.loss_sum, dtype=torch.float32, device=dev)
        # disable=None: the bar only on a terminal (a log file or `makd logs` would get one line per redraw)
        bar = tqdm(batches[done.steps:], desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", initial=done.steps,
                   total=len(batches), disable=None if progress else True, leave=False)
        last_save = start
        with _one_line_oom(dev, f"training ({widest})"):
            for step, idx in enumerate(bar, start=done.steps + 1):
                loss = train_step(model, train_enc, idx, targets[idx], teacher[idx] if teacher is not None else None,
                                  cfg, optimizer, scaler, device=dev, amp=amp, pad_to_multiple_of=pad,
                                  labeled=run.labeled[idx] if run.labeled is not None else None)
                scheduler.step()
                seen += len(idx)
                loss_sum += loss * len(idx)
                if (ckpt_path is not None and in_epoch_checkpoint_seconds is not None and step < len(batches)
                        and time.perf_counter() - last_save >= in_epoch_checkpoint_seconds):
                    save_start = time.perf_counter()  # the writes are not training time
                    save_in_epoch(ckpt_path, cfg, model, optimizer, scheduler, scaler, InEpochProgress(
                        epoch, step, loss_sum.item(), seen, done.train_seconds + save_start - start - saving))
                    last_save = time.perf_counter()
                    saving += last_save - save_start
        train_loss = loss_sum.item() / max(seen, 1)  # waits for the GPU: the epoch's time includes all its work
        if (diverged := divergence(train_loss, epoch + 1)) is not None:
            raise TrainingDiverged(diverged)  # before this epoch's checkpoint: the last one holds finite weights
        train_seconds = done.train_seconds + time.perf_counter() - start - saving
        eval_start = time.perf_counter()
        with _one_line_oom(dev, f"evaluation (batch {cfg.eval_batch_size})"):
            metrics, dev_predictions = evaluate(model, task, eval_enc, batch_size=cfg.eval_batch_size, device=dev,
                                                amp=amp, pad_to_multiple_of=pad)
            held = {} if selection is None else evaluate(model, task, selection, batch_size=cfg.eval_batch_size,
                                                         device=dev, amp=amp, pad_to_multiple_of=pad)[0]
        epoch_result = build_epoch_result(
            epoch=epoch + 1, metric=task.metric, dev=metrics, held=held, train_loss=train_loss, examples=seen,
            train_seconds=train_seconds, eval_seconds=time.perf_counter() - eval_start, device=dev,
            student_parameters=result.student_parameters, weights=model.state_dict(), predictions=dev_predictions,
            classes=not task.is_regression, cost=cost, warmup_seconds=warmup_seconds if epoch == start_epoch else 0.0)
        finish_epoch(epoch_result, result, ckpt_path, cfg, model, optimizer, scheduler, scaler, on_epoch_end)
        drop_in_epoch(ckpt_path)
    return result


def finish_epoch(epoch_result: EpochResult, result: TrainResult, ckpt_path: Path | None, cfg: TrainConfig,
                 model: torch.nn.Module, optimizer, scheduler, scaler, on_epoch_end: EpochCallback | None) -> None:
    """The end of every epoch of a loop that trains one student (this one and makd/lm/train.py's): the history and
    the best epoch so far (makd.epoch.record_epoch), the checkpoint, then the callback (a sweep trial reports it)."""
    record_epoch(result, epoch_result)
    if ckpt_path is not None:
        epoch_result.checkpoint_seconds = save_epoch(ckpt_path, cfg, model, optimizer, scheduler, scaler, result)
    if on_epoch_end is not None:
        on_epoch_end(epoch_result, ckpt_path.parent if ckpt_path else None)


@contextmanager
def _one_line_oom(device: torch.device, what: str) -> Iterator[None]:
    """A CUDA out-of-memory inside becomes one line naming the peak and the cap (makd.gpu.GpuOutOfMemory)."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        if device.type != "cuda":
            raise
        raise gpu.out_of_memory(err, device, what) from None
