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

# Path prefixes and the macros Fedora's guidelines ask for instead, longest first. /usr/lib
# stays %{_prefix}/lib: %{_libexecdir} is /usr/libexec, and the hooks' directories belong to
# their programs (networkd-dispatcher, NetworkManager, the mta alternative's /usr/lib/sendmail).
RPM_DIR_MACROS = (
    ("/usr/lib/systemd/system-preset", "%{_presetdir}"),
    ("/usr/lib/systemd/system", "%{_unitdir}"),
    ("/usr/share/licenses", "%{_defaultlicensedir}"),
    ("/usr/share/man", "%{_mandir}"),
    ("/usr/share", "%{_datadir}"),
    ("/usr/sbin", "%{_sbindir}"),
    ("/usr/bin", "%{_bindir}"),
    ("/usr/lib", "%{_prefix}/lib"),
)
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


def rpm_path(path: str) -> str:
    """`path` with its directory as an rpm macro, where there is one."""
    for prefix, macro in RPM_DIR_MACROS:
        if path == prefix or path.startswith(prefix + "/"):
            return macro + path[len(prefix) :]
    return path


def debian_description(package: payload.Package) -> str:
    """Synopsis, then the extended text with " ." for blank lines, as nfpm writes it."""
    lines = [f"Description: {package.synopsis}"]
    lines += [f" {line}" if line.strip() else " ." for line in package.description.splitlines()]
    return "\n".join(lines)


def debian_stanza(package: payload.Package) -> str:
    """The debian/control stanza of `package`, from its nfpm configuration."""
    depends = package.source_relation(Family.DEB, "depends")
    fields = [
        f"Package: {package.name}",
        "Architecture: all",
        f"Section: {package.section}",
        f"Priority: {package.priority}",
        "Depends: " + ", ".join(["${misc:Depends}", *depends]),
    ]
    for kind in payload.RELATIONS[1:]:
        entries = package.source_relation(Family.DEB, kind)
        if entries:
            fields.append(f"{kind.capitalize()}: {', '.join(entries)}")
    fields.append(debian_description(package))
    return "\n".join(fields) + "\n"


def _rpm_relations(package: payload.Package) -> list[str]:
    lines = []
    if package.rpm_group:
        lines.append(f"Group:          {package.rpm_group}")
    tags = {"depends": "Requires", "recommends": "Recommends", "suggests": "Suggests"}
    tags |= {"provides": "Provides", "conflicts": "Conflicts", "replaces": "Obsoletes"}
    for kind, tag in tags.items():
        lines += [f"{tag + ':':<16}{entry}" for entry in package.source_relation(Family.RPM, kind)]
    # What the scriptlets run, for each scriptlet (nfpm_rpm.py gives nfpm's RPMs the same).
    for script in package.scripts[Family.RPM]:
        lines += [f"{f'Requires({script}):':<15} {r}" for r in package.scriptlet_requires]
    return lines


def rpm_preamble(main: payload.Package) -> str:
    """The main package's preamble tags that its nfpm configuration holds."""
    lines = [f"Summary:        {main.summary}"]
    return "\n".join([*lines, *_rpm_relations(main)]) + "\n"


def _rpm_escape(text: str) -> str:
    return text.replace("%", "%%")


def rpm_package_section(package: payload.Package, root: Path, is_main: bool) -> str:
    """%package (sub-packages), %description, scriptlets and %files of `package`; the
    scriptlets are read from `root`."""
    n = "" if is_main else f" -n {package.name}"
    out = []
    if not is_main:
        out += [f"%package{n}", f"Summary:        {package.summary}"]
        out += _rpm_relations(package)
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
    out += [f"%files{n}", payload.rpm_file_list(package, rpm_path).rstrip("\n")]
    # What %py_byte_compile writes beside each directory of Python modules.
    modules = sorted(
        {
            f.destination.rsplit("/", 1)[0]
            for f in package.files_for(Family.RPM)
            if f.destination.endswith(".py") and f.kind.is_regular
        }
    )
    if modules:
        out.append("%if %{defined py_byte_compile}")
        out += [f"%attr(-,root,root) {rpm_path(d)}/__pycache__/" for d in modules]
        out.append("%endif")
    out += ["", ""]
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
