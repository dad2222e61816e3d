"""The submission route's files: what `setup --tls` writes, and what `verify` checks in them.

`setup --smarthost HOST:PORT --tls starttls|implicit --user NAME --password-file FILE` writes
three files outside /var/qmail (docs/submission.md), beside the smtproutes catch-all that
relay.py writes as for any smarthost:

- /etc/qmail-send-systemd/msmtprc: host, port, TLS mode, trust, user and password, for msmtp.
  Its reader is qmailr (qmail-rspawn runs qmail-remote, and so msmtp, as qmailr), and msmtp
  refuses a file holding a password unless the user running it owns it and nobody else may
  read it: owner qmailr, mode 0600. No other place holds the password: not a command line, not
  the environment, not a log line.
- /etc/qmail-send-systemd/smarthost-ca.pem (with --tls-trust-file): a copy of the CA bundle,
  public data, 0644, so that the route does not depend on where the administrator kept it.
- /etc/systemd/system/qmail-send.service.d/50-qmail-send-systemd-submission.conf: the
  drop-in that bind-mounts the main package's qmail-remote-route over qmail's qmail-remote in
  the service's namespace alone (submission.route_main: it relays while the submission
  package is installed and defers while it is not).

`verify` judges each of them by its reader and never advises a wider mode than it needs.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from qmail_send_systemd.accounts import lookup_group, lookup_user
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.findings import ERROR, WARNING, Finding, reach_fix
from qmail_send_systemd.msmtprc import ACCOUNT, CONFIG, read_config
from qmail_send_systemd.password_file import read_password
from qmail_send_systemd.setup_plan import Smarthost, Target
from qmail_send_systemd.submission import (
    MSMTP,
    PACKAGE_PROGRAM,
    ROUTE_PROGRAM,
    missing_line,
    missing_programs,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


TLS_MODES = ("starttls", "implicit")
DEFAULT_PORTS = {"starttls": 587, "implicit": 465}
REMOTE = PACKAGE_PROGRAM  # the submission package's: setup --tls needs it
QMAIL_REMOTE = "/var/qmail/bin/qmail-remote"
TRUST = "/etc/qmail-send-systemd/smarthost-ca.pem"
DROPIN = "/etc/systemd/system/qmail-send.service.d/50-qmail-send-systemd-submission.conf"
READER = "qmailr"  # qmail-rspawn's user, so qmail-remote's and msmtp's
PACKAGE = "qmail-send-systemd-submission"
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

DROPIN_TEXT = f"""\
# Written by `qmail-send-systemd setup --tls` (docs/submission.md). This service alone sees
# qmail-send-systemd's qmail-remote, which relays through msmtp with TLS and SMTP AUTH, in place
# of qmail's own; the file under /var/qmail/bin is not changed. Without the {PACKAGE}
# package it defers every remote delivery (local mail is delivered), so mail is never sent to
# the submission port in clear, nor bounced. `qmail-send-systemd setup --smarthost HOST`
# without --tls removes this file.
[Service]
BindReadOnlyPaths={ROUTE_PROGRAM}:{QMAIL_REMOTE}
"""
# 1.1.0's drop-in bound the submission package's program itself: without the package the
# unit failed (226/NAMESPACE) and all mail stopped. configure rewrites it (upgrade_dropin).
OLD_BIND = f"BindReadOnlyPaths={REMOTE}:{QMAIL_REMOTE}"


def _usage(message: str, hint: str = "") -> UsageError:
    return UsageError(message, hint)


def _printable(text: str) -> bool:
    return bool(text) and all(c.isprintable() for c in text)


def password_file_warning(path: str) -> str | None:
    """What to say when the password file setup is given may be read by others than its
    owner (msmtprc is then not the only place others can find the password)."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # read_password says why it cannot be read
    mode = stat.S_IMODE(st.st_mode)
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return (
        f"the password file {path} is mode {mode:04o}: others may read the password "
        f"(remove it now, setup keeps its own copy in {CONFIG}; or chmod 600 {path})"
    )


def holds_secret(path: Path) -> bool:
    """msmtprc: its replaced or removed versions are never kept (no NAME.bak.*)."""
    return path.name == os.path.basename(CONFIG)


def password_copies(root: Path) -> list[Path]:
    """The msmtprc.bak.* copies that 1.1.0's setup kept, each holding an old password."""
    directory = root / os.path.dirname(CONFIG).lstrip("/")
    prefix = os.path.basename(CONFIG) + ".bak."
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / name for name in names if name.startswith(prefix)]


def read_trust(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _usage(f"cannot read the trust file {path}: {exc.strerror}") from exc
    if PEM_CERTIFICATE not in data:
        raise _usage(
            f"{path} holds no PEM certificate", "give the CA certificate(s) in PEM form (.pem)"
        )
    return data


# msmtp 1.8.21 began to add a Message-ID to a mail without one, made from the envelope sender:
# for qmail's bounces (sender <>) an invalid `<hash.@hostname>` with the kernel's name. Its
# `set_msgid_header off` stops that, and older msmtp refuses the unknown command.
MSGID_SINCE = (1, 8, 21)


def msmtp_version(root: Path) -> tuple[int, ...] | None:
    """`msmtp --version`'s number (None: it cannot be run or read)."""
    try:
        done = subprocess.run(
            [str(root / MSMTP.lstrip("/")), "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    words = (done.stdout.splitlines() or [""])[0].split()
    if done.returncode != 0 or words[:2] != ["msmtp", "version"] or len(words) < 3:
        return None
    parts = words[2].split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def render_msmtprc(
    smarthost: Smarthost,
    *,
    tls: str,
    user: str,
    password: str,
    trust: str,
    auth: list[str] | None = None,
    sender: str | None = None,
    msgid_option: bool = False,
) -> bytes:
    """msmtp's account for qmail-remote. Values are quoted as msmtp reads them: it strips one
    pair of enclosing double quotes and nothing else, so any printable text survives."""
    lines = [
        "# Written by `qmail-send-systemd setup --tls` (docs/submission.md): how qmail-send's",
        "# remote deliveries reach the smarthost. It holds the password, so it is owned by",
        "# qmailr (who runs qmail-remote and msmtp) with mode 0600, as msmtp requires.",
        f"account {ACCOUNT}",
        f"host {smarthost.host}",
        f"port {smarthost.port or DEFAULT_PORTS[tls]}",
        "tls on",
        f"tls_starttls {'on' if tls == 'starttls' else 'off'}",
        f"tls_trust_file {trust}",
        "tls_certcheck on",
        *(auth or ["auth on"]),  # oauth.py: auth xoauth2 + passwordeval, no password
        f'user "{user}"',
        *([] if auth else [f'password "{password}"']),
        # sender.py: every message's envelope sender, and a local From:'s replacement
        *([f'from "{sender}"'] if sender else []),
        # A transport passes the message on as qmail queued it: no From, Date or Bcc change.
        "set_from_header off",
        "set_date_header off",
        "remove_bcc_headers off",
        *(["set_msgid_header off"] if msgid_option else []),
        "syslog off",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def plan(
    root: Path,
    smarthost: Smarthost,
    *,
    tls: str,
    user: str,
    password_file: str | None,
    trust_file: str | None,
    auth: list[str] | None = None,
    sender: str | None = None,
) -> list[Target]:
    """The route's files for `setup --tls`; raise before anything is written."""
    if not _printable(user):
        raise _usage(f"malformed --user {user!r}", "give the login the provider told you")
    password = read_password(password_file) if password_file is not None else ""
    for program, what in ((REMOTE, f"the {PACKAGE} package"), (MSMTP, "msmtp")):
        if not os.access(root / program.lstrip("/"), os.X_OK):
            raise HelperError(
                f"{program} is missing: --tls needs {what}",
                f"apt install {PACKAGE} (or dnf install {PACKAGE})",
            )
    reader = lookup_user(root, READER)
    if reader is None:
        raise HelperError(f"user {READER!r} not found", "create qmail's users as LWQ describes")
    targets = []
    trust = "system"
    if trust_file is not None:
        targets.append(Target(root / TRUST.lstrip("/"), read_trust(trust_file), 0, 0, PUBLIC_MODE))
        trust = TRUST
    elif os.path.lexists(root / TRUST.lstrip("/")):
        # Back to the system's CAs: the copy of the old CA goes (a copy: nothing is lost).
        targets.append(Target(root / TRUST.lstrip("/"), None, 0, 0, keep_backup=False))
    version = msmtp_version(root)
    msgid = version is not None and version >= MSGID_SINCE
    rc = render_msmtprc(
        smarthost,
        tls=tls,
        user=user,
        password=password,
        trust=trust,
        auth=auth,
        sender=sender,
        msgid_option=msgid,
    )
    targets.append(
        Target(root / CONFIG.lstrip("/"), rc, reader.uid, reader.gid, SECRET_MODE, False)
    )
    targets.append(Target(root / DROPIN.lstrip("/"), DROPIN_TEXT.encode(), 0, 0, PUBLIC_MODE))
    return targets


def obsolete(root: Path) -> list[Path]:
    """The route's files that a plain `setup --smarthost` takes away (each kept as a backup)."""
    paths = [root / p.lstrip("/") for p in (DROPIN, CONFIG, TRUST)]
    return [p for p in paths if os.path.lexists(p)]


# --- verify ----------------------------------------------------------------------------------


def check(root: Path) -> Iterator[Finding]:
    """Findings about the route, when `setup --tls` configured it (nothing otherwise)."""
    dropin = root / DROPIN.lstrip("/")
    config = root / CONFIG.lstrip("/")
    for copy in password_copies(root):
        message = "is a copy of msmtprc kept by setup 1.1.0: it holds an old password"
        yield Finding(ERROR, str(copy), message, f"rm -f {copy}")
    if not os.path.lexists(dropin) and not os.path.lexists(config):
        return
    redo = "rerun qmail-send-systemd setup --smarthost HOST:PORT --tls ..."
    if not os.path.lexists(dropin):
        yield Finding(ERROR, str(dropin), "is missing: qmail-send relays without TLS", redo)
    yield from _check_programs(root, dropin)
    reader = lookup_user(root, READER)
    try:
        st = config.lstat()
    except OSError:
        yield Finding(ERROR, str(config), "is missing: every remote delivery is deferred", redo)
        return
    # qmail-start gives qmail-rspawn, and so qmail-remote and msmtp, the qmail group alone.
    group = lookup_group(root, "qmail")
    gid = group if group is not None else reader.gid if reader is not None else 0
    if reader is not None:
        yield from _check_secret(config, st, reader.uid)
        yield from _check_reach(root, config, reader.uid, gid)
    try:
        settings = read_config(str(config))
    except OSError:
        return  # a reader other than qmailr (verify as a user): the mode check said enough
    yield from _check_msgid(root, config, settings)
    trust = settings.get("tls_trust_file", "system")
    if trust != "system" and not _world_readable(root / trust.lstrip("/")):
        yield Finding(ERROR, trust, "cannot be read by qmailr: TLS cannot verify", redo)
    elif trust != "system" and reader is not None:
        yield from _check_reach(root, root / trust.lstrip("/"), reader.uid, gid)


def _check_msgid(root: Path, config: Path, settings: dict[str, str]) -> Iterator[Finding]:
    """An msmtprc written before msmtp learnt set_msgid_header (an msmtp upgraded since)."""
    if "set_msgid_header" in settings:
        return
    version = msmtp_version(root)
    if version is not None and version >= MSGID_SINCE:
        message = (
            f"lacks `set_msgid_header off`: msmtp {'.'.join(map(str, version))} adds an invalid "
            "Message-ID (<hash.@hostname>) to qmail's bounces"
        )
        yield Finding(WARNING, str(config), message, "rerun qmail-send-systemd setup ... --tls ...")


def _check_reach(root: Path, path: Path, uid: int, gid: int) -> Iterator[Finding]:
    """qmailr (qmail-remote, msmtp) passes through every directory above `path`: a umask of
    077 at setup made /etc/qmail-send-systemd 0700 and deferred every remote delivery."""
    blocked = reach_fix(root, path, uid, gid)
    if blocked is not None:
        message = (
            f"cannot be searched by {READER}: it cannot read {path}, so remote mail is deferred"
        )
        yield Finding(ERROR, str(blocked[0]), message, blocked[1])


def _check_programs(root: Path, dropin: Path) -> Iterator[Finding]:
    """One line each, with the fix: what the route's remote deliveries lack."""
    try:
        old = OLD_BIND in dropin.read_text(encoding="utf-8", errors="replace")
    except OSError:
        old = False
    if old:
        message = f"binds {REMOTE} itself: without {PACKAGE} the service cannot start"
        yield Finding(ERROR, str(dropin), message, "rerun qmail-send-systemd setup ... --tls ...")
    for program in missing_programs(str(root)):
        problem, fix = missing_line(program)
        yield Finding(ERROR, str(root / program.lstrip("/")), problem, fix)


def upgrade_dropin(root: Path) -> str | None:
    """configure's step: 1.1.0's drop-in, which bound the submission package's program, binds
    the main package's route program instead (the same relay while the package is there).
    Returns what was done, or None. Never raises: a package step must not fail."""
    path = root / DROPIN.lstrip("/")
    try:
        text = path.read_text(encoding="utf-8")
        if OLD_BIND not in text:
            return None
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(DROPIN_TEXT, encoding="utf-8")
        os.chmod(tmp, PUBLIC_MODE)
        os.replace(tmp, path)
    except (OSError, UnicodeDecodeError):
        return None
    return f"{path}: now binds {ROUTE_PROGRAM} (the service starts without {PACKAGE})"


def _world_readable(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & stat.S_IROTH)


def _check_secret(path: Path, st: os.stat_result, uid: int) -> Iterator[Finding]:
    """msmtp's rule for a file with a password, which is also ours: a regular file owned by its
    one reader, and no access for anybody else. The fix never widens anything."""
    fix = f"chown {READER} {path} && chmod 0600 {path}"
    if not stat.S_ISREG(st.st_mode):
        yield Finding(ERROR, str(path), "is not a regular file", f"rerun setup; then {fix}")
        return
    if st.st_uid != uid:
        yield Finding(
            ERROR,
            str(path),
            f"is owned by uid {st.st_uid}, not {READER}: msmtp refuses it, mail is deferred",
            fix,
        )
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        yield Finding(
            ERROR,
            str(path),
            f"holds the smarthost password and is mode {stat.S_IMODE(st.st_mode):04o}: others "
            "may read it, and msmtp refuses it",
            fix,
        )
