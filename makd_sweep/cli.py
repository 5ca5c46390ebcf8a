"""`makd sweep`, the Ray Job commands, `makd leaderboard` and `makd export`: argparse only at import time; Ray is
imported when a command runs. makd_sweep/main.py wires them into `makd` next to the library's commands."""

from __future__ import annotations

import argparse
import json


def add_sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", help="run a distillation sweep on Ray Tune (local or on a cluster)")
    s.add_argument("config", help="sweep config YAML (see configs/)")
    s.add_argument("--resume", action="store_true", help="finish an interrupted sweep (errored and unfinished trials)")
    s.add_argument("--address", help="Ray cluster address (default: the config's address, then $RAY_ADDRESS, "
                                     "else a private local Ray)")
    s.add_argument("--glue-dir", help="local GLUE folder (overrides the config's data.glue_dir)")
    s.add_argument("--storage", help="experiment storage root (overrides the config's storage)")
    s.add_argument("--name", help="experiment name (overrides the config's name)")
    s.add_argument("--tasks", help="run only these of the config's tasks, comma-separated: a piece of a long sweep, "
                                   "in its own experiment NAME-TASK1-TASK2... unless --name is given")
    s.add_argument("--cache-dir", help="teacher-logit cache (default $MAKD_HOME/cache)")
    s.add_argument("--num-cpus", type=int, help="CPUs for a private local Ray (default: all)")
    s.add_argument("--num-gpus", type=float, help="GPUs for a private local Ray (default: all torch sees)")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.add_argument("--verbose", action="store_true", help="Ray Tune's status tables and every trial's own log "
                                                           "lines instead of one line per trial start and end")


def cmd_sweep(args: argparse.Namespace) -> int:
    from makd.errors import UsageError
    from makd_sweep.config import load_config, only_tasks

    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError("num-cpus", f"must be >= 1, got {args.num_cpus}")
    if args.num_gpus is not None and args.num_gpus < 0:
        raise UsageError("num-gpus", f"must be >= 0, got {args.num_gpus}")
    cfg = load_config(args.config, {"glue_dir": args.glue_dir, "storage": args.storage, "name": args.name})
    if args.tasks is not None:
        cfg = only_tasks(cfg, args.tasks, rename=args.name is None)
    from makd_sweep.driver import run_sweep
    from makd_sweep.outcome import print_outcome

    outcome = run_sweep(cfg, resume=args.resume, address=args.address, cache_dir=args.cache_dir, quiet=args.quiet,
                        num_cpus=args.num_cpus, num_gpus=args.num_gpus, verbose=args.verbose)
    return print_outcome(outcome)


def add_job_parsers(sub) -> None:
    address_help = "Ray job server, e.g. http://HEAD:8265 (default $MAKD_JOBS_ADDRESS, $RAY_API_SERVER_ADDRESS, " \
                   "else http://127.0.0.1:8265)"
    s = sub.add_parser("submit", help="send a sweep to a running Ray cluster as a Ray Job")
    s.add_argument("config", help="sweep config YAML (validated here before it is sent)")
    s.add_argument("--address", help=address_help)
    s.add_argument("--glue-dir", help="GLUE folder as seen from the cluster head")
    s.add_argument("--python", help="python on the cluster that has makd's dependencies (default: $MAKD_CLUSTER_PYTHON, "
                                    "else the python running this command; the job checks it before the sweep)")
    s.add_argument("--no-ship-code", action="store_true", help="use the makd installed on the cluster instead of "
                                                             "shipping this checkout's makd/ and makd_sweep/")
    s.add_argument("--no-ship-data", action="store_true", help="read your tasks' files (and transfer.file) at their "
                                                             "absolute paths on the cluster head instead of shipping "
                                                             "them with the job (files larger than "
                                                             "the job can carry: shared storage)")
    s.add_argument("--resume", action="store_true", help="finish an earlier, stopped or failed, submission of this "
                                                         "sweep (same name and storage)")
    s.add_argument("--wait", action="store_true", help="follow the job's logs until it ends; exit 1 unless it succeeded")
    j = sub.add_parser("jobs", help="list submitted sweeps and their status")
    j.add_argument("--address", help=address_help)
    j.add_argument("--last", action="store_true", help="print only the id of the latest submitted sweep")
    g = sub.add_parser("logs", help="print (or --follow) a submitted sweep's output")
    g.add_argument("job", help="submission id from `makd submit` / `makd jobs`")
    g.add_argument("--address", help=address_help)
    g.add_argument("--follow", "-f", action="store_true")
    t = sub.add_parser("stop", help="stop a submitted sweep")
    t.add_argument("job")
    t.add_argument("--address", help=address_help)


def cmd_submit(args: argparse.Namespace) -> int:
    from makd_sweep import jobs

    job_id = jobs.submit(args.config, address=args.address, glue_dir=args.glue_dir, ship_code=not args.no_ship_code,
                         ship_data=not args.no_ship_data, python=args.python,
                         extra_args=["--resume"] if args.resume else None)
    print(job_id, flush=True)
    if args.wait:
        jobs.print_logs(job_id, address=args.address, follow=True)
        status = jobs.wait(job_id, address=args.address)
        print(f"makd: job {job_id} {status}")
        return 0 if status == "SUCCEEDED" else 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from makd.errors import UsageError
    from makd_sweep import jobs

    rows = jobs.list_jobs(args.address)
    if not rows:
        if args.last:
            raise UsageError("job", "no makd sweep has been submitted to this cluster")
        print("no makd sweeps on this cluster")
        return 0
    if args.last:
        print(rows[-1]["job"])
        return 0
    print(f"{'job':<30} {'status':<10} {'name':<16} {'started':<20} seconds")
    for r in rows:
        print(f"{r['job']:<30} {r['status']:<10} {str(r['name']):<16} {r['started']:<20} {r['seconds']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from makd_sweep import jobs

    jobs.print_logs(args.job, address=args.address, follow=args.follow)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from makd_sweep import jobs

    print(f"{args.job} {jobs.stop(args.job, address=args.address)}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from makd_sweep.report.cli import cmd_leaderboard as run
    from makd_sweep.storage import local_views

    with local_views(args.paths) as args.paths:  # an s3:// / gs:// experiment: read from a local copy
        return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from makd_sweep.report.cli import cmd_report as run
    from makd_sweep.storage import local_views

    with local_views(args.paths) as args.paths:
        return run(args)


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a leaderboard cell's best student as a Hugging Face model dir",
                       description="The best trial of one task x student x loss cell (final stage by default), at "
                                   "its best epoch, as a dir that AutoModelForSequenceClassification and "
                                   "AutoTokenizer load, with a model card (README.md).")
    p.add_argument("experiment", metavar="EXP_DIR", help="experiment dir written by makd sweep (or its s3:// / gs:// URI)")
    p.add_argument("--task", required=True)
    p.add_argument("--student", required=True, help="the student's model id as in the sweep config")
    p.add_argument("--loss", required=True)
    p.add_argument("--stage", choices=("final", "search"), help="default: final when the sweep has a final stage")
    p.add_argument("--out", metavar="DIR", help="default EXP_DIR/export/TASK-STUDENT-LOSS (for a URI: "
                                                 "./export/TASK-STUDENT-LOSS)")


def cmd_export(args: argparse.Namespace) -> int:
    from makd.tasks import get_task
    from makd_sweep.export import export_winner, register_file_tasks
    from makd_sweep.storage import is_remote_uri, local_view

    with local_view(args.experiment) as local:
        register_file_tasks(local)  # the sweep's own tasks (defined by files), as its trials knew them
        remote = args.experiment if is_remote_uri(args.experiment) else None
        path, score = export_winner(local, get_task(args.task).name, args.student, args.loss, args.out,
                                    stage=args.stage, remote=remote)
    print(json.dumps({"exported": str(path), "task": get_task(args.task).name, "student": args.student,
                      "loss": args.loss, "dev_score": score}))
    return 0


def add_inference_cost_parser(sub) -> None:
    p = sub.add_parser("inference-cost", help="measure each task x student's inference cost here, apart from trials",
                       description="Each task x student of a sweep config, measured on this machine by makd's fixed "
                                   "protocol (batch 1 and the inference batch size, warm-up, median of 20 runs) on "
                                   "the config's dev data, into a CSV that `makd leaderboard --costs` and `makd "
                                   "report --costs` use instead of the trials' own numbers.")
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="sweep config YAML(s); a task x student in two is "
                                                                  "measured once, as the first config sets it")
    p.add_argument("--csv", required=True, metavar="FILE", help="where to write the costs")
    p.add_argument("--glue-dir", help="local GLUE folder (overrides the config's data.glue_dir)")
    p.add_argument("--cache-dir", help="makd cache root (default $MAKD_HOME/cache): a cost measured there on this "
                                       "hardware is reused")


def cmd_inference_cost(args: argparse.Namespace) -> int:
    import pandas as pd

    from makd.paths import default_cache_dir
    from makd_sweep.config import load_config
    from makd_sweep.inference_costs import measure_sweep_costs, write_costs

    frames = []
    for path in args.configs:
        cfg = load_config(path, {"glue_dir": args.glue_dir})
        frames.append(measure_sweep_costs(cfg, args.cache_dir or str(default_cache_dir())))
    frame = pd.concat(frames, ignore_index=True).drop_duplicates(["task", "student"], ignore_index=True)
    write_costs(frame, args.csv)
    for row in frame.itertuples():
        print(f"{row.task} {row.student}: {row.latency_ms:.2f} ms at batch 1, {row.inference_examples_per_s:.0f} "
              f"examples/s at batch {row.batch_size} ({row.hardware})")
    return 0


def add_sweep_commands(sub) -> None:
    from makd_sweep.report.cli import add_leaderboard_parser, add_report_parser

    add_sweep_parser(sub)
    add_job_parsers(sub)
    add_leaderboard_parser(sub)
    add_report_parser(sub)
    add_export_parser(sub)
    add_inference_cost_parser(sub)


COMMANDS = {"sweep": cmd_sweep, "submit": cmd_submit, "jobs": cmd_jobs, "logs": cmd_logs, "stop": cmd_stop,
            "leaderboard": cmd_leaderboard, "report": cmd_report, "export": cmd_export,
            "inference-cost": cmd_inference_cost}
