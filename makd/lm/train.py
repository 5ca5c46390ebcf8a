"""The training loop of a causal-LM student (issue 27): the per-token losses of makd/lm/token_losses.py on the response
tokens, the teacher's top-k signal from the cache (makd/lm/pipeline.py), evaluation every epoch.

It returns makd.train's `TrainResult` and checkpoints as makd.train does (`restore_run`, `save_epoch`), so a sweep
trial reports, resumes and exports an LM student as it does an encoder classifier. The loss names are the sweep's:
`ce`, `vanilla` (forward KL per token, from the top-k cache), `reverse_kl` and `jsd` (from the teacher's full logits
at the response tokens: a top-k cache misleads them, results/bench-lm), `taylor` (eq. 8 per token; at τ = 1 it
trains exactly like `ce`).
The output layer runs only at response positions: a 49k-token vocabulary at every prompt position would be most of
the step's work for nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from makd.batching import length_grouped_batches, sorted_batches
from makd.checkpoints import CHECKPOINT_NAME, restore_run
from makd.config import TrainConfig
from makd.epoch import HOLDOUT, EpochCallback, TrainResult, build_epoch_result, divergence
from makd.errors import UsageError
from makd.lm.data import LmSplit, response_positions
from makd.lm.pipeline import LmTaskData
from makd.lm.sparse_teacher import SparseTeacher
from makd.lm.token_losses import token_distillation_loss
from makd.runtime import pick_device, seed_everything
from makd.tasks import get_task
from makd.train import TrainingDiverged, finish_epoch, make_optimizer

# sweep loss name -> makd.lm.token_losses kind
TOKEN_LOSS = {"ce": "ce", "vanilla": "forward_kl", "reverse_kl": "reverse_kl", "jsd": "jsd", "taylor": "taylor"}
FULL_TEACHER_LOSSES = frozenset({"reverse_kl", "jsd"})  # trained from full logits, not the top-k cache


def check_lm_loss(loss: str) -> None:
    """The losses a causal-LM trial trains (makd/lm/token_losses.py); mse and ortho compare logits class by class."""
    if loss not in TOKEN_LOSS:
        raise UsageError("losses", f"a causal-LM task trains {', '.join(TOKEN_LOSS)} (got {loss!r})")


def check_lm_tau(tau: float) -> None:
    """The top-k cache that vanilla and the references read holds p̂ at τ = 1 only."""
    if tau != 1.0:
        raise UsageError("taus", f"a causal-LM task reads the teacher's top-k cache, which holds p̂ at τ = 1 only "
                                 f"(got τ = {tau:g}): use taus [1.0]")


def batch_inputs(split: LmSplit, rows: np.ndarray, device: torch.device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(model inputs [B, T] right-padded, the (row, position) index of every response position in order, the
    next-token labels there)."""
    lengths = split.lengths[rows]
    width = int(lengths.max())
    ids = np.zeros((len(rows), width), dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    where_b, where_t, labels = [], [], []
    for b, row in enumerate(rows):
        sequence = split.sequences[row]
        ids[b, :len(sequence)] = sequence
        attention[b, :len(sequence)] = 1
        positions = np.arange(len(sequence))[response_positions(int(split.prompt_lengths[row]), len(sequence))]
        where_b.append(np.full(len(positions), b))
        where_t.append(positions)
        labels.append(sequence[positions + 1])
    inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(attention).to(device)}
    where = torch.from_numpy(np.stack([np.concatenate(where_b), np.concatenate(where_t)]))
    return inputs, where, torch.from_numpy(np.concatenate(labels)).to(device)


def response_logits(model: torch.nn.Module, inputs: dict, where: torch.Tensor) -> torch.Tensor:
    """The student's logits at the response positions only [N, V]: the decoder over every token, the output layer
    at the N positions that are scored."""
    hidden = model.get_decoder()(**inputs).last_hidden_state
    return model.get_output_embeddings()(hidden[where[0], where[1]])


def batch_teacher(signal: list[SparseTeacher], rows: np.ndarray, device: torch.device) -> SparseTeacher:
    """The rows' signals concatenated in the order `batch_inputs` lists their response positions."""
    parts = [signal[row] for row in rows]
    return SparseTeacher(*(torch.cat([getattr(p, name) for p in parts]).to(device)
                           for name in ("indices", "logprobs", "tail_logprob", "entropy")))


def batch_signal(data: LmTaskData, cfg: TrainConfig, rows: np.ndarray,
                 device: torch.device) -> torch.Tensor | SparseTeacher | None:
    """What the loss reads of the teacher for these rows: nothing (ce, or λ = 1), its full logits (reverse KL, JSD),
    or its top-k signal."""
    if cfg.loss == "ce" or cfg.lam == 1.0:
        return None
    if cfg.loss in FULL_TEACHER_LOSSES:
        return data.train_full.rows(rows).to(device, torch.float32)
    return batch_teacher(data.train_signal, rows, device)


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, split: LmSplit, teacher_top1: list[np.ndarray], *, batch_size: int,
                device: torch.device) -> tuple[dict[str, float], np.ndarray]:
    """Agreement with the teacher's top-1 token and the perplexity of the responses, over every response token of
    the split; and the student's top-1 tokens in split order (what the predictions fingerprint hashes)."""
    model.eval()
    agree, nll, count = 0.0, 0.0, 0
    predicted: dict[int, np.ndarray] = {}
    for rows in sorted_batches(split.lengths, batch_size):
        inputs, where, labels = batch_inputs(split, rows, device)
        logits = response_logits(model, inputs, where).float()
        top = logits.argmax(-1).cpu().numpy()
        logp = torch.log_softmax(logits, dim=-1)
        nll += float(-logp.gather(-1, labels.unsqueeze(-1)).sum())
        teacher = np.concatenate([teacher_top1[row] for row in rows])
        agree += float((top == teacher).sum())
        count += len(top)
        offsets = np.cumsum([0] + [len(teacher_top1[row]) for row in rows])
        for i, row in enumerate(rows):
            predicted[int(row)] = top[offsets[i]:offsets[i + 1]]
    if count == 0:
        raise UsageError("max_length", "no response token to score: raise max_length")
    predictions = np.concatenate([predicted[i] for i in range(len(split))]).astype(np.int64)
    return {"agreement": agree / count, "perplexity": float(np.exp(nll / count))}, predictions


def train_lm(cfg: TrainConfig, data: LmTaskData, *, checkpoint_dir: str | Path | None = None,
             on_epoch_end: EpochCallback | None = None, device: str | torch.device | None = None,
             probe: bool = True) -> TrainResult:
    """Train one causal-LM student on the task's response tokens; returns the per-epoch history. The selection
    score is the agreement on the hold-out when there is one, else on dev; `probe`: the zero-shot sentiment probe on
    dev's texts every epoch (makd/lm/metrics.py), for a task whose texts have sentiment labels (sst2lm)."""
    from makd.lm.causal_lm import build_lm_student
    from makd.lm.metrics import zero_shot_sentiment
    from makd.models import count_parameters

    cfg.validate()
    check_lm_loss(cfg.loss)
    check_lm_tau(cfg.tau)
    if cfg.loss in FULL_TEACHER_LOSSES and cfg.lam < 1.0 and data.train_full is None:
        raise ValueError(f"{cfg.loss} trains from the teacher's full logits: prepare_lm_task(..., full_teacher=True)")
    dev = pick_device(device)
    seed_everything(cfg.seed)
    model, tokenizer = build_lm_student(cfg.student, seed=cfg.seed, family=cfg.teacher)
    model.to(dev)
    reported = {s: split for s, split in data.eval_sets.items() if s != HOLDOUT}
    steps = -(-len(data.train) // cfg.batch_size) * cfg.epochs
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    result = TrainResult(task=cfg.task, metric="agreement", student_parameters=count_parameters(model))
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    start_epoch = restore_run(ckpt_path, cfg, model, optimizer, scheduler, scaler, result)
    kind = TOKEN_LOSS[cfg.loss]
    has_probe = get_task(cfg.task).labels is not None  # sst2lm's sentiment labels; a user's prompt files have none
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        batches = length_grouped_batches(data.train.lengths, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
        start, seen, loss_sum = time.perf_counter(), 0, 0.0
        for rows in batches:
            inputs, where, labels = batch_inputs(data.train, rows, dev)
            teacher = batch_signal(data, cfg, rows, dev)
            optimizer.zero_grad(set_to_none=True)
            loss = token_distillation_loss(response_logits(model, inputs, where), teacher, labels,
                                           torch.ones_like(labels, dtype=torch.bool), kind=kind, lam=cfg.lam,
                                           tau=cfg.tau)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            seen += len(rows)
            loss_sum += float(loss.detach()) * len(rows)
        train_loss = loss_sum / max(seen, 1)
        if (diverged := divergence(train_loss, epoch + 1)) is not None:
            raise TrainingDiverged(diverged)
        train_seconds = time.perf_counter() - start
        eval_start = time.perf_counter()
        metrics, predictions = {}, []
        for suffix, split in reported.items():
            scores, predicted = evaluate_lm(model, split, data.teacher_top1[suffix], batch_size=cfg.eval_batch_size,
                                            device=dev)
            metrics.update({f"{name}{'_' + suffix if suffix else ''}": value for name, value in scores.items()})
            predictions.append(predicted)
            if probe and suffix == "" and has_probe:
                metrics["probe_accuracy"] = zero_shot_sentiment(model, tokenizer, split.texts, split.labels)
        held = {}
        if HOLDOUT in data.eval_sets:
            held = evaluate_lm(model, data.eval_sets[HOLDOUT], data.teacher_top1[HOLDOUT],
                               batch_size=cfg.eval_batch_size, device=dev)[0]
        epoch_result = build_epoch_result(
            epoch=epoch + 1, metric="agreement", dev=metrics, held=held, train_loss=train_loss, examples=seen,
            train_seconds=train_seconds, eval_seconds=time.perf_counter() - eval_start, device=dev,
            student_parameters=result.student_parameters, weights=model.state_dict(), predictions=predictions,
            classes=False, cost=None)  # a token is no class; an LM's inference cost is generation's, not measured
        finish_epoch(epoch_result, result, ckpt_path, cfg, model, optimizer, scheduler, scaler, on_epoch_end)
    return result

