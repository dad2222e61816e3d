"""qmail's users and groups, from NSS on the live system or from <root>/etc/{passwd,group}."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LIVE_ROOT = Path("/")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def _entries(path: Path, min_fields: int) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
    return [row for row in rows if len(row) >= min_fields and row[2].isdigit()]


def lookup_user(root: Path, name: str) -> Account | None:
    """The account as qmail-getpw would see it: NSS when root is /, else <root>/etc/passwd."""
    if root == LIVE_ROOT:
        import pwd

        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    for row in _entries(root / "etc/passwd", 7):
        if row[0] == name and row[3].isdigit():
            return Account(row[0], int(row[2]), int(row[3]), row[5])
    return None


def lookup_group(root: Path, name: str) -> int | None:
    """The group's gid: NSS when root is /, else <root>/etc/group."""
    if root == LIVE_ROOT:
        import grp

        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    for row in _entries(root / "etc/group", 3):
        if row[0] == name:
            return int(row[2])
    return None
