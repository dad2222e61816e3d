"""The stand-in's qmail-local keeps qmail-local(8) and dot-qmail(5): which .qmail file it follows
(the `-default` files included), what an empty or broken one means, and how it defers mail for a
missing Maildir until maildirmake(8) makes one; and qmail-send's exit stays clean when a late
ALRM (a reload racing a stop) arrives. Run as the current user, as tests/test_standin.py."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_standin import Qmail

# Every address belongs to the alias user (qmail-users(5)'s catch-all), as in test_standin.
CATCH_ALL = "+:alias:{uid}:{gid}:{home}:-::\n.\n"


@pytest.fixture
def alias(tmp_path: Path) -> Iterator[tuple[Qmail, Path]]:
    qmail = Qmail(tmp_path)
    home = qmail.home / "alias"
    for name in (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon"):
        (home / name).unlink()
    (qmail.home / "users" / "assign").write_text(
        CATCH_ALL.format(uid=os.getuid(), gid=os.getgid(), home=home)
    )
    yield qmail, home
    qmail.stop()


def new_mail(maildir: Path) -> list[str]:
    return [(maildir / "new" / name).read_text() for name in sorted(os.listdir(maildir / "new"))]


def mail_root(qmail: Qmail, body: str, report: str, *sendmail: str) -> None:
    """Start qmail-send with ./Maildir/, send `body` to root, wait for delivery 1's report."""
    qmail.start("./Maildir/")
    qmail.sendmail(f"To: root\n\n{body}\n", "-t", *sendmail)
    qmail.wait_log(f"delivery 1: {report}")


def test_qmail_default_alone_delivers_root_mail(alias: tuple[Qmail, Path]) -> None:
    # An empty ~alias/.qmail-default (INSTALL.alias's touch): the default delivery, ./Maildir/.
    qmail, home = alias
    (home / ".qmail-default").write_text("")
    mail_root(qmail, "from cron", "success: did_1+0+0/")
    [mail] = new_mail(home / "Maildir")
    assert "Delivered-To: root@standin.test\n" in mail and mail.endswith("from cron\n")


def test_most_specific_default_file_wins(alias: tuple[Qmail, Path], tmp_path: Path) -> None:
    qmail, home = alias
    (home / ".qmail-default").write_text(f"{tmp_path}/default.mbox\n")
    (home / ".qmail-list-default").write_text(f"{tmp_path}/list.mbox\n")
    (home / ".qmail-list-a:b").write_text(f"{tmp_path}/dotted.mbox\n")  # dots become colons
    qmail.start("./Maildir/")
    for to in ("list-devel-x", "LIST-A.B", "other"):
        qmail.sendmail(f"To: {to}\n\nfor {to}\n", "-t")
    qmail.wait_log("end msg ", count=3)
    assert "for list-devel-x" in (tmp_path / "list.mbox").read_text()
    assert "for LIST-A.B" in (tmp_path / "dotted.mbox").read_text()
    assert "for other" in (tmp_path / "default.mbox").read_text()


def test_without_a_file_an_extension_bounces(alias: tuple[Qmail, Path]) -> None:
    qmail, home = alias
    (home / ".qmail-default").mkdir()  # not a regular file: passed over
    mail_root(qmail, "lost", "failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/", "-f", "")


@pytest.mark.parametrize(
    ("content", "mode", "report"),
    [
        ("\n./Maildir/\n", 0o644, "Uh-oh:_first_line_of_.qmail_file_is_blank._(#4.2.1)/"),
        ("./Maildir/\n", 0o646, "Uh-oh:_.qmail_file_is_writable._(#4.7.0)/"),
    ],
)
def test_broken_qmail_file_defers(
    alias: tuple[Qmail, Path], content: str, mode: int, report: str
) -> None:
    qmail, home = alias
    (home / ".qmail-root").write_text(content)
    (home / ".qmail-root").chmod(mode)
    mail_root(qmail, "kept", f"deferral: {report}")
    assert new_mail(home / "Maildir") == []


def test_comments_only_accept_the_mail_and_keep_none(alias: tuple[Qmail, Path]) -> None:
    qmail, home = alias
    (home / ".qmail-root").write_text("# nothing yet\n")
    mail_root(qmail, "gone", "success: did_0+0+0/")
    assert new_mail(home / "Maildir") == []


def test_missing_maildir_defers_until_maildirmake(alias: tuple[Qmail, Path]) -> None:
    qmail, home = alias
    (home / ".qmail-root").write_text("./Mail/root/\n")
    proc = qmail.start("./Maildir/")
    qmail.sendmail("To: root\n\nwait for me\n", "-t")
    qmail.wait_log("delivery 1: deferral: Unable_to_chdir_to_maildir._(#4.2.1)/")
    (home / "Mail").mkdir()
    made = qmail.run(str(qmail.bin / "maildirmake"), str(home / "Mail/root"))
    assert made.returncode == 0, made.stderr
    proc.send_signal(signal.SIGALRM)  # what a flush does
    qmail.wait_log("delivery 2: success: did_1+0+0/")
    [mail] = new_mail(home / "Mail/root")
    assert mail.endswith("wait for me\n")


def test_maildir_without_tmp_defers(alias: tuple[Qmail, Path]) -> None:
    qmail, home = alias
    (home / "Maildir" / "tmp").rmdir()
    (home / ".qmail-root").write_text("")  # empty: the default delivery ./Maildir/
    mail_root(qmail, "kept", "deferral: Temporary_error_on_maildir_delivery._(#4.3.0)/")


def test_maildirmake(tmp_path: Path) -> None:
    qmail = Qmail(tmp_path)
    made = qmail.run(str(qmail.bin / "maildirmake"), str(tmp_path / "box"))
    assert (made.returncode, made.stderr) == (0, b"")
    for sub in ("", "tmp", "new", "cur"):
        assert (tmp_path / "box" / sub).stat().st_mode & 0o777 == 0o700
    again = qmail.run(str(qmail.bin / "maildirmake"), str(tmp_path / "box"))
    assert again.returncode == 111
    assert again.stderr.startswith(b"maildirmake: fatal: unable to mkdir ")
    assert qmail.run(str(qmail.bin / "maildirmake")).returncode == 100


def test_alrm_during_the_exit_does_not_kill_qmail_send(tmp_path: Path) -> None:
    # A reload racing a stop: qmail-send gets TERM, then ALRM while it exits. Its handlers stay
    # in place until _exit(0), so it still exits 0, never "killed by SIGALRM".
    qmail = Qmail(tmp_path)
    try:
        proc = qmail.start()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited since poll()
                os.kill(proc.pid, signal.SIGALRM)
        assert proc.returncode == 0
        assert qmail.log()[-1] == "status: exiting"
    finally:
        qmail.stop()
