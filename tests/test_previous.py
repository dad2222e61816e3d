"""The upgrade scenarios' previous version: the release built from its own commit, cached."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.smoke import previous

RELEASE = previous.PREVIOUS_RELEASE
HELPER_INIT = "usr/share/qmail-send-systemd/qmail_send_systemd/__init__.py"


def _need(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


def _git_show(path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "show", f"{RELEASE.commit}:{path}"],
        check=True,
        capture_output=True,
    ).stdout


def _have_commit() -> bool:
    found = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "cat-file", "-e", f"{RELEASE.commit}^{{commit}}"],
        check=False,
        capture_output=True,
    )
    return found.returncode == 0


def test_the_release_is_built_from_its_commit_and_then_taken_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need("git", "nfpm", "dpkg-deb")
    if not _have_commit():
        pytest.skip(f"{RELEASE.commit[:12]} is not in this clone (shallow)")
    directory = previous.packages(["deb"], cache=tmp_path)
    debs = previous.package_files(directory, RELEASE, "deb")
    assert [p.name for p in debs if p.name.startswith("qmail-send-systemd_")] == [
        f"qmail-send-systemd_{RELEASE.version}-1_all.deb"
    ]
    main = next(p for p in debs if p.name.startswith("qmail-send-systemd_"))
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(main), str(unpacked)], check=True)
    # The release's own files, not today's tree under the release's version.
    assert (unpacked / HELPER_INIT).read_bytes() == _git_show("src/qmail_send_systemd/__init__.py")
    assert (unpacked / "usr/lib/systemd/system/qmail-send.service").read_bytes() == _git_show(
        "units/qmail-send.service"
    )

    def no_build(*args: object) -> Path:
        raise AssertionError("the cached packages were built again")

    monkeypatch.setattr(previous, "build", no_build)
    assert previous.packages(["deb"], cache=tmp_path) == directory


def test_a_format_not_yet_cached_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, ...]] = []

    def fake_build(
        release: previous.Release, formats: tuple[str, ...], work: Path, _: Path
    ) -> Path:
        out = work / "packages"
        out.mkdir()
        for fmt in formats:
            name = Family(fmt).manager.file_name("qmail-send-systemd", release.version)
            (out / name).write_text(fmt)
        built.append(tuple(formats))
        return out

    monkeypatch.setattr(previous, "build", fake_build)
    first = previous.packages(["deb"], cache=tmp_path)
    second = previous.packages(["rpm"], cache=tmp_path)
    assert first == second
    # The deb already there is built again with the rpm, so the directory stays one build.
    assert built == [("deb",), ("deb", "rpm")]
    assert {p.name for p in first.iterdir()} == {
        f"qmail-send-systemd_{RELEASE.version}-1_all.deb",
        f"qmail-send-systemd-{RELEASE.version}-1.noarch.rpm",
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_clone_without_the_commit_is_told_how_to_get_it(tmp_path: Path) -> None:
    _need("git")
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    absent = previous.Release("0.9.0", "0" * 40)
    with pytest.raises(ConfigurationError, match="is not in this clone") as raised:
        previous.packages(["deb"], absent, cache=tmp_path / "cache", repository=tmp_path / "repo")
    assert "git fetch --unshallow" in str(raised.value.hint)
    assert "QSS_PREVIOUS_DIST" in str(raised.value.hint)


def test_only_the_release_s_own_version_counts(tmp_path: Path) -> None:
    for name in (
        f"qmail-send-systemd_{RELEASE.version}-1_all.deb",
        "qmail-send-systemd_9.9.9-1_all.deb",
        f"qmail-send-systemd-{RELEASE.version}-1.noarch.rpm",
    ):
        (tmp_path / name).write_text("")
    assert [p.name for p in previous.package_files(tmp_path, RELEASE, "deb")] == [
        f"qmail-send-systemd_{RELEASE.version}-1_all.deb"
    ]
    assert len(previous.package_files(tmp_path, RELEASE, "rpm")) == 1
