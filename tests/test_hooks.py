"""What both dispatcher hooks must do alike, whatever their event: treat interface names and
the environment as data, survive a failed reload, a missing library or systemctl, and ship as
POSIX sh that shellcheck passes. Each runs under dash and bash-as-sh (tests/hook_harness.py);
the events each hook flushes on are in test_nm_hook.py and test_networkd_hook.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_harness import (
    DISPATCHERS,
    HOSTILE_NAMES,
    IS_ACTIVE,
    RELOAD,
    SHELLS,
    UNIT,
    Dispatcher,
    Hook,
    flushing_line,
    hostile_environment,
    shellcheck,
    without_systemctl,
)


@pytest.fixture(params=DISPATCHERS)
def dispatcher(request: pytest.FixtureRequest) -> Dispatcher:
    found = request.param
    assert isinstance(found, Dispatcher)
    return found


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path, dispatcher: Dispatcher) -> Hook:
    return Hook(dispatcher.source, tmp_path, request.param)


def test_online_flushes_an_active_service(hook: Hook, dispatcher: Dispatcher) -> None:
    hook.set_active(True)
    proc = dispatcher.online(hook)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line(dispatcher.event, b"eth0")]


def test_online_leaves_an_inactive_service_alone(hook: Hook, dispatcher: Dispatcher) -> None:
    hook.set_active(False)
    proc = dispatcher.online(hook)
    assert hook.calls() == [IS_ACTIVE]
    assert proc.stderr == b""


@pytest.mark.parametrize(("interface", "logged"), HOSTILE_NAMES)
def test_hostile_interface_names_are_data(
    hook: Hook, dispatcher: Dispatcher, interface: bytes, logged: bytes
) -> None:
    hook.set_active(True)
    proc = dispatcher.online(hook, interface)
    # The name reaches no command: the argv is exactly the fixed one.
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line(dispatcher.event, logged)]
    hook.assert_untouched()


def test_environment_cannot_choose_programs(hook: Hook, dispatcher: Dispatcher) -> None:
    """PATH, ENV, BASH_ENV, IFS, exported functions and the hook's own names change nothing."""
    env, marker = hostile_environment(hook.tmp)
    hook.set_active(True)
    proc = dispatcher.online(hook, **env)
    assert not marker.exists()
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line(dispatcher.event, b"eth0")]


def test_failed_reload_is_logged_and_still_exits_zero(hook: Hook, dispatcher: Dispatcher) -> None:
    hook.set_active(True)
    hook.reload_fails_flag.touch()
    proc = dispatcher.online(hook)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [
        f'90-qmail-send: {dispatcher.event} on interface "eth0": could not queue a reload of '
        f"{UNIT}".encode()
    ]


def test_without_its_library_exits_zero_silently(hook: Hook, dispatcher: Dispatcher) -> None:
    """The main package's library gone (a half-finished removal): nothing runs, exit 0."""
    hook.library.unlink()
    hook.set_active(True)
    proc = dispatcher.online(hook)
    assert (hook.calls(), proc.stderr) == ([], b"")


def test_without_systemctl_exits_zero(tmp_path: Path, dispatcher: Dispatcher) -> None:
    """A system without systemctl: the hook neither fails nor logs."""
    args, env = dispatcher.with_interface("eth0")
    proc = without_systemctl(dispatcher.source, tmp_path, *map(str, args), env={**env})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


def test_shipped_file_is_executable_posix_sh(dispatcher: Dispatcher) -> None:
    """networkd-dispatcher 2.2 runs a script only with mode exactly 0755 (root:root: the
    payload's owner, tests/test_payload.py); NetworkManager wants it executable too."""
    assert dispatcher.source.read_bytes().startswith(b"#!/bin/sh -p\n")
    assert dispatcher.source.stat().st_mode & 0o7777 == 0o755


def test_shellcheck_clean(dispatcher: Dispatcher) -> None:
    proc = shellcheck(dispatcher.source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
