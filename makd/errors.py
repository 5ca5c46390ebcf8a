"""One exception type for bad user input, so the CLI can print one line and exit 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the field or file and what is wrong."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
