"""The smoke scenarios' registry and the context they run in (testinfra-like helpers).

A scenario is a function registered with `@scenario("name", families=..., boot=...)`. It gets a
`ScenarioContext` and proves one lifecycle path by asserting observable state; it fails by
raising `ScenarioFailed` (the helpers do it with the command, its exit code and output) or
with `assert`. Scenarios of one target that share a `boot` kind run one after the other in one
container, so each scenario first puts the container into the state it needs
(`ctx.reset()`, `ctx.install_qmail()`, ...) instead of relying on the one before.

Other modules add scenarios by defining them in a module of `qss_toolkit.smoke.scenarios`:
`load_scenarios()` imports every such module.
"""

from __future__ import annotations

import importlib
import pkgutil
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit import PROJECT_ROOT, payload
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.families import Family, PackageFile, PackageManager
from qss_toolkit.run import run
from qss_toolkit.selection import select
from qss_toolkit.smoke import qmail_root
from qss_toolkit.smoke.engines.base import (
    BootKind,
    Container,
    ContainerCommandFailed,
    VethContainer,
)
from qss_toolkit.smoke.targets import Target

# Our packages and their names, from packaging/nfpm/*.yaml (payload.py): the main package, the
# ones that ship the NetworkManager hook, the networkd-dispatcher hook, /usr/sbin/sendmail and
# the submission route's qmail-remote, and the main package's unit.
NM_HOOK = "/usr/lib/NetworkManager/dispatcher.d/90-qmail-send"
NETWORKD_HOOK = "/usr/lib/networkd-dispatcher/routable.d/90-qmail-send"
SUBMISSION_QMAIL_REMOTE = "/usr/lib/qmail-send-systemd/qmail-remote"
MAIN = payload.main_package().name
NM_PACKAGE = payload.owner(NM_HOOK)
NETWORKD_PACKAGE = payload.owner(NETWORKD_HOOK)
SENDMAIL_PACKAGE = payload.owner("/usr/sbin/sendmail")
SUBMISSION_PACKAGE = payload.owner(SUBMISSION_QMAIL_REMOTE)
UNIT = payload.main_unit()
QUEUE = "/var/qmail/queue"
QUEUE_MESSAGE_DIRS = ("mess", "info", "local", "remote", "todo", "intd", "bounce")
CONTROL = "/var/qmail/control"
# qmail-send's caught signals in /proc/PID/status's SigCgt: HUP (bit 0), ALRM (13), TERM (14).
READY_SIGNALS = (1 << 0) | (1 << 13) | (1 << 14)
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"


# A handover state: our current package alone installed and enabled (not masked), qmail-send
# active on real qmail, nothing else changed since the install. A scenario that needs this
# start may take it over from the one before instead of purging and reinstalling (2.5 s each).
RUNNING_CURRENT = "running-current"


class ScenarioFailed(CheckFailed):
    """A scenario's assertion did not hold; the message says what was seen."""


ScenarioFunction = Callable[["ScenarioContext"], None]


class Host:
    """What a scenario does on the host beside its container: read the clock, pause, and run a
    host command (the host side of a veth pair). A scenario asks its context's host, never
    `time` or `run` directly, so that the fast suite's dry run of every scenario
    (tests/test_scenarios_dry_run.py) can pass the time without waiting and keep the host as
    it is."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(argv, check=check)


@dataclass(frozen=True)
class Scenario:
    name: str
    function: ScenarioFunction
    families: tuple[Family, ...]
    boot: BootKind
    description: str
    # Most of its time is spent waiting on timers (RestartSec=, a token's lifetime), not
    # working: it runs in a second shared boot of its target, beside the first (runner.plan).
    waits: bool = False

    def applies_to(self, target: Target) -> bool:
        return target.family in self.families


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    *,
    families: Sequence[str] = tuple(Family),
    boot: str = BootKind.SHARED,
    waits: bool = False,
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register the decorated function as the scenario `name` (names are unique).

    `families` and `boot` take the enums or their words ("deb", "offline"). `waits`: the
    scenario mostly sleeps on the service's or a token's timers (Scenario.waits).
    """
    try:
        kinds = tuple(Family(f) for f in families)
        boot_kind = BootKind(boot)
    except ValueError as exc:
        raise ConfigurationError(
            f"scenario {name!r}: {exc}",
            hint=f"families from {[f.value for f in Family]}, boot one of "
            f"{[b.value for b in BootKind]}",
        ) from None

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if name in SCENARIOS and SCENARIOS[name].function is not function:
            raise ConfigurationError(f"scenario {name!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        description = doc[0] if doc else ""
        SCENARIOS[name] = Scenario(name, function, kinds, boot_kind, description, waits)
        return function

    return register


def load_scenarios() -> dict[str, Scenario]:
    """Import every module of `qss_toolkit.smoke.scenarios` (each registers its scenarios)."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not module.ispkg and module.name != "registry":
            importlib.import_module(f"{__package__}.{module.name}")
    return SCENARIOS


def select_scenarios(names: Sequence[str] | None) -> list[Scenario]:
    """The scenarios named on the command line (all when none), or a usage error with a hint."""
    return select("scenario", names, load_scenarios())


def package_files(directory: Path, family: Family) -> dict[str, Path]:
    """Package name -> file for every package of `family` in `directory` (read from the files)."""
    return {name: f.path for name, f in family.manager.package_files(directory).items()}


@dataclass
class ScenarioContext:
    """What a scenario works with: its target, its container, the packages, and checks."""

    target: Target
    container: Container
    dist: Path  # the packages under test
    previous_dist: Path | None = None  # the "previous build": a lower version of the payload
    # container paths worth keeping when the scenario fails
    artifacts: list[str] = field(default_factory=lambda: [CONTROL, "/var/qmail/queue"])
    # The state the scenario before this one in the same container left and vouched for (its
    # `leaves`, set only after all its assertions held), or None; see RUNNING_CURRENT.
    handover: str | None = None
    leaves: str | None = None
    # The tree whose packaging/nfpm/*.yaml says which packages are ours (reset() purges them).
    project: Path = PROJECT_ROOT
    host: Host = field(default_factory=Host)

    # -- running commands -------------------------------------------------------------

    def run(
        self, cmd: str | Sequence[str], *, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run without checking the exit code."""
        return self.container.run(cmd, check=False, timeout=timeout, input=input)

    def check_output(self, cmd: str | Sequence[str], *, timeout: float = 120) -> str:
        """stdout of `cmd`; a non-zero exit fails the scenario with command, code and output."""
        return self.run_expect([0], cmd, timeout=timeout).stdout

    def run_expect(
        self,
        codes: Iterable[int],
        cmd: str | Sequence[str],
        *,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = self.run(cmd, timeout=timeout, input=input)
        allowed = list(codes)
        if result.returncode not in allowed:
            line = cmd if isinstance(cmd, str) else shlex.join(cmd)
            raise ScenarioFailed(
                str(ContainerCommandFailed(line, result.returncode, result.stdout + result.stderr))
                + f"\n(expected exit {' or '.join(map(str, allowed))})"
            )
        return result

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise ScenarioFailed(message)

    def veth(self, purpose: str) -> VethContainer:
        """The container as one with a veth pair (host0 inside), which `purpose` needs."""
        container = self.container
        if not isinstance(container, VethContainer) or not container.network_veth:
            raise ScenarioFailed(f"{purpose} needs a booted container with a veth pair (host0)")
        return container

    # -- packages ---------------------------------------------------------------------

    @property
    def manager(self) -> PackageManager:
        """The target's package manager (apt, dnf): every package step goes through it."""
        return self.target.family.manager

    @property
    def main(self) -> str:
        """The main package's name (packaging/nfpm/, `x-qss: {main: true}`)."""
        return payload.main_package(self.project).name

    def our_packages(self) -> list[str]:
        """Every package of packaging/nfpm/, the ones that depend on the main package first."""
        names = [p.name for p in payload.project_packages(self.project)]
        return [*names[1:], names[0]]

    def built(self, *, previous: bool = False) -> dict[str, PackageFile]:
        """Package name -> built package of the target's family, in dist (or the previous)."""
        directory = self.previous_dist if previous else self.dist
        if directory is None:
            raise ScenarioFailed("no previous build to upgrade from")
        found = self.manager.package_files(directory)
        if self.main not in found:
            raise ScenarioFailed(f"no {self.target.family} package {self.main} in {directory}")
        return found

    def packages(self, *, previous: bool = False) -> dict[str, Path]:
        """Package name -> package file (built(), as paths)."""
        return {name: f.path for name, f in self.built(previous=previous).items()}

    def _staged(self, names: Sequence[str] | None, previous: bool) -> tuple[list[PackageFile], str]:
        """Our packages `names` (the main one by default), put where the manager installs
        them from."""
        built = self.built(previous=previous)
        wanted = list(names) if names is not None else [self.main]
        missing = [n for n in wanted if n not in built]
        if missing:
            raise ScenarioFailed(f"package {missing[0]} not built in {self.dist}")
        where = self.manager.staging(previous=previous)
        files = [built[n] for n in wanted]
        self.manager.stage(self.container, files, list(built.values()), where)
        return files, where

    def install_packages(
        self, names: Sequence[str] | None = None, *, previous: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Install (or upgrade to) our packages (the main one by default) with the family's
        own front end (apt / dnf)."""
        files, where = self._staged(names, previous)
        cmd = self.manager.install(files, where)
        if not check:
            return self.run(cmd, timeout=300)
        return self.run_expect([0], cmd, timeout=300)

    def reinstall_packages(self, names: Sequence[str] | None = None) -> str:
        """Install the same build of installed packages again (apt --reinstall, dnf reinstall)."""
        files, where = self._staged(names, False)
        return self.check_output(self.manager.install(files, where, reinstall=True), timeout=300)

    def remove(self, names: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = self.manager.remove(list(names) if names is not None else [self.main])
        return self.run_expect([0], cmd, timeout=300)

    def purge(self, names: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = self.manager.purge(list(names) if names is not None else [self.main])
        return self.run_expect([0], cmd, timeout=300)

    def package_state(self, name: str | None = None) -> str:
        """The package manager's word for `name`'s state: installed, not-installed, or one
        between (dpkg's config-files, ...)."""
        return self.check_output(self.manager.query(name or self.main)).strip()

    def installed(self, name: str | None = None) -> bool:
        return self.package_state(name) == "installed"

    def deb_status(self, name: str) -> str:
        """dpkg's status of `name`: installed, config-files, ... or "not-installed"."""
        return self.package_state(name)

    def version(self, name: str | None = None) -> str:
        """The installed version, as PackageFile.version has it (1.1.0-1)."""
        return self.check_output(self.manager.query_version(name or self.main)).strip()

    def reset(self) -> None:
        """Purge every package of ours and clear admin state on the unit: a clean start.

        One shell command with dpkg/rpm directly (not apt/dnf): it runs before every scenario.
        """
        purge = self.manager.reset(self.our_packages())
        # unmask reloads systemd (90 ms of CPU): only when a scenario left the unit masked.
        clear = (
            f'[ "$(systemctl is-enabled {UNIT} 2>/dev/null)" != masked ]'
            f" || systemctl unmask {UNIT}; systemctl reset-failed {UNIT} 2>/dev/null; true"
        )
        self.check_output(f"{purge} && {{ {clear}; }}", timeout=300)

    # -- qmail -------------------------------------------------------------------------

    def install_qmail(self) -> None:
        """qmail as just installed: the root has notqmail built in (qmail_root.py, with
        INSTALL.ids's users); /var/qmail is unpacked again from the root's pristine copy, so
        that no queue, control change or mail of an earlier scenario is left."""
        self.check_output(qmail_root.fresh_qmail_command())

    def remove_qmail(self) -> None:
        self.check_output(["rm", "-rf", "/var/qmail"])

    # -- systemd -----------------------------------------------------------------------

    def is_active(self, unit: str = UNIT) -> str:
        return self.run(["systemctl", "is-active", unit]).stdout.strip()

    def is_enabled(self, unit: str = UNIT) -> str:
        return self.run(["systemctl", "is-enabled", unit]).stdout.strip()

    def assert_active(self, unit: str = UNIT, expected: str = "active") -> None:
        state = self.is_active(unit)
        if state != expected:
            status = self.run(["systemctl", "status", "--no-pager", "-n", "15", unit]).stdout
            raise ScenarioFailed(f"{unit} is {state!r}, expected {expected!r}\n{status}")

    def assert_enabled(self, unit: str = UNIT, expected: str = "enabled") -> None:
        state = self.is_enabled(unit)
        if state != expected:
            raise ScenarioFailed(f"systemctl is-enabled {unit}: {state!r}, expected {expected!r}")

    def reboot(self) -> None:
        """Reboot the root as an administrator does (`systemctl reboot`); returns once its
        systemd booted again and settled. Its files stay; /run and /tmp are new, and so is
        every process: a scenario's fixtures (a smarthost) are started again if it needs them."""
        self.container.reboot()

    def show(self, prop: str, unit: str = UNIT) -> str:
        return self.check_output(["systemctl", "show", "-P", prop, unit]).strip()

    @staticmethod
    def ready_pid_shell(main_pid: str) -> str:
        """Shell that prints the PID of a qmail-send that is `main_pid` or its child and has its
        TERM, ALRM and HUP handlers in place (SigCgt; a SIGALRM before that would kill it),
        and fails while there is none."""
        return (
            f"for p in $(pgrep -x qmail-send); do"
            f" {{ [ $p = {main_pid} ]"
            rf' || grep -q "^PPid:[[:space:]]*{main_pid}\$" /proc/$p/status; }}'
            f" && m=$(sed -n 's/^SigCgt:[[:space:]]*//p' /proc/$p/status)"
            f" && [ $((0x$m & {READY_SIGNALS})) = {READY_SIGNALS} ] && echo $p && exit 0;"
            " done; exit 1"
        )

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until this run of qmail-send has its signal handlers in place. qmail-send is the
        child of the unit's main process, the helper's `run` (which also holds ALRM and HUP
        back until qmail-send's first `status:` line); 1.0.0's unit has no helper in between:
        its main process is qmail-send."""
        self.assert_active()
        pid = self.show("MainPID")
        self.wait_for(
            f"( {self.ready_pid_shell(pid)} ) >/dev/null",
            timeout=timeout,
            message=f"qmail-send (PID {pid} or its child) to catch TERM, ALRM and HUP",
        )

    def qmail_send_pid(self) -> str:
        """The running qmail-send's PID, once it is ready for signals."""
        self.wait_ready()
        return self.check_output(self.ready_pid_shell(self.show("MainPID"))).strip()

    def main_pid_comm(self, unit: str = UNIT) -> str:
        pid = self.show("MainPID", unit)
        if pid in ("", "0"):
            return ""
        return self.run(["cat", f"/proc/{pid}/comm"]).stdout.strip()

    def journal_cursor(self) -> str:
        out = self.check_output(["journalctl", "-n0", "--show-cursor", "--quiet"])
        for line in out.splitlines():
            if line.startswith("-- cursor: "):
                return line[len("-- cursor: ") :].strip()
        raise ScenarioFailed(f"journalctl printed no cursor: {out!r}")

    def journal_sync(self) -> None:
        """Make journald store every message sent so far (it lags behind under load)."""
        self.check_output(["journalctl", "--sync"])

    def starts_since(self, cursor: str, unit: str = UNIT) -> int:
        """How many times systemd started `unit` after `cursor` (its start jobs that finished)."""
        self.journal_sync()
        out = self.check_output(
            ["journalctl", "--quiet", f"--after-cursor={cursor}", "-o", "export", f"UNIT={unit}"]
        )
        entries = out.split("\n\n")
        return sum("JOB_TYPE=start\n" in e and "JOB_RESULT=done" in e for e in entries)

    def wait_for(
        self, cmd: str, *, timeout: float = 20, message: str = "condition"
    ) -> subprocess.CompletedProcess[str]:
        """Poll the shell condition `cmd` in the container until it exits 0."""
        loop = f"for i in $(seq {int(timeout * 10)}); do {cmd} && exit 0; sleep 0.1; done; exit 1"
        result = self.run(loop, timeout=timeout + 30)
        if result.returncode != 0:
            raise ScenarioFailed(f"timed out after {timeout:.0f}s waiting for {message}: {cmd}")
        return result

    def file_list(self, *, exclude: Sequence[str] = (), hashed: str = "/etc") -> list[str]:
        """Every path of the root file system with type, mode, owner and link target, plus the
        content hash of each regular file under `hashed`: what a purge must restore."""
        prune = " -o ".join(f"-path {shlex.quote(p)}" for p in exclude)
        prune_expr = f"\\( {prune} \\) -prune -o" if prune else ""
        out = self.check_output(
            f"find / -xdev {prune_expr} -printf '%p %y %m %u:%g %l\\n' | sort;"
            f" find {shlex.quote(hashed)} -xdev {prune_expr} -type f -print0"
            " | sort -z | xargs -0r sha256sum",
            timeout=300,
        )
        return out.splitlines()

    def queue_digest(self) -> str:
        """Every message file's path, owner, mode and content hash (queue/lock and queue/pid,
        qmail-send's and qmail-queue's scratch, are left out): proves byte-for-byte identity."""
        dirs = " ".join(QUEUE_MESSAGE_DIRS)
        return self.check_output(
            f"cd {QUEUE} && find {dirs} -printf '%p %u:%g %m %y\\n' | sort"
            f" && find {dirs} -type f -print0 | sort -z | xargs -0r sha256sum"
        )
