"""Bad user input becomes one line and exit code 2: the exception type, and the CLI pieces every command shares
(the library's commands in makd/cli.py and the sweep commands in makd_sweep/, wired together by makd_sweep/main.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: the message names the field or file and what is wrong."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):
        # copied and pickled whole (Ray copies a trial's exception to report it): (field, problem), not the message
        return type(self), (self.field, self.problem)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a misuse is one line (`makd: error: ...`) and exit 2, like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(self.prog, message)


def run_command(parser: argparse.ArgumentParser, commands: dict[str, Callable[[argparse.Namespace], int]],
                argv: Sequence[str] | None) -> int:
    """Parse, dispatch on args.command, and turn a UsageError into one line on stderr and exit code 2."""
    try:
        args = parser.parse_args(argv)
        return commands[args.command](args)
    except UsageError as err:
        print(f"makd: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:  # Ctrl+C, or a sweep stopped by a signal (makd_sweep.interrupt.SweepStopped)
        print(f"makd: {err or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
