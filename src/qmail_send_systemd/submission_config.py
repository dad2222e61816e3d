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
  drop-in that bind-mounts our qmail-remote over qmail's in the service's namespace alone.

`verify` judges each of them by its reader and never advises a wider mode than it needs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from qmail_send_systemd.accounts import lookup_user
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.findings import ERROR, Finding
from qmail_send_systemd.msmtprc import ACCOUNT, CONFIG, read_config
from qmail_send_systemd.password_file import read_password
from qmail_send_systemd.setup_plan import Smarthost, Target
from qmail_send_systemd.submission import MSMTP

if TYPE_CHECKING:
    from collections.abc import Iterator


TLS_MODES = ("starttls", "implicit")
DEFAULT_PORTS = {"starttls": 587, "implicit": 465}
REMOTE = "/usr/lib/qmail-send-systemd/qmail-remote"
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
# package the service does not start (no bind source), so mail is never sent to the submission
# port in clear. `qmail-send-systemd setup --smarthost HOST` without --tls removes this file.
[Service]
BindReadOnlyPaths={REMOTE}:{QMAIL_REMOTE}
"""


def _usage(message: str, hint: str = "") -> UsageError:
    return UsageError(message, hint)


def _printable(text: str) -> bool:
    return bool(text) and all(c.isprintable() for c in text)


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


def render_msmtprc(
    smarthost: Smarthost,
    *,
    tls: str,
    user: str,
    password: str,
    trust: str,
    auth: list[str] | None = None,
    sender: str | None = None,
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
    rc = render_msmtprc(
        smarthost, tls=tls, user=user, password=password, trust=trust, auth=auth, sender=sender
    )
    targets.append(Target(root / CONFIG.lstrip("/"), rc, reader.uid, reader.gid, SECRET_MODE))
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
    if not os.path.lexists(dropin) and not os.path.lexists(config):
        return
    redo = "rerun qmail-send-systemd setup --smarthost HOST:PORT --tls ..."
    if not os.path.lexists(dropin):
        yield Finding(ERROR, str(dropin), "is missing: qmail-send relays without TLS", redo)
    for program, fix in ((REMOTE, f"install {PACKAGE}"), (MSMTP, "install msmtp")):
        if not os.access(root / program.lstrip("/"), os.X_OK):
            message = "is missing: qmail-send.service cannot start (its drop-in binds it)"
            yield Finding(ERROR, str(root / program.lstrip("/")), message, fix)
    reader = lookup_user(root, READER)
    try:
        st = config.lstat()
    except OSError:
        yield Finding(ERROR, str(config), "is missing: every remote delivery is deferred", redo)
        return
    if reader is not None:
        yield from _check_secret(config, st, reader.uid)
    try:
        trust = read_config(str(config)).get("tls_trust_file", "system")
    except OSError:
        return  # a reader other than qmailr (verify as a user): the mode check said enough
    if trust != "system" and not _world_readable(root / trust.lstrip("/")):
        yield Finding(ERROR, trust, "cannot be read by qmailr: TLS cannot verify", redo)


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
