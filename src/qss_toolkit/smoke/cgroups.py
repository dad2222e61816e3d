"""Private cgroups for systemd-nspawn: with --keep-unit (no systemd as the host's PID 1) nspawn
puts its container into its caller's cgroup, so two containers started by one process would
share one, and the systemd inside each would stop, kill and clean up the other's units."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("qss_toolkit")

# Runs before exec: moves itself into each cgroup.procs named before "--", then execs the rest.
ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'


def cgroup_hierarchies(
    membership: Path = Path("/proc/self/cgroup"), base: Path = Path("/sys/fs/cgroup")
) -> list[tuple[Path, str]]:
    """(mount point, our path in it) of each hierarchy that systemd in a container uses:
    name=systemd and the unified one on hybrid hosts, the single one on cgroup2-only hosts;
    none where neither is mounted. `membership` is cgroups(7)'s /proc/PID/cgroup."""
    mine: dict[str, str] = {}
    for line in membership.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        mine[controllers] = path
    if (base / "cgroup.controllers").exists():
        return [(base, mine.get("", "/"))]
    found = []
    if (base / "systemd" / "cgroup.procs").exists() and "name=systemd" in mine:
        found.append((base / "systemd", mine["name=systemd"]))
    if (base / "unified" / "cgroup.procs").exists() and "" in mine:
        found.append((base / "unified", mine[""]))
    return found


def make_cgroups(name: str) -> list[Path]:
    """A fresh cgroup called `name` under ours in each hierarchy."""
    made = []
    for mount, path in cgroup_hierarchies():
        cgroup = mount / path.lstrip("/") / name
        cgroup.mkdir(exist_ok=True)
        made.append(cgroup)
    return made


def make_accounting_cgroup(name: str) -> Path | None:
    """A fresh cgroup `name` in the cgroup2 hierarchy alone, for counting the CPU time of
    processes that must stay out of a container's own tree (None without cgroup2)."""
    for mount, path in cgroup_hierarchies():
        if (mount / "cgroup.controllers").exists():
            cgroup = mount / path.lstrip("/") / name
            cgroup.mkdir(exist_ok=True)
            return cgroup
    return None


def in_cgroups(cgroups: list[Path], argv: list[str]) -> list[str]:
    """`argv` wrapped so that it runs in `cgroups` (from its first instruction on)."""
    procs = [str(c / "cgroup.procs") for c in cgroups]
    return ["/bin/sh", "-c", ENTER, "sh", *procs, "--", *argv]


def cpu_seconds(cgroups: list[Path]) -> float | None:
    """CPU time used so far by the processes in `cgroups`, from cgroup2's cpu.stat (kept even
    without the cpu controller; the v1 hierarchies of a hybrid host have none, and are
    skipped); None when none of them has one."""
    total: float | None = None
    for cgroup in cgroups:
        with contextlib.suppress(OSError):
            for line in (cgroup / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    total = (total or 0.0) + int(value) / 1e6
    return total


def remove_cgroup(cgroup: Path) -> None:
    """rmdir a cgroup and the ones the container made in it, deepest first (best effort)."""
    for _ in range(50):
        for directory, _subdirs, _files in sorted(os.walk(cgroup, topdown=False), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if not cgroup.exists():
            return
        time.sleep(0.1)
    log.warning("could not remove cgroup %s (processes left in it?)", cgroup)
