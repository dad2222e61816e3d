"""`run`: qmail-start's argv, the log copied with journal priorities, signals passed on to
qmail-send, READY=1, and the exit status mirrored; with a fake qmail-start (a shell script)
that writes qmail-send's record on its output, as qmail-start(8) does without a logger."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qmail_send_systemd import start, submission
from qmail_send_systemd.errors import HelperError

SRC = Path(__file__).resolve().parents[1] / "src"
HELPER = [sys.executable, "-m", "qmail_send_systemd.cli"]
HELPER_ENV = {**os.environ, "PYTHONPATH": str(SRC)}
STATUS = "status: local 0/10 remote 0/20"


def write_delivery(root: Path, content: bytes) -> None:
    control = root / "var/qmail/control"
    control.mkdir(parents=True, exist_ok=True)
    (control / "defaultdelivery").write_bytes(content)


def test_qmail_start_gets_the_maildir_and_no_logger(tmp_path: Path) -> None:
    program, argv = start.qmail_start_argv(tmp_path)
    assert program == str(tmp_path / "var/qmail/bin/qmail-start")
    assert argv == ["qmail-start", "./Maildir/"]


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
    assert start.qmail_start_argv(tmp_path)[1] == ["qmail-start", delivery]


def test_tilde_is_passed_on_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_delivery(tmp_path, b"~/.maildir/\n")
    assert start.qmail_start_argv(tmp_path)[1][1] == "~/.maildir/"
    assert "qmail does not expand" in capsys.readouterr().err


def test_unreadable_defaultdelivery_is_an_error(tmp_path: Path) -> None:
    write_delivery(tmp_path, b"")
    path = tmp_path / "var/qmail/control/defaultdelivery"
    path.unlink()
    path.mkdir()  # reading a directory fails for root too
    with pytest.raises(HelperError, match="cannot read"):
        start.qmail_start_argv(tmp_path)


def test_nul_byte_is_an_error(tmp_path: Path) -> None:
    write_delivery(tmp_path, b"./Maildir/\0\n")
    with pytest.raises(HelperError, match="NUL"):
        start.qmail_start_argv(tmp_path)


# -- the log ----------------------------------------------------------------------------------


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


def copy(chunks: list[bytes], *, prefix: bool = True) -> tuple[bytes, start.LogCopier]:
    read_end, write_end = os.pipe()
    copier = start.LogCopier(write_end, prefix)
    for chunk in chunks:
        copier.feed(chunk)
    copier.close()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        return out.read(), copier


def test_lines_split_anywhere_are_copied_whole() -> None:
    out, copier = copy([b"alert: a\nwarn", b"ing: b\nstat", b"us: c\n\xff\xfe bytes\nlast"])
    assert out == b"<1>alert: a\n<4>warning: b\n<6>status: c\n<6>\xff\xfe bytes\n<6>last\n"
    assert copier.seen_ready_line


def test_no_prefix_where_the_output_is_not_the_journal() -> None:
    out, copier = copy([b"alert: a\nwarning: b\n"], prefix=False)
    assert out == b"alert: a\nwarning: b\n"
    assert not copier.seen_ready_line  # no status: line yet


def test_it_keeps_reading_after_its_output_breaks() -> None:
    # If it stopped reading, qmail-send would block on a full pipe.
    read_end, write_end = os.pipe()
    os.close(read_end)
    copier = start.LogCopier(write_end, True)
    for _ in range(1000):
        copier.feed(b"delivery 1: success: did_1+0+0/\n" * 10)
    copier.feed(b"status: local 0/10 remote 0/20\n")
    assert not copier.writable and copier.seen_ready_line
    os.close(write_end)


def test_journal_stream_is_the_one_systemd_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "out").open("wb") as sink:
        st = os.fstat(sink.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert start.is_journal(sink.fileno())
        other = os.stat(tmp_path)  # inherited from a parent whose stream this is not
        monkeypatch.setenv("JOURNAL_STREAM", f"{other.st_dev}:{other.st_ino}")
        assert not start.is_journal(sink.fileno())
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not start.is_journal(sink.fileno())


# -- signals and readiness (the process table faked) ------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervisor() -> tuple[start.Supervisor, list[tuple[int, int]], list[str], Clock]:
    sent: list[tuple[int, int]] = []
    told: list[str] = []
    clock = Clock()
    devnull = os.open(os.devnull, os.O_WRONLY)
    copier = start.LogCopier(devnull, True)
    sup = start.Supervisor(
        4242, -1, copier, notify=told.append, kill=lambda p, s: sent.append((p, s)), clock=clock
    )
    return sup, sent, told, clock


def test_term_goes_on_at_once() -> None:
    sup, sent, told, _ = supervisor()
    sup.on_signal(signal.SIGTERM)
    assert sent == [(4242, signal.SIGTERM)]
    assert told == []


def test_alrm_and_hup_wait_for_qmail_sends_first_status_line() -> None:
    # Before it, qmail-send may not have its handlers yet, and either signal would kill it.
    sup, sent, told, _ = supervisor()
    for signum in (signal.SIGHUP, signal.SIGALRM, signal.SIGHUP):
        sup.on_signal(signum)
    assert sent == []
    sup.on_output(b"warning: trouble opening directory info/3; will try again later\n")
    assert (sent, told) == ([], [])
    sup.on_output(STATUS.encode() + b"\n")
    assert told == ["READY=1\nSTATUS=qmail-send is running (PID 4242)"]
    assert sent == [(4242, signal.SIGHUP), (4242, signal.SIGALRM)]
    sup.on_signal(signal.SIGALRM)
    assert sent[-1] == (4242, signal.SIGALRM)
    sup.on_output(STATUS.encode() + b"\n")
    assert len(told) == 1


def test_ready_anyway_after_the_fallback_delay() -> None:
    # A queue scan that takes long: systemctl start returns, ALRM still waits for the line.
    sup, sent, told, clock = supervisor()
    assert sup.timeout() == start.READY_FALLBACK_SECONDS
    clock.now += start.READY_FALLBACK_SECONDS - 1
    sup.on_tick()
    assert told == []
    clock.now += 1
    sup.on_tick()
    assert told == ["READY=1\nSTATUS=qmail-send is running (PID 4242)"]
    assert sup.timeout() is None
    sup.on_signal(signal.SIGALRM)
    assert sent == []
    sup.on_output(STATUS.encode() + b"\n")
    assert sent == [(4242, signal.SIGALRM)] and len(told) == 1


def test_no_ready_for_a_qmail_send_that_exited(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, told, clock = supervisor()
    monkeypatch.setattr(os, "waitpid", lambda pid, flags: (pid, 111 << 8))
    sup.on_signal(signal.SIGCHLD)
    clock.now += start.READY_FALLBACK_SECONDS
    sup.on_tick()
    assert (told, sup.status) == ([], 111 << 8)


def test_a_signal_for_qmail_send_uses_its_uid_when_root_may_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The unit's root has no CAP_KILL: kill() of a qmails process fails until euid is qmails.
    events: list[tuple[str, int]] = []
    euid = [0]

    def fake_kill(pid: int, signum: int) -> None:
        events.append(("kill", euid[0]))
        if euid[0] != 7001:
            raise PermissionError(1, "Operation not permitted")

    def fake_seteuid(uid: int) -> None:
        euid[0] = uid
        events.append(("seteuid", uid))

    class Entry:
        pw_uid = 7001

    monkeypatch.setattr(os, "kill", fake_kill)
    monkeypatch.setattr(os, "seteuid", fake_seteuid)
    monkeypatch.setattr("pwd.getpwnam", lambda name: Entry())
    start.send_signal(4242, signal.SIGHUP)
    assert events == [("kill", 0), ("seteuid", 7001), ("kill", 7001), ("seteuid", 0)]


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        start.notify_systemd("READY=1")
        assert listener.recv(4096) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    start.notify_systemd("READY=1")  # not under systemd: nothing, no error


# -- whole runs with a fake qmail-start ---------------------------------------------------------


def fake_qmail_start(root: Path, script: str) -> None:
    bindir = root / "var/qmail/bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "qmail-start").write_text("#!/bin/sh\n" + script)
    (bindir / "qmail-start").chmod(0o755)


def _ignore_interrupts() -> None:
    """What a shell's background job inherits: SIGINT and SIGQUIT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


# Signals 32 and 33 are the C library's own (glibc's SIGCANCEL and SIGSETXID): not in
# signal.valid_signals(), refused by signal.signal. One that whoever started the suite ignored
# (a CI runner can) stays ignored in the helper and in what it execs: not the helper's to reset.
UNRESETTABLE = sum(1 << (n - 1) for n in range(1, 65) if n not in signal.valid_signals())
# rt_sigaction(2)'s number where the kernel's struct sigaction starts with the handler.
RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)


# Resolved here, not between fork and exec (dlopen's lock may be another thread's then).
LIBC = ctypes.CDLL(None, use_errno=True)
SYSCALL = LIBC.syscall
IGNORE = (ctypes.c_ulong * 4)(1)  # SIG_IGN, no flags, no restorer, an empty mask


def _ignore_32() -> None:
    """What such a runner's child inherits: signal 32 ignored, set behind the C library."""
    if SYSCALL(RT_SIGACTION, 32, ctypes.byref(IGNORE), None, 8) != 0:
        raise OSError(ctypes.get_errno(), "rt_sigaction(32, SIG_IGN)")


def signal_mask(field: str, status: str) -> int:
    """The mask proc(5)'s status gives as `field` (SigIgn, SigBlk)."""
    [line] = [x for x in status.splitlines() if x.startswith(f"{field}:")]
    return int(line.split()[1], 16)


def helper(
    root: Path, out: Path, *, starter: Callable[[], None] | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`run` under --root with stdout to `out`, which $JOURNAL_STREAM names; `starter` sets
    up what it inherits (ignored signals) as whoever starts it would."""
    with out.open("wb") as sink:
        st = os.fstat(sink.fileno())
        environ = {**HELPER_ENV, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **env}
        return subprocess.Popen(
            [*HELPER, "--root", str(root), "run"],
            env=environ,
            stdout=sink,
            stderr=sink,
            preexec_fn=starter,  # noqa: PLW1509 (no threads)
        )


def wait_for(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never came: {path.read_text()!r}"
        time.sleep(0.02)


def test_a_start_failure_s_alert_reaches_the_log_with_its_exit_code(tmp_path: Path) -> None:
    # What 1.0.0 lost: qmail-send exits at once, and its last line comes after its end.
    fake_qmail_start(tmp_path, 'echo "alert: cannot start: qmail-send is already running"\n'
                     "exit 111\n")  # fmt: skip
    out = tmp_path / "out"
    proc = helper(tmp_path, out)
    assert proc.wait(timeout=30) == 111
    assert out.read_bytes() == b"<1>alert: cannot start: qmail-send is already running\n"


def test_term_reaches_qmail_send_and_its_last_words_are_kept(tmp_path: Path) -> None:
    fake_qmail_start(
        tmp_path,
        f"trap 'echo \"status: exiting\"; exit 0' TERM\necho '{STATUS}'\n"
        "while :; do sleep 0.05; done\n",
    )
    out = tmp_path / "out"
    proc = helper(tmp_path, out)
    wait_for(out, STATUS)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert out.read_bytes() == f"<6>{STATUS}\n<6>status: exiting\n".encode()


def test_alrm_before_the_status_line_is_held_not_lost(tmp_path: Path) -> None:
    # The child has no ALRM handler until it prints its status line: forwarded at once, the
    # signal would kill it. Held, it arrives after.
    fake_qmail_start(
        tmp_path,
        "echo 'warning: no handlers yet'\nsleep 1\ntrap 'echo got ALRM' ALRM\n"
        f"trap 'exit 0' TERM\necho '{STATUS}'\nwhile :; do sleep 0.05; done\n",
    )
    out = tmp_path / "out"
    proc = helper(tmp_path, out)
    wait_for(out, "no handlers yet")  # the helper has its own handlers by now
    proc.send_signal(signal.SIGALRM)
    wait_for(out, "got ALRM")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_qmail_send_killed_means_the_helper_dies_of_the_same_signal(tmp_path: Path) -> None:
    fake_qmail_start(tmp_path, f"echo '{STATUS}'\nkill -KILL $$\n")
    proc = helper(tmp_path, tmp_path / "out")
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.parametrize(
    ("starter", "ignored"),
    [(None, 0), (_ignore_interrupts, 0), (_ignore_32, 1 << 31)],
    ids=["as-systemd-starts-it", "from-a-shell", "from-a-runner-ignoring-32"],
)
def test_qmail_start_gets_a_clean_process(
    tmp_path: Path, starter: Callable[[], None] | None, ignored: int
) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, a shell's background job SIGINT and SIGQUIT, and an
    # ignored signal stays ignored across exec; systemd's notification socket is for the main
    # process alone. Every signal Python can reset is at its default; 32 and 33 stay as the
    # suite's starter (or `starter`) left them.
    if starter is _ignore_32 and RT_SIGACTION is None:
        pytest.skip(f"rt_sigaction's number on {os.uname().machine} is not known here")
    fake_qmail_start(
        tmp_path,
        'echo "notify=${NOTIFY_SOCKET:-none}"\nexec grep -E "^Sig(Ign|Blk)" /proc/self/status\n',
    )
    out = tmp_path / "out"
    proc = helper(tmp_path, out, starter=starter, NOTIFY_SOCKET=str(tmp_path / "nobody-listens"))
    assert proc.wait(timeout=30) == 0
    text = out.read_text()
    inherited = signal_mask("SigIgn", Path("/proc/self/status").read_text()) & UNRESETTABLE
    status = "".join(line.removeprefix("<6>") + "\n" for line in text.splitlines())
    assert signal_mask("SigIgn", status) == inherited | ignored
    assert signal_mask("SigBlk", status) == 0
    assert "<6>notify=none\n" in text


def test_ready_is_told_at_the_status_line(tmp_path: Path) -> None:
    fake_qmail_start(tmp_path, f"sleep 0.5\necho '{STATUS}'\nsleep 30\n")
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(20)
        proc = helper(tmp_path, tmp_path / "out", NOTIFY_SOCKET=str(path))
        try:
            assert listener.recv(4096).startswith(b"READY=1\n")
            assert STATUS in (tmp_path / "out").read_text()
        finally:
            proc.kill()
            proc.wait(timeout=30)


def test_missing_qmail_start_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = helper(tmp_path, out)
    assert proc.wait(timeout=30) == 1
    assert out.read_text().startswith(
        f"<3>error: qmail-send-systemd run: cannot execute {tmp_path}/var/qmail/bin/qmail-start: "
    )
    assert out.read_text().count("\n") == 1


def test_helper_warning_has_warning_priority_in_the_journal(tmp_path: Path) -> None:
    fake_qmail_start(tmp_path, "exit 0\n")
    write_delivery(tmp_path, b"~/.maildir/\n")
    out = tmp_path / "out"
    assert helper(tmp_path, out).wait(timeout=30) == 0
    assert out.read_text().startswith("<4>warning: ")
    # Not the journal (a terminal, a file): the line as it is, no "<4>" in front.
    done = subprocess.run(
        [*HELPER, "--root", str(tmp_path), "run"], env=HELPER_ENV, capture_output=True,
        text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.stderr.startswith("warning: ")


def test_a_route_without_its_package_is_said_at_each_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22: the service runs without the submission package; the journal says in one
    line that remote mail waits, and how to fix it."""
    start.warn_about_route(tmp_path)
    assert capsys.readouterr().err == ""  # no route: nothing to say
    dropin = tmp_path / submission.DROPIN.lstrip("/")
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\n")
    route = tmp_path / submission.ROUTE_PROGRAM.lstrip("/")
    route.parent.mkdir(parents=True)
    route.write_text("#!/bin/sh\n")
    route.chmod(0o755)
    msmtp = tmp_path / submission.MSMTP.lstrip("/")
    msmtp.parent.mkdir(parents=True)
    msmtp.write_text("#!/bin/sh\n")
    msmtp.chmod(0o755)
    start.warn_about_route(tmp_path)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: {submission.PACKAGE} is not installed (")
    assert line.endswith(f"(fix: apt install {submission.PACKAGE} (or dnf install "
                         f"{submission.PACKAGE}), or qmail-send-systemd setup --smarthost HOST "
                         "for plain SMTP)")  # fmt: skip


@pytest.mark.parametrize(
    "lines",
    [
        [b"status: local 0/10 remote 0/20"],
        [b"alert: cannot start: unable to read controls", b"warning: trouble", b"new msg 7"],
        [b"new msg 7", b"alert: x", b"x alert: not at the start", b"delivery 1: <6>alert:_x/"],
        [b"", b"warning:", b"<1>alert: a line that looks prefixed already", b"warningx: no"],
    ],
)
def test_lines_are_prefixed_in_one_pass_as_one_by_one(lines: list[bytes]) -> None:
    """The relay prefixes a whole read at once (bytes operations, no Python per line): the
    same bytes as prefixed() line by line, and never a change inside a line's text."""
    text = b"".join(line + b"\n" for line in lines)
    assert start.prefix_lines(text) == b"".join(start.prefixed(x) + b"\n" for x in lines)


def test_the_relay_reads_lines_in_batches_and_keeps_a_partial_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        copier = start.LogCopier(fd, True)
        copier.feed(b"new msg 1\nalert: oh no! lost spawn")
        copier.feed(b" connection! dying...\nwarn")
        assert (
            out.read_bytes() == b"<6>new msg 1\n<1>alert: oh no! lost spawn connection! dying...\n"
        )
        copier.feed(b"ing: x\nstatus: exiting")
        copier.close()
    finally:
        os.close(fd)
    assert out.read_bytes().endswith(b"<4>warning: x\n<6>status: exiting\n")
    assert copier.seen_ready_line
