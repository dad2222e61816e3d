"""The two routes agree: nfpm and dpkg-buildpackage / rpmbuild (on the source packages that
`sources` makes) give every package the same control fields and RPM header tags, dependencies,
files (type, mode, owner, link target, content), maintainer scripts and changelog
(qss_toolkit.build.parity says what is left out and why). tests/container/test_rebuild.py holds the
third route to the same views: the source packages rebuilt on Debian 12, 13 and in the RPM root.

Both builds take a few seconds together, so this stays in the default suite.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
import tempfile
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


# What Debian 13's debhelper (13.24) put into preinst before debian/rules passed
# --no-stop-on-upgrade: the service stopped on every upgrade, never started again.
_TRIXIE_PREINST_STOP = """#!/bin/sh
set -e
# Automatically added by dh_installsystemd/13.24.2
if [ -z "${DPKG_ROOT:-}" ] && [ "$1" = upgrade ] && [ -d /run/systemd/system ] ; then
\tdeb-systemd-invoke stop 'qmail-send.service' >/dev/null || true
fi
# End automatically added section
exit 0
"""


def test_a_stop_that_debhelper_adds_to_any_script_is_a_difference() -> None:
    """Every maintainer script's generated sections are judged: a start, stop or restart
    there differs from nfpm's package, which has none; the bookkeeping sections do not."""

    def view(**scripts: str) -> parity.View:
        body, generated = {}, {}
        for name, text in scripts.items():
            body[name], generated[name] = parity.debhelper_sections(text)
        return parity.View({}, [], {}, body, [], generated)

    plain = view(preinst="#!/bin/sh\nset -e\nexit 0\n")
    stopped = view(preinst=_TRIXIE_PREINST_STOP)
    assert parity.differences(plain, stopped, ("nfpm", "dsc")) == [
        "generated service action in preinst: nfpm None != dsc"
        " [\"deb-systemd-invoke stop 'qmail-send.service' >/dev/null || true\"]"
    ]
    for script in ("postinst", "prerm", "postrm"):
        moved = view(**{script: _TRIXIE_PREINST_STOP})
        assert parity.service_actions(moved) == {
            script: ["deb-systemd-invoke stop 'qmail-send.service' >/dev/null || true"]
        }
    reload_only = _TRIXIE_PREINST_STOP.replace(
        "deb-systemd-invoke stop 'qmail-send.service'", "systemctl --system daemon-reload"
    )
    assert parity.service_actions(view(postrm=reload_only)) == {}
    restart = _TRIXIE_PREINST_STOP.replace("stop 'qmail", "$_dh_action 'qmail")
    assert list(parity.service_actions(view(postinst=restart))) == ["postinst"]


def test_debian_rules_keeps_every_service_action_out_of_debhelpers_sections() -> None:
    """The options that keep Debian 13's debhelper from adding the stop above (13.11 finds
    no unit and adds nothing, so only this line protects a .dsc built on trixie)."""
    rules = (Path(__file__).resolve().parents[1] / "debian/rules").read_text(encoding="utf-8")
    assert "\tdh_installsystemd --no-enable --no-start --no-stop-on-upgrade\n" in rules


def _data_members(deb: Path) -> dict[str, tarfile.TarInfo]:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {"/" + m.name.lstrip("./"): m for m in tar.getmembers()}


@pytest.mark.parametrize("name", PACKAGES)
def test_nfpms_debs_carry_what_debhelper_and_dpkg_deb_write(
    routes: dict[str, Path], name: str
) -> None:
    """nfpm_deb.py: Installed-Size as dpkg-gencontrol counts it, the changelog headed with the
    source package and owned by root by name, symbolic links 0777 (nfpm: its own sum, the
    binary package's name, an empty owner name, 0000)."""
    file_name = Family.DEB.manager.file_name(name, VERSION)
    nfpm, native = routes["nfpm"] / file_name, routes["native"] / file_name
    sizes = [
        subprocess.run(["dpkg-deb", "-f", str(deb), "Installed-Size"], capture_output=True,
                       text=True, check=True).stdout.strip()
        for deb in (nfpm, native)
    ]  # fmt: skip
    assert sizes[0] == sizes[1] and int(sizes[0]) > 0
    members = _data_members(nfpm)
    doc = members[f"/usr/share/doc/{name}/changelog.Debian.gz"]
    assert (doc.uname, doc.gname, doc.mode) == ("root", "root", 0o644)
    for member in members.values():
        if member.issym():
            assert member.mode == 0o777, member.name
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(nfpm)], capture_output=True,
                          check=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        handle = tar.extractfile(doc)
        assert handle is not None
        first = gzip.decompress(handle.read()).decode().splitlines()[0]
    assert first.startswith(f"{PACKAGES[0]} ({VERSION}-1) ")  # the source's name
    # md5sums agree with the rewritten files (dpkg --verify would say so after install).
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-R", str(nfpm), tmp], check=True)
        check = subprocess.run(["md5sum", "--quiet", "-c", "DEBIAN/md5sums"], cwd=tmp,
                               capture_output=True, text=True, check=False)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
