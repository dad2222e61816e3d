"""What the dispatcher hooks' tests share: a runnable copy of a hook, and what it ran.

Each hook sets a fixed PATH, so the environment cannot choose its programs, tests included, and
sources the main package's flush-on-reconnect.sh from its installed path. A test runs a copy of
the shipped hook in which only those two lines differ (checked by `hook_copy`): PATH names a
directory holding nothing but a recording `systemctl`, so a command the hook should not run
fails loudly on stderr instead of running, and FLUSH names an unchanged copy of the library.
tests/test_nm_hook.py and tests/test_networkd_hook.py use it, under dash and bash-as-sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from qss_toolkit import payload
from qss_toolkit.smoke.scenarios import registry

PACKAGING = Path(__file__).resolve().parent.parent / "packaging"
PROJECT = PACKAGING.parent
LIBRARY = PACKAGING / "hooks" / "flush-on-reconnect.sh"
PATH_LINE = b"PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
FLUSH_LINE = b"FLUSH=/usr/share/qmail-send-systemd/flush-on-reconnect.sh\n"
UNIT = "qmail-send.service"
IS_ACTIVE = ["is-active", "--quiet", UNIT]
RELOAD = ["--no-block", "reload", UNIT]

# Records each call as NUL-terminated fields: "A" + argument for each argument, then "E".
RECORDER = """#!/bin/sh
{{ for arg; do printf 'A%s\\0' "$arg"; done; printf 'E\\0'; }} >> '{calls}'
if [ "${{1-}}" = is-active ]; then
    [ -e '{active}' ] && exit 0
    exit 3
fi
[ -e '{reload_fails}' ] && exit 1
exit 0
"""

# /bin/sh is dash on Debian and bash (in its sh mode) on Fedora: run the hooks under both.
SHELLS = [
    pytest.param(("/bin/dash", "sh"), id="dash"),
    pytest.param(("/bin/bash", "sh"), id="bash-as-sh"),
]


# Shell startup and xtrace variables, an exported function, and a hostile PATH and IFS: a hook
# must run the same with all of them set (`-p`, its fixed PATH and IFS, `command`).
def hostile_environment(tmp: Path) -> tuple[dict[str, str], Path]:
    """The environment, and the file that any command it manages to run would create."""
    evil = tmp / "evil"
    evil.mkdir()
    marker = tmp / "pwned"
    for name in ("systemctl", "printf", "[", "test"):
        script = evil / name
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
    startup = tmp / "startup.sh"
    startup.write_text(f"touch {marker}\n")
    env = {
        "PATH": f"{evil}:{os.defpath}",
        "ENV": str(startup),
        "BASH_ENV": str(startup),
        "IFS": "e",
        "BASH_FUNC_systemctl%%": f"() {{ touch {marker}; }}",
        "BASH_FUNC_flush_on_reconnect%%": f"() {{ touch {marker}; }}",
        "SHELLOPTS": "xtrace",
        "PS4": "$(touch pwned)",
        "UNIT": "evil.service",
        "FLUSH": str(startup),
    }
    return env, marker


class Hook:
    """A runnable copy of `source` whose PATH holds only a recording systemctl."""

    def __init__(self, source: Path, tmp: Path, shell: tuple[str, str]) -> None:
        self.source = source
        self.tmp = tmp
        self.shell, self.argv0 = shell
        if not Path(self.shell).exists():
            pytest.skip(f"{self.shell} is not installed")
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls_file = tmp / "calls"
        self.active_flag = tmp / "active"
        self.reload_fails_flag = tmp / "reload-fails"
        recorder = self.bin / "systemctl"
        recorder.write_text(
            RECORDER.format(
                calls=str(self.calls_file),
                active=str(self.active_flag),
                reload_fails=str(self.reload_fails_flag),
            )
        )
        recorder.chmod(0o755)
        self.library = tmp / LIBRARY.name
        shutil.copyfile(LIBRARY, self.library)
        self.path = hook_copy(source, tmp / source.name, self.bin, self.library)

    def set_active(self, active: bool) -> None:
        if active:
            self.active_flag.touch()
        else:
            self.active_flag.unlink(missing_ok=True)

    def run(
        self, *args: str | bytes, env: dict[str, str | bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the copy as its dispatcher would: exit 0, nothing on stdout, and back at once
        (systemctl --no-block: the calls say so; how quickly is `nox -s bench`'s figure)."""
        base: dict[str, str | bytes] = {"PATH": os.defpath, "LANG": "C.UTF-8"}
        # As the kernel would: the shell with the flags of the hook's #! line.
        flags = self.source.read_bytes().split(b"\n", 1)[0].split()[1:]
        proc = subprocess.run(
            [self.argv0, *flags, self.path, *args],
            executable=self.shell,
            env={os.fsencode(k): os.fsencode(v) for k, v in {**base, **(env or {})}.items()},
            capture_output=True,
            timeout=30,
            check=False,
            cwd=self.tmp,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b""
        return proc

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        calls: list[list[str]] = [[]]
        for field in self.calls_file.read_bytes().split(b"\0")[:-1]:
            if field == b"E":
                calls.append([])
            else:
                assert field.startswith(b"A"), field
                calls[-1].append(os.fsdecode(field[1:]))
        assert calls[-1] == [], "a call was cut short"
        return calls[:-1]

    def assert_ignored(self, *args: str, env: dict[str, str | bytes] | None = None) -> None:
        """With the service active, the event runs no command, logs nothing, injects nothing."""
        self.set_active(True)
        proc = self.run(*args, env=env)
        assert self.calls() == []
        assert proc.stderr == b""
        assert not (self.tmp / "pwned").exists()

    def assert_untouched(self) -> None:
        """Nothing but the hook's own files and the recorder's log in its directory."""
        assert not (self.tmp / "pwned").exists()
        assert sorted(p.name for p in self.tmp.iterdir()) == sorted(
            ["bin", "calls", "active", self.source.name, LIBRARY.name]
        )


def hook_copy(source: Path, dest: Path, bindir: Path, library: Path) -> Path:
    """Copy the hook to `dest`, changing its PATH and FLUSH lines and nothing else."""
    original = source.read_bytes()
    assert original.count(PATH_LINE) == 1, "the hook must set exactly one fixed PATH"
    assert original.count(FLUSH_LINE) == 1, "the hook must name the installed library once"
    path_line = f"PATH={bindir}\n".encode()
    flush_line = f"FLUSH={library}\n".encode()
    copy = original.replace(PATH_LINE, path_line).replace(FLUSH_LINE, flush_line)
    differing = [
        (a, b)
        for a, b in zip(original.splitlines(), copy.splitlines())
        if a != b  # the lines that the substitution touched
    ]
    assert differing == [
        (PATH_LINE.rstrip(b"\n"), path_line.rstrip(b"\n")),
        (FLUSH_LINE.rstrip(b"\n"), flush_line.rstrip(b"\n")),
    ]
    dest.write_bytes(copy)
    dest.chmod(0o755)
    return dest


def flushing_line(event: str, logged: bytes) -> bytes:
    return (
        f'90-qmail-send: {event} on interface "'.encode()
        + logged
        + f'": flushing the qmail queue (reload of {UNIT} queued)'.encode()
    )


# Interface names as the kernel allows them (any byte but NUL and '/'; NetworkManager and
# networkd pass them on) and as each hook must log them: printable, one line, at most 64 bytes.
HOSTILE_NAMES: list[tuple[bytes, bytes]] = [
    (b"my wifi", b"my?wifi"),
    (b"it's", b"it's"),
    (b'a"b', b"a?b"),
    (b"back\\slash", b"back?slash"),
    (b"$(touch pwned)", b"$(touch?pwned)"),
    (b"`touch pwned`", b"`touch?pwned`"),
    (b"eth0\n90-qmail-send: forged", b"eth0?90-qmail-send:?forged"),
    (b"eth0\r\x1b[2K", b"eth0??[2K"),
    (b"-n", b"-n"),
    (b"--no-block", b"--no-block"),
    (b"-e \\c", b"-e??c"),
    (b"%s%n%d", b"%s%n%d"),
    (b"caf\xc3\xa9", b"caf??"),
    (b"bad\xff\xfe", b"bad??"),
    (b"*", b"*"),
    (b"x" * 100, b"x" * 64 + b"..."),
]


def without_systemctl(
    source: Path, tmp: Path, *args: str | bytes, env: dict[str, str | bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a copy of `source` whose PATH holds no systemctl at all, as its dispatcher would."""
    empty = tmp / "empty"
    empty.mkdir()
    library = tmp / LIBRARY.name
    shutil.copyfile(LIBRARY, library)
    copy = hook_copy(source, tmp / source.name, empty, library)
    environment = {os.fsencode(k): os.fsencode(v) for k, v in (env or {}).items()}
    return subprocess.run(
        [copy, *args], env=environment, capture_output=True, timeout=30, check=False
    )


def shellcheck(*scripts: Path) -> subprocess.CompletedProcess[str]:
    """shellcheck as lint runs it: from the project root, following the sourced library."""
    program = shutil.which("shellcheck")
    if program is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    return subprocess.run(
        [program, "-x", "--shell=sh", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROJECT,
    )


class Dispatcher:
    """How one dispatcher calls its hook with an online event for an interface."""

    def __init__(self, source: Path, event: str, with_interface: Callable[[str | bytes], Call]):
        self.source = source
        self.event = event  # what the hook logs for it
        self.with_interface = with_interface

    def online(self, hook: Hook, interface: str | bytes = "eth0", **env: str | bytes) -> Result:
        args, base = self.with_interface(interface)
        return hook.run(*args, env={**base, **env})


Call = tuple[tuple[str | bytes, ...], dict[str, str | bytes]]
Result = subprocess.CompletedProcess[bytes]


def _source(destination: str) -> Path:
    """The file of packaging/ that a package of packaging/nfpm/ installs as `destination`."""
    [source] = [
        f.source
        for p in payload.project_packages()
        for f in p.files
        if f.destination == destination and f.source
    ]
    return PROJECT / source


# Each hook as its package installs it (the installed paths are the smoke scenarios').
NM_HOOK = _source(registry.NM_HOOK)
NETWORKD_HOOK = _source(registry.NETWORKD_HOOK)


def _networkmanager(name: str | bytes) -> Call:
    return (name, "up"), {"CONNECTIVITY_STATE": "FULL"}


def _networkd(name: str | bytes) -> Call:
    """No arguments, the link in the environment (networkd-dispatcher's run_hooks_for_state)."""
    return (), {"STATE": "routable", "IFACE": name}


DISPATCHERS = [
    pytest.param(Dispatcher(NM_HOOK, "up", _networkmanager), id="NetworkManager"),
    pytest.param(Dispatcher(NETWORKD_HOOK, "routable", _networkd), id="networkd-dispatcher"),
]
