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
# SyslogLevelPrefix: "<1>" alert, "<3>" error, "<4>" warning, "<6>" info. qmail's own lines get
# splogger's two (PRIORITIES); the helper's own lines for the service may also be errors.
PRIORITIES: tuple[tuple[bytes, bytes], ...] = ((b"alert:", b"<1>"), (b"warning:", b"<4>"))
HELPER_PRIORITIES = (*PRIORITIES, (b"error:", b"<3>"))
INFO = b"<6>"


def read_default_delivery(root: Root) -> str:
    """What qmail-start gets as its defaultdelivery: control/defaultdelivery without its
    trailing newlines (LWQ's `cat` in backquotes), or ./Maildir/ when it is absent or blank."""
    path = os.path.join(root, QMAIL_HOME, "control/defaultdelivery")
    try:
        with open(path, "rb") as file:
            text = os.fsdecode(file.read()).rstrip("\n")
    except FileNotFoundError:
        return DEFAULT_DELIVERY
    except OSError as exc:
        # The unit reads it as root without CAP_DAC_OVERRIDE: its owner root needs u+r.
        raise HelperError(
            f"cannot read {path}: {exc.strerror}",
            f"chown root {path} && chmod u+r {path}, or remove it",
        ) from exc
    if "\0" in text:
        raise HelperError(f"{path} contains a NUL byte", f"rewrite {path} as plain text")
    return text if text.strip() else DEFAULT_DELIVERY


def default_delivery(root: Root) -> str:
    """read_default_delivery(), with a warning in the journal when it holds a '~'."""
    text = read_default_delivery(root)
    if "~" in text:
        path = os.path.join(root, QMAIL_HOME, "control/defaultdelivery")
        say(
            f"warning: {path} contains '~', which qmail does not expand: such a line is a "
            f"forward address (fix: write {DEFAULT_DELIVERY} instead)"
        )
    return text


def stderr_is_journal() -> bool:
    """Whether fd 2 is the journal stream that systemd names in $JOURNAL_STREAM (DEV:INODE,
    systemd.exec(5)): only there does a "<N>" prefix set a priority instead of being text."""
    dev, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(inode))


def say(line: str) -> None:
    """Write one of the helper's own lines for the service (exec-qmail-start) to stderr; in the
    journal it carries the priority its first word names, as qmail's lines do through
    log-priority (`journalctl -u qmail-send -p warning` shows a `warning:` line)."""
    prefix = b""
    if stderr_is_journal():
        prefix = priority(os.fsencode(line), HELPER_PRIORITIES)
    print(prefix.decode("ascii") + line, file=sys.stderr, flush=True)


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


def priority(line: bytes, priorities: tuple[tuple[bytes, bytes], ...] = PRIORITIES) -> bytes:
    """The "<N>" prefix that the line's first word names (info when it names none)."""
    for start, prefix in priorities:
        if line.startswith(start):
            return prefix
    return INFO


def prefixed(line: bytes) -> bytes:
    return priority(line) + line


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
