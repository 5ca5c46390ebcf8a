"""What every trial of a task shares, built once by the driver before any Tuner starts: the task's datasets (a
user's files checked first), token ids once per student tokenizer, the teacher's signal from the cache (computed
on a miss, on a GPU node when trials use GPUs) and the references; a TaskData that reaches every trial through the
Ray object store, so trials never load the teacher."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from makd.cache import CacheReport
from makd.epoch import HOLDOUT
from makd.errors import UsageError
from makd.inference_cost import InferenceCost
from makd.pipeline import DataSource, load_datasets, task_references, task_teacher_outputs
from makd.tasks import get_task
from makd.train import TrainConfig
from makd_sweep.search import teacher_spec, uses_teacher
from makd_sweep.sweep_config import SweepConfig
from makd_sweep.trial import TaskData


def representative_trial(cfg: SweepConfig, task: str, student: str) -> TrainConfig:
    """A trial of this sweep that reads the teacher's logits when any trial does: what `gpu: auto` measures."""
    from makd.losses import LOSSES

    loss = next((name for name in cfg.losses if LOSSES[name].needs_teacher_logits), "ce") if uses_teacher(cfg) else "ce"
    return TrainConfig(task=task, student=student, loss=loss, lam=0.0 if loss != "ce" else 1.0,
                       **dataclasses.asdict(cfg.train))


def prepare_task(cfg: SweepConfig, task_name: str, cache_dir: str, *, progress: bool,
                 teacher_on_gpu: bool = False, teacher_device: str = "cpu") -> tuple[TaskData, CacheReport]:
    """Load the task's data, tokenise it once per student tokenizer, fetch its teacher logits on train and dev (from
    the makd cache, keyed by the task's TeacherSpec; with `teacher_finetune`, from the cached fine-tuned teacher,
    trained first on a miss; the teacher runs only on a miss: as a Ray task on a GPU node when teacher_on_gpu, else
    here on teacher_device), and score the references every trial reports beside its own score."""
    train_ds, eval_sets = load_datasets(task_name, data_source(cfg, task_name), cfg.train)
    if get_task(task_name).is_causal_lm:
        return prepare_lm(cfg, task_name, train_ds, eval_sets, cache_dir, teacher_on_gpu=teacher_on_gpu,
                          teacher_device=teacher_device, progress=progress)
    spec = teacher_spec(cfg, task_name)
    args = (spec, cfg.teacher_finetune, train_ds, eval_sets, cache_dir)
    kwargs = {"data_seed": cfg.train.data_seed, "progress": progress}
    outputs, cache_report, record = task_teacher_outputs(*args, **kwargs, compute=False)
    if outputs is None and spec is not None and teacher_on_gpu:
        import ray

        # Trials use GPUs: fine-tune and run the teacher as a Ray task on a GPU node (the driver's may have none).
        fill = ray.remote(num_gpus=1, num_cpus=1)(task_teacher_outputs)
        outputs, cache_report, record = ray.get(fill.remote(*args, **kwargs))
    elif outputs is None and spec is not None:
        outputs, cache_report, record = task_teacher_outputs(*args, **kwargs, device=teacher_device)
    references = task_references(task_name, train_ds, eval_sets, outputs)
    own = cfg.file_task(task_name)
    return TaskData(task_name, train_ds, eval_sets, outputs["train"] if outputs else None,
                    dataclasses.asdict(cfg.train), encode_for_students(cfg, train_ds, eval_sets),
                    references, get_task(task_name) if own else None, record), cache_report


def prepare_lm(cfg: SweepConfig, task_name: str, train_ds, eval_sets, cache_dir: str, *,
               teacher_on_gpu: bool, teacher_device: str, progress: bool) -> tuple[TaskData, CacheReport]:
    """A causal-LM task (makd/lm/pipeline.py): every student's vocabulary checked against the teacher's, then the
    teacher's responses and top-k signal (and its full logits at train's response tokens when a loss is reverse_kl or
    jsd) from the cache, computed on a miss (as a Ray task on a GPU node when trials use GPUs), and the references."""
    from makd.lm.causal_lm import check_same_vocabulary, lm_student_tokenizer
    from makd.lm.pipeline import lm_references, prepare_lm_task
    from makd.lm.train import FULL_TEACHER_LOSSES
    from makd.models import load_tokenizer

    teacher = cfg.train.teacher
    tokenizer = load_tokenizer(teacher, "teacher")
    for student in cfg.students:
        check_same_vocabulary(tokenizer, lm_student_tokenizer(student, teacher), teacher, student)
    args = (teacher, get_task(task_name), train_ds, eval_sets, cfg.train, cache_dir)
    kwargs = {"progress": progress, "tokenizer": tokenizer,
              "full_teacher": any(loss in FULL_TEACHER_LOSSES for loss in cfg.losses)}
    if teacher_on_gpu:
        import ray

        lm = ray.get(ray.remote(num_gpus=1, num_cpus=1)(prepare_lm_task).remote(*args, device="cuda", **kwargs))
    else:
        lm = prepare_lm_task(*args, device=teacher_device, **kwargs)
    statuses = [status for split in lm.cache["splits"].values()
                for status in (split["responses"], split["signal"], split.get("full_logits")) if status]
    report = CacheReport(hits=statuses.count("hit"), misses=statuses.count("miss"),
                         teacher_loaded=lm.cache["teacher_loaded"],
                         teacher_seconds=lm.cache["teacher_seconds"])
    return TaskData(task_name, train_ds, eval_sets, None, dataclasses.asdict(cfg.train), {},
                    lm_references(lm, tokenizer), get_task(task_name) if cfg.file_task(task_name) else None, None,
                    lm=lm), report


def data_source(cfg: SweepConfig, task: str) -> DataSource:
    """A task's data: the user's files for a task they defined, else the GLUE dir / $MAKD_GLUE_DIR / the hub."""
    own = cfg.file_task(task)
    if own is None:
        return DataSource.from_env(cfg.glue_dir)
    return DataSource(train_file=own.train_file, eval_file=own.eval_file, text_columns=own.text_columns,
                      label_column=own.label_column)


def check_file_tasks(cfg: SweepConfig) -> SweepConfig:
    """The user's tasks with absolute file paths (a Ray Job changes the working dir), each registered and both its
    files read once: a missing file, a wrong column or a label that does not fit the task's type is refused in one
    line before Ray starts."""
    resolved = tuple(dataclasses.replace(t, train_file=str(Path(t.train_file).expanduser().resolve()),
                                         eval_file=str(Path(t.eval_file).expanduser().resolve()))
                     for t in cfg.file_tasks)
    resolved = tuple(dataclasses.replace(task, spec=task.register()) for task in resolved)
    for task in resolved:
        task.load()
    return dataclasses.replace(cfg, file_tasks=resolved)


def check_transfer_data(cfg: SweepConfig) -> None:
    """With `transfer:`, each task's training split is split (and the transfer file read) once before Ray starts: a
    `labeled` count the split cannot hold or a file without the task's text columns is refused in one line."""
    if cfg.train.transfer_labeled is None and cfg.train.transfer_file is None:
        return
    for task in cfg.tasks:
        try:
            load_datasets(task, data_source(cfg, task), cfg.train)
        except UsageError as err:  # the sweep's spelling of the training options (makd_sweep/config.py: Transfer)
            spelled = {"transfer_labeled": "transfer.labeled", "transfer_file": "transfer.file"}
            raise UsageError(spelled.get(err.field, err.field), f"{task}: {err.problem}") from None


def encode_for_students(cfg: SweepConfig, train_ds, eval_sets) -> dict:
    """Token ids of every split, once per distinct student tokenizer: trials then skip tokenisation."""
    from makd.models import load_tokenizer, student_tokenizer_id
    from makd.train import encode_splits

    tokenizer_ids = dict.fromkeys(student_tokenizer_id(s, cfg.train.student_tokenizer) for s in cfg.students)
    return {tokenizer_id: encode_splits(load_tokenizer(tokenizer_id, "student_tokenizer"), cfg.train, train_ds, eval_sets)
            for tokenizer_id in tokenizer_ids}


def gpu_probes(cfg: SweepConfig, prepared: dict[str, TaskData]) -> list:
    """(TrainConfig, encoded train split) for every task x student: what `gpu: auto` measures."""
    from makd.models import student_tokenizer_id

    probes = []
    for task, data in prepared.items():
        for student in cfg.students:
            train_enc, _ = data.encoded[student_tokenizer_id(student, cfg.train.student_tokenizer)]
            probes.append((representative_trial(cfg, task, student), train_enc))
    return probes


def measure_students(cfg: SweepConfig, task_name: str, encoded: dict, cache_dir: str,
                     device: str | None = None) -> dict[str, InferenceCost]:
    """Each student's inference cost on the task's dev split (makd.inference_cost: its fixed protocol, at the
    trials' precision and padding), from the cache or measured now, one student after another before any trial runs:
    every trial of a student then reports the same number. Run where the trials run (a GPU node's GPU, or here);
    device None: the GPU when torch sees one, else the CPU (a Ray task given a GPU that torch cannot see, as in tests
    that fake GPU resources, measures on the CPU, as the teacher does)."""
    from makd.inference_cost import cached_inference_cost
    from makd.models import build_student, student_tokenizer_id
    from makd.runtime import autocast_dtype, pick_device
    from makd.train import pad_multiple

    dev = pick_device(device)
    costs = {}
    for student in cfg.students:
        trial = representative_trial(cfg, task_name, student)
        _, eval_encs = encoded[student_tokenizer_id(student, cfg.train.student_tokenizer)]
        dev_enc = next(enc for suffix, enc in eval_encs.items() if suffix != HOLDOUT)
        model, _ = build_student(student, get_task(task_name).num_labels, tokenizer=cfg.train.student_tokenizer)
        costs[student], _ = cached_inference_cost(model.to(dev), dev_enc, cache_dir=cache_dir,
                                                  batch_size=cfg.train.inference_batch_size, device=dev,
                                                  amp=autocast_dtype(trial.precision, dev),
                                                  pad_to_multiple_of=pad_multiple(trial, dev))
        del model
    return costs


def inference_costs(cfg: SweepConfig, task_name: str, encoded: dict, cache_dir: str, *, on_gpu: bool,
                    device: str) -> dict[str, InferenceCost]:
    """measure_students where the trials run: as a Ray task on a GPU node when they use GPUs, else on `device`
    here. None measured for causal-LM tasks or with inference_batch_size 0."""
    if not cfg.train.inference_batch_size or get_task(task_name).is_causal_lm:
        return {}
    if on_gpu:
        import ray

        measure = ray.remote(num_gpus=1, num_cpus=1)(measure_students)
        return ray.get(measure.remote(cfg, task_name, encoded, cache_dir))
    return measure_students(cfg, task_name, encoded, cache_dir, device)
