"""The helper's expected failures: one line for the administrator, a fix, and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class HelperError(Exception):
    """An expected failure: printed as one line with its fix, never as a traceback."""

    code = EXIT_FAILED

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class UsageError(HelperError):
    """Bad command line or a request the helper cannot interpret (exit 2)."""

    code = EXIT_USAGE
