"""qmail's source for the smoke roots: notqmail 1.09, from one setting, checked before use.

QSS_QMAIL_SOURCE names where the source comes from: a file, a directory that holds
`notqmail-1.09.tar.gz`, or an http(s) URL (by default the upstream tag's archive, so that a
builder with internet access needs nothing). Whatever the place, the file is checked against a
pinned digest before anything unpacks it: the sha256 of the decompressed tar (the forge may
recompress its archives, the tar stream stays the same), or of the .tar.gz as
../shared/notqmail/README.md gives it. A download is cached in the toolkit's cache directory under
the pinned digest, so it is fetched once. A missing or mismatched file is a one-line error that
names the setting and where the file came from.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from qss_toolkit.errors import ConfigurationError
from qss_toolkit.settings import QMAIL_SOURCE, QMAIL_SOURCE_DEFAULT, settings

log = logging.getLogger("qss_toolkit")

VERSION = "1.09"
ARCHIVE = f"notqmail-{VERSION}.tar.gz"
DEFAULT_URL = QMAIL_SOURCE_DEFAULT
# The directory the archive unpacks into (the forge's prefix for a tag archive).
TOP = f"notqmail-notqmail-{VERSION}"
# sha256 of the decompressed tar: the same whoever compressed it (the key of the built roots).
TAR_SHA256 = "3ad8aa059b1d9f18a6b64a7b69e25fd7f143b92152be293f434dd12ad9d3e651"
# sha256 of the .tar.gz made with `git archive ... | gzip -n -9` (../shared/notqmail/README.md).
GZ_SHA256 = "45b873050d995d9303a9bfbd3c48551e9ae4e2a8ca2820ac06ac06f8c8859dea"
CHUNK = 1 << 20
DOWNLOAD_TIMEOUT = 120.0


class QmailSourceError(ConfigurationError):
    """qmail's source is missing, unreadable or not the pinned one (exit 2)."""


def _fail(problem: str, where: str) -> QmailSourceError:
    return QmailSourceError(
        f"{QMAIL_SOURCE}: {problem} (qmail's source, {ARCHIVE}, taken from {where})",
        hint=f"point {QMAIL_SOURCE} at a copy of {ARCHIVE} (a file, the directory holding it,"
        f" or a URL; default {DEFAULT_URL})",
    )


def digests(path: Path) -> tuple[str, str]:
    """(sha256 of the file, sha256 of its gzip-decompressed content); the second is "" when
    the file is not gzip."""
    whole = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            whole.update(chunk)
    inner = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                inner.update(chunk)
    except (OSError, EOFError, zlib.error):
        return whole.hexdigest(), ""
    return whole.hexdigest(), inner.hexdigest()


def verify(path: Path, where: str) -> Path:
    """`path` if it is the pinned source (either digest), else QmailSourceError."""
    try:
        whole, inner = digests(path)
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror or e}", where) from e
    if GZ_SHA256 not in (whole, inner) and inner != TAR_SHA256:
        got = f"tar sha256 {inner}" if inner else f"not gzip, sha256 {whole}"
        raise _fail(f"{path} is not notqmail {VERSION} ({got}, expected {TAR_SHA256})", where)
    return path


def _local(value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        path = path / ARCHIVE
    if not path.is_file():
        raise _fail(f"{path} does not exist", value)
    return verify(path, value)


def _download(url: str, cache: Path) -> Path:
    """The URL's file, from the cache when an earlier download verified."""
    cached = cache / f"notqmail-{TAR_SHA256[:16]}.tar.gz"
    if cached.is_file():
        return verify(cached, f"{url}, cached as {cached}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{cached.name}.tmp-{os.getpid()}"
    log.info("downloading qmail's source from %s", url)
    try:
        # http(s) only: qmail_source() sends nothing else here
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT)  # noqa: S310
        with response, tmp.open("wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
        verify(tmp, url)
        tmp.rename(cached)
    except (urllib.error.URLError, OSError) as e:
        raise _fail(f"cannot download it: {getattr(e, 'reason', None) or e}", url) from e
    finally:
        tmp.unlink(missing_ok=True)
    return cached


def qmail_source(value: str | None = None, *, cache: Path | None = None) -> Path:
    """The verified notqmail archive that QSS_QMAIL_SOURCE (or `value`) names."""
    value = value if value is not None else settings().qmail_source
    if value.startswith(("http://", "https://")):
        return _download(value, cache or settings().cache_dir / "qmail-source")
    return _local(value)
