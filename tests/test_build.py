"""`packages` with nfpm: the files in dist/, their metadata, and failures that write nothing."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from debian import debfile

from qss_toolkit import PROJECT_ROOT as PROJECT
from qss_toolkit import payload, version
from qss_toolkit.build import control, packages
from qss_toolkit.errors import CommandFailed, ConfigurationError, MissingToolError
from qss_toolkit.families import Family

VERSION = version.read_version()
# Every package of packaging/nfpm/, in both formats.
EXPECTED = {
    fmt.manager.file_name(p.name, VERSION) for p in payload.project_packages() for fmt in Family
}


def _need(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def dist(project_dist: Path) -> Path:
    _need("dpkg-deb", "rpm")
    return project_dist


def test_dist_holds_every_package_and_nothing_half_written(dist: Path) -> None:
    names = {p.name for p in dist.iterdir()}
    assert names >= EXPECTED
    assert not [n for n in names if n.startswith(".")], "a temporary build dir was left"


def _deb_control(deb: Path) -> dict[str, str]:
    with debfile.DebFile(str(deb)) as package:
        return dict(package.debcontrol())


def _deb_members(deb: Path) -> dict[str, tarfile.TarInfo]:
    with debfile.DebFile(str(deb)) as package:
        members = package.data.tgz().getmembers()
    return {m.name.lstrip("."): m for m in members if m.name not in (".", "./")}


def test_deb_metadata(dist: Path) -> None:
    control = _deb_control(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")
    assert control["Version"] == f"{VERSION}-1"
    assert control["Architecture"] == "all"
    assert control["Section"] == "mail" and control["Priority"] == "optional"
    assert control["Depends"] == "python3 (>= 3.9), systemd"
    assert control["Homepage"].startswith("https://")
    summary, *extended = control["Description"].splitlines()
    assert summary and len(extended) >= 5
    nm = _deb_control(dist / f"qmail-send-systemd-networkmanager_{VERSION}-1_all.deb")
    assert nm["Depends"] == f"qmail-send-systemd (= {VERSION}-1), network-manager"
    networkd = _deb_control(dist / f"qmail-send-systemd-networkd_{VERSION}-1_all.deb")
    assert networkd["Depends"] == f"qmail-send-systemd (= {VERSION}-1), networkd-dispatcher"
    hook = _deb_members(dist / f"qmail-send-systemd-networkd_{VERSION}-1_all.deb")[
        "/usr/lib/networkd-dispatcher/routable.d/90-qmail-send"
    ]
    assert (hook.mode, hook.uid, hook.gid) == (0o755, 0, 0)  # networkd-dispatcher's check_perms


def test_deb_contents_modes_and_docs(dist: Path) -> None:
    members = _deb_members(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")
    assert members["/usr/sbin/qmail-send-systemd"].mode == 0o755
    assert members["/usr/lib/systemd/system/qmail-send.service"].mode == 0o644
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert "/usr/share/doc/qmail-send-systemd/copyright" in members
    assert "/usr/share/man/man8/qmail-send-systemd.8.gz" in members
    assert "/usr/lib/systemd/system-preset/95-qmail-send-systemd.preset" not in members

    with debfile.DebFile(str(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")) as deb:
        changelog = deb.changelog()
        scripts = deb.control.scripts()
        copyright_text = deb.data.get_content("./usr/share/doc/qmail-send-systemd/copyright")
    assert changelog is not None and str(changelog.version) == f"{VERSION}-1"
    assert "configure --family deb" in scripts["postinst"].decode()
    assert b"#DEBHELPER#" not in scripts["postinst"]
    assert copyright_text is not None
    assert copyright_text.startswith(b"Format: https://www.debian.org/doc/packaging-manuals/")


def _rpm_query(rpm: Path, fmt: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", "--queryformat", fmt, str(rpm)], capture_output=True, text=True, check=True
    ).stdout


def _rpm_requires(rpm: Path) -> list[str]:
    """Declared requirements, without rpm's own rpmlib() feature markers."""
    query = "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]"
    return [r for r in _rpm_query(rpm, query).splitlines() if not r.startswith("rpmlib(")]


def test_rpm_metadata_and_scriptlets(dist: Path) -> None:
    rpm = dist / f"qmail-send-systemd-{VERSION}-1.noarch.rpm"
    fields = _rpm_query(rpm, "%{VERSION}|%{RELEASE}|%{LICENSE}|%{URL}|%{BUILDHOST}|%{ARCH}")
    assert fields.split("|") == [
        VERSION, "1", "GPL-2.0-or-later",
        "https://github.com/qmail-send-systemd/qmail-send-systemd", "reproducible", "noarch",
    ]  # fmt: skip
    # Requires for the helper's run time, the same for each scriptlet (Fedora's systemd macros
    # require systemd for post, preun and postun), and their interpreter, as rpmbuild writes it.
    assert _rpm_requires(rpm) == [
        *("/bin/sh  ", "/bin/sh  ", "/bin/sh  "),
        "/usr/bin/python3  ",  # /usr/sbin/qmail-send-systemd's #!, as rpmbuild's script.req finds
        *("python3 >= 3.9", "python3 >= 3.9", "python3 >= 3.9", "python3 >= 3.9"),
        *("systemd  ", "systemd  ", "systemd  ", "systemd  "),
    ]
    contexts = _rpm_query(rpm, "[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]").splitlines()
    for context in ("post", "preun", "postun"):
        assert f"python3 {context}" in contexts and f"systemd {context}" in contexts
        assert f"/bin/sh {context},interp" in contexts
    assert "/usr/bin/python3 auto" in contexts
    assert _rpm_query(rpm, "%{SOURCERPM}") == f"qmail-send-systemd-{VERSION}-1.src.rpm"
    assert _rpm_query(rpm, "%{VENDOR}|%{GROUP}") == "(none)|Unspecified"  # as rpmbuild, Fedora
    files = _rpm_query(rpm, "[%{FILEMODES:octal} %{FILEUSERNAME} %{FILENAMES}\n]").splitlines()
    assert "100755 root /usr/sbin/qmail-send-systemd" in files
    assert "100644 root /usr/lib/systemd/system-preset/95-qmail-send-systemd.preset" in files
    scripts = _rpm_query(rpm, "%{POSTIN}\n--\n%{PREUN}\n--\n%{POSTUN}")
    assert '"$helper" configure --family rpm' in scripts
    assert "--stage preun --count" in scripts and "--stage postun --count" in scripts
    assert _rpm_query(rpm, "%{CHANGELOGNAME}").endswith(f" - {VERSION}-1")
    nm = dist / f"qmail-send-systemd-networkmanager-{VERSION}-1.noarch.rpm"
    assert sorted(_rpm_requires(nm)) == [
        "/bin/sh  ",  # the hook's #!
        "NetworkManager  ",
        f"qmail-send-systemd = {VERSION}-1",
    ]
    networkd = dist / f"qmail-send-systemd-networkd-{VERSION}-1.noarch.rpm"
    assert sorted(_rpm_requires(networkd)) == [
        "/bin/sh  ",
        "networkd-dispatcher  ",
        f"qmail-send-systemd = {VERSION}-1",
    ]
    # One source RPM for every package: the one `nox -s sources` makes.
    assert _rpm_query(nm, "%{SOURCERPM}") == f"qmail-send-systemd-{VERSION}-1.src.rpm"


def test_man_page_is_the_source_gzipped(dist: Path) -> None:
    members = _deb_members(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")
    assert members["/usr/share/man/man8/qmail-send-systemd.8.gz"].size > 0

    with debfile.DebFile(str(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")) as deb:
        packed = deb.data.get_content("./usr/share/man/man8/qmail-send-systemd.8.gz")
    assert packed is not None
    source = (PROJECT / "packaging/man/qmail-send-systemd.8").read_bytes()
    assert gzip.decompress(packed) == source


def test_the_administrators_guide_is_in_both_formats(dist: Path) -> None:
    # /usr/share/doc/qmail-send-systemd: gzipped on Debian (over 4 kB), %doc in the RPM.

    source = (PROJECT / "packaging/doc/README").read_bytes()
    assert len(source) > 4096 and b"systemctl kill --kill-who=main -s HUP" in source
    with debfile.DebFile(str(dist / f"qmail-send-systemd_{VERSION}-1_all.deb")) as deb:
        packed = deb.data.get_content("./usr/share/doc/qmail-send-systemd/README.gz")
    assert packed is not None
    assert gzip.decompress(packed) == source
    rpm = dist / f"qmail-send-systemd-{VERSION}-1.noarch.rpm"
    docs = subprocess.run(
        ["rpm", "-qp", "--docfiles", str(rpm)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "/usr/share/doc/qmail-send-systemd/README" in docs


# -- failures: clear errors, nothing written ------------------------------------------------


def test_a_missing_tool_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError) as excinfo:
        packages.build("native", ("rpm",), tmp_path / "dist")
    assert (
        str(excinfo.value)
        == "rpmbuild is not installed (fix: apt-get install rpm or dnf install rpm-build)"
    )
    assert not (tmp_path / "dist").exists()


def test_a_bad_version_stops_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(version, "read_version", lambda: version.validate("1.0-beta"))
    with pytest.raises(ConfigurationError, match="not valid for both Debian and RPM"):
        packages.build("nfpm", payload.FORMATS, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_a_bad_source_date_epoch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigurationError, match="SOURCE_DATE_EPOCH"):
        control.source_date_epoch()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert control.source_date_epoch() == 1700000000


def test_an_unknown_builder_is_a_usage_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown builder"):
        packages.prepare("fpm", payload.FORMATS)


def test_a_failing_build_leaves_dist_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need("nfpm")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "older.deb").write_bytes(b"kept")
    calls: list[Family] = []

    def fail_on_rpm(
        self: packages.NfpmBuilder,
        ctx: packages.BuildContext,
        fmt: Family,
        staging: Path,
        out: Path,
    ) -> None:
        calls.append(fmt)
        if fmt is Family.RPM:
            raise CommandFailed("exit 1: nfpm package ... (simulated)")
        original(self, ctx, fmt, staging, out)

    original = packages.NfpmBuilder.build
    monkeypatch.setattr(packages.NfpmBuilder, "build", fail_on_rpm)
    with pytest.raises(CommandFailed):
        packages.build("nfpm", payload.FORMATS, dist)
    assert calls == ["deb", "rpm"]
    assert [p.name for p in dist.iterdir()] == ["older.deb"]


def test_broken_native_sources_stop_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need("dpkg-buildpackage", "dh", "fakeroot", "rpmbuild")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for rel in ("debian", "rpm", "packaging", "units", "src/qmail_send_systemd"):
        shutil.copytree(PROJECT / rel, tmp_path / rel)
    shutil.copyfile(PROJECT / "COPYING", tmp_path / "COPYING")
    packages.prepare("native", payload.FORMATS, tmp_path)
    spec = tmp_path / "rpm/qmail-send-systemd.spec.in"
    good = spec.read_text(encoding="utf-8")
    spec.write_text(good.replace("@VERSION@", "1.0"), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="@VERSION@"):
        packages.prepare("native", ("rpm",), tmp_path)
    packages.prepare("native", ("deb",), tmp_path)  # the spec is the rpm format's alone
    # The spec's own package is the main one of packaging/nfpm/, filled in.
    spec.write_text(good.replace("Name:           @NAME@", "Name: x"), "utf-8")
    with pytest.raises(ConfigurationError, match=r"Name: +@NAME@") as info:
        packages.prepare("native", ("rpm",), tmp_path)
    assert info.value.hint is not None and "main one of packaging/nfpm/" in info.value.hint
    spec.write_text(good, "utf-8")
    with (tmp_path / "debian/control").open("a") as control:
        control.write("\nPackage: stale\n")
    with pytest.raises(ConfigurationError, match="debian/control differs") as info:
        packages.prepare("native", ("deb",), tmp_path)
    assert info.value.hint is not None and "distro-files" in info.value.hint


def test_generated_native_metadata_matches_the_payload() -> None:
    packages = payload.load_packages()
    main, *_ = packages
    stanza = control.debian_stanza(main)
    assert "Package: qmail-send-systemd\nArchitecture: all\n" in stanza
    assert "Depends: ${misc:Depends}, python3 (>= 3.9), systemd\n" in stanza
    assert "\n .\n" in stanza  # paragraph separator of the extended description
    preamble = control.rpm_preamble(main).splitlines()
    assert (
        preamble[preamble.index("Requires:       python3 >= 3.9") + 1] == "Requires:       systemd"
    )
    for script in ("post", "preun", "postun"):
        label = f"Requires({script}):".ljust(15)
        assert f"{label} python3 >= 3.9" in preamble and f"{label} systemd" in preamble


def test_native_sources_carry_the_version_placeholder_and_macro_fallbacks() -> None:
    spec = (PROJECT / "rpm/qmail-send-systemd.spec.in").read_text(encoding="utf-8")
    assert "Version:        @VERSION@" in spec
    for macro in ("systemd_post", "systemd_preun", "systemd_postun"):
        assert f"%if %{{undefined {macro}}}" in spec
    rules = (PROJECT / "debian/rules").read_text(encoding="utf-8")
    assert "dh_installsystemd --no-enable --no-start" in rules
    control = (PROJECT / "debian/control").read_text(encoding="utf-8")
    assert "Build-Depends: debhelper-compat (= 13)" in control
    assert (PROJECT / "debian/changelog").is_file(), "committed: a clone is a source tree"


def test_rpm_changelog_from_the_debian_one() -> None:
    text = payload.debian_changelog(PROJECT, "4.2", 0)
    lines = control.rpm_changelog(text).splitlines()
    assert lines[0] == "%changelog"
    assert lines[1].startswith("* Thu Jan 01 1970 qmail-send-systemd developers <")
    assert lines[1].endswith("> - 4.2-1")
    assert lines[2].startswith("- ")


def test_rpm_license_is_the_gpl_text_itself(dist: Path) -> None:
    """Fedora has no /usr/share/common-licenses: the RPMs ship the licence text as %license."""
    for name in (p.name for p in payload.load_packages()):
        rpm = dist / f"{name}-{VERSION}-1.noarch.rpm"
        query = "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"
        files = dict(line.rsplit(" ", 1) for line in _rpm_query(rpm, query).splitlines())
        licence = f"/usr/share/licenses/{name}/COPYING"
        assert files.get(licence) == "l", name  # %license
        assert not [f for f in files if f.endswith("/copyright")], name
    text = (PROJECT / "COPYING").read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991" in text
    assert "How to Apply These Terms to Your New Programs" in text  # the whole text, not a notice
