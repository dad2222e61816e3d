"""`setup --smarthost HOST[:PORT] --forward-root ADDRESS`: make qmail a laptop relay.

Writes qmail's catch-all route in control/smtproutes and the three forwards in ~alias
(.qmail-root, .qmail-postmaster, .qmail-mailer-daemon) that keep cron's mail and bounces from
being discarded; with `--tls`, also the submission route's files (submission_config.py), and
without it takes them away. Every input is checked before anything is written; every file is
replaced or removed atomically, with a backup of what it replaces, and an unchanged file is not
touched at all.

This is the one place where the helper writes under /var/qmail, and only because the
administrator asked for it: maintainer scripts never call it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from qmail_send_systemd import QMAIL_HOME, oauth_setup, submission_config
from qmail_send_systemd.accounts import lookup_group, lookup_user
from qmail_send_systemd.addresses import check_address, parse_smarthost
from qmail_send_systemd.errors import EXIT_OK, HelperError, UsageError
from qmail_send_systemd.setup_plan import Smarthost, Target
from qmail_send_systemd.systemd import UNIT, System

if TYPE_CHECKING:
    import argparse

ALIAS_USER = "alias"
QMAIL_GROUP = "qmail"
ALIAS_FILES = (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon")


def _usage(message: str, hint: str = "") -> UsageError:
    return UsageError(message, hint)


# --- the target tree ------------------------------------------------------------------------


@dataclass
class Outcome:
    target: Target
    action: str  # "created", "replaced", "removed", "unchanged", "fixed owner/mode"
    backup: Path | None = None


def _merge_routes(old: bytes | None, route: str) -> bytes:
    """Keep every per-domain route and replace only the catch-all (empty domain) line."""
    kept = []
    if old is not None:
        for line in old.decode("utf-8", errors="surrogateescape").splitlines():
            if line.strip() and not line.startswith(":"):
                kept.append(line)
    kept.append(route)
    return ("\n".join(kept) + "\n").encode("utf-8", errors="surrogateescape")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _locals(control: Path) -> set[str]:
    names: set[str] = set()
    for name in ("me", "locals"):
        data = _read(control / name) or b""
        names.update(line.strip().lower() for line in data.decode(errors="replace").splitlines())
    names.discard("")
    return names


def plan(root: Path, smarthost: Smarthost | None, forward: str | None) -> list[Target]:
    """Check the tree and return the files to write; raise before anything is written."""
    qmail = root / QMAIL_HOME
    control = qmail / "control"
    if not control.is_dir():
        raise HelperError(
            f"{control} does not exist: qmail is not installed under this root",
            "install qmail first, as Life with qmail describes",
        )
    gid_qmail = lookup_group(root, QMAIL_GROUP)
    if gid_qmail is None:
        raise HelperError(
            f"group {QMAIL_GROUP!r} not found", "create qmail's groups as Life with qmail describes"
        )
    targets = []
    if smarthost is not None:
        path = control / "smtproutes"
        superuser = lookup_user(root, "root")
        uid_root = superuser.uid if superuser is not None else 0
        content = _merge_routes(_read(path), smarthost.route())
        targets.append(Target(path, content, uid_root, gid_qmail))
    if forward is not None:
        local, _, domain = forward.rpartition("@")
        if domain.lower() in _locals(control) and local.lower() in {
            "root",
            "postmaster",
            "mailer-daemon",
            ALIAS_USER,
        }:
            raise _usage(
                f"forwarding root to {forward} would loop: {domain} is local to this qmail",
                "give a remote mailbox, e.g. you@example.org",
            )
        alias = lookup_user(root, ALIAS_USER)
        if alias is None:
            raise HelperError(
                f"user {ALIAS_USER!r} not found",
                "create qmail's users as Life with qmail describes",
            )
        home = root / alias.home.lstrip("/")
        if not home.is_dir():
            raise HelperError(f"{home} (~{ALIAS_USER}) does not exist", "reinstall qmail")
        body = f"&{forward}\n".encode("ascii")
        targets.extend(Target(home / name, body, alias.uid, gid_qmail) for name in ALIAS_FILES)
    return targets


# --- atomic writes ---------------------------------------------------------------------------


def _backup_name(path: Path, now: float) -> Path:
    # Dots in a .qmail file name never match an address (qmail-local turns an extension's dots
    # into colons), so the backup of .qmail-root can never become a delivery instruction.
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    candidate = path.with_name(f"{path.name}.bak.{stamp}")
    n = 1
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.name}.bak.{stamp}.{n}")
        n += 1
    return candidate


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _meta_ok(path: Path, target: Target) -> bool:
    st = path.lstat()
    return (
        stat.S_ISREG(st.st_mode)
        and stat.S_IMODE(st.st_mode) == target.mode
        and (st.st_uid, st.st_gid) == (target.uid, target.gid)
    )


def apply(
    targets: list[Target], *, now: float | None = None, dry_run: bool = False
) -> list[Outcome]:
    """Write every changed target: all temp files first, then backup + rename each one."""
    now = time.time() if now is None else now
    outcomes: list[Outcome] = []
    staged: list[tuple[Outcome, str]] = []
    try:
        for target in targets:
            if target.content is None:
                if os.path.lexists(target.path):
                    outcomes.append(Outcome(target, "removed"))
                continue
            old = _read(target.path) if not target.path.is_symlink() else None
            if old == target.content and _meta_ok(target.path, target):
                outcomes.append(Outcome(target, "unchanged"))
                continue
            if old == target.content:
                outcomes.append(Outcome(target, "fixed owner/mode"))
                if not dry_run:
                    os.chown(target.path, target.uid, target.gid)
                    os.chmod(target.path, target.mode)
                continue
            exists = os.path.lexists(target.path)
            outcome = Outcome(target, "replaced" if exists else "created")
            outcomes.append(outcome)
            if dry_run:
                continue
            fd, tmp = tempfile.mkstemp(prefix=".tmp-qmail-send-systemd-", dir=target.path.parent)
            staged.append((outcome, tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(target.content)
                f.flush()
                os.fchown(f.fileno(), target.uid, target.gid)
                os.fchmod(f.fileno(), target.mode)
                os.fsync(f.fileno())
    except OSError as exc:
        for _, tmp in staged:
            os.unlink(tmp)
        raise HelperError(
            f"cannot write {exc.filename or 'a file'}: {exc.strerror}",
            "run as root; nothing was changed",
        ) from exc
    for outcome, tmp in staged:
        if outcome.action == "replaced" and outcome.target.backup:
            _keep_backup(outcome, now)
        os.replace(tmp, outcome.target.path)
    removed = [o for o in outcomes if o.action == "removed"] if not dry_run else []
    for outcome in removed:
        if outcome.target.backup:
            _keep_backup(outcome, now)
        os.unlink(outcome.target.path)
    for directory in {o.target.path.parent for o, _ in staged} | {
        o.target.path.parent for o in removed
    }:
        _fsync_dir(directory)
    return outcomes


def _keep_backup(outcome: Outcome, now: float) -> None:
    # A hard link keeps the owner and mode: the backup of a secret is exactly as private.
    path = outcome.target.path
    outcome.backup = _backup_name(path, now)
    try:
        os.link(path, outcome.backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, outcome.backup, follow_symlinks=False)


# --- command line ----------------------------------------------------------------------------


def _check_tls_options(args: argparse.Namespace) -> None:
    tls_only = {"--user": args.user, "--password-file": args.password_file}
    tls_only["--tls-trust-file"] = args.tls_trust_file
    tls_only.update(oauth_setup.tls_only_options(args))
    if args.tls is None:
        given = [name for name, value in tls_only.items() if value is not None]
        if given:
            raise _usage(f"{given[0]} needs --tls starttls|implicit")
        return
    if args.smarthost is None:
        raise _usage("--tls needs --smarthost HOST[:PORT]")
    if tls_only["--user"] is None:
        raise _usage("--tls needs --user", "the login your provider gave you")
    oauth_setup.check_options(args)  # --password-file, or --auth xoauth2 and its settings


def plan_route(root: Path, args: argparse.Namespace, smarthost: Smarthost | None) -> list[Target]:
    """The submission route's files: written with --tls, removed by a plain --smarthost."""
    if smarthost is None:
        return []
    if args.tls is None:
        obsolete = [Target(p, None, 0, 0) for p in submission_config.obsolete(root)]
        return obsolete + oauth_setup.obsolete(root)
    targets = submission_config.plan(
        root,
        smarthost,
        tls=args.tls,
        user=args.user,
        password_file=args.password_file,
        trust_file=args.tls_trust_file,
        auth=oauth_setup.msmtp_auth(args),
        sender=oauth_setup.envelope_sender(args),
    )
    return targets + oauth_setup.plan(root, args)  # last: it may ask the provider


def _restart_for_dropin(root: Path, out: Callable[[str], None]) -> None:
    """A changed drop-in changes the service's mount namespace: only a restart applies it
    (a stop lets the deliveries in flight finish; nothing queued is lost)."""
    system = System(root)
    if not system.systemd_running():
        out(f"systemd is not running: the route applies at the next start of {UNIT}")
        return
    for step in (("daemon-reload",), ("try-restart", UNIT)):
        result = system.systemctl(*step)
        if not result.ok:
            raise HelperError(
                f"systemctl {' '.join(step)} failed (exit {result.returncode})",
                f"journalctl -u {UNIT}; then systemctl restart {UNIT}",
            )
    out(f"{UNIT} restarted (if it was running) to use the new remote delivery")


def run(args: argparse.Namespace, root: Path, out: Callable[[str], None] = print) -> int:
    """`setup`: raises HelperError (exit 1) or UsageError (exit 2) before anything is written."""
    if args.smarthost is None and args.forward_root is None:
        raise _usage("setup needs --smarthost HOST[:PORT] and/or --forward-root ADDRESS")
    _check_tls_options(args)
    smarthost = parse_smarthost(args.smarthost) if args.smarthost is not None else None
    if smarthost is not None and smarthost.port is None and args.tls is not None:
        smarthost = Smarthost(
            smarthost.host, submission_config.DEFAULT_PORTS[args.tls]
        )  # 587 or 465
    forward = check_address(args.forward_root) if args.forward_root is not None else None
    targets = plan(root, smarthost, forward)
    route = plan_route(root, args, smarthost)
    targets += route
    if not args.dry_run:
        oauth_setup.make_state_dir(root, args)  # qmailr's 0700, before its files
        for target in route:
            if target.content is not None:
                target.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    outcomes = apply(targets, dry_run=args.dry_run)
    prefix = "would be " if args.dry_run else ""
    for outcome in outcomes:
        action = outcome.action if outcome.action == "unchanged" else prefix + outcome.action
        line = f"{outcome.target.path}: {action}"
        if outcome.backup is not None:
            line += f" (previous kept as {outcome.backup.name})"
        out(line)
    changed = [o for o in outcomes if o.action != "unchanged"]
    if changed and not args.dry_run:
        if any(str(o.target.path).endswith(submission_config.DROPIN) for o in changed):
            _restart_for_dropin(root, out)
        # qmail-remote and qmail-local read these files at each delivery: no restart needed.
        out("takes effect at the next delivery; `qmail-send-systemd flush` retries the queue now")
    return EXIT_OK
