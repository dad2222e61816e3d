"""The third route: the source packages rebuilt without the toolkit in clean roots, as sbuild
(Debian 12, 13) and rpmbuild --rebuild (the RPM root) do, give nfpm's packages; and Debian 13's
lintian and rpmlint 2.7 find nothing in either (qss_toolkit.build.rebuild)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qss_toolkit import payload
from qss_toolkit.build import packages, rebuild, sources
from qss_toolkit.families import Family
from qss_toolkit.smoke.engines.nspawn import offline
from qss_toolkit.smoke.rootfs import RootfsCache

pytestmark = [
    pytest.mark.container,
    pytest.mark.rebuild,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds and enters roots: needs root"),
]

PACKAGES = [p.name for p in payload.load_packages()]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `nox -s packages sources` writes into dist/."""
    out = tmp_path_factory.mktemp("dist")
    packages.build("nfpm", payload.FORMATS, out)
    sources.write_sources(out)
    return out


@pytest.mark.parametrize("route", list(rebuild.BUILD_ROOTS))
def test_the_dsc_rebuilds_as_sbuild_does_into_the_same_debs(
    dist: Path, route: str, tmp_path: Path
) -> None:
    debs = rebuild.rebuild_deb(rebuild.BUILD_ROOTS[route], dist, tmp_path, RootfsCache())
    assert rebuild.compare(dist, debs, Family.DEB) == {name: [] for name in PACKAGES}


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
