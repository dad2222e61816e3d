"""Every QSS_* environment variable, read in one place into one typed, frozen object.

`Settings.from_env()` reads and checks them (a bad value is a one-line usage error); the rest of
the toolkit asks `settings()` and never reads os.environ for a QSS_* name itself. A QSS_* name
that nothing reads is most likely a misspelling, silently ignored otherwise: `warn_unknown()`
names it with the nearest known one. README's "Settings" table lists the same variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit.errors import ConfigurationError
from qss_toolkit.selection import suggestion

log = logging.getLogger("qss_toolkit")

PREFIX = "QSS_"

DEBUG = "QSS_DEBUG"
KEEP_CONTAINER = "QSS_KEEP_CONTAINER"
CACHE = "QSS_CACHE"
ROOTFS_COPY = "QSS_ROOTFS_COPY"
PREVIOUS_DIST = "QSS_PREVIOUS_DIST"
SIGNING_KEY_ID = "QSS_SIGNING_KEY_ID"
SIGNING_KEY_FILE = "QSS_SIGNING_KEY_FILE"
SIGNING_KEY = "QSS_SIGNING_KEY"  # the armored key itself: a CI secret is a variable, not a file
SIGNING_KEY_PASSPHRASE = "QSS_SIGNING_KEY_PASSPHRASE"  # noqa: S105 - a variable's name
SIGNING_KEY_EPHEMERAL = "QSS_SIGNING_KEY_EPHEMERAL"
STANDIN_PYTHON = "QSS_STANDIN_PYTHON"
BACKEND = "QSS_BACKEND"
QMAIL_SOURCE = "QSS_QMAIL_SOURCE"
# The default of QMAIL_SOURCE: the upstream tag's archive (qmail_source.py checks its digest).
QMAIL_SOURCE_DEFAULT = "https://github.com/notqmail/notqmail/archive/refs/tags/notqmail-1.09.tar.gz"
# Not a setting: the toolkit sets it for nfpm, which fills it into `version: ${QSS_VERSION}`.
VERSION = "QSS_VERSION"

KNOWN = (
    DEBUG,
    KEEP_CONTAINER,
    CACHE,
    ROOTFS_COPY,
    PREVIOUS_DIST,
    SIGNING_KEY_ID,
    SIGNING_KEY_FILE,
    SIGNING_KEY,
    SIGNING_KEY_PASSPHRASE,
    SIGNING_KEY_EPHEMERAL,
    STANDIN_PYTHON,
    BACKEND,
    QMAIL_SOURCE,
    VERSION,
)
COPY_METHODS = ("overlay", "copy")
BACKENDS = ("nspawn", "podman")  # smoke.runner.BACKENDS has their classes


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "")
    if value not in ("", "0", "1"):
        raise ConfigurationError(f"{name}={value!r} is not 0 or 1", hint=f"export {name}=1")
    return value == "1"


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


@dataclass(frozen=True)
class Settings:
    """The toolkit's settings; each field says which variable it comes from."""

    debug: bool = False  # QSS_DEBUG=1: log every command with its duration, tracebacks
    keep_container: bool = False  # QSS_KEEP_CONTAINER=1: keep smoke containers and roots
    cache: Path | None = None  # QSS_CACHE: instead of ~/.cache/qmail-send-systemd
    rootfs_copy: str = "overlay"  # QSS_ROOTFS_COPY: how a run gets its private root
    previous_dist: Path | None = None  # QSS_PREVIOUS_DIST: the upgrade scenarios' old build
    signing_key_id: str | None = None  # QSS_SIGNING_KEY_ID
    signing_key_file: Path | None = None  # QSS_SIGNING_KEY_FILE
    signing_key: str | None = field(default=None, repr=False)  # QSS_SIGNING_KEY: armored key
    signing_key_passphrase: str | None = field(default=None, repr=False)  # ..._PASSPHRASE
    signing_key_ephemeral: bool = False  # QSS_SIGNING_KEY_EPHEMERAL=1: a throwaway key
    standin_python: str | None = None  # QSS_STANDIN_PYTHON: the stand-in tests' interpreter
    backend: str = "nspawn"  # QSS_BACKEND: the smoke tests' container engine (as --backend)
    # QSS_QMAIL_SOURCE: notqmail's source for the smoke roots (a file, its directory or a URL)
    qmail_source: str = QMAIL_SOURCE_DEFAULT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        copy = env.get(ROOTFS_COPY, "") or "overlay"
        if copy not in COPY_METHODS:
            raise ConfigurationError(
                f"{ROOTFS_COPY}={copy!r} is not a copy method", hint=f"use one of {COPY_METHODS}"
            )
        backend = env.get(BACKEND, "").strip() or "nspawn"
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"{BACKEND}={backend!r} is not a container engine", hint=f"use one of {BACKENDS}"
            )
        return cls(
            debug=_flag(env, DEBUG),
            keep_container=_flag(env, KEEP_CONTAINER),
            cache=_path(env, CACHE),
            rootfs_copy=copy,
            previous_dist=_path(env, PREVIOUS_DIST),
            signing_key_id=_text(env, SIGNING_KEY_ID),
            signing_key_file=_path(env, SIGNING_KEY_FILE),
            signing_key=env.get(SIGNING_KEY, "").strip() or None,
            # A passphrase is taken as it is: spaces may belong to it.
            signing_key_passphrase=env.get(SIGNING_KEY_PASSPHRASE) or None,
            signing_key_ephemeral=_flag(env, SIGNING_KEY_EPHEMERAL),
            standin_python=_text(env, STANDIN_PYTHON),
            backend=backend,
            qmail_source=_text(env, QMAIL_SOURCE) or QMAIL_SOURCE_DEFAULT,
        )

    @property
    def cache_dir(self) -> Path:
        """Where the rootfs cache, throwaway smoke keys and bench scratch live."""
        return self.cache or Path.home() / ".cache" / "qmail-send-systemd"


def settings() -> Settings:
    """The settings as the environment has them now (read each time: tests change it)."""
    return Settings.from_env()


def unknown(env: Mapping[str, str] | None = None) -> list[str]:
    """One line for each QSS_* variable that no setting reads, with the nearest known name."""
    env = os.environ if env is None else env
    lines = []
    bare = [k.removeprefix(PREFIX) for k in KNOWN]  # the prefix alone would make them all near
    for name in sorted(n for n in env if n.startswith(PREFIX) and n not in KNOWN):
        hint = suggestion(name.removeprefix(PREFIX), bare).replace(" mean ", f" mean {PREFIX}")
        lines.append(
            f"{name} is not a setting of the toolkit and is ignored ({hint}see docs/building.md)"
        )
    return lines


def warn_unknown(env: Mapping[str, str] | None = None) -> None:
    for line in unknown(env):
        log.warning("warning: %s", line)
