"""The sweep driver: validate, connect, fill the teacher cache once per task, run one Tuner per task, write results.

    makd sweep CONFIG.yaml [--resume] [--address ADDR]

Teacher logits and datasets are prepared here, once per task, and reach every trial (on any node) through the
Ray object store; trials never load the teacher.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from makd.cache import CacheReport
from makd.errors import UsageError
from makd.pipeline import (
    DataSource,
    load_datasets,
    task_references,
    task_teacher_outputs,
)
from makd.tasks import get_task
from makd.train import TrainConfig
from tune import gpu_sizing, search, tracking
from tune.cluster import (
    alive_nodes,
    check_resources,
    check_shared_storage,
    forwarded_env,
    init_ray,
    local_node_resources,
    resolve_address,
    trial_slots,
    wait_for_resources,
)
from tune.config import experiment_root
from tune.experiment_dir import EVENTS, final_stage_name
from tune.gpu_sizing import size_gpu_fraction
from tune.interrupt import stop_signals
from tune.pack import resolve_auto
from tune.progress import ProgressLines
from tune.report.sweep_files import REPORT_FILES
from tune.report.trials import (
    fill_parameter_counts,
    rows_from_result_grid,
    summary_table,
    trials_frame,
    write_trials,
)
from tune.search import teacher_spec, uses_teacher
from tune.search.final import FinalStage, final_points, next_round_points, seed_rounds
from tune.storage import check_writable, is_remote_uri, local_view, write_bytes
from tune.storage import exists as storage_exists
from tune.sweep_config import SweepConfig
from tune.trial import TaskData, distill_trial, parameters_m


@dataclass
class SweepOutcome:
    root: str
    trials: pd.DataFrame
    cache: dict[str, dict] = field(default_factory=dict)
    wall_seconds: float = 0.0
    report: object = None  # tune.report.build.Report once any trial finished (local storage)

    @property
    def failed(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "ERROR"]

    @property
    def unfinished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "NOT_STARTED"]


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
    """A causal-LM task (makd/lm_pipeline.py): every student's vocabulary checked against the teacher's, then the
    teacher's responses and top-k signal (and its full logits at train's response tokens when a loss is reverse_kl or
    jsd) from the cache, computed on a miss (as a Ray task on a GPU node when trials use GPUs), and the references."""
    from makd.causal_lm import check_same_vocabulary, lm_student_tokenizer
    from makd.lm_pipeline import lm_references, prepare_lm_task
    from makd.lm_train import FULL_TEACHER_LOSSES
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
        except UsageError as err:  # the sweep's spelling of the training options (tune/config.py: Transfer)
            spelled = {"transfer_labeled": "transfer.labeled", "transfer_file": "transfer.file"}
            raise UsageError(spelled.get(err.field, err.field), f"{task}: {err.problem}") from None


def encode_for_students(cfg: SweepConfig, train_ds, eval_sets) -> dict:
    """Token ids of every split, once per distinct student tokenizer: trials then skip tokenisation."""
    from makd.models import load_tokenizer, student_tokenizer_spec
    from makd.train import encode_splits

    specs = dict.fromkeys(student_tokenizer_spec(s, cfg.train.student_tokenizer) for s in cfg.students)
    return {spec: encode_splits(load_tokenizer(spec, "student_tokenizer"), cfg.train, train_ds, eval_sets)
            for spec in specs}


def gpu_probes(cfg: SweepConfig, prepared: dict[str, TaskData]) -> list:
    """(TrainConfig, encoded train split) for every task x student: what `gpu: auto` measures."""
    from makd.models import student_tokenizer_spec

    probes = []
    for task, data in prepared.items():
        for student in cfg.students:
            train_enc, _ = data.encoded[student_tokenizer_spec(student, cfg.train.student_tokenizer)]
            probes.append((representative_trial(cfg, task, student), train_enc))
    return probes


REPORT_ARTIFACTS = ("trials.csv", *REPORT_FILES)  # what the MLflow parent run keeps


def build_tuner(cfg: SweepConfig, name: str, kind: search.SearchKind, trainable, root: str, *, resume: bool,
                verbose: bool = False, early_stopping: bool = True, callbacks: list | None = None):
    """One stage of one task: a new Tuner in root/name, or the one there restored (`--resume`). Tune's own status
    tables only when verbose (the default console is tune/progress.py's lines)."""
    from ray import tune as ray_tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    path = f"{root}/{name}"
    if resume and ray_tune.Tuner.can_restore(path):
        # the param space again: a Tuner killed right after it started may not have stored it yet
        return ray_tune.Tuner.restore(path, trainable=trainable, resume_errored=True, resume_unfinished=True,
                                      param_space=kind.param_space(cfg))
    algorithm = kind.algorithm(cfg)
    # Grid points limit concurrency in their own generator: Tune would ignore the limit there, with a warning
    limit = None if isinstance(algorithm, BasicVariantGenerator) else cfg.max_concurrent_trials
    return ray_tune.Tuner(
        trainable, param_space=kind.param_space(cfg),
        # a multi-objective searcher holds its metrics: Tune would overwrite them with one
        tune_config=ray_tune.TuneConfig(metric=None if kind.multi_objective(cfg) else search.METRIC,
                                        mode=None if kind.multi_objective(cfg) else search.MODE, search_alg=algorithm,
                                        scheduler=search.scheduler(cfg) if early_stopping else None,
                                        num_samples=kind.trials_per_task(cfg),
                                        max_concurrent_trials=limit, reuse_actors=True),
        run_config=ray_tune.RunConfig(name=name, storage_path=root, verbose=1 if verbose else 0, callbacks=callbacks,
                                  progress_reporter=progress_reporter(cfg, kind) if verbose else None,
                                  failure_config=ray_tune.FailureConfig(max_failures=cfg.max_failures),
                                  checkpoint_config=ray_tune.CheckpointConfig(num_to_keep=1)))


def progress_reporter(cfg: SweepConfig, kind: search.SearchKind):
    """A compact status table every 30 s: what the search kind varies, epoch and score."""
    from ray.tune import CLIReporter

    return CLIReporter(parameter_columns=kind.progress_columns(cfg),
                       metric_columns=["epoch", "score"], max_report_frequency=30, sort_by_metric=True)


def check_experiment_dir(cfg: SweepConfig, root: str, resume: bool) -> None:
    """Never silently overwrite or mix a previous sweep's trials: resume it, or choose a new name."""
    existing = [t for t in cfg.tasks if storage_exists(root, t)]
    if existing and not resume:
        raise UsageError("name", f"experiment {root} already has results for {', '.join(existing)}: add --resume to "
                                 "finish it, or choose a new name")
    # a sweep stopped before its first Tuner (filling the teacher cache) left only its dir: --resume starts it
    started = not is_remote_uri(root) and Path(root).is_dir()
    if resume and not existing and not started:
        raise UsageError("resume", f"no experiment to resume at {root}")


def student_parameter_counts(cfg: SweepConfig, students: list[str]) -> dict[str, float]:
    """Built here only for students no trial reported (every trial reports its own): building one imports the
    model code, seconds of the driver's time."""
    from makd.causal_lm import build_lm_student
    from makd.models import build_student, count_parameters

    counts = {}
    for spec in students:
        if get_task(cfg.tasks[0]).is_causal_lm:
            model, _ = build_lm_student(spec, family=cfg.train.teacher)
        else:
            model, _ = build_student(spec, get_task(cfg.tasks[0]).num_labels, tokenizer=cfg.train.student_tokenizer)
        counts[spec] = parameters_m(count_parameters(model))
    return counts


def run_sweep(cfg: SweepConfig, *, resume: bool = False, address: str | None = None, cache_dir: str | None = None,
              quiet: bool = False, num_cpus: int | None = None, num_gpus: float | None = None,
              verbose: bool = False) -> SweepOutcome:
    """Run (or resume) the whole sweep and write trials.csv/jsonl + sweep.json into the experiment dir.

    The console: a line per trial start and end with the stage's ETA (tune/progress.py) by default; nothing with
    `quiet`; Ray Tune's status tables and the trials' own log lines with `verbose`."""
    import ray
    from ray import tune as ray_tune

    from makd.paths import default_cache_dir
    from tune.live_report import LiveReport

    start = time.perf_counter()
    root = experiment_root(cfg)
    if cfg.glue_dir:
        cfg = dataclasses.replace(cfg, glue_dir=str(Path(cfg.glue_dir).expanduser().resolve()))
    cfg = check_file_tasks(cfg)
    check_transfer_data(cfg)
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        # Inside a Ray Job the cwd is the job's unpacked working_dir, which Ray may garbage-collect while trials
        # finish: work from a directory that outlives the job.
        os.chdir(tempfile.gettempdir())
    check_experiment_dir(cfg, root, resume)
    check_writable(root)  # s3:// or gs://: a missing bucket or no credentials, in one line before Ray starts
    tracking.check_tracking(cfg.tracking)  # a missing package or an unreachable server: one line, before Ray starts
    sizing = None
    address = resolve_address(cfg, address)
    if not address and not ray.is_initialized():  # a private local Ray: refuse impossible requests before starting it
        check_resources(cfg, [local_node_resources(num_cpus, num_gpus)])
    started = init_ray(address, num_cpus=num_cpus, num_gpus=num_gpus, verbose=verbose)
    live = None if is_remote_uri(root) else LiveReport(root)  # report.html rewritten as trials finish
    try:
        with stop_signals() as stops:
            nodes = wait_for_resources(cfg.wait_for) if cfg.wait_for else alive_nodes()
            check_resources(cfg, nodes)
            check_shared_storage(root, nodes)
            if not is_remote_uri(root):
                Path(root).mkdir(parents=True, exist_ok=True)
            events = None if is_remote_uri(root) else str(Path(root) / EVENTS)
            parent = tracking.parent_run_id(cfg.tracking, cfg, root)
            reports = [] if live is None else [live]  # one LiveReport serves every Tune run of the sweep

            def stage_callbacks(task: str, stage: str, trials: int) -> list:
                lines = [] if quiet or verbose else [
                    ProgressLines(f"{task} {stage}", trials, cfg.max_concurrent_trials, cfg.max_epochs)]
                return reports + lines + tracking.callbacks(cfg.tracking, cfg, root, task=task, stage=stage,
                                                            parent=parent)

            rows, cache, prepared = [], {}, {}
            for task in cfg.tasks:
                t0 = time.perf_counter()
                data, cache_report = prepare_task(cfg, task, cache_dir or str(default_cache_dir()), progress=not quiet,
                                            teacher_on_gpu=cfg.gpu > 0 or (cfg.gpu_auto and any(
                                                n["Resources"].get("GPU", 0) > 0 for n in nodes)))
                prepared[task] = data
                cache[task] = {"status": cache_report.status if uses_teacher(cfg) or data.lm else "not needed", "hits": cache_report.hits,
                               "misses": cache_report.misses, "teacher_loaded": cache_report.teacher_loaded,
                               "teacher_seconds": round(cache_report.teacher_seconds, 2),
                               "prepare_seconds": round(time.perf_counter() - t0, 2), "train_examples": len(data.train),
                               **({"lm": data.lm.cache} if data.lm else {}),
                               "finetuned_teacher": data.finetuned_teacher}
                if data.finetuned_teacher:
                    done = data.finetuned_teacher
                    _say(quiet, f"[{task}] fine-tuned teacher: {'trained now' if done['trained_now'] else 'cached'}, "
                                f"{done['train_examples']} examples x {len(done['epochs'])} epochs in "
                                f"{done['seconds']:.0f} s, {done['parameters_m']}M parameters ({done['path']})")
                _say(quiet, f"[{task}] teacher cache: {cache[task]['status']} ({len(data.train)} train examples)")
            if cfg.gpu_auto:
                sizing = size_gpu_fraction(cfg, gpu_probes(cfg, prepared), nodes)
                cfg = gpu_sizing.apply(cfg, sizing)
                _say(quiet, sizing.describe())
            if cfg.pack.auto:
                cap = sizing.members_cap(cfg.pack.mode) if sizing else 0
                cfg = dataclasses.replace(cfg, pack=resolve_auto(cfg.pack, root, trial_slots(cfg, nodes), cap,
                                                                 resume=resume))
                _say(quiet, cfg.pack.describe())
            for task, data in prepared.items():
                trainable = ray_tune.with_resources(ray_tune.with_parameters(distill_trial, task_data=data, events_path=events,
                                                                          env=forwarded_env()),
                                                {"cpu": cfg.cpu, "gpu": cfg.gpu})
                kind = search.get_search_kind(cfg.search.kind)
                result_grid = stops.fit(build_tuner(cfg, task, kind, trainable, root, resume=resume, verbose=verbose,
                                             callbacks=stage_callbacks(task, "search", kind.trials_per_task(cfg))))
                searched = rows_from_result_grid(result_grid, task, cfg)
                rows += searched

                def fit_final(name, stage, callbacks, trainable=trainable):
                    return stops.fit(build_tuner(cfg, name, stage, trainable, root, resume=resume, verbose=verbose,
                                                 early_stopping=False, callbacks=callbacks))

                rows += run_final_stage(cfg, task, searched, fit_final, stage_callbacks, quiet)
    except BaseException:
        if live is not None:  # the sweep's own final write will not happen: the report shows every trial that ended
            live.close(flush=True)
        raise
    finally:
        if live is not None:
            live.close()  # before the final write below, which no later live write may overtake
        if started:  # a Ray this process was connected to before the sweep stays up
            ray.shutdown()
    frame = trials_frame(rows)
    reported = set(frame.dropna(subset=["student_parameters_m"])["student"])
    frame = fill_parameter_counts(frame, student_parameter_counts(cfg, [s for s in cfg.students if s not in reported]))
    outcome = SweepOutcome(root=root, trials=frame, cache=cache, wall_seconds=time.perf_counter() - start)
    write_trials(root, frame)
    write_bytes(root, "sweep.json", json.dumps({
        "config": cfg.as_dict(), "gpu_sizing": sizing.as_dict() if sizing else None, "address": address, "resumed": resume, "teacher_cache": cache,
        "wall_seconds": round(outcome.wall_seconds, 2), "trials": len(frame),
        "status_counts": frame["status"].value_counts().to_dict()}, indent=1, default=str).encode())
    from tune.report.sweep_files import write_report_files

    with local_view(root) as local:  # remote storage: the files are made on a local copy, then uploaded
        outcome.report = write_report_files(local, rows=frame)  # the rows in hand, not trials.csv read back
        if is_remote_uri(root):
            for name in REPORT_FILES:
                if (Path(local) / name).is_file():
                    write_bytes(root, name, (Path(local) / name).read_bytes())
        tracking.log_sweep_artifacts(cfg.tracking, parent, local, REPORT_ARTIFACTS)
    return outcome


def run_final_stage(cfg: SweepConfig, task: str, searched: list[dict], fit, stage_callbacks, quiet: bool) -> list[dict]:
    """The search's best settings at the full budget, no early stopping: every final seed at once, or with adaptive
    seeds in rounds (tune/search/final.py), each round adding seeds only to the settings of a comparison still
    undecided. `fit(name, stage, callbacks)` runs one Tuner; a resumed sweep rebuilds the same rounds."""
    first_round = points = final_points(cfg, searched)
    rounds, final_rows = seed_rounds(cfg), []
    for index, seeds in enumerate(rounds):
        if index:
            points = next_round_points(cfg, first_round, final_rows, index)
            if not points:
                _say(quiet, f"[{task}] final stage: every comparison decided after {rounds[index - 1]} seeds")
                break
        if not points:
            break
        packs = ("" if not cfg.pack.on else f" in packs of {cfg.pack.size}" if not cfg.pack.auto
                 else f" in packs over {cfg.pack.slots} slot(s) per student"
                 + (" and seed" if cfg.pack.mode == "fused" else ""))
        what = (f"round {index + 1}: seeds up to {seeds} of at most {rounds[-1]}" if cfg.final.adaptive
                else f"{seeds} seed(s)")
        _say(quiet, f"[{task}] final stage: {len(points)} trials{packs} ({what}, {cfg.max_epochs} epochs, no early "
                    "stopping)")
        stage = FinalStage(points)
        result_grid = fit(final_stage_name(task, index), stage, stage_callbacks(task, "final",
                                                                                stage.trials_per_task(cfg)))
        final_rows += rows_from_result_grid(result_grid, task, cfg)
    return final_rows


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"makd: {message}", file=sys.stderr, flush=True)


def print_outcome(outcome: SweepOutcome) -> int:
    """Print the results table; the exit code says whether every trial finished."""
    print(summary_table(outcome.trials))
    print(f"\n{len(outcome.trials)} trials in {outcome.wall_seconds:.1f} s; results: {outcome.root}/trials.csv")
    if outcome.report is not None:
        from tune.report.rank import leaderboard_text

        print(f"\nLeaderboard ({outcome.root}/leaderboard.csv, table.md, lambda.png):\n")
        print(leaderboard_text(outcome.report.leaderboard))
        print()
        print(outcome.report.paper_table_markdown, end="")
        from tune.report.verdict import verdict_lines

        answer = verdict_lines(outcome.report.leaderboard)
        if answer:
            print(f"\nAnswer ({outcome.root}/report.html has it with the figures):")
            print("\n".join(f"- {line}" for line in answer))
    problems = []
    if len(outcome.failed):
        problems.append(f"{len(outcome.failed)} trial(s) failed (see the error column of trials.csv)")
    if len(outcome.unfinished):
        problems.append(f"{len(outcome.unfinished)} trial(s) did not start: rerun with --resume")
    if problems:
        print("makd: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0
