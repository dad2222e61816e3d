"""Run commands in a Debian root booted with systemd as PID 1 under systemd-nspawn, and clean up.

`booted(target)` is the entry point: it checks out a private copy of the target's cached root,
boots it, waits for systemd to settle, yields a `Container`, and always tears it down (also on
failure or Ctrl-C) unless QSS_KEEP_CONTAINER=1. `offline(target)` gives the same interface on a
root where systemd is NOT running (an image build or chroot install). Scenarios only see the
`Container` protocol (and `VethContainer` where they need the veth pair), and the smoke runner
only a `Backend` (which starts containers of a boot kind): nspawn is `NspawnBackend` here, Podman
is `podman.PodmanBackend`.
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
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from qss_toolkit.cgroups import (
    cpu_seconds,
    in_cgroups,
    make_accounting_cgroup,
    make_cgroups,
    remove_cgroup,
)
from qss_toolkit.errors import CheckFailed
from qss_toolkit.families import Word
from qss_toolkit.nspawn import nspawn_command
from qss_toolkit.rootfs import RootfsCache
from qss_toolkit.run import clean_env, require, run
from qss_toolkit.settings import settings
from qss_toolkit.targets import DebianRoot, Target

log = logging.getLogger("qss_toolkit")

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_TIMEOUT = 90.0


class ContainerCommandFailed(CheckFailed):
    """A command in a container exited with an unexpected code; carries command and output."""

    def __init__(self, command: str, returncode: int, output: str) -> None:
        tail = "\n".join(output.rstrip().splitlines()[-25:])
        super().__init__(f"exit {returncode}: {command}" + (f"\n{tail}" if tail else ""))
        self.command = command
        self.returncode = returncode
        self.output = output


class ContainerError(CheckFailed):
    """The container could not be booted or reached."""


class Container(Protocol):
    """What scenarios may do with a container, whatever engine runs it."""

    name: str

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (a string goes to `sh -c`) as root; stdout and stderr are captured."""
        ...

    def copy_into(self, src: Path, dest: str) -> None:
        """Copy a host file or directory to the absolute path `dest` in the container."""
        ...

    def copy_out(self, src: str, dest: Path) -> None:
        """Copy the container's `src` (file or directory) to the host path `dest`."""
        ...

    def journal(self, unit: str | None = None) -> str:
        """The journal of this boot (of `unit` alone when given), as text."""
        ...

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the container and the commands run in it, or None."""
        ...


@runtime_checkable
class VethContainer(Container, Protocol):
    """A booted container in a network namespace of its own, joined to the host by a veth pair:
    `host0` inside, its peer on the host. The NetworkManager and networkd scenarios bring the
    pair up and down from the host side, as a cable would."""

    network_veth: bool

    def host_veth(self) -> str:
        """The host-side interface of the pair."""
        ...

    def in_network(self, argv: Sequence[str]) -> list[str]:
        """The host argv that runs the host program `argv` in the container's network namespace
        (the roots have no iproute2)."""
        ...


def command_line(cmd: str | Sequence[str]) -> list[str]:
    """The argv that runs `cmd` in the container: a string is a shell command line."""
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    return list(cmd)


def inner_command(cmd: str | Sequence[str], env: Mapping[str, str] | None) -> list[str]:
    """`cmd` as the container runs it: under `env -i`, with a clean environment and `env`."""
    base = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
    base.update(env or {})
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in base.items()), *command_line(cmd)]


def run_inside(
    name: str,
    host_argv: Sequence[str],
    cmd: str | Sequence[str],
    *,
    check: bool,
    input: str | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run `host_argv`, which enters the container `name` to run `cmd`: logged with its
    duration, and ContainerCommandFailed (command and output) on a failure when `check`."""
    started = time.monotonic()
    line = cmd if isinstance(cmd, str) else shlex.join(command_line(cmd))
    result = run(host_argv, check=False, capture=True, input=input, timeout=timeout)
    seconds = time.monotonic() - started
    log.debug("[%s] %.2fs $ %s -> %d", name, seconds, line, result.returncode)
    if check and result.returncode != 0:
        raise ContainerCommandFailed(line, result.returncode, result.stdout + result.stderr)
    return result


def wait_until_settled(container: Container, started: float) -> str:
    """`systemctl is-system-running --wait` in a just-started container, retried while its
    systemd cannot be reached yet; the state it settled in."""
    while True:
        result = container.run(
            ["systemctl", "is-system-running", "--wait"], check=False, timeout=BOOT_TIMEOUT
        )
        state = result.stdout.strip()
        # "offline": PID 1 has not yet made /run/systemd/system, so --wait did not wait.
        if state not in ("", "offline") or time.monotonic() - started > BOOT_TIMEOUT:
            return state or result.stderr.strip()
        time.sleep(0.1)


def check_settled(container: Container, state: str, hint: str) -> list[str]:
    """The failed units of a boot that settled in `state`; ContainerError unless it booted."""
    if state not in ("running", "degraded"):
        raise ContainerError(
            f"{container.name}: systemd did not finish booting (state {state!r})", hint=hint
        )
    if state == "running":
        return []
    listed = container.run(
        ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend"], check=False
    ).stdout.split("\n")
    failed = [u.split()[0] for u in listed if u.strip()]
    log.info("%s: degraded boot, failed units: %s", container.name, " ".join(failed))
    return failed


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
        return run_inside(self.name, host_argv, cmd, check=check, input=input, timeout=timeout)


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

    def start(self) -> None:
        started = time.monotonic()
        self.cgroups = make_cgroups(f"qss-{self.name}")
        self.exec_cgroup = make_accounting_cgroup(f"qss-{self.name}.exec")
        nspawn = nspawn_command(
            self.root, boot=True, machine=self.name, network_veth=self.network_veth
        )
        argv = in_cgroups(self.cgroups, nspawn)
        log.debug("$ %s", shlex.join(argv))
        with self.console_log.open("wb") as console:
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

    def _wait_for_init(self, started: float) -> int:
        """The host PID of the container's systemd: nspawn's child whose command is systemd."""
        assert self.process is not None
        while time.monotonic() - started < BOOT_TIMEOUT:
            if self.process.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited with {self.process.returncode} while booting "
                    f"{self.name}",
                    hint=f"see {self.console_log}",
                )
            pid = find_child(self.process.pid, "systemd")
            if pid:
                return pid
            time.sleep(0.05)
        raise ContainerError(f"{self.name}: no systemd process after {BOOT_TIMEOUT:.0f}s")

    def _host_command(self, inner: list[str]) -> list[str]:
        argv = ["nsenter", f"--target={self.init_pid}", "--all", "--root", "--wd", "--", *inner]
        return in_cgroups([self.exec_cgroup], argv) if self.exec_cgroup else argv

    def _all_cgroups(self) -> list[Path]:
        return [*self.cgroups, *([self.exec_cgroup] if self.exec_cgroup else [])]

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


def machine_name(target: Target) -> str:
    """A short unique name: the veth on the host is `ve-NAME`, at most 15 characters."""
    short = target.name.replace("rpm-on-debian-", "r").replace("debian-", "d")
    if len(short) > 4:  # another distribution: its initials and numbers (fedora-44: f44)
        short = "".join(w if w.isdigit() else w[:1] for w in short.split("-"))
    return f"qss{short}-{uuid.uuid4().hex[:5]}"


def keep_requested(keep: bool) -> bool:
    return keep or settings().keep_container


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


class BootKind(Word):
    """How a scenario's root runs. SHARED: the target's one booted container, in a network
    namespace of its own (--network-veth: NetworkManager may run in it, and no port or address
    meets the host's); OFFLINE: a fresh root where systemd is not running (an image build)."""

    SHARED = "shared"
    OFFLINE = "offline"


class Backend(Protocol):
    """An engine that starts a target's root as a `Container` of a boot kind, and always
    removes it again when the block ends (unless `keep`)."""

    name: str

    def prepare(self, target: Target) -> str | None:
        """Get what booting `target` needs; the reason it cannot be booted here (the target
        is then skipped), or None."""
        ...

    def start(
        self, kind: BootKind, target: Target, *, keep: bool = False
    ) -> contextlib.AbstractContextManager[Container]: ...

    def prune(self, targets: Sequence[Target]) -> None:
        """Remove what killed runs left and what no target in `targets` uses any more."""
        ...

    def leftovers(self) -> list[str]:
        """What the runs so far left on the host that a teardown should have removed."""
        ...


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
