"""A fused pack: K students of one shape trained as one batched model (HFTA-style horizontal fusion, torch.func).

Members share everything but the loss, λ and τ: the task, the student, the seed (so one initialisation, one batch
order and, with vmap's randomness="same", one dropout mask per layer per step: the paired guarantee), lr, batch
size, epochs. Their weights are stacked on a leading axis of size K and every layer runs once for all of them
(`torch.func.functional_call` under `torch.func.vmap`); each member's loss is its own and the gradients of
different members never mix. Per member: gradient clipping by its own norm (as `clip_grad_norm_` computes it);
AdamW is elementwise, so one optimizer over the stacked tensors is each member's own.

A member whose epoch ends with a NaN or infinite train loss leaves the pack with its own error (TrainResult.error, the
same line `makd.train.train` raises for that config alone); no operation reduces across members, so its neighbours'
numbers are those they would have without it, and they go on.

This is for GPUs, where a small student's step is launch-bound and K members cost about one kernel launch each; on a
2-core CPU the step is compute-bound and fusing gains nothing (../shared/notes/fused-trials-probe.md). What it does
not do yet: fp16 (a grad scaler).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from makd import gpu
from makd.batching import EncodedDataset, sorted_batches
from makd.checkpoints import BEST_NAME, CHECKPOINT_FORMAT, CHECKPOINT_NAME, save_checkpoint
from makd.compiled import compile_function
from makd.config import TrainConfig
from makd.data import TextDataset
from makd.epoch import (
    EpochResult,
    TrainResult,
    build_epoch_result,
    divergence,
    record_epoch,
    restored_history,
)
from makd.errors import UsageError
from makd.inference_cost import InferenceCost, measure_inference
from makd.losses import distillation_loss
from makd.masks import expand_attention_mask, model_batch
from makd.runtime import rng_state, set_rng_state
from makd.tasks import TaskSpec, compute_metrics
from makd.train import prepare_run
from makd.transfer import epoch_batches

MEMBER_FIELDS = ("loss", "lam", "tau")  # what members of one fused pack may differ in
STATE_NAME = "fused_state.pt"  # an unfinished fused pack's state, beside its members' folders


def check_fusable(cfgs: list[TrainConfig]) -> None:
    """One line naming the first option the members differ in, beyond loss, λ and τ."""
    if not cfgs:
        raise UsageError("pack", "a pack needs at least one member")
    first = dataclasses.asdict(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], start=1):
        other = dataclasses.asdict(cfg)
        differing = [k for k in first if k not in MEMBER_FIELDS and first[k] != other[k]]
        if differing:
            raise UsageError(f"pack.members[{i}]", f"differs from member 0 in {', '.join(differing)}: a fused pack's "
                             f"members may differ only in {', '.join(MEMBER_FIELDS)}")
    if cfgs[0].precision == "fp16":
        raise UsageError("precision", "a fused pack trains in fp32 or bf16 (fp16 needs a grad scaler per member)")
    if cfgs[0].micro_batch_size:
        raise UsageError("micro_batch_size", "a fused pack runs whole batches")


class StackedStudents:
    """K copies of one student's weights stacked on dim 0, run by one vmapped functional call."""

    def __init__(self, model: torch.nn.Module, k: int, compile_mode: str | None = None):
        self.model, self.k = model, k
        self.names = [name for name, _ in model.named_parameters()]
        self.params = {name: p.detach().unsqueeze(0).repeat(k, *([1] * p.ndim)).requires_grad_()
                       for name, p in model.named_parameters()}
        self.buffers = dict(model.named_buffers())
        self.decays = {name: not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
                       for name, p in model.named_parameters()}  # the BERT recipe, as makd.train.make_optimizer

        def forward(params, buffers, batch):
            return torch.func.functional_call(model, (params, buffers), args=(), kwargs=batch).logits

        self._forward = torch.func.vmap(forward, in_dims=(0, None, None), randomness="same")
        if compile_mode:  # the whole stacked forward: one graph for all K members
            self._forward = compile_function(self._forward, compile_mode)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits [K, batch, labels]: every member on the same batch."""
        return self._forward(self.params, self.buffers, batch)

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """Member's weights as the unfused model's state_dict (same names and order)."""
        return {name: self.params[name][member] if name in self.params else tensor
                for name, tensor in self.model.state_dict().items()}

    def optimizer(self, cfg: TrainConfig) -> torch.optim.Optimizer:
        decay = [self.params[n] for n in self.names if self.decays[n]]
        no_decay = [self.params[n] for n in self.names if not self.decays[n]]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Each member's gradients scaled by its own clip coefficient (`clip_grad_norm_`'s formula); its norms."""
        grads = [self.params[n].grad for n in self.names if self.params[n].grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.k, -1), dim=1) for g in grads], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.view(self.k, *([1] * (g.ndim - 1))))
        return total


def _batch(model: torch.nn.Module, encoded: EncodedDataset, rows, device: torch.device, pad: int | None) -> dict:
    """model_batch with the 4-D attention mask on every device: vmap cannot run the model's own mask building,
    which inspects the mask's values."""
    return expand_attention_mask(model, model_batch(model, encoded, rows, device, pad))


@torch.no_grad()
def _evaluate(students: StackedStudents, task: TaskSpec, eval_sets: Mapping[str, tuple[TextDataset, EncodedDataset]],
              *, batch_size: int, device: torch.device, amp: torch.dtype | None, pad: int | None,
              skip: frozenset[int] = frozenset()) -> list[tuple[dict[str, float], list[np.ndarray]]]:
    """Per member: (metrics, predictions per split), as makd.train.evaluate computes them for one student; the
    members in `skip` (diverged) get none."""
    students.model.eval()
    out: list[tuple[dict[str, float], list[np.ndarray]]] = [({}, []) for _ in range(students.k)]
    for suffix, (ds, encoded) in eval_sets.items():
        batches = sorted_batches(encoded.lengths, batch_size)
        chunks = []
        for idx in batches:
            batch = _batch(students.model, encoded, idx, device, pad)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                chunks.append(students(batch).float())
        logits = np.zeros((students.k, len(ds), task.num_labels), dtype=np.float32)
        if batches:
            logits[:, np.concatenate(batches)] = torch.cat(chunks, dim=1).cpu().numpy()
        for member, (metrics, predictions) in enumerate(out):
            if member in skip:
                continue
            predictions.append(task.predictions(logits[member]))
            metrics.update(compute_metrics(task, predictions[-1], ds.labels, suffix=suffix))
    return out


FusedEpochCallback = Callable[[int, EpochResult], None]  # (member, its epoch result)
FusedErrorCallback = Callable[[int, str], None]  # (member, why it left the pack)


def train_fused(cfgs: list[TrainConfig], train_ds: TextDataset, eval_sets: Mapping[str, TextDataset],
                teacher_logits: np.ndarray | None, *, device: str | torch.device | None = None,
                encoded: tuple[EncodedDataset, Mapping[str, EncodedDataset]] | None = None,
                on_epoch_end: FusedEpochCallback | None = None, on_member_error: FusedErrorCallback | None = None,
                checkpoint_dirs: list[Path] | None = None, state_path: Path | None = None,
                inference_cost: InferenceCost | None = None) -> list[TrainResult]:
    """Train every member at once; returns one TrainResult per member, in order (what makd.train.train returns for
    that member's config alone, up to floating-point summation order in the batched kernels).

    With checkpoint_dirs (one per member), each member's best epoch is written there as makd.train writes it
    (BEST_NAME: what `makd export` ships), and after the last epoch its finished run (CHECKPOINT_NAME without
    optimizer state), which makd.train.train resumes as already done. With state_path, the whole pack is saved
    there after every unfinished epoch and a run that finds it resumes at the next epoch, bit-identical to an
    uninterrupted run; it first hands `on_epoch_end` every member's last epoch again (a stop may have come before
    that report). A member that diverges gets TrainResult.error and `on_member_error`; it is
    neither evaluated nor reported after that (its slice of the stack still computes: no kernel is reshaped).

    A pack that runs out of GPU memory raises makd.gpu.GpuOutOfMemory: one line with its peak, its cap and a pack
    size that fits, from one member's training step measured after the pack's memory was freed."""
    seen: dict = {}  # what the failure message needs: the device and the encoded train split, once prepared
    try:
        return _train_fused(cfgs, train_ds, eval_sets, teacher_logits, device=device, encoded=encoded,
                            on_epoch_end=on_epoch_end, on_member_error=on_member_error,
                            checkpoint_dirs=checkpoint_dirs, state_path=state_path, seen=seen,
                            inference_cost=inference_cost)
    except torch.OutOfMemoryError:
        if "device" not in seen or seen["device"].type != "cuda":
            raise
        peak = gpu.peak_memory_mb(seen["device"]) or 0.0
    # outside the except clause: the failed pack's frames (its stacked weights, moments, activations) are released
    raise _pack_out_of_memory(cfgs[0], len(cfgs), seen["device"], seen["train_enc"], peak) from None


def _pack_out_of_memory(cfg: TrainConfig, members: int, device: torch.device, train_enc: EncodedDataset,
                        peak_mb: float) -> gpu.GpuOutOfMemory:
    """The pack's one-line error, with one member's step peak measured now that the pack's memory is free."""
    import gc

    from makd.step_memory import measure_step_memory

    gc.collect()
    torch.cuda.empty_cache()
    try:
        member_peak = measure_step_memory(cfg, train_enc, device).peak_mb
    except torch.OutOfMemoryError:
        member_peak = None  # not even one member's step fits the cap
    gc.collect()
    torch.cuda.empty_cache()
    return gpu.pack_out_of_memory(device, members, peak_mb, member_peak)


def _train_fused(cfgs: list[TrainConfig], train_ds: TextDataset, eval_sets: Mapping[str, TextDataset],
                 teacher_logits: np.ndarray | None, *, device, encoded, on_epoch_end, on_member_error, checkpoint_dirs,
                 state_path, seen: dict, inference_cost: InferenceCost | None) -> list[TrainResult]:
    from makd.models import count_parameters

    check_fusable(cfgs)
    for cfg in cfgs:
        cfg.validate()
    base, k = cfgs[0], len(cfgs)
    needs_teacher = any(cfg.needs_teacher for cfg in cfgs)
    if needs_teacher and teacher_logits is None:
        raise ValueError("teacher_logits are required for a member's loss")
    run = prepare_run(base, train_ds, eval_sets, teacher_logits if needs_teacher else None, device=device,
                      encoded=encoded, compile_model=False)
    task, dev, amp, pad, model = run.task, run.device, run.amp, run.pad, run.model
    train_enc, eval_enc, selection, targets, teacher = run.train_enc, run.eval_enc, run.selection, run.targets, run.teacher
    seen.update(device=dev, train_enc=train_enc)
    first_dev = next(iter(eval_enc.values()))[1]
    cost = inference_cost if base.inference_batch_size else None  # the driver's, for every trial of this student
    if cost is None and base.inference_batch_size:  # one shape: one cost
        cost = measure_inference(model, first_dev, batch_size=base.inference_batch_size, device=dev, amp=amp,
                                 pad_to_multiple_of=pad)
    students = StackedStudents(model, k, base.compile)
    optimizer = students.optimizer(base)
    total_steps = -(-len(train_ds) // base.batch_size) * base.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(base.warmup_ratio * total_steps), total_steps)
    parameters = count_parameters(model)
    results = [TrainResult(task=task.name, metric=task.metric, student_parameters=parameters) for _ in cfgs]
    start_epoch = 0 if state_path is None else _load_state(state_path, cfgs, students, optimizer, scheduler, results)
    if start_epoch and on_epoch_end is not None:
        for m, result in enumerate(results):  # its report may not have reached the caller before the stop
            if result.error is None and result.history:
                on_epoch_end(m, result.history[-1])
    for epoch in range(start_epoch, base.epochs):
        if all(result.error for result in results):
            break
        model.train()
        batches = epoch_batches(train_enc.lengths, base.batch_size, np.random.default_rng([base.seed, epoch]), run.rows)
        start, seen = time.perf_counter(), 0
        loss_sums = torch.zeros(k, device=dev)
        for idx in batches:
            batch = _batch(model, train_enc, idx, dev, pad)
            for p in students.params.values():
                p.grad = None
            with torch.autocast(dev.type, dtype=amp) if amp else nullcontext():
                logits = students(batch)
            rows_teacher = teacher[idx].to(dev) if teacher is not None else None
            rows_targets = targets[idx].to(dev)
            rows_labeled = run.labeled[idx] if run.labeled is not None else None
            losses = torch.stack([distillation_loss(logits[m], rows_teacher if cfg.needs_teacher else None,
                                                    rows_targets, kind=cfg.loss, lam=cfg.lam, tau=cfg.tau,
                                                    labeled=rows_labeled)
                                  for m, cfg in enumerate(cfgs)])
            losses.sum().backward()  # members share no weights: each gets the gradient of its own loss
            students.clip_(base.max_grad_norm)
            optimizer.step()
            scheduler.step()
            seen += len(idx)
            loss_sums += losses.detach() * len(idx)
        train_losses = (loss_sums / max(seen, 1)).tolist()
        train_seconds = time.perf_counter() - start
        for m, result in enumerate(results):
            if result.error is None and (diverged := divergence(train_losses[m], epoch + 1)) is not None:
                result.error = diverged
                if on_member_error is not None:
                    on_member_error(m, diverged)
        eval_start = time.perf_counter()
        gone = frozenset(m for m, result in enumerate(results) if result.error)
        dev_scores = _evaluate(students, task, eval_enc, batch_size=base.eval_batch_size, device=dev, amp=amp, pad=pad,
                               skip=gone)
        held = (_evaluate(students, task, selection, batch_size=base.eval_batch_size, device=dev, amp=amp, pad=pad,
                          skip=gone) if selection else [({}, [])] * k)
        eval_seconds = time.perf_counter() - eval_start
        finished: list[tuple[int, EpochResult]] = []
        for m, result in enumerate(results):
            if result.error is not None:
                continue
            metrics, predictions = dev_scores[m]
            epoch_result = build_epoch_result(
                epoch=epoch + 1, metric=task.metric, dev=metrics, held=held[m][0], train_loss=train_losses[m],
                examples=seen, train_seconds=train_seconds, eval_seconds=eval_seconds, device=dev,
                student_parameters=parameters, weights=students.state_dict(m), predictions=predictions,
                classes=not task.is_regression, cost=cost)  # no warm-up: a fused pack runs none
            record_epoch(result, epoch_result)
            finished.append((m, epoch_result))
        # Every file of this epoch is written before the first member reports it: a restore from any member's
        # report finds the whole pack at this epoch (a finished pack: every member's finished run).
        last = epoch + 1 == base.epochs
        if checkpoint_dirs is not None:
            for m, _ in finished:
                _save_member(checkpoint_dirs[m], cfgs[m], students.state_dict(m), results[m], last=last)
        if state_path is not None:
            _save_state(state_path, cfgs, students, optimizer, scheduler, results, epoch + 1, last=last)
        if on_epoch_end is not None:
            for m, epoch_result in finished:
                on_epoch_end(m, epoch_result)
    return results


def _save_state(path: Path, cfgs: list[TrainConfig], students: StackedStudents, optimizer: torch.optim.Optimizer,
                scheduler, results: list[TrainResult], epoch: int, *, last: bool) -> None:
    """The pack after `epoch`: what an unfinished fused pack resumes from (the stacked weights, AdamW's moments,
    the schedule, the RNG and every member's history and error). A finished pack needs none: its members'
    finished runs are in their own checkpoints."""
    if last:
        path.unlink(missing_ok=True)
        return
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "configs": [dataclasses.asdict(cfg) for cfg in cfgs],
        "params": {name: p.detach().cpu().clone() for name, p in students.params.items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
        "histories": [[dataclasses.asdict(h) for h in result.history] for result in results],
        "errors": [result.error for result in results]})


def _load_state(path: Path, cfgs: list[TrainConfig], students: StackedStudents, optimizer: torch.optim.Optimizer,
                scheduler, results: list[TrainResult]) -> int:
    """Resume from `_save_state`'s file; returns the epochs already trained (0 without one)."""
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT or state["configs"] != [dataclasses.asdict(cfg) for cfg in cfgs]:
        raise UsageError(str(path), "holds the state of another fused pack (its members' configs differ); delete it")
    with torch.no_grad():
        for name, tensor in state["params"].items():
            students.params[name].copy_(tensor)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    for result, history, error in zip(results, state["histories"], state["errors"], strict=True):
        result.history, result.error = restored_history(history), error
        result.resumed_from_epoch = state["epoch"]
    return state["epoch"]


def _save_member(directory: Path, cfg: TrainConfig, weights: dict[str, torch.Tensor], result: TrainResult, *,
                 last: bool) -> None:
    """A member's files as makd.train.train writes them: its best epoch when this one improved on the earlier
    ones, and its finished run after the last epoch."""
    epoch = result.history[-1]
    config = dataclasses.asdict(cfg)
    model = {name: tensor.detach().clone() for name, tensor in weights.items()}
    if not result.history[:-1] or epoch.score > max(h.score for h in result.history[:-1]):
        save_checkpoint(directory / BEST_NAME, {"format": CHECKPOINT_FORMAT, "epoch": epoch.epoch, "score": epoch.score,
                                                "metrics": epoch.metrics, "config": config, "model": model})
    if last:
        save_checkpoint(directory / CHECKPOINT_NAME, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch.epoch, "config": config, "model": model, "rng": rng_state(),
            "history": [dataclasses.asdict(h) for h in result.history]})
