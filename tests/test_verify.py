"""verify: each check, positive and negative, on fake qmail trees under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import GID, UID, make_qmail_tree, write_accounts
from qmail_send_systemd import verify
from qmail_send_systemd.findings import ERROR, WARNING, Finding


def errors(root: Path) -> list[Finding]:
    return [f for f in verify.check(root) if f.severity == ERROR]


def only(findings: list[Finding], path: Path) -> Finding:
    matching = [f for f in findings if f.path == str(path)]
    assert len(matching) == 1, findings
    return matching[0]


def test_complete_tree_has_no_findings(qmail_tree: Path) -> None:
    assert verify.check(qmail_tree) == []
    assert not verify.has_errors([])
    assert verify.render_text([]) == "verify: the qmail installation is complete"


def test_empty_root_reports_every_missing_part(tmp_path: Path) -> None:
    found = verify.check(tmp_path)
    messages = {(f.path, f.message) for f in found}
    assert (str(tmp_path / "var/qmail/bin"), "qmail's program directory is missing") in messages
    for user in verify.USERS:
        assert (str(tmp_path / "etc/passwd"), f"no user {user}") in messages
    for group in verify.GROUPS:
        assert (str(tmp_path / "etc/group"), f"no group {group}") in messages
    assert (str(tmp_path / "var/qmail/queue"), "the queue is missing") in messages
    assert all(f.severity == ERROR and f.fix for f in found)


def test_missing_bin_dir_is_one_error_not_nine(qmail_tree: Path) -> None:
    bindir = qmail_tree / "var/qmail/bin"
    for program in bindir.iterdir():
        program.unlink()
    bindir.rmdir()
    found = errors(qmail_tree)
    assert [f.path for f in found] == [str(bindir)]


@pytest.mark.parametrize("name", verify.PROGRAMS)
def test_missing_program(qmail_tree: Path, name: str) -> None:
    path = qmail_tree / "var/qmail/bin" / name
    path.unlink()
    finding = only(errors(qmail_tree), path)
    assert finding.message == "is missing"


@pytest.mark.parametrize("name", ["qmail-start", "qmail-send", "qmail-tcpok", "sendmail"])
def test_program_not_executable(qmail_tree: Path, name: str) -> None:
    path = qmail_tree / "var/qmail/bin" / name
    path.chmod(0o644)
    finding = only(errors(qmail_tree), path)
    assert finding.message == "is not executable"
    assert finding.fix == f"chmod 711 {path}"


def test_program_that_is_a_directory(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/bin/qmail-clean"
    path.unlink()
    path.mkdir()
    assert only(errors(qmail_tree), path).message == "is not a regular file"


def test_qmail_queue_without_setuid_bit(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/bin/qmail-queue"
    path.chmod(0o711)
    finding = only(errors(qmail_tree), path)
    assert finding.message == "lacks its set-uid bit"
    assert "chmod 4711" in finding.fix


def test_qmail_queue_owned_by_someone_else(qmail_tree: Path) -> None:
    write_accounts(qmail_tree, qmailq_uid=UID + 4242)
    found = errors(qmail_tree)
    queue_bin = only(found, qmail_tree / "var/qmail/bin/qmail-queue")
    assert queue_bin.message == f"is owned by uid {UID}, not qmailq ({UID + 4242})"
    # The queue directory has the same wrong owner.
    assert only(found, qmail_tree / "var/qmail/queue").message.startswith("is owned by uid")


@pytest.mark.parametrize("account", [*verify.USERS, *verify.GROUPS])
def test_missing_account(qmail_tree: Path, account: str) -> None:
    write_accounts(qmail_tree, skip=[account])
    found = errors(qmail_tree)
    kind = "user" if account in verify.USERS else "group"
    db = qmail_tree / ("etc/passwd" if kind == "user" else "etc/group")
    assert any(f.path == str(db) and f.message == f"no {kind} {account}" for f in found)


def test_malformed_passwd_lines_are_ignored(qmail_tree: Path) -> None:
    passwd = qmail_tree / "etc/passwd"
    passwd.write_text("garbage\nqmails:x:notanumber:1::/:/bin/true\n" + passwd.read_text())
    assert verify.check(qmail_tree) == []


def test_missing_queue(qmail_tree: Path) -> None:
    (qmail_tree / "var/qmail/queue").rmdir()
    assert only(errors(qmail_tree), qmail_tree / "var/qmail/queue").message == (
        "the queue is missing"
    )


def test_missing_control_me(qmail_tree: Path) -> None:
    me = qmail_tree / "var/qmail/control/me"
    me.unlink()
    finding = only(errors(qmail_tree), me)
    assert finding.message.startswith("is missing")


def test_control_symlink_loop(qmail_tree: Path) -> None:
    loop = qmail_tree / "var/qmail/control/locals"
    loop.symlink_to("locals")
    assert only(errors(qmail_tree), loop).message == "is a symlink loop"


def test_program_symlink_loop(qmail_tree: Path) -> None:
    first = qmail_tree / "var/qmail/bin/qmail-send"
    first.unlink()
    first.symlink_to("qmail-send.loop")
    (qmail_tree / "var/qmail/bin/qmail-send.loop").symlink_to("qmail-send")
    assert only(errors(qmail_tree), first).message == "is a symlink loop"


def test_dangling_control_me_symlink(qmail_tree: Path) -> None:
    me = qmail_tree / "var/qmail/control/me"
    me.unlink()
    me.symlink_to("/nonexistent/me")
    assert only(errors(qmail_tree), me).message == "is missing"


def test_defaultdelivery_with_tilde_is_a_warning(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/control/defaultdelivery"
    path.write_text("~/.maildir/\n")
    path.chmod(0o644)
    found = verify.check(qmail_tree)
    finding = only(found, path)
    assert finding.severity == WARNING
    assert "forward address" in finding.message
    assert not verify.has_errors(found)


def test_defaultdelivery_maildir_is_clean(qmail_tree: Path) -> None:
    path = qmail_tree / "var/qmail/control/defaultdelivery"
    path.write_text("./Maildir/\n")
    path.chmod(0o644)
    assert verify.check(qmail_tree) == []


def test_render_text_and_json(qmail_tree: Path) -> None:
    (qmail_tree / "var/qmail/bin/qmail-queue").chmod(0o711)
    (qmail_tree / "var/qmail/control/defaultdelivery").write_text("~/Maildir/\n")
    (qmail_tree / "var/qmail/control/defaultdelivery").chmod(0o644)
    found = verify.check(qmail_tree)
    text = verify.render_text(found).splitlines()
    assert text[-1] == "verify: 1 error(s), 1 warning(s)"
    assert text[0].startswith("error: ") and "(fix: " in text[0]
    document = json.loads(verify.render_json(found))
    assert document["ok"] is False
    assert (document["errors"], document["warnings"]) == (1, 1)
    assert set(document["findings"][0]) == {"severity", "path", "message", "fix"}


def test_accounts_from_the_tree_not_from_nss(tmp_path: Path) -> None:
    # --root reads <root>/etc/passwd directly: the host's users do not count.
    tree = make_qmail_tree(tmp_path)
    (tree / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tree / "etc/group").write_text(f"qmail:x:{GID}:\n")
    found = errors(tree)
    assert {f.message for f in found if f.path == str(tree / "etc/passwd")} == {
        f"no user {user}" for user in verify.USERS
    }
