"""Smoke-test targets as data: a name, the package family it installs, and the root it boots.

A target says nothing about the engine that boots it: a root source is what a container backend
(engines/: nspawn, podman) turns into a running system. A `DebianRoot` is built by mmdebstrap and
cached by rootfs.py (every backend boots it); an `ImageRoot` is a distribution's own image from
a registry, prepared once with its own package manager and cached as a local image by podman.py
(the Podman backend alone boots it). Adding a distribution is one `Target` entry in TARGETS.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from qss_toolkit import payload
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.selection import select

DEBIAN_MIRROR = "http://deb.debian.org/debian"

# What every root needs so that systemd boots as PID 1 and the helper runs.
BASE_PACKAGES: tuple[str, ...] = ("systemd", "systemd-sysv", "dbus", "python3", "procps")


def _package_name(dependency: str) -> str:
    """The package a dependency names first: `a (>= 1) | b` -> a (Debian), `a >= 1` -> a (RPM).
    An alternative is for the machine that lacks the first: a root installs the first alone."""
    return dependency.split("|", maxsplit=1)[0].split("(", maxsplit=1)[0].split(maxsplit=1)[0]


def dependency_pairs() -> tuple[tuple[str, str], ...]:
    """(Debian package, RPM capability) for each dependency of ours on another project's
    package, from packaging/nfpm/*.yaml, where each package lists its Debian and its RPM
    dependencies in the same order."""
    packages = payload.project_packages()
    ours = {p.name for p in packages}
    pairs = set()
    for p in packages:
        deb, rpm = (
            [_package_name(d) for d in p.relation(family, "depends", "0")]
            for family in (Family.DEB, Family.RPM)
        )
        if len(deb) != len(rpm):
            raise ConfigurationError(
                f"packaging/nfpm/{p.name}.yaml: {len(deb)} Debian dependencies, {len(rpm)} RPM",
                hint="list each dependency in both, in the same order",
            )
        pairs |= {(d, r) for d, r in zip(deb, rpm) if d not in ours}
    return tuple(sorted(pairs))


@functools.lru_cache(maxsize=2)
def dependency_packages(family: Family = Family.DEB) -> tuple[str, ...]:
    """The packages of `family` that ours depend on besides each other, from
    packaging/nfpm/*.yaml, the first of each Debian alternative: network-manager,
    networkd-dispatcher and msmtp (with python3 and systemd). Every root holds them, so that
    each hook's scenario finds its dispatcher installed. NetworkManager is masked (see
    rootfs.py) and networkd-dispatcher starts only once a hook is installed (its unit's
    ConditionPathExistsGlob=): only their scenarios start them, in a boot with a network
    namespace of its own (--network-veth), never beside the host's interfaces. Of a dependency
    with alternatives (`a | b`), the first: the one apt installs where none is."""
    index = 0 if family is Family.DEB else 1
    return tuple(sorted({pair[index] for pair in dependency_pairs()}))


# The submission route (qmail-send-systemd-submission) relays through msmtp (a dependency, so
# in dependency_packages()); its scenarios prove it against Debian's aiosmtpd with certificates
# that openssl makes for the run, trusted through ca-certificates' store.
SUBMISSION_PACKAGES: tuple[str, ...] = ("python3-aiosmtpd", "openssl", "ca-certificates")


# The RPM toolchain that lets a Debian root install .rpm packages with dnf, and rebuild the
# source RPM (rebuild.py): rpmbuild unpacks its tarball with xz, which Fedora's rpm-build
# requires and Debian's rpm does not.
RPM_PACKAGES: tuple[str, ...] = ("rpm", "dnf", "createrepo-c", "xz-utils")


SMOKE_VARIANT = "apt"


@dataclass(frozen=True)
class DebianRoot:
    """A root that mmdebstrap builds from a Debian archive, with the packages systemd needs."""

    suite: str
    extra_packages: tuple[str, ...] = ()
    # Shell steps run once in the fresh root (systemd not running) before it is cached.
    customize: tuple[str, ...] = ()
    mirror: str = DEBIAN_MIRROR
    # mmdebstrap's variant. SMOKE_VARIANT ("apt"): a smoke root, which systemd boots, with
    # BASE_PACKAGES, our packages' dependencies and rootfs.COMMON_CUSTOMIZE. Any other is a
    # machine as others have it, with extra_packages and customize alone: "minbase" (Debian's
    # required packages) is a new machine's stock root, "buildd" (the essential packages and
    # build-essential) a build root as sbuild makes one (rebuild.py).
    variant: str = SMOKE_VARIANT
    packages: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        base = (*BASE_PACKAGES, *dependency_packages(), *SUBMISSION_PACKAGES) if self.smoke else ()
        object.__setattr__(self, "packages", tuple(sorted({*base, *self.extra_packages})))

    @property
    def smoke(self) -> bool:
        """A smoke root (prepared for booting and our scenarios), not a stock or build root."""
        return self.variant == SMOKE_VARIANT


@dataclass(frozen=True)
class ImageRoot:
    """A distribution's own container image (a fully qualified reference: no registry search
    list decides where it comes from), with `packages` installed by the family's package
    manager in a preparation step (podman.py caches the result as a local image). `setup`
    steps run first (a repository to enable); `fallbacks` are `package: shell` pairs, the
    shell run where the distribution has no such package (pip for a Python module)."""

    image: str
    packages: tuple[str, ...]
    setup: tuple[str, ...] = ()
    fallbacks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Target:
    """One column of the smoke matrix."""

    name: str
    family: Family  # which packages from dist/ it installs, and with which package manager
    root: DebianRoot | ImageRoot
    systemd: str  # the systemd version it proves (documentation, printed in the table)
    python: str
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


# Debian package -> the RPM capabilities it stands for in the "host provides" package: our
# packages' dependencies (dependency_pairs(), from packaging/nfpm/) and what scriptlets use.
HOST_PROVIDES: tuple[tuple[str, str], ...] = (
    *dependency_pairs(),
    ("systemd", "systemd-units"),
    ("bash", "bash"),
    ("coreutils", "coreutils"),
    ("passwd", "shadow-utils"),
    ("util-linux", "util-linux"),
    ("sed", "sed"),
    ("grep", "grep"),
    ("gzip", "gzip"),
)
HOST_PROVIDES_FILES: tuple[str, ...] = (
    "/bin/sh",
    "/usr/bin/sh",
    "/bin/bash",
    "/usr/bin/bash",
    "/usr/bin/python3",
    "/usr/bin/systemctl",
    "/usr/sbin/useradd",
    "/usr/sbin/groupadd",
    "/usr/sbin/alternatives",
)


# A slice of Debian's archive kept in each Debian root for the sendmail-mta-for-apt scenario:
# bsd-mailx and what apt would install with it (its MTA included), as a flat repository with
# the archive's own Packages stanzas and .debs. The scenario resolves against it offline instead
# of downloading the whole index at each run (apt-get update took 12 s, each later apt-get 5 s).
APT_SUBSET_DIR = "/var/lib/qss-apt/debian-subset"
APT_SUBSET_LIST = "/var/lib/qss-apt/debian-subset.list"
APT_SUBSET_PACKAGES: tuple[str, ...] = ("bsd-mailx",)

_APT_SUBSET_PY = r"""
import glob, os, re, shutil, sys, urllib.parse
archives, dest = "/var/cache/apt/archives", sys.argv[1]
wanted = {}
for path in glob.glob(archives + "/*.deb"):
    name, version, _ = urllib.parse.unquote(os.path.basename(path)).split("_")
    wanted[(name, version)] = path
kept = []
for lists in sorted(glob.glob("/var/lib/apt/lists/*_Packages")):
    for stanza in open(lists, encoding="utf-8").read().split("\n\n"):
        fields = dict(re.findall(r"(?m)^([A-Za-z0-9-]+): (.*)$", stanza))
        key = (fields.get("Package"), fields.get("Version"))
        if key in wanted and fields.get("Filename"):
            target = os.path.join(dest, fields["Filename"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(wanted.pop(key), target)
            kept.append(stanza.strip() + "\n")
if wanted:
    sys.exit("no Packages stanza for " + " ".join(sorted(n for n, _ in wanted)))
with open(os.path.join(dest, "Packages"), "w", encoding="utf-8") as out:
    out.write("\n".join(kept))
"""


def apt_subset_script() -> str:
    """Shell run once in a fresh Debian root: download APT_SUBSET_PACKAGES with what apt picks
    for them, keep them as a flat repository (APT_SUBSET_DIR), and drop the full index again."""
    return "\n".join(
        [
            "set -eu",
            "apt-get update -q -o Acquire::Languages=none",
            "apt-get install -d -y -q " + " ".join(APT_SUBSET_PACKAGES),
            f"mkdir -p {APT_SUBSET_DIR}",
            f"python3 - {APT_SUBSET_DIR} <<'PY'{_APT_SUBSET_PY}PY",
            f"echo 'deb [trusted=yes] file:{APT_SUBSET_DIR} ./' > {APT_SUBSET_LIST}",
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb",
            "mkdir -p /var/lib/apt/lists/partial",
        ]
    )


def host_provides_script() -> str:
    """Shell that builds and installs `qss-host-provides` in an RPM-on-Debian root.

    Debian's dpkg database is invisible to rpm, so without this package dnf would refuse every
    package that requires python3 or systemd. Versions are the Debian packages' upstream versions
    (epoch and revision cut), read when the root is built.
    """
    lines = [
        "set -eu",
        "top=$(mktemp -d)",
        'mkdir -p "$top/SPECS"',
        r'v() { dpkg-query -W -f="\${Version}" "$1" | sed "s/^[0-9]*://; s/[-+~].*//"; }',
        '{ echo "Name: qss-host-provides"',
        '  echo "Version: 1"',
        '  echo "Release: 1"',
        '  echo "Summary: RPM-on-Debian: what the Debian base system provides to rpm and dnf"',
        '  echo "License: GPL-2.0-or-later"',
        '  echo "BuildArch: noarch"',
    ]
    for deb, capability in HOST_PROVIDES:
        lines.append(
            f'  dpkg-query -W {deb} >/dev/null 2>&1 && echo "Provides: {capability} = $(v {deb})"'
        )
    # python(abi) is what Fedora's python3 packages are required by: major.minor only.
    lines.append('  echo "Provides: python(abi) = $(v python3 | cut -d. -f1,2)"')
    lines += [f'  echo "Provides: {path}"' for path in HOST_PROVIDES_FILES]
    lines += [
        '  echo "%description"',
        '  echo "Stands for the Debian packages of this smoke-test root (not a Fedora system)."',
        '  echo "%files"',
        '} > "$top/SPECS/host.spec"',
        'rpmbuild --quiet --define "_topdir $top" -bb "$top/SPECS/host.spec"',
        'rpm -i --nodeps "$top"/RPMS/noarch/qss-host-provides-1-1.noarch.rpm',
        'rm -rf "$top"',
        "mkdir -p /etc/dnf/vars /etc/yum.repos.d",
        "echo 13 > /etc/dnf/vars/releasever",
    ]
    return "\n".join(lines)


# Fedora's alternatives(8) is Debian's update-alternatives under another name (the same
# --install/--remove/--display arguments); the sendmail package's scriptlets call
# /usr/sbin/alternatives, as on Fedora, and its Requires(post) names that file, which
# qss-host-provides provides (HOST_PROVIDES_FILES).
RPM_ALTERNATIVES = (
    "command -v alternatives >/dev/null"
    ' || ln -s "$(command -v update-alternatives)" /usr/sbin/alternatives'
)

LOCAL_TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "debian-11",
            Family.DEB,
            DebianRoot("bullseye", customize=(apt_subset_script(),)),
            systemd="247",
            python="3.9",
        ),
        Target(
            "debian-12",
            Family.DEB,
            DebianRoot("bookworm", customize=(apt_subset_script(),)),
            systemd="252",
            python="3.11",
        ),
        Target(
            "debian-13",
            Family.DEB,
            DebianRoot("trixie", customize=(apt_subset_script(),)),
            systemd="257",
            python="3.13",
        ),
        Target(
            "rpm-on-debian-13",
            Family.RPM,
            DebianRoot(
                "trixie",
                extra_packages=RPM_PACKAGES,
                customize=(host_provides_script(), RPM_ALTERNATIVES),
            ),
            systemd="257",
            python="3.13",
            note="RPM-on-Debian: Debian 13 root with rpm + dnf, not Fedora",
        ),
    )
}


# New machines as a builder has them (Debian's required packages, python3 and git), where
# tests/container/test_stock_machine.py runs the README's build command.
STOCK_PACKAGES: tuple[str, ...] = ("python3", "git")
STOCK_TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            f"stock-debian-{release}",
            Family.DEB,
            DebianRoot(suite, extra_packages=STOCK_PACKAGES, variant="minbase"),
            systemd="",  # minbase has no init system: nothing is booted
            python=python,
        )
        for release, suite, python in (
            ("11", "bullseye", "3.9"),
            ("12", "bookworm", "3.11"),
            ("13", "trixie", "3.13"),
        )
    )
}


# What the scenarios need in an RPM distribution's own image: systemd as PID 1 with D-Bus, the
# Python our helper runs on, the dispatchers our hook packages depend on (with systemd-networkd,
# which Fedora ships apart from systemd), msmtp for the submission package, createrepo_c for
# the dnf repository a scenario installs from, aiosmtpd + openssl for the TLS smarthost,
# procps (pgrep), findutils (the purge's file list), shadow-utils (the stand-in's users).
# No host-provides package: rpm, dnf, alternatives, presets and python3 are the distribution's.
RPM_IMAGE_PACKAGES: tuple[str, ...] = (
    *dependency_packages(Family.RPM),  # systemd, python3, the hooks' dispatchers, msmtp
    "systemd-networkd",
    "dbus",
    "procps-ng",
    "findutils",
    "shadow-utils",
    "util-linux",
    "createrepo_c",
    "openssl",
    "ca-certificates",
    "gzip",
    "python3-aiosmtpd",
)
# Enterprise Linux 9 keeps msmtp, systemd-networkd, networkd-dispatcher and aiosmtpd in EPEL,
# whose release package is in the distribution's own extras repository; CRB holds what EPEL
# packages need. aiosmtpd comes from PyPI where no repository has it.
EL9_SETUP: tuple[str, ...] = (
    "dnf -y install epel-release dnf-plugins-core",
    "dnf config-manager --set-enabled crb",
)
PIP_AIOSMTPD = (
    "python3-aiosmtpd",
    "dnf -y install python3-pip && python3 -m pip install --no-cache-dir aiosmtpd",
)
FEDORA_NOTE = "Fedora's own image: its rpm, dnf, alternatives, presets and Python"
EL_NOTE = "its own image with EPEL: real rpm, dnf, alternatives, presets, Python 3.9"


# Registry images: the two Fedora releases supported in December 2026 (Fedora keeps two: 45,
# out in October 2026, and 44; 43's support ends four weeks after 45's release) and the
# Enterprise Linux 9 rebuilds. Only the Podman backend boots them; where the image cannot be
# pulled the target is skipped with the reason (smoke --require-targets fails instead).
def fedora(release: int) -> Target:
    image = ImageRoot(f"registry.fedoraproject.org/fedora:{release}", RPM_IMAGE_PACKAGES)
    return Target(f"fedora-{release}", Family.RPM, image, "the image's", "the image's", FEDORA_NOTE)


def enterprise_linux(name: str, image: str, distribution: str) -> Target:
    """An Enterprise Linux 9 rebuild: systemd 252, Python 3.9, EPEL for what RHEL lacks."""
    root = ImageRoot(image, RPM_IMAGE_PACKAGES, setup=EL9_SETUP, fallbacks=(PIP_AIOSMTPD,))
    return Target(name, Family.RPM, root, "252", "3.9", f"{distribution}: {EL_NOTE}")


IMAGE_TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        fedora(44),
        fedora(45),
        enterprise_linux("rocky-9", "quay.io/rockylinux/rockylinux:9", "Rocky Linux 9"),
        enterprise_linux("alma-9", "quay.io/almalinuxorg/almalinux:9", "AlmaLinux 9"),
    )
}
TARGETS: dict[str, Target] = {**LOCAL_TARGETS, **IMAGE_TARGETS}


def debian_root(target: Target) -> DebianRoot:
    """The target's mmdebstrap root; a usage error for a target that boots a registry image."""
    if not isinstance(target.root, DebianRoot):
        raise ConfigurationError(
            f"{target.name} boots the image {target.root.image}, not a Debian root",
            hint="its root comes from podman: smoke --backend podman",
        )
    return target.root


def select_targets(names: Sequence[str] | None) -> list[Target]:
    """The targets named on the command line (all when none), or a usage error with a hint."""
    return select("smoke target", names, TARGETS)
