"""exec-qmail-start's argv (os.execv recorded) and log-priority's journal prefixes."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from qmail_send_systemd import start
from qmail_send_systemd.errors import HelperError

SRC = Path(__file__).resolve().parents[1] / "src"
LOGGER = ["/usr/sbin/qmail-send-systemd", "log-priority"]
HELPER = [sys.executable, "-m", "qmail_send_systemd.cli"]
HELPER_ENV = {**os.environ, "PYTHONPATH": str(SRC)}


def exec_argv(root: Path) -> tuple[str, list[str]]:
    seen: list[tuple[str, list[str]]] = []

    def fake_execv(program: str, argv: Sequence[str]) -> None:
        seen.append((program, list(argv)))

    assert start.exec_qmail_start(root, execv=fake_execv) == 0
    assert len(seen) == 1
    return seen[0]


def write_delivery(root: Path, content: bytes) -> None:
    control = root / "var/qmail/control"
    control.mkdir(parents=True, exist_ok=True)
    (control / "defaultdelivery").write_bytes(content)


def test_without_defaultdelivery_uses_maildir(tmp_path: Path) -> None:
    program, argv = exec_argv(tmp_path)
    assert program == str(tmp_path / "var/qmail/bin/qmail-start")
    assert argv == ["qmail-start", "./Maildir/", *LOGGER]


@pytest.mark.parametrize(
    ("content", "delivery"),
    [
        (b"./Maildir/\n", "./Maildir/"),
        (b"./Mailbox\n\n\n", "./Mailbox"),
        (b"|preline procmail\n", "|preline procmail"),
        # Several instructions, like a .qmail file: inner newlines stay.
        (b"./Maildir/\n&copy@example.org\n", "./Maildir/\n&copy@example.org"),
        (b"", "./Maildir/"),
        (b"\n\n", "./Maildir/"),
        (b"  \n", "./Maildir/"),
    ],
)
def test_defaultdelivery_contents(tmp_path: Path, content: bytes, delivery: str) -> None:
    write_delivery(tmp_path, content)
    assert exec_argv(tmp_path)[1] == ["qmail-start", delivery, *LOGGER]


def test_tilde_is_passed_on_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_delivery(tmp_path, b"~/.maildir/\n")
    assert exec_argv(tmp_path)[1][1] == "~/.maildir/"
    assert "qmail does not expand" in capsys.readouterr().err


def test_unreadable_defaultdelivery_is_an_error(tmp_path: Path) -> None:
    write_delivery(tmp_path, b"")
    path = tmp_path / "var/qmail/control/defaultdelivery"
    path.unlink()
    path.mkdir()  # reading a directory fails for root too
    with pytest.raises(HelperError, match="cannot read"):
        exec_argv(tmp_path)


def test_nul_byte_is_an_error(tmp_path: Path) -> None:
    write_delivery(tmp_path, b"./Maildir/\0\n")
    with pytest.raises(HelperError, match="NUL"):
        exec_argv(tmp_path)


def test_missing_qmail_start_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(HelperError, match=r"cannot execute .*qmail-start"):
        start.exec_qmail_start(tmp_path)


def test_exec_replaces_the_process(tmp_path: Path) -> None:
    # A stand-in qmail-start that prints its argv: the helper's process becomes it (same PID).
    bindir = tmp_path / "var/qmail/bin"
    bindir.mkdir(parents=True)
    (bindir / "qmail-start").write_text('#!/bin/sh\necho "pid=$$"\nprintf "[%s]" "$@"\n')
    (bindir / "qmail-start").chmod(0o755)
    child = subprocess.Popen(
        [*HELPER, "--root", str(tmp_path), "exec-qmail-start"],
        env=HELPER_ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    pid_line, args = stdout.splitlines()
    assert args == "[./Maildir/][/usr/sbin/qmail-send-systemd][log-priority]"
    assert pid_line == f"pid={child.pid}"


@pytest.mark.parametrize(
    ("line", "record"),
    [
        (b"alert: cannot start: unable to open mutex\n", b"<1>alert: cannot start"),
        (b"warning: trouble injecting bounce message\n", b"<4>warning: trouble"),
        (b"status: local 0/10 remote 1/20\n", b"<6>status: local"),
        (b"delivery 1: success: did_0+0+1/\n", b"<6>delivery 1"),
        (b"  alert: not at the start\n", b"<6>  alert:"),
        (b"alerting: a different word\n", b"<6>alerting:"),
        (b"warning\n", b"<6>warning\n"),
    ],
)
def test_priority_mapping(line: bytes, record: bytes) -> None:
    assert start.prefixed(line).startswith(record)


def test_log_priority_copies_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = io.BytesIO(b"alert: a\nwarning: b\nstatus: c\n\xff\xfe bytes\nlast, no newline")
    with out.open("wb") as sink:
        assert start.log_priority(source, sink.fileno()) == 0
    assert out.read_bytes() == (
        b"<1>alert: a\n<4>warning: b\n<6>status: c\n<6>\xff\xfe bytes\n<6>last, no newline\n"
    )


def test_log_priority_keeps_reading_after_its_output_breaks() -> None:
    # If the logger stopped reading, qmail-send would block on a full pipe.
    read_end, write_end = os.pipe()
    os.close(read_end)
    source = io.BytesIO(b"status: x\n" * 10000)
    assert start.log_priority(source, write_end) == 0
    assert source.read() == b""
    os.close(write_end)


def test_log_priority_is_unbuffered() -> None:
    # Each line must reach the journal while qmail-send is still running, not at exit.
    child = subprocess.Popen(
        [*HELPER, "log-priority"],
        env=HELPER_ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for line, record in [
            (b"warning: first\n", b"<4>warning: first\n"),
            (b"status: second\n", b"<6>status: second\n"),
        ]:
            child.stdin.write(line)
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], 10)
            assert ready, "log-priority held the line back"
            assert child.stdout.readline() == record
    finally:
        child.stdin.close()
        assert child.wait(timeout=10) == 0
        child.stdout.close()


def helper_stderr(root: Path, *, journal: bool, stream: str = "") -> str:
    """What exec-qmail-start writes on fd 2 when $JOURNAL_STREAM names that fd (`journal`),
    or names `stream`."""
    err = root / "stderr"
    with err.open("wb") as sink:
        st = os.fstat(sink.fileno())
        env = {**HELPER_ENV, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if journal else stream}
        subprocess.run(
            [*HELPER, "--root", str(root), "exec-qmail-start"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            check=False,
            timeout=30,
        )
    return err.read_text()


def fake_qmail_start(root: Path) -> None:
    bindir = root / "var/qmail/bin"
    bindir.mkdir(parents=True)
    (bindir / "qmail-start").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "qmail-start").chmod(0o755)


def test_helper_warning_has_warning_priority_in_the_journal(tmp_path: Path) -> None:
    fake_qmail_start(tmp_path)
    write_delivery(tmp_path, b"~/.maildir/\n")
    assert helper_stderr(tmp_path, journal=True).startswith("<4>warning: ")
    # Not the journal (a terminal, a file): the line as it is, no "<4>" in front.
    assert helper_stderr(tmp_path, journal=False).startswith("warning: ")


def test_helper_error_has_error_priority_in_the_journal(tmp_path: Path) -> None:
    # No qmail-start under the root: exec-qmail-start fails with one error line.
    assert helper_stderr(tmp_path, journal=True).startswith(
        "<3>error: qmail-send-systemd exec-qmail-start: cannot execute "
    )


def test_a_journal_stream_of_another_file_is_not_ours(tmp_path: Path) -> None:
    # $JOURNAL_STREAM is inherited: it counts only while fd 2 is still that stream.
    other = os.stat(tmp_path)
    write_delivery(tmp_path, b"~/.maildir/\n")
    fake_qmail_start(tmp_path)
    stderr = helper_stderr(tmp_path, journal=False, stream=f"{other.st_dev}:{other.st_ino}")
    assert stderr.startswith("warning: ")


@pytest.mark.parametrize(
    ("line", "helper", "qmail"),
    [
        # qmail-send never says "error:" first; splogger would log such a line at info.
        (b"error: cannot read", b"<3>", b"<6>"),
        (b"warning: contains '~'", b"<4>", b"<4>"),
        (b"alert: x", b"<1>", b"<1>"),
        (b"qmail-send-systemd: something", b"<6>", b"<6>"),
    ],
)
def test_helper_and_qmail_priorities(line: bytes, helper: bytes, qmail: bytes) -> None:
    assert start.priority(line, start.HELPER_PRIORITIES) == helper
    assert start.priority(line) == qmail
