"""Shared code of the qmail stand-in programs (installed as /var/qmail/standin/qmail_standin.py).

Real qmail compiles its home (/var/qmail) into every program; the stand-in derives it from the
program's own location (`<home>/bin/<program>`), so that the same programs run from a fake tree
in tests and from /var/qmail in a container, and nothing in the environment can move it.

The queue layout is qmail's (queue/{mess,info,local,remote,todo,intd,bounce,pid,lock}), with
mess/, info/, local/ and remote/ split into conf-split's 23 subdirectories (`queue_file`).
"""

from __future__ import annotations

import grp
import os
import pwd
import time

# Every stand-in program imports this module at each start (five per service start, and one
# qmail-local per local delivery): json, threading, pathlib, contextlib, signal and typing are
# imported where they are used, not here (pathlib alone doubled qmail-local's start-up).
# Type checkers treat any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable


def qmail_send_signals() -> set[int]:
    """The signals held blocked from qmail-start's first line until qmail-send has its
    handlers: a reload right after a start must not kill a Python interpreter that is still
    starting (in C the window is a few microseconds; here it is the interpreter's start-up).
    Blocked signals stay pending across execve, so qmail-send still sees them. A function:
    the signal module (with enum) would cost every qmail-local, which never needs it, a
    third of its imports."""
    import signal

    return {signal.SIGTERM, signal.SIGALRM, signal.SIGHUP}


QUEUE_DIRS = ("mess", "info", "local", "remote", "todo", "intd", "bounce", "pid", "lock")
# conf-split (qmail's default, 23): mess/, info/, local/ and remote/ keep message N's file in
# their subdirectory N % SPLIT, so that no directory grows too large; todo/, intd/ and bounce/
# are not split (hier.c's dsplit() calls, and the flag of each fmtqfn() call).
SPLIT = 23
SPLIT_DIRS = ("mess", "info", "local", "remote")


def queue_file(directory: str, number: int) -> str:
    """Message NUMBER's file in queue DIRECTORY, relative to queue/ (qmail's fmtqfn)."""
    if directory in SPLIT_DIRS:
        return f"{directory}/{number % SPLIT}/{number}"
    return f"{directory}/{number}"


# qmail's users and groups (conf-users, conf-groups), and who runs what.
USERS = ("alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails")
GROUPS = ("nofiles", "qmail")


def qmail_home_dir(program_file: str) -> str:
    """The qmail home of a program installed as <home>/bin/<program> (symlinks followed)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(program_file)))


def qmail_home(program_file: str) -> Path:
    """qmail_home_dir() as a Path."""
    from pathlib import Path

    return Path(qmail_home_dir(program_file))


def read_control(home: Path, name: str, default: str | None = None) -> str | None:
    """First line of control/NAME, stripped, like qmail's control_rldef; default if absent."""
    try:
        text = (home / "control" / name).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return default
    line = text.split("\n", 1)[0].strip()
    return line if line else default


def read_control_int(home: Path, name: str, default: int) -> int:
    value = read_control(home, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise OSError(f"control/{name} is not a number: {value!r}") from exc


def read_control_lines(home: Path, name: str) -> list[str] | None:
    """Non-empty, non-comment lines of control/NAME; None if the file does not exist."""
    try:
        text = (home / "control" / name).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    lines = [line.strip() for line in text.split("\n")]
    return [line for line in lines if line and not line.startswith("#")]


def pack_envelope(sender: str, recipients: list[str]) -> bytes:
    """qmail-queue's envelope (fd 1): Fsender NUL, Trecipient NUL ..., and a final NUL."""
    parts = [b"F" + sender.encode("utf-8", "surrogateescape") + b"\0"]
    parts += [b"T" + r.encode("utf-8", "surrogateescape") + b"\0" for r in recipients]
    return b"".join(parts) + b"\0"


def parse_fields(data: bytes) -> list[tuple[str, str]]:
    """The NUL-terminated (letter, value) fields of an envelope, intd/todo, info or local file."""
    fields = []
    for raw in data.split(b"\0"):
        if raw:
            text = raw.decode("utf-8", "surrogateescape")
            fields.append((text[0], text[1:]))
    return fields


def log_text(text: str) -> str:
    """A delivery report as qmail-send logs it: one line, spaces as _, newlines as /."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("/")
        elif ch == " ":
            out.append("_")
        elif ch.isprintable() and ch.isascii():
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def rfc822_date() -> str:
    return time.strftime("%d %b %Y %H:%M:%S -0000", time.gmtime())


def append_standin_log(home: Path, name: str, line: str) -> None:
    """Append to /var/qmail/standin/NAME, a record that real qmail does not keep."""
    with open(home / "standin" / name, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def qmail_ids() -> dict[str, int]:
    """uid of each qmail user and gid of each qmail group; KeyError(name) for a missing one."""
    ids = {}
    for name in USERS:
        try:
            ids[name] = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise KeyError(f"user {name}") from None
    for name in GROUPS:
        try:
            ids[name] = grp.getgrnam(name).gr_gid
        except KeyError:
            raise KeyError(f"group {name}") from None
    return ids


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """qmail's prot_gid / prot_uid: only when running as root (not modelled otherwise)."""
    if os.geteuid() != 0:
        return
    if gid is not None:
        os.setgroups([gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def ensure_fd(fd: int) -> None:
    """qmail-start closes fds 2-6 in its helpers; keep a placeholder so no file lands there."""
    try:
        os.fstat(fd)
    except OSError:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


# The spawn protocol between qmail-send and qmail-lspawn / qmail-rspawn is the stand-in's own
# (one JSON object a line), not qmail's binary one; the process structure is qmail's.


def encode_request(delivery: int, msg: int, sender: str, recipient: str) -> bytes:
    import json

    request = {"d": delivery, "msg": msg, "from": sender, "to": recipient}
    return json.dumps(request).encode("utf-8", "surrogateescape") + b"\n"


def decode_line(line: bytes) -> dict[str, object]:
    import json

    value = json.loads(line.decode("utf-8", "surrogateescape"))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def encode_report(delivery: int, status: str, text: str) -> bytes:
    import json

    report = {"d": delivery, "status": status, "text": text}
    return json.dumps(report).encode("utf-8", "surrogateescape") + b"\n"


def run_spawner(deliver: Callable[[dict[str, object]], tuple[str, str]]) -> int:
    """Main loop of qmail-lspawn and qmail-rspawn: one thread per delivery, as many at once as
    qmail-send asks for; on end of input (qmail-send closed its end) wait for the deliveries in
    flight, report them, and exit 0. Like qmail's spawns, no handler for TERM."""
    import contextlib
    import threading

    lock = threading.Lock()
    workers: list[threading.Thread] = []

    def work(request: dict[str, object]) -> None:
        try:
            status, text = deliver(request)
        except Exception as exc:  # a bug or a system error: qmail's spawns defer in that case
            status, text = "deferral", f"Unable to run the delivery: {exc}. (#4.3.0)\n"
        report = encode_report(int(str(request["d"])), status, text)
        # If qmail-send is gone the message stays queued for its next run.
        with lock, contextlib.suppress(OSError):
            os.write(1, report)

    ensure_fd(2)
    requests = os.fdopen(0, "rb", buffering=0)
    buffer = b""
    while True:
        chunk = requests.read(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            worker = threading.Thread(target=work, args=(decode_line(line),))
            worker.start()
            workers.append(worker)
    for worker in workers:
        worker.join()
    return 0
