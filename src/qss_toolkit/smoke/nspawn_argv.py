"""The systemd-nspawn command line, written once for every way the toolkit enters a root.

Three uses: a root booted with systemd as PID 1 (engines.nspawn.NspawnContainer), one command in a
root where systemd does not run (engines.nspawn.OfflineRoot), and a build step in a fresh root
(rootfs.RootfsCache). All of them pass `--register=no --keep-unit`: PID 1 of the host need not
be systemd, and there is no systemd-machined to register with. And what nspawn says when it
could not set a root up, for all three to start it once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qss_toolkit.run import require


def nspawn_command(
    directory: Path,
    *,
    boot: bool = False,
    machine: str | None = None,
    network_veth: bool = False,
    private_network: bool = False,
    command: Sequence[str] = (),
) -> list[str]:
    """argv of systemd-nspawn on `directory`.

    `boot=True` starts the root's init (its console goes to nspawn's stdout); otherwise
    `command` runs in it with stdin, stdout and stderr passed through (`--pipe`). Without
    `network_veth` (a veth pair) or `private_network` (no network at all, as sbuild builds)
    the root shares the host's network.
    """
    argv = [require("systemd-nspawn"), "--register=no", "--keep-unit", "--quiet"]
    argv += ["--boot", "--console=pipe"] if boot else ["--pipe"]
    if machine is not None:
        argv.append(f"--machine={machine}")
    argv.append(f"--directory={directory}")
    if network_veth:
        argv.append("--network-veth")
    elif private_network:  # a network namespace with a loopback interface alone
        argv.append("--private-network")
    if command:
        argv += ["--", *command]
    return argv


# systemd-nspawn's own error when it could not mount a cgroup v1 hierarchy into the container
# (seen in cold and warm CI runs with many roots starting at once on a host with cgroup v1
# controllers: perf_event, hugetlb, EPERM). Nothing of the container ran: it is started once
# more, whether booted, entered for one command, or a build step of a root.
NSPAWN_CGROUP_MOUNT_FAILED = "Failed to mount cgroup (type cgroup) on "


def nspawn_setup_failed(output: str) -> bool:
    """Whether systemd-nspawn's output says it failed to set the container up (see above)."""
    return any(line.startswith(NSPAWN_CGROUP_MOUNT_FAILED) for line in output.splitlines())
