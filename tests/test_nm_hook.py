"""The NetworkManager dispatcher hook: which events flush, what it runs, and what it logs.

The running copy of the hook and its recording systemctl are tests/hook_harness.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_harness import (
    HOSTILE_NAMES,
    IS_ACTIVE,
    PACKAGING,
    RELOAD,
    SHELLS,
    UNIT,
    Hook,
    flushing_line,
    hostile_environment,
    shellcheck,
    without_systemctl,
)

HOOK = PACKAGING / "networkmanager" / "90-qmail-send"


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Hook:
    return Hook(HOOK, tmp_path, request.param)


@pytest.mark.parametrize("action", ["up", "vpn-up"])
def test_up_flushes_an_active_service(hook: Hook, action: str) -> None:
    hook.set_active(True)
    proc = hook.run("eth0", action)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line(action, b"eth0")]


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
    assert proc.stderr.splitlines() == [flushing_line("connectivity-change to FULL", b"")]


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
    hook.assert_ignored("", "connectivity-change", env={"CONNECTIVITY_STATE": state})


def test_connectivity_state_unset_does_nothing(hook: Hook) -> None:
    hook.assert_ignored("", "connectivity-change")


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
    hook.assert_ignored("eth0", action, env={"CONNECTIVITY_STATE": "FULL"})


def test_no_arguments_exit_silently(hook: Hook) -> None:
    hook.assert_ignored()


@pytest.mark.parametrize(("interface", "logged"), HOSTILE_NAMES)
def test_hostile_interface_names_are_data(hook: Hook, interface: bytes, logged: bytes) -> None:
    hook.set_active(True)
    proc = hook.run(interface, "up")
    # The name reaches no command: the argv is exactly the fixed one.
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("up", logged)]
    hook.assert_untouched()


def test_environment_cannot_choose_programs(hook: Hook) -> None:
    """PATH, ENV, BASH_ENV, IFS, exported functions and the hook's own names change nothing."""
    env, marker = hostile_environment(hook.tmp)
    hook.set_active(True)
    proc = hook.run("eth0", "up", env={**env})
    assert not marker.exists()
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("up", b"eth0")]


def test_failed_reload_is_logged_and_still_exits_zero(hook: Hook) -> None:
    hook.set_active(True)
    hook.reload_fails_flag.touch()
    proc = hook.run("eth0", "up")
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [
        f'90-qmail-send: up on interface "eth0": could not queue a reload of {UNIT}'.encode()
    ]


def test_without_its_library_exits_zero_silently(hook: Hook) -> None:
    """The main package's library gone (a half-finished removal): nothing runs, exit 0."""
    hook.library.unlink()
    hook.assert_ignored("eth0", "up")


def test_without_systemctl_exits_zero(tmp_path: Path) -> None:
    """A system without systemctl: the hook neither fails nor logs."""
    proc = without_systemctl(HOOK, tmp_path, "eth0", "up")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


def test_shipped_file_is_executable_posix_sh() -> None:
    assert HOOK.read_bytes().startswith(b"#!/bin/sh -p\n")
    assert HOOK.stat().st_mode & 0o777 == 0o755


def test_shellcheck_clean() -> None:
    proc = shellcheck(HOOK)
    assert proc.returncode == 0, proc.stdout + proc.stderr
