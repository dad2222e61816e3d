"""Run commands in a Debian root booted with systemd as PID 1 under systemd-nspawn, and clean up.

`booted(target)` is the entry point: it checks out a private copy of the target's cached root,
boots it, waits for systemd to settle, yields a `Container`, and always tears it down (also on
failure or Ctrl-C) unless QSS_KEEP_CONTAINER=1. `offline(target)` gives the same interface on a
root where systemd is NOT running (an image build or chroot install). `NspawnBackend` is this
engine's `Backend` (the protocols are in base.py).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit.run import clean_env, require, run
from qss_toolkit.smoke.cgroups import (
    cpu_seconds,
    in_cgroups,
    make_accounting_cgroup,
    make_cgroups,
    remove_cgroup,
)
from qss_toolkit.smoke.engines.base import (
    BOOT_TIMEOUT,
    REBOOT,
    BootKind,
    Container,
    ContainerError,
    at_niceness_zero,
    check_settled,
    inner_command,
    keep_requested,
    machine_name,
    run_inside,
    wait_link_gone,
    wait_until_settled,
)
from qss_toolkit.smoke.nspawn_argv import nspawn_command, nspawn_setup_failed
from qss_toolkit.smoke.rootfs import RootfsCache
from qss_toolkit.smoke.targets import DebianRoot, Target

log = logging.getLogger("qss_toolkit")

# systemd-nspawn's exit status when the container's systemd rebooted (systemd-nspawn(1)).
NSPAWN_REBOOTED = 133


def veth_peer(container: Container, inside: str = "host0") -> str:
    """The host interface paired with the container's `inside` one (by its iflink)."""
    peer = container.run(["cat", f"/sys/class/net/{inside}/iflink"]).stdout.strip()
    for link in Path("/sys/class/net").iterdir():
        with contextlib.suppress(OSError):
            if (link / "ifindex").read_text().strip() == peer:
                return link.name
    raise ContainerError(f"{container.name}: no host interface with ifindex {peer}")


class _RootDirectoryContainer(abc.ABC):
    """Shared part of the nspawn containers: the root is a directory on the host."""

    name: str
    root: Path
    cgroups: list[Path]

    def _all_cgroups(self) -> list[Path]:
        """The cgroups of the container and of the commands run in it."""
        return self.cgroups

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the container and the commands run in it (None if the
        host has no cgroup2 to count it)."""
        return cpu_seconds(self._all_cgroups())

    def _host_path(self, path: str) -> Path:
        if not path.startswith("/"):
            raise ContainerError(f"container path must be absolute: {path!r}")
        return self.root / path.lstrip("/")

    def copy_into(self, src: Path, dest: str) -> None:
        target = self._host_path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "--no-preserve=ownership", "-T", src, target])

    def copy_out(self, src: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", "-T", self._host_path(src), dest])

    @abc.abstractmethod
    def _host_command(self, inner: list[str]) -> list[str]:
        """The host argv that runs `inner` (already wrapped in `env -i`) inside this root."""

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        host_argv = self._host_command(inner_command(cmd, env))
        return run_inside(
            self.name,
            host_argv,
            cmd,
            check=check,
            input=input,
            timeout=timeout,
            again=nspawn_setup_failed,
        )


class NspawnContainer(_RootDirectoryContainer):
    """A root directory booted with `systemd-nspawn --boot`; commands enter it with nsenter."""

    def __init__(self, root: Path, name: str, *, network_veth: bool = False) -> None:
        self.root = root
        self.name = name
        self.network_veth = network_veth
        self.console_log = root.parent / f"{root.name}.console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.boot_seconds = 0.0
        self.failed_units: list[str] = []
        self.cgroups: list[Path] = []
        # Commands entered with nsenter stay out of the container's cgroup tree (its systemd
        # owns that); this sibling cgroup counts their CPU time.
        self.exec_cgroup: Path | None = None
        self.cpu_offset = 0.0  # what the cgroups of the boots before a reboot counted

    def start(self) -> None:
        self.exec_cgroup = make_accounting_cgroup(f"qss-{self.name}.exec")
        try:
            self._boot(time.monotonic(), console_mode="wb")
        except ContainerError:
            exited = self.process is not None and self.process.poll() is not None
            if not exited or not nspawn_setup_failed(self.console_text()):
                raise
            log.warning(
                "%s: systemd-nspawn could not set the root up: booting once more", self.name
            )
            self._boot(time.monotonic(), console_mode="ab")

    def _boot(self, started: float, *, console_mode: str) -> None:
        """Start systemd-nspawn on the root in fresh cgroups, find the container's systemd and
        wait until it settled (a first boot, or the one after a reboot)."""
        self.cgroups = make_cgroups(f"qss-{self.name}")
        nspawn = nspawn_command(
            self.root, boot=True, machine=self.name, network_veth=self.network_veth
        )
        argv = in_cgroups(self.cgroups, at_niceness_zero(nspawn))
        log.debug("$ %s", shlex.join(argv))
        with self.console_log.open(console_mode) as console:
            # Popen, not run(): the container lives while we work; __exit__ reaps it.
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        self.init_pid = self._wait_for_init(started)
        state = wait_until_settled(self, started)
        self.failed_units = check_settled(self, state, hint=f"see {self.console_log}")
        self.boot_seconds = time.monotonic() - started

    def reboot(self) -> None:
        """`systemctl reboot` inside: systemd-nspawn exits with 133, its code for a container
        that rebooted (systemd-nspawn@.service restarts on it), and the same root is booted
        again under the same name, with a veth pair made anew. The root's files stay: its
        writable layer is ours, not the container's."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            raise ContainerError(f"{self.name}: systemd-nspawn is not running: nothing to reboot")
        started = time.monotonic()
        veth = self.host_veth() if self.network_veth else None
        asked = self.run(list(REBOOT), check=False, timeout=60)
        try:
            code = proc.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            said = (asked.stdout + asked.stderr).strip()
            raise ContainerError(
                f"{self.name}: still running {BOOT_TIMEOUT:.0f}s after systemctl reboot"
                f" (exit {asked.returncode}{': ' + said if said else ''})",
                hint=f"see {self.console_log}",
            ) from None
        if code != NSPAWN_REBOOTED:
            raise ContainerError(
                f"{self.name}: systemd-nspawn exited with {code} after systemctl reboot, not"
                f" {NSPAWN_REBOOTED} (a reboot)",
                hint=f"see {self.console_log}",
            )
        # The container's cgroups go (its systemd made its tree in them) and come anew, as at
        # the first boot; what they counted is kept.
        self.cpu_offset += cpu_seconds(self.cgroups) or 0.0
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
        # nspawn makes the pair under the same name: the old one must be gone first.
        if veth is not None and not wait_link_gone(veth):
            raise ContainerError(f"{self.name}: the old veth {veth} is still there after a reboot")
        self._boot(started, console_mode="ab")
        log.info("%s: rebooted in %.1fs", self.name, self.boot_seconds)

    def _wait_for_init(self, started: float) -> int:
        """The host PID of the container's systemd: nspawn's child whose command is systemd."""
        assert self.process is not None
        while time.monotonic() - started < BOOT_TIMEOUT:
            if self.process.poll() is not None:
                # The console log goes with the run's directory at teardown: its last line
                # (nspawn's own error) goes into the message.
                said = self.console_tail()
                raise ContainerError(
                    f"systemd-nspawn exited with {self.process.returncode} while booting "
                    f"{self.name}{': ' + said if said else ''}",
                    hint=f"see {self.console_log}",
                )
            pid = find_child(self.process.pid, "systemd")
            if pid:
                return pid
            time.sleep(0.05)
        raise ContainerError(f"{self.name}: no systemd process after {BOOT_TIMEOUT:.0f}s")

    def console_text(self) -> str:
        """The console log ('' if it cannot be read)."""
        try:
            return self.console_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def console_tail(self) -> str:
        """The console log's last line that says something ('' if none can be read)."""
        lines = self.console_text().splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def _host_command(self, inner: list[str]) -> list[str]:
        argv = ["nsenter", f"--target={self.init_pid}", "--all", "--root", "--wd", "--", *inner]
        return in_cgroups([self.exec_cgroup], argv) if self.exec_cgroup else argv

    def _all_cgroups(self) -> list[Path]:
        return [*self.cgroups, *([self.exec_cgroup] if self.exec_cgroup else [])]

    def cpu_seconds(self) -> float | None:
        measured = cpu_seconds(self._all_cgroups())
        return None if measured is None else measured + self.cpu_offset

    def journal(self, unit: str | None = None) -> str:
        argv = ["journalctl", "--no-pager", "-b", "-o", "short-monotonic"]
        if unit:
            argv += ["-u", unit]
        return self.run(argv, check=False).stdout

    def host_veth(self) -> str:
        """The host-side interface of --network-veth (nspawn may shorten its name)."""
        return veth_peer(self)

    def in_network(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.init_pid}", "--net", *argv]

    def stop(self) -> None:
        """Power off (SIGTERM to nspawn), kill the PID namespace if it lingers, drop cgroups."""
        try:
            self._stop_processes()
        finally:
            for cgroup in self._all_cgroups():
                remove_cgroup(cgroup)

    def _stop_processes(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log.warning("%s: did not power off in 15s; killing it", self.name)
            # Killing the container's init kills every process of its PID namespace.
            for pid in (self.init_pid, proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    if pid:
                        os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=15)


class OfflineRoot(_RootDirectoryContainer):
    """A root where systemd is not running: each command is `systemd-nspawn --pipe` without --boot.

    This is what an image build or a chroot install sees: `systemctl is-system-running` says
    "offline", and maintainer scripts must only enable by symlinks.
    """

    def __init__(
        self, root: Path, name: str, cgroups: list[Path], *, private_network: bool = False
    ) -> None:
        self.root = root
        self.name = name
        self.cgroups = cgroups
        # Without a network of its own the root shares the host's (apt in a smoke scenario);
        # a package build gets none, as sbuild gives it none.
        self.private_network = private_network

    def close(self) -> None:
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)

    def _host_command(self, inner: list[str]) -> list[str]:
        nspawn = nspawn_command(
            self.root, machine=self.name, private_network=self.private_network, command=inner
        )
        return in_cgroups(self.cgroups, nspawn)

    def journal(self, unit: str | None = None) -> str:
        return ""  # no systemd, no journal: maintainer-script output is in the command results

    def reboot(self) -> None:
        raise ContainerError(f"{self.name}: systemd is not running in this root: no reboot")


def find_child(parent: int, comm: str) -> int:
    """PID of a direct child of `parent` whose command name is `comm`, or 0."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # /proc/PID/stat: "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and name == comm:
            return int(entry.name)
    return 0


@contextlib.contextmanager
def booted(
    target: Target,
    *,
    network_veth: bool = False,
    keep: bool = False,
    cache: RootfsCache | None = None,
) -> Iterator[NspawnContainer]:
    """Boot a private copy of `target`'s root with systemd as PID 1; always tear it down."""
    require("systemd-nspawn")
    require("nsenter")
    cache = cache or RootfsCache()
    keep = keep_requested(keep)
    name = machine_name(target)
    with cache.checkout(target, name, keep=keep) as root:
        container = NspawnContainer(root, name, network_veth=network_veth)
        try:
            container.start()
            log.info("%s: booted %s in %.1fs", target.name, name, container.boot_seconds)
            yield container
        finally:
            if keep:
                log.warning(
                    "%s kept: root %s, nspawn PID %s (kill it, umount the root and then its"
                    " parent, and rm -rf that)",
                    name,
                    root,
                    container.process.pid if container.process else "-",
                )
            else:
                container.stop()


@contextlib.contextmanager
def offline(
    target: Target,
    *,
    keep: bool = False,
    cache: RootfsCache | None = None,
    private_network: bool = False,
) -> Iterator[OfflineRoot]:
    """A private copy of `target`'s root in which systemd is not running."""
    require("systemd-nspawn")
    cache = cache or RootfsCache()
    name = machine_name(target)
    with cache.checkout(target, name, keep=keep_requested(keep)) as root:
        container = OfflineRoot(
            root, name, make_cgroups(f"qss-{name}"), private_network=private_network
        )
        try:
            yield container
        finally:
            container.close()


@dataclass
class NspawnBackend:
    """systemd-nspawn on a private copy of the target's cached Debian root (rootfs.py)."""

    cache: RootfsCache = field(default_factory=RootfsCache)
    name: str = field(default="nspawn", init=False)

    def prepare(self, target: Target) -> str | None:
        if isinstance(target.root, DebianRoot):
            return None  # built by its first boot, overlapping the other targets' work
        return f"image {target.root.image}: registry images boot under --backend podman"

    def prune(self, targets: Sequence[Target]) -> None:
        self.cache.prune_stale_runs()
        self.cache.prune_superseded_roots(targets)

    def leftovers(self) -> list[str]:
        return []  # each container's cgroups and root copy are removed by its own teardown

    def start(
        self, kind: BootKind, target: Target, *, keep: bool = False
    ) -> contextlib.AbstractContextManager[Container]:
        if kind is BootKind.OFFLINE:
            return offline(target, keep=keep, cache=self.cache)
        return booted(target, network_veth=True, keep=keep, cache=self.cache)
