"""`makd`: the one entry point, above both packages. It wires the library's commands (makd/cli.py: distill,
cache-teacher, finetune-teacher, zoo) and the sweep service's (makd_sweep/cli.py: sweep, submit, jobs, logs, stop,
leaderboard) into one parser; the console script and `makd submit`'s Ray Job run it.
makd/ never imports makd_sweep/: only this module sees both.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from makd import cli as library_cli
from makd.errors import OneLineParser, run_command
from makd_sweep import cli as sweep_cli

COMMANDS = {**library_cli.COMMANDS, **sweep_cli.COMMANDS}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="makd", description=library_cli.DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    library_cli.add_library_commands(sub)
    sweep_cli.add_sweep_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    library_cli.setup_logging()
    return run_command(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
