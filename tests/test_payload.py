"""The payload (packaging/nfpm/*.yaml) against the shared contract, and its error handling."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import qmail_send_systemd
from qmail_send_systemd import cli, systemd
from qss_toolkit import PROJECT_ROOT as PROJECT
from qss_toolkit import payload, version
from qss_toolkit.build import control
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family

MAIN = "qmail-send-systemd"
DEB, RPM = Family.DEB, Family.RPM
NM = "qmail-send-systemd-networkmanager"
NETWORKD = "qmail-send-systemd-networkd"


# The main package's mark in its x-qss block.
MAIN_MARK = "  main: true\n"


@pytest.fixture(scope="module")
def packages() -> dict[str, payload.Package]:
    return {p.name: p for p in payload.load_packages()}


def _architecture_paths() -> list[tuple[str, int, str, bool]]:
    """(path, mode, package, rpm_only) from docs/ARCHITECTURE.md's "Installed paths" table."""
    text = (PROJECT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Installed paths", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"0[0-7]{3}", cells[1]):
            continue
        path = re.search(r"`([^`]+)`", cells[0])
        assert path, line
        rows.append((path.group(1), int(cells[1], 8), cells[2], "RPM only" in cells[0]))
    return rows


def test_the_main_package_is_the_one_marked_main_and_comes_first(tree: Path) -> None:
    loaded = payload.load_packages(tree)
    assert [p.main for p in loaded] == [True] + [False] * (len(loaded) - 1)
    assert [p.name for p in loaded[1:]] == sorted(p.name for p in loaded[1:])
    # Move the mark: another package is the main one, whatever its name's length.
    nm = tree / "packaging/nfpm/qmail-send-systemd-networkmanager.yaml"
    _edit(tree / "packaging/nfpm/qmail-send-systemd.yaml", MAIN_MARK, "  main: false\n")
    _edit(nm, "arch: all\n", "x-qss: {main: true}\narch: all\n")
    # The other packages' .debs name the source package, which is now that one.
    with pytest.raises(ConfigurationError, match=r"deb\.fields\.Source must be .*-networkmanager"):
        payload.load_packages(tree)
    for config in (tree / "packaging/nfpm").glob("*.yaml"):
        text = config.read_text(encoding="utf-8")
        text = text.replace("Source: qmail-send-systemd\n", f"Source: {nm.stem}\n")
        if "\ndeb:\n" not in text:  # the former main package
            text += f"deb:\n  fields:\n    Source: {nm.stem}\n"
        config.write_text(text, encoding="utf-8")
    assert payload.load_packages(tree)[0].name == "qmail-send-systemd-networkmanager"


@pytest.mark.parametrize(("marks", "count"), [(0, "0 packages"), (2, "2 packages")])
def test_exactly_one_package_is_marked_main(tree: Path, marks: int, count: str) -> None:
    _edit(tree / "packaging/nfpm/qmail-send-systemd.yaml", MAIN_MARK, "")
    for config in sorted((tree / "packaging/nfpm").glob("*.yaml"))[:marks]:
        _edit(config, "arch: all\n", "x-qss: {main: true}\narch: all\n")
    with pytest.raises(ConfigurationError, match=count) as info:
        payload.load_packages(tree)
    assert info.value.hint is not None and "x-qss: {main: true}" in info.value.hint


def test_the_toolkit_key_is_checked_and_kept_from_nfpm(tree: Path) -> None:
    config = tree / "packaging/nfpm/qmail-send-systemd.yaml"
    text = config.read_text(encoding="utf-8")
    for_nfpm = payload.nfpm_config(text)
    assert "\nx-qss:" not in for_nfpm and "  scriptlet-requires:\n" not in for_nfpm
    start = text.index("x-qss:\n")
    end = text.index("\narch: ", start) + 1
    assert for_nfpm == text[:start] + text[end:]  # every other byte as written
    block = "x-qss:\n  main: true\n\n  # indented comment\nname: x\n"
    assert payload.nfpm_config("a: 1\n" + block) == "a: 1\nname: x\n"
    _edit(config, MAIN_MARK, "  main: yes please\n")
    with pytest.raises(ConfigurationError, match=r"x-qss\.main must be true or false"):
        payload.load_packages(tree)
    _edit(config, "  main: yes please\n", "  main: true\n  mian: true\n")
    with pytest.raises(ConfigurationError, match="x-qss must be a mapping with only"):
        payload.load_packages(tree)
    # nfpm's own rpm.requires is refused with the fix: nfpm 2.44 (Python 3.9's) fails on it.
    _edit(config, "  mian: true\n", "")
    _edit(config, "\nrpm:\n", "\nrpm:\n  requires:\n    post: [systemd]\n")
    with pytest.raises(ConfigurationError, match=r"rpm\.requires: .*x-qss\.scriptlet-requires"):
        payload.load_packages(tree)


def test_the_helpers_own_names_are_the_payloads(packages: dict[str, payload.Package]) -> None:
    """The shipped helper cannot read packaging/nfpm/: its program and unit names are its
    own copies, which must be what the main package installs."""

    main = payload.main_package()
    assert payload.main_unit() == systemd.UNIT
    assert main.ships(f"/usr/sbin/{cli.PROG}")
    assert main.name == cli.PROG


def test_owner_names_the_package_that_installs_a_path(packages: dict[str, payload.Package]) -> None:
    hook = "/usr/lib/NetworkManager/dispatcher.d/90-qmail-send"
    assert payload.owner(hook) == "qmail-send-systemd-networkmanager"
    assert payload.owner("/usr/sbin/sendmail") == "qmail-send-systemd-sendmail"  # deb only
    with pytest.raises(ConfigurationError, match="installs /usr/sbin/exim4"):
        payload.owner("/usr/sbin/exim4")


def test_every_installed_path_of_the_architecture_is_in_the_payload(
    packages: dict[str, payload.Package],
) -> None:
    rows = _architecture_paths()
    assert len(rows) >= 6
    for path, mode, package, rpm_only in rows:
        formats = {RPM} if rpm_only else {DEB, RPM}
        for fmt in formats:
            files = packages[package].files_for(fmt)
            if path.endswith("/*.py"):
                matches = [f for f in files if f.destination.startswith(path[: -len("*.py")])]
                matches = [f for f in matches if f.destination.endswith(".py")]
            else:
                matches = [f for f in files if f.destination == path]
            assert matches, f"{path} missing from the {fmt} of {package}"
            assert {f.mode for f in matches} == {mode}, path
        if rpm_only:
            assert not [f for f in packages[package].files_for(DEB) if f.destination == path]


def test_every_helper_module_is_shipped(packages: dict[str, payload.Package]) -> None:
    shipped = {
        Path(f.destination).name for f in packages[MAIN].files if f.kind is payload.ContentKind.FILE
    }
    modules = {p.name for p in (PROJECT / "src" / "qmail_send_systemd").glob("*.py")}
    assert modules <= shipped


def _alternatives_counterparts(deb: dict[str, int], rpm: dict[str, int]) -> set[str]:
    """Debian ships sendmail, mailq, newaliases and their pages by name; RPM ships each as
    NAME.qmail (the `mta` alternative, same mode) and owns NAME as a %ghost."""
    matched: set[str] = set()
    for path, mode in deb.items():
        directory, name = path.rsplit("/", 1)
        base, dot, rest = name.partition(".")
        suffixed = f"{directory}/{base}.qmail{dot}{rest}"
        if rpm.get(suffixed) == mode and rpm.get(path) == mode:
            matched |= {path, suffixed}
    return matched


def test_both_formats_carry_the_same_files_apart_from_documented_ones(
    packages: dict[str, payload.Package],
) -> None:
    per_format_dirs = ("/usr/share/doc/", "/usr/share/licenses/", "/usr/share/lintian/")
    for package in packages.values():
        deb = {f.destination: f.mode for f in package.files_for(DEB)}
        rpm = {f.destination: f.mode for f in package.files_for(RPM)}
        only = set(deb) ^ set(rpm)
        only = {p for p in only if not p.startswith(per_format_dirs)}
        only -= {"/usr/lib/systemd/system-preset/95-qmail-send-systemd.preset"}
        if package.name.endswith("-sendmail"):
            only -= _alternatives_counterparts(deb, rpm)
        assert not only, package.name
        ghosts = {
            f.destination for f in package.files_for(RPM) if f.kind is payload.ContentKind.GHOST
        }
        assert all(deb[p] == rpm[p] for p in set(deb) & set(rpm) - ghosts), package.name


def test_metadata_a_repository_accepts(packages: dict[str, payload.Package]) -> None:
    """What lintian and rpmlint ask of every package (a copyright file, a licence, a
    description that says something), whatever package is added."""
    for package in packages.values():
        assert len(package.description.split()) >= 15, package.name
        assert any(f.destination.endswith("/copyright") for f in package.files_for(DEB))
        assert any(f.kind is payload.ContentKind.LICENSE for f in package.files_for(RPM))


_SCRIPTED = """name: scripted
arch: all
platform: linux
version: ${QSS_VERSION}
release: "1"
changelog: generated/changelog.yml
maintainer: m <m@example.org>
homepage: https://example.org
license: GPL-2.0-or-later
description: |-
  a synopsis
  An extended text.
depends:
  - scripted-base (= ${QSS_VERSION}-1)
overrides:
  rpm:
    depends:
      - scripted-base = ${QSS_VERSION}
scripts:
  postinstall: packaging/scripts/deb/postinst
  preremove: packaging/scripts/deb/prerm
contents:
  - src: units/qmail-send.service
    dst: /usr/lib/systemd/system/scripted.service
    file_info: {mode: 0644}
"""


def test_scripts_get_each_formats_own_names_and_relations_the_version(tree: Path) -> None:
    config = tree / "packaging/nfpm/scripted.yaml"
    config.write_text(_SCRIPTED, encoding="utf-8")
    package = payload.load_package(config, tree)
    assert package.scripts[DEB] == {
        "postinst": "packaging/scripts/deb/postinst",
        "prerm": "packaging/scripts/deb/prerm",
    }
    assert package.scripts[RPM] == {
        "post": "packaging/scripts/deb/postinst",
        "preun": "packaging/scripts/deb/prerm",
    }
    assert package.relation(DEB, "depends", "2.0") == ("scripted-base (= 2.0-1)",)
    assert package.relation(RPM, "depends", "2.0") == ("scripted-base = 2.0",)
    assert package.source_relation(DEB, "depends") == ("scripted-base (= ${binary:Version})",)
    # A bare upstream version stays the upstream version in the spec.
    assert package.source_relation(RPM, "depends") == ("scripted-base = %{version}",)
    assert package.units() == ("scripted.service",) and not package.main
    # What build.packages reads for debian/control and the spec: typed, with the defaults nfpm has.
    assert (package.section, package.priority, package.vendor) == ("mail", "optional", None)
    _edit(config, "  postinstall:", "  postinstal:")
    with pytest.raises(ConfigurationError, match="script postinstal is not supported"):
        payload.load_package(config, tree)


# -- errors: clear, one line, before anything is written ------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what load_packages reads, to break on purpose."""
    for rel in ("packaging", "units", "src/qmail_send_systemd"):
        shutil.copytree(PROJECT / rel, tmp_path / rel)
    shutil.copyfile(PROJECT / "COPYING", tmp_path / "COPYING")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("file_info: {mode: 0755}", "file_info: {mode: rwx}", "file_info.mode"),
        ("src: units/qmail-send.service", "src: units/missing.service", "does not exist"),
        ('release: "1"', 'release: "2"', "release must be"),
        ("homepage:", "homepage_url:", "unknown keys"),
        ("    packager: rpm\n", "    packager: apk\n", "packager 'apk'"),
        ("version: ${QSS_VERSION}", "version: 1.0", "version must be"),
    ],
)
def test_a_broken_configuration_is_a_one_line_error(
    tree: Path, old: str, new: str, message: str
) -> None:
    _edit(tree / "packaging/nfpm/qmail-send-systemd.yaml", old, new)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as excinfo:
        payload.load_packages(tree)
    assert "\n" not in str(excinfo.value)
    assert "qmail-send-systemd.yaml" in str(excinfo.value)


SENDMAIL_YAML = "qmail-send-systemd-sendmail.yaml"
NETWORKD_YAML = "qmail-send-systemd-networkd.yaml"


@pytest.mark.parametrize(
    ("config", "old", "new", "message"),
    [
        # Every package but the main one names it as its Debian source package.
        (NETWORKD_YAML, "    Source: qmail-send-systemd\n", "    Source: other\n",
         r"deb\.fields\.Source must be qmail-send-systemd, the source package"),
        # What the scriptlets run is declared for a package that has them.
        (SENDMAIL_YAML, "    scripts:\n"
         "      postinstall: packaging/scripts/rpm/sendmail-postinstall\n"
         "      preremove: packaging/scripts/rpm/sendmail-preremove\n", "",
         r"x-qss\.scriptlet-requires without an rpm script"),
        # Each one is what a spec's Requires: takes, checked before anything is built.
        (SENDMAIL_YAML, "    - /usr/sbin/alternatives\n", "    - alternatives 1.0\n",
         r"x-qss\.scriptlet-requires: 'alternatives 1\.0' is not NAME or NAME OP VERSION"),
        # The RPM Packager is the maintainer, as the source RPM's %packager is.
        (NETWORKD_YAML, "  buildhost: reproducible\n",
         "  buildhost: reproducible\n  packager: someone <s@example.org>\n",
         r"rpm\.packager: an RPM's Packager is the maintainer"),
        # A %ghost is an RPM file flag: nfpm would drop it from a deb.
        (SENDMAIL_YAML, "    type: ghost\n    file_info: {mode: 0755}\n    packager: rpm\n",
         "    type: ghost\n    file_info: {mode: 0755}\n",
         "type ghost needs `packager: rpm`"),
    ],
)  # fmt: skip
def test_the_source_package_and_rpm_rules_are_one_line_errors(
    tree: Path, config: str, old: str, new: str, message: str
) -> None:
    payload.load_packages(tree)  # the tree as it is passes
    _edit(tree / "packaging/nfpm" / config, old, new)
    with pytest.raises(ConfigurationError, match=message) as excinfo:
        payload.load_packages(tree)
    assert "\n" not in str(excinfo.value) and config in str(excinfo.value)


def test_scriptlet_requirements_and_typed_fields_come_from_the_yaml() -> None:
    sendmail = payload.owner("/usr/sbin/sendmail")
    packages = {p.name: p for p in payload.load_packages()}
    assert packages[sendmail].scriptlet_requires == ("/usr/sbin/alternatives",)
    assert packages[sendmail].deb_source == payload.main_package().name
    main = packages[payload.main_package().name]
    assert main.scriptlet_requires == ("python3 >= 3.9", "systemd")
    assert main.maintainer.endswith("<qmail-send-systemd@users.noreply.github.com>")
    assert (main.license, main.homepage) == (
        "GPL-2.0-or-later",
        "https://github.com/qmail-send-systemd/qmail-send-systemd",
    )


def test_a_file_installed_twice_is_refused(tree: Path) -> None:
    config = tree / "packaging/nfpm/qmail-send-systemd-networkmanager.yaml"
    _edit(config, "dst: /usr/share/licenses/qmail-send-systemd-networkmanager/COPYING",
          "dst: /usr/lib/NetworkManager/dispatcher.d/90-qmail-send\n    packager: rpm")  # fmt: skip
    text = config.read_text(encoding="utf-8").replace("    packager: rpm\n    packager: rpm", "")
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="installed twice"):
        payload.load_packages(tree)


def test_a_doc_type_without_packager_rpm_is_refused(tree: Path) -> None:
    doc = "    type: doc\n    file_info: {mode: 0644}\n"
    _edit(tree / "packaging/nfpm/qmail-send-systemd.yaml", doc + "    packager: rpm\n", doc)
    with pytest.raises(ConfigurationError, match="nfpm drops it"):
        payload.load_packages(tree)


# -- generated sources ----------------------------------------------------------------------


def test_gzip_is_reproducible_and_maximal() -> None:
    data = b"x" * 1000
    packed = payload.gzip_bytes(data)
    assert packed == payload.gzip_bytes(data)
    assert packed[4:8] == b"\0\0\0\0"  # no timestamp
    assert packed[3] & 0x08 == 0  # no file name
    assert packed[8] == 2  # XFL: maximum compression
    assert gzip.decompress(packed) == data


def test_changelog_gets_version_and_date_and_parses() -> None:
    text = payload.debian_changelog(PROJECT, "2.5", 86400 * 365)
    assert text.startswith("qmail-send-systemd (2.5-1) unstable; urgency=medium\n")
    assert "  Fri, 01 Jan 1971 00:00:00 +0000\n" in text
    (entry,) = payload.parse_changelog(text)[:1]
    assert entry.version == "2.5-1" and entry.epoch == 86400 * 365
    assert entry.changes
    # Every line of the packaged changelog fits lintian's 80 columns (debian-changelog-line-
    # too-long), its "  * " included.
    long = [line for line in text.splitlines() if len(line) > 80 and not line.startswith(" --")]
    assert long == []
    chglog = payload.chglog_yaml(payload.parse_changelog(text))
    assert "semver: 2.5-1" in chglog and "date: '1971-01-01T00:00:00Z'" in chglog


def test_changelog_that_cannot_be_parsed_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot parse"):
        payload.parse_changelog("qmail-send-systemd (1-1) unstable; urgency=low\n\nrandom text\n")


def test_staging_lays_out_sources_with_payload_modes(
    tmp_path: Path, packages: dict[str, payload.Package]
) -> None:
    ver = version.read_version()
    staged = payload.stage(tmp_path / "s", tuple(packages.values()), ver, 0)
    assert (staged / "packaging/qmail-send-systemd.sbin").stat().st_mode & 0o777 == 0o755
    assert (staged / "units/qmail-send.service").stat().st_mode & 0o777 == 0o644
    for generated, source in (
        ("generated/qmail-send-systemd.8.gz", "packaging/man/qmail-send-systemd.8"),
        ("generated/README.gz", "packaging/doc/README"),
    ):
        packed = (staged / generated).read_bytes()
        assert gzip.decompress(packed) == (PROJECT / source).read_bytes()
    # nfpm has no debhelper snippets to put in: the token goes, the rest stays.
    postinst = (staged / "packaging/scripts/deb/postinst").read_text(encoding="utf-8")
    assert "#DEBHELPER#" not in postinst and "configure --family deb" in postinst
    assert "#DEBHELPER#" in (PROJECT / "packaging/scripts/deb/postinst").read_text(encoding="utf-8")


def test_rpm_file_list_has_modes_and_flags(packages: dict[str, payload.Package]) -> None:
    listing = payload.rpm_file_list(packages[MAIN]).splitlines()
    assert "%attr(0755,root,root) /usr/sbin/qmail-send-systemd" in listing
    assert "%attr(0755,root,root) %dir /usr/share/qmail-send-systemd" in listing
    # A page is NAME.SECTION*, whatever the build's brp-compress makes of it ...
    assert "%attr(0644,root,root) %doc /usr/share/man/man8/qmail-send-systemd.8*" in listing
    # ... and the spec writes each directory as Fedora's macro.
    spec_listing = payload.rpm_file_list(packages[MAIN], control.rpm_path).splitlines()
    assert "%attr(0644,root,root) %doc %{_mandir}/man8/qmail-send-systemd.8*" in spec_listing
    assert "%attr(0644,root,root) %{_unitdir}/qmail-send.service" in spec_listing
    # The administrator's guide alone is in /usr/share/doc (the license is in licenses/).
    assert [ln for ln in listing if "/usr/share/doc/" in ln] == [
        "%attr(0644,root,root) %doc /usr/share/doc/qmail-send-systemd/README"
    ]


# -- the version's one source ---------------------------------------------------------------


@pytest.mark.parametrize("good", ["1.0.0", "2", "1.0~rc1", "1.0+git20260101", "10.2.3a"])
def test_versions_both_formats_accept(good: str) -> None:
    assert version.validate(good) == good


@pytest.mark.parametrize("bad", ["", "v1.0", "1.0-1", "1.0 beta", "1..0", "1.0.", "1:1.0", "1_0"])
def test_versions_refused_before_any_build(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="version"):
        version.validate(bad)


def test_version_is_read_without_importing_the_helper() -> None:
    assert version.read_version('"""doc"""\n__version__ = "3.1"\n') == "3.1"
    with pytest.raises(ConfigurationError, match="no __version__"):
        version.read_version("__version__ = compute()\n")

    assert version.read_version() == qmail_send_systemd.__version__


def test_each_family_names_its_package_files_as_its_tools_do() -> None:
    assert DEB.manager.file_name("x", "1.2") == "x_1.2-1_all.deb"
    assert RPM.manager.file_name("x", "1.2") == "x-1.2-1.noarch.rpm"
    assert RPM.manager.is_package_file(Path("x-1.2-1.noarch.rpm"))
    assert not RPM.manager.is_package_file(Path("x-1.2-1.src.rpm"))
    assert not DEB.manager.is_package_file(Path("x-1.2-1.noarch.rpm"))


# -- maintainer scripts: thin shell calling the helper --------------------------------------

SCRIPTS = PROJECT / "packaging" / "scripts"


def test_maintainer_scripts_are_shellcheck_clean() -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(p for p in SCRIPTS.rglob("*") if p.is_file())
    subprocess.run(["shellcheck", "-s", "sh", *map(str, scripts)], check=True)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A root with a helper and a systemctl that record their arguments."""
    log = tmp_path / "calls.log"
    for path in ("usr/sbin/qmail-send-systemd", "bin/systemctl"):
        tool = tmp_path / path
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text(f'#!/bin/sh\necho "{Path(path).name} $*" >> {log}\n', encoding="utf-8")
        tool.chmod(0o755)
    return tmp_path


def _run_script(script: Path, root: Path, *args: str, rpm: bool = False) -> list[str]:
    text = script.read_text(encoding="utf-8")
    if rpm:  # RPM scripts name the helper by its absolute path; point it into the fake root
        text = text.replace("helper=/usr/sbin/", f"helper={root}/usr/sbin/")
    copy = root / script.name
    copy.write_text(text, encoding="utf-8")
    env = {"PATH": f"{root}/bin:/usr/bin:/bin", "DPKG_ROOT": str(root)}
    subprocess.run(["sh", "-e", str(copy), *args], check=True, env=env)
    log = root / "calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


HELPER = "qmail-send-systemd"
PRERM = f"{HELPER} remove --family deb --stage prerm --action"


@pytest.mark.parametrize(
    ("script", "args", "calls"),
    [
        ("deb/postinst", ["configure", ""], [f"{HELPER} configure --family deb"]),
        ("deb/postinst", ["configure", "0.9-1"], [f"{HELPER} configure --family deb --upgrade"]),
        ("deb/postinst", ["triggered", "x"], []),
        ("deb/preinst", ["upgrade", "0.9-1"], []),
        ("deb/prerm", ["remove"], [f"{PRERM} remove"]),
        ("deb/prerm", ["upgrade", "1.1-1"], [f"{PRERM} upgrade"]),
        # DPKG_ROOT: another root, so no daemon-reload of this system
        ("deb/postrm", ["remove"], []),
    ],
)
def test_deb_scripts_call_the_helper(
    fake_root: Path, script: str, args: list[str], calls: list[str]
) -> None:
    assert _run_script(SCRIPTS / script, fake_root, *args) == calls


@pytest.mark.parametrize(
    ("script", "count", "calls"),
    [
        ("post", "1", ["qmail-send-systemd configure --family rpm"]),
        ("post", "2", ["qmail-send-systemd configure --family rpm --upgrade"]),
        ("preun", "0", ["qmail-send-systemd remove --family rpm --stage preun --count 0"]),
        # the OLD package's %preun on upgrade, after the new %post: the helper decides (no-op)
        ("preun", "1", ["qmail-send-systemd remove --family rpm --stage preun --count 1"]),
        ("postun", "1", ["qmail-send-systemd remove --family rpm --stage postun --count 1"]),
    ],
)
def test_rpm_scripts_pass_the_count_on(
    fake_root: Path, script: str, count: str, calls: list[str]
) -> None:
    assert _run_script(SCRIPTS / "rpm" / script, fake_root, count, rpm=True) == calls


def test_install_after_remove_is_a_first_install_again(fake_root: Path) -> None:
    """dpkg passes the kept version to postinst after a remove; preinst tells it apart."""
    marker = fake_root / "var/lib/qmail-send-systemd/reinstall"
    assert _run_script(SCRIPTS / "deb/preinst", fake_root, "install", "0.9-1") == []
    assert marker.exists()
    calls = _run_script(SCRIPTS / "deb/postinst", fake_root, "configure", "0.9-1")
    assert calls == [f"{HELPER} configure --family deb"]
    assert not marker.parent.exists(), "no state of ours is left behind"
    # a first install proper leaves no marker either
    assert _run_script(SCRIPTS / "deb/preinst", fake_root, "install") == calls
    assert not marker.parent.exists()


def test_purge_removes_a_marker_left_by_an_aborted_install(fake_root: Path) -> None:
    _run_script(SCRIPTS / "deb/preinst", fake_root, "install", "0.9-1")
    _run_script(SCRIPTS / "deb/postrm", fake_root, "abort-install", "0.9-1")
    assert not (fake_root / "var/lib/qmail-send-systemd").exists()


def test_deb_purge_removes_every_file_setup_wrote_outside_var_qmail(fake_root: Path) -> None:
    """Issue 22: after purging all five packages, 8 msmtprc.bak.* with old passwords stayed."""
    config = fake_root / "etc/qmail-send-systemd"
    dropins = fake_root / "etc/systemd/system/qmail-send.service.d"
    mine = dropins / "50-qmail-send-systemd-submission.conf"
    for path in (config / "msmtprc", config / "msmtprc.bak.1", config / "smarthost-ca.pem",
                 mine, dropins / f"{mine.name}.bak.20261201T000000Z"):  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    theirs = fake_root / "etc/systemd/system/qmail-send.service.d/override.conf"
    routes = fake_root / "var/qmail/control/smtproutes"
    for path in (theirs, routes):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    _run_script(SCRIPTS / "deb/postrm", fake_root, "remove")
    assert mine.exists()  # remove keeps the configuration; purge takes it
    _run_script(SCRIPTS / "deb/postrm", fake_root, "purge")
    assert not config.exists()
    assert sorted(p.name for p in dropins.iterdir()) == ["override.conf"]  # the admin's stays
    assert routes.exists()  # qmail's own file
    theirs.unlink()
    _run_script(SCRIPTS / "deb/postrm", fake_root, "purge")
    assert not dropins.exists()


def test_rpm_postun_on_erase_is_plain_shell(fake_root: Path) -> None:
    """On erase the helper is gone: no call to it, only systemd's own reload (if booted)."""
    calls = _run_script(SCRIPTS / "rpm" / "postun", fake_root, "0", rpm=True)
    booted = Path("/run/systemd/system").is_dir()
    assert calls == (["systemctl daemon-reload"] if booted else [])


def test_deb_postrm_purge_forgets_the_enablement_without_the_helper(fake_root: Path) -> None:
    """dpkg runs postrm after our files are gone: on purge it asks deb-systemd-helper (when
    init-system-helpers is there) to forget the unit, and never calls our helper."""
    if not Path("/usr/bin/deb-systemd-helper").exists():
        pytest.skip("no /usr/bin/deb-systemd-helper (init-system-helpers) on this host")
    log = fake_root / "calls.log"
    stub = fake_root / "bin/deb-systemd-helper"
    stub.write_text(f'#!/bin/sh\necho "deb-systemd-helper $*" >> {log}\n', encoding="utf-8")
    stub.chmod(0o755)
    calls = _run_script(SCRIPTS / "deb/postrm", fake_root, "purge")
    assert calls == [
        "deb-systemd-helper purge qmail-send.service",
        "deb-systemd-helper unmask qmail-send.service",
    ]
    log.unlink()
    assert _run_script(SCRIPTS / "deb/postrm", fake_root, "remove") == []


def test_each_hook_sources_a_library_of_its_exact_main_package(
    packages: dict[str, payload.Package],
) -> None:
    """A dispatcher hook's FLUSH= names a file the main package ships, and the hook's package
    depends on that very version of it, so the two always match."""
    main_files = {f.destination for f in packages[MAIN].files}
    hooks = []
    for package in packages.values():
        for f in package.files:
            if f.source is None or f.kind is not payload.ContentKind.FILE:
                continue
            if f.source.startswith(payload.GENERATED_PREFIX):
                continue
            text = (PROJECT / f.source).read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if line.startswith("FLUSH="):
                    hooks.append(package.name)
                    assert line.removeprefix("FLUSH=") in main_files, f.source
                    assert package.name != MAIN
                    assert f"{MAIN} (= 1.0-1)" in package.relation(DEB, "depends", "1.0")
                    assert f"{MAIN} = 1.0-1" in package.relation(RPM, "depends", "1.0")
                    # ... and in the source packages, whatever revision a rebuild gives it.
                    assert f"{MAIN} (= ${{binary:Version}})" in package.source_relation(
                        DEB, "depends"
                    )
                    assert f"{MAIN} = %{{version}}-%{{release}}" in package.source_relation(
                        RPM, "depends"
                    )
    assert sorted(hooks) == [NETWORKD, NM]


def test_the_networkd_hook_passes_the_dispatchers_permission_check(
    packages: dict[str, payload.Package],
) -> None:
    """networkd-dispatcher's check_perms(): root:root, mode exactly 0755, else it never runs."""
    [hook] = [f for f in packages[NETWORKD].files if "/networkd-dispatcher/" in f.destination]
    assert hook.destination == "/usr/lib/networkd-dispatcher/routable.d/90-qmail-send"
    assert hook.mode == 0o755 and hook.formats == {DEB, RPM}
