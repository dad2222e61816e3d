"""Package families as a registry: a family's package files, and its package manager in a root.

A family (`Family.DEB`, `Family.RPM`) is both a package format the toolkit builds and the tools
a target installs it with. Everything that differs between the two lives in one
`PackageManager` subclass, which registers itself for its family (as mkosi's distributions
do): the rest of the toolkit asks `family.manager` and never compares family names. Adding a
family is one `Family` member and one such class.

A manager reads package files on the host, and writes the shell command lines that install,
reinstall, remove, purge, query and reset packages inside a smoke root: the caller runs them
through whatever `Container` backend booted that root, so the same manager serves every backend.
Staging the package files needs a root to copy into and run in: `StagingRoot`, the two methods
of smoke's `Container` protocol it uses, so that this module imports nothing of the smoke harness.
"""

from __future__ import annotations

import abc
import functools
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from qss_toolkit.run import run
from qss_toolkit.version import RELEASE
from qss_toolkit.words import Word


class Family(Word):
    """A package family; its value is the package format's name (nfpm's `packager:`)."""

    DEB = "deb"
    RPM = "rpm"

    @property
    def manager(self) -> PackageManager:
        return MANAGERS[self]


@dataclass(frozen=True)
class PackageFile:
    """A built package: its file, its package name, and its version (`1.1.0-1` in both
    families: Debian's upstream-revision, RPM's VERSION-RELEASE)."""

    path: Path
    name: str
    version: str


Files = Sequence[PackageFile]
MANAGERS: dict[Family, PackageManager] = {}

# Where a root keeps the package files a scenario gave it; the previous build's beside them.
STAGING = "/srv/qss"
PREVIOUS_SUFFIX = "-previous"
NONINTERACTIVE = "DEBIAN_FRONTEND=noninteractive"


class StagingRoot(Protocol):
    """What `PackageManager.stage` does with a smoke root; every `Container` is one."""

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...

    def copy_into(self, src: Path, dest: str) -> None: ...


class PackageManager(abc.ABC):
    """One family's tools: on the host, its package files; in a root, its command lines."""

    family: ClassVar[Family]
    suffix: ClassVar[str]  # of a binary package file
    staging_dir: ClassVar[str]  # where a root keeps the files it installs (STAGING/...)
    # A removed (not purged) package leaves its unit enabled: dh_installsystemd keeps the
    # wants-link until purge, so that a reinstall restores the administrator's choice;
    # %systemd_preun disables on erase.
    remove_keeps_enablement: ClassVar[bool]
    # The front end's own index download, where it has one apart from each command (apt-get
    # update); None where every command fetches the metadata it needs (dnf).
    refresh: ClassVar[str | None]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        MANAGERS[cls.family] = cls()

    # -- package files on the host ------------------------------------------------------

    def is_package_file(self, path: Path) -> bool:
        return path.name.endswith(self.suffix)

    @abc.abstractmethod
    def file_name(self, name: str, version: str) -> str:
        """The file that `packages` writes the package `name` of upstream `version` to."""

    @abc.abstractmethod
    def identity_command(self, path: Path) -> list[str]:
        """A host command that prints the package file's `name<TAB>version`."""

    def _identity(self, path: Path) -> tuple[str, str]:
        name, version = run(self.identity_command(path), capture=True).stdout.strip().split("\t")
        return name, version

    def read(self, path: Path) -> PackageFile:
        stat = path.stat()
        name, version = _cached_identity(self, str(path), stat.st_mtime_ns, stat.st_size)
        return PackageFile(path, name, version)

    def package_files(self, directory: Path) -> dict[str, PackageFile]:
        """Package name -> its file, for every package of this family directly in `directory`."""
        found: dict[str, PackageFile] = {}
        for path in sorted(directory.glob(f"*{self.suffix}")):
            if self.is_package_file(path):
                package = self.read(path)
                found[package.name] = package
        return found

    def staging(self, *, previous: bool = False) -> str:
        return self.staging_dir + (PREVIOUS_SUFFIX if previous else "")

    # -- in a root: everything below returns a command line for the root's /bin/sh ------------

    @abc.abstractmethod
    def stage(self, container: StagingRoot, wanted: Files, built: Files, where: str) -> None:
        """Put the `wanted` ones of the `built` packages in the root at `where`, where
        `install` finds them."""

    @abc.abstractmethod
    def install(self, files: Files, where: str, *, reinstall: bool = False) -> str:
        """Install (or upgrade to) `files` staged at `where`, with the family's front end."""

    @abc.abstractmethod
    def remove(self, names: Sequence[str]) -> str: ...

    def purge(self, names: Sequence[str]) -> str:
        """Remove with the configuration too (the same as `remove` where the family has no
        such difference)."""
        return self.remove(names)

    @abc.abstractmethod
    def query(self, name: str) -> str:
        """Prints the package's state: `installed`, `not-installed`, or the family's own word
        for a state between (dpkg's `config-files`, ...)."""

    @abc.abstractmethod
    def query_version(self, name: str) -> list[str]:
        """Prints the installed version (as PackageFile.version has it)."""

    @abc.abstractmethod
    def reset(self, names: Sequence[str]) -> str:
        """Purge whatever of `names` is in the root in any state, with the low-level tool
        (dpkg, rpm) in one command: it runs before every scenario, and the front ends' start-up
        would be most of its time."""

    # -- a distribution's own image, prepared for the scenarios (podman.py) ------------------

    @abc.abstractmethod
    def system_install(self, names: Sequence[str]) -> str:
        """Install the distribution's packages `names` from its own repositories."""

    @abc.abstractmethod
    def has_package(self, name: str) -> str:
        """Exits 0 when the distribution's repositories have a package `name`."""

    # -- a client of our published repository (docs/repositories.md, "Adding the repository") --

    @abc.abstractmethod
    def clear_caches(self) -> str:
        """Forget every downloaded index and package, so that only what is served counts."""

    @abc.abstractmethod
    def repository_command(self, args: str, repository: str) -> str:
        """The front end with `args`, reading the configured repository `repository` alone."""


@functools.lru_cache(maxsize=256)
def _cached_identity(
    manager: PackageManager, path: str, mtime_ns: int, size: int
) -> tuple[str, str]:
    """A package file's identity, read once per file version (every scenario asks)."""
    return manager._identity(Path(path))


def _names(names: Sequence[str]) -> str:
    return " ".join(shlex.quote(n) for n in names)


class Apt(PackageManager):
    """Debian: .deb files installed with apt-get from the root's file system, dpkg below it."""

    family = Family.DEB
    suffix = ".deb"
    staging_dir = f"{STAGING}/debs"
    remove_keeps_enablement = True
    refresh = "update"

    def file_name(self, name: str, version: str) -> str:
        return f"{name}_{version}-{RELEASE}_all.deb"

    def identity_command(self, path: Path) -> list[str]:
        return ["dpkg-deb", "--show", "--showformat=${Package}\\t${Version}", str(path)]

    def stage(self, container: StagingRoot, wanted: Files, built: Files, where: str) -> None:
        for package in wanted:
            container.copy_into(package.path, f"{where}/{package.path.name}")

    def install(self, files: Files, where: str, *, reinstall: bool = False) -> str:
        paths = _names([f"{where}/{package.path.name}" for package in files])
        again = " --reinstall" if reinstall else ""
        return f"{NONINTERACTIVE} apt-get install -y -q{again} {paths}"

    def remove(self, names: Sequence[str]) -> str:
        return f"{NONINTERACTIVE} apt-get remove -y -q {_names(names)}"

    def purge(self, names: Sequence[str]) -> str:
        return f"{NONINTERACTIVE} apt-get purge -y -q {_names(names)}"

    def query(self, name: str) -> str:
        return (
            f"s=$(dpkg-query -W -f='${{db:Status-Status}}' {shlex.quote(name)} 2>/dev/null);"
            ' echo "${s:-not-installed}"'
        )

    def query_version(self, name: str) -> list[str]:
        return ["dpkg-query", "-W", "-f=${Version}", name]

    def reset(self, names: Sequence[str]) -> str:
        # A removed .deb keeps its conffiles and enablement state until purged: any state but
        # not-installed is purged.
        return (
            f"set --; for p in {_names(names)}; do"
            " s=$(dpkg-query -W -f='${db:Status-Status}' $p 2>/dev/null) || continue;"
            ' [ -n "$s" ] && [ "$s" != not-installed ] && set -- "$@" $p; done;'
            ' [ $# -eq 0 ] || dpkg --purge "$@"'
        )

    def system_install(self, names: Sequence[str]) -> str:
        return (
            f"apt-get update -q && {NONINTERACTIVE} apt-get install -y -q"
            f" --no-install-recommends {_names(names)}"
        )

    def has_package(self, name: str) -> str:
        return f"apt-cache show {shlex.quote(name)} >/dev/null 2>&1"

    def clear_caches(self) -> str:
        return (
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb"
            " && mkdir -p /var/lib/apt/lists/partial"
        )

    def repository_command(self, args: str, repository: str) -> str:
        # The root's network namespace has loopback alone, and apt's getaddrinfo() asks with
        # AI_ADDRCONFIG, which refuses 127.0.0.1 on a machine without any other address (apt's
        # own switch for this offline case turns it off). SourceList=/dev/null hides the root's
        # Debian mirror: apt reads the sources.list.d files alone, which hold `repository`.
        return (
            f"{NONINTERACTIVE} apt-get -q -y -o Dir::Etc::SourceList=/dev/null"
            f" -o Acquire::Connect::AddrConfig=false {args}"
        )


class Dnf(PackageManager):
    """RPM: .rpm files installed with dnf from a createrepo_c repository in the root, rpm below."""

    family = Family.RPM
    suffix = ".rpm"
    staging_dir = f"{STAGING}/rpms"
    remove_keeps_enablement = False
    refresh = None

    def is_package_file(self, path: Path) -> bool:
        return super().is_package_file(path) and not path.name.endswith(".src.rpm")

    def file_name(self, name: str, version: str) -> str:
        return f"{name}-{version}-{RELEASE}.noarch.rpm"

    def identity_command(self, path: Path) -> list[str]:
        return ["rpm", "-qp", "--nosignature", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}", str(path)]

    def stage(self, container: StagingRoot, wanted: Files, built: Files, where: str) -> None:
        """A dnf repository of every built package, made once per boot and build (a stamp
        names each file with its size and mtime), since every rpm scenario installs."""
        paths = sorted(f.path for f in built)
        stamp = "".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in paths)
        if container.run(["cat", f"{where}/.qss-stamp"], check=False).stdout == stamp:
            return
        container.run(["rm", "-rf", where])
        for path in paths:
            container.copy_into(path, f"{where}/{path.name}")
        container.run(["createrepo_c", "--quiet", where])
        container.run(f"cat > {shlex.quote(where)}/.qss-stamp", input=stamp)

    def install(self, files: Files, where: str, *, reinstall: bool = False) -> str:
        # name-version-release: `dnf install NAME` would not upgrade an installed package.
        specs = _names([f"{f.name}-{f.version}" for f in files])
        verb = "reinstall" if reinstall else "install"
        return (
            f"dnf -y --disablerepo='*' --repofrompath=qss,{shlex.quote(where)} --enablerepo=qss"
            f" --nogpgcheck --setopt=install_weak_deps=False {verb} {specs}"
        )

    def remove(self, names: Sequence[str]) -> str:
        return f"dnf -y -q remove {_names(names)}"

    def query(self, name: str) -> str:
        return f"rpm -q {shlex.quote(name)} >/dev/null 2>&1 && echo installed || echo not-installed"

    def query_version(self, name: str) -> list[str]:
        return ["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name]

    def reset(self, names: Sequence[str]) -> str:
        return (
            f'set --; for p in {_names(names)}; do rpm -q $p >/dev/null && set -- "$@" $p; done;'
            ' [ $# -eq 0 ] || rpm -e "$@"'
        )

    def system_install(self, names: Sequence[str]) -> str:
        return f"dnf -y --setopt=install_weak_deps=False install {_names(names)}"

    def has_package(self, name: str) -> str:
        return f"dnf -q repoquery --available {shlex.quote(name)} 2>/dev/null | grep -q ."

    def clear_caches(self) -> str:
        return "{ dnf clean all >/dev/null || true; }"

    def repository_command(self, args: str, repository: str) -> str:
        return (
            f"dnf -y --disablerepo='*' --enablerepo={shlex.quote(repository)}"
            f" --setopt=install_weak_deps=False {args}"
        )
