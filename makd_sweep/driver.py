"""The sweep driver: validate, connect, fill the teacher cache once per task, run one Tuner per task, write results.

    makd sweep CONFIG.yaml [--resume] [--address ADDR]

Each task's datasets, token ids and teacher signal are prepared once (makd_sweep/task_prep.py) and reach every trial
(on any node) through the Ray object store; trials never load the teacher. The console's summary of the outcome is
makd_sweep/outcome.py's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from makd.errors import UsageError
from makd_sweep import gpu_sizing, search, tracking
from makd_sweep.cluster import (
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
from makd_sweep.config import experiment_root, sweep_yaml
from makd_sweep.experiment_dir import EVENTS, final_stage_name
from makd_sweep.gpu_sizing import size_gpu_fraction
from makd_sweep.interrupt import stop_signals
from makd_sweep.outcome import SweepOutcome, student_parameter_counts
from makd_sweep.pack import resolve_auto
from makd_sweep.progress import ProgressLines
from makd_sweep.report.sweep_files import REPORT_FILES
from makd_sweep.report.trials import (
    fill_parameter_counts,
    rows_from_result_grid,
    trials_frame,
    write_trials,
)
from makd_sweep.search import uses_teacher
from makd_sweep.search.final import FinalStage, final_points, next_round_points, seed_rounds
from makd_sweep.search.pbt import perturbed_keys
from makd_sweep.storage import check_writable, is_remote_uri, local_view, write_bytes
from makd_sweep.storage import exists as storage_exists
from makd_sweep.sweep_config import SweepConfig
from makd_sweep.task_prep import (
    check_file_tasks,
    check_transfer_data,
    gpu_probes,
    inference_costs,
    prepare_task,
)
from makd_sweep.trial import distill_trial

REPORT_ARTIFACTS = ("trials.csv", *REPORT_FILES)  # what the MLflow parent run keeps
PBT_CHECKPOINTS_KEPT = 3  # per trial under PBT, so that a donor's named checkpoint outlives its next epoch or two


def build_tuner(cfg: SweepConfig, name: str, kind: search.SearchKind, trainable, root: str, *, resume: bool,
                verbose: bool = False, early_stopping: bool = True, callbacks: list | None = None):
    """One stage of one task: a new Tuner in root/name, or the one there restored (`--resume`). Tune's own status
    tables only when verbose (the default console is makd_sweep/progress.py's lines)."""
    from ray import tune as ray_tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    path = f"{root}/{name}"
    if resume and ray_tune.Tuner.can_restore(path):
        # the param space again: a Tuner killed right after it started may not have stored it yet
        return ray_tune.Tuner.restore(path, trainable=trainable, resume_errored=True, resume_unfinished=True,
                                      param_space=kind.param_space(cfg))
    algorithm = kind.algorithm(cfg)
    pbt = early_stopping and cfg.scheduler.kind == "pbt"
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
                                  # PBT's donors: a checkpoint kept after the donor trains on (Ray warns at <= 2)
                                  checkpoint_config=ray_tune.CheckpointConfig(
                                      num_to_keep=PBT_CHECKPOINTS_KEPT if pbt else 1)))


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


def run_sweep(cfg: SweepConfig, *, resume: bool = False, address: str | None = None, cache_dir: str | None = None,
              quiet: bool = False, num_cpus: int | None = None, num_gpus: float | None = None,
              verbose: bool = False) -> SweepOutcome:
    """Run (or resume) the whole sweep and write trials.csv/jsonl + sweep.json into the experiment dir.

    The console: a line per trial start and end with the stage's ETA (makd_sweep/progress.py) by default; nothing with
    `quiet`; Ray Tune's status tables and the trials' own log lines with `verbose`."""
    import ray
    from ray import tune as ray_tune

    from makd.paths import default_cache_dir
    from makd_sweep.live_report import LiveReport

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
                on_gpu = cfg.gpu > 0 or (cfg.gpu_auto and any(n["Resources"].get("GPU", 0) > 0 for n in nodes))
                data, cache_report = prepare_task(cfg, task, cache_dir or str(default_cache_dir()), progress=not quiet,
                                                  teacher_on_gpu=on_gpu)
                # once per student architecture, before any trial: every trial of a student reports this cost
                data.inference_costs = inference_costs(cfg, task, data.encoded, cache_dir or str(default_cache_dir()),
                                                       on_gpu=on_gpu, device="cpu")
                data.perturbed = perturbed_keys(cfg) if cfg.scheduler.kind == "pbt" else ()
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
                if data.inference_costs:
                    _say(quiet, f"[{task}] inference cost, batch 1 (on {next(iter(data.inference_costs.values())).hardware}): "
                                + ", ".join(f"{s} {c.latency_ms:.2f} ms" for s, c in data.inference_costs.items()))
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
                searched = rows_from_result_grid(result_grid, task, cfg.as_dict())
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
        "config": cfg.as_dict(), "config_yaml": sweep_yaml(cfg.as_dict()),  # the YAML that reruns it (report.html)
        "gpu_sizing": sizing.as_dict() if sizing else None, "address": address, "resumed": resume, "teacher_cache": cache,
        "wall_seconds": round(outcome.wall_seconds, 2), "trials": len(frame),
        "status_counts": frame["status"].value_counts().to_dict()}, indent=1, default=str).encode())
    from makd_sweep.report.sweep_files import write_report_files

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
    seeds in rounds (makd_sweep/search/final.py), each round adding seeds only to the settings of a comparison still
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
        final_rows += rows_from_result_grid(result_grid, task, cfg.as_dict())
    return final_rows


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"makd: {message}", file=sys.stderr, flush=True)
