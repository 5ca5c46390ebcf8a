"""One distillation run end to end: load data, fetch cached teacher logits, train, summarise.

`makd distill` calls `run`; the Ray Tune driver calls the same pieces separately (teacher logits once in the
driver, `train` inside each trial).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from makd.cache import CacheReport, teacher_logits
from makd.config import TrainOptions
from makd.data import TextDataset, holdout_positions, load_split
from makd.epoch import HOLDOUT, TrainResult
from makd.files import atomic_write_bytes
from makd.references import majority_reference, reported_splits, teacher_reference
from makd.runtime import pick_device
from makd.tasks import get_task
from makd.teacher_finetune import FinetuneOptions
from makd.teacher_spec import TeacherSpec
from makd.train import TrainConfig, train

GLUE_DIR_ENV = "MAKD_GLUE_DIR"
DEV = "dev"  # teacher_splits' name of the reported dev split ("dev_m", "dev_mm" for MNLI)


@dataclass(frozen=True)
class DataSource:
    """Where task data comes from: generic files > a local GLUE folder > the HF hub (nyu-mll/glue)."""

    glue_dir: str | None = None
    train_file: str | None = None
    eval_file: str | None = None
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None

    @classmethod
    def from_env(cls, glue_dir: str | None = None, **kwargs) -> DataSource:
        """`--glue-dir` wins, then $MAKD_GLUE_DIR; with neither (and no files) data comes from the hub."""
        return cls(glue_dir=glue_dir or os.environ.get(GLUE_DIR_ENV) or None, **kwargs)

    def describe(self) -> str:
        if self.train_file:
            return f"files {self.train_file}, {self.eval_file}"
        return f"glue dir {self.glue_dir}" if self.glue_dir else "hub nyu-mll/glue"


def load_datasets(task_name: str, source: DataSource,
                  options: TrainOptions) -> tuple[TextDataset, dict[str, TextDataset]]:
    """The (subsampled) train split and every dev split of the task, keyed by metric suffix."""
    task, cfg = get_task(task_name), options
    common = dict(glue_dir=source.glue_dir, text_columns=source.text_columns, label_column=source.label_column,
                  seed=cfg.data_seed)
    train_ds = load_split(task, "train", data_file=source.train_file, max_samples=cfg.max_train_samples, **common)
    eval_sets = {}
    if cfg.transfer_labeled is not None:  # the hold-out comes out of the labeled rows (makd/transfer.py)
        from makd.transfer import split_labeled

        train_ds, holdout = split_labeled(train_ds, cfg.transfer_labeled, cfg.holdout_fraction, cfg.data_seed)
        if holdout is not None:
            eval_sets[HOLDOUT] = holdout
    elif cfg.holdout_fraction > 0:  # selection data: out of the training set (and out of the teacher's cache entry)
        train_ds, eval_sets[HOLDOUT] = split_holdout(train_ds, cfg.holdout_fraction, cfg.data_seed)
    if cfg.transfer_file is not None:
        from makd.transfer import with_transfer_file

        train_ds = with_transfer_file(task, train_ds, cfg.transfer_file, tuple(source.text_columns or task.text_fields))
    for i, (split, suffix) in enumerate(task.eval_splits):
        data_file = source.eval_file if (source.eval_file and i == 0) else None
        if source.train_file and data_file is None:
            continue  # generic files give one dev set (the first dev split of the task)
        eval_sets[suffix] = load_split(task, split, data_file=data_file, max_samples=cfg.max_eval_samples, **common)
    return train_ds, eval_sets


def split_holdout(train_ds: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    """(the rest, the hold-out): a fixed, seeded `fraction` of the training examples (at least one), each part in
    the original order. The same seed and data give the same split in every trial and on every node."""
    n = len(train_ds)
    held = holdout_positions(n, fraction, seed)
    return train_ds.select(np.setdiff1d(np.arange(n), held)), train_ds.select(held)


def fetch_teacher_logits(spec: TeacherSpec | None, train_ds: TextDataset, cache_dir: str | Path, *,
                         progress: bool = True, device=None, compute: bool = True) -> tuple[np.ndarray | None, CacheReport]:
    """The teacher's train-split logits from the cache (computed and stored on a miss); None when no teacher is
    needed (spec None), or on a miss with compute=False."""
    logits, cache_report = fetch_teacher_outputs(spec, {"train": train_ds}, cache_dir, progress=progress, device=device,
                                           compute=compute)
    return (logits or {}).get("train"), cache_report


def fetch_teacher_outputs(spec: TeacherSpec | None, datasets: dict[str, TextDataset], cache_dir: str | Path, *,
                          progress: bool = True, device=None,
                          compute: bool = True) -> tuple[dict[str, np.ndarray] | None, CacheReport]:
    """The teacher's logits on each named split (the train split to distil from, dev splits to score the teacher
    itself), from the cache, computed and stored on a miss with the teacher loaded at most once; None when no
    teacher is needed (spec None), or when any split misses with compute=False."""
    if spec is None:
        return None, CacheReport()
    logits, cache_report = teacher_logits(datasets, spec, cache_dir=cache_dir, device=pick_device(device),
                                    progress=progress, compute=compute)
    return (logits if len(logits) == len(datasets) else None), cache_report


def task_teacher_outputs(spec: TeacherSpec | None, finetune: FinetuneOptions | None, train_ds: TextDataset,
                         eval_sets: dict[str, TextDataset], cache_dir: str | Path, *, data_seed: int = 0,
                         progress: bool = True, device=None,
                         compute: bool = True) -> tuple[dict[str, np.ndarray] | None, CacheReport, dict | None]:
    """The teacher's logits on train and dev (`teacher_splits`) and, with `finetune`, the fine-tuned teacher they
    come from (its finetune.json record; trained on train_ds first on a cache miss). One process does both, so a
    GPU node that fine-tunes also runs the logit pass. compute=False only looks: (None, cache_report, None) on a miss."""
    record = None
    if spec is not None and finetune is not None:
        from makd.teacher_finetune import cached_teacher, finetune_digest, finetune_teacher
        from makd.transfer import gold_rows

        gold = gold_rows(get_task(spec.task), train_ds)  # not the rows of a transfer file: they have no label
        found = cached_teacher(cache_dir, finetune_digest(spec.teacher, spec.task, gold, finetune,
                                                          head_seed=spec.head_seed, max_length=spec.max_length,
                                                          data_seed=data_seed))
        if found is None and not compute:
            return None, CacheReport(misses=1), None
        found = found or finetune_teacher(spec.teacher, spec.task, gold, reported_splits(eval_sets), finetune,
                                          cache_dir=cache_dir, head_seed=spec.head_seed, max_length=spec.max_length,
                                          data_seed=data_seed, device=pick_device(device), progress=progress)
        record = {**found.record, "path": found.path, "trained_now": found.trained}
        spec = replace(spec, teacher=found.path, fine_tuned=True)
    outputs, cache_report = fetch_teacher_outputs(spec, teacher_splits(train_ds, eval_sets), cache_dir, progress=progress,
                                            device=device, compute=compute)
    return outputs, cache_report, record


def task_references(task_name: str, train_ds: TextDataset, eval_sets: dict[str, TextDataset],
                    teacher_outputs: dict[str, np.ndarray] | None) -> dict:
    """majority_score and majority_prediction, and teacher_score when the teacher ran (makd/references.py); with
    transfer data (makd/transfer.py) also its counts, and the teacher's score on the transfer examples that have a
    gold label: how good the soft labels a student learns from there are."""
    task = get_task(task_name)
    references = majority_reference(task, train_ds, eval_sets)
    if teacher_outputs is not None:
        references.update(teacher_reference(task, eval_sets, dev_outputs(teacher_outputs)))
    if train_ds.labeled is not None:
        from makd.transfer import transfer_references

        references.update(transfer_references(task, train_ds, (teacher_outputs or {}).get("train")))
    return references


def teacher_splits(train_ds: TextDataset, eval_sets: dict[str, TextDataset]) -> dict[str, TextDataset]:
    """What the teacher runs on: the train split (distillation) and the reported dev splits (its own score)."""
    return {"train": train_ds, **{DEV + (f"_{suffix}" if suffix else ""): ds
                                  for suffix, ds in reported_splits(eval_sets).items()}}


def dev_outputs(outputs: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """teacher_splits' dev logits keyed by metric suffix again (what teacher_reference takes)."""
    if outputs is None:
        return None
    return {name[len(DEV):].lstrip("_"): logits for name, logits in outputs.items() if name.startswith(DEV)}


def _dev(epoch) -> float:
    return epoch.score if epoch.dev_score is None else epoch.dev_score


def summarise(cfg: TrainConfig, result: TrainResult, cache_report: CacheReport, wall_seconds: float,
              train_examples: int) -> dict:
    """The one-line JSON summary `makd distill` prints (and writes to OUTPUT_DIR/result.json). `score` and
    `metrics`: the last epoch on dev (metrics also hold the hold-out's, `holdout_*`); `best_epoch` is chosen on the
    `selection` split, where it scored `best_score`; `dev_score` is dev at that epoch: the number to report, and
    `best_metrics` every metric at that epoch (dev's and the hold-out's, as a sweep's best_glue_* columns)."""
    last, best = result.last, result.best
    train_seconds = sum(h.train_seconds for h in result.history[result.resumed_from_epoch:])
    trained = train_examples * (len(result.history) - result.resumed_from_epoch)
    return {
        "task": result.task, "metric": result.metric, "score": _dev(last), "metrics": last.metrics,
        "selection": "train_holdout" if cfg.holdout_fraction > 0 else "dev",
        "best_score": best.score, "best_epoch": best.epoch, "dev_score": _dev(best), "best_metrics": best.metrics,
        "epochs": len(result.history), "resumed_from_epoch": result.resumed_from_epoch,
        "wall_seconds": round(wall_seconds, 3),
        "train_examples_per_s": round(trained / train_seconds, 2) if train_seconds > 0 else None,
        "train_examples": train_examples,
        "warmup_seconds": round(sum(h.warmup_seconds for h in result.history), 3),
        "peak_gpu_mb": max((h.peak_gpu_mb for h in result.history if h.peak_gpu_mb is not None), default=None),
        "student": cfg.student, "student_parameters": result.student_parameters,
        # makd.inference_cost, measured on this run's device (None: --inference-batch-size 0, or nothing trained)
        "latency_ms": last.latency_ms, "inference_examples_per_s": last.inference_examples_per_s,
        "inference_batch_size": cfg.inference_batch_size or None,
        "teacher": cfg.teacher if cfg.needs_teacher else None,
        "loss": cfg.loss, "lam": cfg.lam, "tau": cfg.tau, "seed": cfg.seed, "lr": cfg.lr,
        "teacher_cache": cache_report.status if cfg.needs_teacher else "not needed",
        "teacher_loaded": cache_report.teacher_loaded,
        "history": [{"epoch": h.epoch, "score": h.score, "train_loss": round(h.train_loss, 6)} for h in result.history],
    }


def run(cfg: TrainConfig, source: DataSource, *, cache_dir: str | Path, output_dir: str | Path | None = None,
        save_model: bool = False, progress: bool = True, device=None) -> dict:
    """Validate, load data, fetch teacher logits, train; every input error surfaces before anything is written."""
    cfg.validate()
    from makd.models import describe_student
    from makd.tasks import classifier_task

    classifier_task(cfg.task, "makd distill")

    describe_student(cfg.student)  # a student spec that does not parse fails before any work
    start = time.perf_counter()
    train_ds, eval_sets = load_datasets(cfg.task, source, cfg)
    outputs, cache_report = fetch_teacher_outputs(cfg.teacher_spec, teacher_splits(train_ds, eval_sets), cache_dir,
                                            progress=progress, device=device)
    out = Path(output_dir) if output_dir else None
    result = train(cfg, train_ds, eval_sets, outputs["train"] if outputs else None, checkpoint_dir=out,
                   progress=progress, device=device)
    summary = summarise(cfg, result, cache_report, time.perf_counter() - start, len(train_ds))
    summary.update(task_references(cfg.task, train_ds, eval_sets, outputs))
    if out is not None:
        atomic_write_bytes(out / "result.json", json.dumps(summary, indent=1).encode())
        if save_model:
            from makd.checkpoints import CHECKPOINT_NAME
            from makd.models import save_student

            save_student(cfg, out / CHECKPOINT_NAME, out / "model")
    return summary
