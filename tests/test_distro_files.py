"""The committed debian/ and spec follow packaging/ (qss_toolkit.distro_files): a clone is a
Debian source tree and holds a spec, and neither drifts from the payload (packaging/nfpm/*.yaml),
packaging/changelog and __version__, which stay the one source of each."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from qss_toolkit import payload, version
from qss_toolkit.build import sources
from qss_toolkit.errors import ConfigurationError

PROJECT = Path(__file__).resolve().parents[1]
VERSION = version.read_version()


def test_the_committed_files_are_what_packaging_gives() -> None:
    """Fails when debian/changelog, the binary stanzas of debian/control, the maintainer
    scripts, debian/install-payload or the spec drift: run `python -m qss_toolkit distro-files`."""
    assert sources.derived_drift(PROJECT) == []


def test_the_changelog_is_packaging_changelogs_package_entries() -> None:
    entries = payload.parse_changelog((PROJECT / "debian/changelog").read_text("utf-8"))
    assert entries[0].version == f"{VERSION}-1"
    template = (PROJECT / "packaging/changelog").read_text("utf-8")
    project_only = re.findall(r"^  \* \[project\] (.*)$", template, re.M)
    assert project_only, "packaging/changelog marks the toolkit's and CI's changes"
    changes = {c for e in entries for c in e.changes}
    assert not {c for c in changes if "[project]" in c or c in project_only}
    assert len({e.version for e in entries}) == len(entries)


def test_each_package_yaml_has_its_stanza_and_hooks_follow_the_builds_version() -> None:
    control = (PROJECT / "debian/control").read_text("utf-8")
    packages = re.findall(r"^Package: (\S+)$", control, re.M)
    assert packages == [p.name for p in payload.load_packages()]
    main = packages[0]
    assert f"Depends: ${{misc:Depends}}, {main} (= ${{binary:Version}})" in control
    binaries = control.split("\nPackage: ", 1)[1]
    assert not re.search(r"\(= \d", binaries), "no literal version: a dch -i rebuild must install"
    spec = sources.spec_path(PROJECT).read_text("utf-8")
    assert f"Requires:       {main} = %{{version}}-%{{release}}" in spec
    assert not re.search(rf"Requires: +{main} = \d", spec)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """What distro_files reads and writes, copied to change on purpose."""
    for rel in ("debian", "packaging", "rpm", "units", "COPYING", "docs", "src/qmail_send_systemd"):
        source = PROJECT / rel
        if source.is_dir():
            shutil.copytree(source, tmp_path / rel, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        elif source.exists():
            shutil.copy2(source, tmp_path / rel)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def test_drift_of_each_kind_is_named_with_the_fix(tree: Path) -> None:
    assert sources.derived_drift(tree) == []
    _edit(tree / "packaging/nfpm/qmail-send-systemd-networkd.yaml", "  - networkd-dispatcher\n",
          "  - networkd-dispatcher\n  - ethtool\n")  # fmt: skip
    _edit(tree / "packaging/changelog", "  * ", "  * A new change.\n  * ")
    (tree / "debian/qmail-send-systemd.postinst").write_text("#!/bin/sh\nexit 0\n")
    problems = sources.derived_drift(tree)
    assert problems == [
        "debian/changelog differs from what packaging/ gives",
        "debian/control differs from what packaging/ gives",
        "debian/qmail-send-systemd.postinst differs from what packaging/ gives",
        "rpm/qmail-send-systemd.spec differs from what packaging/ gives",
    ]
    with pytest.raises(
        ConfigurationError, match=r"debian/changelog differs .*\(and 3 more\)"
    ) as info:
        sources.check_derived(tree)
    assert info.value.hint is not None and "distro-files" in info.value.hint
    written = sources.write_derived(tree)
    assert "debian/control" in written and sources.derived_drift(tree) == []
    control = (tree / "debian/control").read_text("utf-8")
    assert "(= ${binary:Version}), networkd-dispatcher, ethtool\n" in control
    assert "  * A new change.\n" in (tree / "debian/changelog").read_text("utf-8")


def test_the_source_stanza_is_kept_and_the_date_kept_while_the_text_is(tree: Path) -> None:
    before = (tree / "debian/changelog").read_text("utf-8")
    _edit(tree / "debian/control", "Standards-Version: 4.7.2", "Standards-Version: 4.7.3")
    assert sources.write_derived(tree) == []  # the source stanza is the hand-kept part
    assert (tree / "debian/changelog").read_text("utf-8") == before
    (tree / "debian/control").write_text("Package: x\n", "utf-8")
    with pytest.raises(ConfigurationError, match="does not begin with the Source stanza"):
        sources.derived_drift(tree)


def test_a_removed_script_leaves_no_stale_copy(tree: Path) -> None:
    _edit(
        tree / "packaging/nfpm/qmail-send-systemd.yaml",
        "      preinstall: packaging/scripts/deb/preinst\n",
        "",
    )
    assert "debian/qmail-send-systemd.preinst belongs to no package script any more" in (
        sources.derived_drift(tree)
    )
    sources.write_derived(tree)
    assert not (tree / "debian/qmail-send-systemd.preinst").exists()


def _deb822(text: str) -> list[dict[str, str]]:
    """The stanzas of a deb822 file (comments dropped, continuation lines joined)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0] in " \t":
            current[key] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return stanzas


def test_the_hand_kept_debian_files_are_there_and_well_formed() -> None:
    """DEP-8's tests exist and are executable, Salsa CI's pipeline is included, and uscan and
    the upstream metadata point at the project."""
    tests = _deb822((PROJECT / "debian/tests/control").read_text("utf-8"))
    assert len(tests) >= 2
    for stanza in tests:
        for name in stanza["Tests"].split():
            script = PROJECT / "debian/tests" / name
            assert script.is_file() and script.stat().st_mode & 0o111, name
        assert "qmail-send-systemd" in stanza["Depends"]
    real = [s for s in tests if s["Tests"] == "notqmail"]
    assert real and "needs-root" in real[0]["Restrictions"]
    salsa = yaml.safe_load((PROJECT / "debian/salsa-ci.yml").read_text("utf-8"))
    assert salsa["include"] == [
        "https://salsa.debian.org/salsa-ci-team/pipeline/raw/master/recipes/debian.yml"
    ]
    watch = (PROJECT / "debian/watch").read_text("utf-8")
    assert "\nversion=4\n" in "\n" + watch and "github.com/qmail-send-systemd/" in watch
    metadata = yaml.safe_load((PROJECT / "debian/upstream/metadata").read_text("utf-8"))
    control = _deb822((PROJECT / "debian/control").read_text("utf-8"))[0]
    assert metadata["Repository"] == control["Vcs-Git"]
    assert control["Standards-Version"] == "4.7.2"
    assert control["Vcs-Browser"] == control["Homepage"]
