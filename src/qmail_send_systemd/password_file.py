"""The password file an administrator hands to setup: its one line, checked.

A leaf: submission_config (msmtprc's password) and oauth (a client secret) read it alike.
"""

from __future__ import annotations

from pathlib import Path

from qmail_send_systemd.errors import UsageError


def _usage(message: str, hint: str = "") -> UsageError:
    return UsageError(message, hint)


def read_password(path: str) -> str:
    """The password: the file's one line (a final newline is not part of it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _usage(f"cannot read the password file {path}: {exc.strerror}") from exc
    text = data.decode("utf-8", errors="replace")
    body = text[:-1] if text.endswith("\n") else text
    body = body[:-1] if body.endswith("\r") else body
    if not body:
        raise _usage(f"the password file {path} is empty", "put the password on its one line")
    if "\n" in body or "\r" in body or "\0" in body or not all(c.isprintable() for c in body):
        raise _usage(
            f"the password file {path} holds more than one line or control characters",
            "put the password alone on the file's first and only line",
        )
    return body
