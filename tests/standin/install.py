#!/usr/bin/python3
"""Install the qmail stand-in as an LWQ-style /var/qmail under a root directory.

Usage: python3 install.py --root DIR [--me HOST] [--python PATH] [--users [--install-ids]]
       [--broken WHAT ...]

Lays out DIR/var/qmail: bin/ (the stand-in programs), control/ (me, locals, rcpthosts,
defaultdelivery ./Maildir/), alias/ with .qmail-root, .qmail-postmaster and
.qmail-mailer-daemon (empty: mail to them goes to ~alias/Maildir/), users/, queue/ with
lock/{sendmutex,tcpto,trigger}, and standin/ (the programs' shared module and the stand-in's
own records signals.log and tcpok.log). With --users, as root, it first creates qmail's groups
(nofiles, qmail) and users (alias, qmaild, qmaill, qmailp, qmailq, qmailr, qmails) in DIR's
/etc/group and /etc/passwd with groupadd/useradd --root, as system accounts; with
--install-ids as qmail's INSTALL.ids creates them (`groupadd nofiles`, `useradd -g nofiles -d
/var/qmail/alias alias`, ...: ordinary accounts, so uids from 1000 up). As root, files get
LWQ's owners (looked up in DIR's own passwd and group files); as another user everything stays
the caller's.

Deviations from a real qmail install, all forced by the programs being scripts: programs are
readable (0755 instead of 0711; qmail-queue 4755 instead of 4711) because an interpreter must
read them; queue/ and queue/lock are 0755 and queue/{pid,mess,intd,todo} 1777 because Linux
ignores setuid on scripts, so qmail-queue runs as its caller (see its docstring). mess/, info/,
local/ and remote/ have qmail's split subdirectories (conf-split 23), with their parent's mode.

--broken makes one thing wrong on purpose, for tests of how the packages cope: see BROKEN.
Exit codes: 0 installed, 1 something failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

import qmail_standin  # noqa: E402 - the programs' own module, found beside this file

# Every program the stand-in has: its bin/ directory is the one list of them.
PROGRAMS = tuple(sorted(p.name for p in (HERE / "bin").iterdir() if p.is_file()))
# (owner, group, mode) per program; qmail-start and qmail-tcpok are root's alone, as in LWQ.
PROGRAM_MODES = {
    "qmail-start": ("root", "qmail", 0o700),
    "qmail-tcpok": ("root", "qmail", 0o700),
    "qmail-queue": ("qmailq", "qmail", 0o4755),
}
DEFAULT_PROGRAM_MODE = ("root", "qmail", 0o755)
# (path under queue/, owner, group, mode)
QUEUE_DIRS = (
    ("", "qmailq", "qmail", 0o755),
    ("pid", "qmailq", "qmail", 0o1777),
    ("mess", "qmailq", "qmail", 0o1777),
    ("intd", "qmailq", "qmail", 0o1777),
    ("todo", "qmailq", "qmail", 0o1777),
    ("info", "qmails", "qmail", 0o700),
    ("local", "qmails", "qmail", 0o700),
    ("remote", "qmails", "qmail", 0o700),
    ("bounce", "qmails", "qmail", 0o700),
    ("lock", "qmailq", "qmail", 0o755),
)
GROUPS = ("nofiles", "qmail")
# user: (group, home under /var/qmail)
USERS = {
    "alias": ("nofiles", "alias"),
    "qmaild": ("nofiles", ""),
    "qmaill": ("nofiles", ""),
    "qmailp": ("nofiles", ""),
    "qmailq": ("qmail", ""),
    "qmailr": ("qmail", ""),
    "qmails": ("qmail", ""),
}
ALIAS_FILES = (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon")
BROKEN = {
    "no-qmail-start": "bin/qmail-start is missing (the unit's Condition fails)",
    "qmail-start-not-executable": "bin/qmail-start is mode 0644",
    "qmail-queue-not-setuid": "bin/qmail-queue is mode 0755",
    "no-alias-files": "~alias/.qmail-root, -postmaster, -mailer-daemon are missing",
    "no-control-me": "control/me is missing (qmail-send: alert: cannot start)",
    "no-sendmutex": "queue/lock/sendmutex is missing (qmail-send: alert: cannot start)",
    "no-queue": "queue/ is missing",
}


class InstallError(Exception):
    pass


class Ids:
    """Owners looked up in the target root's own passwd and group files."""

    def __init__(self, root: Path, chown: bool) -> None:
        self.chown = chown
        self.users = self._table(root / "etc" / "passwd")
        self.groups = self._table(root / "etc" / "group")

    @staticmethod
    def _table(path: Path) -> dict[str, int]:
        table: dict[str, int] = {}
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return table
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 3 and fields[2].isdigit():
                table[fields[0]] = int(fields[2])
        return table

    def missing(self) -> list[str]:
        return [u for u in USERS if u not in self.users] + [
            g for g in GROUPS if g not in self.groups
        ]

    def apply(self, path: Path, owner: str, group: str, mode: int) -> None:
        if self.chown:
            os.lchown(path, self.users.get(owner, 0), self.groups.get(group, 0))
        if not path.is_symlink():
            os.chmod(path, mode)  # after chown, which clears the setuid bit


def run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InstallError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def create_users(root: Path, *, system: bool = True) -> None:
    """qmail's groups and users in ROOT's passwd (idempotent): system accounts, or (not
    `system`) ordinary ones, as INSTALL.ids's groupadd and useradd lines make them."""
    ids = Ids(root, chown=False)
    prefix = [] if root == Path("/") else ["--root", str(root)]
    kind = ["--system"] if system else []
    for group in GROUPS:
        if group not in ids.groups:
            run(["groupadd", *prefix, *kind, group])
    for user, (group, home) in USERS.items():
        if user not in ids.users:
            home_dir = "/var/qmail/" + home if home else "/var/qmail"
            run(
                [
                    "useradd",
                    *prefix,
                    *kind,
                    "--gid",
                    group,
                    "--home-dir",
                    home_dir.rstrip("/"),
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ]
            )


def write(path: Path, text: str, ids: Ids, owner_group_mode: tuple[str, str, int]) -> None:
    path.write_text(text)
    ids.apply(path, *owner_group_mode)


def make_dir(
    path: Path, ids: Ids, owner_group_mode: tuple[str, str, int], *, parents: bool = False
) -> None:
    path.mkdir(parents=parents, exist_ok=True)
    ids.apply(path, *owner_group_mode)


def install(root: Path, me: str, broken: list[str], ids: Ids, python: str | None = None) -> Path:
    home = root / "var" / "qmail"
    make_dir(home, ids, ("root", "qmail", 0o755), parents=True)

    bindir = home / "bin"
    make_dir(bindir, ids, ("root", "qmail", 0o755))
    for name in PROGRAMS:
        program = (HERE / "bin" / name).read_bytes()
        if python is not None:  # keep the interpreter's flags, change the interpreter
            first, rest = program.split(b"\n", 1)
            flags = first.split()[1:]
            program = b" ".join([b"#!" + python.encode(), *flags]) + b"\n" + rest
        (bindir / name).write_bytes(program)
        ids.apply(bindir / name, *PROGRAM_MODES.get(name, DEFAULT_PROGRAM_MODE))

    standin = home / "standin"
    make_dir(standin, ids, ("root", "root", 0o755))
    for module in sorted((HERE / "lib").glob("*.py")):
        shutil.copyfile(module, standin / module.name)
        ids.apply(standin / module.name, "root", "root", 0o644)
    # Compiled now, as root: the programs that run as the mail's recipient could not write
    # __pycache__, and would compile the modules again at every delivery. The cache is per
    # interpreter version, so a programs' Python other than this one just compiles its own.

    compileall.compile_dir(standin, quiet=1)
    cache = standin / "__pycache__"
    ids.apply(cache, "root", "root", 0o755)
    for compiled in cache.iterdir():
        ids.apply(compiled, "root", "root", 0o644)
    for record, owner in (("signals.log", "qmails"), ("tcpok.log", "root"), ("ready", "qmails")):
        (standin / record).touch()
        ids.apply(standin / record, owner, "qmail", 0o644)

    control = home / "control"
    make_dir(control, ids, ("root", "qmail", 0o755))
    for name, text in (
        ("me", me + "\n"),
        ("locals", f"{me}\nlocalhost\n"),
        ("rcpthosts", f"{me}\nlocalhost\n"),
        ("defaultdelivery", "./Maildir/\n"),
    ):
        if not (control / name).exists():
            write(control / name, text, ids, ("root", "qmail", 0o644))

    users = home / "users"
    make_dir(users, ids, ("root", "qmail", 0o755))

    alias = home / "alias"
    make_dir(alias, ids, ("alias", "qmail", 0o2755))
    for name in ALIAS_FILES:
        if not (alias / name).exists():
            write(alias / name, "", ids, ("root", "qmail", 0o644))
    maildir = alias / "Maildir"
    for sub in ("", "cur", "new", "tmp"):
        make_dir(maildir / sub, ids, ("alias", "nofiles", 0o700))

    queue = home / "queue"
    for sub, owner, group, mode in QUEUE_DIRS:
        make_dir(queue / sub, ids, (owner, group, mode))
        if sub in qmail_standin.SPLIT_DIRS:  # hier.c's dsplit(): the same owner and mode
            for split in range(qmail_standin.SPLIT):
                make_dir(queue / sub / str(split), ids, (owner, group, mode))
    lock = queue / "lock"
    for name, owner, mode in (("sendmutex", "qmails", 0o600), ("tcpto", "qmailr", 0o644)):
        (lock / name).touch()
        ids.apply(lock / name, owner, "qmail", mode)
    if not (lock / "trigger").exists():
        os.mkfifo(lock / "trigger")
    ids.apply(lock / "trigger", "qmails", "qmail", 0o622)

    for what in broken:
        break_install(home, what)
    return home


def break_install(home: Path, what: str) -> None:
    if what == "no-qmail-start":
        (home / "bin" / "qmail-start").unlink()
    elif what == "qmail-start-not-executable":
        (home / "bin" / "qmail-start").chmod(0o644)
    elif what == "qmail-queue-not-setuid":
        (home / "bin" / "qmail-queue").chmod(0o755)
    elif what == "no-alias-files":
        for name in ALIAS_FILES:
            (home / "alias" / name).unlink()
    elif what == "no-control-me":
        (home / "control" / "me").unlink()
    elif what == "no-sendmutex":
        (home / "queue" / "lock" / "sendmutex").unlink()
    elif what == "no-queue":
        shutil.rmtree(home / "queue")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", required=True, type=Path, help="install into DIR/var/qmail")
    parser.add_argument("--me", default=socket.gethostname(), help="control/me (default: hostname)")
    parser.add_argument(
        "--python",
        help="interpreter for the programs' #! line (default /usr/bin/python3, as in Debian)",
    )
    parser.add_argument(
        "--users", action="store_true", help="create qmail's users and groups (root only)"
    )
    parser.add_argument(
        "--install-ids",
        action="store_true",
        help="with --users: ordinary accounts, as qmail's INSTALL.ids makes them (uids >= 1000)",
    )
    parser.add_argument(
        "--broken",
        action="append",
        default=[],
        choices=sorted(BROKEN),
        help="; ".join(f"{k}: {v}" for k, v in BROKEN.items()),
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    is_root = os.geteuid() == 0
    try:
        if args.users:
            if not is_root:
                raise InstallError("--users needs root (useradd/groupadd --root)")
            create_users(root, system=not args.install_ids)
        ids = Ids(root, chown=is_root)
        missing = ids.missing() if is_root else []
        if missing:
            print(
                f"install.py: warning: not in {root}/etc/passwd or group: {' '.join(missing)};"
                " their files stay root's (fix: add --users)",
                file=sys.stderr,
            )
        home = install(root, args.me, args.broken, ids, args.python)
    except (InstallError, OSError) as exc:
        print(f"install.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"install.py: qmail stand-in installed in {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
