"""What every container engine offers the scenarios and the runner, and what they share.

Scenarios only see the `Container` protocol (and `VethContainer` where they need the veth pair),
and the smoke runner only a `Backend` (which starts containers of a `BootKind`): nspawn is
`nspawn.NspawnBackend`, Podman is `podman.PodmanBackend`. The helpers below (the command line a
container runs, waiting for its systemd to settle, its machine name) serve both engines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from qss_toolkit.errors import CheckFailed
from qss_toolkit.run import run
from qss_toolkit.settings import settings
from qss_toolkit.smoke.targets import Target
from qss_toolkit.words import Word

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
        """CPU time used so far by the container and the commands run in it, or None (its
        reboots included)."""
        ...

    def reboot(self) -> None:
        """`systemctl reboot` in the booted root, as an administrator reboots: the same root
        (its files kept; /run and /tmp are new), the same name and network setup, systemd
        booted again and settled. ContainerError where systemd is not running (an offline
        root) or the root does not come back."""
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
    again: Callable[[str], bool] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `host_argv`, which enters the container `name` to run `cmd`: logged with its
    duration, and ContainerCommandFailed (command and output) on a failure when `check`.
    `again(stderr)` says that the engine itself failed to start it (nothing of `cmd` ran): it
    is then started once more (run's `again`)."""
    line = cmd if isinstance(cmd, str) else shlex.join(command_line(cmd))
    started = time.monotonic()
    result = run(host_argv, check=False, capture=True, input=input, timeout=timeout, again=again)
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


def at_niceness_zero(argv: list[str]) -> list[str]:
    """`argv` run at niceness 0, where a machine's init runs, whatever niceness the harness
    runs at (`nice -n 10` on a shared machine): the container's systemd, and every service it
    starts, inherit it from the engine, so a niced harness gave qmail-send and users'
    `|program` deliveries niceness 10 (user-program-priority saw `nice -n 5` at 15). Commands
    entered from the harness keep its niceness."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    return list(argv) if current == 0 else ["nice", f"--adjustment={-current}", *argv]


# What an administrator types to reboot; both engines then boot the same root again.
REBOOT = ("systemctl", "reboot")


def host_link(name: str) -> bool:
    """Whether the host has a network interface `name`."""
    return Path("/sys/class/net", name).exists()


def wait_link_gone(name: str, timeout: float = 15.0) -> bool:
    """Wait until the host interface `name` is gone: the host side of a veth pair goes with the
    container's network namespace, but the kernel tears that down after the container's last
    process is gone. Whether it went within `timeout`."""
    deadline = time.monotonic() + timeout
    while host_link(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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


def machine_name(target: Target) -> str:
    """A short unique name: the veth on the host is `ve-NAME`, at most 15 characters."""
    short = target.name.replace("rpm-on-debian-", "r").replace("debian-", "d")
    if len(short) > 4:  # another distribution: its initials and numbers (fedora-44: f44)
        short = "".join(w if w.isdigit() else w[:1] for w in short.split("-"))
    return f"qss{short}-{uuid.uuid4().hex[:5]}"


def keep_requested(keep: bool) -> bool:
    return keep or settings().keep_container


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
