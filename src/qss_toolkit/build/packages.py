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

from qss_toolkit import DIST, PROJECT_ROOT, payload, version
from qss_toolkit.build import control, nfpm_deb, nfpm_rpm, sources
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.run import require, run
from qss_toolkit.steps import step

log = logging.getLogger("qss_toolkit")


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
            else:  # what nfpm writes otherwise than debhelper and dpkg-deb
                changelog = payload.debian_changelog(ctx.root, ctx.version, ctx.epoch)
                nfpm_deb.complete(target, package, changelog, ctx.epoch)


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
        if Family.RPM in ctx.formats:
            template = sources.spec_template(ctx.root)
            spec = template.read_text(encoding="utf-8")
            for tag, marker, why in self.SPEC_TAGS:
                if f"\n{tag + ':':<16}{marker}\n" not in spec:
                    raise ConfigurationError(
                        f"{template.relative_to(ctx.root)} has no '{tag + ':':<16}{marker}' line",
                        hint=why,
                    )

        # The committed debian/ and spec follow packaging/ (a clone builds from them).
        sources.check_derived(ctx.root, families=tuple(ctx.formats))

    def build(self, ctx: BuildContext, fmt: Family, staging: Path, out: Path) -> None:
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
    ctx = BuildContext(ver, control.source_date_epoch(root), packages, families, root)
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
