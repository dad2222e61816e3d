"""`sources`: the Debian source package and the source RPM, and what they rebuild into.

The rebuilds here use this host's tools on the source files alone (dpkg-source -x then
dpkg-buildpackage; rpmbuild --rebuild), without the toolkit; tests/container/test_rebuild.py
rebuilds them in clean Debian 12 and 13 roots and in the RPM root, as sbuild and mock do.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from qss_toolkit import payload, version
from qss_toolkit.build import control, parity, sources
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family

PROJECT = Path(__file__).resolve().parents[1]
VERSION = version.read_version()
NAME = "qmail-send-systemd"
TOOLS = (
    "dpkg-source",
    "dpkg-genchanges",
    "dpkg-buildpackage",
    "dh",
    "rpmbuild",
    "rpm",
    "fakeroot",
    "git",
)


def _need(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")


@pytest.fixture(scope="module")
def dist(project_sources: Path) -> Path:
    """The source packages as `nox -s sources` writes them: the run's shared build
    (conftest.py), also what tests/container rebuilds."""
    _need(*TOOLS)
    return project_sources


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    _need("git")
    return sources.prepare().file_names()


def _git_files() -> dict[str, int]:
    out = subprocess.run(
        ["git", "ls-files", "--stage"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout
    return {line.split("\t")[1]: int(line.split()[0], 8) for line in out.splitlines()}


def test_the_orig_tarball_is_the_tracked_tree_without_debian(
    dist: Path, names: dict[str, str]
) -> None:
    data = lzma.decompress((dist / names["orig"]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    top = f"{NAME}-{VERSION}/"
    files = {n[len(top) :]: m for n, m in members.items() if m.isfile()}
    tracked = _git_files()
    assert set(files) == {p for p in tracked if not p.startswith("debian/")}
    for path, member in files.items():
        assert member.mode == tracked[path] & 0o777, path  # git's mode, not the checkout's
        assert (member.uid, member.gid, member.uname) == (0, 0, "root"), path
    assert all(name == top.rstrip("/") or name.startswith(top) for name in members)
    assert len({m.mtime for m in members.values()}) == 1  # every entry at SOURCE_DATE_EPOCH


def test_every_package_yaml_is_in_both_source_packages(dist: Path, names: dict[str, str]) -> None:
    packages = [p.name for p in payload.load_packages()]
    dsc = (dist / names["dsc"]).read_text(encoding="utf-8")
    assert "\nFormat: 3.0 (quilt)\n" in "\n" + dsc
    assert re.search(r"^Binary: (.*)$", dsc, re.M).group(1).split(", ") == packages  # type: ignore[union-attr]
    assert f"\nBuild-Depends: {sources.build_depends()}\n" in dsc
    spec = sources.spec(sources.prepare())
    for package in packages[1:]:
        assert f"\n%package -n {package}\n" in spec
        assert f"\n%files -n {package}\n" in spec
    assert re.search(r"^Version: +(\S+)$", spec, re.M).group(1) == VERSION  # type: ignore[union-attr]


def test_debian_changelog_is_packaging_changelog_with_the_version(
    dist: Path, names: dict[str, str], tmp_path: Path
) -> None:
    """debian/changelog is committed as distro-files writes it from packaging/changelog; the
    source package's copy is dated SOURCE_DATE_EPOCH, as the binary packages are."""
    subprocess.run(
        ["dpkg-source", "--no-check", "-x", str(dist / names["dsc"]), str(tmp_path / "x")],
        check=True,
        capture_output=True,
    )
    changelog = (tmp_path / "x/debian/changelog").read_text(encoding="utf-8")
    entries = payload.parse_changelog(changelog)
    template = payload.parse_changelog(
        payload.debian_changelog(PROJECT, VERSION, control.source_date_epoch())
    )
    assert entries == template
    assert entries[0].version == f"{VERSION}-1"
    parsed = subprocess.run(
        ["dpkg-parsechangelog", "-l", str(tmp_path / "x/debian/changelog"), "-S", "Version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert parsed == f"{VERSION}-1"


def test_the_source_rpm_holds_the_spec_and_the_same_tarball(
    dist: Path, names: dict[str, str]
) -> None:
    srpm = dist / names["srpm"]
    with srpm.open("rb") as stdin:
        archive = subprocess.run(["rpm2archive", "-"], stdin=stdin, capture_output=True, check=True)
    members = {}
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            members[member.name.lstrip("./")] = handle.read()
    assert set(members) == {f"{NAME}.spec", names["orig"]}
    assert members[names["orig"]] == (dist / names["orig"]).read_bytes()  # Source0: the same
    query = ["rpm", "-qp", "--qf", "%{SOURCE}|%{NAME}|%{VERSION}|%{RELEASE}", str(srpm)]
    fields = subprocess.run(query, capture_output=True, text=True, check=True).stdout
    assert fields == f"{names['orig']}|{NAME}|{VERSION}|1"


@pytest.fixture(scope="module")
def nfpm_dist(project_dist: Path) -> Path:
    """The nfpm route's packages: the run's shared build (conftest.py), which is
    `packages.build("nfpm", payload.FORMATS, ...)` as `nox -s packages` runs it."""
    return project_dist


def test_the_dsc_alone_rebuilds_into_the_packages_of_nfpm(
    dist: Path, names: dict[str, str], nfpm_dist: Path, tmp_path: Path
) -> None:
    """As a builder does it: the three files, dpkg-source -x, dpkg-buildpackage -us -uc."""
    for kind in ("orig", "debian", "dsc"):
        shutil.copy(dist / names[kind], tmp_path)
    subprocess.run(
        ["dpkg-source", "-x", names["dsc"], "src"], cwd=tmp_path, capture_output=True, check=True
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSS_", "PYTHON"))}
    subprocess.run(["dpkg-buildpackage", "-us", "-uc"], cwd=tmp_path / "src", env=env,
                   capture_output=True, check=True)  # fmt: skip
    for package in payload.load_packages():
        deb = Family.DEB.manager.file_name(package.name, VERSION)
        rebuilt, reference = parity.deb_view(tmp_path / deb), parity.deb_view(nfpm_dist / deb)
        assert parity.differences(reference, rebuilt, ("nfpm", "dsc")) == [], package.name


def test_the_source_rpm_alone_rebuilds_into_the_packages_of_nfpm(
    dist: Path, names: dict[str, str], nfpm_dist: Path, tmp_path: Path
) -> None:
    subprocess.run(
        ["rpmbuild", "--rebuild", "--quiet", "--define", f"_topdir {tmp_path}",
         "--define", "_binary_payload w9.gzdio", str(dist / names["srpm"])],
        capture_output=True, check=True,
    )  # fmt: skip
    # A rebuild's packager, build host and build time are its builder's.
    builder = ("PACKAGER", "BUILDHOST", "BUILDTIME")
    for package in payload.load_packages():
        rpm = Family.RPM.manager.file_name(package.name, VERSION)
        reference = parity.rpm_view(nfpm_dist / rpm, ignore=builder)
        rebuilt = parity.rpm_view(tmp_path / "RPMS" / "noarch" / rpm, ignore=builder)
        rebuilt = parity.split_rpm_macro_prefix(rebuilt, reference)
        assert parity.differences(reference, rebuilt, ("nfpm", "srpm")) == [], package.name


# -- the tree that `sources` accepts --------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this checkout's tracked files, to change on purpose."""
    _need("git")
    for path in _git_files():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / path, target)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], cwd=tmp_path, check=True)
    return tmp_path


def test_a_file_the_packages_need_but_git_does_not_track_is_refused(repo: Path) -> None:
    config = repo / "packaging/nfpm/qmail-send-systemd-networkmanager.yaml"
    (repo / "packaging/networkmanager/91-extra").write_text("#!/bin/sh\nexit 0\n")
    text = config.read_text(encoding="utf-8")
    text = text.replace("contents:\n", "contents:\n  - src: packaging/networkmanager/91-extra\n"
                        "    dst: /usr/lib/NetworkManager/dispatcher.d/91-extra\n"
                        "    file_info: {mode: 0755}\n", 1)  # fmt: skip
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"91-extra is used by the packages but not tr"):
        sources.prepare(repo)
    subprocess.run(["git", "add", "packaging/networkmanager/91-extra"], cwd=repo, check=True)
    sources.write_derived(repo)
    assert "91-extra" in sources.install_script(sources.prepare(repo))


def test_a_new_package_yaml_reaches_both_source_packages(repo: Path) -> None:
    """What a fourth package needs: its YAML, then `distro-files` writes what follows from it
    under debian/ and rpm/ (until then `sources` refuses the tree, naming the command)."""
    nm = (repo / "packaging/nfpm/qmail-send-systemd-networkmanager.yaml").read_text("utf-8")
    new = nm.replace("qmail-send-systemd-networkmanager", "qmail-send-systemd-example")
    (repo / "packaging/nfpm/qmail-send-systemd-example.yaml").write_text(new, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    with pytest.raises(ConfigurationError, match="debian/control differs") as info:
        sources.prepare(repo)
    assert info.value.hint is not None and "distro-files" in info.value.hint
    sources.write_derived(repo)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    ctx = sources.prepare(repo)
    assert "\nPackage: qmail-send-systemd-example\n" in sources.debian_control(ctx)
    assert "debian/qmail-send-systemd-example/usr/lib/NetworkManager" in sources.install_script(ctx)
    spec = sources.spec(ctx)
    assert "\n%package -n qmail-send-systemd-example\n" in spec
    assert "%{_defaultlicensedir}/qmail-send-systemd-example/COPYING" in spec


def test_the_distribution_can_be_a_ppas_series(repo: Path) -> None:
    ctx = sources.prepare(repo, distribution="noble")
    first = sources.debian_changelog(ctx).splitlines()[0]
    assert first == f"{NAME} ({VERSION}-1) noble; urgency=medium"
    with pytest.raises(ConfigurationError, match="is not a suite name"):
        sources.prepare(repo, distribution="Noble Numbat")


def test_outside_a_git_checkout_sources_says_so(tmp_path: Path) -> None:
    _need("git")
    with pytest.raises(ConfigurationError, match="is not a git checkout"):
        sources.tracked_files(tmp_path)


def test_only_what_git_tracks_under_debian_reaches_the_debian_tarball(repo: Path) -> None:
    """A build in the tree leaves debian/files and debian/<package>/ behind: none of it goes in."""
    (repo / "debian/files").write_text("left by dpkg-buildpackage\n")
    names = set(sources.debian_files(sources.prepare(repo)))
    assert "debian/files" not in names
    assert {"debian/rules", "debian/source/format", "debian/control", "debian/changelog"} <= names
