"""`setup --tls`'s login and sender options: --auth, --oauth-*, --envelope-sender.

relay.py calls these hooks; the token exchanges are oauth.py's, the sender's rewriting
sender.py's. Every option is checked before anything is written, and the provider is asked for
a grant last, when every other input has passed (an administrator authorises once).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qmail_send_systemd import oauth, submission_state
from qmail_send_systemd.accounts import lookup_user
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.findings import ERROR, Finding
from qmail_send_systemd.msmtprc import CONFIG, read_config
from qmail_send_systemd.sender import default_sender
from qmail_send_systemd.setup_plan import Target
from qmail_send_systemd.submission_config import msmtp_version

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator


READER = "qmailr"
PUBLIC_MODE = 0o644
# msmtp took `auth xoauth2` in 1.8.13 (Debian 11 has 1.8.11: OAUTHBEARER only). Older ones
# refuse the whole msmtprc, so every remote delivery would be deferred.
XOAUTH2_SINCE = (1, 8, 13)


def _auth(args: argparse.Namespace) -> str:
    return str(getattr(args, "auth", None) or "password")


def tls_only_options(args: argparse.Namespace) -> dict[str, object]:
    """The options that mean nothing without --tls."""
    return {
        "--auth": getattr(args, "auth", None),
        "--envelope-sender": getattr(args, "envelope_sender", None),
        **_oauth_options(args),
    }


def _oauth_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "--oauth-provider": getattr(args, "oauth_provider", None),
        "--oauth-client-id": getattr(args, "oauth_client_id", None),
        "--oauth-client-secret-file": getattr(args, "oauth_client_secret_file", None),
        "--oauth-tenant": getattr(args, "oauth_tenant", None),
        "--oauth-setting": getattr(args, "oauth_setting", None) or None,
        "--oauth-port": getattr(args, "oauth_port", None),
    }


def check_options(args: argparse.Namespace) -> None:
    """--password-file with --auth password (the default), the --oauth-* ones otherwise."""
    auth = _auth(args)
    given = [name for name, value in _oauth_options(args).items() if value is not None]
    if auth == "password":
        if given:
            raise UsageError(f"{given[0]} needs --auth xoauth2 or --auth oauthbearer")
        if args.password_file is None:
            raise UsageError(
                "--tls needs --password-file (or --auth xoauth2 with --oauth-provider)",
                "the login your provider gave you",
            )
        return
    if args.password_file is not None:
        raise UsageError(
            f"--password-file and --auth {auth} exclude each other",
            "an OAuth login has no password: leave --password-file out",
        )
    for name in ("--oauth-provider", "--oauth-client-id"):
        if name not in given:
            raise UsageError(
                f"--auth {auth} needs {name}",
                "see docs/submission.md for your provider's command",
            )
    settings(args)  # malformed values are usage errors now, before anything else runs
    if args.oauth_provider == "google" and args.oauth_client_secret_file is None:
        raise UsageError(
            "--oauth-provider google needs --oauth-client-secret-file",
            "a file whose one line is the client secret of your Desktop app client",
        )
    if args.oauth_port is not None and not 0 <= args.oauth_port <= 65535:
        raise UsageError(f"malformed --oauth-port {args.oauth_port}", "0..65535 (0: any)")


def settings(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in getattr(args, "oauth_setting", None) or []:
        key, equals, value = str(item).partition("=")
        if not equals:
            raise UsageError(f"malformed --oauth-setting {item!r}", "give KEY=VALUE")
        overrides[key] = value
    return oauth.settings_for(
        args.oauth_provider, args.oauth_client_id, args.oauth_tenant, overrides, args.user
    )


def msmtp_auth(args: argparse.Namespace) -> list[str] | None:
    """msmtprc's login lines with a token (None: the password)."""
    auth = _auth(args)
    return None if auth == "password" else oauth.msmtp_auth_lines(auth)


def envelope_sender(args: argparse.Namespace) -> str | None:
    """Every message's envelope sender (sender.py): --envelope-sender, else the login when it
    is an address."""

    return default_sender(args.user, getattr(args, "envelope_sender", None))


def _state(root: Path, name: str) -> Path:
    return Path(submission_state.path(root, name))


def obsolete(root: Path) -> list[Target]:
    """The OAuth files, once the route logs in with a password or is gone: removed, and the
    grant is not kept as a backup (one copy of a secret)."""

    paths = [(root / oauth.CONF.lstrip("/"), True)]
    paths += [(_state(root, name), False) for name in (oauth.GRANT, oauth.ACCESS)]
    return [Target(p, None, 0, 0, keep_backup=keep) for p, keep in paths if os.path.lexists(p)]


def plan(root: Path, args: argparse.Namespace, out: object = print) -> list[Target]:
    """oauth.conf, the grant and its first access token; with --dry-run, nothing is asked."""

    if _auth(args) == "password":
        return obsolete(root)
    check_mechanism(root, _auth(args))
    reader = lookup_user(root, READER)
    if reader is None:
        raise HelperError(f"user {READER!r} not found", "create qmail's users as LWQ describes")
    conf = settings(args)
    secret = ""
    if args.oauth_client_secret_file is not None:
        secret = oauth.read_secret(args.oauth_client_secret_file)
    conf_target = Target(root / oauth.CONF.lstrip("/"), oauth.render_conf(conf), 0, 0, PUBLIC_MODE)
    if args.dry_run:
        assert callable(out)
        how = "a code to enter" if conf["flow"] == "device" else "a browser on this machine"
        out(f"without --dry-run, setup asks {conf['provider']} for a grant ({how})")
        return [conf_target]
    assert callable(out)
    grant = oauth.obtain(conf, secret, out, port=args.oauth_port or 0)
    targets = [
        conf_target,
        Target(
            _state(root, oauth.GRANT),
            oauth.grant_bytes(grant),
            reader.uid,
            reader.gid,
            0o600,
            keep_backup=False,
        ),
    ]
    if grant.get("access_token"):
        expires_at = time.time() + int(grant.get("expires_in", "3600"))
        data = oauth.access_bytes(grant["access_token"], expires_at)
        targets.append(
            Target(_state(root, oauth.ACCESS), data, reader.uid, reader.gid, 0o600, False)
        )
    elif os.path.lexists(_state(root, oauth.ACCESS)):
        targets.append(Target(_state(root, oauth.ACCESS), None, 0, 0, keep_backup=False))
    return targets


def check_mechanism(root: Path, auth: str) -> None:
    """An msmtp that cannot speak the mechanism is a usage error now, not a deferral of every
    message later (an msmtp whose version cannot be read is given the benefit of the doubt)."""
    if auth != "xoauth2":
        return
    version = msmtp_version(root)
    if version is not None and version < XOAUTH2_SINCE:
        shown = ".".join(map(str, version))
        raise UsageError(
            f"--auth xoauth2: this msmtp {shown} has no XOAUTH2 (msmtp 1.8.13 or later)",
            "--auth oauthbearer if the provider takes it (Gmail does; Microsoft 365 wants "
            "XOAUTH2), or a newer msmtp",
        )


def make_state_dir(root: Path, args: argparse.Namespace) -> None:
    """qmailr's directory for the grant, the token cache and the route's problem (setup --tls)."""
    if getattr(args, "tls", None) is None or args.smarthost is None:
        return
    reader = lookup_user(root, READER)
    if reader is not None:
        submission_state.make_dir(root, reader.uid, reader.gid)
        submission_state.clear(root)  # a new setting: the old problem is judged again


def check(root: Path) -> Iterator[Finding]:
    """`verify`: with an OAuth login in msmtprc, its settings, the grant (qmailr's alone) and
    qmailr's directory. Fixes never widen a mode."""

    try:
        auth = read_config(str(root / CONFIG.lstrip("/"))).get("auth", "")
    except OSError:
        return  # no route, or not readable by this user: submission_config says enough
    if auth not in oauth.MECHANISMS:
        return
    redo = "rerun qmail-send-systemd setup ... --auth " + auth
    conf = root / oauth.CONF.lstrip("/")
    try:
        oauth.read_conf(root)
    except HelperError as exc:
        yield Finding(ERROR, str(conf), exc.message + ": no token can be had", redo)
    reader = lookup_user(root, READER)
    if reader is None:
        return
    directory = root / submission_state.STATE_DIR
    try:
        st = directory.lstat()
    except OSError:
        yield Finding(ERROR, str(directory), "is missing: no token can be had", redo)
        return
    if st.st_uid != reader.uid or stat.S_IMODE(st.st_mode) != submission_state.DIR_MODE:
        yield Finding(
            ERROR,
            str(directory),
            f"must be {READER}'s, mode 0700 (it holds the grant and qmailr writes the token)",
            f"chown {READER} {directory} && chmod 0700 {directory}",
        )
    grant = directory / oauth.GRANT
    try:
        grant_st = grant.lstat()
    except OSError:
        yield Finding(
            ERROR, str(grant), "is missing: every remote delivery is deferred", oauth.REAUTHORIZE
        )
        return
    fix = f"chown {READER} {grant} && chmod 0600 {grant}"
    if grant_st.st_uid != reader.uid:
        yield Finding(ERROR, str(grant), f"is not {READER}'s: no token can be had", fix)
    if grant_st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(grant_st.st_mode)
        yield Finding(ERROR, str(grant), f"holds the refresh token and is mode {mode:04o}", fix)
