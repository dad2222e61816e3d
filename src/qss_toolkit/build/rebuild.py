"""`rebuild`: the source packages rebuilt as Debian's and RPM's build systems do, in clean roots,
compared with the packages of `nox -s packages`, and linted with Debian 13's tools.

- Debian 11, 12 and 13, as sbuild does: a build root (mmdebstrap --variant=buildd: the essential
  packages and build-essential) with debian/control's Build-Depends installed by apt when the
  root is built and cached (a changed Build-Depends is another root). The build itself runs
  without a network: `dpkg-source -x`, the Build-Depends checked with `apt-get satisfy` and
  `dpkg-checkbuilddeps` (they must be there already), `dpkg-buildpackage -us -uc` as nobody.
- RPM: the rpm-on-debian-13 smoke root, `rpmbuild --rebuild` as nobody; rpmbuild checks the
  spec's BuildRequires against the root's rpm database.
- Lint: a Debian 13 root with lintian 2.12x and rpmlint 2.7 (the host has Debian 12's
  lintian 2.116 and rpmlint 2.4, which `nox -s lint` runs).
- reprotest and gbp, on the host as Salsa CI and a maintainer run them (debian_tools).

tests/container/test_rebuild.py runs them in CI (`nox -s smoke` runs tests/container first);
`python -m qss_toolkit rebuild` runs them by hand and prints what it found.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, payload, version
from qss_toolkit.build import debian_tools, lint, parity, sources
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.smoke.engines.base import Container
from qss_toolkit.smoke.engines.nspawn import offline
from qss_toolkit.smoke.rootfs import RootfsCache
from qss_toolkit.smoke.targets import TARGETS, DebianRoot, Target, debian_root

log = logging.getLogger("qss_toolkit")

BUILD_DIR = "/srv/qss/build"
BUILDER = "nobody"  # base-passwd's, in every root; sbuild builds as a user of its own too
LINT_DIR = "/srv/qss/lint"


def _install_build_depends() -> str:
    """Shell run once in a fresh build root: debian/control's Build-Depends, as sbuild's
    apt resolver installs them (no Recommends), then the archive's index dropped again."""
    depends = shlex.quote(sources.build_depends())
    return "\n".join(
        [
            "set -eu",
            "apt-get update -q -o Acquire::Languages=none",
            "DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -q --no-install-recommends"
            f" {depends}",
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
        ]
    )


def build_root(name: str, suite: str) -> Target:
    return Target(
        f"{name}-build",
        Family.DEB,
        DebianRoot(suite, customize=(_install_build_depends(),), variant="buildd"),
        systemd="-",
        python="-",
        note=f"{suite} build root: build-essential and the Build-Depends",
    )


# Each Debian release the .dsc must build on, with the smoke target of the same suite.
BUILD_ROOTS: dict[str, Target] = {
    name: build_root(name, debian_root(TARGETS[name]).suite)
    for name in ("debian-11", "debian-12", "debian-13")
}
RPM_ROOT = TARGETS["rpm-on-debian-13"]
LINT_ROOT = Target(
    "debian-13-lint",
    Family.DEB,
    DebianRoot("trixie", extra_packages=("lintian", "rpmlint", "rpm"), variant="buildd"),
    systemd="-",
    python="-",
    note="trixie with lintian and rpmlint 2.7",
)


def _copy_in(container: Container, files: Sequence[Path], directory: str) -> None:
    container.run(["mkdir", "-p", directory])
    for path in files:
        container.copy_into(path, f"{directory}/{path.name}")
    container.run(["chown", "-R", BUILDER, directory])


def _as_builder(command: str) -> str:
    return f"runuser -u {BUILDER} -- env HOME=/nonexistent sh -ec {shlex.quote(command)}"


def _collect(container: Container, directory: str, pattern: str, out: Path) -> list[Path]:
    listing = container.run(f"cd {directory} && ls -1 {pattern}").stdout.split()
    found = []
    for name in listing:
        container.copy_out(f"{directory}/{name}", out / name)
        found.append(out / name)
    return found


def rebuild_deb(target: Target, dist: Path, out: Path, cache: RootfsCache) -> list[Path]:
    """The .debs that `target`'s build root makes of dist/'s .dsc, copied into `out`."""
    names = sources.prepare().file_names()
    with offline(target, cache=cache, private_network=True) as root:
        _copy_in(root, [dist / names[k] for k in ("dsc", "orig", "debian")], BUILD_DIR)
        top = f"{BUILD_DIR}/src"
        root.run(_as_builder(f"cd {BUILD_DIR} && dpkg-source -x {names['dsc']} src"))
        # Offline, so apt can only confirm what is installed: a missing Build-Depends fails.
        root.run(f"cd {top} && apt-get satisfy -s -q {shlex.quote(sources.build_depends())}")
        root.run(_as_builder(f"cd {top} && dpkg-checkbuilddeps"))
        root.run(_as_builder(f"cd {top} && dpkg-buildpackage -us -uc"), timeout=900)
        return _collect(root, BUILD_DIR, "*.deb", out)


def rebuild_rpm(dist: Path, out: Path, cache: RootfsCache) -> list[Path]:
    """The RPMs that `rpmbuild --rebuild` makes of dist/'s source RPM in the RPM root."""
    srpm = dist / sources.prepare().file_names()["srpm"]
    with offline(RPM_ROOT, cache=cache, private_network=True) as root:
        _copy_in(root, [srpm], BUILD_DIR)
        topdir = f"{BUILD_DIR}/rpmbuild"
        root.run(
            _as_builder(f"rpmbuild --rebuild --define '_topdir {topdir}' {BUILD_DIR}/{srpm.name}"),
            timeout=900,
        )
        return _collect(root, f"{topdir}/RPMS/noarch", "*.rpm", out)


# What a rebuild's builder chooses: rpmbuild records its packager, host and time.
REBUILD_CHOICES = ("PACKAGER", "BUILDHOST", "BUILDTIME")


def compare(reference: Path, rebuilt: Sequence[Path], family: Family) -> dict[str, list[str]]:
    """Per package: the differences between `reference`'s package (nfpm's) and the rebuilt."""
    results = {}
    by_name = {p.name: p for p in rebuilt}
    ver = version.read_version()
    expected = {p.name: family.manager.file_name(p.name, ver) for p in payload.load_packages()}
    for package, name in expected.items():
        if name not in by_name:
            results[package] = [f"the rebuild made no {name}"]
            continue
        if family is Family.DEB:
            ours, theirs = parity.deb_view(reference / name), parity.deb_view(by_name[name])
        else:
            ours = parity.rpm_view(reference / name, ignore=REBUILD_CHOICES)
            theirs = parity.rpm_view(by_name[name], ignore=REBUILD_CHOICES)
            theirs = parity.split_rpm_macro_prefix(theirs, ours)
        results[package] = parity.differences(ours, theirs, ("packages", "rebuilt"))
    extra = sorted(set(by_name) - set(expected.values()))
    if extra:
        results["(more)"] = [f"the rebuild made packages nobody declared: {', '.join(extra)}"]
    return results


def lint_in_debian13(dist: Path, cache: RootfsCache) -> list[str]:
    """lintian (-EvIL +pedantic) and rpmlint 2.7 on everything in dist/, in the lint root."""
    files = sorted(
        p for p in dist.iterdir() if p.suffix in (".deb", ".rpm", ".dsc", ".changes", ".xz")
    )
    with tempfile.TemporaryDirectory(prefix="qss-lint-") as tmp:
        specs = [lint.spec_of(s, Path(tmp)) for s in dist.glob("*.src.rpm")]
        with offline(LINT_ROOT, cache=cache) as root:
            _copy_in(root, [*files, *specs, lint.RPMLINT_CONFIG], LINT_DIR)
            debs = " ".join(p.name for p in files if p.suffix in (".deb", ".changes"))
            lintian = root.run(
                f"cd {LINT_DIR} && lintian {' '.join(lint.LINTIAN_ARGS)} {debs}",
                check=False,
                timeout=900,
            )
            rpms = " ".join(p.name for p in [*files, *specs] if p.suffix in (".rpm", ".spec"))
            config = lint.RPMLINT_CONFIG.name
            rpmlint = root.run(f"cd {LINT_DIR} && rpmlint --config {config} {rpms}", check=False)
            versions = root.run("lintian --version; rpmlint --version").stdout.split("\n")
    return [
        lint.lintian_verdict(lintian.stdout + lintian.stderr, lintian.returncode, versions[0]),
        lint.rpmlint_verdict(rpmlint.stdout + rpmlint.stderr, rpmlint.returncode,
                             f"rpmlint {versions[1]}"),
    ]  # fmt: skip


def debian_tools_problems(route: str, dist: Path, out: Path) -> list[str]:
    """The `reprotest` route (debian_tools.EXPERIMENTS on dist/'s .dsc) or the `gbp` route
    (gbp buildpackage in a clone against dpkg-buildpackage in another)."""
    if route == "gbp":
        by_gbp = debian_tools.gbp_buildpackage(out / "gbp")
        by_dpkg = debian_tools.dpkg_buildpackage(out / "dpkg")
        if not by_gbp:
            return ["gbp buildpackage built no .deb"]
        return [f"{name}: gbp's and dpkg-buildpackage's differ"
                for name in debian_tools.different_bytes(by_gbp, by_dpkg)]  # fmt: skip
    result = debian_tools.reprotest_dsc(dist / sources.prepare().file_names()["dsc"])
    log.info("%s", result.summary())
    expected = [debian_tools.expected_variations(e) for e in result.experiments]
    return [] if result.reproducible and result.varied == expected else [result.summary()]


@dataclass
class Outcome:
    route: str
    seconds: float
    problems: list[str]


def run_all(dist: Path, routes: Sequence[str], cache: RootfsCache) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="qss-rebuild-") as tmp:
        for route in routes:
            started = time.monotonic()
            out = Path(tmp) / route
            out.mkdir()
            try:
                if route == "lint-debian-13":
                    for line in lint_in_debian13(dist, cache):
                        log.info("%s", line)
                    problems: list[str] = []
                elif route in DEBIAN_TOOLS:
                    problems = debian_tools_problems(route, dist, out)
                else:
                    family = Family.RPM if route == "rpm" else Family.DEB
                    if family is Family.RPM:
                        rebuilt = rebuild_rpm(dist, out, cache)
                    else:
                        rebuilt = rebuild_deb(BUILD_ROOTS[route], dist, out, cache)
                    problems = [
                        f"{name}: {d}"
                        for name, diffs in compare(dist, rebuilt, family).items()
                        for d in diffs
                    ]
            except CheckFailed as exc:
                problems = [str(exc)]
            outcomes.append(Outcome(route, time.monotonic() - started, problems))
            log.info("%s: %s in %.1fs", route, "FAIL" if problems else "ok", outcomes[-1].seconds)
    return outcomes


DEBIAN_TOOLS = ("reprotest", "gbp")
ROUTES = (*BUILD_ROOTS, "rpm", "lint-debian-13", *DEBIAN_TOOLS)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit rebuild", description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST, help="packages and sources (dist/)")
    parser.add_argument("--route", action="append", choices=ROUTES, help="default: every one")
    args = parser.parse_args(argv)
    dist: Path = args.dist.resolve()
    if not any(dist.glob("*.dsc")) or not any(dist.glob("*.noarch.rpm")):
        raise ConfigurationError(
            f"{dist} needs the packages and the source packages",
            hint="nox -s packages sources",
        )
    outcomes = run_all(dist, args.route or ROUTES, RootfsCache())
    for outcome in outcomes:
        print(
            f"{outcome.route:<16} {'FAIL' if outcome.problems else 'ok':<5} {outcome.seconds:.1f}s"
        )
        for problem in outcome.problems:
            print(f"  {problem}")
    return 1 if any(o.problems for o in outcomes) else 0
