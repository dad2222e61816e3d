"""`run`, the unit's ExecStart: qmail-start as a child, and its logger, in the unit's main process.

qmail-start(8) takes a logger argument and forks it as qmaill, with qmail-send's activity
record on its stdin, or, without one, gives qmail-send's record to its own output. 1.0.0 gave
it a logger; but a logger is an ordinary process of the unit, and when qmail-send exits,
systemd's KillMode=mixed sends SIGKILL to every process left at once: the logger died before
it had read qmail-send's last lines (`alert: cannot start: ...` when it could not start,
`status: exiting` after a stop). So qmail-start runs without a logger, as this process's child,
with its output on a pipe that this process reads. This process is the unit's main process:
it outlives qmail-send by construction, copies each line to the journal with the priority
that splogger would give it in syslog, and exits only after the pipe's end of file, with
qmail-send's own exit status. Being root (uid 0), it also files every line in the system
journal, where journald would file a qmaill logger's lines in that user's journal once
qmaill's uid is 1000 or more.

The rest of the unit sees qmail-send through it: SIGTERM, SIGALRM and SIGHUP are passed on
to qmail-send (the process qmail-start execs into); it tells systemd READY=1 (Type=notify) at
qmail-send's first `status:` line, which qmail-send prints once its signal handlers are in
place (qmail-send.c: the handlers, then the queue scan, then del_init()'s del_status()).
"""

from __future__ import annotations

import os
import signal
import sys

from qmail_send_systemd import QMAIL_HOME
from qmail_send_systemd.errors import HelperError

# Not typing.TYPE_CHECKING: importing typing (and pathlib) would cost more than this module's
# own work at each service start. Type checkers treat any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Union

    Root = Union[str, os.PathLike[str]]  # an alias is an expression: no `|` on Python 3.9
    Notify = Callable[[str], object]

DEFAULT_DELIVERY = "./Maildir/"
# SyslogLevelPrefix: "<1>" alert, "<3>" error, "<4>" warning, "<6>" info. qmail's own lines get
# splogger's two (PRIORITIES); the helper's own lines for the service may also be errors.
PRIORITIES: tuple[tuple[bytes, bytes], ...] = ((b"alert:", b"<1>"), (b"warning:", b"<4>"))
HELPER_PRIORITIES = (*PRIORITIES, (b"error:", b"<3>"))
INFO = b"<6>"
# qmail-send's first line of a run that has its signal handlers in place (qmail-log(5)).
READY_LINE = b"status:"
# Signals passed on to qmail-send: stop, retry now, reread locals and virtualdomains.
FORWARDED = (signal.SIGTERM, signal.SIGALRM, signal.SIGHUP)
# A qmail-send that prints no `status:` line for this long is alive all the same (a queue
# scan of a very large queue on a slow disk): READY=1 then, so that `systemctl start` and the
# package scripts return and no start timeout kills it; ALRM and HUP still wait for the line.
READY_FALLBACK_SECONDS = 10.0
# The log relay: how much one read takes, and how long the helper lets lines gather in the pipe
# after a read before it reads again (at qmail-send's fastest, 33,000 lines a second, 10 ms is
# about 20 kB, a third of a pipe's 64 kB: qmail-send never waits on the pipe for it).
READ_SIZE = 65536
GATHER_SECONDS = 0.01
# qmail-send runs as qmails (qmail-start's prot_uid). A root without CAP_KILL (the unit's
# bounding set) may signal it only with that effective uid.
QMAIL_SEND_USER = "qmails"


def read_default_delivery(root: Root) -> str:
    """What qmail-start gets as its defaultdelivery: control/defaultdelivery without its
    trailing newlines (LWQ's `cat` in backquotes), or ./Maildir/ when it is absent or blank."""
    path = os.path.join(root, QMAIL_HOME, "control/defaultdelivery")
    try:
        with open(path, "rb") as file:
            text = os.fsdecode(file.read()).rstrip("\n")
    except FileNotFoundError:
        return DEFAULT_DELIVERY
    except OSError as exc:
        # The unit reads it as root without CAP_DAC_OVERRIDE: its owner root needs u+r.
        raise HelperError(
            f"cannot read {path}: {exc.strerror}",
            f"chown root {path} && chmod u+r {path}, or remove it",
        ) from exc
    if "\0" in text:
        raise HelperError(f"{path} contains a NUL byte", f"rewrite {path} as plain text")
    return text if text.strip() else DEFAULT_DELIVERY


def default_delivery(root: Root) -> str:
    """read_default_delivery(), with a warning in the journal when it holds a '~'."""
    text = read_default_delivery(root)
    if "~" in text:
        path = os.path.join(root, QMAIL_HOME, "control/defaultdelivery")
        say(
            f"warning: {path} contains '~', which qmail does not expand: such a line is a "
            f"forward address (fix: write {DEFAULT_DELIVERY} instead)"
        )
    return text


def is_journal(fd: int) -> bool:
    """Whether fd is the journal stream that systemd names in $JOURNAL_STREAM (DEV:INODE,
    systemd.exec(5)): only there does a "<N>" prefix set a priority instead of being text."""
    dev, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(inode))


def say(line: str) -> None:
    """Write one of the helper's own lines for the service to stderr; in the journal it
    carries the priority its first word names, as qmail's lines do
    (`journalctl -u qmail-send -p warning` shows a `warning:` line)."""
    prefix = b""
    if is_journal(2):
        prefix = priority(os.fsencode(line), HELPER_PRIORITIES)
    print(prefix.decode("ascii") + line, file=sys.stderr, flush=True)


def qmail_start_argv(root: Root) -> tuple[str, list[str]]:
    """qmail-start with its defaultdelivery and no logger: qmail-send's activity record goes to
    qmail-start's output (qmail-start(8)), which is our pipe."""
    program = os.path.join(root, QMAIL_HOME, "bin/qmail-start")
    return program, ["qmail-start", default_delivery(root)]


def priority(line: bytes, priorities: tuple[tuple[bytes, bytes], ...] = PRIORITIES) -> bytes:
    """The "<N>" prefix that the line's first word names (info when it names none)."""
    for start, prefix in priorities:
        if line.startswith(start):
            return prefix
    return INFO


def prefixed(line: bytes) -> bytes:
    return priority(line) + line


def prefix_lines(text: bytes) -> bytes:
    """Each line of `text` (whole lines) with its priority prefix, as prefixed() gives it,
    by bytes operations alone. A line holds no newline, so "\n<6>alert:" can only be a
    line's start: a line's text is never changed."""
    record = INFO + text[:-1].replace(b"\n", b"\n" + INFO) + b"\n"
    for start, prefix in PRIORITIES:
        if start in record:
            record = record.replace(b"\n" + INFO + start, b"\n" + prefix + start)
            if record.startswith(INFO + start):
                record = prefix + record[len(INFO) :]
    return record


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def notify_systemd(message: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if systemd gave one."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path.startswith(("/", "@")):
        return
    import socket  # only under systemd, once per start

    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        say(f"warning: cannot notify systemd ({path}): {exc.strerror}")


def send_signal(pid: int, signum: int) -> None:
    """kill(pid, signum), as qmail-send's own user when root may not (no CAP_KILL)."""
    try:
        os.kill(pid, signum)
        return
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    import pwd

    try:
        uid = pwd.getpwnam(QMAIL_SEND_USER).pw_uid
    except KeyError:
        say(f"warning: cannot pass {signal.Signals(signum).name} on: no user {QMAIL_SEND_USER}")
        return
    # Only the effective uid changes: the real one stays 0, so that journald, which files a
    # line by its writer's real uid, still puts this process's lines in the system journal.
    os.seteuid(uid)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        say(f"warning: cannot pass {signal.Signals(signum).name} on: {exc.strerror}")
    finally:
        os.seteuid(0)


class LogCopier:
    """qmail-send's activity record, read from the pipe, written to `out` line by line, each
    with its priority prefix (`prefix`: only where `out` is the journal).

    It never stops reading, whatever happens to its output: if it did, qmail-send would block
    on (or die of) a full pipe.
    """

    def __init__(self, out: int, prefix: bool) -> None:
        self.out = out
        self.prefix = prefix
        self.writable = True
        self.partial = b""
        self.seen_ready_line = False

    def feed(self, data: bytes) -> None:
        """Whole lines are written as they come, with no work per line in Python: the
        helper copies every line of a flush (issue 22: 37% of qmail-send's CPU in 1.1.0)."""
        if self.partial:
            data = self.partial + data
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        if end:
            self._write(data[:end])

    def close(self) -> None:
        """End of file: a last line without its newline still gets one."""
        if self.partial:
            self._write(self.partial + b"\n")
            self.partial = b""

    def _write(self, text: bytes) -> None:
        """`text`: whole lines, each ending in a newline."""
        if not self.seen_ready_line:
            self.seen_ready_line = text.startswith(READY_LINE) or b"\n" + READY_LINE in text
        if not self.writable:
            return
        record = prefix_lines(text) if self.prefix else text
        try:
            _write_all(self.out, record)
        except OSError:
            self.writable = False


class Supervisor:
    """One run of qmail-start: signals passed on, the log copied, readiness told, the exit
    status kept. The pieces that touch the process table are arguments, for tests."""

    def __init__(
        self,
        pid: int,
        log_fd: int,
        copier: LogCopier,
        *,
        notify: Notify = notify_systemd,
        kill: Callable[[int, int], object] = send_signal,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.pid = pid
        self.log_fd = log_fd
        self.copier = copier
        self.notify = notify
        self.kill = kill
        self.clock = clock or time.monotonic
        self.ready_by = self.clock() + READY_FALLBACK_SECONDS
        self.ready = False
        self.handlers_ready = False  # qmail-send said `status:`: ALRM and HUP are safe
        self.held: list[int] = []
        self.status: int | None = None  # os.waitpid's status once the child has exited

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum == signal.SIGTERM or self.handlers_ready:
            # TERM at once: a qmail-send still starting may die of it, with nothing in flight.
            self.kill(self.pid, signum)
        elif signum not in self.held:
            self.held.append(signum)

    def reap(self) -> None:
        if self.status is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == self.pid:
            self.status = status

    def on_output(self, data: bytes) -> None:
        self.copier.feed(data)
        if self.copier.seen_ready_line and not self.handlers_ready:
            self.handlers_ready = True
            self.tell_ready()
            held, self.held = self.held, []
            for signum in held:
                self.kill(self.pid, signum)

    def on_tick(self) -> None:
        if not self.ready and self.status is None and self.clock() >= self.ready_by:
            self.tell_ready()

    def tell_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.notify(f"READY=1\nSTATUS=qmail-send is running (PID {self.pid})")

    def timeout(self) -> float | None:
        return None if self.ready else max(0.0, self.ready_by - self.clock())


def _spawn(program: str, argv: list[str], log_w: int) -> int:
    """Fork and exec qmail-start with its output on log_w; an exec failure is raised here."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: nothing here may raise past os._exit
        try:
            os.close(err_r)
            os.dup2(log_w, 1)
            if log_w != 1:
                os.close(log_w)
            # What an exec'd qmail should find, as systemd gives a service: every signal at
            # its default. An ignored signal stays ignored across exec, and Python ignores
            # SIGPIPE and SIGXFSZ; whoever started the helper may have ignored others (a
            # shell's background job has SIGINT and SIGQUIT ignored).
            for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
                try:  # noqa: SIM105 (contextlib is imported only at exit: start-up cost)
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):  # 32 and 33 are the C library's own
                    pass
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.environ.pop("NOTIFY_SOCKET", None)  # systemd's socket is for the main process
            os.execv(program, argv)  # noqa: S606 (no shell: qmail-start's argv as it is)
        except OSError as exc:
            os.write(err_w, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(err_w)
    with os.fdopen(err_r, "rb") as errors:
        failed = errors.read()  # end of file at a successful exec (close-on-exec)
    if failed:
        os.waitpid(pid, 0)
        raise HelperError(
            f"cannot execute {program}: {os.strerror(int(failed))}",
            "install qmail, then: qmail-send-systemd verify",
        )
    return pid


def warn_about_route(root: Root) -> None:
    """One journal line, with its fix, when setup --tls's route lacks a package: the service
    runs and local mail is delivered, remote mail waits (submission.route_main defers it)."""
    from qmail_send_systemd import submission

    for program in submission.missing_programs(os.fspath(root)):
        problem, fix = submission.missing_line(program)
        say(f"warning: {problem} (fix: {fix})")


def run(root: Root) -> int:
    """The unit's main process: run qmail-start, copy its log, and end as qmail-send ended."""
    program, argv = qmail_start_argv(root)
    warn_about_route(root)
    signals: list[int] = []
    watched = (*FORWARDED, signal.SIGCHLD)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    # Blocked around the fork, so that no handler of ours runs in the child before its exec.
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    old_handlers = {s: signal.signal(s, lambda n, _frame: signals.append(n)) for s in watched}
    try:
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        try:
            sys.stderr.flush()
            try:
                pid = _spawn(program, argv, log_w)
            finally:
                os.close(log_w)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
            supervisor = Supervisor(pid, log_r, LogCopier(1, is_journal(1)))
            status = _supervise(supervisor, signals, wake_r)
        finally:
            os.close(log_r)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        os.close(wake_r)
        os.close(wake_w)
    return _end_as(status)


def _supervise(supervisor: Supervisor, signals: list[int], wake_r: int) -> int:
    """Until qmail-send's end: its lines copied, signals handled; its wait status."""
    import select

    log_r = supervisor.log_fd
    while True:
        readable, _, _ = select.select([log_r, wake_r], [], [], supervisor.timeout())
        if wake_r in readable:
            while _read_nonblocking(wake_r):
                pass
        while signals:
            supervisor.on_signal(signals.pop(0))
        data = os.read(log_r, READ_SIZE) if log_r in readable else None
        if data == b"":
            break
        if data:
            supervisor.on_output(data)
            if len(data) < READ_SIZE and not signals:
                # Let qmail-send's next lines gather in the pipe: during a flush it writes one
                # line at a time, and one wake-up per line cost the helper 37% of qmail-send's
                # CPU (issue 22). A signal ends the pause at once (the wake-up pipe).
                select.select([wake_r], [], [], GATHER_SECONDS)
        supervisor.on_tick()
        if supervisor.status is not None:
            # qmail-send has exited: what it wrote is in the pipe now. Read it to the end
            # even if some other process still holds the pipe's write end open.
            os.set_blocking(log_r, False)
            while True:
                chunk = _read_nonblocking(log_r)
                if not chunk:
                    break
                supervisor.on_output(chunk)
            break
    supervisor.copier.close()
    if supervisor.status is None:
        supervisor.status = os.waitpid(supervisor.pid, 0)[1]
    return supervisor.status


def _read_nonblocking(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def _end_as(status: int) -> int:
    """The exit code qmail-send's own status maps to; killed by a signal, die of the same
    signal, so that systemd sees what qmail-send did (a TERM death is a clean stop to it)."""
    if os.WIFSIGNALED(status):
        import contextlib  # at the end only: not worth its import at every start

        signum = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        return 128 + signum  # a signal whose default action is not to terminate
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
