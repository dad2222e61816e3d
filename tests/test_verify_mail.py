"""verify's mail checks on fake trees: mail to root, postmaster and mailer-daemon is covered by
a file qmail-local would use for it (dot-qmail(5)), and each local user who can receive mail has
the default delivery's mailbox, or a warning that their mail is deferred."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import GID, UID
from qmail_send_systemd import cli, verify
from qmail_send_systemd.findings import ERROR, WARNING, Finding

# qmail-getpw never hands mail to uid 0: as root, the test's users get this uid (and chown).
USER_UID = UID if UID >= verify.FIRST_USER_UID else 1500
needs_user_uid = pytest.mark.skipif(
    USER_UID != UID and os.geteuid() != 0,
    reason="a mail user needs uid >= 1000 owning its home: run as such a user or as root",
)


def errors(root: Path) -> list[Finding]:
    return [f for f in verify.check(root) if f.severity == ERROR]


def at(root: Path, path: Path) -> list[Finding]:
    return [f for f in verify.check(root) if f.path == str(path)]


def alias_home(root: Path, *files: str, content: str = "") -> Path:
    """~alias with exactly these dot-qmail files (and a Maildir/, as LWQ sets it up)."""
    home = root / "var/qmail/alias"
    for name in verify.ALIAS_FILES:
        (home / name).unlink(missing_ok=True)
    for name in files:
        (home / name).write_text(content)
        (home / name).chmod(0o644)
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    return home


# -- item 1: which file delivers root's, postmaster's and mailer-daemon's mail ----------------


@pytest.mark.parametrize("content", ["", "| fastforward -d /etc/aliases.cdb\n", "&a@b.example\n"])
def test_qmail_default_alone_covers_every_alias(qmail_tree: Path, content: str) -> None:
    # INSTALL.alias: "touch ~alias/.qmail-default to catch everything else"; fastforward's
    # set-up puts its program line there.
    alias_home(qmail_tree, ".qmail-default", content=content)
    assert verify.check(qmail_tree) == []


def test_without_any_file_each_alias_bounces(qmail_tree: Path) -> None:
    home = alias_home(qmail_tree)
    found = errors(qmail_tree)
    assert {f.path for f in found} == {str(home / name) for name in verify.ALIAS_FILES}
    mailer = next(f for f in found if f.path.endswith("mailer-daemon"))
    assert "(.qmail-mailer-default, .qmail-default)" in mailer.message
    assert "bounces mail to mailer-daemon" in mailer.message
    assert "setup --forward-root" in mailer.fix


def test_a_default_file_covers_only_its_own_prefix(qmail_tree: Path) -> None:
    # .qmail-mailer-default takes mailer-daemon (and mailer-anything), not root or postmaster.
    home = alias_home(qmail_tree, ".qmail-mailer-default", content="&a@b.example\n")
    assert {f.path for f in errors(qmail_tree)} == {
        str(home / ".qmail-root"),
        str(home / ".qmail-postmaster"),
    }


def test_file_names_are_lower_case(qmail_tree: Path) -> None:
    # qmail-local lower-cases the extension before it looks: .qmail-Root is never used.
    home = alias_home(qmail_tree, ".qmail-Root", ".qmail-postmaster", ".qmail-mailer-daemon")
    assert [f.path for f in errors(qmail_tree)] == [str(home / ".qmail-root")]


def test_a_directory_is_no_dot_qmail_file(qmail_tree: Path) -> None:
    home = alias_home(qmail_tree, ".qmail-postmaster", ".qmail-mailer-daemon")
    (home / ".qmail-default").mkdir()
    assert [f.path for f in errors(qmail_tree)] == [str(home / ".qmail-root")]


def test_empty_qmail_root_is_the_default_delivery_into_alias(qmail_tree: Path) -> None:
    # INSTALL.alias's `touch`: dot-qmail(5) says an empty file means the default delivery,
    # here ./Maildir/ in ~alias. That is delivered, so no error...
    home = alias_home(qmail_tree, *verify.ALIAS_FILES)
    assert verify.check(qmail_tree) == []
    # ...unless ~alias/Maildir/ is missing: then it waits in the queue, and verify says so once.
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).rmdir()
    (home / "Maildir").rmdir()
    [finding] = verify.check(qmail_tree)
    assert (finding.severity, finding.path) == (WARNING, str(home / "Maildir"))
    assert "mail to root, postmaster and mailer-daemon" in finding.message
    assert "user alias" in finding.message
    assert finding.fix == "sudo -u alias /var/qmail/bin/maildirmake ~alias/Maildir"


def test_forwarding_alias_files_need_no_alias_maildir(qmail_tree: Path) -> None:
    # The tree's alias files forward (&admin@example.org): ~alias/Maildir is never used.
    assert not (qmail_tree / "var/qmail/alias/Maildir").exists()
    assert verify.check(qmail_tree) == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("# forward to the admin, some day\n", "has no delivery line"),
        ("\n&a@b.example\n", "starts with a blank line: qmail-local defers mail to root"),
    ],
)
def test_qmail_root_that_delivers_nothing(qmail_tree: Path, content: str, words: str) -> None:
    home = alias_home(qmail_tree, ".qmail-postmaster", ".qmail-mailer-daemon", ".qmail-default")
    (home / ".qmail-root").write_text(content)
    [finding] = errors(qmail_tree)
    assert finding.path == str(home / ".qmail-root")
    assert words in finding.message


def test_world_writable_qmail_file_defers(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/alias/.qmail-root"
    path.chmod(0o646)
    [finding] = errors(qmail_tree)
    assert (finding.path, finding.fix) == (str(path), f"chmod o-w {path}")
    assert "world-writable" in finding.message


def test_qmail_file_unreadable_by_alias(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/alias/.qmail-root"
    path.chmod(0o044)  # alias owns the file (same uid), without the owner's read bit
    [finding] = errors(qmail_tree)
    assert finding.message == "is not readable by alias: qmail-local defers mail to root"
    assert finding.fix == f"chmod u+r {path}"


def test_one_unreadable_default_file_is_one_finding(qmail_tree: Path) -> None:
    alias_home(qmail_tree, ".qmail-default", content="&a@b.example\n")
    (qmail_tree / "var/qmail/alias/.qmail-default").chmod(0o044)
    [finding] = errors(qmail_tree)
    assert "mail to root, postmaster and mailer-daemon" in finding.message


def test_alias_files_follow_the_alias_home(qmail_tree: Path) -> None:
    passwd = qmail_tree / "etc/passwd"
    passwd.write_text(passwd.read_text().replace(":/var/qmail/alias:", ":/srv/alias:"))
    # No /srv/alias: qmail-local cannot switch to the home, and defers all three.
    [finding] = errors(qmail_tree)
    assert finding.path == str(qmail_tree / "srv/alias")
    assert "home directory is missing" in finding.message
    (qmail_tree / "srv/alias").mkdir(parents=True)
    assert {f.path for f in errors(qmail_tree)} == {
        str(qmail_tree / "srv/alias" / name) for name in verify.ALIAS_FILES
    }


def test_users_assign_decides_when_compiled(qmail_tree: Path) -> None:
    # `=root:...` in users/assign (compiled into users/cdb) sends root's mail to another home.
    alias_home(qmail_tree, ".qmail-postmaster", ".qmail-mailer-daemon", content="&a@b.example\n")
    users = qmail_tree / "var/qmail/users"
    users.mkdir()
    (users / "assign").write_text(f"=root:admin:{UID}:{GID}:/srv/admin:-:root:\n.\n")
    (users / "cdb").write_bytes(b"")
    admin = qmail_tree / "srv/admin"
    admin.mkdir(parents=True)
    assert [f.path for f in errors(qmail_tree)] == [str(admin / ".qmail-root")]
    (admin / ".qmail-root").write_text("&a@b.example\n")
    assert errors(qmail_tree) == []


# -- item 6: users whose mail falls to the default delivery ------------------------------------


def add_user(
    root: Path, name: str, *, shell: str = "/bin/bash", uid: int = USER_UID, maildir: bool = False
) -> Path:
    home = root / "home" / name
    home.mkdir(parents=True)
    if maildir:
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
    if os.geteuid() == 0:
        for path in (home, *home.rglob("*")):
            os.chown(path, uid, GID)
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"{name}:x:{uid}:{GID}::/home/{name}:{shell}\n")
    return home


@needs_user_uid
def test_user_without_maildir_is_warned_by_name(qmail_tree: Path) -> None:
    home = add_user(qmail_tree, "bob")
    [finding] = verify.check(qmail_tree)
    assert (finding.severity, finding.path) == (WARNING, str(home / "Maildir"))
    assert finding.message.startswith("is missing, so qmail-local defers mail to bob ")
    assert "user bob" in finding.message and "7 days old" in finding.message
    assert finding.fix == "sudo -u bob /var/qmail/bin/maildirmake ~bob/Maildir"
    assert not verify.has_errors([finding])  # deferred, not lost: a warning


@needs_user_uid
def test_user_with_maildir_is_fine(qmail_tree: Path) -> None:
    add_user(qmail_tree, "carol", maildir=True)
    assert verify.check(qmail_tree) == []


@needs_user_uid
@pytest.mark.parametrize("shell", ["/usr/sbin/nologin", "/bin/false", "/sbin/nologin"])
def test_users_without_a_login_shell_are_not_checked(qmail_tree: Path, shell: str) -> None:
    add_user(qmail_tree, "daemonish", shell=shell)
    assert verify.check(qmail_tree) == []


def test_system_accounts_are_not_checked(qmail_tree: Path) -> None:
    add_user(qmail_tree, "sys", uid=999)
    assert verify.check(qmail_tree) == []


@needs_user_uid
def test_users_without_a_home_are_not_checked(qmail_tree: Path) -> None:
    add_user(qmail_tree, "gone").rmdir()
    assert verify.check(qmail_tree) == []


@needs_user_uid
def test_user_with_their_own_qmail_is_not_checked(qmail_tree: Path) -> None:
    home = add_user(qmail_tree, "dave")
    (home / ".qmail").write_text("&dave@elsewhere.example\n")
    assert verify.check(qmail_tree) == []
    (home / ".qmail").write_text("")  # empty: the default delivery again
    assert [f.path for f in verify.check(qmail_tree)] == [str(home / "Maildir")]


@needs_user_uid
def test_user_maildir_without_tmp(qmail_tree: Path) -> None:
    home = add_user(qmail_tree, "erin", maildir=True)
    (home / "Maildir/tmp").rmdir()
    [finding] = verify.check(qmail_tree)
    assert finding.message.startswith("is not a maildir (no tmp/ or new/)")
    assert (
        finding.fix == "sudo -u erin mkdir -p ~erin/Maildir/tmp ~erin/Maildir/new ~erin/Maildir/cur"
    )


@needs_user_uid
def test_default_delivery_and_queuelifetime_come_from_control(qmail_tree: Path) -> None:
    control = qmail_tree / "var/qmail/control"
    (control / "defaultdelivery").write_text("./Mail/inbox/\n")
    (control / "queuelifetime").write_text("172800\n")
    for name in ("defaultdelivery", "queuelifetime"):
        (control / name).chmod(0o644)
    home = add_user(qmail_tree, "fay", maildir=True)  # ./Maildir/ is not the one used
    [finding] = verify.check(qmail_tree)
    assert finding.path == str(home / "Mail/inbox")
    assert "2 days old" in finding.message
    assert finding.fix == (
        "sudo -u fay mkdir -p ~fay/Mail && sudo -u fay /var/qmail/bin/maildirmake ~fay/Mail/inbox"
    )
    (control / "defaultdelivery").write_text("|preline procmail\n")  # no mailbox to check
    assert verify.check(qmail_tree) == []


@needs_user_uid
def test_mbox_default_delivery(qmail_tree: Path) -> None:
    control = qmail_tree / "var/qmail/control"
    (control / "defaultdelivery").write_text("./Mailbox\n")
    (control / "defaultdelivery").chmod(0o644)
    add_user(qmail_tree, "gus")  # qmail-local creates ~gus/Mailbox itself
    assert verify.check(qmail_tree) == []


@needs_user_uid
def test_verify_under_root_names_the_user(
    qmail_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `verify --root DIR`: DIR's passwd, as a maintainer script's $DPKG_ROOT would give it.
    add_user(qmail_tree, "hal")
    assert cli.main(["--root", str(qmail_tree), "verify"]) == 0  # a warning is no error
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"warning: {qmail_tree}/home/hal/Maildir: is missing")
    assert out[0].endswith("(fix: sudo -u hal /var/qmail/bin/maildirmake ~hal/Maildir)")
    assert out[-1] == "verify: 0 error(s), 1 warning(s)"


@needs_user_uid
@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("# off for now\n", 0o644, "has no delivery line"),
        ("\n&x@y.example\n", 0o644, "starts with a blank line"),
        ("&x@y.example\n", 0o646, "is world-writable"),
    ],
)
def test_a_users_own_qmail_problems_are_warnings(
    qmail_tree: Path, content: str, mode: int, words: str
) -> None:
    # The same rules as for ~alias, but a user's own set-up never makes qmail incomplete.
    home = add_user(qmail_tree, "ivy")
    (home / ".qmail").write_text(content)
    (home / ".qmail").chmod(mode)
    [finding] = verify.check(qmail_tree)
    assert (finding.severity, finding.path) == (WARNING, str(home / ".qmail"))
    assert words in finding.message and "mail to ivy" in finding.message


@needs_user_uid
def test_world_writable_user_home_defers_their_mail(qmail_tree: Path) -> None:
    home = add_user(qmail_tree, "jay", maildir=True)
    home.chmod(0o757)
    [finding] = verify.check(qmail_tree)
    assert (finding.severity, finding.fix) == (WARNING, f"chmod o-w {home}")
    home.chmod(0o755)
    assert verify.check(qmail_tree) == []
