"""The NetworkManager dispatcher hook: which events flush, what it runs, and what it logs.

The hook sets a fixed PATH, so the environment cannot choose its programs, tests included.
Each test runs a copy of the shipped file in which only that PATH line differs (checked by
`hook_copy`): it points at a directory holding nothing but a recording `systemctl`, so a
command the hook should not run fails loudly on stderr instead of running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parent.parent / "packaging" / "networkmanager" / "90-qmail-send"
PATH_LINE = b"PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
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

# /bin/sh is dash on Debian and bash (in its sh mode) on Fedora: run the hook under both.
SHELLS = [
    pytest.param(("/bin/dash", "sh"), id="dash"),
    pytest.param(("/bin/bash", "sh"), id="bash-as-sh"),
]


class Hook:
    """A runnable copy of the hook whose PATH holds only a recording systemctl."""

    def __init__(self, tmp: Path, shell: tuple[str, str]) -> None:
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
        self.path = hook_copy(tmp / "90-qmail-send", f"PATH={self.bin}\n".encode())

    def set_active(self, active: bool) -> None:
        if active:
            self.active_flag.touch()
        else:
            self.active_flag.unlink(missing_ok=True)

    def run(
        self, *args: str | bytes, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        base = {"PATH": os.defpath, "LANG": "C.UTF-8"}
        started = time.monotonic()
        # As the kernel would: the shell with the flags of the hook's #! line.
        flags = HOOK.read_bytes().split(b"\n", 1)[0].split()[1:]
        proc = subprocess.run(
            [self.argv0, *flags, self.path, *args],
            executable=self.shell,
            env={**base, **(env or {})},
            capture_output=True,
            timeout=30,
            check=False,
            cwd=self.tmp,
        )
        assert time.monotonic() - started < 5, "the hook must return quickly"
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


def hook_copy(dest: Path, path_line: bytes) -> Path:
    """Copy the hook to `dest`, changing its PATH line and nothing else."""
    original = HOOK.read_bytes()
    assert original.count(PATH_LINE) == 1, "the hook must set exactly one fixed PATH"
    copy = original.replace(PATH_LINE, path_line)
    differing = [
        (a, b)
        for a, b in zip(original.splitlines(), copy.splitlines())
        if a != b  # the lines that the substitution touched
    ]
    assert differing == [(PATH_LINE.rstrip(b"\n"), path_line.rstrip(b"\n"))]
    dest.write_bytes(copy)
    dest.chmod(0o755)
    return dest


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Hook:
    return Hook(tmp_path, request.param)


def log_lines(proc: subprocess.CompletedProcess[bytes]) -> list[bytes]:
    return proc.stderr.splitlines()


def assert_ignored(hook: Hook, *args: str, env: dict[str, str] | None = None) -> None:
    """With the service active, the event runs no command, logs nothing, and injects nothing."""
    hook.set_active(True)
    proc = hook.run(*args, env=env)
    assert hook.calls() == []
    assert proc.stderr == b""
    assert not (hook.tmp / "pwned").exists()


@pytest.mark.parametrize("action", ["up", "vpn-up"])
def test_up_flushes_an_active_service(hook: Hook, action: str) -> None:
    hook.set_active(True)
    proc = hook.run("eth0", action)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert log_lines(proc) == [
        f'90-qmail-send: {action} on interface "eth0": flushing the qmail queue '
        f"(reload of {UNIT} queued)".encode()
    ]


@pytest.mark.parametrize("action", ["up", "vpn-up"])
def test_up_leaves_an_inactive_service_alone(hook: Hook, action: str) -> None:
    hook.set_active(False)
    proc = hook.run("eth0", action)
    assert hook.calls() == [IS_ACTIVE]
    assert proc.stderr == b""


def test_connectivity_full_flushes(hook: Hook) -> None:
    hook.set_active(True)
    # NetworkManager passes an empty interface with connectivity-change.
    proc = hook.run("", "connectivity-change", env={"CONNECTIVITY_STATE": "FULL"})
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert log_lines(proc) == [
        b'90-qmail-send: connectivity-change to FULL on interface "": flushing the qmail queue '
        b"(reload of qmail-send.service queued)"
    ]


@pytest.mark.parametrize(
    "state",
    [
        "LIMITED",
        "PORTAL",
        "NONE",
        "UNKNOWN",
        "",
        "full",
        " FULL",
        "FULL\n",
        "FULL; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "FULL\x1b[2J",
    ],
)
def test_connectivity_other_than_full_does_nothing(hook: Hook, state: str) -> None:
    assert_ignored(hook, "", "connectivity-change", env={"CONNECTIVITY_STATE": state})


def test_connectivity_state_unset_does_nothing(hook: Hook) -> None:
    assert_ignored(hook, "", "connectivity-change")


@pytest.mark.parametrize(
    "action",
    [
        "down",
        "pre-up",
        "pre-down",
        "vpn-down",
        "vpn-pre-up",
        "vpn-pre-down",
        "hostname",
        "dhcp4-change",
        "dhcp6-change",
        "reapply",
        "UP",
        "up ",
        "up\n",
        "-up",
        "",
        "$(touch pwned)",
    ],
)
def test_other_actions_exit_silently(hook: Hook, action: str) -> None:
    assert_ignored(hook, "eth0", action, env={"CONNECTIVITY_STATE": "FULL"})


def test_no_arguments_exit_silently(hook: Hook) -> None:
    assert_ignored(hook)


@pytest.mark.parametrize(
    ("interface", "logged"),
    [
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
    ],
)
def test_hostile_interface_names_are_data(hook: Hook, interface: bytes, logged: bytes) -> None:
    hook.set_active(True)
    proc = hook.run(interface, "up")
    # The name reaches no command: the argv is exactly the fixed one.
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert log_lines(proc) == [
        b'90-qmail-send: up on interface "' + logged + b'": flushing the qmail queue '
        b"(reload of qmail-send.service queued)"
    ]
    assert not (hook.tmp / "pwned").exists()
    assert sorted(p.name for p in hook.tmp.iterdir()) == sorted(
        ["bin", "calls", "active", "90-qmail-send"]
    )


def test_environment_cannot_choose_programs(hook: Hook) -> None:
    """PATH, ENV, BASH_ENV, IFS and exported functions from the environment change nothing."""
    evil = hook.tmp / "evil"
    evil.mkdir()
    marker = hook.tmp / "pwned"
    for name in ("systemctl", "printf", "[", "test"):
        script = evil / name
        script.write_text(f"#!/bin/sh\ntouch {marker}\n")
        script.chmod(0o755)
    startup = hook.tmp / "startup.sh"
    startup.write_text(f"touch {marker}\n")
    hook.set_active(True)
    proc = hook.run(
        "eth0",
        "up",
        env={
            "PATH": f"{evil}:{os.defpath}",
            "ENV": str(startup),
            "BASH_ENV": str(startup),
            "IFS": "e",
            "BASH_FUNC_systemctl%%": f"() {{ touch {marker}; }}",
            "SHELLOPTS": "xtrace",
            "PS4": "$(touch pwned)",
        },
    )
    assert not marker.exists()
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert len(log_lines(proc)) == 1


def test_failed_reload_is_logged_and_still_exits_zero(hook: Hook) -> None:
    hook.set_active(True)
    hook.reload_fails_flag.touch()
    proc = hook.run("eth0", "up")
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert log_lines(proc) == [
        b'90-qmail-send: up on interface "eth0": could not queue a reload of qmail-send.service'
    ]


def test_without_systemctl_exits_zero(tmp_path: Path) -> None:
    """A system without systemctl: the hook neither fails nor logs."""
    empty = tmp_path / "empty"
    empty.mkdir()
    copy = hook_copy(tmp_path / "90-qmail-send", f"PATH={empty}\n".encode())
    proc = subprocess.run([copy, "eth0", "up"], capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert proc.stderr == b""


def test_shipped_file_is_executable_posix_sh() -> None:
    assert HOOK.read_bytes().startswith(b"#!/bin/sh -p\n")
    assert HOOK.stat().st_mode & 0o777 == 0o755


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", str(HOOK)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
