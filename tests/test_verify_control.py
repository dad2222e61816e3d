"""verify's control-file rule: each file the helper knows is judged by the user that reads it,
and a fix gives that reader read access and nothing more; a file it does not know is never an
error. On fake trees, and on the rule itself with made-up owners and modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import GID, UID, write_accounts
from qmail_send_systemd import verify
from qmail_send_systemd.findings import ERROR, Finding

# Numbers nobody in the tree has: a reader with its own uid and group.
READER_UID = UID + 7
QMAIL_GID = GID + 7


def control(root: Path, name: str, mode: int, text: str = "x\n") -> Path:
    path = root / "var/qmail/control" / name
    path.write_text(text)
    path.chmod(mode)
    return path


def findings_for(root: Path, path: Path) -> list[Finding]:
    return [f for f in verify.check(root) if f.path == str(path)]


def test_private_file_of_a_tls_patch_is_never_judged(qmail_tree: Path) -> None:
    # servercert.pem 640 qmaild:qmail is what TLS patches ask for; even 000 is their business.
    write_accounts(qmail_tree, ids={"qmaild": READER_UID})
    for mode in (0o640, 0o600, 0o000):
        pem = control(qmail_tree, "servercert.pem", mode, "-----BEGIN PRIVATE KEY-----\n")
        assert findings_for(qmail_tree, pem) == [], oct(mode)


def test_unknown_file_that_does_not_resolve_is_never_an_error(qmail_tree: Path) -> None:
    loop = qmail_tree / "var/qmail/control/tlshosts.pem"
    loop.symlink_to("tlshosts.pem")
    assert findings_for(qmail_tree, loop) == []


def test_known_file_unreadable_by_its_reader(qmail_tree: Path) -> None:
    # smtproutes is qmail-remote's (qmailr, group qmail): 600 of another owner and group.
    write_accounts(qmail_tree, ids={"qmailr": READER_UID, "qmail": QMAIL_GID})
    routes = control(qmail_tree, "smtproutes", 0o600, ":smarthost.example.net\n")
    [finding] = findings_for(qmail_tree, routes)
    assert finding.severity == ERROR
    assert finding.message == "is not readable by qmail-remote (qmailr:qmail)"
    assert finding.fix == f"chgrp qmail {routes} && chmod g+r {routes}"


def test_known_file_readable_by_its_reader_whatever_the_mode(qmail_tree: Path) -> None:
    # Group qmail is the file's group (GID): 640 is enough for qmailr, and 600 is enough for
    # qmail-send's locals when qmails owns it (the tree's files belong to the test's uid).
    write_accounts(qmail_tree, ids={"qmailr": READER_UID})
    routes = control(qmail_tree, "smtproutes", 0o640)
    locals_ = control(qmail_tree, "locals", 0o600)
    assert findings_for(qmail_tree, routes) == findings_for(qmail_tree, locals_) == []


def test_file_any_user_reads_must_be_world_readable(qmail_tree: Path) -> None:
    # qmail-inject (sendmail) reads defaulthost as whoever sends mail.
    host = control(qmail_tree, "defaulthost", 0o640, "example.org\n")
    [finding] = findings_for(qmail_tree, host)
    assert finding.message == "is not readable by qmail-inject and sendmail, run by any user"
    assert finding.fix == f"chmod a+r {host}"
    host.chmod(0o604)
    assert findings_for(qmail_tree, host) == []


def test_mode_000_me_is_unreadable_by_everyone(qmail_tree: Path) -> None:
    # Judged by the mode, not by whether verify (perhaps as root) can open it.
    me = qmail_tree / "var/qmail/control/me"
    me.chmod(0)
    assert [f.message for f in findings_for(qmail_tree, me)] == [
        "is not readable by qmail-inject and sendmail, run by any user"
    ]


def test_defaultdelivery_is_read_by_root_without_dac_override(qmail_tree: Path) -> None:
    # The unit's run has only CAP_SETUID and CAP_SETGID: root too needs a read bit.
    path = control(qmail_tree, "defaultdelivery", 0o000, "./Maildir/\n")
    [finding] = [f for f in findings_for(qmail_tree, path) if f.severity == ERROR]
    assert finding.message == "is not readable by qmail-send-systemd run (root:root)"
    assert "chmod a+r" not in finding.fix and "644" not in finding.fix


def status(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "owner", "group", "fix"),
    [
        (0o600, 10, 20, ""),  # the reader owns it
        (0o040, 10, 20, "chmod u+r F"),  # the owner's bits decide for the owner
        (0o640, 99, 20, ""),  # the reader's group
        (0o604, 99, 20, "chmod g+r F"),  # the group's bits decide for the group
        (0o604, 99, 98, ""),  # the others' bits for everyone else
        (0o640, 99, 98, "chgrp grp20 F && chmod g+r F"),  # private to another group
        (0o000, 99, 98, "chgrp grp20 F && chmod g+r F"),
    ],
)
def test_read_fix_for_one_reader(mode: int, owner: int, group: int, fix: str) -> None:
    root = Path("/nonexistent")
    got = verify.read_fix(root, Path("F"), status(mode, owner, group), 10, 20)
    assert got == fix.replace("grp20", "20")  # no group file under that root: the number


@pytest.mark.parametrize(("mode", "fix"), [(0o644, ""), (0o604, ""), (0o640, "chmod a+r F")])
def test_read_fix_for_any_user(mode: int, fix: str) -> None:
    assert verify.read_fix(Path("/"), Path("F"), status(mode, 0, 0), None, 0) == fix


def test_no_fix_widens_beyond_the_reader(qmail_tree: Path) -> None:
    # Every known file of one qmail user, made 600 by someone else: the reader's group is the
    # file's group (GID in the tree), so each fix adds that group's read bit and nothing more.
    write_accounts(
        qmail_tree, ids={"qmails": READER_UID, "qmailr": READER_UID, "qmaild": READER_UID}
    )
    for name, reader in verify.CONTROL_READERS.items():
        if reader.user in (None, "root"):
            continue
        path = control(qmail_tree, name, 0o600)
        assert [f.fix for f in findings_for(qmail_tree, path)] == [f"chmod g+r {path}"], name
        path.unlink()
