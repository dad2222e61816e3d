"""`packages`: build every package of packaging/nfpm/ into dist/, with nfpm or the native tools.

Everything that can be wrong (version, configurations, missing tools) is checked before any file
is written. Packages are built in a temporary directory inside dist/ (same filesystem) and
renamed into place, so dist/ never holds a half-written package.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from qss_toolkit import DIST, PROJECT_ROOT, nfpm_rpm, payload, version
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.run import require, run
from qss_toolkit.steps import step

log = logging.getLogger("qss_toolkit")

# The %systemd_* macro that runs, for the package's units, at the top of each scriptlet.
RPM_SCRIPTLETS = {"post": "systemd_post", "preun": "systemd_preun", "postun": "systemd_postun"}


@dataclass(frozen=True)
class BuildContext:
    """What every builder needs: the checked version, the payload, and the build time."""

    version: str
    epoch: int
    packages: tuple[payload.Package, ...]
    formats: tuple[Family, ...]
    root: Path = PROJECT_ROOT

    def env(self) -> dict[str, str]:
        return {
            "SOURCE_DATE_EPOCH": str(self.epoch),
            payload.VERSION_VARIABLE: self.version,
            "TZ": "UTC",
        }

    def expected(self, fmt: Family) -> list[str]:
        return [fmt.manager.file_name(p.name, self.version) for p in self.packages]


def source_date_epoch(root: Path = PROJECT_ROOT) -> int:
    """SOURCE_DATE_EPOCH if set, else the last commit's time (reproducible builds' convention)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is not None:
        if not value.isdigit():
            raise ConfigurationError(
                f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                hint="unset it, or set it to e.g. $(git log -1 --format=%ct)",
            )
        return int(value)
    if (root / ".git").exists() and shutil.which("git"):
        result = run(["git", "log", "-1", "--format=%ct"], cwd=root, capture=True, check=False)
        if result.returncode == 0 and result.stdout.strip().isdigit():
            return int(result.stdout.strip())
    raise ConfigurationError(
        "no SOURCE_DATE_EPOCH and no git history to take the build time from",
        hint="export SOURCE_DATE_EPOCH=<seconds since 1970>",
    )


class Builder:
    """One way of turning the staged payload into packages; `formats` it can make."""

    name: ClassVar[str]
    tools: ClassVar[dict[Family, tuple[str, ...]]]  # format -> commands it needs

    def check(self, ctx: BuildContext) -> None:
        """Raise ConfigurationError if this builder's own sources are broken."""

    def build(self, ctx: BuildContext, fmt: Family, staging: Path, out: Path) -> None:
        raise NotImplementedError


class NfpmBuilder(Builder):
    """nfpm reads packaging/nfpm/<package>.yaml as it is, from the staging directory."""

    name = "nfpm"
    tools: ClassVar[dict[Family, tuple[str, ...]]] = {Family.DEB: ("nfpm",), Family.RPM: ("nfpm",)}

    def build(self, ctx: BuildContext, fmt: Family, staging: Path, out: Path) -> None:
        for package in ctx.packages:
            target = out / fmt.manager.file_name(package.name, ctx.version)
            config = package.config.relative_to(ctx.root)
            run(
                ["nfpm", "package", "--config", config, "--packager", fmt, "--target", target],
                cwd=staging,
                env=ctx.env(),
                capture=True,
            )
            if fmt is Family.RPM:  # what nfpm cannot write, as rpmbuild writes it
                nfpm_rpm.complete(target, package, ctx.packages[0].name, ctx.version)


class NativeBuilder(Builder):
    """dpkg-buildpackage and rpmbuild, on the source packages that `sources` makes."""

    name = "native"
    tools: ClassVar[dict[Family, tuple[str, ...]]] = {
        Family.DEB: ("dpkg-buildpackage", "dh", "fakeroot", "git"),
        Family.RPM: ("rpmbuild", "git"),
    }

    # The spec template's lines that the toolkit fills in: its own package is the main one of
    # packaging/nfpm/ (x-qss: main), its version __version__.
    SPEC_TAGS = (
        ("Name", "@NAME@", "the spec's own package is the main one of packaging/nfpm/"),
        ("Version", "@VERSION@", "the toolkit fills in the version from __version__"),
    )

    def check(self, ctx: BuildContext) -> None:
        from qss_toolkit import sources  # builds on this module's stanzas and sections

        if Family.RPM in ctx.formats:
            template = sources.spec_template(ctx.root)
            spec = template.read_text(encoding="utf-8")
            for tag, marker, why in self.SPEC_TAGS:
                if f"\n{tag + ':':<16}{marker}\n" not in spec:
                    raise ConfigurationError(
                        f"{template.relative_to(ctx.root)} has no '{tag + ':':<16}{marker}' line",
                        hint=why,
                    )
        control = (ctx.root / "debian" / "control").read_text(encoding="utf-8")
        if Family.DEB in ctx.formats and ("\nSource: " not in control or "\nPackage:" in control):
            raise ConfigurationError(
                "debian/control must hold the Source stanza only",
                hint="the binary stanzas are generated from packaging/nfpm/*.yaml",
            )

    def build(self, ctx: BuildContext, fmt: Family, staging: Path, out: Path) -> None:
        from qss_toolkit import sources

        source = sources.prepare(ctx.root, version_override=ctx.version)
        if fmt is Family.DEB:
            top = sources.unpack(source, staging.parent / "deb-build")
            run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=top, env=ctx.env(), capture=True)
            for name in ctx.expected(Family.DEB):
                shutil.move(str(top.parent / name), out / name)
            return
        topdir = staging.parent / "rpm-top"
        spec = sources.rpm_sources(source, topdir / "SOURCES")
        args = ["rpmbuild", "-bb", "--quiet", *sources.rpm_defines(source, topdir)]
        args += ["--define", f"_rpmdir {out}"]
        args += ["--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"]
        run([*args, spec], env=ctx.env(), capture=True)


BUILDERS: dict[str, Builder] = {b.name: b for b in (NfpmBuilder(), NativeBuilder())}


def debian_description(package: payload.Package) -> str:
    """Synopsis, then the extended text with " ." for blank lines, as nfpm writes it."""
    lines = [f"Description: {package.synopsis}"]
    lines += [f" {line}" if line.strip() else " ." for line in package.description.splitlines()]
    return "\n".join(lines)


def debian_stanza(package: payload.Package, ver: str) -> str:
    """The debian/control stanza of `package`, from its nfpm configuration."""
    depends = package.relation(Family.DEB, "depends", ver)
    fields = [
        f"Package: {package.name}",
        "Architecture: all",
        f"Section: {package.section}",
        f"Priority: {package.priority}",
        "Depends: " + ", ".join(["${misc:Depends}", *depends]),
    ]
    for kind in payload.RELATIONS[1:]:
        entries = package.relation(Family.DEB, kind, ver)
        if entries:
            fields.append(f"{kind.capitalize()}: {', '.join(entries)}")
    fields.append(debian_description(package))
    return "\n".join(fields) + "\n"


def _rpm_relations(package: payload.Package, ver: str) -> list[str]:
    lines = []
    if package.rpm_group:
        lines.append(f"Group:          {package.rpm_group}")
    tags = {"depends": "Requires", "recommends": "Recommends", "suggests": "Suggests"}
    tags |= {"provides": "Provides", "conflicts": "Conflicts", "replaces": "Obsoletes"}
    for kind, tag in tags.items():
        lines += [f"{tag + ':':<16}{entry}" for entry in package.relation(Family.RPM, kind, ver)]
    # What the scriptlets run, for each scriptlet (nfpm_rpm.py gives nfpm's RPMs the same).
    for script in package.scripts[Family.RPM]:
        lines += [f"{f'Requires({script}):':<15} {r}" for r in package.scriptlet_requires]
    return lines


def rpm_preamble(main: payload.Package, ver: str) -> str:
    """The main package's preamble tags that its nfpm configuration holds."""
    lines = [f"Summary:        {main.summary}"]
    if main.vendor:
        lines.append(f"Vendor:         {main.vendor}")
    return "\n".join([*lines, *_rpm_relations(main, ver)]) + "\n"


def _rpm_escape(text: str) -> str:
    return text.replace("%", "%%")


def rpm_package_section(package: payload.Package, ver: str, root: Path, is_main: bool) -> str:
    """%package (sub-packages), %description, scriptlets and %files of `package`; the
    scriptlets are read from `root`."""
    n = "" if is_main else f" -n {package.name}"
    out = []
    if not is_main:
        out += [f"%package{n}", f"Summary:        {package.summary}", "AutoReqProv:    no"]
        out += _rpm_relations(package, ver)
        out.append("")
    # nfpm's %description is the whole text, synopsis included; so is ours.
    description = "\n".join([package.synopsis, package.description])
    out += [f"%description{n}", _rpm_escape(description), ""]
    units = " ".join(package.units())
    for script, path in package.scripts[Family.RPM].items():
        out.append(f"%{script}{n}")
        if units and script in RPM_SCRIPTLETS:
            out.append(f"%{RPM_SCRIPTLETS[script]} {units}")
        out += [_rpm_escape((root / path).read_text(encoding="utf-8")).rstrip("\n"), ""]
    out += [f"%files{n}", payload.rpm_file_list(package), ""]
    return "\n".join(out)


def rpm_changelog(text: str) -> str:
    """A Debian changelog's entries as the spec's %changelog (nfpm makes the same from them)."""
    out = ["%changelog"]
    for entry in payload.parse_changelog(text):
        stamp = time.strftime("%a %b %d %Y", time.gmtime(entry.epoch))
        out.append(f"* {stamp} {entry.maintainer} - {entry.version}")
        out += [f"- {_rpm_escape(change)}" for change in entry.changes]
        out.append("")
    return "\n".join(out)


def prepare(
    builder_name: str,
    formats: Sequence[str],
    root: Path = PROJECT_ROOT,
    version_override: str | None = None,
) -> BuildContext:
    """Check everything that can be checked before a file is written."""
    if builder_name not in BUILDERS:
        raise ConfigurationError(
            f"unknown builder {builder_name!r}", hint=f"use one of {', '.join(BUILDERS)}"
        )
    builder = BUILDERS[builder_name]
    families = tuple(Family(f) for f in formats)
    for fmt in families:
        for tool in builder.tools[fmt]:
            require(tool)
    # The smoke tests' "previous build" is the same payload under another version.
    ver = version.validate(version_override) if version_override else version.read_version()
    packages = payload.load_packages(root)
    payload.generated_sources(root, ver, 0)  # the generated inputs exist and are well-formed
    ctx = BuildContext(ver, source_date_epoch(root), packages, families, root)
    builder.check(ctx)
    return ctx


def build(
    builder_name: str,
    formats: Sequence[str],
    dist: Path = DIST,
    version_override: str | None = None,
    root: Path = PROJECT_ROOT,
) -> list[Path]:
    """Build every package of `root` in `formats` into `dist`; return the files written there."""
    ctx = prepare(builder_name, formats, root, version_override=version_override)
    builder = BUILDERS[builder_name]
    dist.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".build-", dir=dist) as tmp:
        work = Path(tmp)
        staging = payload.stage(work / "stage", ctx.packages, ctx.version, ctx.epoch, ctx.root)
        out = work / "out"
        out.mkdir()
        for fmt in ctx.formats:
            started = time.monotonic()
            builder.build(ctx, fmt, staging, out)
            log.info("%s %s: built in %.1fs", builder.name, fmt, time.monotonic() - started)
        names = [n for fmt in ctx.formats for n in ctx.expected(fmt)]
        missing = [n for n in names if not (out / n).is_file()]
        if missing:
            raise CheckFailed(f"{builder.name} did not produce {', '.join(missing)}")
        for name in names:
            os.replace(out / name, dist / name)
            written.append(dist / name)
            log.info("wrote %s", (dist / name).relative_to(dist.parent))
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit packages", description=__doc__)
    parser.add_argument("--builder", choices=sorted(BUILDERS), default="nfpm")
    parser.add_argument(
        "--format", dest="formats", action="append", choices=[f.value for f in payload.FORMATS]
    )
    parser.add_argument("--dist", type=Path, default=DIST, help="output directory (dist/)")
    args = parser.parse_args(argv)
    formats = tuple(args.formats or payload.FORMATS)
    with step(f"packages ({args.builder}: {', '.join(formats)})"):
        build(args.builder, formats, args.dist.resolve())
    return 0
