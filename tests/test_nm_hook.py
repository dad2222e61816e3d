"""The NetworkManager dispatcher hook: which events flush, what it runs, and what it logs.

The running copy of the hook and its recording systemctl are tests/hook_harness.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_harness import (
    IS_ACTIVE,
    NM_HOOK,
    RELOAD,
    SHELLS,
    Hook,
    flushing_line,
)

HOOK = NM_HOOK


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Hook:
    return Hook(HOOK, tmp_path, request.param)


@pytest.mark.parametrize("action", ["up", "vpn-up"])
def test_up_flushes_an_active_service(hook: Hook, action: str) -> None:
    hook.set_active(True)
    proc = hook.run("eth0", action)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line(action, b"eth0")]


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
