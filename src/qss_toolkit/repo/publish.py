"""`repo`: publish the packages in dist/ as a signed apt repository and a signed dnf repository.

apt side: apt-ftparchive (Debian's apt-utils) rather than reprepro or aptly, because it keeps no
database or daemon state beside the tree -- the published tree *is* the state, so "keep the older
versions" is simply "start from the previous tree's pool/" -- it ships in Debian itself, and its
indices depend only on the files it is given (Packages byte for byte, Release but for its Date).
dnf side: createrepo_c, RPMs signed with rpmsign, repomd.xml signed detached.

The new tree is built beside the old one and swapped in with one rename (renameat2
RENAME_EXCHANGE where the kernel has it), so a failure at any step leaves the published tree as
it was, and a web server serving it never sees half a repository.

Layout of OUT (dist/repo by default):

    deb/dists/<suite>/{Release,InRelease,Release.gpg}
    deb/dists/<suite>/main/binary-all/Packages{,.gz,.xz}
    deb/pool/main/<letter>/<source>/<package>_<version>_<arch>.deb
    rpm/Packages/<name>-<version>-<release>.<arch>.rpm      (signed)
    rpm/repodata/repomd.xml{,.asc} ...
    qmail-send-systemd-archive-keyring.gpg                  (binary public key, apt Signed-By)
    RPM-GPG-KEY-qmail-send-systemd                          (armored public key, rpm/dnf)
    qmail-send-systemd.sources, qmail-send-systemd.repo      (client configuration)
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import filecmp
import gzip
import logging
import lzma
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, payload
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.locks import exclusive
from qss_toolkit.repo.signing import KeyConfig, Signer, signer
from qss_toolkit.run import run

log = logging.getLogger("qss_toolkit")

# The repository is named after the main package (packaging/nfpm/, `x-qss: {main: true}`).
NAME = payload.main_package().name
COMPONENT = "main"
APT_ARCH = "all"  # every package we ship is Architecture: all / BuildArch: noarch
DEFAULT_SUITE = "stable"
PLACEHOLDER_BASE_URL = "https://packages.example.org/qmail-send-systemd"

APT_KEYRING = f"{NAME}-archive-keyring.gpg"
RPM_KEY = f"RPM-GPG-KEY-{NAME}"
SOURCES_FILE = f"{NAME}.sources"
REPO_FILE = f"{NAME}.repo"
# Where the client configuration expects the keys (docs/repositories.md says to copy them there).
CLIENT_APT_KEYRING = f"/etc/apt/keyrings/{APT_KEYRING}"
CLIENT_RPM_KEY = f"/etc/pki/rpm-gpg/{RPM_KEY}"
# What a client of each family copies from the published tree, and where (docs/repositories.md).
CLIENT_FILES: dict[Family, tuple[tuple[str, str], ...]] = {
    Family.DEB: (
        (APT_KEYRING, CLIENT_APT_KEYRING),
        (SOURCES_FILE, f"/etc/apt/sources.list.d/{SOURCES_FILE}"),
    ),
    Family.RPM: ((RPM_KEY, CLIENT_RPM_KEY), (REPO_FILE, f"/etc/yum.repos.d/{REPO_FILE}")),
}


@dataclass(frozen=True)
class DebPackage:
    path: Path
    package: str
    version: str
    architecture: str
    source: str

    @property
    def pool_path(self) -> Path:
        """Debian's pool convention: pool/<component>/<letter or libX>/<source>/<canonical name>."""
        letter = self.source[:4] if self.source.startswith("lib") else self.source[0]
        bare_version = self.version.split(":", 1)[-1]  # the epoch never appears in a file name
        name = f"{self.package}_{bare_version}_{self.architecture}.deb"
        return Path("pool", COMPONENT, letter, self.source, name)


@dataclass(frozen=True)
class RpmPackage:
    path: Path
    nevra_file: str  # name-version-release.arch.rpm

    @property
    def pool_path(self) -> Path:
        return Path("Packages", self.nevra_file)


def read_deb(path: Path) -> DebPackage:
    out = run(
        ["dpkg-deb", "--field", path, "Package", "Version", "Architecture", "Source"], capture=True
    ).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    package = fields["Package"].strip()
    # Source may carry "(version)" when it differs from the binary's version.
    source = fields.get("Source", package).split()[0].strip() or package
    return DebPackage(
        path, package, fields["Version"].strip(), fields["Architecture"].strip(), source
    )


def _rpm_query(path: Path, queryformat: str) -> str:
    """`rpm -qp --qf` on a package file, whoever signed it (or no one)."""
    return run(
        ["rpm", "-qp", "--nosignature", "--nodigest", "--qf", queryformat, path],
        capture=True,
    ).stdout.strip()


def read_rpm(path: Path) -> RpmPackage:
    return RpmPackage(path, _rpm_query(path, "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm"))


def find_packages(dist: Path) -> tuple[list[Path], list[Path]]:
    """The .deb and binary .rpm files directly in `dist` (where `packages` writes them).

    Not recursive: dist/ also holds the published repository, smoke logs and build scratch
    directories, none of which is a package to publish.
    """
    files = [p for p in sorted(dist.iterdir()) if p.is_file() and not p.name.startswith(".")]
    for path in files:
        if path.name.endswith(".src.rpm"):
            log.info("skipping source package %s (the dnf repository is binary)", path.name)
    return split_packages(files)


def split_packages(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The binary .deb and the binary .rpm files among `paths`, each in the given order."""
    debs = [p for p in paths if Family.DEB.manager.is_package_file(p)]
    rpms = [p for p in paths if Family.RPM.manager.is_package_file(p)]
    return debs, rpms


def _rpm_identity(path: Path) -> str:
    """What an RPM's signature does not change: its main header's and its payload's digests."""
    return _rpm_query(path, "%{SHA256HEADER} %{PAYLOADDIGEST}")


def _same_build(src: Path, dest: Path) -> bool:
    if filecmp.cmp(src, dest, shallow=False):
        return True
    # A published RPM carries our signature and the one in dist/ does not: same build anyway.
    return dest.suffix == ".rpm" and _rpm_identity(src) == _rpm_identity(dest)


def _place(src: Path, dest: Path, replaced: list[str]) -> None:
    """Copy `src` to `dest`; a different build already there under the same name is replaced."""
    if dest.exists():
        if not _same_build(src, dest):
            replaced.append(dest.name)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def stage_debs(root: Path, debs: Sequence[Path]) -> list[DebPackage]:
    """Copy `debs` into root/pool under their canonical names; return what was staged."""
    staged: list[DebPackage] = []
    replaced: list[str] = []
    for path in debs:
        deb = read_deb(path)
        if deb.architecture != APT_ARCH:
            raise ConfigurationError(
                f"{path.name} is Architecture: {deb.architecture}; this repository carries only "
                f"Architecture: {APT_ARCH} packages",
                hint="build the package as arch-independent, or extend repo.APT_ARCH",
            )
        _place(path, root / deb.pool_path, replaced)
        staged.append(deb)
    for name in replaced:
        log.warning(
            "replaced %s with a different file of the same version: clients that "
            "cached the old one see a hash mismatch; publish a new version instead",
            name,
        )
    return staged


def stage_rpms(root: Path, rpms: Sequence[Path]) -> list[Path]:
    """Copy `rpms` into root/Packages under their NEVRA names; return the staged paths."""
    staged: list[Path] = []
    replaced: list[str] = []
    for path in rpms:
        dest = root / read_rpm(path).pool_path
        _place(path, dest, replaced)
        staged.append(dest)
    for name in replaced:
        log.warning(
            "replaced %s with a different build of the same version: publish a new version "
            "instead, clients that cached the old one keep it",
            name,
        )
    return staged


def compress_index(path: Path) -> None:
    """Write PATH.gz and PATH.xz beside the index PATH (apt fetches the smallest it knows)."""
    data = path.read_bytes()
    # mtime=0 and no file name in the header: the .gz depends on the content alone.
    with (
        open(path.with_name(path.name + ".gz"), "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(data)
    path.with_name(path.name + ".xz").write_bytes(lzma.compress(data, preset=6))


def write_apt_indices(root: Path, signer: Signer, *, suite: str) -> Path:
    """Write Packages(.gz/.xz), Release, InRelease and Release.gpg for the pool under `root`."""
    dists = root / "dists" / suite
    binary = dists / COMPONENT / f"binary-{APT_ARCH}"
    binary.mkdir(parents=True, exist_ok=True)
    (root / "pool").mkdir(exist_ok=True)  # an rpm-only publish still gets a valid, empty index
    packages = run(["apt-ftparchive", "packages", "pool"], cwd=root, capture=True).stdout
    (binary / "Packages").write_text(packages, encoding="utf-8")
    compress_index(binary / "Packages")
    release_options = {
        "Origin": NAME,
        "Label": NAME,
        "Suite": suite,
        "Codename": suite,
        "Architectures": APT_ARCH,
        "Components": COMPONENT,
        "Description": f"{NAME}: qmail-send as a hardened systemd service",
    }
    opts: list[str] = []
    for key, value in release_options.items():
        opts += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    release = run(["apt-ftparchive", *opts, "release", "."], cwd=dists, capture=True).stdout
    (dists / "Release").write_text(release, encoding="utf-8")
    signer.clearsign(dists / "Release", dists / "InRelease")
    signer.detach_sign(dists / "Release", dists / "Release.gpg", armor=True)
    return dists


def write_dnf_metadata(root: Path, signer: Signer) -> Path:
    """Run createrepo_c on `root` and sign repodata/repomd.xml (repomd.xml.asc, armored)."""
    root.mkdir(parents=True, exist_ok=True)
    run(
        ["createrepo_c", "--quiet", "--general-compress-type", "gz", "--no-database", root],
        capture=True,
    )
    repomd = root / "repodata" / "repomd.xml"
    signer.detach_sign(repomd, repomd.with_name("repomd.xml.asc"), armor=True)
    return repomd


def sources_text(base_url: str, suite: str) -> str:
    """deb822 client configuration; Signed-By pins this one key to this one repository."""
    return (
        f"# {NAME}: copy to /etc/apt/sources.list.d/{SOURCES_FILE}, and {APT_KEYRING}\n"
        f"# to {CLIENT_APT_KEYRING}\n"
        "Types: deb\n"
        f"URIs: {base_url.rstrip('/')}/deb\n"
        f"Suites: {suite}\n"
        f"Components: {COMPONENT}\n"
        f"Signed-By: {CLIENT_APT_KEYRING}\n"
    )


def repo_text(base_url: str) -> str:
    """dnf client configuration: both the packages and the metadata must carry our signature."""
    return (
        f"# {NAME}: copy to /etc/yum.repos.d/{REPO_FILE}, and {RPM_KEY} to {CLIENT_RPM_KEY}\n"
        f"[{NAME}]\n"
        f"name={NAME}\n"
        f"baseurl={base_url.rstrip('/')}/rpm\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        "repo_gpgcheck=1\n"
        f"gpgkey=file://{CLIENT_RPM_KEY}\n"
    )


@dataclass(frozen=True)
class PublishOptions:
    dist: Path
    out: Path
    suite: str = DEFAULT_SUITE
    prune: bool = False
    base_url: str = PLACEHOLDER_BASE_URL


@dataclass(frozen=True)
class Published:
    out: Path
    debs: tuple[str, ...]
    rpms: tuple[str, ...]
    fingerprint: str


def build_tree(
    tree: Path,
    old: Path | None,
    *,
    debs: Sequence[Path],
    rpms: Sequence[Path],
    options: PublishOptions,
    key: Signer,
) -> Published:
    """Write a complete repository into the empty directory `tree` (nothing outside it)."""
    if old is not None and not options.prune:
        # Older versions stay published, so that clients can downgrade.
        for sub in ("deb/pool", "rpm/Packages"):
            if (old / sub).is_dir():
                shutil.copytree(old / sub, tree / sub)
    deb_root = tree / "deb"
    rpm_root = tree / "rpm"
    deb_root.mkdir(parents=True, exist_ok=True)
    stage_debs(deb_root, debs)
    stage_rpms(rpm_root, rpms)
    all_rpms = sorted((rpm_root / "Packages").glob("*.rpm")) if rpm_root.is_dir() else []
    # Every RPM, the kept ones too, is (re)signed with the current key: after a key rotation a
    # kept package signed by the old key would otherwise fail the client's gpgcheck.
    key.sign_rpms(all_rpms)
    write_apt_indices(deb_root, key, suite=options.suite)
    write_dnf_metadata(rpm_root, key)
    key.export_public(tree / APT_KEYRING, armor=False)
    key.export_public(tree / RPM_KEY, armor=True)
    (tree / SOURCES_FILE).write_text(
        sources_text(options.base_url, options.suite), encoding="utf-8"
    )
    (tree / REPO_FILE).write_text(repo_text(options.base_url), encoding="utf-8")
    deb_files = tuple(sorted(p.name for p in (deb_root / "pool").rglob("*.deb")))
    return Published(options.out, deb_files, tuple(p.name for p in all_rpms), key.fingerprint)


def _make_world_readable(tree: Path) -> None:
    """0755 directories, 0644 files: a web server running as another user must read them all,
    whatever the publisher's umask (and mkdtemp's 0700) made of them."""
    tree.chmod(0o755)
    for path in tree.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (renameat2 RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def swap_into_place(new: Path, out: Path) -> None:
    """Make `new` the published tree at `out`; the old tree (if any) is removed afterwards."""
    if not out.exists():
        new.rename(out)
        return
    if _exchange(new, out):
        shutil.rmtree(new)  # `new` now names the previous tree
        return
    # Fallback: two renames, with a moment where `out` is missing but never half-written.
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    out.rename(old)
    new.rename(out)
    shutil.rmtree(old)


@contextmanager
def _publish_lock(out: Path) -> Iterator[None]:
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.with_name(f".{out.name}.lock")
    with exclusive(lock_path, wait=False) as held:
        if not held:
            raise ConfigurationError(
                f"another publish into {out} is running", hint=f"wait for it (lock: {lock_path})"
            )
        yield


def packages_to_publish(dist: Path) -> tuple[list[Path], list[Path]]:
    """find_packages(dist), or a configuration error when there is nothing to publish."""
    if not dist.is_dir():
        raise ConfigurationError(
            f"{dist} does not exist", hint="build the packages first: nox -s packages"
        )
    debs, rpms = find_packages(dist)
    if not debs and not rpms:
        raise ConfigurationError(
            f"no .deb or .rpm in {dist}", hint="build the packages first: nox -s packages"
        )
    return debs, rpms


def publish(
    options: PublishOptions,
    key: Signer,
    *,
    debs: Sequence[Path] | None = None,
    rpms: Sequence[Path] | None = None,
) -> Published:
    """Publish into options.out atomically. `debs`/`rpms` default to what options.dist holds."""
    out = options.out.resolve()
    if debs is None or rpms is None:
        found_debs, found_rpms = packages_to_publish(options.dist)
        debs = found_debs if debs is None else debs
        rpms = found_rpms if rpms is None else rpms
    with _publish_lock(out):
        old = out if out.is_dir() else None
        new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        try:
            published = build_tree(new, old, debs=debs, rpms=rpms, options=options, key=key)
            _make_world_readable(new)
            swap_into_place(new, out)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
    log.info(
        "published %d .deb and %d .rpm into %s (suite %s, key %s)",
        len(published.debs),
        len(published.rpms),
        out,
        options.suite,
        key.fingerprint,
    )
    return published


def previous_base_url(out: Path) -> str | None:
    """The base URL the published tree's .sources names, so a re-publish need not repeat it."""
    try:
        text = (out / SOURCES_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("URIs:") and line.rstrip().endswith("/deb"):
            return line.split(":", 1)[1].strip()[: -len("/deb")]
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m qss_toolkit repo",
        description="Build signed apt and dnf repositories from the packages in dist/. The key "
        "comes from QSS_SIGNING_KEY_ID or QSS_SIGNING_KEY_FILE (+ QSS_SIGNING_KEY_PASSPHRASE).",
    )
    p.add_argument("--dist", type=Path, default=DIST, help="where the packages are (dist/)")
    p.add_argument("--out", type=Path, default=None, help="the repository tree (dist/repo)")
    p.add_argument("--suite", default=DEFAULT_SUITE, help="apt suite name (stable)")
    p.add_argument(
        "--prune",
        action="store_true",
        help="drop versions not in --dist (default: keep them, clients can downgrade)",
    )
    p.add_argument(
        "--base-url",
        default=None,
        help="URL the tree is served at, for the client files (default: the published tree's)",
    )
    p.add_argument(
        "--ephemeral-key",
        action="store_true",
        help="with no key in the environment, sign with a throwaway key (tests only)",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.suite or "/" in args.suite or args.suite.startswith("."):
        raise ConfigurationError(
            f"--suite {args.suite!r} is not a suite name", hint="--suite stable"
        )
    out: Path = args.out if args.out is not None else args.dist / "repo"
    options = PublishOptions(
        dist=args.dist,
        out=out,
        suite=args.suite,
        prune=args.prune,
        base_url=args.base_url or previous_base_url(out) or PLACEHOLDER_BASE_URL,
    )
    config = KeyConfig.from_env(ephemeral=args.ephemeral_key)
    debs, rpms = packages_to_publish(options.dist)  # before the key is even imported
    with signer(config) as key:
        published = publish(options, key, debs=debs, rpms=rpms)
    print(
        f"{published.out}: {len(published.debs)} .deb, {len(published.rpms)} .rpm, "
        f"signed by {published.fingerprint}"
    )
    return 0
