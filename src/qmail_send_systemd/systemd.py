"""The system-call boundary: every command the helper runs on the live system goes through `System`.

systemctl, deb-systemd-helper, deb-systemd-invoke, policy-rc.d and qmail-tcpok are executed by
`System.call()` alone, so that tests replace that one method and record the calls instead.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False  # not typing's: see start.py (flush runs on every network event)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import TypeVar

    T = TypeVar("T")

UNIT = "qmail-send.service"
# The one command that brings a failed unit back: reset-failed also clears a start limit that
# was hit (a 1.0.0 unit's, or a drop-in's), which a plain start would run into again.
REVIVE = "systemctl reset-failed qmail-send && systemctl start qmail-send"
POLICY_RC_D = "usr/sbin/policy-rc.d"
# policy-rc.d's answer that forbids the action (invoke-rc.d(8)); 0 and 104 allow it.
POLICY_FORBIDDEN = 101
CALL_TIMEOUT = 300
# What flush and the package steps need to know of the unit's state: whether it failed (and
# why, and since when), or is waiting to be restarted (SubState auto-restart).
UNIT_STATE = ("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus",
              "InactiveEnterTimestamp")  # fmt: skip


class Result:
    """How a command ended. A plain class: dataclasses imports inspect, 9 ms at each start."""

    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode: int, stdout: str = "", stderr: str = "") -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result({self.returncode!r}, {self.stdout!r}, {self.stderr!r})"

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class System:
    """The running system as the maintainer scripts see it (paths read under `root`)."""

    def __init__(
        self, root: str | os.PathLike[str] = "/", environ: Mapping[str, str] | None = None
    ) -> None:
        self.root_dir = os.fspath(root)
        self.environ = dict(os.environ if environ is None else environ)
        # The tree that enablement changes go to when it is not the live system: dpkg's
        # DPKG_ROOT, or --root. deb-systemd-helper honours DPKG_ROOT; systemctl gets --root.
        self.image_root = self.environ.get("DPKG_ROOT") or (
            "" if self.is_live_root() else self.root_dir
        )

    @property
    def root(self) -> Path:
        """The tree, as a Path: pathlib is imported when this is asked for, and status, which
        reads `root_dir`, never pays for it (5 ms of its start)."""
        from pathlib import Path

        return Path(self.root_dir)

    def is_live_root(self) -> bool:
        """Whether `root` is / (the running system), however it was written."""
        return os.path.normpath(self.root_dir) == "/"

    def call(self, argv: Sequence[str]) -> Result:
        """Run one command; never raises for a missing program or a non-zero exit."""
        argv = list(argv)
        env = dict(self.environ)
        if self.image_root:
            env["DPKG_ROOT"] = self.image_root
            if argv[0] == "systemctl":
                argv.insert(1, f"--root={self.image_root}")
        import subprocess  # here: status, which only starts commands, never pays for it

        try:
            done = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=CALL_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found")
        except OSError as exc:
            return Result(126, "", f"{argv[0]}: {exc.strerror}")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{argv[0]}: timed out after {CALL_TIMEOUT}s")
        return Result(done.returncode, done.stdout, done.stderr)

    def start(self, argv: Sequence[str]) -> Callable[[], Result]:
        """Start a read-only command now; the returned function waits for its Result. status
        runs systemctl and journalctl this way while it reads the queue. The command writes to
        files in memory (memfd), never to a pipe: journalctl's output is larger than a pipe
        holds, and it would wait, stopped, for the queue to be read; and nothing of ours has
        to read it meanwhile (no thread, no subprocess: posix_spawn is one clone(), at once).
        SIGPIPE, which Python ignores and passes on, cannot arise: no output goes to a pipe.
        Tests that replace call() replace this too."""
        argv = list(argv)
        program = _find(argv[0], self.environ)
        if program is None:
            missing = Result(127, "", f"{argv[0]}: command not found")
            return lambda: missing
        outputs = (_memory_file(), _memory_file())
        try:
            pid = os.posix_spawn(
                program,
                argv,
                self.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, outputs[0], 1),
                    (os.POSIX_SPAWN_DUP2, outputs[1], 2),
                ],
            )
        except OSError as exc:
            for fd in outputs:
                os.close(fd)
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            failed = Result(code, "", f"{argv[0]}: {exc.strerror}")
            return lambda: failed

        def result() -> Result:
            try:
                code = _wait(pid, CALL_TIMEOUT)
                out, err = (_read_all(fd) for fd in outputs)
            finally:
                for fd in outputs:
                    os.close(fd)
            if code is None:
                return Result(124, "", f"{argv[0]}: timed out after {CALL_TIMEOUT}s")
            return Result(code, out, err)

        return result

    def beside(self, work: Callable[[], T]) -> Callable[[], T]:
        """Run WORK in a child process while this one goes on; the returned function waits for
        its result. status finds what journalctl and systemctl say this way while it reads
        the queue: two cores at once, which a thread would not give (the GIL: each would wait
        for the other at every stat). The result comes back through a pipe with marshal, so
        it is plain data. Should the child give nothing back (it could not be forked, or it
        failed), WORK runs here: the answer is the same, only later. Tests that replace call()
        replace this too."""
        import marshal

        try:
            reader, writer = os.pipe()
        except OSError:
            return work
        try:
            pid = os.fork()
        except OSError:
            os.close(reader)
            os.close(writer)
            return work
        if pid == 0:  # the child: never returns into the caller's code
            code = 1
            try:
                os.close(reader)
                data = memoryview(marshal.dumps(work()))  # type: ignore[arg-type]
                while data:
                    data = data[os.write(writer, data) :]
                code = 0
            finally:
                os._exit(code)
        os.close(writer)  # the child's: its end is the end of the result

        def result() -> T:
            chunks: list[bytes] = []
            try:
                while True:
                    chunk = os.read(reader, 1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(reader)
                ended = os.waitpid(pid, 0)[1]
            if os.waitstatus_to_exitcode(ended) == 0:
                try:
                    # Our own child's bytes, through our own pipe.
                    return marshal.loads(b"".join(chunks))  # type: ignore[no-any-return]  # noqa: S302
                except (EOFError, ValueError, TypeError):
                    pass
            return work()

        return result

    def have(self, command: str) -> bool:
        import shutil

        return shutil.which(command) is not None

    def systemd_running(self) -> bool:
        """What dh_installsystemd's snippets test: /run/systemd/system and an empty DPKG_ROOT."""
        if self.environ.get("DPKG_ROOT"):
            return False
        return (self.root / "run/systemd/system").is_dir()

    # -- the calls, by name ------------------------------------------------------------------

    def systemctl(self, *args: str) -> Result:
        return self.call(["systemctl", *args])

    def is_active(self) -> bool:
        return self.systemctl("is-active", "--quiet", UNIT).ok

    def unit_state(self) -> dict[str, str]:
        """UNIT_STATE's properties as `systemctl show` gives them ({} when it cannot)."""
        args = [f"--property={name}" for name in UNIT_STATE]
        result = self.systemctl("show", *args, UNIT)
        if not result.ok:
            return {}
        pairs = (line.partition("=") for line in result.stdout.splitlines())
        return {key: value for key, _, value in pairs if key in UNIT_STATE}

    def is_root(self) -> bool:
        return os.geteuid() == 0

    def is_enabled(self) -> str:
        """systemctl's word for the unit's state (enabled, disabled, masked, ...)."""
        result = self.systemctl("is-enabled", UNIT)
        words = result.stdout.split()
        return words[0] if words else "unknown"

    def policy_allows(self, action: str) -> bool:
        """Ask /usr/sbin/policy-rc.d, as invoke-rc.d and deb-systemd-invoke do."""
        helper = self.root / POLICY_RC_D
        if not os.access(helper, os.X_OK):
            return True
        return self.call([str(helper), UNIT, action]).returncode != POLICY_FORBIDDEN


def _find(program: str, environ: Mapping[str, str]) -> str | None:
    """PROGRAM's path in the PATH of `environ`, as subprocess looks for it (posix_spawnp would
    look in this process's PATH instead). shutil.which's loop, which System.have calls: its
    import (fnmatch, and through it re) is what status's start does without."""
    if "/" in program:
        return program
    for directory in os.get_exec_path(environ):
        path = os.path.join(directory, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def _memory_file() -> int:
    """A file descriptor of an anonymous file, for a started command's output."""
    try:
        return os.memfd_create("output", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (an old kernel, a seccomp filter)
        import tempfile

        return os.dup(tempfile.TemporaryFile().fileno())


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)


def _wait(pid: int, timeout: float) -> int | None:
    """PID's exit code (-N: killed by signal N), or None when it ran longer than TIMEOUT
    seconds (it is then killed)."""
    if not _ends_within(pid, timeout):
        os.kill(pid, 9)  # SIGKILL (the signal module imports enum: 3 ms of status's start)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _ends_within(pid: int, timeout: float) -> bool:
    """Whether PID ends within TIMEOUT seconds: its pidfd says when, or, without one (a kernel
    before 5.3), waitid() is asked every 10 ms, leaving it to be reaped."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        import time

        deadline = time.monotonic() + timeout
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
    try:
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        return bool(poll.poll(int(timeout * 1000)))
    finally:
        os.close(pidfd)
