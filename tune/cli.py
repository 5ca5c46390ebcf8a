"""`makd sweep` (and the Ray Job commands): argparse only at import time; Ray is imported when a command runs."""

from __future__ import annotations

import argparse


def add_sweep_parser(sub) -> None:
    s = sub.add_parser("sweep", help="run a distillation sweep on Ray Tune (local or on a cluster)")
    s.add_argument("config", help="sweep config YAML (see configs/)")
    s.add_argument("--resume", action="store_true", help="finish an interrupted sweep (errored and unfinished trials)")
    s.add_argument("--address", help="Ray cluster address (default: the config's address, then $RAY_ADDRESS, "
                                     "else a private local Ray)")
    s.add_argument("--glue-dir", help="local GLUE folder (overrides the config's data.glue_dir)")
    s.add_argument("--storage", help="experiment storage root (overrides the config's storage)")
    s.add_argument("--name", help="experiment name (overrides the config's name)")
    s.add_argument("--cache-dir", help="teacher-logit cache (default $MAKD_HOME/cache)")
    s.add_argument("--num-cpus", type=int, help="CPUs for a private local Ray (default: all)")
    s.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_sweep(args: argparse.Namespace) -> int:
    from makd.errors import UsageError
    from tune.config import load_config

    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError("num-cpus", f"must be >= 1, got {args.num_cpus}")
    cfg = load_config(args.config, {"glue_dir": args.glue_dir, "storage": args.storage, "name": args.name})
    from tune.driver import report, run_sweep

    outcome = run_sweep(cfg, resume=args.resume, address=args.address, cache_dir=args.cache_dir, quiet=args.quiet,
                        num_cpus=args.num_cpus)
    return report(outcome)


COMMANDS = {"sweep": cmd_sweep}
