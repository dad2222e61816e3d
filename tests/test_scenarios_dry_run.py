"""Every registered scenario, dry-run against a fake container: no root, no containers.

A scenario runs for real only as root in a booted root, so a typo in one (a missing ctx method,
a wrong keyword, a bad f-string) would otherwise wait for the smoke run. Here each one runs on
each family it applies to, against a container that answers every command (exit 0, empty
output, but for a few canned answers that let a scenario get further) and a host that passes
the time without waiting and runs nothing (ctx.host); a real time.sleep in a scenario module
fails. The fake is not qmail: a scenario may end in its own assertion failure (ScenarioFailed,
or an `assert`), but in no other exception (the smoke runner would not even report it as a
failure), and only after it has issued at least one command. Nothing here knows any one
scenario: new ones are covered as they are registered.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from fakes import RecordingContainer
from qss_toolkit import payload
from qss_toolkit.families import Family, PackageManager, _cached_identity
from qss_toolkit.smoke.scenarios.registry import (
    SCENARIOS,
    Host,
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    load_scenarios,
    scenario,
)
from qss_toolkit.smoke.targets import TARGETS, Target
from qss_toolkit.version import RELEASE, read_version

VERSION = read_version()
PREVIOUS_VERSION = "0.9.0"
SCENARIO_MODULES = load_scenarios.__module__.rpartition(".")[0]  # qss_toolkit.smoke.scenarios

# Command line (a regular expression, searched) -> (exit code, stdout): what a booted root
# would answer, just enough that a scenario's own bookkeeping (a PID, a counter, a cursor)
# parses. Everything else exits 0 with no output.
CANNED: tuple[tuple[str, tuple[int, str]], ...] = (
    (r"^systemctl is-active\b", (0, "active\n")),
    (r"^systemctl is-enabled\b", (0, "enabled\n")),
    (r"^systemctl show -P MainPID\b", (0, "4242\n")),
    (r"^systemctl show -P N\w+\b", (0, "0\n")),  # NRestarts, NAccepted: counters
    (r"--show-cursor", (0, "-- cursor: s=dry-run\n")),
    (r"^id -[ug]\b", (0, "1000\n")),
    (r"^cat /var/qmail/standin/ready$", (0, "4243\n")),
    (r"dpkg-query -W -f='\$\{db:Status-Status\}'|^rpm -q \S+ >/dev/null", (0, "installed\n")),
    (r"^dpkg-query -W -f=\$\{Version\}|^rpm -q --qf", (0, f"{VERSION}-{RELEASE}")),
)


class DryRunContainer(RecordingContainer):
    """RecordingContainer, answering the CANNED command lines by pattern; a booted one with
    a veth pair (VethContainer), as the hook scenarios need."""

    network_veth = True

    def host_veth(self) -> str:
        return "ve-qss-dry"

    def in_network(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "--net=/run/netns/qss-dry", *argv]

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        line = cmd if isinstance(cmd, str) else " ".join(cmd)
        for pattern, answer in CANNED:
            if re.search(pattern, line):
                self.answers.setdefault(line, answer)
                break
        return super().run(cmd, check=check, input=input, timeout=timeout, env=env)


class DryRunHost(Host):
    """Passes the time without waiting (monotonic() still grows with the host's, so a
    duration measured around a command is never zero), and records host commands instead
    of running them."""

    def __init__(self) -> None:
        self.slept = 0.0
        self.commands: list[list[str]] = []

    def monotonic(self) -> float:
        return time.monotonic() + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += seconds

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")


class SleptForReal(Exception):
    """A scenario called time.sleep instead of ctx.host.sleep."""


class _NoSleep:
    """The `time` module as a scenario module sees it in the dry run: time.sleep is refused."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        raise SleptForReal(f"time.sleep({seconds}): a scenario waits with ctx.host.sleep()")


def _target(family: Family) -> Target:
    return next(t for t in TARGETS.values() if t.family is family)


def _cases() -> list[tuple[str, Family]]:
    return [(name, f) for name, s in sorted(load_scenarios().items()) for f in s.families]


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A dist/ and a previous build of every package of ours in both families, as files that
    the package managers read by name alone (no dpkg-deb, no rpm on the host)."""
    identities: dict[Path, tuple[str, str]] = {}
    built = []
    for directory, version in ((tmp_path / "dist", VERSION), (tmp_path / "prev", PREVIOUS_VERSION)):
        directory.mkdir()
        for family in Family:
            for package in payload.project_packages():
                path = directory / family.manager.file_name(package.name, version)
                path.write_text(f"{family} package {package.name} {version}\n")
                identities[path] = (package.name, f"{version}-{RELEASE}")
        built.append(directory)

    def identity(manager: PackageManager, path: Path) -> tuple[str, str]:
        return identities[path]

    monkeypatch.setattr(PackageManager, "_identity", identity)
    yield built[0], built[1]
    _cached_identity.cache_clear()  # no fake identity outlives the test


def dry_run(
    scenario_: Scenario, family: Family, dists: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> BaseException | None:
    """Run `scenario_` once on `family`'s first target: the assertion failure it ended in, or
    None. Any other exception goes up, and so does a scenario that ran nothing in its
    container (nothing of it was tried)."""

    for module in list(sys.modules.values()):
        if module.__name__.startswith(SCENARIO_MODULES) and getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", _NoSleep())
    container = DryRunContainer(name=f"qss-dry-{scenario_.name}")
    ctx = ScenarioContext(_target(family), container, dists[0], dists[1], host=DryRunHost())
    failed: BaseException | None = None
    try:
        scenario_.function(ctx)
    except (ScenarioFailed, AssertionError) as exc:
        failed = exc
    assert container.commands, f"{scenario_.name} issued no command through its container"
    return failed


@pytest.mark.parametrize(("name", "family"), _cases(), ids=[f"{n}-{f}" for n, f in _cases()])
def test_scenario_runs_against_the_fake_container(
    name: str, family: Family, dists: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dry_run(SCENARIOS[name], family, dists, monkeypatch)


def test_a_broken_scenario_is_reported(
    dists: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    @scenario("test-only-broken")
    def broken(ctx: ScenarioContext) -> None:
        """Calls a method the context does not have, as a typo would."""
        ctx.reset()
        ctx.asert_active()  # type: ignore[attr-defined]

    @scenario("test-only-silent")
    def silent(ctx: ScenarioContext) -> None:
        """Fails before it runs anything in its container."""
        ctx.expect(False, "nothing to see")

    # A module of the scenarios' package that imports time, as one would.
    module = types.ModuleType(f"{SCENARIO_MODULES}.test_only_sleeper")
    module.time = time  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)

    @scenario("test-only-sleeper")
    def sleeper(ctx: ScenarioContext) -> None:
        """Waits on the host's own clock."""
        ctx.reset()
        module.time.sleep(30)

    try:
        # The dry run's cases are made from the registry: these are among them.
        assert {("test-only-broken", f) for f in Family} <= set(_cases())
        with pytest.raises(AttributeError, match="asert_active"):
            dry_run(SCENARIOS["test-only-broken"], Family.DEB, dists, monkeypatch)
        with pytest.raises(SleptForReal, match=r"ctx\.host\.sleep"):
            dry_run(SCENARIOS["test-only-sleeper"], Family.RPM, dists, monkeypatch)
        with pytest.raises(AssertionError, match="test-only-silent issued no command"):
            dry_run(SCENARIOS["test-only-silent"], Family.DEB, dists, monkeypatch)
    finally:
        for name in ("test-only-broken", "test-only-silent", "test-only-sleeper"):
            del SCENARIOS[name]


def test_the_dry_run_host_passes_time_without_sleeping_or_running() -> None:
    host = DryRunHost()
    before = host.monotonic()
    host.sleep(3600)
    assert host.monotonic() - before >= 3600
    assert host.run(["ip", "link", "set", "ve-x", "up"]).returncode == 0
    assert host.commands == [["ip", "link", "set", "ve-x", "up"]]
