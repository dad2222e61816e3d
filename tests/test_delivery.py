"""delivery: qmail's rules for who receives a local address (qmail-lspawn, qmail-getpw) and which
dot-qmail file qmail-local follows for it (dot-qmail(5)), on fake trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import GID, UID
from qmail_send_systemd import delivery
from qmail_send_systemd.accounts import Account


@pytest.mark.parametrize(
    ("dash", "ext", "names"),
    [
        # dot-qmail(5)'s own example, and the cases qmail-local.c lists above qmesearch.
        ("-", "foo-bar", [".qmail-foo-bar", ".qmail-foo-default", ".qmail-default"]),
        ("-", "a", [".qmail-a", ".qmail-default"]),
        ("-", "a-", [".qmail-a-", ".qmail-a-default", ".qmail-default"]),
        (
            "-",
            "a-b-c",
            [".qmail-a-b-c", ".qmail-a-b-default", ".qmail-a-default", ".qmail-default"],
        ),
        ("-", "", [".qmail-", ".qmail-default"]),
        # The bare user: .qmail, then what the same loop makes of an empty extension.
        ("", "", [".qmail", ".qmaildefault"]),
        # Upper case becomes lower case, dots become colons (dot-qmail(5)).
        ("-", "Mailer-Daemon", [".qmail-mailer-daemon", ".qmail-mailer-default", ".qmail-default"]),
        ("-", "../etc", [".qmail-::/etc", ".qmail-default"]),
    ],
)
def test_dot_qmail_names(dash: str, ext: str, names: list[str]) -> None:
    assert delivery.dot_qmail_names(dash, ext) == names


def alias_tree(root: Path, *, uid: int = UID) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nalias:x:{uid}:{GID}::/var/qmail/alias:/usr/sbin/nologin\n"
    )
    home = root / "var/qmail/alias"
    home.mkdir(parents=True)
    return home


def test_root_and_unknown_names_belong_to_alias(tmp_path: Path) -> None:
    alias_tree(tmp_path)
    for local in ("root", "postmaster", "mailer-daemon", "Nobody-Here"):
        found = delivery.recipient(tmp_path, local)
        assert found is not None
        assert (found.account.name, found.dash, found.ext) == ("alias", "-", local)


def test_no_alias_user_no_recipient(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    assert delivery.recipient(tmp_path, "postmaster") is None


# qmail-getpw never hands mail to uid 0: as root, the test's homes are given to this uid.
USER_UID = UID or 1500


def add_user(
    root: Path, name: str, uid: int, home: str, *, owner: int | None = None, make: bool = True
) -> None:
    """An account in root/etc/passwd. Its home, when made, belongs to `owner` (default: the
    account) where the test may chown, and to the test's own uid otherwise."""
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"{name}:x:{uid}:{GID}::{home}:/bin/sh\n")
    if make:
        (root / home.lstrip("/")).mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(root / home.lstrip("/"), uid if owner is None else owner, GID)


def test_getpw_takes_the_longest_user_prefix(tmp_path: Path) -> None:
    alias_tree(tmp_path, uid=USER_UID + 1)
    add_user(tmp_path, "joe", USER_UID, "/home/joe")
    add_user(tmp_path, "joe-list", USER_UID, "/home/joe-list")
    cases = {
        "joe": ("joe", "", ""),
        "Joe-Work": ("joe", "-", "Work"),  # the user name is looked up lower-cased
        "joe-list-x": ("joe-list", "-", "x"),
        "joe-list": ("joe-list", "", ""),
        "joel": ("alias", "-", "joel"),
    }
    for local, expected in cases.items():
        found = delivery.recipient(tmp_path, local)
        assert found is not None
        assert (found.account.name, found.dash, found.ext) == expected, local


def test_getpw_passes_over_root_and_users_without_their_home(tmp_path: Path) -> None:
    alias_tree(tmp_path, uid=USER_UID + 1)
    # INSTALL.alias: "special accounts such as ftp ... should always have home directories
    # owned by root" (here: by someone else than ftp).
    add_user(tmp_path, "ftp", USER_UID + 2, "/home/ftp", owner=UID)
    add_user(tmp_path, "gone", USER_UID + 3, "/home/gone", make=False)
    for local in ("root", "ftp", "gone"):
        found = delivery.recipient(tmp_path, local)
        assert found is not None and found.account.name == "alias", local


def write_assign(root: Path, text: str, *, cdb: bool = True) -> None:
    users = root / "var/qmail/users"
    users.mkdir(parents=True, exist_ok=True)
    (users / "assign").write_text(text)
    if cdb:
        (users / "cdb").write_bytes(b"")


def test_users_assign_exact_and_wildcard(tmp_path: Path) -> None:
    alias_tree(tmp_path)
    write_assign(
        tmp_path,
        "=root:joe:1500:1500:/home/joe:::\n"
        "+list-:lists:1501:1501:/srv/lists:-:x-:\n"
        "+:catch:1502:1502:/srv/catch:-::\n.\n",
    )
    cases = {
        "ROOT": ("joe", 1500, "/home/joe", "", ""),
        "list-Devel": ("lists", 1501, "/srv/lists", "-", "x-Devel"),
        "postmaster": ("catch", 1502, "/srv/catch", "-", "postmaster"),
    }
    for local, (user, uid, home, dash, ext) in cases.items():
        found = delivery.recipient(tmp_path, local)
        assert found is not None
        assert (found.account.name, found.account.uid, found.account.home) == (user, uid, home)
        assert (found.dash, found.ext) == (dash, ext), local


def test_users_assign_without_users_cdb_is_not_used(tmp_path: Path) -> None:
    # qmail-lspawn reads users/cdb; an assign file that qmail-newu has not compiled does nothing.
    alias_tree(tmp_path)
    write_assign(tmp_path, "=root:joe:1500:1500:/home/joe:::\n.\n", cdb=False)
    found = delivery.recipient(tmp_path, "root")
    assert found is not None and found.account.name == "alias"


def lookup(root: Path, local: str) -> delivery.Lookup:
    found = delivery.recipient(root, local)
    assert found is not None
    return delivery.lookup(root, local, found)


def test_lookup_takes_the_first_file_that_exists(tmp_path: Path) -> None:
    home = alias_tree(tmp_path)
    (home / ".qmail-default").write_text("")
    assert lookup(tmp_path, "mailer-daemon").path == home / ".qmail-default"
    (home / ".qmail-mailer-default").write_text("&a@example.org\n")
    assert lookup(tmp_path, "mailer-daemon").path == home / ".qmail-mailer-default"
    (home / ".qmail-mailer-daemon").write_text("&b@example.org\n")
    assert lookup(tmp_path, "mailer-daemon").path == home / ".qmail-mailer-daemon"
    assert lookup(tmp_path, "root").path == home / ".qmail-default"


def test_lookup_passes_over_what_is_not_a_regular_file(tmp_path: Path) -> None:
    home = alias_tree(tmp_path)
    (home / ".qmail-root").mkdir()
    (home / ".qmail-default").symlink_to(".qmail-default")  # a loop: open fails, not EACCES
    found = lookup(tmp_path, "root")
    assert found.path is None and found.bounces
    assert found.looked_for == (home / ".qmail-root", home / ".qmail-default")


def test_lookup_without_a_file_for_the_bare_user_is_the_default_delivery(tmp_path: Path) -> None:
    home = alias_tree(tmp_path)
    found = delivery.lookup(tmp_path, "alias", delivery.Recipient(account(home), "", ""))
    assert found.path is None and not found.bounces


def test_lookup_with_a_missing_home_defers(tmp_path: Path) -> None:
    home = alias_tree(tmp_path)
    home.rmdir()
    found = lookup(tmp_path, "root")
    assert found.home_st is None and not found.bounces


@pytest.mark.parametrize(
    ("text", "empty", "blank", "deliveries", "mailboxes"),
    [
        ("", True, False, 0, ()),
        ("./Maildir/\n", False, False, 1, ("./Maildir/",)),
        ("./Maildir/  \t\n", False, False, 1, ("./Maildir/",)),  # trailing blanks are cut
        ("# a comment\n+list\n", False, False, 0, ()),
        ("\n./Maildir/\n", False, True, 1, ("./Maildir/",)),
        ("&a@example.org\nb@example.org\n|prog\n/var/mail/x\n", False, False, 4, ("/var/mail/x",)),
        (" ./Maildir/\n", False, False, 1, ()),  # a leading blank: a forward to " ./Maildir/"
        ("./Maildir/\n\n\n", False, False, 1, ("./Maildir/",)),  # later blank lines are allowed
    ],
)
def test_instructions(
    text: str, empty: bool, blank: bool, deliveries: int, mailboxes: tuple[str, ...]
) -> None:
    told = delivery.instructions(text)
    assert (told.empty, told.blank_first_line, told.deliveries, told.mailboxes) == (
        empty,
        blank,
        deliveries,
        mailboxes,
    )


def account(home: Path, root: Path | None = None) -> Account:
    shown = "/" + str(home.relative_to(root)) if root else str(home)
    return Account("joe", UID, GID, shown)


def test_missing_maildir(tmp_path: Path) -> None:
    home = tmp_path / "home/joe"
    home.mkdir(parents=True)
    joe = account(home, tmp_path)
    [missing] = delivery.missing_mailboxes(tmp_path, joe, "./Maildir/")
    assert (missing.path, missing.maildir) == (home / "Maildir", True)
    (home / "Maildir/new").mkdir(parents=True)
    [missing] = delivery.missing_mailboxes(tmp_path, joe, "./Maildir/")  # no tmp/ yet
    (home / "Maildir/tmp").mkdir()
    assert delivery.missing_mailboxes(tmp_path, joe, "./Maildir/") == []
    assert delivery.missing_mailboxes(tmp_path, joe, "|preline procmail\n&a@example.org") == []


def test_missing_absolute_maildir_is_under_the_root(tmp_path: Path) -> None:
    joe = account(tmp_path / "home/joe", tmp_path)
    [missing] = delivery.missing_mailboxes(tmp_path, joe, "/var/spool/mail/joe/")
    assert missing.path == tmp_path / "var/spool/mail/joe"


def test_mbox_is_created_where_the_user_may_write(tmp_path: Path) -> None:
    home = tmp_path / "home/joe"
    home.mkdir(parents=True, mode=0o755)
    joe = account(home, tmp_path)
    assert delivery.missing_mailboxes(tmp_path, joe, "./Mailbox") == []  # qmail-local makes it
    [missing] = delivery.missing_mailboxes(tmp_path, joe, "./Mail/inbox")  # no such directory
    assert (missing.path, missing.maildir) == (home / "Mail/inbox", False)


def test_mbox_in_a_directory_the_user_may_not_write(tmp_path: Path) -> None:
    spool = tmp_path / "var/mail"
    spool.mkdir(parents=True)
    spool.chmod(0o755)
    other = Account("joe", UID + 1, GID + 1, "/home/joe")  # not the owner, not the group
    [missing] = delivery.missing_mailboxes(tmp_path, other, "/var/mail/joe")
    assert missing.path == spool / "joe"
    (spool / "joe").write_text("")
    assert delivery.missing_mailboxes(tmp_path, other, "/var/mail/joe") == []
    os.chmod(spool, 0o1777)  # noqa: S103 (a sticky, world-writable spool: anyone creates)
    (spool / "joe").unlink()
    assert delivery.missing_mailboxes(tmp_path, other, "/var/mail/joe") == []
