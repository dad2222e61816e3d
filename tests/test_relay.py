"""`setup --smarthost --forward-root` on fake qmail trees: contents, owners, modes, backups."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest

from qmail_send_systemd import cli, relay
from qmail_send_systemd.setup_plan import Target

UID = os.getuid()
GID = os.getgid()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A minimal LWQ layout whose qmail accounts map to the test's own uid/gid (no root needed)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        f"root:x:{UID}:{GID}:root:/root:/bin/sh\nalias:x:{UID}:{GID}::/var/qmail/alias:/bin/true\n"
    )
    (tmp_path / "etc/group").write_text(f"root:x:{GID}:\nqmail:x:{GID}:\n")
    control = tmp_path / "var/qmail/control"
    control.mkdir(parents=True)
    (control / "me").write_text("laptop.example.net\n")
    (control / "locals").write_text("localhost\nlaptop.example.net\n")
    (tmp_path / "var/qmail/alias").mkdir()
    return tmp_path


def setup(root: Path, *argv: str) -> tuple[int, list[str]]:
    """Run the real command line; return its exit code and its stdout lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["--root", str(root), "setup", *argv])
    return code, out.getvalue().splitlines()


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            found[str(path.relative_to(root))] = (path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return found


ALIAS = ("var/qmail/alias/.qmail-root", "var/qmail/alias/.qmail-postmaster",
         "var/qmail/alias/.qmail-mailer-daemon")  # fmt: skip


def test_writes_route_and_forwards_with_qmail_modes(tree: Path) -> None:
    code, lines = setup(
        tree, "--smarthost", "smtp.example.org:587", "--forward-root", "me@example.org"
    )
    assert code == 0
    assert (tree / "var/qmail/control/smtproutes").read_text() == ":smtp.example.org:587\n"
    for name in ALIAS:
        assert (tree / name).read_text() == "&me@example.org\n"
    for name in (*ALIAS, "var/qmail/control/smtproutes"):
        st = (tree / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o644
        assert (st.st_uid, st.st_gid) == (UID, GID)
    assert sum("created" in line for line in lines) == 4
    assert not list(tree.rglob(".tmp-qmail-send-systemd-*"))


def test_default_port_is_left_to_qmail(tree: Path) -> None:
    assert setup(tree, "--smarthost", "SMTP.Example.org")[0] == 0
    assert (tree / "var/qmail/control/smtproutes").read_text() == ":smtp.example.org\n"
    assert not (tree / ALIAS[0]).exists()


@pytest.mark.parametrize(
    ("given", "route"),
    [
        ("192.0.2.7", ":192.0.2.7"),
        ("[192.0.2.7]:2525", ":192.0.2.7:2525"),
        ("mx-1.a.b:25", ":mx-1.a.b:25"),
    ],
)
def test_accepted_smarthosts(tree: Path, given: str, route: str) -> None:
    assert setup(tree, "--smarthost", given)[0] == 0
    assert (tree / "var/qmail/control/smtproutes").read_text() == route + "\n"


@pytest.mark.parametrize(
    "bad",
    [
        "", "host:0", "host:65536", "host:", "host:25x", "host: 25", "-host.example",
        "host-.example",
        "ho_st.example", "a..b", "1.2.3", "256.1.1.1", "[::1]", "2001:db8::1", "[192.0.2.1",
        "host\nname", "a" * 64 + ".example", "[192.0.2.1]x", "host:²",
    ],
)  # fmt: skip
def test_refuses_malformed_smarthost_and_writes_nothing(
    tree: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(tree)
    code, _ = setup(tree, f"--smarthost={bad}", "--forward-root", "me@example.org")
    assert code == 2
    assert snapshot(tree) == before
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "smarthost" in err


@pytest.mark.parametrize(
    "bad",
    [
        "", "me", "@example.org", "me@", "me@ex ample.org", "me @example.org", "me@example.org\n",
        "me@exa\tmple.org", "a..b@example.org", ".a@example.org", "\"a b\"@example.org",
        "m\u00e9@example.org", "me@-example.org", "me@[::1]", "me@example.org\x00",
    ],
)  # fmt: skip
def test_refuses_malformed_address_and_writes_nothing(
    tree: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(tree)
    code, _ = setup(tree, "--smarthost", "smtp.example.org", "--forward-root", bad)
    assert code == 2
    assert snapshot(tree) == before
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_refuses_forward_that_loops_back(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(tree)
    assert setup(tree, "--forward-root", "root@laptop.example.net")[0] == 2
    assert snapshot(tree) == before
    assert "loop" in capsys.readouterr().err
    # A local user is a fine target: only the addresses that land back in ~alias loop.
    assert setup(tree, "--forward-root", "alice@laptop.example.net")[0] == 0


def test_second_run_is_idempotent(tree: Path) -> None:
    argv = ("--smarthost", "smtp.example.org:587", "--forward-root", "me@example.org")
    assert setup(tree, *argv)[0] == 0
    before = snapshot(tree)
    code, lines = setup(tree, *argv)
    assert code == 0
    assert snapshot(tree) == before  # same mtimes: nothing rewritten, no backup made
    assert all(line.endswith("unchanged") for line in lines)


def test_replacing_keeps_a_backup_of_each_changed_file(tree: Path) -> None:
    (tree / ALIAS[0]).write_text("./Maildir/\n")
    assert setup(tree, "--forward-root", "me@example.org", "--smarthost", "a.example")[0] == 0
    code, lines = setup(tree, "--forward-root", "you@example.org", "--smarthost", "a.example")
    assert code == 0
    root_backups = sorted((tree / "var/qmail/alias").glob(".qmail-root.bak.*"))
    assert [p.read_text() for p in root_backups] == ["./Maildir/\n", "&me@example.org\n"]
    assert (tree / ALIAS[0]).read_text() == "&you@example.org\n"
    # The unchanged smtproutes was neither rewritten nor backed up.
    assert not list((tree / "var/qmail/control").glob("smtproutes.bak*"))
    assert any("previous kept as .qmail-root.bak." in line for line in lines)


def test_backup_names_never_collide(tree: Path) -> None:
    target = Target(tree / ALIAS[1], b"&a@example.org\n", UID, GID)
    for body in (b"1\n", b"2\n", b"3\n"):
        target.path.write_bytes(body)
        relay.apply([target], now=1_700_000_000.0)
    backups = sorted(p.name for p in target.path.parent.glob(".qmail-postmaster.bak.*"))
    assert backups == [
        ".qmail-postmaster.bak.20231114T221320Z",
        ".qmail-postmaster.bak.20231114T221320Z.1",
        ".qmail-postmaster.bak.20231114T221320Z.2",
    ]


def test_keeps_per_domain_routes(tree: Path) -> None:
    routes = tree / "var/qmail/control/smtproutes"
    routes.write_text("lists.example.com:[192.0.2.9]\n:old.example\n\n")
    assert setup(tree, "--smarthost", "new.example:465")[0] == 0
    assert routes.read_text() == "lists.example.com:[192.0.2.9]\n:new.example:465\n"


def test_wrong_mode_is_fixed_without_a_backup(tree: Path) -> None:
    path = tree / ALIAS[2]
    path.write_text("&me@example.org\n")
    path.chmod(0o666)  # group/world-writable: qmail-local would defer with "Uh-oh"
    code, lines = setup(tree, "--forward-root", "me@example.org")
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(path.parent.glob("*.bak.*"))
    assert any("fixed owner/mode" in line for line in lines)


def test_dry_run_writes_nothing(tree: Path) -> None:
    before = snapshot(tree)
    code, lines = setup(
        tree, "--dry-run", "--smarthost", "a.example", "--forward-root", "me@b.example"
    )
    assert code == 0 and snapshot(tree) == before
    assert sum("would be created" in line for line in lines) == 4


def test_missing_qmail_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert setup(tmp_path, "--smarthost", "a.example")[0] == 1
    assert not list(tmp_path.iterdir())
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "qmail is not installed" in err


def test_missing_alias_user_writes_nothing(tree: Path) -> None:
    (tree / "etc/passwd").write_text(f"root:x:{UID}:{GID}:root:/root:/bin/sh\n")
    before = snapshot(tree)
    assert setup(tree, "--smarthost", "a.example", "--forward-root", "me@b.example")[0] == 1
    assert snapshot(tree) == before


def test_needs_at_least_one_option(tree: Path) -> None:
    assert setup(tree)[0] == 2


def test_failed_staging_leaves_no_temp_files(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fchmod = os.fchmod
    calls = []

    def failing_fchmod(fd: int, mode: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise PermissionError(1, "Operation not permitted")
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", failing_fchmod)
    before = snapshot(tree)
    assert setup(tree, "--smarthost", "a.example", "--forward-root", "me@b.example")[0] == 1
    assert snapshot(tree) == before
    assert not list(tree.rglob(".tmp-qmail-send-systemd-*"))
