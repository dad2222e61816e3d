"""`verify`: read-only checks of an LWQ-style qmail installation under /var/qmail.

Every check yields `Finding`s (severity, path, message, fix); nothing here writes anything.
A check that cannot look (a missing directory, a symlink loop, a permission error) reports
that as a finding instead of raising.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import qmail_send_systemd
from qmail_send_systemd.accounts import Account, lookup_group, lookup_user

ERROR = "error"
WARNING = "warning"

QMAIL_HOME = Path(qmail_send_systemd.QMAIL_HOME)
# What the unit, qmail-start's children, and the users' mail programs execute.
PROGRAMS = (
    "qmail-start",
    "qmail-send",
    "qmail-lspawn",
    "qmail-rspawn",
    "qmail-clean",
    "qmail-tcpok",
    "qmail-queue",
    "qmail-inject",
    "sendmail",
)
USERS = ("alias", "qmaild", "qmaill", "qmailp", "qmailq", "qmailr", "qmails")
GROUPS = ("nofiles", "qmail")
# Without these, mail to root and bounces to postmaster/MAILER-DAEMON end in a double
# bounce, which qmail-send discards.
ALIAS_FILES = (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon")
INSTALL_HINT = "install qmail as LWQ describes (make setup check, then config-fast HOSTNAME)"
IDS_HINT = "create the qmail users and groups as qmail's INSTALL.ids says"


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity}: {self.path}: {self.message} (fix: {self.fix})"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    if exc.errno == errno.ENOENT:
        return "is missing"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be examined: permission denied"
    if exc.errno == errno.ENOTDIR:
        return "is missing (a parent is not a directory)"
    return f"cannot be examined: {exc.strerror or exc}"


def _stat(path: Path) -> os.stat_result | OSError:
    try:
        return path.stat()
    except OSError as exc:
        return exc


def _readable_by(st: os.stat_result, account: Account | None) -> bool:
    """Whether the mode lets `account` (anyone, when None) read the file."""
    if account is not None and st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if account is not None and st.st_gid == account.gid:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _can_open(path: Path) -> OSError | None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return exc
    return None


class Checker:
    """One pass over <root>; `run()` yields every finding."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / QMAIL_HOME

    def finding(self, severity: str, path: Path, message: str, fix: str) -> Finding:
        return Finding(severity, str(path), message, fix)

    def stat_directory(self, path: Path, what: str) -> os.stat_result | Finding:
        """`path`'s stat, or the error that `what` (qmail's name for it) is no directory."""
        st = _stat(path)
        if isinstance(st, OSError) or not stat.S_ISDIR(st.st_mode):
            why = _why(st) if isinstance(st, OSError) else "is not a directory"
            return self.finding(ERROR, path, f"{what} {why}", INSTALL_HINT)
        return st

    def check_owned_by_qmailq(self, path: Path, st: os.stat_result, fix: str) -> Iterator[Finding]:
        qmailq = lookup_user(self.root, "qmailq")
        if qmailq is not None and st.st_uid != qmailq.uid:
            yield self.finding(
                ERROR, path, f"is owned by uid {st.st_uid}, not qmailq ({qmailq.uid})", fix
            )

    def run(self) -> list[Finding]:
        checks: tuple[Callable[[], Iterator[Finding]], ...] = (
            self.check_programs,
            self.check_accounts,
            self.check_queue,
            self.check_control,
            self.check_aliases,
        )
        return [finding for check in checks for finding in check()]

    # -- programs ----------------------------------------------------------------------------

    def check_programs(self) -> Iterator[Finding]:
        bindir = self.home / "bin"
        found = self.stat_directory(bindir, "qmail's program directory")
        if isinstance(found, Finding):
            yield found
            return
        for name in PROGRAMS:
            yield from self.check_program(bindir / name)

    def check_program(self, path: Path) -> Iterator[Finding]:
        st = _stat(path)
        if isinstance(st, OSError):
            yield self.finding(ERROR, path, _why(st), INSTALL_HINT)
            return
        mode = "4711" if path.name == "qmail-queue" else "711"
        if not stat.S_ISREG(st.st_mode):
            yield self.finding(ERROR, path, "is not a regular file", INSTALL_HINT)
        elif not st.st_mode & 0o111:
            yield self.finding(ERROR, path, "is not executable", f"chmod {mode} {path}")
        if path.name != "qmail-queue":
            return
        # .qmail forwards and sendmail run qmail-queue as ordinary users: it must become
        # qmailq to write into the queue.
        fix = f"chown qmailq {path} && chmod 4711 {path}"
        if not st.st_mode & stat.S_ISUID:
            yield self.finding(ERROR, path, "lacks its set-uid bit", fix)
        yield from self.check_owned_by_qmailq(path, st, fix)

    # -- users and groups --------------------------------------------------------------------

    def check_accounts(self) -> Iterator[Finding]:
        for user in USERS:
            if lookup_user(self.root, user) is None:
                yield self.finding(ERROR, self.root / "etc/passwd", f"no user {user}", IDS_HINT)
        for group in GROUPS:
            if lookup_group(self.root, group) is None:
                yield self.finding(ERROR, self.root / "etc/group", f"no group {group}", IDS_HINT)

    # -- queue -------------------------------------------------------------------------------

    def check_queue(self) -> Iterator[Finding]:
        queue = self.home / "queue"
        st = self.stat_directory(queue, "the queue")
        if isinstance(st, Finding):
            yield st
            return
        yield from self.check_owned_by_qmailq(
            queue,
            st,
            "stop qmail-send and repair the queue's owners (queue-fix, or make setup check)",
        )

    # -- control files -----------------------------------------------------------------------

    def check_control(self) -> Iterator[Finding]:
        control = self.home / "control"
        try:
            names = sorted(os.listdir(control))
        except OSError as exc:
            yield self.finding(
                ERROR, control, f"qmail's control directory {_why(exc)}", INSTALL_HINT
            )
            return
        if "me" not in names:
            yield self.finding(
                ERROR,
                control / "me",
                "is missing: qmail-send cannot name this host",
                f"run config-fast with this host's name, or write it into {control / 'me'}",
            )
        for name in names:
            yield from self.check_control_file(control / name)
        yield from self.check_defaultdelivery(control / "defaultdelivery")

    def check_control_file(self, path: Path) -> Iterator[Finding]:
        # qmail-send (qmails), qmail-remote (qmailr), qmail-local and qmail-inject (any user)
        # read control files: each one must be world-readable.
        st = _stat(path)
        if isinstance(st, OSError):
            yield self.finding(ERROR, path, _why(st), f"repair or remove {path}")
            return
        if not stat.S_ISDIR(st.st_mode):
            yield from self.check_readable(path, st, None, "qmail's users", f"repair {path}")

    def check_readable(
        self, path: Path, st: os.stat_result, reader: Account | None, who: str, fix: str
    ) -> Iterator[Finding]:
        failure = _can_open(path)
        if failure is not None:
            yield self.finding(ERROR, path, f"cannot be read: {failure.strerror}", fix)
        elif not _readable_by(st, reader):
            yield self.finding(ERROR, path, f"is not readable by {who}", f"chmod 644 {path}")

    def check_defaultdelivery(self, path: Path) -> Iterator[Finding]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return  # absent: ./Maildir/ is used; unreadable: reported above
        if "~" in text:
            yield self.finding(
                WARNING,
                path,
                "contains '~': qmail does not expand it (a line not starting with . / | # "
                "is a forward address, so mail would bounce and be discarded)",
                f"write ./Maildir/ (relative to each user's home) into {path}",
            )

    # -- aliases -----------------------------------------------------------------------------

    def check_aliases(self) -> Iterator[Finding]:
        alias = lookup_user(self.root, "alias")
        home = self.root / (alias.home if alias else "/var/qmail/alias").lstrip("/")
        for name in ALIAS_FILES:
            path = home / name
            fix = (
                f"echo you@example.net > {path} (or: qmail-send-systemd setup --forward-root "
                "ADDRESS)"
            )
            st = _stat(path)
            if isinstance(st, OSError):
                yield self.finding(ERROR, path, f"{_why(st)}: that mail is discarded", fix)
                continue
            yield from self.check_readable(path, st, alias, "the alias user", fix)


def check(root: Path) -> list[Finding]:
    from qmail_send_systemd import submission_config  # the TLS route's files (setup --tls)

    return Checker(root).run() + list(submission_config.check(root))


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def _counts(findings: list[Finding]) -> tuple[int, int]:
    errors = sum(f.severity == ERROR for f in findings)
    return errors, len(findings) - errors


def render_text(findings: list[Finding]) -> str:
    errors, warnings = _counts(findings)
    lines = [f.line() for f in findings]
    if findings:
        lines.append(f"verify: {errors} error(s), {warnings} warning(s)")
    else:
        lines.append("verify: the qmail installation is complete")
    return "\n".join(lines)


def render_json(findings: list[Finding]) -> str:
    errors, warnings = _counts(findings)
    document = {
        "ok": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "findings": [asdict(f) for f in findings],
    }
    return json.dumps(document, indent=2)
