"""The smoke scenarios' registry and the context they run in (testinfra-like helpers).

A scenario is a function registered with `@scenario("name", families=..., boot=...)`. It gets a
`ScenarioContext` and proves one lifecycle path by asserting observable state; it fails by
raising `ScenarioFailed` (the helpers do it with the command, its exit code and output) or
with `assert`. Scenarios of one target that share a `boot` kind run one after the other in one
container, so each scenario first puts the container into the state it needs
(`ctx.reset()`, `ctx.install_standin()`, ...) instead of relying on the one before.

Other modules add scenarios by defining them in a module named `qss_toolkit.scenarios_*`:
`load_scenarios()` imports every such module.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit import payload
from qss_toolkit.container import Container, ContainerCommandFailed
from qss_toolkit.errors import CheckFailed, ConfigurationError
from qss_toolkit.run import run
from qss_toolkit.targets import Target

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = PROJECT_ROOT / "tests" / "standin"

MAIN = "qmail-send-systemd"
NM_PACKAGE = "qmail-send-systemd-networkmanager"
NETWORKD_PACKAGE = "qmail-send-systemd-networkd"
SENDMAIL_PACKAGE = "qmail-send-systemd-sendmail"
UNIT = "qmail-send.service"
QUEUE = "/var/qmail/queue"
QUEUE_MESSAGE_DIRS = ("mess", "info", "local", "remote", "todo", "intd", "bounce")
STANDIN_LOGS = "/var/qmail/standin"  # the stand-in's own record of signals and runs
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/qmail-send.service"

# Where a scenario's container keeps what it is given.
DEB_DIR = "/srv/qss/debs"
RPM_REPO = "/srv/qss/rpms"
PREVIOUS_SUFFIX = "-previous"

# boot kinds: "shared" = the target's one booted container, in a network namespace of its own
# (--network-veth: NetworkManager may run in it, and no port or address meets the host's);
# "offline" = a root where systemd is not running.
BOOT_KINDS = ("shared", "offline")


# A handover state: our current package alone installed and enabled (not masked), qmail-send
# active from the stand-in, nothing else changed since the install. A scenario that needs this
# start may take it over from the one before instead of purging and reinstalling (2.5 s each).
RUNNING_CURRENT = "running-current"


class ScenarioFailed(CheckFailed):
    """A scenario's assertion did not hold; the message says what was seen."""


ScenarioFunction = Callable[["ScenarioContext"], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    function: ScenarioFunction
    families: tuple[str, ...]
    boot: str
    description: str

    def applies_to(self, target: Target) -> bool:
        return target.family in self.families


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, *, families: Sequence[str] = ("deb", "rpm"), boot: str = "shared"
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register the decorated function as the scenario `name` (names are unique)."""
    if boot not in BOOT_KINDS:
        raise ConfigurationError(f"scenario {name!r}: boot {boot!r} not in {BOOT_KINDS}")

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if name in SCENARIOS and SCENARIOS[name].function is not function:
            raise ConfigurationError(f"scenario {name!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        SCENARIOS[name] = Scenario(name, function, tuple(families), boot, doc[0] if doc else "")
        return function

    return register


def load_scenarios() -> dict[str, Scenario]:
    """Import every `qss_toolkit.scenarios_*` module (each registers its scenarios)."""
    import qss_toolkit

    for module in pkgutil.iter_modules(qss_toolkit.__path__):
        if module.name.startswith("scenarios_"):
            importlib.import_module(f"qss_toolkit.{module.name}")
    return SCENARIOS


@functools.lru_cache(maxsize=256)
def _package_identity(path: str, mtime_ns: int, family: str) -> tuple[str, str]:
    """(name, name-version-release) read from a package file; cached per file and mtime."""
    if family == "deb":
        out = run(
            ["dpkg-deb", "--show", "--showformat=${Package}\\t${Version}", path], capture=True
        )
        name, version = out.stdout.strip().split("\t")
        return name, f"{name}={version}"
    qf = "%{NAME}\\t%{NAME}-%{VERSION}-%{RELEASE}"
    out = run(["rpm", "-qp", "--nosignature", "--qf", qf, path], capture=True)
    name, nevra = out.stdout.strip().split("\t")
    return name, nevra


def package_identities(directory: Path, family: str) -> dict[str, tuple[Path, str]]:
    """Package name -> (file, versioned name) for every .deb or .rpm in `directory`."""
    found: dict[str, tuple[Path, str]] = {}
    pattern = "*.deb" if family == "deb" else "*.rpm"
    for path in sorted(directory.glob(pattern)):
        if path.name.endswith(".src.rpm"):
            continue
        name, versioned = _package_identity(str(path), path.stat().st_mtime_ns, family)
        found[name] = (path, versioned)
    return found


def package_files(directory: Path, family: str) -> dict[str, Path]:
    """Package name -> file for every .deb or .rpm in `directory` (read from the files)."""
    return {name: path for name, (path, _) in package_identities(directory, family).items()}


@dataclass
class ScenarioContext:
    """What a scenario works with: its target, its container, the packages, and checks."""

    target: Target
    container: Container
    dist: Path  # the packages under test
    previous_dist: Path | None = None  # the "previous build": same payload, lower version
    # container paths worth keeping when the scenario fails
    artifacts: list[str] = field(default_factory=lambda: [STANDIN_LOGS, "/var/qmail/queue"])
    # The state the scenario before this one in the same container left and vouched for (its
    # `leaves`, set only after all its assertions held), or None; see RUNNING_CURRENT.
    handover: str | None = None
    leaves: str | None = None

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

    # -- packages ---------------------------------------------------------------------

    def packages(self, *, previous: bool = False) -> dict[str, Path]:
        directory = self.previous_dist if previous else self.dist
        if directory is None:
            raise ScenarioFailed("no previous build to upgrade from")
        found = package_files(directory, self.target.family)
        if MAIN not in found:
            raise ScenarioFailed(f"no {self.target.family} package {MAIN} in {directory}")
        return found

    def install_packages(
        self, names: Sequence[str] = (MAIN,), *, previous: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Install (or upgrade to) our packages with the family's own front end (apt / dnf)."""
        files = self.packages(previous=previous)
        missing = [n for n in names if n not in files]
        if missing:
            raise ScenarioFailed(f"package {missing[0]} not built in {self.dist}")
        if self.target.family == "deb":
            where = DEB_DIR + (PREVIOUS_SUFFIX if previous else "")
            for name in names:
                self.container.copy_into(files[name], f"{where}/{files[name].name}")
            paths = " ".join(shlex.quote(f"{where}/{files[n].name}") for n in names)
            cmd = f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {paths}"
        else:
            repo = self._rpm_repo(files, previous=previous)
            # name-version-release: `dnf install NAME` would not upgrade an installed package.
            directory = self.previous_dist if previous else self.dist
            assert directory is not None
            ids = package_identities(directory, "rpm")
            nevras = " ".join(ids[n][1] for n in names)
            cmd = (
                f"dnf -y --disablerepo='*' --repofrompath=qss,{repo} --enablerepo=qss"
                f" --nogpgcheck --setopt=install_weak_deps=False install {nevras}"
            )
        if not check:
            return self.run(cmd, timeout=300)
        return self.run_expect([0], cmd, timeout=300)

    def _rpm_repo(self, files: dict[str, Path], *, previous: bool) -> str:
        """The container's dnf repository of `files`; made once per boot and set of files (a
        stamp names each file with its size and mtime), since every rpm scenario installs."""
        repo = RPM_REPO + (PREVIOUS_SUFFIX if previous else "")
        stamp = "".join(
            f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in sorted(files.values())
        )
        if self.run(["cat", f"{repo}/.qss-stamp"]).stdout == stamp:
            return repo
        self.check_output(["rm", "-rf", repo])
        for path in files.values():
            self.container.copy_into(path, f"{repo}/{path.name}")
        self.check_output(["createrepo_c", "--quiet", repo])
        self.run_expect([0], f"cat > {repo}/.qss-stamp", input=stamp)
        return repo

    def remove(self, names: Sequence[str] = (MAIN,)) -> subprocess.CompletedProcess[str]:
        if self.target.family == "deb":
            cmd = "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q " + " ".join(names)
        else:
            cmd = "dnf -y -q remove " + " ".join(names)
        return self.run_expect([0], cmd, timeout=300)

    def purge(self, names: Sequence[str] = (MAIN,)) -> subprocess.CompletedProcess[str]:
        if self.target.family != "deb":
            return self.remove(names)
        cmd = "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q " + " ".join(names)
        return self.run_expect([0], cmd, timeout=300)

    def installed(self, name: str = MAIN) -> bool:
        if self.target.family == "deb":
            return self.deb_status(name) == "installed"
        return self.run(["rpm", "-q", name]).returncode == 0

    def deb_status(self, name: str) -> str:
        """dpkg's status of `name`: installed, config-files, ... or "not-installed"."""
        out = self.run(["dpkg-query", "-W", "-f=${db:Status-Status}", name]).stdout.strip()
        return out or "not-installed"

    def version(self, name: str = MAIN) -> str:
        if self.target.family == "deb":
            return self.check_output(["dpkg-query", "-W", "-f=${Version}", name]).strip()
        return self.check_output(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name]).strip()

    def reset(self) -> None:
        """Purge every package of ours and clear admin state on the unit: a clean start.

        One shell command with dpkg/rpm directly (not apt/dnf): it runs before every scenario.
        A removed .deb keeps its conffiles and enablement state until purged, so any state
        but not-installed is purged.
        """
        names = " ".join(p.name for p in payload.load_packages())
        if self.target.family == "deb":
            find = (
                f"for p in {names}; do"
                " s=$(dpkg-query -W -f='${db:Status-Status}' $p 2>/dev/null) || continue;"
                ' [ -n "$s" ] && [ "$s" != not-installed ] && set -- "$@" $p; done;'
                ' [ $# -eq 0 ] || dpkg --purge "$@"'
            )
        else:
            find = (
                f'for p in {names}; do rpm -q $p >/dev/null && set -- "$@" $p; done;'
                ' [ $# -eq 0 ] || rpm -e "$@"'
            )
        # unmask reloads systemd (90 ms of CPU): only when a scenario left the unit masked.
        clear = (
            f'[ "$(systemctl is-enabled {UNIT} 2>/dev/null)" != masked ]'
            f" || systemctl unmask {UNIT}; systemctl reset-failed {UNIT} 2>/dev/null; true"
        )
        self.check_output(f"set --; {find} && {{ {clear}; }}", timeout=300)

    # -- qmail -------------------------------------------------------------------------

    def install_standin(self, *, install_ids: bool = False) -> None:
        """Put the qmail stand-in under /var/qmail (with qmail's users), as an admin would.
        Users that do not exist yet are made as system accounts, or with `install_ids` as
        qmail's INSTALL.ids makes them (ordinary accounts, uids from 1000)."""
        if not (STANDIN_DIR / "install.py").exists():
            raise ScenarioFailed(f"the qmail stand-in is missing: {STANDIN_DIR}/install.py")
        self.container.copy_into(STANDIN_DIR, "/srv/qss/standin")
        # A fresh tree each time: no queue, control file or log left by an earlier scenario.
        ids = " --install-ids" if install_ids else ""
        self.check_output(
            f"rm -rf /var/qmail && python3 /srv/qss/standin/install.py --root / --users{ids}"
        )

    def remove_qmail(self) -> None:
        self.check_output(["rm", "-rf", "/var/qmail"])

    def standin_log(self, name: str) -> str:
        """The stand-in's log /var/qmail/standin/NAME ("" while it does not exist)."""
        return self.run(["cat", f"{STANDIN_LOGS}/{name}"]).stdout

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

    def show(self, prop: str, unit: str = UNIT) -> str:
        return self.check_output(["systemctl", "show", "-P", prop, unit]).strip()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until this run of qmail-send has its signal handlers in place (a SIGALRM before
        that would kill it): the stand-in then writes its pid to standin/ready, after its
        first `status:` line. qmail-send is the child of the unit's main process, the
        helper's `run`, which holds ALRM and HUP back until that line."""
        self.assert_active()
        pid = self.show("MainPID")
        # 1.0.0's unit has no helper in between: its main process is qmail-send.
        self.wait_for(
            f'p=$(cat {STANDIN_LOGS}/ready) && {{ [ "$p" = {pid} ]'
            f" || grep -q '^PPid:[[:space:]]*{pid}$' /proc/$p/status; }}",
            timeout=timeout,
            message=f"qmail-send (PID {pid} or its child) to be ready for signals (standin/ready)",
        )

    def qmail_send_pid(self) -> str:
        """The running qmail-send's PID, as the stand-in wrote it when it became ready."""
        self.wait_ready()
        return self.check_output(["cat", f"{STANDIN_LOGS}/ready"]).strip()

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
