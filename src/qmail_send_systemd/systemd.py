"""The system-call boundary: every command the helper runs on the live system goes through `System`.

systemctl, deb-systemd-helper, deb-systemd-invoke, policy-rc.d and qmail-tcpok are executed by
`System.call()` alone, so that tests replace that one method and record the calls instead.
"""

from __future__ import annotations

import os
import subprocess
import threading  # subprocess's own import: free
from pathlib import Path

TYPE_CHECKING = False  # not typing's: see start.py (flush runs on every network event)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

UNIT = "qmail-send.service"
# The one command that brings a failed unit back: reset-failed also clears a start limit that
# was hit (a 1.0.0 unit's, or a drop-in's), which a plain start would run into again.
REVIVE = "systemctl reset-failed qmail-send && systemctl start qmail-send"
POLICY_RC_D = Path("usr/sbin/policy-rc.d")
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

    def __init__(self, root: Path = Path("/"), environ: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.environ = dict(os.environ if environ is None else environ)
        # The tree that enablement changes go to when it is not the live system: dpkg's
        # DPKG_ROOT, or --root. deb-systemd-helper honours DPKG_ROOT; systemctl gets --root.
        self.image_root = self.environ.get("DPKG_ROOT") or ("" if root == Path("/") else str(root))

    def call(self, argv: Sequence[str]) -> Result:
        """Run one command; never raises for a missing program or a non-zero exit."""
        argv = list(argv)
        env = dict(self.environ)
        if self.image_root:
            env["DPKG_ROOT"] = self.image_root
            if argv[0] == "systemctl":
                argv.insert(1, f"--root={self.image_root}")
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
        runs systemctl and journalctl this way while it reads the queue. A thread starts the
        command (Popen waits for the exec, a few ms) and reads its output as it comes:
        journalctl's is larger than a pipe holds, and it would wait, stopped, for the queue to
        be read. Tests that replace call() replace this too."""
        argv = list(argv)
        done: list[Result] = []

        def run() -> None:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=dict(self.environ),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                )
            except OSError as exc:
                done.append(Result(127, "", f"{argv[0]}: {exc.strerror}"))
                return
            try:
                out, err = proc.communicate(timeout=CALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                done.append(Result(124, "", f"{argv[0]}: timed out after {CALL_TIMEOUT}s"))
                return
            done.append(Result(proc.returncode, out, err))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def result() -> Result:
            thread.join()
            return done[0] if done else Result(1, "", f"{argv[0]}: its output was not read")

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
