"""The toolkit's error hierarchy: each error is one line for the user, a hint, and an exit code."""

from __future__ import annotations


class FatalError(Exception):
    """An expected failure: printed as one line (and a hint), never as a traceback."""

    return_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (fix: {self.hint})"


class CheckFailed(FatalError):
    """A build, lint, smoke or repository check did not pass."""

    return_code = 1


class ConfigurationError(FatalError):
    """Bad usage or a broken configuration, found before anything is written."""

    return_code = 2


class MissingToolError(FatalError):
    """An external program the step needs is not installed."""

    return_code = 3


class CommandFailed(FatalError):
    """An external command exited non-zero; the message carries the command line and stderr."""

    return_code = 4
