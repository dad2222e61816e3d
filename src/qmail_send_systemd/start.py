"""`exec-qmail-start` (the unit's ExecStart) and `log-priority` (qmail-start's logger).

exec-qmail-start replaces itself with qmail-start, which execs into qmail-send: the unit's main
PID is qmail-send, so SIGTERM and SIGALRM from systemd reach it. qmail-start runs the logger
(`qmail-start defaultdelivery [logger arg ...]`, qmail-start(8)) as qmaill, with qmail-send's
activity record on its stdin; log-priority gives each line the journal priority that splogger
would give it in syslog.
"""

from __future__ import annotations

import os
import sys

from qmail_send_systemd import QMAIL_HOME
from qmail_send_systemd.errors import HelperError

# Not typing.TYPE_CHECKING: importing typing (and pathlib) would cost more than this module's
# own work at each service start. Type checkers treat any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO, Union

    Exec = Callable[[str, list[str]], object]
    Root = Union[str, os.PathLike[str]]  # an alias is an expression: no `|` on Python 3.9

DEFAULT_DELIVERY = "./Maildir/"
ENTRY_POINT = "/usr/sbin/qmail-send-systemd"
# SyslogLevelPrefix: "<1>" alert, "<4>" warning, "<6>" info.
PRIORITIES: tuple[tuple[bytes, bytes], ...] = ((b"alert:", b"<1>"), (b"warning:", b"<4>"))
INFO = b"<6>"


def default_delivery(root: Root) -> str:
    """control/defaultdelivery without its trailing newlines (LWQ's `cat` in backquotes)."""
    path = os.path.join(root, QMAIL_HOME, "control/defaultdelivery")
    try:
        with open(path, "rb") as file:
            text = os.fsdecode(file.read()).rstrip("\n")
    except FileNotFoundError:
        return DEFAULT_DELIVERY
    except OSError as exc:
        raise HelperError(
            f"cannot read {path}: {exc.strerror}", f"chmod 644 {path}, or remove it"
        ) from exc
    if "\0" in text:
        raise HelperError(f"{path} contains a NUL byte", f"rewrite {path} as plain text")
    if not text.strip():
        return DEFAULT_DELIVERY
    if "~" in text:
        print(
            f"warning: {path} contains '~', which qmail does not expand: such a line is a "
            f"forward address (fix: write {DEFAULT_DELIVERY} instead)",
            file=sys.stderr,
        )
    return text


def qmail_start_argv(root: Root) -> tuple[str, list[str]]:
    program = os.path.join(root, QMAIL_HOME, "bin/qmail-start")
    return program, ["qmail-start", default_delivery(root), ENTRY_POINT, "log-priority"]


def exec_qmail_start(root: Root, execv: Exec = os.execv) -> int:
    program, argv = qmail_start_argv(root)
    sys.stderr.flush()
    try:
        execv(program, argv)
    except OSError as exc:
        raise HelperError(
            f"cannot execute {program}: {exc.strerror}",
            "install qmail, then: qmail-send-systemd verify",
        ) from exc
    return 0  # only reached when execv is replaced (tests)


def prefixed(line: bytes) -> bytes:
    for start, prefix in PRIORITIES:
        if line.startswith(start):
            return prefix + line
    return INFO + line


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def log_priority(source: BinaryIO, fd: int) -> int:
    """Copy lines from source to fd as they come, each with its priority prefix.

    Reads until end of file whatever happens to the output: if the logger stopped reading,
    qmail-send would block on (or die of) a full pipe.
    """
    writable = True
    for line in iter(source.readline, b""):
        if not writable:
            continue
        record = prefixed(line if line.endswith(b"\n") else line + b"\n")
        try:
            _write_all(fd, record)
        except OSError:
            writable = False
    return 0
