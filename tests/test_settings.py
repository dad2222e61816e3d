"""The QSS_* settings: read in one place, checked, and a misspelt name is named, not ignored."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT, settings
from qss_toolkit.__main__ import main
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.settings import Settings


def test_defaults_when_nothing_is_set() -> None:
    given = Settings.from_env({})
    assert given == Settings()
    assert given.cache_dir == Path.home() / ".cache" / "qmail-send-systemd"


def test_every_variable_reaches_its_setting(tmp_path: Path) -> None:
    env = {
        "QSS_DEBUG": "1",
        "QSS_KEEP_CONTAINER": "1",
        "QSS_CACHE": str(tmp_path),
        "QSS_ROOTFS_COPY": "copy",
        "QSS_PREVIOUS_DIST": str(tmp_path / "old"),
        "QSS_SIGNING_KEY_ID": " ABCD ",
        "QSS_SIGNING_KEY_FILE": str(tmp_path / "key.asc"),
        "QSS_SIGNING_KEY": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n...\n",
        "QSS_SIGNING_KEY_PASSPHRASE": " spaces count ",
        "QSS_SIGNING_KEY_EPHEMERAL": "1",
        "QSS_STANDIN_PYTHON": "/usr/bin/python3.9",
        "QSS_BACKEND": "podman",
        "QSS_QMAIL_SOURCE": " /srv/notqmail/ ",
    }
    assert set(env) | {settings.VERSION} == set(settings.KNOWN)
    given = Settings.from_env(env)
    assert given == Settings(
        debug=True,
        keep_container=True,
        cache=tmp_path,
        rootfs_copy="copy",
        previous_dist=tmp_path / "old",
        signing_key_id="ABCD",
        signing_key_file=tmp_path / "key.asc",
        signing_key="-----BEGIN PGP PRIVATE KEY BLOCK-----\n...",
        signing_key_passphrase=" spaces count ",  # noqa: S106 - a test's own
        signing_key_ephemeral=True,
        standin_python="/usr/bin/python3.9",
        backend="podman",
        qmail_source="/srv/notqmail/",
    )
    assert "spaces count" not in repr(given)  # a passphrase never reaches a log line
    assert "PRIVATE KEY" not in repr(given)  # nor does a key


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QSS_DEBUG", "yes"),
        ("QSS_KEEP_CONTAINER", "true"),
        ("QSS_ROOTFS_COPY", "cp"),
        ("QSS_BACKEND", "docker"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{name}='{value}' is not") as info:
        Settings.from_env({name: value})
    assert info.value.return_code == 2


def test_an_unknown_variable_is_named_with_the_nearest_known_one() -> None:
    env = {"QSS_KEEP_CONTAINERS": "1", "QSS_FROBNICATE": "1", "QSS_DEBUG": "1", "PATH": "/bin"}
    assert settings.unknown(env) == [
        "QSS_FROBNICATE is not a setting of the toolkit and is ignored (see docs/building.md)",
        "QSS_KEEP_CONTAINERS is not a setting of the toolkit and is ignored"
        " (did you mean QSS_KEEP_CONTAINER? see docs/building.md)",
    ]
    assert settings.unknown({"QSS_VERSION": "1.1.0"}) == []  # the toolkit's own, for nfpm


def test_the_entry_point_warns_once_per_unknown_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("QSS_SIGNING_KEYID", "ABCD")
    caplog.set_level(logging.WARNING, logger="qss_toolkit")
    assert main([]) == 2  # the usage line, after the warning
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "warning: QSS_SIGNING_KEYID is not a setting of the toolkit and is ignored"
        " (did you mean QSS_SIGNING_KEY_ID? see docs/building.md)"
    ]


def test_a_bad_value_stops_the_entry_point_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QSS_DEBUG", "on")
    assert main(["lint"]) == 2
    assert (
        capsys.readouterr().err == "error: QSS_DEBUG='on' is not 0 or 1 (fix: export QSS_DEBUG=1)\n"
    )


def test_the_building_guide_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "docs" / "building.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(QSS_[A-Z_]+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(settings.KNOWN)
