"""The native route's metadata, written from the payload: debian/control stanzas, the RPM spec's
preamble, sections and %changelog, and the build time.

`packages` (the native route) and `sources` (the source packages) both write them; neither
imports the other for them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from qss_toolkit import PROJECT_ROOT, payload
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.run import run

# The %systemd_* macro that runs, for the package's units, at the top of each scriptlet.
RPM_SCRIPTLETS = {"post": "systemd_post", "preun": "systemd_preun", "postun": "systemd_postun"}


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
