"""A qmail queue in qmail's own layout, written directly rather than by the stand-in: for the
status tests and the status bench (which also runs it inside a booted root, so stdlib only
and Python 3.9).

The layout is qmail's INTERNALS and hier.c: mess/, info/, local/ and remote/ split into
conf-split's 23 subdirectories (message N in N % 23), todo/, intd/ and bounce/ flat; info/N is
`F` + the envelope sender + NUL, local/N and remote/N one NUL-terminated record per recipient,
`T` while its delivery is to do and `D` once done; a queued envelope (todo/N) is qmail-queue's
`uUID\\0pPID\\0Fsender\\0Trecipient\\0...\\0`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

SPLIT = 23
SPLIT_DIRS = ("mess", "info", "local", "remote")
FLAT_DIRS = ("pid", "intd", "todo", "bounce", "lock")


def make_queue(root: Path) -> Path:
    """An empty queue at root/var/qmail/queue; returns its path."""
    queue = root / "var/qmail/queue"
    for name in FLAT_DIRS:
        (queue / name).mkdir(parents=True, exist_ok=True)
    for name in SPLIT_DIRS:
        for split in range(SPLIT):
            (queue / name / str(split)).mkdir(parents=True, exist_ok=True)
    return queue


def split_file(queue: Path, name: str, number: int) -> Path:
    return queue / name / str(number % SPLIT) / str(number)


def _write(path: str, data: bytes, mtime: float | None = None) -> None:
    """`data` into a new file at `path` (mode 0666 less the umask, as open() makes it), dated
    `mtime` if given: one open, write, futimens and close, where a queue of 10,000 messages
    writes 30,000 files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, data)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def add_message(
    queue: Path,
    number: int,
    *,
    now: float,
    sender: str = "me@example.org",
    local: Sequence[str] = (),
    remote: Sequence[str] = ("friend@example.net",),
    done: Sequence[str] = (),
    age: float = 60.0,
    preprocessed: bool = True,
) -> None:
    """Message NUMBER as qmail-queue leaves it (todo/) or qmail-send after preprocessing it,
    queued `age` seconds before `now` (info/'s mtime; mess/ is 5 s older)."""
    top, split = os.fspath(queue), f"{number % SPLIT}/{number}"
    _write(f"{top}/mess/{split}", b"Subject: test\n\nbody\n", now - age - 5)
    if not preprocessed:
        envelope = f"u1000\0p{number}\0F{sender}\0" + "".join(f"T{r}\0" for r in remote) + "\0"
        _write(f"{top}/todo/{number}", envelope.encode())
        return
    _write(f"{top}/info/{split}", b"F" + sender.encode() + b"\0", now - age)
    for channel, recipients in (("local", local), ("remote", remote)):
        records = [("D" if r in done else "T") + r for r in recipients]
        if records:
            _write(f"{top}/{channel}/{split}", b"".join(r.encode() + b"\0" for r in records))


def fill(root: Path, count: int, now: float) -> Path:
    """A queue of `count` preprocessed messages, two remote recipients each, up to 500 s old."""
    queue = make_queue(root)
    for number in range(1, count + 1):
        add_message(queue, number, now=now, age=float(number % 500), remote=("a@x.org", "b@y.org"))
    return queue
