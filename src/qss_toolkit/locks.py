"""The one file-lock helper: the rootfs cache's keys and run copies, and a repository publish.

An exclusive `flock` on a lock file beside what it guards: the kernel drops it when the holder
dies, so a killed run never leaves a lock behind (the file itself may stay; it means nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created if missing) while the block runs.

    Yields True once held. With `wait=False` it does not wait for another holder: it yields
    False at once, and the block must then leave alone what the lock guards.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
