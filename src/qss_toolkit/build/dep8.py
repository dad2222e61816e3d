"""`dep8`: debian/tests/ run by Debian's own runner, autopkgtest, as ci.debian.net runs it.

The source package of `nox -s sources` (its .dsc carries debian/tests/) and the .debs of
`nox -s packages` go to `autopkgtest --no-built-binaries`: the tests run against the packages
built from this tree, installed by autopkgtest with apt as in any test bed. The test bed is
autopkgtest-virt-podman --init on a local image of a Debian 12 minbase root from the root cache
(podman.py's import; runc and the toolkit's own podman state, by a `podman` wrapper first in
PATH, and podman.py's flags for booting systemd), with the tests' Depends already in it and no
network: autopkgtest finds them installed. systemd boots as PID 1, so the `notqmail` test's
service part runs (the service started, a message delivered); the test bed reverts to the image
after that `breaks-testbed` test, as ci.debian.net's servers do.

The `notqmail` test downloads notqmail's tag archive where it has the internet; here it is
handed QSS_QMAIL_SOURCE's archive (already digest-checked by qmail_source.py) with
autopkgtest's `--copy` and `--env NOTQMAIL_TARBALL=...`, and checks the same digest itself.

tests/container/test_autopkgtest.py runs it in CI (`nox -s rebuild`); `python -m qss_toolkit dep8`
runs it by hand and prints autopkgtest's summary.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST
from qss_toolkit.build import sources
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.run import clean_env, require
from qss_toolkit.smoke import qmail_source
from qss_toolkit.smoke.engines.podman import ULIMITS, ImageStore, Podman, capabilities
from qss_toolkit.smoke.rootfs import RootfsCache
from qss_toolkit.smoke.targets import DebianRoot, Target

log = logging.getLogger("qss_toolkit")

# What debian/tests/control's Depends pull in beyond our packages, our packages' own Depends,
# apt-utils (autopkgtest indexes the .debs with apt-ftparchive) and systemd-sysv (/sbin/init,
# which --init boots): present in the image, so that apt needs no archive (no network).
TESTBED_PACKAGES = (
    "apt-utils",
    "build-essential",
    "ca-certificates",
    "curl",
    "groff-base",
    "python3",
    "systemd",
    "systemd-sysv",
)
TESTBED = Target(
    "debian-12-dep8",
    Family.DEB,
    DebianRoot("bookworm", extra_packages=TESTBED_PACKAGES, variant="minbase"),
    systemd="-",
    python="-",
    note="bookworm minbase with debian/tests/control's Depends, autopkgtest's test bed",
)
TARBALL_IN_TESTBED = f"/srv/qss/{qmail_source.ARCHIVE}"
TIMEOUT = 1200.0


@dataclass
class Result:
    returncode: int  # autopkgtest's: 0 all passed, 2 some skipped, 4 some failed, 8 none ran...
    summary: list[str]  # its summary lines: `NAME PASS|FAIL|SKIP ...`
    seconds: float

    @property
    def passed(self) -> bool:
        """Every test ran and passed: a skipped test (autopkgtest's exit 2) is not a pass here,
        where the test bed offers every restriction the tests name."""
        return (
            self.returncode == 0
            and bool(self.summary)
            and all(line.split()[1:2] == ["PASS"] for line in self.summary)
        )


def podman_wrapper(directory: Path, podman: Podman) -> Path:
    """`directory/podman`: podman with the toolkit's state, runc and cgroupfs (podman.py), for
    autopkgtest-virt-podman, which calls `podman` from PATH."""
    wrapper = directory / "podman"
    wrapper.write_text("#!/bin/sh\nexec " + shlex.join(podman.argv()) + ' "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def command(dsc: Path, debs: Sequence[Path], image: str, tarball: Path, output: Path) -> list[str]:
    return [
        require("autopkgtest"),
        "--no-built-binaries",
        f"--output-dir={output}",
        f"--copy={tarball}:{TARBALL_IN_TESTBED}",
        f"--env=NOTQMAIL_TARBALL={TARBALL_IN_TESTBED}",
        str(dsc),
        *map(str, debs),
        "--",
        "podman",
        "--init",
        image,
        "--network=none",
        "--systemd=always",
        # No dot, as many test beds' names: the notqmail test must qualify it itself.
        "--hostname=dep8-testbed",
        *(f"--ulimit={u}" for u in ULIMITS),
        *capabilities(),
    ]


def summary_lines(output: Path) -> list[str]:
    summary = output / "summary"
    return summary.read_text("utf-8").splitlines() if summary.is_file() else []


def run_dep8(dist: Path, cache: RootfsCache | None = None) -> Result:
    """autopkgtest on dist/'s .dsc and .debs in the podman test bed."""
    names = sources.prepare().file_names()
    dsc = dist / names["dsc"]
    debs = sorted(dist.glob("*.deb"))
    if not dsc.is_file() or not debs:
        raise ConfigurationError(
            f"{dist} needs the .debs and the source package", hint="nox -s packages sources"
        )
    podman = Podman.default()
    image = ImageStore(podman, cache or RootfsCache()).debian(TESTBED)
    tarball = qmail_source.qmail_source()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qss-dep8-") as tmp:
        bindir = Path(tmp) / "bin"
        bindir.mkdir()
        podman_wrapper(bindir, podman)
        output = Path(tmp) / "out"
        env = clean_env({"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        argv = command(dsc, debs, image, tarball, output)
        log.info("dep8: %s", shlex.join(argv))
        done = subprocess.run(  # our argv, no shell
            argv, env=env, stdin=subprocess.DEVNULL, timeout=TIMEOUT, check=False
        )
        summary = summary_lines(output)
    return Result(done.returncode, summary, time.monotonic() - started)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit dep8", description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST, help="packages and sources (dist/)")
    args = parser.parse_args(argv)
    result = run_dep8(args.dist.resolve())
    for line in result.summary:
        print(line)
    verdict = "ok" if result.passed else "FAIL"
    print(f"autopkgtest: {verdict} (exit {result.returncode}) in {result.seconds:.1f}s")
    return 0 if result.passed else 1
