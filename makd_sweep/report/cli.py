"""`makd leaderboard EXP_DIR_OR_CSV [...]`: argparse wiring; pandas and matplotlib load when the command runs.

    makd leaderboard runs/glue-cpu                                  # tables on stdout
    makd leaderboard results/glue-cpu/*.csv --csv lb.csv --markdown table2.md --plot lambda.png

Wire it into a `makd` parser with `add_leaderboard_parser(subparsers)` and dispatch `cmd_leaderboard(args)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def add_costs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--costs", metavar="FILE.csv", help="inference costs re-measured by `makd inference-cost`: they "
                                                     "replace the trials' own, and the tables name the machine")


def add_leaderboard_parser(sub) -> argparse.ArgumentParser:
    """Add the `leaderboard` subcommand; it uses the subparsers' parser_class (makd's OneLineParser)."""
    p = sub.add_parser("leaderboard", help="best λ per task x student x loss, the paper's Table 2, a λ plot",
                       description="Read finished or running sweep experiment dirs and/or trials CSVs (merged; a "
                                   "trial given twice counts once) and build the trials table, the leaderboard and "
                                   "the paper-style table. With no output option both tables go to stdout.")
    p.add_argument("paths", nargs="+", metavar="EXP_DIR_OR_CSV",
                   help="experiment dir written by makd sweep (finished or running) or a trials CSV")
    p.add_argument("--csv", metavar="FILE", help="write the leaderboard (one row per task x student x loss)")
    p.add_argument("--trials-csv", metavar="FILE", help="write the merged per-trial table (finished trials)")
    p.add_argument("--markdown", metavar="FILE|-", help="write the paper-style Markdown table ('-': stdout)")
    p.add_argument("--plot", metavar="FILE.png", help="plot dev score against λ, a panel per task x student (.png/.pdf/.svg)")
    p.add_argument("--html", metavar="FILE.html", help="write the self-contained HTML report (the same page as "
                                                     "`makd report`)")
    p.add_argument("--stage", choices=("final", "search"),
                   help="which stage's trials the tables hold (default: final when the inputs have a final stage, "
                        "else search)")
    p.add_argument("--within", type=float, metavar="POINTS",
                   help="print, per task, the cheapest cell whose mean dev score is within POINTS (x100) of the best")
    add_costs_argument(p)
    p.add_argument("--cost", choices=("params", "latency", "device-hours"), default="params",
                   help="what --within minimises (default params: student parameters; latency: ms per example at "
                        "batch 1)")
    return p


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from makd.errors import UsageError

    if args.plot and Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError("plot", f"expected a .png, .pdf or .svg file name, got {args.plot}")
    if args.within is not None and not args.within >= 0:
        raise UsageError("within", f"expected points >= 0 (e.g. 1.0: one point of the metric x100), got {args.within}")
    if args.html and Path(args.html).suffix.lower() not in (".html", ".htm"):
        raise UsageError("html", f"expected an .html file name, got {args.html}")
    from makd.files import atomic_write_bytes
    from makd_sweep.report.build import build, to_csv_bytes
    from makd_sweep.report.rank import leaderboard_text

    result = build(args.paths, stage=args.stage, costs=args.costs)
    written = []
    if args.csv:
        atomic_write_bytes(Path(args.csv), to_csv_bytes(result.leaderboard))
        written.append(args.csv)
    if args.trials_csv:
        atomic_write_bytes(Path(args.trials_csv), to_csv_bytes(result.trials))
        written.append(args.trials_csv)
    if args.markdown == "-":
        print(result.paper_table_markdown, end="", flush=True)
    elif args.markdown:
        atomic_write_bytes(Path(args.markdown), result.paper_table_markdown.encode())
        written.append(args.markdown)
    if args.plot:
        from makd_sweep.report.plots import plot_lambda_curves

        if plot_lambda_curves(result.trials, args.plot, stage=result.stage, board=result.leaderboard,
                              search=result.search_trials) is None:
            print(f"makd: no λ figure ({args.plot} not written): the methods ran at fewer than two λ values",
                  file=sys.stderr)
        else:
            written.append(args.plot)
    if args.html:
        from makd_sweep.report.html import write_html

        write_html(result, args.paths, args.html)
        written.append(args.html)
    if args.within is not None:
        from makd_sweep.report.pareto import cheapest_within

        picks = cheapest_within(result.leaderboard, args.within, args.cost)
        if picks.empty:
            print(f"makd: --within: no cell has a {args.cost} cost to compare (older trials, or cells at the majority "
                  "class)", file=sys.stderr)
        else:
            print(f"The cheapest cell by {args.cost} within {args.within:g} points of each task's best:")
            print(picks.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            print()
    if not (args.csv or args.trials_csv or args.markdown or args.plot or args.html or args.within is not None):
        print(leaderboard_text(result.leaderboard))
        print()
        print(result.paper_table_markdown, end="", flush=True)
    for path in written:
        print(f"makd: wrote {path}", file=sys.stderr)
    summary = f"makd: {len(result.trials)} finished {result.stage}-stage trial(s) from {len(args.paths)} input(s)"
    other = sum(n for s, n in result.stages.items() if s != result.stage)
    if other:
        summary += f" ({other} finished trial(s) of the other stage: --stage {'search' if result.stage == 'final' else 'final'})"
    if result.unfinished:
        detail = ", ".join(f"{n} {s}" for s, n in sorted(result.unfinished_by_status.items()))
        summary += f"; {result.unfinished} not finished ({detail}), left out of the tables"
    print(summary, file=sys.stderr)
    return 0


COMMANDS = {"leaderboard": cmd_leaderboard}


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (`python -m makd_sweep.report.cli ...`), same behaviour as `makd leaderboard ...`."""
    from makd.errors import OneLineParser, run_command

    parser = OneLineParser(prog="makd")
    add_leaderboard_parser(parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser))
    return run_command(parser, {"leaderboard": cmd_leaderboard},
                       ["leaderboard", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())


def add_report_parser(sub) -> argparse.ArgumentParser:
    """`makd report EXP... -o report.html`: the self-contained HTML page."""
    p = sub.add_parser("report", help="one self-contained HTML page: leaderboard, paper table, Pareto front, curves",
                       description="Read experiment dirs and/or trials CSVs (as makd leaderboard does) and write one "
                                   "HTML page with every figure embedded: open it offline.")
    p.add_argument("paths", nargs="+", metavar="EXP_DIR_OR_CSV")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="where to write the page")
    p.add_argument("--stage", choices=("final", "search"), help="as for makd leaderboard")
    add_costs_argument(p)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from makd.errors import UsageError
    from makd_sweep.report.build import build
    from makd_sweep.report.html import write_html, write_no_report_html

    if Path(args.output).suffix.lower() not in (".html", ".htm"):
        raise UsageError("output", f"expected an .html file name, got {args.output}")
    try:
        result = build(args.paths, stage=args.stage, costs=args.costs)
    except UsageError as err:
        # e.g. a sweep with no finished trial yet: the page says so too (no empty figure), then the usual one line
        write_no_report_html(args.paths, args.output, str(err))
        raise
    write_html(result, args.paths, args.output)
    print(f"makd: wrote {args.output} ({len(result.trials)} finished {result.stage}-stage trial(s), "
          f"{len(result.leaderboard)} leaderboard row(s))", file=sys.stderr)
    return 0
