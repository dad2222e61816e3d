"""What two builds of one package must agree on, and where they differ.

A view is what a user, a package manager or a repository sees of a package: its control
fields or header tags, its dependencies, every file with type, mode, owner, link target and
content, its maintainer scripts and its changelog. `differences(a, b)` lists what differs, as
readable lines; the parity tests (tests/test_native_vs_nfpm.py for nfpm and the native tools on
this host, tests/container/test_rebuild.py for the source packages rebuilt on Debian 12 and 13
and in the RPM root) assert that the list is empty.

Left out, each for its reason: what each tool computes its own way (a .deb's Installed-Size,
which counts the maintainer scripts that each debhelper release makes longer; nfpm_deb.py
computes it as dpkg-gencontrol does, and tests/test_native_vs_nfpm.py compares it with this
host's debhelper; the gzip bytes of a compressed file, whose content is compared instead;
the RPM tool's version and platform string, rpmbuild's changelog time of noon against nfpm's
exact time of the same day) and the maintainer-script sections that debhelper generates (the
rest of each script must be the same), except what they do to the service: a start, stop or
restart that debhelper adds to any script (preinst, postinst, prerm, postrm) is a difference,
as the helper alone does those (docs/design.md, "Maintainer-script semantics"). Debian 13's
debhelper adds such a stop to preinst where Debian 12's adds nothing, so each Debian release's
own debhelper is compared (tests/container/test_rebuild.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit import payload
from qss_toolkit.run import run

DEB_IGNORED_FIELDS = ("Installed-Size",)
_DEB_RELATION_FIELDS = ("Depends", "Pre-Depends", "Recommends", "Suggests", "Enhances",
                        "Breaks", "Conflicts", "Provides", "Replaces")  # fmt: skip
DEB_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config", "triggers", "conffiles")
# A command of a generated section that starts, stops or restarts a unit (the action may be a
# variable, as in debhelper's postinst-systemd-restart).
_SERVICE_ACTION = re.compile(
    r"^[ \t]*(?:deb-systemd-invoke|invoke-rc\.d[ \t]+\S+|systemctl(?:[ \t]+--\S+)*)[ \t]+"
    r"(?:start|stop|restart|try-restart|reload-or-restart|try-reload-or-restart|\$\S+)\b.*$",
    re.M,
)
_DEBHELPER_SECTION = re.compile(
    r"# Automatically added by (?P<tool>dh_\S+)\n.*?# End automatically added section\n", re.S
)

RPM_FIELDS = (
    "NAME", "VERSION", "RELEASE", "EPOCH", "ARCH", "OS", "LICENSE", "URL", "SUMMARY",
    "DESCRIPTION", "GROUP", "VENDOR", "PACKAGER", "SOURCERPM", "BUILDHOST", "BUILDTIME",
)  # fmt: skip
RPM_DEPENDENCIES = ("REQUIRE", "PROVIDE", "CONFLICT", "OBSOLETE", "RECOMMEND", "SUGGEST")
RPM_SCRIPTS = ("PREIN", "POSTIN", "PREUN", "POSTUN", "PRETRANS", "POSTTRANS")
RPM_FILE_TAGS = ("FILEMODES:octal", "FILEUSERNAME", "FILEGROUPNAME", "FILELINKTOS",
                 "FILEFLAGS:fflags")  # fmt: skip
_SEPARATOR = "\x1f"


@dataclass
class View:
    """One package as its users see it; compare two with `differences`."""

    fields: dict[str, str]
    dependencies: list[str]
    files: dict[str, tuple[str, ...]]
    scripts: dict[str, str]
    changelog: list[str]
    # Per script, what the packaging tool added to ours (debhelper's sections, rpm's systemd
    # macros): not compared, kept for a test to judge.
    generated: dict[str, str] = field(default_factory=dict)


def _content_digest(name: str, data: bytes) -> str:
    """A file's content; a .gz compares by what it holds (gzip implementations differ)."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def _tar_files(stream: bytes, *, compressed: bool) -> dict[str, tuple[str, ...]]:
    files: dict[str, tuple[str, ...]] = {}
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:*" if compressed else "r:") as tar:
        for member in tar.getmembers():
            name = "/" + member.name.lstrip("./")
            if name == "/":
                continue  # dpkg-deb records "./", nfpm does not
            if member.issym():
                # A symlink's own mode means nothing on Linux (nfpm writes 0, dpkg-deb 0777).
                files[name] = ("l", f"{member.uid}:{member.gid}", member.linkname, "")
                continue
            kind = "d" if member.isdir() else "f"
            digest = ""
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                digest = _content_digest(name, handle.read())
            mode = f"{member.mode & 0o7777:04o}"
            files[name] = (kind, f"{member.uid}:{member.gid}", mode, digest)
    return files


def _changelog_entries(text: str) -> list[str]:
    return [
        f"{e.version} {e.distribution} {e.urgency} {e.maintainer} {e.epoch} | "
        + " | ".join(e.changes)
        for e in payload.parse_changelog(text)
    ]


def debhelper_sections(script: str) -> tuple[str, str]:
    """(the script without debhelper's generated sections, those sections)."""
    sections = "".join(m.group(0) for m in _DEBHELPER_SECTION.finditer(script))
    return _DEBHELPER_SECTION.sub("", script), sections


def service_actions(view: View) -> dict[str, list[str]]:
    """Per maintainer script, the commands of its generated sections that start, stop or
    restart a unit: the helper's job, which no packaging tool may repeat or undo."""
    found = {}
    for script, text in view.generated.items():
        lines = [m.group(0).strip() for m in _SERVICE_ACTION.finditer(text)]
        if lines:
            found[script] = lines
    return found


def deb_view(deb: Path) -> View:
    control = run(["dpkg-deb", "--field", deb], capture=True).stdout
    fields: dict[str, str] = {}
    for match in re.finditer(r"^([A-Za-z0-9-]+):[ \t]*(.*(?:\n[ \t].*)*)", control, re.M):
        if match.group(1) not in DEB_IGNORED_FIELDS:
            fields[match.group(1)] = match.group(2)
    data = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    files = _tar_files(data, compressed=False)
    ctrl = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    scripts, generated = {}, {}
    with tarfile.open(fileobj=io.BytesIO(ctrl)) as tar:
        for member in tar.getmembers():
            name = member.name.lstrip("./")
            handle = tar.extractfile(member) if member.isfile() else None
            if name in DEB_SCRIPTS and handle is not None:
                text = handle.read().decode("utf-8", "replace")
                scripts[name], generated[name] = debhelper_sections(text)
    changelog = []
    doc = f"/usr/share/doc/{fields['Package']}/changelog.Debian.gz"
    if doc in files:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            handle = tar.extractfile("." + doc)
            assert handle is not None
            changelog = _changelog_entries(gzip.decompress(handle.read()).decode("utf-8"))
        files[doc] = (*files[doc][:3], "(its entries are compared)")
    dependencies = [f"{k}: {fields.pop(k)}" for k in list(fields) if k in _DEB_RELATION_FIELDS]
    return View(fields, dependencies, files, scripts, changelog, generated)


def _rpm_query(rpm: Path, fmt: str) -> str:
    return run(["rpm", "-qp", "--nosignature", "--qf", fmt, rpm], capture=True).stdout


def rpm_view(rpm: Path, *, ignore: tuple[str, ...] = ()) -> View:
    """`ignore`: header fields a builder chooses (a rebuild's PACKAGER, BUILDHOST, BUILDTIME)."""
    names = [f for f in RPM_FIELDS if f not in ignore]
    values = _rpm_query(rpm, _SEPARATOR.join(f"%{{{f}}}" for f in names)).split(_SEPARATOR)
    fields = dict(zip(names, values))
    dependencies = []
    for kind in RPM_DEPENDENCIES:
        query = f"[{kind}: %{{{kind}NAME}} %{{{kind}FLAGS:deptype}} %{{{kind}FLAGS:depflags}}"
        query += f" %{{{kind}VERSION}}\\n]"
        dependencies += _rpm_query(rpm, query).splitlines()
    listing = "[%{FILENAMES}" + "".join(f"{_SEPARATOR}%{{{t}}}" for t in RPM_FILE_TAGS) + "\\n]"
    headers = {}
    for line in _rpm_query(rpm, listing).splitlines():
        name, *attrs = line.split(_SEPARATOR)
        headers[name] = tuple(attrs)
    with rpm.open("rb") as stdin:
        archive = subprocess.run(
            ["rpm2archive", "-"], stdin=stdin, capture_output=True, check=True
        ).stdout
    contents = _tar_files(archive, compressed=True)
    # Header attributes for every file (ghosts have no payload), content from the payload.
    files = {name: (*attrs, contents.get(name, ("",))[-1]) for name, attrs in headers.items()}
    scripts = {s: _rpm_query(rpm, f"%{{{s}}}") for s in RPM_SCRIPTS}
    scripts |= {f"{s}PROG": _rpm_query(rpm, f"%{{{s}PROG}}") for s in RPM_SCRIPTS}
    times = "[%{CHANGELOGTIME}" + _SEPARATOR + "%{CHANGELOGNAME}" + _SEPARATOR
    times += "%{CHANGELOGTEXT}" + _SEPARATOR + "\\n]"
    changelog = []
    for record in _rpm_query(rpm, times).split(_SEPARATOR + "\n"):
        if record:
            when, who, text = record.split(_SEPARATOR)
            changelog.append(f"day {int(when) // 86400} {who} {text}")
    return View(fields, sorted(dependencies), files, scripts, changelog)


def split_rpm_macro_prefix(view: View, reference: View) -> View:
    """A spec-built view whose scriptlets are `reference`'s with a systemd macro's expansion in
    front: that expansion moves to `generated`, the rest is compared."""
    for name, script in view.scripts.items():
        ours = reference.scripts.get(name, "").strip()
        text = script.strip()
        if ours and text.endswith(ours) and text != ours:
            view.generated[name] = text[: -len(ours)].strip()
            view.scripts[name] = ours
        else:
            view.scripts[name] = text
    reference.scripts = {k: v.strip() for k, v in reference.scripts.items()}
    return view


def differences(a: View, b: View, labels: tuple[str, str] = ("a", "b")) -> list[str]:
    """Every difference between two views, one line each."""
    out: list[str] = []

    def compare(what: str, left: Mapping[str, object], right: Mapping[str, object]) -> None:
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                out.append(
                    f"{what} {key}: {labels[0]} {left.get(key)!r} != {labels[1]} {right.get(key)!r}"
                )

    compare("field", a.fields, b.fields)
    compare("file", a.files, b.files)
    compare("script", a.scripts, b.scripts)
    compare("generated service action in", service_actions(a), service_actions(b))
    only_a = sorted(set(a.dependencies) - set(b.dependencies))
    only_b = sorted(set(b.dependencies) - set(a.dependencies))
    out += [f"dependency only in {labels[0]}: {d}" for d in only_a]
    out += [f"dependency only in {labels[1]}: {d}" for d in only_b]
    if a.changelog != b.changelog:
        out.append(f"changelog: {labels[0]} {a.changelog} != {labels[1]} {b.changelog}")
    return out
