"""The two routes agree: nfpm and dpkg-buildpackage / rpmbuild give the same paths, modes, owners
and dependencies for every package (python-debian for .deb, `rpm -qp --queryformat` for .rpm).

Both builds take about five seconds together, so this stays in the default suite.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from qss_toolkit import build, payload, version

VERSION = version.read_version()
PACKAGES = [p.name for p in payload.load_packages()]
DEB_RELATIONS = (
    *("Depends", "Pre-Depends", "Recommends", "Suggests", "Provides", "Conflicts", "Breaks"),
    *("Replaces", "Section", "Priority", "Architecture", "Version", "Homepage", "Maintainer"),
    "Description",
)


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in ("nfpm", "dpkg-buildpackage", "dh", "fakeroot", "rpmbuild", "rpm"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")
    dists = {}
    for builder in ("nfpm", "native"):
        dists[builder] = tmp_path_factory.mktemp(builder)
        build.build(builder, payload.FORMATS, dists[builder])
    return dists


def _deb_view(deb: Path) -> tuple[dict[str, str], dict[str, tuple[str, int, int, str]]]:
    from debian import debfile

    package = debfile.DebFile(str(deb))
    control = package.debcontrol()
    fields = {k: control.get(k, "") for k in DEB_RELATIONS}
    files = {}
    for m in package.data.tgz().getmembers():
        name = "/" + m.name.lstrip("./")
        if name == "/":
            continue  # dpkg-deb records "./", nfpm does not
        kind = "l" if m.issym() else "d" if m.isdir() else "f"
        # A symlink's own mode means nothing on Linux (nfpm writes 0, dpkg-deb 0777): compare
        # its target instead.
        mode = f"->{m.linkname}" if m.issym() else f"{stat.S_IMODE(m.mode):04o}"
        files[name] = (kind, m.uid, m.gid, mode)
    return fields, files


@pytest.mark.parametrize("name", PACKAGES)
def test_debs_agree(routes: dict[str, Path], name: str) -> None:
    nfpm_fields, nfpm_files = _deb_view(routes["nfpm"] / f"{name}_{VERSION}-1_all.deb")
    native_fields, native_files = _deb_view(routes["native"] / f"{name}_{VERSION}-1_all.deb")
    assert nfpm_fields == native_fields
    assert nfpm_files == native_files
    assert nfpm_fields["Version"] == f"{VERSION}-1"


RPM_FILES = "[%{FILENAMES}|%{FILEMODES:octal}|%{FILEUSERNAME}|%{FILEGROUPNAME}|%{FILELINKTOS}\n]"
RPM_DEPS = {
    kind: f"[%{{{kind.upper()[:-1]}NAME}} %{{{kind.upper()[:-1]}FLAGS:deptype}} "
    f"%{{{kind.upper()[:-1]}FLAGS:depflags}} %{{{kind.upper()[:-1]}VERSION}}\n]"
    for kind in ("requires", "provides", "conflicts", "obsoletes")
}
RPM_FIELDS = (
    "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{URL}|%{SUMMARY}|%{PACKAGER}|%{VENDOR}"
)


def _rpm(rpm: Path, fmt: str) -> list[str]:
    out = subprocess.run(
        ["rpm", "-qp", "--queryformat", fmt, str(rpm)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(line for line in out.splitlines() if line.strip())


def _declared(lines: list[str]) -> list[str]:
    """Leave out what rpmbuild adds by itself: rpmlib() features and scriptlet interpreters."""
    return [ln for ln in lines if not ln.startswith("rpmlib(") and "interp" not in ln.split()[1]]


@pytest.mark.parametrize("name", PACKAGES)
def test_rpms_agree(routes: dict[str, Path], name: str) -> None:
    nfpm = routes["nfpm"] / f"{name}-{VERSION}-1.noarch.rpm"
    native = routes["native"] / f"{name}-{VERSION}-1.noarch.rpm"
    assert _rpm(nfpm, RPM_FIELDS) == _rpm(native, RPM_FIELDS)
    assert _rpm(nfpm, RPM_FILES) == _rpm(native, RPM_FILES)
    for kind, query in RPM_DEPS.items():
        assert _declared(_rpm(nfpm, query)) == _declared(_rpm(native, query)), kind


def test_native_rpm_scriptlets_are_the_shared_scripts(routes: dict[str, Path]) -> None:
    native = routes["native"] / f"qmail-send-systemd-{VERSION}-1.noarch.rpm"
    post = "\n".join(_rpm(native, "%{POSTIN}"))
    shared = Path(__file__).resolve().parents[1] / "packaging/scripts/rpm/post"
    for line in shared.read_text(encoding="utf-8").splitlines():
        if line.strip():
            assert line in post
    assert "systemd-update-helper install-system-units qmail-send.service" in post


def test_native_deb_keeps_one_enable_and_start(routes: dict[str, Path]) -> None:
    from debian import debfile

    deb = debfile.DebFile(str(routes["native"] / f"qmail-send-systemd_{VERSION}-1_all.deb"))
    postinst = deb.control.scripts()["postinst"].decode()
    assert postinst.count("configure --family deb") == 2  # first install / upgrade branches
    code = [ln.strip() for ln in postinst.splitlines() if not ln.lstrip().startswith("#")]
    # dh_installsystemd --no-start --no-enable: no second start, no unconditional enable
    assert not [ln for ln in code if ln.startswith("deb-systemd-invoke")]
    assert not [ln for ln in code if ln.startswith("deb-systemd-helper enable")]
