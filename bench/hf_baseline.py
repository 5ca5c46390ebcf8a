"""The paper's way of distilling, rebuilt from its public notebook (github.com/Sayan21/MAKD, Bert_KD.ipynb):
a transformers `Trainer` subclass whose `compute_loss` runs the frozen teacher forward inside every training step
(no caching) and adds the KL and Taylor terms:

    loss_kd = KL(p_teacher || f) - <y - p_teacher, log f> / batch;   loss = lam * CE + (1 - lam) * loss_kd

(the notebook's alpha is 1 - lam here). Differences from the notebook, all needed to compare like with like:
the teacher (all-mpnet-base-v2) and the student (MiniLM) have different tokenizers, so each example carries the
teacher's own token ids too; models, data subset, batch size, max length, lr, warmup, weight decay and grad clipping
are makd's; `teacher="cache"` reads makd's cached logits instead (for the loop-vs-loop throughput comparison);
`padding="max_length"` is the notebook's tokenisation, `padding="dynamic"` pads each batch to its longest example.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from makd.data import TextDataset


@dataclass
class BaselineRun:
    train_seconds: float  # Trainer's own train_runtime
    examples_per_s: float
    score: float | None  # dev accuracy after the last epoch (None without a dev set)
    wall_seconds: float  # everything: model loading, tokenisation, training, evaluation


class DistillationTrainer(Trainer):
    """compute_loss as in the notebook: student forward, teacher forward (no_grad) or cached logits, KL + Taylor."""

    def __init__(self, *args, teacher_model=None, lam: float = 0.5, kd: str = "taylor", **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher_model
        self.lam = lam
        self.kd = kd

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        teacher_inputs = {k[len("teacher_"):]: inputs.pop(k) for k in list(inputs) if k.startswith("teacher_")}
        cached = teacher_inputs.pop("logits", None)
        outputs = model(**inputs)
        if self.lam < 1.0 and cached is None:
            # The Trainer's bf16 autocast wraps the student only: give the teacher the same precision.
            amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.args.bf16 and torch.cuda.is_available())
            with torch.no_grad(), amp:
                cached = self.teacher(**teacher_inputs).logits
        loss = notebook_loss(outputs.logits, cached, labels, lam=self.lam, kd=self.kd)
        return (loss, outputs) if return_outputs else loss


def notebook_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor, *,
                  lam: float, kd: str = "taylor") -> torch.Tensor:
    """The notebook's loss at tau = 1: lam * CE + (1 - lam) * (KL(p || f) [- <y - p, log f> for taylor])."""
    ce = F.cross_entropy(student_logits, labels)
    if lam >= 1.0:
        return ce
    p = F.softmax(teacher_logits.float(), dim=-1)
    log_f = F.log_softmax(student_logits, dim=-1)
    loss_kd = F.kl_div(log_f, p, reduction="batchmean")
    if kd == "taylor":
        y = F.one_hot(labels, student_logits.shape[-1]).float()
        loss_kd = loss_kd - ((y - p) * log_f).sum() / y.shape[0]
    return lam * ce + (1 - lam) * loss_kd


def _tokenize(tokenizer, ds: TextDataset, max_length: int, padding: str) -> list[dict]:
    args = (ds.text_a,) if ds.text_b is None else (ds.text_a, ds.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length,
                    padding="max_length" if padding == "max_length" else False)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(ds))]


class PairCollator:
    """Pads the student's and the teacher's token ids separately (their tokenizers differ)."""

    def __init__(self, student_tok, teacher_tok):
        self.student_tok, self.teacher_tok = student_tok, teacher_tok

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        student = self.student_tok.pad([r["student"] for r in rows], padding="longest", return_tensors="pt")
        batch = dict(student)
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        if "teacher" in rows[0]:
            teacher = self.teacher_tok.pad([r["teacher"] for r in rows], padding="longest", return_tensors="pt")
            batch.update({f"teacher_{k}": v for k, v in teacher.items()})
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.tensor(np.stack([r["teacher_logits"] for r in rows]))
        return batch


def run_baseline(train: TextDataset, dev: TextDataset | None, *, student: str, teacher: str, teacher_mode: str,
                 lam: float, kd: str = "taylor", epochs: int = 1, batch_size: int = 32, max_length: int = 128,
                 lr: float = 1e-4, seed: int = 0, padding: str = "dynamic",
                 teacher_logits: np.ndarray | None = None, bf16: bool = False,
                 student_tokenizer: str | None = None) -> BaselineRun:
    """One distillation run the notebook's way; teacher_mode "loop" (teacher forward every step) or "cache"."""
    from makd import models
    from makd.tasks import get_task

    start = time.perf_counter()
    task = get_task(train.task)
    if task.is_regression:
        raise ValueError("the notebook baseline covers classification tasks")
    model, student_tok = models.build_student(student, task.num_labels, seed=seed, tokenizer=student_tokenizer)
    teacher_model, teacher_tok = None, None
    uses_teacher = lam < 1.0
    if uses_teacher and teacher_mode == "loop":
        teacher_model, teacher_tok = models.load_teacher(teacher, task.num_labels)
    elif uses_teacher and teacher_logits is None:
        raise ValueError("teacher_mode 'cache' needs teacher_logits")
    rows = [{"student": s, "label": int(y)} for s, y in
            zip(_tokenize(student_tok, train, max_length, padding), train.labels, strict=True)]
    if teacher_model is not None:
        for row, t in zip(rows, _tokenize(teacher_tok, train, max_length, padding), strict=True):
            row["teacher"] = t
    elif uses_teacher:
        for row, logits in zip(rows, teacher_logits, strict=True):
            row["teacher_logits"] = np.asarray(logits, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="makd-hf-") as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, num_train_epochs=epochs,
                                 learning_rate=lr, warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0,
                                 seed=seed, use_cpu=not torch.cuda.is_available(), report_to="none", bf16=bf16,
                                 save_strategy="no", eval_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
        trainer = DistillationTrainer(model=model, args=args, train_dataset=rows,
                                      data_collator=PairCollator(student_tok, teacher_tok),
                                      teacher_model=teacher_model, lam=lam, kd=kd)
        if teacher_model is not None:
            teacher_model.to(trainer.model.device)
        metrics = trainer.train().metrics
        score = None
        if dev is not None:
            score = _accuracy(trainer.model, student_tok, dev, max_length)
    runtime = float(metrics["train_runtime"])
    return BaselineRun(train_seconds=runtime, examples_per_s=len(train) * epochs / runtime, score=score,
                       wall_seconds=time.perf_counter() - start)


@torch.no_grad()
def _accuracy(model, tokenizer, dev: TextDataset, max_length: int) -> float:
    model.eval()
    args = (dev.text_a,) if dev.text_b is None else (dev.text_a, dev.text_b)
    correct = 0
    for i in range(0, len(dev), 64):
        chunk = [a[i:i + 64] for a in args]
        batch = tokenizer(*chunk, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        correct += int((model(**batch).logits.argmax(-1).cpu().numpy() == dev.labels[i:i + 64]).sum())
    return correct / len(dev)
