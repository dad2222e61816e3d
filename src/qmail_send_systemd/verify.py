"""`verify`: read-only checks of an LWQ-style qmail installation under /var/qmail.

Every check yields `Finding`s (severity, path, message, fix); nothing here writes anything.
A check that cannot look (a missing directory, a symlink loop, a permission error) reports
that as a finding instead of raising. The mail checks follow qmail's own rules (delivery.py):
what keeps mail to root, postmaster or mailer-daemon from being delivered is an error; a local
user's own set-up, and a missing Maildir (the mail is deferred, not lost), is a warning.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import qmail_send_systemd
from qmail_send_systemd import (
    delivery,
    oauth_setup,  # an OAuth login's settings and grant
    submission_config,  # the TLS route's files (setup --tls)
    submission_state,  # what blocks the route (a revoked grant, a refused sender)
)
from qmail_send_systemd.accounts import Account, all_users, group_name, lookup_group, lookup_user
from qmail_send_systemd.errors import HelperError
from qmail_send_systemd.findings import ERROR, WARNING, Finding
from qmail_send_systemd.start import read_default_delivery

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
# Addresses that must reach someone: cron writes to root, bounces go to postmaster and come
# from MAILER-DAEMON. Mail that no .qmail file takes bounces, and a bounce that cannot be
# delivered either ends as a double bounce, which qmail-send discards.
ALIAS_ADDRESSES = ("root", "postmaster", "mailer-daemon")
ALIAS_FILES = tuple(f".qmail-{address}" for address in ALIAS_ADDRESSES)  # INSTALL.alias
INSTALL_HINT = "install qmail as LWQ describes (make setup check, then config-fast HOSTNAME)"
IDS_HINT = "create the qmail users and groups as qmail's INSTALL.ids says"
# Where the administrator finds qmail's programs (the live path, also under --root).
QMAIL_BIN = "/" + qmail_send_systemd.QMAIL_HOME + "/bin"
# A local user who can receive mail: a login shell, and not a system account (Debian's and
# Fedora's UID_MIN).
FIRST_USER_UID = 1000
NO_LOGIN_SHELLS = ("nologin", "false", "true")
QUEUELIFETIME = 604800  # qmail-send(8)'s default, in seconds


@dataclass(frozen=True)
class Reader:
    """Who reads a control file: a qmail program as (user, group), or any user (None)."""

    program: str
    user: str | None = None
    group: str | None = None


ANY_USER = Reader("qmail-inject and sendmail, run by any user")
QMAIL_SEND = Reader("qmail-send", "qmails", "qmail")  # qmail-start gives it the qmail group
QMAIL_REMOTE = Reader("qmail-remote", "qmailr", "qmail")
QMAIL_SMTPD = Reader("qmail-smtpd", "qmaild", "nofiles")  # LWQ's tcpserver -u qmaild -g nofiles
# The unit's ExecStart reads it as root, but without CAP_DAC_OVERRIDE (CapabilityBoundingSet=).
HELPER = Reader("qmail-send-systemd run", "root", "root")
# The control files this helper knows (qmail-control(5) and each program's man page), each
# with the one who reads it. Any other file (a TLS patch's servercert.pem, ...) is not judged.
CONTROL_READERS: dict[str, Reader] = {
    **dict.fromkeys(("me", "defaultdomain", "defaulthost", "idhost", "plusdomain"), ANY_USER),
    "qmqpservers": Reader("qmail-qmqpc, run by any user"),
    **dict.fromkeys(
        (
            "bouncefrom",
            "bouncehost",
            "concurrencylocal",
            "concurrencyremote",
            "doublebouncehost",
            "doublebounceto",
            "envnoathost",
            "locals",
            "percenthack",
            "queuelifetime",
            "virtualdomains",
        ),
        QMAIL_SEND,
    ),
    **dict.fromkeys(("helohost", "smtproutes", "timeoutconnect", "timeoutremote"), QMAIL_REMOTE),
    # qmail-newmrh (root) compiles morercpthosts; qmail-smtpd reads only the .cdb.
    **dict.fromkeys(
        (
            "badmailfrom",
            "databytes",
            "localiphost",
            "morercpthosts.cdb",
            "rcpthosts",
            "smtpgreeting",
            "timeoutsmtpd",
        ),
        QMAIL_SMTPD,
    ),
    "defaultdelivery": HELPER,
}


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


def read_fix(root: Path, path: Path, st: os.stat_result, uid: int | None, gid: int) -> str:
    """ "" when the process (uid, gid), or any user when uid is None, may read the file by its
    mode; otherwise the fix that gives exactly that reader read access and widens nothing else.

    qmail's programs run with one group and no supplementary ones (prot_gid), and the unit's
    root has no CAP_DAC_OVERRIDE: the mode bits decide, as the kernel applies them (owner bits
    for the owner, group bits for the group, the others' bits for everyone else).
    """
    if uid is None:
        return "" if st.st_mode & stat.S_IROTH else f"chmod a+r {path}"
    if st.st_uid == uid:
        return "" if st.st_mode & stat.S_IRUSR else f"chmod u+r {path}"
    if st.st_gid == gid:
        return "" if st.st_mode & stat.S_IRGRP else f"chmod g+r {path}"
    if st.st_mode & stat.S_IROTH:
        return ""
    return f"chgrp {group_name(root, gid)} {path} && chmod g+r {path}"


def _listing(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days} days" if days and not rest else f"{seconds} s"


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
            self.check_addresses,
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
        reader = CONTROL_READERS.get(path.name)
        if reader is None:
            return  # not one of qmail's own: a patch's file (servercert.pem, ...) is its business
        st = _stat(path)
        if isinstance(st, OSError):
            yield self.finding(ERROR, path, _why(st), f"repair or remove {path}")
            return
        if stat.S_ISDIR(st.st_mode):
            return
        if reader.user is None:
            fix = read_fix(self.root, path, st, None, 0)
            who = reader.program
        else:
            account = lookup_user(self.root, reader.user)
            gid = lookup_group(self.root, reader.group or "")
            if account is None or gid is None:
                return  # check_accounts reports the missing user or group
            fix = read_fix(self.root, path, st, account.uid, gid)
            who = f"{reader.program} ({reader.user}:{reader.group})"
        if fix:
            yield self.finding(ERROR, path, f"is not readable by {who}", fix)

    def default_delivery(self) -> str | None:
        """The default delivery the unit gives qmail-start (None: it cannot be read)."""
        try:
            return read_default_delivery(self.root)
        except HelperError:
            return None  # check_control_file says why

    def check_defaultdelivery(self, path: Path) -> Iterator[Finding]:
        if not path.exists():
            return  # ./Maildir/ is used
        text = self.default_delivery()
        if text is None:
            return
        if "~" in text:
            yield self.finding(
                WARNING,
                path,
                "contains '~': qmail does not expand it (a line not starting with . / | # "
                "is a forward address, so mail would bounce and be discarded)",
                f"write ./Maildir/ (relative to each user's home) into {path}",
            )
        told = delivery.instructions(text)
        if told.blank_first_line:
            yield self.finding(
                ERROR,
                path,
                "starts with a blank line: qmail-local defers every mail it applies to",
                f"remove the blank first line of {path}",
            )
        elif not told.deliveries:
            yield self.finding(
                ERROR,
                path,
                "has no delivery line: qmail-local accepts the mail it applies to and keeps none",
                f"write ./Maildir/ into {path}",
            )

    # -- addresses ---------------------------------------------------------------------------

    def check_addresses(self) -> Iterator[Finding]:
        """Mail to root, postmaster and mailer-daemon reaches someone (dot-qmail(5)), and every
        local user's mail can be delivered; yields what qmail-local would bounce or defer."""
        defaults: dict[Account, list[str]] = {}  # whose mail falls to the default delivery
        lookups: dict[Path, list[delivery.Lookup]] = {}
        for address in ALIAS_ADDRESSES:
            found = delivery.recipient(self.root, address)
            if found is None:
                continue  # no alias user: check_accounts says so
            result = delivery.lookup(self.root, address, found)
            key = result.path or (result.home if result.home_st is None else result.looked_for[0])
            lookups.setdefault(key, []).append(result)
        for group in lookups.values():
            if (yield from self.check_lookup(group, ERROR)):
                defaults.setdefault(group[0].recipient.account, []).extend(r.address for r in group)
        for account in self.mail_users():
            found = delivery.recipient(self.root, account.name)
            if found is None or found.account != account or found.dash:
                continue  # users/assign gives this name to someone else
            # A user's own set-up is theirs: it never makes qmail's installation incomplete.
            found_file = delivery.lookup(self.root, account.name, found)
            if (yield from self.check_lookup([found_file], WARNING)):
                defaults.setdefault(account, []).append(account.name)
        text = self.default_delivery()
        if text is not None:
            for account, addresses in defaults.items():
                yield from self.check_mailboxes(account, addresses, text)

    def mail_users(self) -> list[Account]:
        """Local users who can receive mail: a login shell, not a system account (by uid), and
        a home directory (qmail-getpw also wants them to own it: recipient() checks that)."""
        return [
            account
            for account in all_users(self.root)
            if account.uid >= FIRST_USER_UID
            and os.path.basename(account.shell) not in NO_LOGIN_SHELLS
            and delivery.under(self.root, account.home).is_dir()
        ]

    def check_lookup(
        self, group: list[delivery.Lookup], severity: str
    ) -> Generator[Finding, None, bool]:
        """Findings (of `severity`) for the file that qmail-local follows for each address of
        `group` (one file, or one missing name); returns whether their mail falls to the
        default delivery."""
        first = group[0]
        account = first.recipient.account
        addresses = "mail to " + _listing([r.address for r in group])
        if first.home_st is None:
            yield self.finding(
                severity,
                first.home,
                f"{account.name}'s home directory is missing: qmail-local defers {addresses}",
                IDS_HINT if account.name == delivery.ALIAS_USER else f"create {first.home}",
            )
            return False
        if first.home_st.st_mode & delivery.PATTERN_WRITABLE:
            yield self.finding(
                severity,
                first.home,
                f"is world-writable: qmail-local defers {addresses}",
                f"chmod o-w {first.home}",
            )
        if first.bounces:
            path = first.looked_for[0]
            others = ", ".join(p.name for p in first.looked_for[1:])
            yield self.finding(
                severity,
                path,
                f"is missing, and so is every file qmail-local would use instead ({others}): "
                f"it bounces {addresses}, and a bounce that bounces again is discarded",
                f"echo you@example.net > {path} (or: qmail-send-systemd setup --forward-root "
                "ADDRESS)",
            )
            return False
        if first.path is None:
            return True  # the bare user, without a .qmail: the default delivery
        if first.st is None:
            return False  # cannot be examined from here: qmail-local may read it
        return (yield from self.check_dot_qmail(first.path, first.st, account, addresses, severity))

    def check_dot_qmail(
        self, path: Path, st: os.stat_result, account: Account, addresses: str, severity: str
    ) -> Generator[Finding, None, bool]:
        if st.st_mode & delivery.PATTERN_WRITABLE:
            yield self.finding(
                severity,
                path,
                f"is world-writable: qmail-local defers {addresses} (dot-qmail(5))",
                f"chmod o-w {path}",
            )
        fix = read_fix(self.root, path, st, account.uid, account.gid)
        if fix:
            yield self.finding(
                severity,
                path,
                f"is not readable by {account.name}: qmail-local defers {addresses}",
                fix,
            )
            return False
        if st.st_size == 0:
            return True  # dot-qmail(5): an empty file means the default delivery
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False  # qmail-local, as its reader, may read it
        told = delivery.instructions(text)
        if told.blank_first_line:
            yield self.finding(
                severity,
                path,
                f"starts with a blank line: qmail-local defers {addresses}",
                f"remove the blank first line of {path}",
            )
        elif not told.deliveries:
            yield self.finding(
                severity,
                path,
                f"has no delivery line: qmail-local accepts {addresses} and keeps none of it",
                f"add a delivery line (&you@example.net, ./Maildir/, ...) to {path}",
            )
        return told.empty

    def check_mailboxes(
        self, account: Account, addresses: list[str], default: str
    ) -> Iterator[Finding]:
        lifetime = _duration(self.queuelifetime())
        for missing in delivery.missing_mailboxes(self.root, account, default):
            if not missing.maildir:
                what = f"cannot be created by {account.name}"
            elif missing.path.is_dir():
                what = "is not a maildir (no tmp/ or new/)"
            else:
                what = "is missing"
            yield self.finding(
                WARNING,
                missing.path,
                f"{what}, so qmail-local defers mail to {_listing(addresses)} (the default "
                f"delivery {missing.line} of user {account.name}): it stays in the queue, is "
                f"retried, and bounces once it is {lifetime} old (control/queuelifetime)",
                self.mailbox_fix(account, missing),
            )

    @staticmethod
    def mailbox_fix(account: Account, missing: delivery.MissingMailbox) -> str:
        """The commands that make the mailbox, as the administrator types them for the user."""
        line = missing.line
        if line.startswith("/"):
            shown = line.rstrip("/")
        else:
            relative = line[2:] if line.startswith("./") else line
            shown = f"~{account.name}/{relative.rstrip('/')}"
        if not missing.maildir:
            return f"install -D -o {account.name} -m 600 /dev/null {shown}"
        as_user = f"sudo -u {account.name}"
        if missing.path.is_dir():  # maildirmake wants to make the directory itself
            return f"{as_user} mkdir -p {shown}/tmp {shown}/new {shown}/cur"
        make = f"{as_user} {QMAIL_BIN}/maildirmake {shown}"
        if not missing.path.parent.is_dir():
            return f"{as_user} mkdir -p {shown.rsplit('/', 1)[0]} && {make}"
        return make

    def queuelifetime(self) -> int:
        try:
            text = (self.home / "control/queuelifetime").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return QUEUELIFETIME
        first = text.split("\n", 1)[0].strip()
        return int(first) if first.isdigit() else QUEUELIFETIME


def check(root: Path) -> list[Finding]:
    found = Checker(root).run() + list(submission_config.check(root))
    return found + list(oauth_setup.check(root)) + list(submission_state.check(root))


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
