"""Debian root trees for the smoke targets: built once with mmdebstrap, cached, copied per run.

The cache key is the suite, the mirror, the package set, the target's customisation steps and
FORMAT_VERSION (bump it when the way a root is built changes). A smoke root has a second cached
layer on top: a copy of that root with real qmail built in it (qmail_root.py), keyed on the base
root's key, qmail's pinned source digest and its build steps; `cache_key()` is that layer's key,
the one runs and images use. A root is built in a temporary
directory and renamed into place, so a half-built root is never used. A run never touches the
cached tree: `checkout()` gives it a private copy (overlayfs, or `cp --reflink=auto -a`) that is
deleted on exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from qss_toolkit.locks import exclusive
from qss_toolkit.run import run
from qss_toolkit.settings import settings
from qss_toolkit.smoke import qmail_root, qmail_source
from qss_toolkit.smoke.cgroups import in_cgroups, make_cgroups, remove_cgroup
from qss_toolkit.smoke.nspawn_argv import nspawn_command, nspawn_setup_failed
from qss_toolkit.smoke.targets import DebianRoot, Target, debian_root

log = logging.getLogger("qss_toolkit")

FORMAT_VERSION = 1
KEPT_MARKER = "KEPT"
# A copy is stale when no run holds its lock and it is this old (older toolkits took no lock).
STALE_AFTER = 3600.0
# A cached root that no target's key names any more (its package set or build steps changed)
# is removed once no run has used it for this long: each one is 250-300 MB.
SUPERSEDED_AFTER = 14 * 24 * 3600.0
ROOT_NAME = re.compile(r"[a-z]+-[0-9a-f]{16}")  # cache_key()'s SUITE-HASH
# The most a run's overlay layer may hold in memory (a matrix run writes ~100 MB per target).
UPPER_SIZE = "4g"

# Run inside every fresh root (systemd-nspawn --pipe, systemd not running). NetworkManager is
# masked so that it never runs unasked; its scenario unmasks it in a boot with its own network.
COMMON_CUSTOMIZE: tuple[str, ...] = (
    "systemctl mask NetworkManager.service NetworkManager-wait-online.service",
    "systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer",
    'printf \'APT::Install-Recommends "false";\\nAPT::Get::Assume-Yes "true";\\n'
    'Acquire::Languages "none";\\n\' > /etc/apt/apt.conf.d/90qss',
    # A test root is thrown away after each run: dpkg need not fsync every file it unpacks.
    "echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/90qss-unsafe-io",
    # Generators (fstab, getty, sysv scripts, gpt-auto, ...) describe a real machine's disks
    # and consoles: none of them touches our unit, and every daemon-reload of a maintainer
    # script ran all of them (77 of a reload's 167 ms of CPU; ~280 reloads a matrix run).
    # Masked the documented way, by /dev/null links in /etc/systemd/system-generators.
    "mkdir -p /etc/systemd/system-generators && for g in /lib/systemd/system-generators/*"
    ' /usr/lib/systemd/system-generators/*; do [ -e "$g" ] || continue;'
    ' ln -sf /dev/null "/etc/systemd/system-generators/${g##*/}"; done',
    # apt's debconf hook preconfigures packages that have debconf templates (ours have none):
    # a Perl start-up for every apt call, 8 s of CPU a matrix run.
    "rm -f /etc/apt/apt.conf.d/70debconf",
    "rm -f /var/lib/apt/lists/*_Packages /var/lib/apt/lists/*_Release /var/cache/apt/*.bin",
)


def default_cache_dir() -> Path:
    return settings().cache_dir / "rootfs"


def build_steps(root: DebianRoot) -> tuple[str, ...]:
    """The shell steps run in a fresh root: a smoke root gets the common ones first, another
    variant (a new machine's stock root, a build root) its own alone."""
    return (*COMMON_CUSTOMIZE, *root.customize) if root.smoke else root.customize


def base_key(target: Target) -> str:
    """`SUITE-HASH` of the mmdebstrap root: the same suite with another package set or
    customisation is another root."""
    root = debian_root(target)
    material: dict[str, object] = {
        "format": FORMAT_VERSION,
        "suite": root.suite,
        "mirror": root.mirror,
        "packages": sorted(root.packages),
        "customize": list(build_steps(root)),
    }
    if not root.smoke:  # only then, so that the smoke roots keep the keys they are cached under
        material["variant"] = root.variant
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return f"{root.suite}-{digest[:16]}"


def qmail_key(target: Target) -> str:
    """`SUITE-HASH` of the smoke root with qmail built in: the base root's key, the source's
    pinned digest and the build steps (a warm run finds it and compiles nothing)."""
    material = {
        "base": base_key(target),
        "qmail": qmail_source.TAR_SHA256,
        "steps": list(qmail_root.build_steps()),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return f"{debian_root(target).suite}-{digest[:16]}"


def cache_key(target: Target) -> str:
    """The key of the root a run of `target` boots: with qmail for a smoke root."""
    return qmail_key(target) if debian_root(target).smoke else base_key(target)


def mmdebstrap_command(root: DebianRoot, dest: Path) -> list[str]:
    include = ["--include=" + ",".join(root.packages)] if root.packages else []
    return [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        f"--variant={root.variant}",
        *include,
        root.suite,
        str(dest),
        root.mirror,
    ]


class RootfsCache:
    """Cached root trees under `directory`, one per cache key, plus per-run copies in runs/."""

    def __init__(self, directory: Path | None = None, *, copy: str | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self.copy = copy  # how a run gets its private root; None: QSS_ROOTFS_COPY (overlay)
        self.last_build_seconds: dict[str, float] = {}

    def path(self, target: Target) -> Path:
        return self.directory / cache_key(target)

    def ensure(self, target: Target, *, rebuild: bool = False) -> Path:
        """The cached root for `target`, built first if missing (one builder at a time per key):
        for a smoke root, the base root and then the layer with qmail on it."""
        if not debian_root(target).smoke:
            return self._ensure(target, base_key(target), self._build_base, rebuild=rebuild)

        def build(target: Target, tmp: Path) -> None:
            base = self._ensure(target, base_key(target), self._build_base, rebuild=rebuild)
            self._build_qmail(base, target, tmp)

        # A cached layer is used as it is: its base root is needed only to build it.
        return self._ensure(target, qmail_key(target), build, rebuild=rebuild)

    def _ensure(
        self, target: Target, key: str, build: Callable[[Target, Path], None], *, rebuild: bool
    ) -> Path:
        final = self.directory / key
        self.directory.mkdir(parents=True, exist_ok=True)
        with exclusive(self.directory / f"{final.name}.lock"):
            if rebuild and final.exists():
                self._remove(final)
            if final.exists():
                self._mark_used(final)
                return final
            started = time.monotonic()
            tmp = self.directory / f".{final.name}.tmp-{os.getpid()}"
            self._remove(tmp)
            try:
                build(target, tmp)
                (tmp / "etc" / "qss-rootfs.json").write_text(
                    json.dumps({"key": final.name, "target": target.name}) + "\n"
                )
                tmp.rename(final)
                self._mark_used(final)
            finally:
                self._remove(tmp)
            seconds = time.monotonic() - started
            self.last_build_seconds[target.name] = (
                self.last_build_seconds.get(target.name, 0.0) + seconds
            )
            log.info("%s: root %s built in %.1fs", target.name, final.name, seconds)
            return final

    def _used_stamp(self, root: Path) -> Path:
        return self.directory / f"{root.name}.used"

    def _mark_used(self, root: Path) -> None:
        """The root's last use, for prune_superseded_roots(): a stamp beside it, never the
        root's own mtime. Another run may be reading the root meanwhile (tar streaming it into
        `podman import` fails on "file changed as we read it"), and it is the lower layer of
        overlays that are mounted."""
        self._used_stamp(root).touch()

    def _last_use(self, root: Path) -> float:
        stamp = self._used_stamp(root)
        used = stamp.stat().st_mtime if stamp.exists() else 0.0
        return max(root.stat().st_mtime, used)

    def _remove_root(self, root: Path) -> None:
        self._remove(root)
        self._used_stamp(root).unlink(missing_ok=True)

    def _build_base(self, target: Target, tmp: Path) -> None:
        log.info("%s: building root %s with mmdebstrap (cold cache)", target.name, tmp.name)
        run(mmdebstrap_command(debian_root(target), tmp), timeout=900)
        self._customize(build_steps(debian_root(target)), tmp)

    def _build_qmail(self, base: Path, target: Target, tmp: Path) -> None:
        """A copy of the base root with notqmail built and installed (qmail_root.py); the
        source is verified before it is copied in and unpacked."""
        source = qmail_source.qmail_source()
        log.info(
            "%s: building notqmail %s in a copy of %s", target.name, qmail_source.VERSION, base.name
        )
        run(["cp", "-a", "--reflink=auto", base, tmp])
        dest = tmp / qmail_root.SOURCE_DIR.lstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest / qmail_source.ARCHIVE)
        self._customize(qmail_root.build_steps(), tmp)

    @staticmethod
    def _customize(steps: Iterable[str], tmp: Path) -> None:
        """Run build steps in the root (systemd-nspawn --pipe, in a private cgroup); a step
        nspawn could not set up is started once more, as any nspawn start is."""
        cgroups = make_cgroups(f"qss-build-{tmp.name.lstrip('.')}")
        try:
            for step in steps:
                nspawn = nspawn_command(tmp, command=["/bin/sh", "-ec", step])
                run(
                    in_cgroups(cgroups, nspawn),
                    capture=True,
                    timeout=600,
                    again=nspawn_setup_failed,
                )
        finally:
            for cgroup in cgroups:
                remove_cgroup(cgroup)

    @contextlib.contextmanager
    def checkout(self, target: Target, name: str, *, keep: bool = False) -> Iterator[Path]:
        """A private, writable copy of the cached root, removed on exit unless `keep`.

        The run holds runs/NAME.lock while it lives, so that `prune_stale_runs()` can tell a
        copy left by a killed run from one in use.
        """
        lower = self.ensure(target)
        runs = self.directory / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        lock_path = runs / f"{name}.lock"
        with exclusive(lock_path):
            work = runs / name
            work.mkdir()
            root = work / "root"
            try:
                self._populate(lower, work, root)
                yield root
            finally:
                if keep:
                    (work / KEPT_MARKER).write_text("kept for debugging (QSS_KEEP_CONTAINER)\n")
                else:
                    self._discard(work)
                    lock_path.unlink(missing_ok=True)

    def _populate(self, lower: Path, work: Path, root: Path) -> None:
        if (self.copy or settings().rootfs_copy) == "overlay":
            # The overlay's writable layer lives in memory: a run's changes (packages, journals)
            # are thrown away at its end, and writing them back to disk was a tenth of a warm
            # matrix's CPU time (kernel writeback, then rm -rf).
            mounted = run(
                ["mount", "-t", "tmpfs", "-o", f"size={UPPER_SIZE},mode=0755", "qss-upper", work],
                check=False,
                capture=True,
            )
            if mounted.returncode != 0:
                why = (mounted.stderr or "").strip()
                log.info("no tmpfs for %s (%s): its overlay writes go to disk", work.name, why)
            (work / "upper").mkdir()
            (work / "work").mkdir()
            root.mkdir()
            options = f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}"
            run(["mount", "-t", "overlay", "overlay", "-o", options, root])
        else:
            run(["cp", "-a", "--reflink=auto", lower, root])

    def _discard(self, work: Path) -> None:
        root = work / "root"
        if os.path.ismount(root):
            run(["umount", "--lazy", root], check=False)
        if os.path.ismount(work):
            run(["umount", "--lazy", work], check=False)
        self._remove(work)

    def prune_stale_runs(self) -> list[Path]:
        """Remove the copies that killed runs left behind (not held, not kept, an hour old)."""
        runs = self.directory / "runs"
        removed: list[Path] = []
        if not runs.is_dir():
            return removed
        for work in sorted(p for p in runs.iterdir() if p.is_dir()):
            if (work / KEPT_MARKER).exists() or time.time() - work.stat().st_mtime < STALE_AFTER:
                continue
            if self._remove_unheld(runs / f"{work.name}.lock", self._discard, work):
                removed.append(work)
        if removed:
            log.info("removed %d stale root copies from killed runs", len(removed))
        return removed

    def prune_superseded_roots(self, current: Iterable[Target]) -> list[Path]:
        """Remove the roots whose keys no target in `current` has, unused for SUPERSEDED_AFTER
        (another checkout may still use a recent one) and not being built or checked out."""
        keep = {
            key
            for t in current
            if isinstance(t.root, DebianRoot)
            for key in {base_key(t), cache_key(t)}
        }
        removed: list[Path] = []
        if not self.directory.is_dir():
            return removed
        for root in sorted(self.directory.iterdir()):
            if not ROOT_NAME.fullmatch(root.name) or root.name in keep or not root.is_dir():
                continue
            if time.time() - self._last_use(root) < SUPERSEDED_AFTER:
                continue
            lock_path = self.directory / f"{root.name}.lock"
            if self._remove_unheld(lock_path, self._remove_root, root):
                removed.append(root)
        if removed:
            names = ", ".join(p.name for p in removed)
            log.info("removed %d superseded cached roots: %s", len(removed), names)
        return removed

    @staticmethod
    def _remove_unheld(lock_path: Path, remove: Callable[[Path], None], path: Path) -> bool:
        """`remove(path)`, then delete `lock_path`, unless another run holds that lock."""
        with exclusive(lock_path, wait=False) as held:
            if not held:
                return False  # a live run (checkout or ensure) holds it
            remove(path)
            lock_path.unlink(missing_ok=True)
            return True

    @staticmethod
    def _remove(path: Path) -> None:
        if path.exists() or path.is_symlink():
            shutil.rmtree(path, ignore_errors=False)
