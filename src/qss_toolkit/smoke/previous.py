"""The previous release's packages, built from its own commit, for the upgrade scenarios.

Administrators upgrade from the release they have installed, so the upgrade scenarios start
from that release as it was tagged: its unit, its helper and its maintainer scripts (RPM runs
the old package's %preun/%postun after the new %post). The release's tree is taken from git
(`git archive`) and built with its own toolkit, the way it was built then; the packages are
reproducible, so they are built once per commit and kept in the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.locks import exclusive
from qss_toolkit.run import Arg, run
from qss_toolkit.settings import settings

log = logging.getLogger("qss_toolkit")


@dataclass(frozen=True)
class Release:
    version: str
    commit: str  # the full hash: an abbreviation may become ambiguous as history grows


# What administrators have installed today; move it forward with each release.
PREVIOUS_RELEASE = Release("1.1.0", "318ffbea27eb89eb3926325a627cd884bf90aae4")


def cache_dir() -> Path:
    return settings().cache_dir / "previous"


def package_files(directory: Path, release: Release, fmt: str) -> list[Path]:
    """The release's packages of format `fmt` in `directory`, by their file names."""
    return sorted(directory.glob(Family(fmt).manager.file_name("*", release.version)))


def packages(
    formats: Sequence[str],
    release: Release = PREVIOUS_RELEASE,
    *,
    cache: Path | None = None,
    repository: Path = PROJECT_ROOT,
) -> Path:
    """The directory holding `release`'s packages in `formats`, built first if not cached."""
    directory = (cache or cache_dir()) / f"{release.version}-{release.commit[:12]}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: smoke runs of several checkouts share the cache.
    with exclusive(directory.parent / f"{directory.name}.lock"):
        have = _formats_in(directory, release)
        if set(formats) <= have:
            log.info("previous release %s: packages from %s", release.version, directory)
            return directory
        with tempfile.TemporaryDirectory(prefix=f".{directory.name}-", dir=directory.parent) as tmp:
            built = build(release, tuple(sorted(set(formats) | have)), Path(tmp), repository)
            # The whole directory swapped in: no reader sees a half-written set of packages.
            if directory.exists():
                os.replace(directory, Path(tmp) / "superseded")
            os.replace(built, directory)
    return directory


def _formats_in(directory: Path, release: Release) -> set[str]:
    if not directory.is_dir():
        return set()
    return {fmt.value for fmt in Family if package_files(directory, release, fmt)}


def build(release: Release, formats: Sequence[str], work: Path, repository: Path) -> Path:
    """Build `release` from its commit with its own toolkit; return the directory of packages."""
    found = run(
        ["git", "-C", repository, "cat-file", "-e", f"{release.commit}^{{commit}}"],
        check=False,
        capture=True,
    )
    if found.returncode != 0:
        raise ConfigurationError(
            f"commit {release.commit[:12]} (release {release.version}, the upgrade scenarios' "
            "previous version) is not in this clone",
            hint="fetch the full history (git fetch --unshallow), or set QSS_PREVIOUS_DIST to a "
            f"directory holding {release.version}'s packages",
        )
    tree, out = work / "tree", work / "packages"
    tree.mkdir()
    out.mkdir()
    archive = work / "tree.tar"
    run(["git", "-C", repository, "archive", "--format=tar", "-o", archive, release.commit])
    run(["tar", "-x", "-f", archive, "-C", tree])
    epoch = run(
        ["git", "-C", repository, "log", "-1", "--format=%ct", release.commit], capture=True
    ).stdout.strip()
    log.info(
        "previous release %s: building %s from commit %s with its own toolkit",
        release.version,
        "+".join(formats),
        release.commit[:12],
    )
    command: list[Arg] = [sys.executable, "-m", "qss_toolkit", "packages", "--dist", out]
    for fmt in formats:
        command += ["--format", fmt]
    # PYTHONPATH puts the release's own toolkit before the one installed in this environment.
    run(command, cwd=tree, env={"PYTHONPATH": str(tree / "src"), "SOURCE_DATE_EPOCH": epoch})
    for fmt in formats:
        if not package_files(out, release, fmt):
            raise CheckFailed(
                f"building release {release.version} from {release.commit[:12]} made no "
                f".{fmt} packages of that version in {out}"
            )
    shutil.rmtree(tree)
    return out
