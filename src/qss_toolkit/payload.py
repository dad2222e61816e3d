"""The payload as data: every file, its destination, mode, package and formats (from nfpm configs).

packaging/nfpm/<package>.yaml is the one place that says what each package is and carries; the
nfpm route hands it to nfpm (less the toolkit's own `x-qss:` key, which nfpm would refuse), and
the source packages (sources.py: debian/rules, the RPM spec, which the native route builds)
install the same files with the same modes, with debian/control's binary stanzas and the spec's
sub-packages generated from the same files. Adding a package is adding one such file. The main
package is the one whose file says `x-qss: {main: true}`; every other list of our packages,
names and paths in the toolkit is derived from these files (`project_packages()`, `owner()`).
"""

from __future__ import annotations

import functools
import glob
import gzip
import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import yaml

from qss_toolkit import PROJECT_ROOT, rpmheader
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.version import RELEASE
from qss_toolkit.words import Word

NFPM_DIR = PROJECT_ROOT / "packaging" / "nfpm"
FORMATS: tuple[Family, ...] = tuple(Family)
# nfpm script keys -> the name of that script in each format.
SCRIPT_NAMES: dict[Family, dict[str, str]] = {
    Family.DEB: {
        "preinstall": "preinst",
        "postinstall": "postinst",
        "preremove": "prerm",
        "postremove": "postrm",
    },
    Family.RPM: {
        "preinstall": "pre",
        "postinstall": "post",
        "preremove": "preun",
        "postremove": "postun",
    },
}
VERSION_VARIABLE = "QSS_VERSION"
GENERATED_PREFIX = "generated/"
CHANGELOG = "generated/changelog.yml"
# nfpm writes this from `changelog:`; dh_installchangelogs from debian/changelog.
DEB_CHANGELOG = "/usr/share/doc/{name}/changelog.Debian.gz"
# The toolkit's own key in a package's nfpm file: nfpm refuses keys it does not know, so the
# copy that nfpm reads (in the staging directory) goes without it.
TOOLKIT_KEY = "x-qss"
_TOOLKIT_KEYS = {"main", "scriptlet-requires"}
_KNOWN_KEYS = {
    "name", "arch", "platform", "version", "version_schema", "release", "changelog", "section",
    "priority",
    "maintainer", "vendor", "homepage", "license", "description", "depends", "overrides",
    "rpm", "deb", "contents", "recommends", "suggests", "conflicts", "replaces", "provides",
    "scripts", TOOLKIT_KEY,
}  # fmt: skip
_REQUIRED_KEYS = ("name", "version", "maintainer", "homepage", "license", "description")
UNIT_DIR = "/usr/lib/systemd/system/"
UNIT_SUFFIXES = (".service", ".socket", ".timer")


class ContentKind(Word):
    """What a payload entry is (nfpm's `type:`; doc, license and ghost are RPM file flags: a
    ghost is owned by the package but not in its payload, as alternatives' links are)."""

    FILE = "file"
    DIR = "dir"
    DOC = "doc"
    LICENSE = "license"
    SYMLINK = "symlink"
    GHOST = "ghost"
    # A configuration file: a conffile in a .deb (nfpm writes conffiles, dh_installdeb lists
    # every file under /etc), %config in an RPM; noreplace keeps the administrator's edited
    # copy on an RPM upgrade (dpkg always asks or keeps it).
    CONFIG = "config"
    CONFIG_NOREPLACE = "config|noreplace"

    @property
    def is_regular(self) -> bool:
        """A regular file in the payload: a plain file, or one with an RPM flag."""
        return self not in (ContentKind.DIR, ContentKind.SYMLINK, ContentKind.GHOST)


CONFIG_KINDS = (ContentKind.CONFIG, ContentKind.CONFIG_NOREPLACE)
# Types that only RPM has (nfpm drops them from a deb).
_RPM_ONLY_KINDS = (ContentKind.DOC, ContentKind.LICENSE, ContentKind.GHOST)


@dataclass(frozen=True)
class PayloadFile:
    """One entry of a package: `source` is relative to the staging dir (None for a directory)."""

    package: str
    destination: str
    mode: int
    formats: frozenset[Family]
    source: str | None = None  # for a symlink: its target
    kind: ContentKind = ContentKind.FILE

    def in_format(self, fmt: Family) -> bool:
        return fmt in self.formats


RELATIONS = ("depends", "recommends", "suggests", "provides", "conflicts", "replaces")


@dataclass(frozen=True)
class Package:
    """One binary package, as its nfpm configuration describes it."""

    name: str
    config: Path
    summary: str  # RPM's Summary (rpm.summary, else the synopsis)
    synopsis: str  # the description's first line: Debian's short description
    description: str  # the extended text, without the synopsis
    relations: dict[Family, dict[str, tuple[str, ...]]]  # format -> relation -> entries
    scripts: dict[Family, dict[str, str]]  # format -> {native script name: source path}
    files: tuple[PayloadFile, ...]
    main: bool = False  # x-qss.main: the package the others extend (the spec's own Name:)
    section: str = "mail"
    priority: str = "optional"
    vendor: str | None = None
    rpm_group: str | None = None
    maintainer: str = ""  # also the RPM Packager: nfpm's default, and the source RPM's %packager
    homepage: str = ""
    license: str = ""
    deb_source: str | None = None  # deb.fields.Source: the source package it is built from
    # What the RPM scriptlets run (x-qss.scriptlet-requires): both routes declare them for
    # each of the package's scriptlets (nfpm_rpm.py after nfpm, the spec's Requires(...)).
    scriptlet_requires: tuple[str, ...] = ()

    def files_for(self, fmt: Family) -> tuple[PayloadFile, ...]:
        return tuple(f for f in self.files if f.in_format(fmt))

    def relation(self, fmt: Family, kind: str, version: str) -> tuple[str, ...]:
        """`kind` (depends, provides, ...) for `fmt`, with the version filled in."""
        marker = "${" + VERSION_VARIABLE + "}"
        return tuple(d.replace(marker, version) for d in self.relations[fmt][kind])

    def source_relation(self, fmt: Family, kind: str) -> tuple[str, ...]:
        """`kind` for `fmt` as a source package writes it: the version as the build's own
        (debian/control's ${binary:Version}, the spec's %{version}-%{release}), so that a
        rebuild with another Debian revision or RPM release (dch -i, a sponsor's or an NMU's
        upload, a COPR build) keeps the packages of one build installable together."""
        marker = "${" + VERSION_VARIABLE + "}"
        full, upstream = {
            Family.DEB: ("${binary:Version}", "${source:Upstream-Version}"),
            Family.RPM: ("%{version}-%{release}", "%{version}"),
        }[fmt]
        return tuple(
            d.replace(f"{marker}-1", full).replace(marker, upstream)
            for d in self.relations[fmt][kind]
        )

    def units(self) -> tuple[str, ...]:
        """The systemd units this package ships (for the %systemd_* macros)."""
        return tuple(Path(f.destination).name for f in self.unit_files())

    def unit_files(self) -> tuple[PayloadFile, ...]:
        """The payload entries that are systemd units (their source is the unit file)."""
        return tuple(
            f
            for f in self.files
            if f.destination.startswith(UNIT_DIR) and f.destination.endswith(UNIT_SUFFIXES)
        )

    def ships(self, path: str) -> bool:
        """Whether some format of this package installs `path`."""
        return any(f.destination == path for f in self.files)


def _fail(config: Path, message: str) -> ConfigurationError:
    return ConfigurationError(
        f"packaging/nfpm/{config.name}: {message}",
        hint="see the other packaging/nfpm/*.yaml files for the expected form",
    )


def _as_str_list(config: Path, value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(config, f"{what} must be a list of strings")
    return tuple(value)


def _expand_source(root: Path, config: Path, src: str, dst: str) -> list[tuple[str, str]]:
    """(source, destination) pairs; a glob source names a destination directory, as in nfpm."""
    if not glob.has_magic(src):
        return [(src, dst)]
    if not dst.endswith("/"):
        raise _fail(config, f"glob source {src} needs a destination ending in '/'")
    matches = sorted(str(p.relative_to(root)) for p in root.glob(src) if p.is_file())
    if not matches:
        raise _fail(config, f"glob source {src} matches no file")
    return [(m, dst + Path(m).name) for m in matches]


def _load_contents(root: Path, config: Path, name: str, entries: object) -> tuple[PayloadFile, ...]:
    if not isinstance(entries, list) or not entries:
        raise _fail(config, "contents must be a non-empty list")
    files: list[PayloadFile] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("dst"), str):
            raise _fail(config, f"content entry without dst: {entry!r}")
        kind_name = entry.get("type") or ContentKind.FILE.value
        if kind_name not in {k.value for k in ContentKind}:
            raise _fail(config, f"content type {kind_name!r} is not supported here")
        kind = ContentKind(kind_name)
        packager = entry.get("packager")
        if packager is not None and packager not in {f.value for f in FORMATS}:
            raise _fail(config, f"packager {packager!r} is not one of {', '.join(FORMATS)}")
        formats = frozenset([Family(packager)] if packager else FORMATS)
        if entry["dst"] == DEB_CHANGELOG.format(name=name):
            raise _fail(config, f"{entry['dst']} is written by nfpm from `changelog:`; remove it")
        if kind in _RPM_ONLY_KINDS and formats != {Family.RPM}:
            raise _fail(
                config,
                f"{entry['dst']}: type {kind} needs `packager: rpm` (nfpm drops it from a deb)",
            )
        if kind in CONFIG_KINDS and not entry["dst"].startswith("/etc/"):
            raise _fail(
                config,
                f"{entry['dst']}: type {kind} is for files under /etc/ (Debian Policy 10.7.2,"
                " Fedora's %config)",
            )
        if kind not in CONFIG_KINDS and entry["dst"].startswith("/etc/"):
            raise _fail(
                config,
                f"{entry['dst']}: a file under /etc/ is configuration: give it"
                " `type: config|noreplace` (or `type: config`)",
            )
        info = entry.get("file_info") or {}
        if kind is ContentKind.SYMLINK:
            if not isinstance(entry.get("src"), str):
                raise _fail(config, f"{entry['dst']}: a symlink needs src (its target)")
            files.append(PayloadFile(name, entry["dst"], 0o777, formats, entry["src"], kind))
            continue
        mode = info.get("mode")
        if not isinstance(mode, int) or mode & ~0o7777:
            raise _fail(config, f"{entry['dst']}: file_info.mode must be an octal mode like 0644")
        for key in ("owner", "group"):
            if info.get(key, "root") != "root":
                raise _fail(config, f"{entry['dst']}: only root-owned files are supported")
        if kind in (ContentKind.DIR, ContentKind.GHOST):
            files.append(PayloadFile(name, entry["dst"].rstrip("/"), mode, formats, None, kind))
            continue
        src = entry.get("src")
        if not isinstance(src, str):
            raise _fail(config, f"{entry['dst']}: src is missing")
        for one_src, dst in _expand_source(root, config, src, entry["dst"]):
            if not one_src.startswith(GENERATED_PREFIX) and not (root / one_src).is_file():
                raise _fail(config, f"source {one_src} does not exist")
            files.append(PayloadFile(name, dst, mode, formats, one_src, kind))
    for fmt in FORMATS:
        seen: set[str] = set()
        for f in files:
            if f.in_format(fmt):
                if f.destination in seen:
                    raise _fail(config, f"{f.destination} is installed twice in the {fmt}")
                seen.add(f.destination)
    return tuple(files)


# libyaml's parser where PyYAML has it (Debian's python3-yaml and PyPI's wheels do), with the
# safe loader's constructor and resolver: the same data, parsed ten times faster, and a build
# reads packaging/nfpm/ about ten times.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_package(config: Path, root: Path = PROJECT_ROOT) -> Package:
    """Parse and check one nfpm configuration; raise ConfigurationError on anything unexpected."""
    try:
        raw = yaml.load(config.read_text(encoding="utf-8"), Loader=SAFE_LOADER)  # noqa: S506
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(config, f"cannot be read: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise _fail(config, "is not a mapping")
    if str(raw.get("release")) != RELEASE:
        raise _fail(config, f'release must be "{RELEASE}" (Debian revision and RPM Release)')
    if raw.get("changelog") != CHANGELOG:
        raise _fail(config, f"changelog must be {CHANGELOG} (written from packaging/changelog)")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise _fail(config, f"unknown keys: {', '.join(sorted(unknown))}")
    for key in _REQUIRED_KEYS:
        if not raw.get(key):
            raise _fail(config, f"{key} is missing")
    name = raw["name"]
    if config.stem != name:
        raise _fail(config, f"is named after {config.stem} but builds {name}")
    if raw["version"] != "${" + VERSION_VARIABLE + "}":
        raise _fail(config, "version must be ${QSS_VERSION} (the toolkit fills it in)")
    description = str(raw["description"])
    if "\n" not in description.strip():
        raise _fail(config, "description needs a summary line and an extended text")
    overrides = raw.get("overrides") or {}
    relations: dict[Family, dict[str, tuple[str, ...]]] = {}
    scripts: dict[Family, dict[str, str]] = {}
    for fmt in FORMATS:
        override = overrides.get(fmt.value) or {}
        unknown = set(override) - {*RELATIONS, "scripts"}
        if unknown:
            raise _fail(config, f"unknown keys in overrides.{fmt}: {', '.join(sorted(unknown))}")
        relations[fmt] = {
            kind: _as_str_list(config, override.get(kind, raw.get(kind)), f"{fmt} {kind}")
            for kind in RELATIONS
        }
        fmt_scripts = override.get("scripts", raw.get("scripts")) or {}
        native: dict[str, str] = {}
        for key, path in fmt_scripts.items():
            if key not in SCRIPT_NAMES[fmt]:
                raise _fail(config, f"{fmt} script {key} is not supported here")
            if not (root / path).is_file():
                raise _fail(config, f"{fmt} script {path} does not exist")
            native[SCRIPT_NAMES[fmt][key]] = path
        scripts[fmt] = native
    files = _load_contents(root, config, name, raw.get("contents"))
    rpm = raw.get("rpm") or {}
    if rpm.get("packager"):
        raise _fail(
            config,
            "rpm.packager: an RPM's Packager is the maintainer (nfpm's default, and the"
            " %packager the source RPM is built with); remove it",
        )
    toolkit = _toolkit_settings(config, raw.get(TOOLKIT_KEY))
    scriptlet_requires = _scriptlet_requires(config, rpm, toolkit, scripts[Family.RPM])
    deb_fields = (raw.get("deb") or {}).get("fields") or {}
    return Package(
        name=name,
        config=config,
        summary=str(rpm.get("summary") or description.splitlines()[0]),
        synopsis=description.splitlines()[0],
        description=description.split("\n", 1)[1].strip("\n"),
        relations=relations,
        scripts=scripts,
        files=files,
        main=bool(toolkit.get("main", False)),
        section=str(raw.get("section") or "mail"),
        priority=str(raw.get("priority") or "optional"),
        vendor=_optional_str(raw.get("vendor")),
        rpm_group=_optional_str(rpm.get("group")),
        maintainer=str(raw["maintainer"]),
        homepage=str(raw["homepage"]),
        license=str(raw["license"]),
        deb_source=_optional_str(deb_fields.get("Source")),
        scriptlet_requires=scriptlet_requires,
    )


def _scriptlet_requires(
    config: Path, rpm: dict[str, object], toolkit: dict[str, object], rpm_scripts: dict[str, str]
) -> tuple[str, ...]:
    """x-qss.scriptlet-requires: what the RPM scriptlets run (nfpm's rpm.requires is refused)."""
    if rpm.get("requires"):
        raise _fail(
            config,
            "rpm.requires: nfpm before 2.45 (the last for Python 3.9) refuses it; list what the"
            f" scriptlets run under {TOOLKIT_KEY}.scriptlet-requires",
        )
    what = f"{TOOLKIT_KEY}.scriptlet-requires"
    requires = _as_str_list(config, toolkit.get("scriptlet-requires"), what)
    if requires and not rpm_scripts:
        raise _fail(config, f"{what} without an rpm script")
    for text in requires:
        if rpmheader.parse_requirement(text) is None:
            raise _fail(
                config, f"{what}: {text!r} is not NAME or NAME OP VERSION (OP: <, >, =, <=, >=)"
            )
    return requires


def _optional_str(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _toolkit_settings(config: Path, value: object) -> dict[str, object]:
    """The `x-qss:` mapping: `main: true|false` and `scriptlet-requires: [...]`."""
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - _TOOLKIT_KEYS:
        raise _fail(config, f"{TOOLKIT_KEY} must be a mapping with only {sorted(_TOOLKIT_KEYS)}")
    if not isinstance(value.get("main", False), bool):
        raise _fail(config, f"{TOOLKIT_KEY}.main must be true or false")
    return value


def load_packages(root: Path = PROJECT_ROOT) -> tuple[Package, ...]:
    """Every package of packaging/nfpm/, the main package first, then by name."""
    configs = sorted((root / "packaging" / "nfpm").glob("*.yaml"))
    if not configs:
        raise ConfigurationError("no packaging/nfpm/*.yaml", hint="run from a full checkout")
    packages = [load_package(c, root) for c in configs]
    mains = [p.name for p in packages if p.main]
    if len(mains) != 1:
        raise ConfigurationError(
            f"packaging/nfpm/: {len(mains)} packages marked main ({', '.join(mains) or 'none'})",
            hint=f"mark exactly one package with `{TOOLKIT_KEY}: {{main: true}}`",
        )
    main = next(p for p in packages if p.main)
    for package in packages:
        # dpkg-gencontrol names the source package in every binary package but the one of
        # its name; nfpm writes only the fields it is given.
        if package is not main and package.deb_source != main.name:
            raise _fail(
                package.config,
                f"deb.fields.Source must be {main.name}, the source package"
                f" (add `deb: {{fields: {{Source: {main.name}}}}}`)",
            )
    return tuple(sorted(packages, key=lambda p: (not p.main, p.name)))


@functools.lru_cache(maxsize=8)
def project_packages(root: Path = PROJECT_ROOT) -> tuple[Package, ...]:
    """load_packages(root), read once per process (the tree does not change under a run)."""
    return load_packages(root)


def main_package(root: Path = PROJECT_ROOT) -> Package:
    return project_packages(root)[0]


def main_unit(root: Path = PROJECT_ROOT) -> str:
    """The systemd unit the main package ships (there is one: qmail-send.service)."""
    main = main_package(root)
    units = main.units()
    if len(units) != 1:
        raise ConfigurationError(
            f"packaging/nfpm/{main.name}.yaml ships {len(units)} units, not one",
            hint=f"the main package carries the one unit under {UNIT_DIR}",
        )
    return units[0]


def owner(path: str, root: Path = PROJECT_ROOT) -> str:
    """The name of the package that installs `path` (in some format)."""
    for package in project_packages(root):
        if package.ships(path):
            return package.name
    raise ConfigurationError(
        f"no package of packaging/nfpm/ installs {path}", hint="add it to a package's contents"
    )


def nfpm_config(text: str) -> str:
    """A package's nfpm file as nfpm must read it: without the toolkit's top-level key (its
    line and the indented or blank lines under it), every other byte as written."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"{TOOLKIT_KEY}:"):
            skipping = True
            continue
        if skipping and (line[:1] in (" ", "\t") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Generated sources (the only files that are not copied verbatim from the tree)


def gzip_bytes(data: bytes) -> bytes:
    """gzip -9n: maximum compression, no name, no timestamp (reproducible, lintian-clean)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buffer.getvalue()


def debian_changelog(root: Path, version: str, epoch: int) -> str:
    """packaging/changelog with the version and the date (from SOURCE_DATE_EPOCH) filled in."""
    template = (root / "packaging" / "changelog").read_text(encoding="utf-8")
    if "@VERSION@" not in template or "@DATE@" not in template:
        raise ConfigurationError(
            "packaging/changelog has no @VERSION@ / @DATE@ placeholder in its top entry",
            hint="begin it with 'qmail-send-systemd (@VERSION@-1) ...', end with ' -- ... @DATE@'",
        )
    date = formatdate(epoch, usegmt=False).replace("-0000", "+0000")
    # A "[project]" change is the project's (the toolkit, its tests, CI), not the package's:
    # packaging/changelog keeps it, the packages' changelogs leave it out.
    template = _PROJECT_CHANGE.sub("", template)
    return template.replace("@VERSION@", version).replace("@DATE@", date)


_PROJECT_CHANGE = re.compile(r"^  \* \[project\] .*\n(?:    \S.*\n)*", re.M)


@dataclass(frozen=True)
class ChangelogEntry:
    version: str  # as written: upstream-revision
    distribution: str
    urgency: str
    changes: tuple[str, ...]
    maintainer: str
    epoch: int


_HEADER_RE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9.+-]*) \((?P<version>[^)]+)\) "
    r"(?P<dist>[^;]+); urgency=(?P<urgency>\w+)$"
)
_TRAILER_RE = re.compile(r"^ -- (?P<who>.+?)  (?P<date>.+)$")


def parse_changelog(text: str) -> tuple[ChangelogEntry, ...]:
    """The entries of a Debian changelog (the subset of the format packaging/changelog uses)."""
    entries: list[ChangelogEntry] = []
    version: str | None = None
    dist = urgency = ""
    changes: list[str] = []
    for line in text.splitlines():
        header = _HEADER_RE.match(line)
        trailer = _TRAILER_RE.match(line)
        if header:
            version, changes = header["version"], []
            dist, urgency = header["dist"], header["urgency"]
        elif trailer and version is not None:
            when = parsedate_to_datetime(trailer["date"])
            entries.append(
                ChangelogEntry(
                    version, dist, urgency, tuple(changes), trailer["who"], int(when.timestamp())
                )
            )
            version = None
        elif line.startswith("  * ") and version is not None:
            changes.append(line[4:].strip())
        elif line.startswith("    ") and changes:
            changes[-1] += " " + line.strip()
        elif line.strip():
            raise ConfigurationError(f"packaging/changelog: cannot parse {line!r}")
    if not entries:
        raise ConfigurationError("packaging/changelog has no complete entry")
    return tuple(entries)


def chglog_yaml(entries: tuple[ChangelogEntry, ...]) -> str:
    """The changelog in the form nfpm reads (chglog), for the .rpm %changelog and the .deb's."""
    data = [
        {
            # The full version (1.0.0-1): the .deb's changelog names it, and rpmlint wants the
            # %changelog's version to be Version-Release.
            "semver": e.version,
            "date": datetime.fromtimestamp(e.epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "packager": e.maintainer,
            "deb": {"urgency": e.urgency, "distributions": [e.distribution]},
            "changes": [{"note": c} for c in e.changes],
        }
        for e in entries
    ]
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))


def man_pages(root: Path) -> list[Path]:
    """packaging/man/NAME.SECTION: each is shipped as generated/NAME.SECTION.gz."""
    pages = sorted((root / "packaging" / "man").glob("*.[1-9]"))
    if not pages:
        raise ConfigurationError("packaging/man/ holds no man page", hint="run from a checkout")
    return pages


# packaging/doc/NAME files shipped gzipped as generated/NAME.gz (the man pages are the others).
GZIPPED_DOCS = ("README",)


def gzip_input(source: str) -> str:
    """The tree file generated/NAME.gz is gzip -9n of: packaging/doc/NAME or packaging/man/NAME."""
    name = source[len(GENERATED_PREFIX) :]
    if not (source.startswith(GENERATED_PREFIX) and name.endswith(".gz")):
        raise ConfigurationError(f"{source}: no recipe makes it", hint="generated/NAME.gz only")
    name = name[: -len(".gz")]
    return f"packaging/{'doc' if name in GZIPPED_DOCS else 'man'}/{name}"


def gzipped_sources(root: Path) -> dict[str, str]:
    """generated/NAME.gz -> the tree file it is made from, for every man page and guide."""
    names = [man.name for man in man_pages(root)] + list(GZIPPED_DOCS)
    return {f"{GENERATED_PREFIX}{n}.gz": gzip_input(f"{GENERATED_PREFIX}{n}.gz") for n in names}


def generated_sources(root: Path, version: str, epoch: int) -> dict[str, bytes]:
    changelog = debian_changelog(root, version, epoch)
    entries = parse_changelog(changelog)
    if entries[0].version != f"{version}-{RELEASE}":
        raise ConfigurationError(
            f"packaging/changelog's top entry is {entries[0].version}, not {version}-{RELEASE}",
            hint="its first line must read 'qmail-send-systemd (@VERSION@-1) ...'",
        )
    gzipped = {
        name: gzip_bytes((root / tree).read_bytes()) for name, tree in gzipped_sources(root).items()
    }
    return {
        **gzipped,
        "generated/changelog": changelog.encode("utf-8"),
        CHANGELOG: chglog_yaml(entries).encode("utf-8"),
    }


def stage(
    dest: Path, packages: tuple[Package, ...], version: str, epoch: int, root: Path = PROJECT_ROOT
) -> Path:
    """Copy every source the packages need into `dest` (same relative paths), plus generated ones.

    Modes in the staging dir are the payload's modes, so native tools that copy trees keep them.
    """
    generated = generated_sources(root, version, epoch)
    wanted: set[str] = set()
    for package in packages:
        wanted.update(
            f.source for f in package.files if f.source and f.kind is not ContentKind.SYMLINK
        )
        for scripts in package.scripts.values():
            wanted.update(scripts.values())
        config = package.config.relative_to(root)
        (dest / config).parent.mkdir(parents=True, exist_ok=True)
        (dest / config).write_text(
            nfpm_config(package.config.read_text(encoding="utf-8")), encoding="utf-8"
        )
    for rel in sorted(wanted):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in generated:
            target.write_bytes(generated[rel])
        elif rel.startswith(GENERATED_PREFIX):
            raise ConfigurationError(f"no generator for {rel}", hint=f"known: {sorted(generated)}")
        else:
            shutil.copyfile(root / rel, target)
    for rel, data in generated.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    for package in packages:
        for f in package.files:
            if f.source is not None and f.kind is not ContentKind.SYMLINK:
                os.chmod(dest / f.source, f.mode)
        for fmt, scripts in package.scripts.items():
            for path in scripts.values():
                if fmt is Family.DEB:
                    _drop_debhelper_token(dest / path)
                os.chmod(dest / path, 0o755)  # noqa: S103 - maintainer scripts are executables
    return dest


def _drop_debhelper_token(script: Path) -> None:
    """What dh_installdeb does to #DEBHELPER# when there is no snippet (it leaves the line
    empty): nfpm has none to add, and both routes then ship the same script."""
    text = script.read_text(encoding="utf-8")
    script.write_text(re.sub(r"(?m)^#DEBHELPER#$", "", text), encoding="utf-8")


# The %files directive of each content type that needs one.
RPM_FILE_PREFIX = {
    ContentKind.DIR: "%dir ",
    ContentKind.DOC: "%doc ",
    ContentKind.LICENSE: "%license ",
    ContentKind.GHOST: "%ghost ",
    ContentKind.CONFIG: "%config ",
    ContentKind.CONFIG_NOREPLACE: "%config(noreplace) ",
}


_MAN_PAGE = re.compile(r"^(/usr/share/man/man\w+/.+\.\w+)\.gz$")


def rpm_file_list(package: Package, path: Callable[[str], str] = str) -> str:
    """The %files list of `package` (the spec's %files section), with the payload's modes;
    `path` writes each path (as an rpm macro, say). A manual page is NAME.SECTION* (whatever
    compression the build's brp-compress chooses), but a %ghost, which names one file."""
    lines = []
    for f in package.files_for(Family.RPM):
        attr = f"%attr({f.mode:04o},root,root)"
        if f.kind is ContentKind.SYMLINK:
            attr = "%attr(-,root,root)"
        prefix = RPM_FILE_PREFIX.get(f.kind, "")
        destination = f.destination
        page = _MAN_PAGE.match(destination)
        if page and f.kind is not ContentKind.GHOST:
            destination = page.group(1) + "*"
        lines.append(f"{attr} {prefix}{path(destination)}")
    return "\n".join(lines) + "\n"
