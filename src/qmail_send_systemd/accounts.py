"""qmail's users and groups, from NSS on the live system or from <root>/etc/{passwd,group}."""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from pathlib import Path

LIVE_ROOT = Path("/")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = ""


def _entries(path: Path, min_fields: int) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
    return [row for row in rows if len(row) >= min_fields and row[2].isdigit()]


def _passwd_rows(root: Path) -> list[Account]:
    return [
        Account(row[0], int(row[2]), int(row[3]), row[5], row[6])
        for row in _entries(root / "etc/passwd", 7)
        if row[3].isdigit()
    ]


def lookup_user(root: Path, name: str) -> Account | None:
    """The account as qmail-getpw would see it: NSS when root is /, else <root>/etc/passwd."""
    if root == LIVE_ROOT:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell)
    return next((account for account in _passwd_rows(root) if account.name == name), None)


def all_users(root: Path) -> list[Account]:
    """Every account NSS enumerates when root is /, else every one in <root>/etc/passwd."""
    if root == LIVE_ROOT:
        return [
            Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell)
            for pw in pwd.getpwall()
        ]
    return _passwd_rows(root)


def lookup_group(root: Path, name: str) -> int | None:
    """The group's gid: NSS when root is /, else <root>/etc/group."""
    if root == LIVE_ROOT:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    for row in _entries(root / "etc/group", 3):
        if row[0] == name:
            return int(row[2])
    return None


def group_name(root: Path, gid: int) -> str:
    """The name of group `gid` (NSS when root is /, else <root>/etc/group), or the number."""
    if root == LIVE_ROOT:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    for row in _entries(root / "etc/group", 3):
        if int(row[2]) == gid:
            return row[0]
    return str(gid)
