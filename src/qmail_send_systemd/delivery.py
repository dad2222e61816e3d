"""How qmail delivers a local address, modelled once for verify: who receives it, which
dot-qmail file qmail-local follows for it, and what that file (or the default delivery) does.

Who: qmail-lspawn(8) looks the lower-cased address up in users/cdb (qmail-users(5): an exact
`=` entry, else the longest `+` prefix), and otherwise asks qmail-getpw(8): the longest prefix
of the address, cut at a `-`, that names an account with a uid other than 0 and a home
directory it owns; the rest is the extension. Every other address belongs to the `alias` user,
with the whole address as its extension.

Which file: qmail-local(8) lower-cases the extension and turns its dots into colons
(dot-qmail(5)), then takes `.qmail-EXT`, else `.qmail-EXT-default` cut back at each `-` from
the most specific to `.qmail-default`; for an address without an extension, `.qmail` (then,
as qmail-local.c's search loop does, `.qmaildefault`). With an extension and no such file it
bounces the mail; an empty file, or no file for the bare user, means the default delivery.

Everything here reads; paths are under `root` (`/`, or --root for a fake tree).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from qmail_send_systemd import QMAIL_HOME
from qmail_send_systemd.accounts import Account, lookup_user

BREAK = "-"  # conf-break
ALIAS_USER = "alias"  # conf-users
# qmail-getpw copies a prefix into a 32-byte buffer: a longer one never names an account.
USERNAME_MAX = 32
# conf-patrn: qmail-local defers when a home directory or a .qmail file has these mode bits.
PATTERN_WRITABLE = 0o002


@dataclass(frozen=True)
class Recipient:
    """Whom qmail-local runs as for an address, and the dash and extension it is given."""

    account: Account
    dash: str
    ext: str


def under(root: Path, path: str) -> Path:
    """An absolute path of the system `root` describes, as seen from here."""
    return root / path.lstrip("/")


def _owns_home(root: Path, account: Account) -> bool:
    try:
        return under(root, account.home).stat().st_uid == account.uid
    except OSError:
        return False


def from_assign(root: Path, local: str) -> Recipient | None:
    """users/assign's entry for `local`, when qmail-newu compiled it into users/cdb.

    qmail-lspawn reads the cdb; verify reads its source, users/assign, which is what the
    administrator writes (qmail-users(5)). Without users/cdb qmail ignores users/assign.
    """
    users = under(root, QMAIL_HOME) / "users"
    if not (users / "cdb").exists():
        return None
    try:
        text = (users / "assign").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lower = local.lower()
    best: tuple[int, Recipient] | None = None
    for line in text.split("\n"):
        if line == ".":
            break
        fields = line[1:].split(":")
        if not line or line[0] not in "=+" or len(fields) < 7:
            continue
        key, user, uid, gid, home, dash, ext = fields[:7]
        if not (uid.isdigit() and gid.isdigit()):
            continue
        account = Account(user, int(uid), int(gid), home)
        if line[0] == "=" and key.lower() == lower:
            return Recipient(account, dash, ext)
        if (
            line[0] == "+"
            and lower.startswith(key.lower())
            and (best is None or len(key) > best[0])
        ):
            best = (len(key), Recipient(account, dash, ext + local[len(key) :]))
    return best[1] if best else None


def from_passwd(root: Path, local: str) -> Recipient | None:
    """qmail-getpw(8): the longest prefix naming a user who may receive mail, else alias."""
    cut = len(local)
    while True:
        if cut < USERNAME_MAX and (cut == len(local) or local[cut] == BREAK):
            account = lookup_user(root, local[:cut].lower())
            if account is not None and account.uid != 0 and _owns_home(root, account):
                if cut == len(local):
                    return Recipient(account, "", "")
                return Recipient(account, BREAK, local[cut + 1 :])
        if cut == 0:
            break
        cut -= 1
    alias = lookup_user(root, ALIAS_USER)
    return Recipient(alias, BREAK, local) if alias else None


def recipient(root: Path, local: str) -> Recipient | None:
    """Whom qmail-lspawn hands the local part `local` to (None: no alias user either)."""
    return from_assign(root, local) or from_passwd(root, local)


def safe_extension(ext: str) -> str:
    """dot-qmail(5): dots become colons, for security; upper case becomes lower, for convenience."""
    return ext.lower().replace(".", ":")


def dot_qmail_names(dash: str, ext: str) -> list[str]:
    """The files qmail-local tries, in order (qmail-local.c's qmesearch)."""
    safe = safe_extension(ext)
    names = [f".qmail{dash}{safe}"]
    for cut in range(len(safe), -1, -1):
        if cut == 0 or safe[cut - 1] == BREAK:
            names.append(f".qmail{dash}{safe[:cut]}default")
    return names


@dataclass(frozen=True)
class Lookup:
    """The dot-qmail file that qmail-local follows for one address."""

    address: str
    recipient: Recipient
    home: Path
    home_st: os.stat_result | None  # None: the home directory is missing (qmail-local defers)
    looked_for: tuple[Path, ...]
    path: Path | None  # None: no file exists (bounce with an extension, else default delivery)
    st: os.stat_result | None = None  # None with a path: it exists but cannot be examined here

    @property
    def bounces(self) -> bool:
        return self.home_st is not None and self.path is None and bool(self.recipient.dash)


def lookup(root: Path, address: str, found: Recipient) -> Lookup:
    """qmesearch: the first name that opens as a regular file; a directory or any other
    non-file is passed over, and so is a name that does not resolve (missing, a symlink loop),
    as qmail-local does. A name that exists but cannot be examined from here stops the search
    with `st` None: qmail-local, as the recipient, may well read it."""
    home = under(root, found.account.home)
    paths = tuple(home / name for name in dot_qmail_names(found.dash, found.ext))
    try:
        home_st: os.stat_result | None = home.stat()
    except OSError:
        home_st = None
    if home_st is None or not stat.S_ISDIR(home_st.st_mode):
        return Lookup(address, found, home, None, paths, None)
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue
            return Lookup(address, found, home, home_st, paths, path)
        if stat.S_ISREG(st.st_mode):
            return Lookup(address, found, home, home_st, paths, path, st)
    return Lookup(address, found, home, home_st, paths, None)


@dataclass(frozen=True)
class Instructions:
    """What a .qmail file (or the default delivery) tells qmail-local to do, line by line."""

    empty: bool  # 0 bytes: qmail-local follows the default delivery instead
    blank_first_line: bool  # qmail-local defers: "first line of .qmail file is blank"
    deliveries: int  # mbox, maildir, program and forward lines
    mailboxes: tuple[str, ...]  # the mbox and maildir lines (a maildir ends with "/")


def instructions(text: str) -> Instructions:
    """Parse as qmail-local does: trailing spaces and tabs are cut; `#` is a comment, `.` or
    `/` a mailbox, `|` a program, `+list` a flag, and anything else (`&` or not) a forward."""
    if not text:
        return Instructions(True, False, 0, ())
    lines = [line.rstrip(" \t") for line in text.rstrip("\n").split("\n")]
    deliveries = 0
    mailboxes: list[str] = []
    for line in lines:
        if not line or line[0] in "#+":
            continue
        deliveries += 1
        if line[0] in "./":
            mailboxes.append(line)
    return Instructions(False, not lines[0], deliveries, tuple(mailboxes))


@dataclass(frozen=True)
class MissingMailbox:
    """A mailbox of the default delivery that qmail-local cannot deliver into for a user."""

    path: Path
    line: str
    maildir: bool


def _missing(path: Path) -> bool:
    """Whether `path` surely does not exist (not: cannot be examined)."""
    try:
        path.stat()
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return False


def _may_write(directory: Path, account: Account) -> bool | None:
    try:
        st = directory.stat()
    except OSError:
        return None
    if st.st_uid == account.uid:
        bits = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid == account.gid:
        bits = stat.S_IWGRP | stat.S_IXGRP
    else:
        bits = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & bits == bits


def missing_mailboxes(root: Path, account: Account, delivery: str) -> list[MissingMailbox]:
    """The default delivery's mailboxes that make qmail-local defer this account's mail.

    A maildir line needs the directory with its tmp/ and new/ ("Unable to chdir to maildir",
    "Temporary error on maildir delivery"). An mbox line needs the file, or a directory where
    the account may create it ("Unable to open"). A relative line is relative to the home.
    """
    home = under(root, account.home)
    found = []
    for line in instructions(delivery).mailboxes:
        path = under(root, line) if line.startswith("/") else home / line
        if line.endswith("/"):
            if any(_missing(path / sub) for sub in ("", "tmp", "new")):
                found.append(MissingMailbox(path, line, maildir=True))
        elif _missing(path) and (
            _missing(path.parent) or _may_write(path.parent, account) is False
        ):
            found.append(MissingMailbox(path, line, maildir=False))
    return found
