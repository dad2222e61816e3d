"""`distro-files`: the parts of debian/ and of the spec that follow from the payload, written
into the tree and committed, so that a clone is a Debian source tree (`dpkg-buildpackage -us
-uc -b`, `gbp buildpackage`) and holds a spec that `rpmbuild -ba` builds from the tarball.

packaging/nfpm/*.yaml, packaging/changelog and `__version__` stay the one source of each:
the files below are derived from them, and `--check` (a fast test runs it, `sources` and the
native builder refuse a tree that fails it) names every file that no longer matches, with the
command that rewrites it. What stays hand-kept: debian/rules, debian/source/, the source
stanza of debian/control (the first; the binary stanzas after it are written here),
debian/watch, debian/upstream/, debian/tests/, debian/salsa-ci.yml and the spec's template
rpm/NAME.spec.in.

    debian/control              the binary stanzas, one per package YAML
    debian/changelog            packaging/changelog with the version and a date
    debian/copyright            packaging/copyright
    debian/install-payload      each package's files with the payload's modes (debian/rules)
    debian/PACKAGE.SCRIPT       packaging/scripts/deb/*, where dh_installdeb looks for them
    rpm/NAME.spec               the template completed (preamble, %install, %files, ...)

debian/changelog's top entry carries the date it was written on (the date it says is kept
while its text does not change); `sources` stamps the source packages' copy with
SOURCE_DATE_EPOCH, as the binary packages are.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from pathlib import Path

from qss_toolkit import PROJECT_ROOT, payload, version
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family

log = logging.getLogger("qss_toolkit")

COMMAND = "python -m qss_toolkit distro-files"
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


def control(root: Path, packages: tuple[payload.Package, ...]) -> str:
    """The source stanza, then each package's; a binary stanza leaves out the Section and
    Priority it would repeat from the source's (dpkg-gencontrol gives them to each package;
    lintian: installable-field-mirrors-source)."""
    from qss_toolkit import build

    source = source_stanza(root)
    inherited = {
        line for line in source.splitlines() if line.startswith(("Section: ", "Priority: "))
    }
    stanzas = [
        "".join(line for line in build.debian_stanza(p).splitlines(True) if line.rstrip("\n")
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


def changelog(root: Path, ver: str, epoch: int) -> str:
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
        if _undated(committed) == _undated(changelog(root, ver, epoch)):
            return epoch
    return _now()


def expected(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> dict[str, tuple[bytes, int]]:
    """Every derived file of `families`: path relative to `root` -> (content, mode)."""
    from qss_toolkit import sources

    ver = ver or version.read_version()
    packages = payload.load_packages(root)
    epoch = changelog_epoch(root, ver)
    ctx = sources.SourceContext(packages[0].name, ver, epoch, packages, (), (), root)
    files: dict[str, tuple[bytes, int]] = {}
    if Family.RPM in families:
        files[str(spec_path(root).relative_to(root))] = (sources.spec(ctx).encode(), 0o644)
    if Family.DEB not in families:
        return files
    files |= {
        CONTROL: (control(root, packages).encode(), 0o644),
        CHANGELOG: (changelog(root, ver, epoch).encode(), 0o644),
        "debian/copyright": ((root / "packaging" / "copyright").read_bytes(), 0o644),
        INSTALL_SCRIPT: (sources.install_script(ctx).encode(), 0o755),
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


def drift(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> list[str]:
    """One line per derived file that is missing or differs from what the payload gives."""
    wanted = expected(root, ver, families)
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


def check(
    root: Path = PROJECT_ROOT, ver: str | None = None, families: tuple[Family, ...] = tuple(Family)
) -> None:
    """Raise ConfigurationError, naming the first drifted file, unless the tree is current."""
    problems = drift(root, ver, families)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigurationError(
            f"{problems[0]}{more}", hint=f"run `{COMMAND}` and commit what it writes"
        )


def write(root: Path = PROJECT_ROOT, ver: str | None = None) -> list[str]:
    """Write what drifted; return the paths written or removed."""
    wanted = expected(root, ver)
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem)
        if problems:
            raise CheckFailed(f"{len(problems)} derived file(s) drifted: run `{COMMAND}`")
        return 0
    for rel in write():
        log.info("wrote %s", rel)
    return 0
