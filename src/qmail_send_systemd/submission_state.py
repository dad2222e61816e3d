"""The submission route's state: qmailr's private directory, and the one problem it reports.

/var/lib/qmail-send-systemd/submission (qmailr, 0700) is the route's only writable place: the
unit's ProtectSystem=full makes /etc read-only, and our qmail-remote and msmtp run as qmailr.
It holds the OAuth grant and the cached access token (oauth.py), and `problem`: what the last
delivery attempt found that only the administrator can fix (a revoked grant, a smarthost that
refuses the envelope sender), with the one command that fixes it. qmail-remote writes it with the
deferral it reports to qmail-send, and removes it after the next delivery the smarthost accepts;
`status` and `verify` show it. The package's purge removes the whole directory (postrm).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from qmail_send_systemd.findings import Finding

STATE_DIR = "var/lib/qmail-send-systemd/submission"  # relative to the root
PROBLEM = "problem"
DIR_MODE = 0o700
SECRET_MODE = 0o600


def path(root: str | Path, name: str) -> str:
    return os.path.join(str(root), STATE_DIR, name)


def make_dir(root: Path, uid: int, gid: int) -> None:
    """Create (or repair) the directory as its one writer needs it: qmailr's, 0700."""
    directory = root / STATE_DIR
    # Parents made here are root's and 0755 whatever the umask: qmailr must pass through them.
    # list(): a Path.parents sequence is sliceable only from Python 3.10 (Debian 11 runs 3.9).
    for parent in reversed(list(directory.relative_to(root).parents)[:-1]):
        if not (root / parent).is_dir():
            (root / parent).mkdir()
            os.chmod(root / parent, 0o755)  # noqa: S103 - a directory others pass
    directory.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chown(directory, uid, gid)
    os.chmod(directory, DIR_MODE)


def write_private(file: str, data: bytes) -> None:
    """Replace `file` atomically, 0600, owned as its directory is (root writing it for qmailr
    leaves it qmailr's)."""
    import tempfile  # only when a state is written: status and verify only read it

    directory = os.path.dirname(file)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), SECRET_MODE)
            st = os.stat(directory)
            if os.geteuid() == 0:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def record(root: str | Path, kind: str, problem: str, fix: str) -> None:
    """Remember what blocks delivery (best effort: without the directory, the journal's deferral
    line still says it)."""
    import contextlib
    import json

    entry = {"kind": kind, "problem": problem, "fix": fix, "time": int(time.time())}
    with contextlib.suppress(OSError):
        write_private(path(root, PROBLEM), json.dumps(entry).encode())


def clear(root: str | Path, kind: str | None = None) -> None:
    """Forget the problem (of that kind only, when given): the smarthost accepted mail again."""
    import contextlib

    file = path(root, PROBLEM)
    if kind is not None and (read(root) or {}).get("kind") != kind:
        return
    with contextlib.suppress(OSError):
        os.unlink(file)


def read(root: str | Path) -> dict[str, str] | None:
    """The problem recorded, if any. json is imported only when there is one: status reads
    this at every run (json and re: 9 ms of its start)."""
    try:
        with open(path(root, PROBLEM), encoding="utf-8") as f:
            text = f.read()
    except (OSError, ValueError):  # ValueError: not UTF-8
        return None
    import json

    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not all(k in entry for k in ("problem", "fix")):
        return None
    return {k: str(v) for k, v in entry.items()}


def _when(entry: dict[str, str]) -> str:
    stamp = entry.get("time", "")
    if not stamp.isdigit():
        return ""
    return " (since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(stamp))) + ")"


def attention(root: str | Path) -> list[dict[str, str]]:
    """`status`: the route's problem, as one of the report's attention entries."""
    entry = read(root)
    if entry is None:
        return []
    return [{"problem": entry["problem"] + _when(entry), "fix": entry["fix"]}]


def check(root: Path) -> Iterator[Finding]:
    """`verify`: the same problem as an error (mail waits until it is fixed)."""
    from qmail_send_systemd.findings import ERROR, Finding

    entry = read(root)
    if entry is not None:
        yield Finding(ERROR, path(root, PROBLEM), entry["problem"] + _when(entry), entry["fix"])
