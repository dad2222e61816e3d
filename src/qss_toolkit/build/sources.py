"""`sources`: a Debian source package and a source RPM that rebuild without the toolkit.

Written into dist/ for version V (Debian revision and RPM Release 1):

    qmail-send-systemd_V.orig.tar.xz        every file git tracks but debian/, reproducibly
    qmail-send-systemd_V-1.debian.tar.xz    debian/, with what is generated from the payload
    qmail-send-systemd_V-1.dsc              3.0 (quilt), for sbuild, pbuilder, OBS, Launchpad
    qmail-send-systemd_V-1_source.changes   what debsign signs and dput uploads
    qmail-send-systemd-V-1.src.rpm          the spec, with the same tarball as Source0

debian/ is the tree's, as git tracks it: complete, so that a clone builds with
dpkg-buildpackage too. Its parts that follow from packaging/nfpm/*.yaml, packaging/changelog
and `__version__` (the binary stanzas of debian/control, debian/changelog, the maintainer
scripts, debian/install-payload) and the spec rpm/NAME.spec are written by `distro-files`
(qss_toolkit.distro_files), and a tree where they drifted is refused here. The one change
made on the way: debian/changelog's and the spec's top entry are dated SOURCE_DATE_EPOCH,
as the binary packages are.

Both are byte-identical when rebuilt from the same tree and SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import argparse
import io
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, PROJECT_ROOT, payload, version
from qss_toolkit.build import control
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.payload import ContentKind
from qss_toolkit.run import require, run
from qss_toolkit.steps import step

_BUILDROOT_PATH = re.compile(r"%\{buildroot\}(/\S*)")

log = logging.getLogger("qss_toolkit")

DEBIAN = "debian"

# rpmbuild's top directory, relative to the private directory it runs in: a source RPM records
# the spec as rpmbuild parsed it, build paths included, so an absolute path (a temporary
# directory's, a home's, a clone's) would change its bytes.
RPMBUILD_TOP = Path("rpmbuild")
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
    check_derived(root)  # the tree as committed, at the version it says
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
    return debian_control_text(ctx.root, ctx.packages)


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
    (nothing a build in the tree left there), debian/changelog dated SOURCE_DATE_EPOCH."""
    files: dict[str, tuple[bytes, int]] = {}
    for rel, mode in ctx.debian:
        files[rel] = ((ctx.root / rel).read_bytes(), 0o755 if mode & 0o111 else 0o644)
    files[CHANGELOG] = (debian_changelog(ctx).encode(), 0o644)
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
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)  # what dpkg-source puts into the debian tarball, whatever the umask
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
        _BUILDROOT_PATH.sub(lambda m: "%{buildroot}" + control.rpm_path(m.group(1)), line)
        for p in ctx.packages
        for line in install_commands(p, Family.RPM, "%{buildroot}")
    ]
    sections = "".join(control.rpm_package_section(p, ctx.root, p is main) for p in ctx.packages)
    values = {
        "NAME": ctx.name,
        "VERSION": ctx.version,
        "RELEASE": version.RELEASE,
        "LICENSE": main.license,
        "URL": main.homepage,
        "PREAMBLE": control.rpm_preamble(main).rstrip("\n"),
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
        item.chmod(0o644)  # the source RPM records each file's mode: not the umask's
        os.utime(item, (ctx.epoch, ctx.epoch))
    return path


# ---------------------------------------------------------------------------------------------
# Building them


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
    # In a private directory of out/ (not a fixed path under /tmp that another user could
    # hold or plant), with relative paths only.
    with tempfile.TemporaryDirectory(prefix=".rpmbuild-", dir=out) as private:
        spec_path = rpm_sources(ctx, Path(private) / RPMBUILD_TOP / "SOURCES")
        # The source RPM records its files' owner by name, the builder's (`nobody nogroup`
        # from nobody's build): under fakeroot it is root's for every builder, as in the .debs.
        args = ["fakeroot", "rpmbuild", "-bs", "--quiet", *rpm_defines(ctx, RPMBUILD_TOP)]
        args += ["--define", "_srcrpmdir .", str(spec_path.relative_to(private))]
        run(args, cwd=Path(private), env=env, capture=True)
        os.replace(Path(private) / names["srpm"], out / names["srpm"])
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
    for tool in ("dpkg-source", "dpkg-genchanges", "rpmbuild", "fakeroot"):
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


# --- the derived files committed in the tree (debian/, the spec): `distro-files` ---------

DERIVED_COMMAND = "python -m qss_toolkit distro-files"
CONTROL = "debian/control"
CHANGELOG = "debian/changelog"
INSTALL_SCRIPT = "debian/install-payload"
_DATE_LINE = re.compile(r"^( -- .+?  )(.+)$", re.M)


def spec_path(root: Path = PROJECT_ROOT) -> Path:
    """The committed spec, named after the main package (the spec's own Name:)."""
    return root / "rpm" / f"{payload.main_package(root).name}.spec"


def source_stanza(root: Path = PROJECT_ROOT) -> str:
    """debian/control's first stanza (comments included): the hand-kept part."""
    text = (root / CONTROL).read_text(encoding="utf-8")
    stanza = re.split(r"\n[ \t]*\n", text.strip("\n"), maxsplit=1)[0]
    if "\nSource: " not in "\n" + stanza:
        raise ConfigurationError(
            f"{CONTROL} does not begin with the Source stanza",
            hint="put Source:, Maintainer:, Build-Depends: ... first, then a blank line",
        )
    return stanza + "\n"


def debian_control_text(root: Path, packages: tuple[payload.Package, ...]) -> str:
    """The source stanza, then each package's; a binary stanza leaves out the Section and
    Priority it would repeat from the source's (dpkg-gencontrol gives them to each package;
    lintian: installable-field-mirrors-source)."""
    source = source_stanza(root)
    inherited = {
        line for line in source.splitlines() if line.startswith(("Section: ", "Priority: "))
    }
    stanzas = [
        "".join(line for line in control.debian_stanza(p).splitlines(True) if line.rstrip("\n")
                not in inherited)
        for p in packages
    ]  # fmt: skip
    return "\n".join([source, *stanzas])


def committed_epoch(root: Path) -> int | None:
    """The date of debian/changelog's top entry as committed, if there is one."""
    path = root / CHANGELOG
    if not path.is_file():
        return None
    try:
        return payload.parse_changelog(path.read_text(encoding="utf-8"))[0].epoch
    except ConfigurationError:
        return None


def derived_changelog(root: Path, ver: str, epoch: int) -> str:
    return payload.debian_changelog(root, ver, epoch)


def _now() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else int(time.time())


def _undated(text: str) -> str:
    return _DATE_LINE.sub(r"\1", text, count=1)


def changelog_epoch(root: Path, ver: str) -> int:
    """The committed top entry's date while its text is what packaging/changelog gives, else
    now (or SOURCE_DATE_EPOCH): a new entry or change is dated when it is written."""
    epoch = committed_epoch(root)
    if epoch is not None:
        committed = (root / CHANGELOG).read_text(encoding="utf-8")
        if _undated(committed) == _undated(derived_changelog(root, ver, epoch)):
            return epoch
    return _now()


def derived_files(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> dict[str, tuple[bytes, int]]:
    """Every derived file of `families`: path relative to `root` -> (content, mode)."""
    ver = ver or version.read_version()
    packages = payload.load_packages(root)
    epoch = changelog_epoch(root, ver)
    ctx = SourceContext(packages[0].name, ver, epoch, packages, (), (), root)
    files: dict[str, tuple[bytes, int]] = {}
    if Family.RPM in families:
        files[str(spec_path(root).relative_to(root))] = (spec(ctx).encode(), 0o644)
    if Family.DEB not in families:
        return files
    files |= {
        CONTROL: (debian_control_text(root, packages).encode(), 0o644),
        CHANGELOG: (derived_changelog(root, ver, epoch).encode(), 0o644),
        "debian/copyright": ((root / "packaging" / "copyright").read_bytes(), 0o644),
        INSTALL_SCRIPT: (install_script(ctx).encode(), 0o755),
    }
    for package in packages:
        for script, source in package.scripts[Family.DEB].items():
            files[f"debian/{package.name}.{script}"] = ((root / source).read_bytes(), 0o755)
    return files


def stale_scripts(root: Path, wanted: dict[str, tuple[bytes, int]]) -> list[str]:
    """debian/PACKAGE.SCRIPT files that no package's YAML declares any more."""
    names = {p.name for p in payload.load_packages(root)}
    found = []
    for path in sorted((root / "debian").glob("*.*")):
        package, _, script = path.name.rpartition(".")
        rel = f"debian/{path.name}"
        if (
            package in names
            and script in payload.SCRIPT_NAMES[Family.DEB].values()
            and rel not in wanted
        ):
            found.append(rel)
    return found


def derived_drift(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> list[str]:
    """One line per derived file that is missing or differs from what the payload gives."""
    wanted = derived_files(root, ver, families)
    out = []
    for rel, (data, mode) in sorted(wanted.items()):
        path = root / rel
        if not path.is_file():
            out.append(f"{rel} is missing")
        elif path.read_bytes() != data:
            out.append(f"{rel} differs from what packaging/ gives")
        elif path.stat().st_mode & 0o111 != mode & 0o111:
            out.append(f"{rel} should be mode {mode:04o}")
    if Family.DEB in families:
        out += [
            f"{rel} belongs to no package script any more" for rel in stale_scripts(root, wanted)
        ]
    return out


def check_derived(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> None:
    """Raise ConfigurationError, naming the first drifted file, unless the tree is current."""
    problems = derived_drift(root, ver, families)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigurationError(
            f"{problems[0]}{more}", hint=f"run `{DERIVED_COMMAND}` and commit what it writes"
        )


def write_derived(root: Path = PROJECT_ROOT, ver: str | None = None) -> list[str]:
    """Write what drifted; return the paths written or removed."""
    wanted = derived_files(root, ver)
    changed = []
    for rel, (data, mode) in sorted(wanted.items()):
        path = root / rel
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(rel)
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
            changed.append(rel)
    for rel in stale_scripts(root, wanted):
        (root / rel).unlink()
        changed.append(rel)
    return sorted(set(changed))
