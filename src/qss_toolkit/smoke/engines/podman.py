"""The Podman backend: a target's root as a local image, booted with systemd as PID 1.

Builders' CI engines have a container engine where `systemd-nspawn --boot` often is not
available; this backend runs the same scenarios there, behind the same `Container` and
`Backend` protocols (base.py). Its images:

- a Debian target's root comes from the root cache (rootfs.py) by `podman import`, one image
  per cache key (`localhost/qss-root:KEY`), removed once its root is pruned;
- a registry target's image (`targets.ImageRoot`) is pulled and prepared once with the
  family's own package manager, then committed as `localhost/qss-image:NAME-HASH`; where it
  cannot be pulled the target is skipped with podman's reason.

What podman needs on a host like this one (Debian 12, cgroup v1 hybrid, no CAP_SYS_RESOURCE in
the bounding set, PID 1 not systemd), measured for issue 13: runc, not crun (crun cannot set
the rlimits here, and refuses hybrid cgroups); explicit `nofile` and `nproc` ulimits (runc
fails to set the inherited ones, and conmon's own nproc limit is 32768); `--systemd=always`
(cgroup mounts for systemd, stop signal SIGRTMIN+3) and no `--cgroupns=private` (the
container's systemd would see the host's init.scope, and parallel containers would collide);
`--network none` (netavark's default network adds iptables chains and a /run/netns mount),
with the veth pair the network scenarios need made by us in the container's own namespace.
Every piece of podman's state that it lets us place lives under `Podman.state` and a /run
directory of its own; the host's /sys/fs/cgroup is never bound read-write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit.errors import CommandFailed
from qss_toolkit.locks import exclusive
from qss_toolkit.run import require, run, run_pipeline
from qss_toolkit.settings import settings
from qss_toolkit.smoke.cgroups import cgroup_hierarchies, cpu_seconds
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
from qss_toolkit.smoke.rootfs import ROOT_NAME, RootfsCache, cache_key
from qss_toolkit.smoke.targets import DebianRoot, ImageRoot, Target

log = logging.getLogger("qss_toolkit")

# Bump when the way an image is made changes (its tags then name other images).
IMAGE_FORMAT = 1
ROOT_REPOSITORY = "localhost/qss-root"
PREPARED_REPOSITORY = "localhost/qss-image"
LABEL = "qss.smoke"  # every container this module starts carries it
# nproc above 32768 fails: conmon's own limit. Without explicit ulimits runc fails to set the
# ones podman inherits ("error setting rlimit type 7").
ULIMITS = ("nofile=20000:20000", "nproc=32768:32768")
# systemd-nspawn's default capabilities (systemd-nspawn(1)), so that a scenario sees the same
# system under both engines: podman's own default set lacks CAP_SYS_ADMIN, without which
# systemd cannot give a service its own mount namespace (our unit's hardening), and
# CAP_NET_ADMIN, which NetworkManager and networkd need on host0 (the namespace is private).
# CAP_SYS_RESOURCE only where the host's bounding set has it (here it does not).
CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER",
    "FSETID", "IPC_OWNER", "KILL", "LEASE", "LINUX_IMMUTABLE", "MKNOD", "NET_ADMIN",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
    "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_NICE", "SYS_PTRACE", "SYS_TTY_CONFIG",
)  # fmt: skip
CAP_SYS_RESOURCE = 24  # capabilities(7)
STOP_TIMEOUT = 10  # seconds podman waits after SIGRTMIN+3 before it kills the container


class ImageUnavailable(ContainerError):
    """A target's image cannot be had (no registry, no such tag): the target is skipped."""


def _digest(material: object, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:length]


def host_has_capability(bit: int, status: Path = Path("/proc/self/status")) -> bool:
    """Whether the capability `bit` is in this process's bounding set (proc(5) CapBnd)."""
    for line in status.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def capabilities() -> list[str]:
    extra = ["SYS_RESOURCE"] if host_has_capability(CAP_SYS_RESOURCE) else []
    return [f"--cap-add={cap}" for cap in (*CAPABILITIES, *extra)]


@dataclass
class Podman:
    """The podman command line, with every piece of state it lets us place under `state`
    (images, containers, network and volume configuration) and a /run directory of its own
    (its run state, libpod's temporary files, runc's state)."""

    state: Path

    @classmethod
    def default(cls) -> Podman:
        return cls(settings().cache_dir / "podman")

    @property
    def runroot(self) -> Path:
        # One per state directory (podman keys its locks by it), in /run: gone at a reboot.
        return Path("/run") / f"qss-podman-{_digest(str(self.state), 8)}"

    def argv(self, *args: str) -> list[str]:
        return [
            require("podman"),
            f"--root={self.state / 'storage'}",
            f"--runroot={self.runroot}",
            f"--tmpdir={self.runroot / 'libpod'}",
            f"--runtime={require('runc')}",
            f"--runtime-flag=root={self.runroot / 'runc'}",
            # No systemd on the host to ask for cgroups, and none needed: podman makes them.
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            f"--network-config-dir={self.state / 'networks'}",
            f"--volumepath={self.state / 'volumes'}",
            *args,
        ]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
        init: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """podman `args`; `init`: it starts a container's init, which gets niceness 0 (and so
        do conmon and the container's processes), whatever the harness's own."""
        argv = at_niceness_zero(self.argv(*args)) if init else self.argv(*args)
        return run(argv, check=check, capture=True, timeout=timeout, input=input)

    def image_exists(self, ref: str) -> bool:
        return self("image", "exists", ref, check=False).returncode == 0

    def images(self, repository: str) -> list[str]:
        """The tags of `repository` in our storage."""
        out = self("images", "--format={{.Repository}}:{{.Tag}}", repository, check=False).stdout
        return [line for line in out.split() if line.startswith(f"{repository}:")]

    def containers(self) -> list[str]:
        """Every container this module started and nobody removed yet."""
        out = self("ps", "-a", f"--filter=label={LABEL}", "--format={{.Names}}", check=False)
        return out.stdout.split()


# -- images ------------------------------------------------------------------------------------


def root_image(target: Target) -> str:
    return f"{ROOT_REPOSITORY}:{cache_key(target)}"


def preparation_script(target: Target) -> str:
    """The shell that turns the distribution's image into one the scenarios can boot: its own
    package manager installs what they need; a fallback stands in where it has no package."""
    root = target.root
    assert isinstance(root, ImageRoot)
    manager = target.family.manager
    fallbacks = dict(root.fallbacks)
    lines = ["set -eu", *root.setup]
    wanted = [p for p in root.packages if p not in fallbacks]
    lines.append(manager.system_install(wanted))
    for package, fallback in root.fallbacks:
        lines.append(
            f"if {manager.has_package(package)}; then {manager.system_install([package])};"
            f" else {fallback}; fi"
        )
    lines.append(manager.clear_caches())
    return "\n".join(lines)


def prepared_image(target: Target) -> str:
    """`localhost/qss-image:NAME-HASH`: another image, package set or script is another tag."""
    root = target.root
    assert isinstance(root, ImageRoot)
    material = {"format": IMAGE_FORMAT, "image": root.image, "script": preparation_script(target)}
    return f"{PREPARED_REPOSITORY}:{target.name}-{_digest(material)}"


@dataclass
class ImageStore:
    """The images the backend boots, made on first use, one maker at a time per image."""

    podman: Podman
    cache: RootfsCache

    def _lock(self, ref: str) -> contextlib.AbstractContextManager[bool]:
        locks = self.podman.state / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return exclusive(locks / (ref.rsplit("/", 1)[-1].replace(":", "_") + ".lock"))

    def image(self, target: Target) -> str:
        """The local image that boots `target` (ImageUnavailable where it cannot be had)."""
        if isinstance(target.root, DebianRoot):
            return self.debian(target)
        return self.prepared(target)

    def debian(self, target: Target) -> str:
        """The target's cached root (built first if missing) imported as an image."""
        root = self.cache.ensure(target)
        ref = root_image(target)
        with self._lock(ref):
            if not self.podman.image_exists(ref):
                started = time.monotonic()
                tar = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root)]
                run_pipeline([*tar, "-cf", "-", "."], self.podman.argv("import", "-", ref))
                log.info("%s: imported %s in %.1fs", target.name, ref, time.monotonic() - started)
        return ref

    def prepared(self, target: Target) -> str:
        """The registry image, pulled and prepared once, as a local image."""
        root = target.root
        assert isinstance(root, ImageRoot)
        ref = prepared_image(target)
        with self._lock(ref):
            if self.podman.image_exists(ref):
                return ref
            if not self.podman.image_exists(root.image):
                pulled = self.podman("pull", "--quiet", root.image, check=False, timeout=900)
                if pulled.returncode != 0:
                    raise ImageUnavailable(
                        f"image {root.image} not available: {last_line(pulled)}",
                        hint="a registry must be reachable (smoke --require-targets fails here)",
                    )
            self._prepare(target, root.image, ref)
        return ref

    def _prepare(self, target: Target, base: str, ref: str) -> None:
        name = f"qss-prepare-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        log.info("%s: preparing %s from %s", target.name, ref, base)
        try:
            # The host's network: the package manager downloads from the distribution's
            # mirrors (no netavark network, so no iptables chain).
            self.podman(
                "run", f"--name={name}", f"--label={LABEL}", "--network=host",
                *(f"--ulimit={u}" for u in ULIMITS), base,
                "/bin/sh", "-c", preparation_script(target), timeout=1800,
            )  # fmt: skip
            self.podman("commit", "--quiet", name, ref, timeout=900)
        finally:
            self.podman("rm", "-f", name, check=False)
        log.info("%s: prepared %s in %.1fs", target.name, ref, time.monotonic() - started)

    def prune(self, targets: Sequence[Target]) -> list[str]:
        """Remove the root images whose cached root is gone (pruned with the roots) and the
        prepared images no target has any more; an image a container still uses stays."""
        current = {prepared_image(t) for t in targets if isinstance(t.root, ImageRoot)}
        stale = [
            ref
            for ref in self.podman.images(ROOT_REPOSITORY)
            if not ROOT_NAME.fullmatch(ref.rsplit(":", 1)[1])
            or not (self.cache.directory / ref.rsplit(":", 1)[1]).is_dir()
        ]
        stale += [ref for ref in self.podman.images(PREPARED_REPOSITORY) if ref not in current]
        removed = [ref for ref in stale if self.podman("rmi", ref, check=False).returncode == 0]
        if removed:
            log.info(
                "removed %d podman images of pruned roots: %s", len(removed), " ".join(removed)
            )
        return removed


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


# -- containers --------------------------------------------------------------------------------


def unified_cgroup(path: str) -> Path | None:
    """The host directory of the cgroup2 (unified) cgroup `path`, where CPU time is counted;
    None on a host without cgroup2."""
    for mount, _ in cgroup_hierarchies():
        if (mount / "cgroup.controllers").exists():
            return mount / path.lstrip("/")
    return None


# `podman exec --interactive` (podman 4.3, conmon 2.1) loses the command's whole output, stdout
# and stderr, about one run in two when the command exits without reading the input it was
# given (sendmail without qmail: one line on stderr, exit 75): conmon ends the exec session's
# attach with that input still unread and podman gets no output. A command that reads its
# input to the end never loses any. So the container's shell reads all of it first, then gives
# it to the command on a pipe, as before; the command's exit status is the pipeline's.
# (Trailing newlines survive the command substitution thanks to the x after them.)
DRAIN_STDIN = 'input=$(cat; echo x) && printf %s "${input%x}" | "$@"'


class PodmanContainer:
    """A container of `image`; `boot=True`: systemd as PID 1, else a root where systemd is
    not running (its PID 1 sleeps). Commands run with `podman exec`, files move with `podman
    cp` (both see the container's own mounts: /run and /tmp are its tmpfs)."""

    def __init__(
        self, podman: Podman, image: str, name: str, *, boot: bool, network_veth: bool = False
    ) -> None:
        self.podman = podman
        self.image = image
        self.name = name
        self.boot = boot
        self.network_veth = network_veth
        # The host side of the pair: at most 15 characters (IFNAMSIZ), "vp-": podman's.
        self.veth = f"vp-{_digest(name, 12)}"
        self.init_pid = 0
        self.boot_seconds = 0.0
        self.failed_units: list[str] = []
        self.cgroup: Path | None = None
        self.merged = ""  # the root's overlay mount on the host
        self.id = ""  # podman's (and runc's) ID of the container
        self.cpu_offset = 0.0  # what the container's cgroups counted before a reboot

    def start(self) -> None:
        started = time.monotonic()
        init = ["/sbin/init"] if self.boot else ["sleep", "infinity"]
        self.podman(
            "run", "--detach", f"--name={self.name}", f"--hostname={self.name}",
            f"--label={LABEL}", "--network=none", f"--systemd={'always' if self.boot else 'false'}",
            *(f"--ulimit={u}" for u in ULIMITS), *capabilities(), self.image, *init,
            init=True,
        )  # fmt: skip
        self._started(started)

    def reboot(self) -> None:
        """`systemctl reboot` inside: systemd ends the container (reboot(2) in a PID namespace
        kills its init with SIGHUP), then `podman start` boots the same container again: the
        same root and its writable layer, the same name; the veth pair is made anew (it went
        with the network namespace). podman makes /etc/hosts and /etc/hostname again, as it
        does at every start."""
        if not self.boot:
            raise ContainerError(f"{self.name}: systemd is not running in this root: no reboot")
        started = time.monotonic()
        before = self.cpu_seconds()
        asked = self.run(list(REBOOT), check=False, timeout=60)
        waited = self.podman("wait", self.name, check=False, timeout=BOOT_TIMEOUT)
        status = self.podman("inspect", "--format={{.State.Status}}", self.name, check=False)
        if waited.returncode != 0 or status.stdout.strip() != "exited":
            said = (asked.stdout + asked.stderr).strip()
            raise ContainerError(
                f"{self.name}: not stopped after systemctl reboot (exit {asked.returncode}"
                f"{': ' + said if said else ''}; podman wait: {last_line(waited)},"
                f" state {status.stdout.strip() or last_line(status)})",
                hint=f"podman logs {self.name}",
            )
        self.forget_runtime_state()
        # podman's cgroup of the container is made anew: what it counted is kept (read again
        # now, unless podman's clean-up already removed it).
        counted = [c for c in (before, self.cpu_seconds()) if c is not None]
        self.cpu_offset = max(counted, default=self.cpu_offset)
        if self.network_veth and not wait_link_gone(self.veth):
            run(["ip", "link", "delete", self.veth], check=False)
        self.podman("start", self.name, timeout=BOOT_TIMEOUT, init=True)
        self._started(started)
        log.info(
            "%s: rebooted in %.1fs (the container exited with %s)",
            self.name, self.boot_seconds, waited.stdout.strip(),
        )  # fmt: skip

    def _started(self, started: float) -> None:
        """What follows a `podman run` or `podman start`: the container's PID 1, cgroup and
        root mount, the veth pair, and the wait until its systemd settled."""
        fields = "{{.State.Pid}} {{.State.CgroupPath}} {{.GraphDriver.Data.MergedDir}} {{.Id}}"
        pid, cgroup, self.merged, self.id = self.podman(
            "inspect", f"--format={fields}", self.name
        ).stdout.split()
        self.init_pid = int(pid)
        self.cgroup = unified_cgroup(cgroup)
        if self.network_veth:
            # nspawn's --network-veth, by hand: host0 in the container's namespace, its peer
            # here; nothing of podman's network stack (no bridge, no iptables, no /run/netns).
            pair = ["type", "veth", "peer", "name", "host0", "netns", str(self.init_pid)]
            run(["ip", "link", "add", self.veth, *pair])
        if self.boot:
            state = wait_until_settled(self, started)
            self.failed_units = check_settled(self, state, hint=f"podman logs {self.name}")
        self.boot_seconds = time.monotonic() - started

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_inside(
            self.name, self.exec_argv(cmd, env, input is not None), cmd,
            check=check, input=input, timeout=timeout,
        )  # fmt: skip

    def exec_argv(
        self, cmd: str | Sequence[str], env: Mapping[str, str] | None, with_input: bool
    ) -> list[str]:
        """`podman exec` of `cmd`; with input, stdin attached and drained first (DRAIN_STDIN)."""
        inner = inner_command(cmd, env)
        if not with_input:
            return self.podman.argv("exec", self.name, *inner)
        return self.podman.argv(
            "exec", "--interactive", self.name, "/bin/sh", "-c", DRAIN_STDIN, "qss-input", *inner
        )

    def copy_into(self, src: Path, dest: str) -> None:
        if not dest.startswith("/"):
            raise ContainerError(f"container path must be absolute: {dest!r}")
        # As nspawn's `cp -T`: a directory's contents go into `dest`, which may exist; podman
        # cp makes the files root's (the container's user), as --no-preserve=ownership does.
        self.run(["mkdir", "-p", dest if src.is_dir() else os.path.dirname(dest)])
        source = f"{src}/." if src.is_dir() else str(src)
        self.podman("cp", source, f"{self.name}:{dest}")

    def copy_out(self, src: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.podman("cp", f"{self.name}:{src}", str(dest))

    def journal(self, unit: str | None = None) -> str:
        if not self.boot:
            return ""  # no systemd, no journal
        argv = ["journalctl", "--no-pager", "-b", "-o", "short-monotonic"]
        return self.run([*argv, *(["-u", unit] if unit else [])], check=False).stdout

    def cpu_seconds(self) -> float | None:
        """CPU time of the container and of every command run in it (podman exec joins its
        cgroup): cgroup2's cpu.stat counts the subtree, plus what the boots before a reboot
        counted; None without cgroup2."""
        measured = cpu_seconds([self.cgroup]) if self.cgroup else None
        return None if measured is None else measured + self.cpu_offset

    def host_veth(self) -> str:
        return self.veth

    def in_network(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.init_pid}", "--net", *argv]

    def stop(self) -> None:
        """Power off (podman sends SIGRTMIN+3, then kills), remove the container and runc's
        record of it; the veth pair goes with its network namespace (deleted here should
        anything hold that)."""
        self.podman("rm", "--force", f"--time={STOP_TIMEOUT}", self.name, check=False, timeout=120)
        self.forget_runtime_state()
        if self.network_veth and host_links(self.veth):
            run(["ip", "link", "delete", self.veth], check=False)

    def runtime_state(self) -> Path | None:
        """runc's record of the container, under our runc root (None before it started)."""
        return self.podman.runroot / "runc" / self.id if self.id else None

    def forget_runtime_state(self) -> None:
        """Delete runc's record of the stopped container. podman 4.3's clean-up of a container
        that exited (conmon's exit command) runs `runc delete` without our
        `--runtime-flag=root`, so the record stays under our runc root: `podman start` then
        fails (`runc create failed: container with given ID already exists`), and `podman
        rm` of an exited container, believing it deleted, leaves it behind."""
        state = self.runtime_state()
        if state is not None and state.exists():
            root = f"--root={state.parent}"
            run([require("runc"), root, "delete", "--force", self.id], check=False, capture=True)


# -- the backend -------------------------------------------------------------------------------


@dataclass
class PodmanBackend:
    """Podman on a local image of the target: its cached Debian root, or its prepared registry
    image (ImageStore). Containers are removed when the block ends, unless kept."""

    cache: RootfsCache = field(default_factory=RootfsCache)
    podman: Podman = field(default_factory=Podman.default)
    name: str = field(default="podman", init=False)

    def __post_init__(self) -> None:
        self.store = ImageStore(self.podman, self.cache)
        self.containers: list[PodmanContainer] = []  # every one started, for leftovers()
        self.baseline = (netns_mounts(), podman_chains())

    def prepare(self, target: Target) -> str | None:
        try:
            self.store.image(target)
        except ImageUnavailable as exc:
            return exc.message
        return None

    def start(
        self, kind: BootKind, target: Target, *, keep: bool = False
    ) -> contextlib.AbstractContextManager[Container]:
        return self._started(kind, target, keep=keep_requested(keep))

    @contextlib.contextmanager
    def _started(self, kind: BootKind, target: Target, *, keep: bool) -> Iterator[Container]:
        require("podman")
        require("runc", needed_for="podman's runtime: crun cannot boot systemd on this host")
        image = self.store.image(target)
        name = machine_name(target)
        boot = kind is BootKind.SHARED
        container = PodmanContainer(self.podman, image, name, boot=boot, network_veth=boot)
        self.containers.append(container)
        runs = self.podman.state / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        with exclusive(runs / f"{name}.lock"):
            try:
                container.start()
                log.info(
                    "%s: started %s (%s) in %.1fs", target.name, name, kind, container.boot_seconds
                )
                yield container
            finally:
                if keep:
                    (runs / f"{name}.kept").write_text("kept for debugging (QSS_KEEP_CONTAINER)\n")
                    log.warning(
                        "%s kept: remove it with %s", name,
                        shlex.join(self.podman.argv("rm", "--force", name)),
                    )  # fmt: skip
                else:
                    container.stop()
                    (runs / f"{name}.lock").unlink(missing_ok=True)

    def prune(self, targets: Sequence[Target]) -> None:
        """Containers that killed runs left (their lock is free, none kept), the roots no
        target uses, then the images whose roots are gone."""
        self.cache.prune_stale_runs()
        self.cache.prune_superseded_roots(targets)
        runs = self.podman.state / "runs"
        for name in self.podman.containers():
            if (runs / f"{name}.kept").exists():
                continue
            with exclusive(runs / f"{name}.lock", wait=False) as free:
                if free:
                    log.info("removing container %s left by a killed run", name)
                    self.podman("rm", "--force", "--time=0", name, check=False)
                    (runs / f"{name}.lock").unlink(missing_ok=True)
        self.forget_stale_runtime_states()
        with contextlib.suppress(CommandFailed):
            self.store.prune(targets)

    def forget_stale_runtime_states(self) -> list[str]:
        """Delete runc's records, under our runc root, of stopped containers that podman no
        longer has: what runs before PodmanContainer.forget_runtime_state() left (podman's
        clean-up does not delete them). The records are listed before podman's containers,
        so a container started meanwhile is among these. Returns the IDs deleted."""
        root = self.podman.runroot / "runc"
        if not root.is_dir():
            return []
        runc = [require("runc"), f"--root={root}"]
        listed = run([*runc, "list", "--format=json"], check=False, capture=True)
        try:
            states = json.loads(listed.stdout or "null") or []
        except ValueError:
            return []
        known = self.podman("ps", "-a", "--no-trunc", "--format={{.ID}}", check=False)
        ours = set(known.stdout.split())
        if known.returncode != 0:
            return []
        stale = [
            str(state["id"])
            for state in states
            if state.get("status") == "stopped" and state.get("id") not in ours
        ]
        for identity in stale:
            run([*runc, "delete", "--force", identity], check=False, capture=True)
        if stale:
            log.info("deleted runc's records of %d removed podman containers", len(stale))
        return stale

    def leftovers(self) -> list[str]:
        """What this backend's runs left on the host that their teardown should have removed:
        their containers (but kept ones), veths and root mounts, and any network namespace
        mount or podman iptables chain that appeared since the backend was made. One line
        each; empty when every teardown was complete."""
        runs = self.podman.state / "runs"
        gone = [c for c in self.containers if not (runs / f"{c.name}.kept").exists()]
        present = set(self.podman.containers())
        found = [f"container {c.name} was not removed" for c in gone if c.name in present]
        found += [f"interface {c.veth} is left" for c in gone if host_links(c.veth)]
        mounted = set(mounts())
        found += [f"mount {c.merged} is left" for c in gone if c.merged in mounted]
        states = [c.runtime_state() for c in gone]
        found += [f"runc state {s} is left" for s in states if s is not None and s.exists()]
        netns, chains = self.baseline
        found += [f"network namespace {m} is left" for m in netns_mounts() if m not in netns]
        found += [f"iptables chain {c} was made" for c in podman_chains() if c not in chains]
        return found


def netns_mounts() -> list[str]:
    return [m for m in mounts() if m.startswith("/run/netns/")]


def host_links(name: str) -> bool:
    """Whether the host has a network interface `name`."""
    return Path("/sys/class/net", name).exists()


def mounts(table: Path = Path("/proc/self/mounts")) -> list[str]:
    """Every mount point of the host (proc(5)'s mounts, octal escapes decoded)."""
    points = [line.split()[1] for line in table.read_text().splitlines() if line.strip()]
    return [p.encode().decode("unicode_escape") for p in points]


# Chain names that netavark and the CNI plugins make (podman's default network).
PODMAN_CHAIN_PREFIXES = ("NETAVARK", "CNI-", "PODMAN")


def podman_chains() -> list[str]:
    """iptables chains a podman network made (none where iptables is not installed)."""
    found: list[str] = []
    if shutil.which("iptables") is None:
        return found
    for table in ("filter", "nat"):
        with contextlib.suppress(CommandFailed, OSError):
            rules = run(["iptables", "-t", table, "-S"], check=False, capture=True).stdout
            found += [
                line.split()[1]
                for line in rules.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(PODMAN_CHAIN_PREFIXES)
            ]
    return found
