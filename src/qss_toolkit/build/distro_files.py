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

from qss_toolkit.build import sources
from qss_toolkit.errors import CheckFailed

log = logging.getLogger("qss_toolkit")


def main(argv: list[str]) -> int:
    command = sources.DERIVED_COMMAND
    parser = argparse.ArgumentParser(
        prog=command, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="write nothing; fail on drift")
    args = parser.parse_args(argv)
    if args.check:
        problems = sources.derived_drift()
        for problem in problems:
            print(problem)
        if problems:
            raise CheckFailed(f"{len(problems)} derived file(s) drifted: run `{command}`")
        return 0
    for rel in sources.write_derived():
        log.info("wrote %s", rel)
    return 0
