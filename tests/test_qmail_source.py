"""QSS_QMAIL_SOURCE: the pinned notqmail source, checked before anything unpacks it."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from qss_toolkit.errors import ConfigurationError
from qss_toolkit.settings import settings
from qss_toolkit.smoke import qmail_source
from qss_toolkit.smoke.qmail_source import QmailSourceError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "notqmail" / qmail_source.ARCHIVE


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"not qmail\n"
        info = tarfile.TarInfo(f"{qmail_source.TOP}/README.md")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A small tar whose digest the module is made to pin (the real one is 1 MB)."""
    tar = _tar()
    monkeypatch.setattr(qmail_source, "TAR_SHA256", hashlib.sha256(tar).hexdigest())
    monkeypatch.setattr(qmail_source, "GZ_SHA256", "0" * 64)
    return tar


def test_a_good_file_recompressed_any_way_is_accepted(tmp_path: Path, pinned: bytes) -> None:
    for level in (1, 9):
        archive = tmp_path / f"{level}.tar.gz"
        archive.write_bytes(gzip.compress(pinned, compresslevel=level, mtime=level))
        assert qmail_source.qmail_source(str(archive)) == archive


def test_the_gz_digest_alone_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "n.tar.gz"
    archive.write_bytes(b"whatever bytes")
    monkeypatch.setattr(qmail_source, "GZ_SHA256", hashlib.sha256(b"whatever bytes").hexdigest())
    assert qmail_source.qmail_source(str(archive)) == archive


def test_a_directory_is_taken_with_the_archive_in_it(tmp_path: Path, pinned: bytes) -> None:
    (tmp_path / qmail_source.ARCHIVE).write_bytes(gzip.compress(pinned))
    assert qmail_source.qmail_source(f"{tmp_path}/") == tmp_path / qmail_source.ARCHIVE


def test_a_directory_without_the_archive_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(QmailSourceError) as e:
        qmail_source.qmail_source(str(tmp_path))
    text = str(e.value)
    assert "\n" not in text
    assert f"QSS_QMAIL_SOURCE: {tmp_path / qmail_source.ARCHIVE} does not exist" in text
    assert f"taken from {tmp_path})" in text


def test_a_missing_path_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(QmailSourceError) as e:
        qmail_source.qmail_source(str(missing))
    assert isinstance(e.value, ConfigurationError)
    assert e.value.return_code == 2
    assert str(e.value).startswith(f"QSS_QMAIL_SOURCE: {missing} does not exist")
    assert "point QSS_QMAIL_SOURCE at a copy of notqmail-1.09.tar.gz" in str(e.value)


def test_a_wrong_digest_is_refused_before_unpacking(tmp_path: Path, pinned: bytes) -> None:
    archive = tmp_path / qmail_source.ARCHIVE
    archive.write_bytes(gzip.compress(pinned + b"\0" * 512))  # one block more: another tar
    with pytest.raises(QmailSourceError) as e:
        qmail_source.qmail_source(str(archive))
    text = str(e.value)
    assert "\n" not in text
    assert f"{archive} is not notqmail 1.09 (tar sha256 " in text
    assert f"expected {qmail_source.TAR_SHA256}" in text


def test_a_file_that_is_not_gzip_is_refused(tmp_path: Path, pinned: bytes) -> None:
    archive = tmp_path / qmail_source.ARCHIVE
    archive.write_bytes(pinned)  # the right tar, uncompressed: not what the setting names
    with pytest.raises(QmailSourceError, match=r"\(not gzip, sha256 [0-9a-f]{64}"):
        qmail_source.qmail_source(str(archive))


def test_a_url_is_downloaded_once_into_the_cache(
    tmp_path: Path, pinned: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.tar.gz"
    served.write_bytes(gzip.compress(pinned))
    opened: list[str] = []

    def urlopen(url: str, timeout: float) -> io.BufferedReader:
        opened.append(url)
        return served.open("rb")

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    cache = tmp_path / "cache"
    first = qmail_source.qmail_source("https://example.org/n.tar.gz", cache=cache)
    second = qmail_source.qmail_source("https://example.org/n.tar.gz", cache=cache)
    assert first == second and first.parent == cache
    assert opened == ["https://example.org/n.tar.gz"]
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left


def test_a_bad_download_is_not_cached(
    tmp_path: Path, pinned: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.tar.gz"
    served.write_bytes(gzip.compress(b"a page that is not the archive"))
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: served.open("rb"))
    cache = tmp_path / "cache"
    with pytest.raises(QmailSourceError, match=r"taken from https://example.org/n.tar.gz\)"):
        qmail_source.qmail_source("https://example.org/n.tar.gz", cache=cache)
    assert list(cache.iterdir()) == []


def test_the_default_is_the_upstream_tag_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QSS_QMAIL_SOURCE", raising=False)
    assert settings().qmail_source == qmail_source.DEFAULT_URL
    assert qmail_source.DEFAULT_URL.endswith("/refs/tags/notqmail-1.09.tar.gz")


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/notqmail is not beside this tree")
def test_the_shared_copy_matches_both_pins() -> None:
    assert qmail_source.digests(SHARED) == (qmail_source.GZ_SHA256, qmail_source.TAR_SHA256)
