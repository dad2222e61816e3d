"""`sources`: a Debian source package and a source RPM that rebuild without the toolkit.

Written into dist/ for version V (Debian revision and RPM Release 1):

    qmail-send-systemd_V.orig.tar.xz        every file git tracks but debian/, reproducibly
    qmail-send-systemd_V-1.debian.tar.xz    debian/, with what is generated from the payload
    qmail-send-systemd_V-1.dsc              3.0 (quilt), for sbuild, pbuilder, OBS, Launchpad
    qmail-send-systemd_V-1_source.changes   what debsign signs and dput uploads
    qmail-send-systemd-V-1.src.rpm          the spec, with the same tarball as Source0

What the tree keeps by hand (debian/rules, debian/source/format, the source stanza of
debian/control, rpm/qmail-send-systemd.spec.in) is completed here from packaging/nfpm/*.yaml,
packaging/changelog and `__version__`, the project's one source for each: the binary stanzas
of debian/control, debian/changelog, debian/install-payload (each package's files with the
payload's modes, which debian/rules runs) and the spec's preamble, %install, scriptlets, %files
and %changelog. A new package YAML therefore reaches both source packages without an edit under
debian/ or rpm/. debian/changelog is generated rather than committed: packaging/changelog with
its @VERSION@ placeholder stays the one changelog, as it is for the binary packages.

Both are byte-identical when rebuilt from the same tree and SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, PROJECT_ROOT, payload, version
from qss_toolkit.build import control
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.locks import exclusive
from qss_toolkit.payload import ContentKind
from qss_toolkit.run import require, run
from qss_toolkit.steps import step

log = logging.getLogger("qss_toolkit")

DEBIAN = "debian"
INSTALL_SCRIPT = "debian/install-payload"
RPMBUILD_DIR = Path("/tmp/qss-sources-rpmbuild")
# Paths the generated shell and spec use as they are (no quoting, no rpm macro).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
_DISTRIBUTION = re.compile(r"[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class SourceContext:
    """The checked inputs: version, build time, payload, and the files git tracks."""

    name: str  # the source package: the main package's name
    version: str
    epoch: int
    packages: tuple[payload.Package, ...]
    files: tuple[tuple[str, int], ...]  # (path, git mode) of the orig tarball, sorted
    debian: tuple[tuple[str, int], ...]  # (path, git mode) of the tree's debian/
    root: Path = PROJECT_ROOT
    distribution: str | None = None

    @property
    def full_version(self) -> str:
        return f"{self.version}-{version.RELEASE}"

    @property
    def top(self) -> str:
        """The orig tarball's top directory, which the spec's %autosetup expects."""
        return f"{self.name}-{self.version}"

    def file_names(self) -> dict[str, str]:
        base = f"{self.name}_{self.version}"
        return {
            "orig": f"{base}.orig.tar.xz",
            "debian": f"{base}-{version.RELEASE}.debian.tar.xz",
            "dsc": f"{base}-{version.RELEASE}.dsc",
            "changes": f"{base}-{version.RELEASE}_source.changes",
            "srpm": f"{self.name}-{self.full_version}.src.rpm",
        }


def tracked_files(root: Path) -> tuple[tuple[str, int], ...]:
    """(path, mode) of every file git tracks, with the index's mode (not the umask's)."""
    require("git", needed_for="the orig tarball is made from the files git tracks")
    if not (root / ".git").exists():
        raise ConfigurationError(
            f"{root} is not a git checkout", hint="run `sources` from a clone of the project"
        )
    out = run(["git", "ls-files", "--stage", "-z"], cwd=root, capture=True).stdout
    files = []
    for record in filter(None, out.split("\0")):
        meta, path = record.split("\t", 1)
        mode = int(meta.split()[0], 8)
        if mode not in (0o100644, 0o100755, 0o120000):
            raise ConfigurationError(f"{path}: git mode {mode:o} cannot go into a tarball")
        if not (root / path).is_symlink() and not (root / path).is_file():
            raise ConfigurationError(
                f"{path} is tracked by git but missing", hint=f"git checkout -- {path}"
            )
        files.append((path, mode))
    return tuple(sorted(files))


def _in_debian(path: str) -> bool:
    """3.0 (quilt): debian/ is the debian tarball's, not the orig tarball's."""
    return path.startswith(f"{DEBIAN}/")


def _payload_inputs(packages: Iterable[payload.Package], root: Path) -> set[str]:
    """Every tree file the packages are built from."""
    wanted = set()
    for package in packages:
        wanted.add(str(package.config.relative_to(root)))
        for f in package.files:
            if f.kind not in (ContentKind.SYMLINK, ContentKind.DIR, ContentKind.GHOST) and f.source:
                wanted.add(_tree_source(f.source))
        for scripts in package.scripts.values():
            wanted.update(scripts.values())
    return wanted


def _tree_source(source: str) -> str:
    """The tree file a payload source comes from (generated/NAME.gz: see payload.gzip_input)."""
    return payload.gzip_input(source) if source.startswith(payload.GENERATED_PREFIX) else source


def prepare(
    root: Path = PROJECT_ROOT, distribution: str | None = None, version_override: str | None = None
) -> SourceContext:
    """Check everything before a file is written."""
    if distribution is not None and not _DISTRIBUTION.fullmatch(distribution):
        raise ConfigurationError(
            f"distribution {distribution!r} is not a suite name", hint="e.g. unstable or noble"
        )
    ver = version.validate(version_override) if version_override else version.read_version()
    packages = payload.load_packages(root)
    payload.generated_sources(root, ver, 0)  # the changelog and the man pages are well-formed
    tracked = tracked_files(root)
    files = tuple(f for f in tracked if not _in_debian(f[0]))
    names = {path for path, _ in files}
    untracked = sorted(_payload_inputs(packages, root) - names)
    if untracked:
        raise ConfigurationError(
            f"{untracked[0]} is used by the packages but not tracked by git",
            hint=f"git add {' '.join(untracked)}",
        )
    for package in packages:
        for f in package.files:
            if not _PLAIN_PATH.fullmatch(f.destination):
                raise ConfigurationError(f"{package.name}: {f.destination!r} needs quoting")
    return SourceContext(
        packages[0].name,
        ver,
        control.source_date_epoch(root),
        packages,
        files,
        tuple(f for f in tracked if _in_debian(f[0])),
        root,
        distribution,
    )


# ---------------------------------------------------------------------------------------------
# The orig tarball


def _tar_info(name: str, kind: bytes, mode: int, epoch: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, epoch, size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def orig_tarball(ctx: SourceContext) -> bytes:
    """Sorted entries, root-owned, every time SOURCE_DATE_EPOCH, modes from git: the same
    bytes for the same tree, whatever the checkout's umask or file times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        directories = sorted({str(Path(p).parent) for p, _ in ctx.files} - {"."})
        parents = {d2 for d in directories for d2 in (str(p) for p in Path(d).parents) if d2 != "."}
        for directory in ["", *sorted(set(directories) | parents)]:
            name = f"{ctx.top}/{directory}".rstrip("/")
            tar.addfile(_tar_info(name, tarfile.DIRTYPE, 0o755, ctx.epoch))
        for path, mode in ctx.files:
            name = f"{ctx.top}/{path}"
            if mode == 0o120000:
                info = _tar_info(name, tarfile.SYMTYPE, 0o777, ctx.epoch)
                info.linkname = os.readlink(ctx.root / path)
                tar.addfile(info)
                continue
            data = (ctx.root / path).read_bytes()
            info = _tar_info(name, tarfile.REGTYPE, mode & 0o777, ctx.epoch, len(data))
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ, preset=6)


# ---------------------------------------------------------------------------------------------
# What both packagings install: one shell line per payload file


def install_commands(package: payload.Package, fmt: Family, dest: str) -> list[str]:
    """POSIX sh that installs `package`'s files for `fmt` under `dest`, run from the top of
    the unpacked source: what debian/install-payload and the spec's %install hold."""
    lines = []
    for f in package.files_for(fmt):
        target = f"{dest}{f.destination}"
        parent = target.rsplit("/", 1)[0]
        if f.kind is ContentKind.DIR:
            lines.append(f"install -d -m {f.mode:04o} {target}")
        elif f.kind is ContentKind.SYMLINK:
            lines.append(f"install -d {parent} && ln -sfn {f.source} {target}")
        elif (
            f.kind is ContentKind.GHOST
        ):  # rpmbuild wants it in the build root; %ghost keeps it out
            lines.append(f"install -D -m {f.mode:04o} /dev/null {target}")
        else:
            assert f.source is not None
            source = _tree_source(f.source)
            if source != f.source:  # a man page or the guide: gzip -9n, as dh_compress does
                lines.append(
                    f"install -d {parent} && gzip -9nc {source} > {target}"
                    f" && chmod {f.mode:04o} {target}"
                )
            else:
                lines.append(f"install -D -m {f.mode:04o} {source} {target}")
    return lines


# ---------------------------------------------------------------------------------------------
# debian/


def debian_changelog(ctx: SourceContext) -> str:
    text = payload.debian_changelog(ctx.root, ctx.version, ctx.epoch)
    if ctx.distribution:
        first, rest = text.split("\n", 1)
        first = re.sub(r"\) [^;]+;", f") {ctx.distribution};", first, count=1)
        text = f"{first}\n{rest}"
    return text


def debian_control(ctx: SourceContext) -> str:
    stanza = (ctx.root / DEBIAN / "control").read_text(encoding="utf-8")
    lines = [ln for ln in stanza.splitlines() if not ln.startswith("#")]
    source = "\n".join(lines).strip("\n") + "\n"
    binaries = [control.debian_stanza(p, ctx.version) for p in ctx.packages]
    return "\n".join([source, *binaries])


def build_depends(root: Path = PROJECT_ROOT) -> str:
    """debian/control's Build-Depends, as apt-get satisfy takes it."""
    text = (root / DEBIAN / "control").read_text(encoding="utf-8")
    match = re.search(r"^Build-Depends:\s*(.+(?:\n[ \t].+)*)", text, re.MULTILINE)
    if not match:
        raise ConfigurationError("debian/control has no Build-Depends")
    return " ".join(match.group(1).split())


def install_script(ctx: SourceContext) -> str:
    lines = [
        "#!/bin/sh",
        "# Generated by `python -m qss_toolkit sources` from packaging/nfpm/*.yaml: each",
        "# package's files with the payload's modes. debian/rules runs it from the top of the",
        "# unpacked source.",
        "set -e",
    ]
    for package in ctx.packages:
        lines += ["", f"# {package.name}"]
        lines += install_commands(package, Family.DEB, f"debian/{package.name}")
    return "\n".join(lines) + "\n"


def debian_files(ctx: SourceContext) -> dict[str, tuple[bytes, int]]:
    """debian/ of the source package: path -> (content, mode). What git tracks under debian/
    (nothing a build in the tree left there), completed."""
    files: dict[str, tuple[bytes, int]] = {}
    for rel, mode in ctx.debian:
        files[rel] = ((ctx.root / rel).read_bytes(), mode & 0o777)
    files["debian/control"] = (debian_control(ctx).encode(), 0o644)
    files["debian/changelog"] = (debian_changelog(ctx).encode(), 0o644)
    files["debian/copyright"] = ((ctx.root / "packaging" / "copyright").read_bytes(), 0o644)
    files[INSTALL_SCRIPT] = (install_script(ctx).encode(), 0o755)
    for package in ctx.packages:
        for script, source in package.scripts[Family.DEB].items():
            # dh_installdeb fills in #DEBHELPER#
            files[f"debian/{package.name}.{script}"] = ((ctx.root / source).read_bytes(), 0o755)
    return files


def unpack(ctx: SourceContext, parent: Path) -> Path:
    """The unpacked source package under `parent`: the orig tarball's files and debian/."""
    top = parent / ctx.top
    for rel, mode in ctx.files:  # what the orig tarball holds, as dpkg-source -x lays it out
        target = top / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == 0o120000:
            target.symlink_to(os.readlink(ctx.root / rel))
        else:
            shutil.copyfile(ctx.root / rel, target)
            target.chmod(mode & 0o777)
    for rel, (data, mode) in debian_files(ctx).items():
        target = top / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    for path in [top, *top.rglob("*")]:
        os.utime(path, (ctx.epoch, ctx.epoch), follow_symlinks=False)
    return top


# ---------------------------------------------------------------------------------------------
# The spec


def spec_template(root: Path = PROJECT_ROOT) -> Path:
    """The spec's template, named after the main package (the spec's own Name:)."""
    return root / "rpm" / f"{payload.main_package(root).name}.spec.in"


def spec(ctx: SourceContext) -> str:
    path = spec_template(ctx.root)
    where = path.relative_to(ctx.root)
    template = path.read_text(encoding="utf-8")
    main = ctx.packages[0]
    install = [
        line for p in ctx.packages for line in install_commands(p, Family.RPM, "%{buildroot}")
    ]
    sections = "".join(
        control.rpm_package_section(p, ctx.version, ctx.root, p is main) for p in ctx.packages
    )
    values = {
        "NAME": ctx.name,
        "VERSION": ctx.version,
        "RELEASE": version.RELEASE,
        "LICENSE": main.license,
        "URL": main.homepage,
        "SOURCE0": ctx.file_names()["orig"],
        "TOP": ctx.top,
        "PREAMBLE": control.rpm_preamble(main, ctx.version).rstrip("\n"),
        "INSTALL": "\n".join(install),
        "PACKAGES": sections.rstrip("\n"),
        "CHANGELOG": control.rpm_changelog(debian_changelog(ctx)).rstrip("\n"),
    }
    for key, value in values.items():
        marker = f"@{key}@"
        if marker not in template:
            raise ConfigurationError(f"{where} has no {marker}")
        template = template.replace(marker, value)
    leftover = re.search(r"@[A-Z0-9_]+@", template)
    if leftover:
        raise ConfigurationError(f"{where}: unknown placeholder {leftover.group(0)}")
    return template


def rpm_defines(ctx: SourceContext, topdir: Path) -> list[str]:
    """rpmbuild options that make its output reproducible and keep it inside `topdir`. The
    Packager is the build's, as COPR and Koji set it (Fedora's specs hold none): ours is the
    maintainer, as nfpm writes it."""
    defines = {
        "_topdir": str(topdir),
        "packager": ctx.packages[0].maintainer,
        "_buildhost": "reproducible",
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_source_payload": "w9.gzdio",
        "_binary_payload": "w9.gzdio",  # what nfpm uses, so both routes need the same rpm
    }
    args = []
    for key, value in defines.items():
        args += ["--define", f"{key} {value}"]
    return args


def rpm_sources(ctx: SourceContext, sources: Path) -> Path:
    """The spec and Source0 in `sources` (rpmbuild's SOURCES); returns the spec."""
    sources.mkdir(parents=True, exist_ok=True)
    (sources / ctx.file_names()["orig"]).write_bytes(orig_tarball(ctx))
    path = sources / f"{ctx.name}.spec"
    path.write_text(spec(ctx), encoding="utf-8")
    for item in sources.iterdir():
        os.utime(item, (ctx.epoch, ctx.epoch))
    return path


# ---------------------------------------------------------------------------------------------
# Building them


@contextlib.contextmanager
def _rpmbuild_dir() -> Iterator[Path]:
    """The one directory every source RPM is built in, one build at a time: a source RPM
    records the spec as rpmbuild parsed it, build paths included, so a path that changed with
    each build would change its bytes."""
    with exclusive(RPMBUILD_DIR.with_name(RPMBUILD_DIR.name + ".lock")):
        shutil.rmtree(RPMBUILD_DIR, ignore_errors=True)
        try:
            yield RPMBUILD_DIR
        finally:
            shutil.rmtree(RPMBUILD_DIR, ignore_errors=True)


def build_sources(ctx: SourceContext, out: Path) -> list[str]:
    """Write every source file into `out`; return their names."""
    names = ctx.file_names()
    env = {"SOURCE_DATE_EPOCH": str(ctx.epoch), "TZ": "UTC"}
    work = out / ".work"
    work.mkdir()
    (work / names["orig"]).write_bytes(orig_tarball(ctx))
    top = unpack(ctx, work)
    run(["dpkg-source", "--build", top.name], cwd=work, env=env, capture=True)
    changes = work / names["changes"]
    run(["dpkg-genchanges", "-S", f"-O{changes}"], cwd=top, env=env, capture=True)
    for kind in ("orig", "debian", "dsc", "changes"):
        os.replace(work / names[kind], out / names[kind])
    with _rpmbuild_dir() as rpm_top:
        spec_path = rpm_sources(ctx, rpm_top / "SOURCES")
        args = ["rpmbuild", "-bs", "--quiet", *rpm_defines(ctx, rpm_top)]
        run([*args, "--define", f"_srcrpmdir {out}", spec_path], env=env, capture=True)
    shutil.rmtree(work)
    missing = [n for n in names.values() if not (out / n).is_file()]
    if missing:
        raise CheckFailed(f"sources did not produce {', '.join(missing)}")
    return list(names.values())


def write_sources(
    dist: Path = DIST, distribution: str | None = None, root: Path = PROJECT_ROOT
) -> list[Path]:
    """Build the source packages into `dist` (in a temporary directory there, then renamed
    into place: dist/ never holds half of a source package)."""
    for tool in ("dpkg-source", "dpkg-genchanges", "rpmbuild"):
        require(tool)
    ctx = prepare(root, distribution)
    dist.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix=".sources-", dir=dist) as tmp:
        names = build_sources(ctx, Path(tmp))
        for name in names:
            os.replace(Path(tmp) / name, dist / name)
            written.append(dist / name)
            log.info("wrote %s", (dist / name).relative_to(dist.parent))
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit sources", description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST, help="output directory (dist/)")
    parser.add_argument(
        "--distribution",
        help="the changelog's distribution (default: packaging/changelog's, unstable);"
        " a PPA wants an Ubuntu series such as noble",
    )
    args = parser.parse_args(argv)
    with step("sources (.dsc and source RPM)"):
        write_sources(args.dist.resolve(), args.distribution)
    return 0
