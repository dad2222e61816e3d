"""The qmail stand-in keeps qmail's process contract (qmail-start(8), qmail-send(8),
qmail-tcpok(8), qmail-queue(8), qmail-inject(8), qmail-qread(8)): run as the current user in
tmp_path, with an SMTP sink in the test as the remote host."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import python_program, write_accounts
from qmail_send_systemd import verify
from qss_toolkit.settings import settings

STANDIN = Path(__file__).resolve().parent / "standin"
ME = "standin.test"
# Split into conf-split's 23 subdirectories in a real qmail queue (hier.c's dsplit calls).
SPLIT_DIRS = ("mess", "info", "local", "remote")


def install(argv: list[str]) -> None:
    """tests/standin/install.py's main(), run in this process (one interpreter less per test).
    QSS_STANDIN_PYTHON runs the programs with another interpreter (e.g. a Python 3.9)."""
    python = settings().standin_python
    argv = argv + (["--python", python] if python else [])
    spec = importlib.util.spec_from_file_location("standin_install", STANDIN / "install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(argv) == 0


# How long a wait may last before the test gives up: a guard against a hang, not a measure
# (a stand-in's Python starts slowly on 2 shared cores under load; a passing test never waits
# this long). How fast things are is nox -s bench's business.
PATIENCE = 60.0


def wait_for(what: str, predicate: Callable[[], object], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpSink:
    """A minimal SMTP server; with `stall`, it holds its answer to the message's final dot
    until `release` is set."""

    def __init__(self, port: int = 0, stall: bool = False) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(5)
        self.port = int(self.server.getsockname()[1])
        self.stall = stall
        self.release = threading.Event()
        self.stalled = threading.Event()
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as reader:
                self.session(conn, reader)

    def session(self, conn: socket.socket, reader: object) -> None:
        readline = reader.readline  # type: ignore[attr-defined]
        conn.sendall(b"220 sink ESMTP\r\n")
        sender, recipients = "", []
        while True:
            line = readline()
            if not line:
                return
            command = line.decode().strip()
            upper = command.upper()
            if upper.startswith("MAIL FROM:"):
                sender = command[10:].strip("<>")
                conn.sendall(b"250 ok\r\n")
            elif upper.startswith("RCPT TO:"):
                recipients.append(command[8:].strip("<>"))
                conn.sendall(b"250 ok\r\n")
            elif upper == "DATA":
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                while (chunk := readline()) not in (b".\r\n", b""):
                    data += chunk
                if self.stall:
                    self.stalled.set()
                    self.release.wait(20)
                self.messages.append((sender, recipients, data))
                conn.sendall(b"250 ok 4242 qp 17\r\n")
            elif upper == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 sink\r\n")

    def close(self) -> None:
        self.release.set()
        self.server.close()


class Qmail:
    """A stand-in installed under tmp_path; `start()` runs qmail-start as the unit would."""

    def __init__(self, root: Path, installed: bool = False) -> None:
        if not installed:
            install(["--root", str(root), "--me", ME])
        self.home = root / "var" / "qmail"
        self.bin = self.home / "bin"
        self.log_file = root / "qmail-send.log"
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", "USER": "tester"}
        self.proc: subprocess.Popen[bytes] | None = None

    def control(self, name: str, text: str) -> None:
        (self.home / "control" / name).write_text(text)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                ["qmail-start", *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.DEVNULL,
            )
        self.wait_log("status: local 0/10 remote 0/20")
        return self.proc

    def log(self) -> list[str]:
        return self.log_file.read_text().splitlines()

    def wait_log(self, line: str, count: int = 1) -> None:
        wait_for(repr(line), lambda: sum(x.startswith(line) for x in self.log()) >= count)

    def run(self, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            list(argv), input=stdin, env=self.env, capture_output=True, timeout=30, check=False
        )

    def sendmail(self, message: str, *args: str) -> None:
        proc = self.run("sendmail", *args, stdin=message.encode())
        assert proc.returncode == 0, proc.stderr

    def queue(self, sub: str) -> list[str]:
        """The message numbers in queue/SUB, through its split subdirectories where it has them."""
        top = self.home / "queue" / sub
        if sub not in SPLIT_DIRS:
            return sorted(os.listdir(top))
        assert sorted(os.listdir(top), key=int) == [str(i) for i in range(23)], "conf-split 23"
        found = []
        for split in os.listdir(top):
            for name in os.listdir(top / split):
                assert int(name) % 23 == int(split), f"{sub}/{split}/{name} in the wrong split"
                found.append(name)
        return sorted(found)

    def queue_file(self, sub: str, number: str) -> Path:
        split = f"{int(number) % 23}/" if sub in SPLIT_DIRS else ""
        return self.home / "queue" / sub / f"{split}{number}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def qmail(tmp_path: Path) -> Iterator[Qmail]:
    qmail = Qmail(tmp_path)
    yield qmail
    qmail.stop()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink()
    yield server
    server.close()


MESSAGE = "To: friend@example.org\nCc: other@example.net\nBcc: hidden@example.com\nSubject: hi\n\n"
MESSAGE += "line one\n.\nlast line\n"


def children(pid: int) -> list[str]:
    """Command lines of PID's children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_qmail_start_execs_into_qmail_send(qmail: Qmail) -> None:
    proc = qmail.start("./Maildir/")
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"/qmail-send") for arg in cmdline), cmdline
    helpers = children(proc.pid)
    for helper in ("qmail-lspawn ./Maildir/", "qmail-rspawn", "qmail-clean"):
        assert any(helper in c for c in helpers), helpers


def test_sendmail_queues_the_message(qmail: Qmail) -> None:
    qmail.sendmail(MESSAGE, "-i", "-t", "-f", "me@standin.test")
    [number] = qmail.queue("todo")
    assert qmail.queue("mess") == qmail.queue("intd") == [number]
    assert qmail.queue("pid") == []
    envelope = (qmail.home / "queue" / "todo" / number).read_bytes().split(b"\0")
    assert envelope[0] == f"u{os.getuid()}".encode()
    assert envelope[2:] == [
        b"Fme@standin.test",
        b"Tfriend@example.org",
        b"Tother@example.net",
        b"Thidden@example.com",
        b"",
        b"",
    ]
    mess = qmail.queue_file("mess", number).read_text()
    assert mess.startswith("Received: (qmail ")
    assert "Bcc:" not in mess
    assert "\nFrom: tester@standin.test\n" in mess
    assert "\nMessage-ID: <" in mess
    assert mess.endswith("\n\nline one\n.\nlast line\n")


def test_sendmail_refuses_bs(qmail: Qmail) -> None:
    proc = qmail.run("sendmail", "-bs", stdin=b"HELO x\r\n")
    assert proc.returncode == 100
    assert qmail.queue("todo") == []


def test_qmail_queue_rejects_a_bad_envelope(qmail: Qmail) -> None:
    read_env, write_env = os.pipe()
    os.write(write_env, b"Tno-sender@example.org\0\0")
    os.close(write_env)
    proc = subprocess.run(
        [qmail.bin / "qmail-queue"], input=b"Subject: x\n\n", stdout=read_env, check=False
    )
    os.close(read_env)
    assert proc.returncode == 91
    assert qmail.queue("todo") == qmail.queue("mess") == qmail.queue("intd") == []


def test_remote_delivery_through_smtproutes(qmail: Qmail, sink: SmtpSink) -> None:
    qmail.control("smtproutes", f":127.0.0.1:{sink.port}\n")
    qmail.start()
    qmail.sendmail(MESSAGE, "-i", "-t", "-f", "me@standin.test")
    qmail.wait_log("end msg", count=1)
    wait_for("three deliveries", lambda: len(sink.messages) == 3)
    qmail.wait_log("status: local 0/10 remote 0/20", count=2)
    assert sorted(r for _, rcpts, _ in sink.messages for r in rcpts) == [
        "friend@example.org",
        "hidden@example.com",
        "other@example.net",
    ]
    sender, _, data = sink.messages[0]
    assert sender == "me@standin.test"
    assert data.endswith(b"\r\n\r\nline one\r\n..\r\nlast line\r\n")  # dot-stuffed, CRLF
    log = qmail.log()
    number = next(x.split()[2] for x in log if x.startswith("new msg "))
    assert any(
        x.startswith(f"info msg {number}: bytes ") and "from <me@standin.test>" in x for x in log
    )
    assert f"starting delivery 1: msg {number} to remote friend@example.org" in log
    success = [
        x for x in log if ": success: 127.0.0.1_accepted_message./Remote_host_said:_250_ok" in x
    ]
    assert len(success) == 3
    assert log.index(f"end msg {number}") > max(log.index(x) for x in success)
    for sub in ("mess", "info", "remote", "local", "todo", "intd"):
        assert qmail.queue(sub) == []


def test_term_finishes_the_delivery_in_flight(qmail: Qmail) -> None:
    stalling = SmtpSink(stall=True)
    try:
        qmail.control("smtproutes", f":127.0.0.1:{stalling.port}\n")
        proc = qmail.start()
        helpers = [
            int(c)
            for t in Path(f"/proc/{proc.pid}/task").iterdir()
            for c in (t / "children").read_text().split()
        ]
        qmail.sendmail("To: friend@example.org\n\nhello\n", "-t")
        assert stalling.stalled.wait(PATIENCE), "the delivery never reached the sink"
        proc.send_signal(signal.SIGTERM)
        qmail.wait_log("stand-in: received SIGTERM")
        # The delivery is held until we release it: a qmail-send that ignored deliveries in
        # flight would say "status: exiting" before the delivery's success (checked below,
        # from the log's order: no sleep to wait for something that must not happen).
        assert "status: exiting" not in qmail.log()
        stalling.release.set()
        assert proc.wait(PATIENCE) == 0
        log = qmail.log()
        [success] = [x for x in log if x.startswith("delivery 1: success: ")]
        assert (
            log.index("stand-in: received SIGTERM")
            < log.index(success)
            < log.index("status: exiting")
        )
        assert log[-1] == "status: exiting"
        assert len(stalling.messages) == 1
        # The spawns had no TERM handler to run: they leave when qmail-send's pipes close.
        wait_for(
            "helpers to exit",
            lambda: (
                not any(
                    Path(f"/proc/{p}/cmdline").exists() and Path(f"/proc/{p}/cmdline").read_bytes()
                    for p in helpers
                )
            ),
        )
    finally:
        stalling.close()


def test_alrm_retries_deferred_mail_at_once(qmail: Qmail) -> None:
    port = free_port()  # nobody listens yet: the connection is refused
    qmail.control("smtproutes", f":127.0.0.1:{port}\n")
    proc = qmail.start()
    qmail.sendmail("To: friend@example.org\n\nhello\n", "-t")
    qmail.wait_log("delivery 1: deferral: ")
    assert (
        "delivery 1: deferral: Sorry,_I_wasn't_able_to_establish_an_SMTP_connection._(#4.4.1)/"
        in qmail.log()
    )
    # The next try is ~400 s away: delivery 2 may start only after the SIGALRM (the log's
    # order, checked below, proves it without sleeping to see that nothing happens).
    assert not any(x.startswith("starting delivery 2") for x in qmail.log())
    sink = SmtpSink(port=port)
    try:
        proc.send_signal(signal.SIGALRM)
        qmail.wait_log("delivery 2: success: ")
        log = qmail.log()
        assert log.index("stand-in: received SIGALRM") < log.index(
            next(x for x in log if x.startswith("starting delivery 2: "))
        )
        assert len(sink.messages) == 1
        records = (qmail.home / "standin" / "signals.log").read_text().splitlines()
        assert [r.split()[1] for r in records] == ["SIGALRM"]
    finally:
        sink.close()


def test_tcpok_clears_the_table_and_alrm_then_delivers(qmail: Qmail, sink: SmtpSink) -> None:
    """What the unit's reload does: qmail-tcpok, then SIGALRM."""
    qmail.control("smtproutes", f":127.0.0.1:{sink.port}\n")
    tcpto = qmail.home / "queue" / "lock" / "tcpto"
    tcpto.write_text(f"127.0.0.1 2 {time.time()}\n")  # timed out twice: qmail-remote skips it
    proc = qmail.start()
    qmail.sendmail("To: friend@example.org\n\nhello\n", "-t")
    qmail.wait_log("delivery 1: deferral: Sorry,_I_wasn't_able_to_establish")
    assert sink.messages == []
    tcpok = qmail.run(str(qmail.bin / "qmail-tcpok"))
    assert tcpok.returncode == 0, tcpok.stderr
    assert tcpto.read_text() == ""
    [record] = (qmail.home / "standin" / "tcpok.log").read_text().splitlines()
    assert "qmail-tcpok" in record
    proc.send_signal(signal.SIGALRM)
    qmail.wait_log("delivery 2: success: ")
    assert len(sink.messages) == 1


def test_tcpok_fails_without_its_table(qmail: Qmail) -> None:
    (qmail.home / "queue" / "lock" / "tcpto").unlink()
    proc = qmail.run(str(qmail.bin / "qmail-tcpok"))
    assert proc.returncode == 111
    assert b"unable to clear queue/lock/tcpto" in proc.stderr


def test_logger_receives_the_activity_record(qmail: Qmail, tmp_path: Path) -> None:
    received = tmp_path / "logger.out"
    logger = python_program(
        tmp_path / "logger",
        "import sys\n"
        f"with open({str(received)!r}, 'a') as out:\n"
        "    for line in sys.stdin:\n"
        "        out.write(sys.argv[1] + line)\n"
        "        out.flush()\n",
    )
    proc = subprocess.Popen(
        ["qmail-start", "./Maildir/", str(logger), "LOGGED:"],
        env=qmail.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    qmail.proc = proc
    wait_for("the logger", lambda: received.exists() and "LOGGED:status:" in received.read_text())
    qmail.sendmail("To: friend@example.org\n\nhello\n", "-t")
    wait_for("new msg", lambda: "LOGGED:new msg " in received.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(PATIENCE) == 0
    wait_for("exit logged", lambda: "LOGGED:status: exiting\n" in received.read_text())
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.read() == b""  # the record went to the logger, not to stdout


def test_local_delivery_and_hup_rereads_locals(qmail: Qmail, tmp_path: Path) -> None:
    home = tmp_path / "home" / "joe"
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)
    (qmail.home / "users" / "assign").write_text(
        f"=joe:joe:{os.getuid()}:{os.getgid()}:{home}:::\n.\n"
    )
    qmail.control("smtproutes", f":127.0.0.1:{free_port()}\n")
    proc = qmail.start("./Maildir/")
    qmail.sendmail("To: joe@mail.example\n\nsent before HUP\n", "-t")
    qmail.wait_log("delivery 1: deferral: ")  # mail.example is not local yet: remote
    qmail.control("locals", f"{ME}\nmail.example\n")
    proc.send_signal(signal.SIGHUP)
    qmail.wait_log("stand-in: received SIGHUP")
    # As in qmail, a message's channels are fixed when it leaves todo/: only new mail is local.
    qmail.sendmail("To: joe@mail.example\n\nsent after HUP\n", "-t")
    qmail.wait_log("delivery 2: success: did_1+0+0/")
    assert any(
        x.startswith("starting delivery 2: msg ") and x.endswith("to local joe@mail.example")
        for x in qmail.log()
    )
    [delivered] = os.listdir(home / "Maildir" / "new")
    text = (home / "Maildir" / "new" / delivered).read_text()
    assert text.startswith("Return-Path: <tester@standin.test>\nDelivered-To: joe@mail.example\n")
    assert text.endswith("\n\nsent after HUP\n")


def test_permanent_failure_bounces_to_the_sender(qmail: Qmail, tmp_path: Path) -> None:
    home = tmp_path / "home" / "joe"
    for sub in ("cur", "new", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)
    (qmail.home / "users" / "assign").write_text(
        f"=joe:joe:{os.getuid()}:{os.getgid()}:{home}:::\n"
        f"+joe-:joe:{os.getuid()}:{os.getgid()}:{home}:-::\n.\n"
    )
    qmail.start("./Maildir/")
    qmail.sendmail("To: joe-nobox@standin.test\n\nlost\n", "-t", "-f", f"joe@{ME}")
    qmail.wait_log("delivery 1: failure: Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/")
    qmail.wait_log("delivery 2: success: did_1+0+0/")
    log = qmail.log()
    assert any(x.startswith("bounce msg ") for x in log)
    [bounce] = os.listdir(home / "Maildir" / "new")
    text = (home / "Maildir" / "new" / bounce).read_text()
    assert text.startswith("Return-Path: <>\n")
    assert "<joe-nobox@standin.test>:\nSorry, no mailbox here by that name. (#5.1.1)" in text


def test_second_qmail_send_refuses_to_start(qmail: Qmail) -> None:
    qmail.start()
    second = subprocess.run(
        ["qmail-start"], env=qmail.env, capture_output=True, timeout=30, check=False
    )
    assert second.returncode == 111
    assert second.stdout == b"alert: cannot start: qmail-send is already running\n"


def test_missing_control_me_is_an_alert(qmail: Qmail) -> None:
    (qmail.home / "control" / "me").unlink()
    proc = subprocess.run(
        ["qmail-start"], env=qmail.env, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 111
    assert proc.stdout == b"alert: cannot start: unable to read controls\n"


@pytest.mark.parametrize("what", ["no-qmail-start", "no-alias-files", "qmail-queue-not-setuid"])
def test_install_broken(tmp_path: Path, what: str) -> None:
    install(["--root", str(tmp_path), "--me", ME, "--broken", what])
    home = tmp_path / "var" / "qmail"
    if what == "no-qmail-start":
        assert not (home / "bin" / "qmail-start").exists()
    elif what == "no-alias-files":
        assert not (home / "alias" / ".qmail-root").exists()
    else:
        assert (home / "bin" / "qmail-queue").stat().st_mode & 0o7777 == 0o755


def test_install_layout(qmail: Qmail) -> None:
    home = qmail.home
    assert (home / "bin" / "qmail-queue").stat().st_mode & 0o4000
    assert (home / "control" / "me").read_text() == f"{ME}\n"
    assert (home / "control" / "defaultdelivery").read_text() == "./Maildir/\n"
    for name in (".qmail-root", ".qmail-postmaster", ".qmail-mailer-daemon"):
        assert (home / "alias" / name).exists()

    assert stat.S_ISFIFO((home / "queue" / "lock" / "trigger").stat().st_mode)


def test_restart_keeps_deferred_mail(qmail: Qmail) -> None:
    """A stop and a start never lose a queued message: qmail-send reloads info/ at start."""
    port = free_port()
    qmail.control("smtproutes", f":127.0.0.1:{port}\n")
    proc = qmail.start()
    qmail.sendmail("To: friend@example.org\n\nsurvives a restart\n", "-t")
    qmail.wait_log("delivery 1: deferral: ")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(PATIENCE) == 0
    [number] = qmail.queue("info")
    assert qmail.queue("mess") == qmail.queue("remote") == [number]
    sink = SmtpSink(port=port)
    try:
        proc = qmail.start()
        proc.send_signal(signal.SIGALRM)
        qmail.wait_log("end msg ")
        [(_, _, data)] = sink.messages
        assert data.endswith(b"survives a restart\r\n")
        assert qmail.queue("info") == qmail.queue("mess") == []
    finally:
        sink.close()


def test_root_forward_and_program_delivery(qmail: Qmail, sink: SmtpSink, tmp_path: Path) -> None:
    """~alias/.qmail-root forwards to a remote address (through qmail-queue) and runs a program,
    as dot-qmail(5) says; the catch-all users/assign line stands in for the alias user."""
    alias = qmail.home / "alias"
    ran = tmp_path / "program-ran"
    (alias / ".qmail-root").write_text(f"&admin@example.org\n|cat > {ran}\n")
    (qmail.home / "users" / "assign").write_text(
        f"+:alias:{os.getuid()}:{os.getgid()}:{alias}:-::\n.\n"
    )
    qmail.control("smtproutes", f":127.0.0.1:{sink.port}\n")
    qmail.start()
    qmail.sendmail("To: root\n\ncron says hi\n", "-t")
    qmail.wait_log("end msg ", count=2)
    log = qmail.log()
    assert any(x.endswith("to local root@standin.test") for x in log)
    assert any(": success: did_0+1+1/" in x for x in log)
    [(sender, recipients, data)] = sink.messages
    assert (sender, recipients) == ("tester@standin.test", ["admin@example.org"])
    assert b"Delivered-To: root@standin.test\r\n" in data
    assert ran.read_text().startswith("Return-Path: <tester@standin.test>\n")


def test_without_alias_files_root_mail_is_discarded(tmp_path: Path) -> None:
    """Why verify insists on ~alias/.qmail-root, -postmaster and -mailer-daemon: without them
    cron's mail to root bounces to root, the bounce double-bounces to postmaster, and qmail-send
    discards the triple bounce."""
    install(["--root", str(tmp_path), "--me", ME, "--broken", "no-alias-files"])
    qmail = Qmail(tmp_path, installed=True)
    alias = qmail.home / "alias"
    (qmail.home / "users" / "assign").write_text(
        f"+:alias:{os.getuid()}:{os.getgid()}:{alias}:-::\n.\n"
    )
    try:
        qmail.start()
        qmail.sendmail("To: root\n\nfrom cron\n", "-t", "-f", f"root@{ME}")
        qmail.wait_log("triple bounce: discarding bounce/")
        log = qmail.log()
        failures = [x for x in log if ": failure: Sorry,_no_mailbox_here_by_that_name." in x]
        # root; the bounce (to root); the double bounce (to postmaster)
        assert len(failures) == 3
        assert any(x.endswith("to local postmaster@standin.test") for x in log)
        assert len([x for x in log if x.startswith("bounce msg ")]) == 2
        assert os.listdir(alias / "Maildir" / "new") == []
        qmail.wait_log("end msg ", count=3)
        assert qmail.queue("info") == qmail.queue("mess") == []
    finally:
        qmail.stop()


def test_qmail_send_writes_its_pid_to_ready_once_it_handles_signals(qmail: Qmail) -> None:
    ready = qmail.home / "standin" / "ready"
    assert ready.read_text() == ""  # install.py leaves it empty for qmails to write
    proc = qmail.start()
    wait_for("standin/ready", lambda: ready.read_text() == f"{proc.pid}\n")
    proc.send_signal(signal.SIGALRM)  # ready means handled, not fatal
    qmail.wait_log("stand-in: received SIGALRM")
    assert proc.poll() is None


def test_the_helpers_verify_passes_on_a_standin_install(tmp_path: Path) -> None:
    """The smoke tests' qmail: everything `verify` asks of a qmail installation is there (its
    programs, as verify.PROGRAMS lists them, among the stand-in's bin/)."""

    write_accounts(tmp_path)  # qmail's users, in the tree's own passwd and group files
    install(["--root", str(tmp_path), "--me", ME])
    findings = verify.check(tmp_path)
    assert not verify.has_errors(findings), verify.render_text(findings)
    installed = {p.name for p in (tmp_path / "var/qmail/bin").iterdir()}
    assert set(verify.PROGRAMS) <= installed
    # The check looks: the same tree without one of the programs verify needs fails it.
    (tmp_path / "var/qmail/bin" / verify.PROGRAMS[0]).unlink()
    assert verify.has_errors(verify.check(tmp_path))


def test_qmail_qread_lists_preprocessed_messages_and_their_recipients(qmail: Qmail) -> None:
    port = free_port()  # nobody listens: the remote deliveries are deferred and stay queued
    qmail.control("smtproutes", f":127.0.0.1:{port}\n")
    qmail.start()
    qmail.sendmail("To: friend@example.org, other@example.net\n\nhello\n", "-t", "-fme@x.test")
    qmail.wait_log("delivery 2: deferral: ")
    [number] = qmail.queue("info")
    size = (qmail.home / "queue" / "mess" / str(int(number) % 23) / number).stat().st_size
    proc = qmail.run("qmail-qread")
    assert proc.returncode == 0, proc.stdout
    head, *recipients = proc.stdout.decode().splitlines()
    assert re.fullmatch(
        rf"\d{{1,2}} \w{{3}} \d{{4}} \d\d:\d\d:\d\d GMT  #{number}  {size}  <me@x.test> ", head
    )
    assert sorted(recipients) == ["\tremote\tfriend@example.org", "\tremote\tother@example.net"]


def test_qmail_qread_skips_todo_and_marks_done_and_bouncing(qmail: Qmail) -> None:
    queue = qmail.home / "queue"
    qmail.sendmail("To: friend@example.org\n\nnot yet preprocessed\n", "-t")  # todo/ only
    (queue / "mess" / "7" / "7").write_bytes(b"x" * 12)  # conf-split 23: message 7 in 7/
    (queue / "info" / "7" / "7").write_bytes(b"Fbad\x01sender\0")
    (queue / "remote" / "7" / "7").write_bytes(b"Dsent@example.org\0Tpending@example.org\0")
    (queue / "bounce" / "7").write_bytes(b"")  # bounce/ is not split
    (queue / "info" / "8" / "77").write_bytes(b"Fno-mess@x.test\0")  # 77 % 23 = 8; no mess
    out = qmail.run("qmail-qread").stdout.decode().splitlines()
    assert out[0].endswith("GMT  #7  12  <bad_sender>  bouncing")
    assert out[1:] == [
        "  done\tremote\tsent@example.org",
        "\tremote\tpending@example.org",
        "warning: trouble with #77: file does not exist",
    ]


def test_qmail_qread_without_a_queue_is_fatal(qmail: Qmail) -> None:
    (qmail.home / "queue" / "info").rename(qmail.home / "queue" / "info.gone")
    proc = qmail.run("qmail-qread")
    assert proc.returncode == 111
    assert proc.stdout.decode() == "fatal: unable to opendir info/0: file does not exist\n"
