"""The submission route: qmail-remote(8) reports for each msmtp outcome, as qmail-rspawn reads
them; setup --tls's files; verify's rules for them. msmtp is a recording stand-in here that
replays what msmtp 1.8.23 printed against aiosmtpd (the smoke scenarios use the real one)."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from conftest import make_submission_tree, python_program
from qmail_send_systemd import cli, msmtprc, status, submission, submission_config, verify
from qmail_send_systemd.setup_plan import Smarthost
from qmail_send_systemd.systemd import System
from qss_toolkit import payload

UID = os.getuid()
GID = os.getgid()
HOST = "smtp.example.net:587"
PASSWORD = 'pa ss"wo\\rd '  # noqa: S105 - spaces, a quote, a backslash, a trailing space
RSPAWN = Path(__file__).parent / "standin" / "bin" / "qmail-rspawn"

# What msmtp 1.8.23 (LC_ALL=C) printed for each outcome, with its exit status.
MSMTP_SAID = {
    "delivered": (0, ""),
    "recipient 5xx": (
        65,
        "msmtp: recipient address bob@example.org not accepted by the server\n"
        "msmtp: server message: 550 5.1.1 <bob@example.org>: no such mailbox here\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "recipient 4xx": (
        69,
        "msmtp: recipient address bob@example.org not accepted by the server\n"
        "msmtp: server message: 451 4.3.0 <bob@example.org>: try again later\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "sender 5xx": (
        65,
        "msmtp: envelope from address dev@laptop not accepted by the server\n"
        "msmtp: server message: 553 5.7.1 <dev@laptop>: sender not allowed\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "data 5xx": (
        69,
        "msmtp: the server did not accept the mail\n"
        "msmtp: server message: 554 5.6.0 message content refused\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "data 4xx": (
        69,
        "msmtp: the server did not accept the mail\n"
        "msmtp: server message: 452 4.3.1 insufficient system storage\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "wrong password": (
        77,
        "msmtp: authentication failed (method PLAIN)\n"
        "msmtp: server message: 535 5.7.8 Authentication credentials invalid\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "unknown CA": (
        69,
        "msmtp: TLS certificate verification failed: The certificate is NOT trusted. The "
        "certificate issuer is unknown. \n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "no STARTTLS": (
        69,
        "msmtp: the server does not support TLS via the STARTTLS command\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "refused": (
        75,
        "msmtp: cannot connect to smtp.example.net, port 587: Connection refused\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "timeout": (
        74,
        "msmtp: network read error: the operation timed out\n"
        "msmtp: could not send mail (account qmail-send-systemd from /etc/x)\n",
    ),
    "service refused at greeting": (
        76,
        "msmtp: cannot get initial OK message from server\n"
        "msmtp: server message: 554 5.7.1 no service for you\n",
    ),
}

# What qmail-send then does with the delivery (qmail-rspawn's report()), and what the text of
# its log line must name.
EXPECTED = {
    "delivered": ("success", "accepted message"),
    "recipient 5xx": ("failure", "550 5.1.1"),
    "recipient 4xx": ("deferral", "451 4.3.0"),
    # deferred: a bounce would carry a sender the smarthost refuses too (triple bounce)
    "sender 5xx": ("deferral", "553 5.7.1"),
    "data 5xx": ("failure", "554 5.6.0"),
    "data 4xx": ("deferral", "452 4.3.1"),
    "wrong password": ("deferral", "535 5.7.8"),
    "unknown CA": ("deferral", "certificate issuer is unknown"),
    "no STARTTLS": ("deferral", "STARTTLS"),
    "refused": ("deferral", "Connection refused"),
    "timeout": ("deferral", "timed out"),
    "service refused at greeting": ("deferral", "554 5.7.1"),
}


def _load_rspawn() -> ModuleType:
    """The stand-in's qmail-rspawn as a module (its library is in lib/ in this tree)."""
    sys.path.insert(0, str(RSPAWN.parent.parent / "lib"))
    loader = importlib.machinery.SourceFileLoader("standin_rspawn", str(RSPAWN))
    spec = importlib.util.spec_from_loader("standin_rspawn", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


RSPAWN_MODULE = _load_rspawn()
Report = Callable[[int, bytes], tuple[str, str]]
rspawn_report: Report = RSPAWN_MODULE.report


def _fake_msmtp(tmp: Path, code: int, stderr: str) -> Path:
    """An msmtp that records its argv, environment and stdin, then answers like the real one."""
    record = tmp / "msmtp-call.json"
    return python_program(
        tmp / "msmtp",
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv, 'env': dict(os.environ), "
        f"'stdin': sys.stdin.read()}}, open({str(record)!r}, 'w'))\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({code})\n",
    )


def _config(tmp: Path) -> Path:
    rc = tmp / "msmtprc"
    text = submission_config.render_msmtprc(
        Smarthost("smtp.example.net", 587),
        tls="starttls",
        user="me@example.net",
        password=PASSWORD,
        trust="system",
    )
    rc.write_bytes(text)
    rc.chmod(0o600)
    return rc


def _relay(tmp: Path, argv: list[str], code: int, stderr: str) -> str:
    root = tmp / "root"
    (root / "var/qmail/control").mkdir(parents=True, exist_ok=True)
    (root / "var/qmail/control/me").write_text("laptop.example.net\n")
    message = tmp / "message"
    message.write_bytes(b"Subject: hi\n\n.leading dot\n")
    with message.open("rb") as fd:
        return submission.relay(
            argv,
            root=str(root),
            config=str(_config(tmp)),
            msmtp=str(_fake_msmtp(tmp, code, stderr)),
            message=fd.fileno(),
        )


@pytest.mark.parametrize("case", list(MSMTP_SAID))
def test_each_msmtp_outcome_is_what_qmail_send_needs(tmp_path: Path, case: str) -> None:
    code, stderr = MSMTP_SAID[case]
    out = _relay(tmp_path, ["qmail-remote", "example.org", "dev@laptop", "bob@example.org"],
                 code, stderr)  # fmt: skip
    assert out.endswith("\0") and "\0\0" not in out
    for report in out.split("\0")[:-1]:
        assert report[:1] in "rhsKZD", report
    status, text = rspawn_report(0, out.encode())
    expected_status, needle = EXPECTED[case]
    assert status == expected_status, (case, out)
    assert needle in text, (case, text)
    assert PASSWORD not in out


def test_the_wire_format_is_qmail_remotes(tmp_path: Path) -> None:
    """Byte for byte: one report per recipient, then the message's, each ended by a 0 byte."""
    argv = ["qmail-remote", "example.org", "dev@laptop", "bob@example.org"]
    assert _relay(tmp_path, argv, 0, "") == "r\0Ksmtp.example.net:587 accepted message.\n\0"
    code, stderr = MSMTP_SAID["recipient 5xx"]
    assert _relay(tmp_path, argv, code, stderr) == (
        "hsmtp.example.net:587 does not like recipient.\n"
        "Remote host said: 550 5.1.1 <bob@example.org>: no such mailbox here\n\0"
        "DGiving up on smtp.example.net:587.\n\0"
    )
    code, stderr = MSMTP_SAID["data 5xx"]
    assert _relay(tmp_path, argv, code, stderr) == (
        "r\0Dsmtp.example.net:587 failed after I sent the message.\n"
        "Remote host said: 554 5.6.0 message content refused\n\0"
    )


def test_msmtp_gets_the_envelope_and_the_message_and_nothing_secret(tmp_path: Path) -> None:
    argv = ["qmail-remote", "example.org", "", "-bob@example.org"]  # a bounce: null sender
    _relay(tmp_path, argv, 0, "")
    call = json.loads((tmp_path / "msmtp-call.json").read_text())
    assert call["argv"][1:] == [
        f"--file={tmp_path / 'msmtprc'}",
        "--account=qmail-send-systemd",
        "--domain=laptop.example.net",  # control/me, as qmail-remote says HELO
        "--timeout=1200",
        "-f",
        "",
        "--",
        "-bob@example.org",
    ]
    assert call["stdin"] == "Subject: hi\n\n.leading dot\n"  # as queued: msmtp does the SMTP
    assert call["env"]["LC_ALL"] == "C"  # msmtp's messages are parsed in English
    assert PASSWORD not in json.dumps(call["argv"]) + json.dumps(call["env"])


def test_more_than_one_recipient_is_all_or_nothing_like_msmtp(tmp_path: Path) -> None:
    code, stderr = MSMTP_SAID["recipient 5xx"]
    argv = ["qmail-remote", "example.org", "d@l", "amy@example.org", "bob@example.org", "c@x"]
    reports = _relay(tmp_path, argv, code, stderr).split("\0")[:-1]
    assert [r[0] for r in reports] == ["s", "h", "D"]  # amy retried, bob refused, c unreported


def test_usage_and_unusable_addresses(tmp_path: Path) -> None:
    assert _relay(tmp_path, ["qmail-remote", "x", "y"], 0, "") == (
        "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"
    )
    out = _relay(tmp_path, ["qmail-remote", "x", "d@l", "a,b@example.org"], 0, "")
    assert rspawn_report(0, out.encode())[0] == "failure"
    assert not (tmp_path / "msmtp-call.json").exists()  # msmtp was never run
    out = _relay(tmp_path, ["qmail-remote", "x", "d@l", "user@[192.0.2.1]"], 0, "")
    assert out.startswith("r\0K")  # a domain literal is passed as it is


def test_missing_config_or_msmtp_defers(tmp_path: Path) -> None:
    argv = ["qmail-remote", "x", "d@l", "bob@example.org"]
    out = submission.relay(argv, root=str(tmp_path), config=str(tmp_path / "nope"))
    assert rspawn_report(0, out.encode())[0] == "deferral"
    out = submission.relay(
        argv, root=str(tmp_path), config=str(_config(tmp_path)), msmtp=str(tmp_path / "none")
    )
    assert out.startswith("ZUnable to run") and rspawn_report(0, out.encode())[0] == "deferral"


@pytest.mark.parametrize(
    ("code", "out", "expected"),
    [
        (111, b"", "deferral"),  # qmail-rspawn.c: 111 is "Unable to run qmail-remote", temporary
        (100, b"", "failure"),  # any other non-zero exit is permanent
        (-11, b"", "deferral"),  # crashed
        (0, b"", "deferral"),  # no output
        (0, b"r\0Kok\0", "success"),
        (0, b"s\0Dgave up\0", "deferral"),  # the first recipient report decides
        (0, b"Kok", "failure"),  # a report without its 0 byte does not count
    ],
)
def test_standin_rspawn_reads_reports_as_qmail_rspawn(code: int, out: bytes, expected: str) -> None:
    assert rspawn_report(code, out)[0] == expected


def test_standin_rspawn_runs_qmail_remote_as_spawn_does() -> None:
    text = RSPAWN.read_text()
    assert '["qmail-remote", domain, sender, recipient]' in text  # argv[0] found through PATH
    assert "stderr=subprocess.STDOUT" in text  # fd 2 is a copy of fd 1


# --- msmtprc ---------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [PASSWORD, '"', '""x""', " lead", "ünï", "#hash"])
def test_msmtprc_keeps_any_printable_password(tmp_path: Path, password: str) -> None:
    rc = tmp_path / "rc"
    rc.write_bytes(
        submission_config.render_msmtprc(
            Smarthost("h", 465), tls="implicit", user="u", password=password, trust="/x.pem"
        )
    )
    values = msmtprc.read_config(str(rc))
    assert values["password"] == password
    assert values["tls_starttls"] == "off" and values["port"] == "465"
    assert values["tls_trust_file"] == "/x.pem"


# --- setup --tls -----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake root: qmail's accounts mapped to the test's uid, msmtp and our qmail-remote."""
    make_submission_tree(tmp_path)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    return tmp_path


def setup(root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--root", str(root), "setup", *argv])
    return code, out.getvalue(), err.getvalue()


def tls_setup(root: Path, *extra: str) -> tuple[int, str, str]:
    return setup(
        root, "--smarthost", HOST, "--tls", "starttls", "--user", "me@example.net",
        "--password-file", str(root / "pw"), *extra,
    )  # fmt: skip


def test_setup_tls_writes_the_route_with_its_readers_modes(tree: Path) -> None:
    code, out, _ = tls_setup(tree)
    assert code == 0
    rc = tree / msmtprc.CONFIG.lstrip("/")
    st = rc.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, UID)  # qmailr's, nobody else's
    assert msmtprc.read_config(str(rc))["password"] == PASSWORD
    dropin = (tree / submission_config.DROPIN.lstrip("/")).read_text()
    assert f"BindReadOnlyPaths={submission.ROUTE_PROGRAM}:/var/qmail/bin/qmail-remote" in dropin
    assert (tree / "var/qmail/control/smtproutes").read_text() == f":{HOST}\n"
    assert PASSWORD not in out
    assert "systemd is not running" in out  # the drop-in changed: a restart was due
    assert verify.check(tree) == [] or all(
        "submission" not in f.path and "msmtprc" not in f.path for f in verify.check(tree)
    )
    assert list(submission_config.check(tree)) == []


def test_setup_tls_is_idempotent_and_dry_run_writes_nothing(tree: Path) -> None:
    assert tls_setup(tree, "--dry-run")[0] == 0
    assert not (tree / "etc/qmail-send-systemd").exists()
    assert tls_setup(tree)[0] == 0
    code, out, _ = tls_setup(tree)
    assert code == 0 and "restarted" not in out and "systemd is not running" not in out
    assert out.count("unchanged") == 3 and "replaced" not in out


def test_setup_under_umask_077_gives_its_directories_0755(tree: Path) -> None:
    """Issue 22: sudo keeps the README's `umask 077`; /etc/qmail-send-systemd came out 0700
    root and qmailr could not read msmtprc. A second setup said "unchanged"."""
    old = os.umask(0o077)
    try:
        assert tls_setup(tree)[0] == 0
        made = [
            tree / "etc/qmail-send-systemd",
            (tree / submission_config.DROPIN.lstrip("/")).parent,
        ]
        assert [stat.S_IMODE(d.stat().st_mode) for d in made] == [0o755, 0o755]
        assert stat.S_IMODE((tree / msmtprc.CONFIG.lstrip("/")).stat().st_mode) == 0o600
        made[0].chmod(0o700)  # what 1.1.0 left
        code, out, _ = tls_setup(tree)
        assert code == 0 and f"{made[0]}: fixed mode 0700 -> 0755" in out.splitlines()
        assert stat.S_IMODE(made[0].stat().st_mode) == 0o755
        code, out, _ = tls_setup(tree)
        assert "fixed" not in out and out.count("unchanged") == 3
    finally:
        os.umask(old)


def test_verify_follows_msmtprc_through_every_directory(tree: Path) -> None:
    tls_setup(tree)
    passwd = (tree / "etc/passwd").read_text().replace(f"qmailr:x:{UID}:", f"qmailr:x:{UID + 1}:")
    (tree / "etc/passwd").write_text(passwd)  # qmailr: neither the owner nor ... in the group
    (tree / "etc/group").write_text(f"root:x:{GID}:\nqmail:x:{GID + 1}:\n")
    directory = tree / "etc/qmail-send-systemd"
    directory.chmod(0o750)
    found = [f for f in submission_config.check(tree) if f.path == str(directory)]
    assert [(f.message, f.fix) for f in found] == [
        (
            f"cannot be searched by qmailr: it cannot read {directory}/msmtprc, so remote mail "
            "is deferred",
            f"chmod o+x {directory}",  # the search bit alone: not o+r, not 0755
        )
    ]
    directory.chmod(0o751)
    assert [f for f in submission_config.check(tree) if f.path == str(directory)] == []


def test_default_ports_follow_the_tls_mode(tree: Path) -> None:
    setup(tree, "--smarthost", "smtp.example.net", "--tls", "implicit", "--user", "u",
          "--password-file", str(tree / "pw"))  # fmt: skip
    assert (tree / "var/qmail/control/smtproutes").read_text() == ":smtp.example.net:465\n"
    values = msmtprc.read_config(str(tree / msmtprc.CONFIG.lstrip("/")))
    assert values["port"] == "465" and values["tls_starttls"] == "off"


def test_trust_file_is_copied_and_named(tree: Path) -> None:
    (tree / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert tls_setup(tree, "--tls-trust-file", str(tree / "ca.pem"))[0] == 0
    copy = tree / submission_config.TRUST.lstrip("/")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o644
    values = msmtprc.read_config(str(tree / msmtprc.CONFIG.lstrip("/")))
    assert values["tls_trust_file"] == submission_config.TRUST
    (tree / "junk.pem").write_text("not a certificate\n")
    code, _, err = tls_setup(tree, "--tls-trust-file", str(tree / "junk.pem"))
    assert code == 2 and "no PEM certificate" in err


def test_plain_smarthost_takes_the_route_away_keeping_backups(tree: Path) -> None:
    assert tls_setup(tree)[0] == 0
    code, out, _ = setup(tree, "--smarthost", "relay.example.net")
    assert code == 0 and out.count("removed") == 2
    assert not (tree / submission_config.DROPIN.lstrip("/")).exists()
    # The password is in no copy: msmtprc is removed without a backup (issue 22).
    assert list((tree / "etc/qmail-send-systemd").glob("msmtprc*")) == []
    dropins = list((tree / submission_config.DROPIN.lstrip("/")).parent.glob("*.conf"))
    assert dropins == []  # a backup is *.conf.bak.*: systemd does not read it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--smarthost", HOST, "--tls", "starttls", "--password-file", "pw"], "--tls needs --user"),
        (["--smarthost", HOST, "--tls", "starttls", "--user", "u"], "needs --password-file"),
        (["--smarthost", HOST, "--user", "u"], "--user needs --tls"),
        (
            [
                "--forward-root",
                "a@b.example",
                "--tls",
                "starttls",
                "--user",
                "u",
                "--password-file",
                "pw",
            ],
            "--tls needs --smarthost",
        ),
    ],
)
def test_tls_options_come_together(tree: Path, argv: list[str], message: str) -> None:
    argv = [str(tree / "pw") if a == "pw" else a for a in argv]
    code, _, err = setup(tree, *argv)
    assert code == 2 and message in err
    assert not (tree / "etc/qmail-send-systemd").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("one\ntwo\n", "more than one line"), ("a\0b\n", "control characters")],
)
def test_bad_password_files_are_refused_before_anything_is_written(
    tree: Path, content: str, message: str
) -> None:
    (tree / "pw").write_text(content)
    code, _, err = tls_setup(tree)
    assert code == 2 and message in err
    assert not (tree / "var/qmail/control/smtproutes").exists()


def test_setup_tls_without_the_package_says_what_to_install(tree: Path) -> None:
    (tree / submission_config.REMOTE.lstrip("/")).unlink()
    code, _, err = tls_setup(tree)
    assert code == 1 and "apt install qmail-send-systemd-submission" in err
    assert not (tree / "var/qmail/control/smtproutes").exists()


# --- verify ----------------------------------------------------------------------------------


def _messages(root: Path) -> list[str]:
    return [f"{f.severity}: {f.message} (fix: {f.fix})" for f in submission_config.check(root)]


def test_verify_is_silent_without_the_route(tree: Path) -> None:
    assert _messages(tree) == []


def test_verify_wants_the_password_file_private_and_qmailrs(tree: Path) -> None:
    tls_setup(tree)
    rc = tree / msmtprc.CONFIG.lstrip("/")
    rc.chmod(0o640)
    found = _messages(tree)
    assert len(found) == 1 and "mode 0640" in found[0]
    assert f"chmod 0600 {rc}" in found[0]  # never anything wider
    rc.chmod(0o600)
    assert _messages(tree) == []
    passwd = (tree / "etc/passwd").read_text().replace(f"qmailr:x:{UID}:", f"qmailr:x:{UID + 1}:")
    (tree / "etc/passwd").write_text(passwd)
    found = _messages(tree)
    assert len(found) == 1 and "not qmailr" in found[0] and "chown qmailr" in found[0]


def test_verify_names_missing_parts_of_the_route(tree: Path) -> None:
    tls_setup(tree)
    (tree / submission.MSMTP.lstrip("/")).unlink()
    assert any("apt install msmtp" in m for m in _messages(tree))
    (tree / submission_config.DROPIN.lstrip("/")).unlink()
    found = _messages(tree)
    assert any("relays without TLS" in m for m in found)
    document = verify.render_json(verify.check(tree))
    assert PASSWORD not in document and json.loads(document)["errors"] >= 2


def test_the_package_carries_what_the_drop_in_binds_and_needs_msmtp() -> None:
    package = {p.name: p for p in payload.load_packages()}[submission_config.PACKAGE]
    for fmt in payload.FORMATS:
        files = {f.destination: f for f in package.files_for(fmt)}
        assert files[submission_config.REMOTE].mode == 0o755
        depends = package.relation(fmt, "depends", "1.1.0")
        assert "msmtp" in depends
        assert any(d.startswith("qmail-send-systemd ") for d in depends)  # the helper's modules


# --- removing the submission package ---------------------------------------------------------


def test_without_the_package_the_route_defers_and_never_relays(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The drop-in binds the main package's program: removing the submission package leaves
    the service its bind source; each remote delivery is deferred (Z), with the fix."""
    assert submission.route_main(["qmail-remote", "h", "s", "r@x"], str(tmp_path / "gone")) == 0
    out = capfd.readouterr().out
    assert out == submission.PACKAGE_MISSING
    assert out.startswith("Z") and out.endswith("\0") and out.count("\0") == 1
    assert "never sent in clear" in out and f"Install {submission.PACKAGE} again" in out


def test_with_the_package_the_route_relays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "qmail-remote"
    package.write_text("#!/bin/sh\n")
    package.chmod(0o755)
    relayed: list[list[str]] = []

    def relay(argv: list[str]) -> int:
        relayed.append(list(argv))
        return 0

    monkeypatch.setattr(submission, "main", relay)
    assert submission.route_main(["qmail-remote", "h", "s", "r@x"], str(package)) == 0
    assert relayed == [["qmail-remote", "h", "s", "r@x"]]


def test_the_main_package_carries_the_bind_source() -> None:
    package = {p.name: p for p in payload.load_packages()}["qmail-send-systemd"]
    for fmt in payload.FORMATS:
        files = {f.destination: f for f in package.files_for(fmt)}
        assert files[submission.ROUTE_PROGRAM].mode == 0o755
    assert submission.DROPIN == submission_config.DROPIN
    assert submission.ROUTE_PROGRAM in submission_config.DROPIN_TEXT
    assert submission.PACKAGE_PROGRAM not in submission_config.DROPIN_TEXT.replace(
        submission.ROUTE_PROGRAM, ""
    )


def test_verify_and_status_say_the_package_is_gone_in_one_line(tree: Path) -> None:
    tls_setup(tree)
    (tree / submission_config.REMOTE.lstrip("/")).unlink()  # apt remove ...-submission
    found = [f for f in submission_config.check(tree) if f.path.endswith("qmail-remote")]
    assert [(f.message, f.fix) for f in found] == [
        (
            f"{submission.PACKAGE} is not installed ({submission.PACKAGE_PROGRAM} is missing): "
            "remote mail on the submission route stays queued, never sent in clear, until it "
            "is back",
            f"apt install {submission.PACKAGE} (or dnf install {submission.PACKAGE}), or "
            "qmail-send-systemd setup --smarthost HOST for plain SMTP",
        )
    ]
    assert not any("cannot start" in f.message for f in submission_config.check(tree))
    report = status.check(System(tree), live=False, now=0)  # --root: the tree alone
    said = [p for p in report["attention"] if "submission" in p["problem"]]  # type: ignore[attr-defined]
    assert [(p["problem"], p["fix"]) for p in said] == [(found[0].message, found[0].fix)]


def test_configure_rewrites_the_old_drop_in(tree: Path) -> None:
    """1.1.0's drop-in bound the submission package's program: an upgrade makes it bind the
    main package's, so that the unit no longer fails (226/NAMESPACE) once that is removed."""
    dropin = tree / submission_config.DROPIN.lstrip("/")
    dropin.parent.mkdir(parents=True)
    dropin.write_text(f"[Service]\n{submission_config.OLD_BIND}\n")
    [finding] = [f for f in submission_config.check(tree) if f.path == str(dropin)]
    assert "cannot start" in finding.message
    said = submission_config.upgrade_dropin(tree)
    assert said is not None and submission.ROUTE_PROGRAM in said
    assert dropin.read_text() == submission_config.DROPIN_TEXT
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o644
    assert submission_config.upgrade_dropin(tree) is None  # once


# --- the password in one place ---------------------------------------------------------------


def test_a_changed_password_leaves_no_copy_of_the_old_one(tree: Path) -> None:
    assert tls_setup(tree)[0] == 0
    (tree / "pw").write_text("new secret\n")
    code, out, _ = tls_setup(tree)
    assert (
        code == 0
        and "msmtprc: replaced\n" in out
        and "previous kept" not in out.split("msmtprc")[1].splitlines()[0]
    )
    config_dir = tree / "etc/qmail-send-systemd"
    assert sorted(p.name for p in config_dir.iterdir()) == ["msmtprc"]
    assert PASSWORD not in (config_dir / "msmtprc").read_text()


def test_setup_and_verify_remove_and_name_the_copies_110_kept(tree: Path) -> None:
    assert tls_setup(tree)[0] == 0
    copy = tree / "etc/qmail-send-systemd/msmtprc.bak.20261201T000000Z"
    copy.write_text(f'password "{PASSWORD}"\n')
    copy.chmod(0o600)
    [finding] = [f for f in submission_config.check(tree) if f.path == str(copy)]
    assert finding.message.endswith("it holds an old password") and finding.fix == f"rm -f {copy}"
    assert tls_setup(tree, "--dry-run")[1].count("would be removed (an old password)") == 1
    assert copy.exists()
    code, out, _ = tls_setup(tree)
    assert code == 0 and f"{copy}: removed (an old password)" in out and not copy.exists()


def test_setup_warns_of_a_password_file_others_may_read(tree: Path) -> None:
    (tree / "pw").chmod(0o644)
    code, _, err = tls_setup(tree, "--dry-run")
    assert code == 0
    assert err == (
        f"qmail-send-systemd setup: warning: the password file {tree / 'pw'} is mode 0644: "
        "others may read the password (remove it now, setup keeps its own copy in "
        f"/etc/qmail-send-systemd/msmtprc; or chmod 600 {tree / 'pw'})\n"
    )
    (tree / "pw").chmod(0o600)
    assert tls_setup(tree, "--dry-run")[2] == ""


def test_msmtp_is_told_not_to_invent_a_message_id_where_it_knows_how(tree: Path) -> None:
    """msmtp >= 1.8.21 added `<hash.@hostname>` to qmail's bounces (sender <>); older msmtp
    adds none, and refuses the unknown command."""
    msmtp = tree / submission.MSMTP.lstrip("/")
    rc = tree / msmtprc.CONFIG.lstrip("/")
    msmtp.write_text("#!/bin/sh\necho 'msmtp version 1.8.11'\n")
    assert tls_setup(tree)[0] == 0
    assert "set_msgid_header" not in rc.read_text()
    assert list(submission_config.check(tree)) == []
    msmtp.write_text("#!/bin/sh\necho 'msmtp version 1.8.23'\necho 'Platform: x'\n")
    [finding] = submission_config.check(tree)  # msmtp upgraded since setup
    assert finding.severity == "warning" and "msmtp 1.8.23 adds an invalid Message-ID" in (
        finding.message
    )
    assert tls_setup(tree)[0] == 0
    assert "set_msgid_header off\n" in rc.read_text()
    assert list(submission_config.check(tree)) == []


def test_back_to_the_systems_cas_removes_the_old_ca_copy(tree: Path) -> None:
    (tree / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert tls_setup(tree, "--tls-trust-file", str(tree / "ca.pem"))[0] == 0
    copy = tree / submission_config.TRUST.lstrip("/")
    assert copy.exists()
    code, out, _ = tls_setup(tree)
    assert code == 0 and f"{copy}: removed\n" in out
    assert sorted(p.name for p in copy.parent.iterdir()) == ["msmtprc"]
    rc = msmtprc.read_config(str(tree / msmtprc.CONFIG.lstrip("/")))
    assert rc["tls_trust_file"] == "system"
