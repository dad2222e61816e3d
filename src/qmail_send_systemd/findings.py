"""`Finding`: one problem a check found, with the file it is about and the fix (verify's unit).

A leaf: verify and submission_config both report findings, and neither imports the other for it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity}: {self.path}: {self.message} (fix: {self.fix})"


def reach_fix(root: Path, path: Path, uid: int | None, gid: int) -> tuple[Path, str] | None:
    """The first directory below `root` down to `path`'s parent that the reader (uid, gid; any
    user when uid is None) may not search, and the fix that grants exactly that search (x) and
    nothing else; None when every one may be passed (or cannot be examined: other checks say
    so). The mode bits decide, as for read_fix: no capability helps qmail's programs. `root`
    itself is / on the running system, or the image under --root (not the system's)."""
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        return None
    directory = root
    for part in parts:
        directory = directory / part
        try:
            st = directory.stat()
        except OSError:
            return None
        if uid is None or (st.st_uid != uid and st.st_gid != gid):
            bit, who = stat.S_IXOTH, "o"
        elif st.st_uid == uid:
            bit, who = stat.S_IXUSR, "u"
        else:
            bit, who = stat.S_IXGRP, "g"
        if not st.st_mode & bit:
            return directory, f"chmod {who}+x {directory}"
    return None
