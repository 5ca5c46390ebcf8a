"""The library's commands: distill, cache-teacher, finetune-teacher, data, zoo. `makd` (makd_sweep/main.py) adds the sweep commands of makd_sweep/
`python -m makd.cli` runs these alone (no Ray, no makd_sweep/ needed).

Bad input gets one line on stderr naming the field and exit code 2, never a traceback, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from makd.config import add_option_flags
from makd.errors import OneLineParser, UsageError, run_command
from makd.teacher_finetune import FinetuneOptions


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: --glue-dir, else $MAKD_GLUE_DIR, else the HF hub nyu-mll/glue)")
    add_option_flags(g, ["data"])
    g.add_argument("--glue-dir", help="a local GLUE folder in the original download layout (<TASK>/train.tsv ...)")
    g.add_argument("--train-file", help="any csv/tsv/jsonl/parquet train file (with --text-columns/--label-column)")
    g.add_argument("--eval-file", help="the matching dev file")
    g.add_argument("--text-columns", help="comma-separated text column(s) of --train-file/--eval-file")
    g.add_argument("--label-column", help="label column of --train-file/--eval-file")


def add_teacher_args(p: argparse.ArgumentParser, required: bool) -> None:
    add_option_flags(p, ["teacher"], required=["teacher"] if required else [])
    p.add_argument("--cache-dir", help="teacher-logit cache (default $MAKD_HOME/cache, MAKD_HOME=~/.cache/makd)")


DESCRIPTION = "Distil a frozen teacher into small students: vanilla vs Taylor-series KD (Dasgupta et al., 2023)."


def build_parser() -> OneLineParser:
    """The library's commands only (makd_sweep/main.py builds `makd` with every command)."""
    parser = OneLineParser(prog="makd", description=DESCRIPTION)
    add_library_commands(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    return parser


def add_library_commands(sub) -> None:
    d = sub.add_parser("distill", help="train one student and print its GLUE metrics as one JSON line")
    add_data_args(d)
    add_teacher_args(d, required=False)
    add_option_flags(d, ["student", "loss", "training"])
    d.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    d.add_argument("--output-dir", help="checkpoint every epoch here (a rerun resumes), plus result.json")
    d.add_argument("--save-model", action="store_true", help="also export the final student to OUTPUT_DIR/model")
    d.add_argument("--quiet", action="store_true", help="no progress bars")

    c = sub.add_parser("cache-teacher", help="compute the frozen teacher's logits once and store them")
    add_data_args(c)
    add_teacher_args(c, required=True)
    c.add_argument("--splits", default="train,dev", help="comma list of train, dev (default both: KD reads train, "
                   "the teacher's own score reads dev)")
    c.add_argument("--batch-size", dest="teacher_batch_size", type=int,
                   help="teacher batch size (default 16 on CPU, 64 on GPU)")
    c.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    c.add_argument("--quiet", action="store_true")

    f = sub.add_parser("finetune-teacher", help="fine-tune the teacher on a task's training split once and cache it",
                       description="The pretrained teacher with a seeded head, trained with cross-entropy on the "
                                   "task's training split (the selection hold-out taken out; never dev), stored in "
                                   "the cache by everything that determines it; prints one JSON line with its path "
                                   "and dev score. Distil from it with --teacher PATH --fine-tuned, or let a sweep "
                                   "do all of it with teacher_finetune:.")
    add_data_args(f)
    add_teacher_args(f, required=True)
    f.add_argument("--epochs", type=int, default=FinetuneOptions.epochs)
    f.add_argument("--lr", type=float, default=FinetuneOptions.lr)
    f.add_argument("--batch-size", type=int, default=FinetuneOptions.batch_size)
    f.add_argument("--finetune-max-train-samples", type=int, help="subsample the training split for fine-tuning")
    f.add_argument("--device", help="cpu, cuda ... (default: cuda if available)")
    f.add_argument("--quiet", action="store_true")

    g = sub.add_parser("data", help="write data for offline use")
    gsub = g.add_subparsers(dest="data_command", required=True, parser_class=OneLineParser)
    gg = gsub.add_parser("glue", help="write GLUE tasks from the Hugging Face hub (nyu-mll/glue) as a local GLUE folder "
                         "for --glue-dir (run it once while online)")
    gg.add_argument("--out", required=True, help="the folder to write (<TASK>/train.tsv, dev.tsv, ...)")
    gg.add_argument("--tasks", default="cola,sst2,mrpc,stsb,qqp,mnli,qnli,rte,wnli",
                    help="comma-separated GLUE tasks (default: all nine)")

    z = sub.add_parser("zoo", help="offline pretrained models installed from PyPI")
    zsub = z.add_subparsers(dest="zoo_command", required=True, parser_class=OneLineParser)
    zsub.add_parser("list", help="list zoo models and whether they are installed")
    zp = zsub.add_parser("path", help="print the local model dir of a zoo model (extracting it once if needed)")
    zp.add_argument("name", help="minilm-l6 or mpnet-base (with or without the zoo: prefix)")


def split_columns(value: str | None) -> tuple[str, ...] | None:
    return tuple(c.strip() for c in value.split(",") if c.strip()) if value else None


def data_source(args: argparse.Namespace):
    from makd.pipeline import DataSource

    if bool(args.train_file) != bool(args.eval_file):
        raise UsageError("train-file" if args.eval_file else "eval-file", "--train-file and --eval-file go together")
    if args.train_file and not (args.text_columns and args.label_column):
        raise UsageError("text-columns", "--train-file needs --text-columns and --label-column")
    return DataSource.from_env(args.glue_dir, train_file=args.train_file, eval_file=args.eval_file,
                               text_columns=split_columns(args.text_columns), label_column=args.label_column)


def cache_dir(args: argparse.Namespace) -> str:
    from makd.paths import default_cache_dir

    return args.cache_dir or str(default_cache_dir())


def cmd_distill(args: argparse.Namespace) -> int:
    from makd.config import TrainConfig, from_args
    from makd.pipeline import run

    if args.save_model and not args.output_dir:
        raise UsageError("save-model", "needs --output-dir")
    cfg = from_args(TrainConfig, args)
    summary = run(cfg, data_source(args), cache_dir=cache_dir(args), output_dir=args.output_dir,
                  save_model=args.save_model, progress=not args.quiet, device=args.device)
    print(json.dumps(summary), flush=True)
    return 0


def cmd_cache_teacher(args: argparse.Namespace) -> int:
    from makd.cache import teacher_logits
    from makd.config import TrainOptions, from_args
    from makd.pipeline import DEV, load_datasets, teacher_splits
    from makd.tasks import classifier_task

    task = classifier_task(args.task, "makd cache-teacher")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("train", "dev")]
    if bad or not splits:
        raise UsageError("splits", f"expected a comma list of train, dev; got '{args.splits}'")
    options = from_args(TrainOptions, args)
    options.validate()
    train_ds, eval_sets = load_datasets(task.name, data_source(args), options)
    wanted = {name: ds for name, ds in teacher_splits(train_ds, eval_sets).items()
              if (name == "train" and "train" in splits) or (name.startswith(DEV) and "dev" in splits)}
    logits, cache_report = teacher_logits(wanted, options.teacher_for(task.name), cache_dir=cache_dir(args),
                                    batch_size=args.teacher_batch_size,
                                    device=args.device or ("cuda" if _cuda() else "cpu"), progress=not args.quiet)
    print(json.dumps({"task": task.name, "teacher": args.teacher, "cache_dir": cache_dir(args),
                      "splits": {k: len(v) for k, v in logits.items()}, "hits": cache_report.hits, "misses": cache_report.misses,
                      "teacher_loaded": cache_report.teacher_loaded, "teacher_seconds": round(cache_report.teacher_seconds, 2)}))
    return 0


def cmd_finetune_teacher(args: argparse.Namespace) -> int:
    from makd.config import TrainOptions, from_args
    from makd.pipeline import load_datasets, task_references, task_teacher_outputs
    from makd.tasks import classifier_task

    task = classifier_task(args.task, "makd finetune-teacher")
    options = from_args(TrainOptions, args)
    options.validate()
    if options.fine_tuned:
        raise UsageError("fine_tuned", "finetune-teacher starts from the pretrained teacher with a fresh head")
    finetune = FinetuneOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                               max_train_samples=args.finetune_max_train_samples)
    finetune.validate()
    train_ds, eval_sets = load_datasets(task.name, data_source(args), options)
    outputs, cache_report, record = task_teacher_outputs(options.teacher_for(task.name), finetune, train_ds, eval_sets,
                                                   cache_dir(args), data_seed=options.data_seed,
                                                   progress=not args.quiet,
                                                   device=args.device or ("cuda" if _cuda() else "cpu"))
    references = task_references(task.name, train_ds, eval_sets, outputs)
    print(json.dumps({"task": task.name, "teacher": args.teacher, "path": record["path"],
                      "trained_now": record["trained_now"], "train_examples": record["train_examples"],
                      "seconds": record["seconds"], "parameters_m": record["parameters_m"],
                      "teacher_score": references["teacher_score"], "majority_score": references["majority_score"],
                      "teacher_cache": cache_report.status}))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cmd_data(args: argparse.Namespace) -> int:
    from makd.glue_folder import glue_tasks, write_glue_folder

    tasks = glue_tasks(split_columns(args.tasks) or ())
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError("out", f"{out} exists and is not a folder")
    written = write_glue_folder(out, tasks)
    for path in written:
        print(path)
    print(f"makd: {len(written)} files for {len(tasks)} task(s) in {out}: use --glue-dir {out}", file=sys.stderr)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from makd import zoo

    if args.zoo_command == "list":
        for entry in zoo.status():
            state = "installed" if entry["installed"] else "missing (pip install " + " ".join(entry["packages"]) + ")"
            print(f"zoo:{entry['name']:<12} {state:<12} {entry['description']}")
        return 0
    name = args.name if args.name.startswith("zoo:") else f"zoo:{args.name}"
    print(zoo.resolve(name))
    return 0


COMMANDS = {"distill": cmd_distill, "cache-teacher": cmd_cache_teacher, "finetune-teacher": cmd_finetune_teacher,
            "data": cmd_data, "zoo": cmd_zoo}


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("MAKD_LOG_LEVEL", "WARNING"), format="makd: %(levelname)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    return run_command(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
