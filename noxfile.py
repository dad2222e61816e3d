"""Thin nox sessions: each one calls `python -m qss_toolkit ...`, where the logic lives."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "packages", "sources", "smoke", "repo"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
GROUPS = PYPROJECT["dependency-groups"]


def _toolkit(session: nox.Session, command: str, *extra: str) -> None:
    session.run("python", "-m", "qss_toolkit", command, *extra, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Fast unit tests: no root, no containers."""
    session.install("-e", ".", *GROUPS["test"])
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy, shellcheck, systemd-analyze verify, lintian and rpmlint on dist/."""
    session.install("-e", ".", *GROUPS["lint"])
    _toolkit(session, "lint")


@nox.session
def packages(session: nox.Session) -> None:
    """Build every package into dist/ (nfpm by default; `-- --builder native` for dpkg/rpmbuild)."""
    session.install("-e", ".", *GROUPS["packages"])
    _toolkit(session, "packages")


@nox.session
def sources(session: nox.Session) -> None:
    """The Debian source package (.dsc) and the source RPM into dist/."""
    session.install("-e", ".", *GROUPS["packages"])
    _toolkit(session, "sources")


@nox.session
def smoke(session: nox.Session) -> None:
    """Boot each distro target with systemd as PID 1, install the packages, run the scenarios."""
    session.install("-e", ".", *GROUPS["test"])
    session.run("pytest", "-m", "container", "tests/container")  # the harness itself first
    _toolkit(session, "smoke")


@nox.session
def repo(session: nox.Session) -> None:
    """Build signed apt and dnf repositories from dist/ (key from QSS_SIGNING_KEY*)."""
    session.install("-e", ".", *GROUPS["packages"])
    _toolkit(session, "repo")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Print and write the benchmark table (builds, containers, flush latency)."""
    session.install("-e", ".", *GROUPS["test"], *GROUPS["packages"])
    _toolkit(session, "bench")
