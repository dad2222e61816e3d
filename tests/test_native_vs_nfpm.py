"""The two routes agree: nfpm and dpkg-buildpackage / rpmbuild (on the source packages that
`sources` makes) give every package the same control fields and RPM header tags, dependencies,
files (type, mode, owner, link target, content), maintainer scripts and changelog
(qss_toolkit.build.parity says what is left out and why). tests/container/test_rebuild.py holds the
third route to the same views: the source packages rebuilt on Debian 12, 13 and in the RPM root.

Both builds take a few seconds together, so this stays in the default suite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qss_toolkit import payload, version
from qss_toolkit.build import packages, parity
from qss_toolkit.families import Family

VERSION = version.read_version()
PACKAGES = [p.name for p in payload.load_packages()]  # the main package first
SENDMAIL = payload.owner("/usr/sbin/sendmail")


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory, project_dist: Path) -> dict[str, Path]:
    tools = ("dpkg-buildpackage", "dh", "fakeroot", "rpmbuild", "rpm", "rpm2archive")
    for tool in (*tools, "git"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")
    # nfpm's are the run's shared build (conftest.py); the native route is built here.
    dists = {"nfpm": project_dist, "native": tmp_path_factory.mktemp("native")}
    packages.build("native", payload.FORMATS, dists["native"])
    return dists


def _deb(routes: dict[str, Path], route: str, name: str) -> parity.View:
    return parity.deb_view(routes[route] / Family.DEB.manager.file_name(name, VERSION))


def _rpm(routes: dict[str, Path], route: str, name: str) -> parity.View:
    return parity.rpm_view(routes[route] / Family.RPM.manager.file_name(name, VERSION))


@pytest.mark.parametrize("name", PACKAGES)
def test_debs_agree(routes: dict[str, Path], name: str) -> None:
    nfpm, native = _deb(routes, "nfpm", name), _deb(routes, "native", name)
    assert parity.differences(nfpm, native, ("nfpm", "native")) == []
    assert nfpm.fields["Version"] == f"{VERSION}-1"
    # dpkg-gencontrol names the source package in every package but the one of its name.
    assert nfpm.fields.get("Source") == (None if name == PACKAGES[0] else PACKAGES[0])


@pytest.mark.parametrize("name", PACKAGES)
def test_rpms_agree(routes: dict[str, Path], name: str) -> None:
    nfpm = _rpm(routes, "nfpm", name)
    native = parity.split_rpm_macro_prefix(_rpm(routes, "native", name), nfpm)
    assert parity.differences(nfpm, native, ("nfpm", "native")) == []
    assert nfpm.fields["SOURCERPM"] == f"{PACKAGES[0]}-{VERSION}-1.src.rpm"


def test_the_views_see_what_differs(routes: dict[str, Path]) -> None:
    """The controls for the two tests above: other packages give differences of each kind."""
    main, sendmail = _deb(routes, "nfpm", PACKAGES[0]), _deb(routes, "native", SENDMAIL)
    found = "\n".join(parity.differences(main, sendmail))
    for kind in ("field Package", "file /usr/sbin/sendmail", "script postinst", "dependency"):
        assert kind in found, kind
    rpm_a, rpm_b = _rpm(routes, "nfpm", PACKAGES[0]), _rpm(routes, "native", SENDMAIL)
    found = "\n".join(parity.differences(rpm_a, rpm_b))
    for kind in ("field NAME", "file /usr/sbin/sendmail", "script POSTIN", "dependency"):
        assert kind in found, kind


def test_native_rpm_scriptlets_run_the_systemd_macros_then_ours(routes: dict[str, Path]) -> None:
    nfpm = _rpm(routes, "nfpm", PACKAGES[0])
    native = parity.split_rpm_macro_prefix(_rpm(routes, "native", PACKAGES[0]), nfpm)
    assert (
        "systemd-update-helper install-system-units qmail-send.service"
        in native.generated["POSTIN"]
    )
    assert (
        "systemd-update-helper remove-system-units qmail-send.service" in native.generated["PREUN"]
    )
    shared = Path(__file__).resolve().parents[1] / "packaging/scripts/rpm/post"
    assert native.scripts["POSTIN"] == shared.read_text(encoding="utf-8").strip()


def test_native_deb_keeps_one_enable_and_start(routes: dict[str, Path]) -> None:
    native = _deb(routes, "native", PACKAGES[0])
    postinst = native.scripts["postinst"]
    assert postinst.count("configure --family deb") == 2  # first install / upgrade branches
    # dh_installsystemd --no-start --no-enable: no second start, no unconditional enable
    added = [ln.strip() for ln in native.generated["postinst"].splitlines()]
    assert not [ln for ln in added if ln.startswith("deb-systemd-invoke")]
    assert "deb-systemd-helper enable 'qmail-send.service' >/dev/null || true" not in added
