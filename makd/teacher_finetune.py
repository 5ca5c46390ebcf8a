"""A fine-tuned teacher as a cached step: the pretrained teacher with a seeded head, trained with cross-entropy on
the task's training split (after the selection hold-out is taken out; never on dev), once per (teacher, task,
training data, settings), and stored in the makd cache like the teacher's logits.

The paper distils from a teacher that is not fine-tuned; a user who wants to know what distillation from a good
teacher buys needs this one. The run is makd's own training loop with the teacher as a "pretrained" student
(`makd.train.train`, loss ce), so precision, batching and checkpoints are the students'. The last epoch's weights
are kept (fixed in advance: no epoch is chosen on dev); dev is only scored, for the record.

Atomic and resumable: training checkpoints go to `<digest>.partial/`, the finished model dir is renamed to
`<digest>/` with `finetune.json` in it; a killed run leaves only the partial dir, and the next run resumes there,
from the batch where it stopped (an in-epoch checkpoint every IN_EPOCH_CHECKPOINT_SECONDS: one epoch of a 110M
teacher on a laptop's CPU takes hours, longer than many a session or a preemptible node lives).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from makd.config import option, parse_field
from makd.data import TextDataset, subsample
from makd.files import atomic_write_bytes

FINETUNE_FORMAT = 1
IN_EPOCH_CHECKPOINT_SECONDS = 600.0  # at most 10 minutes of a fine-tune are lost to a kill


@dataclass(frozen=True)
class FinetuneOptions:
    """How the teacher is fine-tuned (a sweep's `teacher_finetune:` block, `makd finetune-teacher`'s flags)."""

    epochs: int = option(3, "epochs of fine-tuning (the last epoch is kept: nothing is chosen on dev)", low=1)
    lr: float = option(2e-5, "AdamW learning rate", low=0.0, low_open=True, high=1.0, high_open=True)
    batch_size: int = option(32, "examples per step", low=1)
    max_train_samples: int | None = option(None, "a deterministic subsample of the (hold-out-free) training split "
                                           "(null: all of it)", low=1)

    def validate(self) -> None:
        """Raise UsageError naming `teacher_finetune.<field>` (types and bounds from the declarations)."""
        for f in fields(self):
            parse_field(FinetuneOptions, f.name, getattr(self, f.name), f"teacher_finetune.{f.name}")


@dataclass(frozen=True)
class FinetunedTeacher:
    path: str  # the model dir: AutoModelForSequenceClassification with its trained head (fine_tuned=True)
    record: dict  # finetune.json: settings, examples, seconds, parameters, per-epoch train loss and dev score
    trained: bool  # False: found in the cache


def cache_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "finetuned-teachers"


def finetune_digest(teacher: str, task: str, train_ds: TextDataset, options: FinetuneOptions, *, head_seed: int,
                    max_length: int, data_seed: int) -> str:
    """Everything that determines the fine-tuned weights (the teacher's own weights by their digest)."""
    from makd.models import model_digest

    blob = json.dumps({"format": FINETUNE_FORMAT, "teacher": model_digest(teacher), "task": task,
                       "data": train_ds.digest(), "options": asdict(options), "head_seed": head_seed,
                       "max_length": max_length, "data_seed": data_seed}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def cached_teacher(cache_dir: str | Path, digest: str) -> FinetunedTeacher | None:
    """The finished model dir for `digest`, or None (a partial run does not count)."""
    path = cache_root(cache_dir) / digest
    record = path / "finetune.json"
    if not record.is_file():
        return None
    return FinetunedTeacher(str(path), json.loads(record.read_text()), trained=False)


def finetune_teacher(teacher: str, task: str, train_ds: TextDataset, eval_sets: dict[str, TextDataset],
                     options: FinetuneOptions, *, cache_dir: str | Path, head_seed: int = 0, max_length: int = 128,
                     data_seed: int = 0, device=None, progress: bool = True) -> FinetunedTeacher:
    """The fine-tuned teacher from the cache, trained (or resumed) and stored on a miss."""
    import torch

    from makd.checkpoints import CHECKPOINT_NAME
    from makd.config import TrainConfig
    from makd.models import quiet_transformers, save_student
    from makd.train import train

    options.validate()
    digest = finetune_digest(teacher, task, train_ds, options, head_seed=head_seed, max_length=max_length,
                             data_seed=data_seed)
    found = cached_teacher(cache_dir, digest)
    if found is not None:
        return found
    data = subsample(train_ds, options.max_train_samples, data_seed)
    cfg = TrainConfig(task=task, student=teacher, loss="ce", lam=1.0, seed=head_seed, epochs=options.epochs,
                      lr=options.lr, batch_size=options.batch_size, max_length=max_length, holdout_fraction=0.0,
                      data_seed=data_seed)
    partial = cache_root(cache_dir) / f"{digest}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = train(cfg, data, eval_sets, None, checkpoint_dir=partial, device=device, progress=progress,
                   in_epoch_checkpoint_seconds=IN_EPOCH_CHECKPOINT_SECONDS)
    seconds = time.perf_counter() - start
    staged = partial / "model"
    with quiet_transformers():  # the last epoch: fixed in advance, never chosen on dev
        save_student(cfg, partial / CHECKPOINT_NAME, staged)
    state = torch.load(partial / CHECKPOINT_NAME, map_location="cpu", weights_only=False)["model"]
    parameters = sum(t.numel() for t in state.values())
    record = {"teacher": teacher, "task": task, "digest": digest, "options": asdict(options),
              "head_seed": head_seed, "max_length": max_length, "train_examples": len(data),
              "seconds": round(seconds, 2), "resumed_from_epoch": result.resumed_from_epoch,
              "parameters_m": round(parameters / 1e6, 2),
              "epochs": [{"epoch": h.epoch, "train_loss": round(h.train_loss, 6), "dev_score": h.dev_score
                          if h.dev_score is not None else h.score} for h in result.history],
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_bytes(staged / "finetune.json", json.dumps(record, indent=1).encode())
    target = cache_root(cache_dir) / digest
    try:
        os.replace(staged, target)  # the commit: a finished dir appears whole, or not at all
    except OSError:
        if cached_teacher(cache_dir, digest) is None:  # not another process that finished first
            raise
    shutil.rmtree(partial, ignore_errors=True)
    return FinetunedTeacher(str(target), record, trained=True)
