"""The networkd-dispatcher hook: which states flush, what it runs, and what it logs.

networkd-dispatcher runs the scripts of routable.d/ without arguments, with the link's data in
the environment (its run_hooks_for_state): IFACE, STATE, AdministrativeState, OperationalState,
ADDR, IP_ADDRS, IP6_ADDRS, ESSID and json, on top of its own environment. The running copy of
the hook and its recording systemctl are tests/hook_harness.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hook_harness import (
    IS_ACTIVE,
    NETWORKD_HOOK,
    RELOAD,
    SHELLS,
    Hook,
    flushing_line,
)

HOOK = NETWORKD_HOOK


def dispatcher_env(state: str = "routable", iface: str | bytes = "wlan0") -> dict[str, str | bytes]:
    """What networkd-dispatcher 2.2 sets for a wireless link entering `state`."""
    data = {
        "Type": "wlan",
        "OperationalState": "routable",
        "AdministrativeState": "configured",
        "InterfaceName": "wlan0",
        "Address": ["192.0.2.10", "2001:db8::10"],
        "State": "routable (configured)",
    }
    return {
        "IFACE": iface,
        "STATE": state,
        "AdministrativeState": "configured",
        "OperationalState": "routable",
        "ADDR": "192.0.2.10",
        "IP_ADDRS": "192.0.2.10",
        "IP6_ADDRS": "2001:db8::10",
        "ESSID": "café wifi",
        "json": json.dumps(data, sort_keys=True),
    }


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Hook:
    return Hook(HOOK, tmp_path, request.param)


def test_routable_flushes_an_active_service(hook: Hook) -> None:
    hook.set_active(True)
    proc = hook.run(env=dispatcher_env())
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"wlan0")]


def test_startup_trigger_without_link_details_flushes(hook: Hook) -> None:
    """Startup trigger with `networkctl status` failing: empty details, still routable."""
    hook.set_active(True)
    env = {**dispatcher_env(), "AdministrativeState": "", "OperationalState": "", "json": "{}"}
    proc = hook.run(env=env)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"wlan0")]


# Every state networkd-dispatcher knows (its ADMIN_STATES and OPER_STATES), and near misses.
OTHER_STATES = [
    "carrier",
    "degraded",
    "degraded-carrier",
    "dormant",
    "enslaved",
    "missing",
    "no-carrier",
    "off",
    "configured",
    "configuring",
    "failed",
    "pending",
    "unmanaged",
    "linger",
    "initialized",
    "",
    "Routable",
    "ROUTABLE",
    " routable",
    "routable\n",
    "routable (configured)",
    "routable; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
]


@pytest.mark.parametrize("state", OTHER_STATES)
def test_other_states_do_nothing(hook: Hook, state: str) -> None:
    """Linked into another state's directory, or any STATE but routable: nothing at all."""
    hook.assert_ignored(env=dispatcher_env(state))


def test_state_unset_does_nothing(hook: Hook) -> None:
    env = dispatcher_env()
    del env["STATE"]
    hook.assert_ignored(env=env)


@pytest.mark.parametrize("operational", ["routable", "off", "", "$(touch pwned)"])
@pytest.mark.parametrize("variable", ["OperationalState", "AdministrativeState", "State"])
def test_only_state_decides(hook: Hook, variable: str, operational: str) -> None:
    """The other state variables are what networkctl said later; they change nothing."""
    hook.set_active(True)
    proc = hook.run(env={**dispatcher_env(), variable: operational})
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"wlan0")]
    hook.assert_untouched()
    hook.calls_file.unlink()
    hook.assert_ignored(env={**dispatcher_env("degraded"), variable: "routable"})


def test_arguments_change_nothing(hook: Hook) -> None:
    """networkd-dispatcher passes none; an NM-style `IFACE up` call is not a routable event."""
    hook.assert_ignored("eth0", "up")
    hook.set_active(True)
    proc = hook.run("$(touch pwned)", "up", env=dispatcher_env())
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"wlan0")]


@pytest.mark.parametrize(
    "variable", ["ADDR", "IP_ADDRS", "IP6_ADDRS", "ESSID", "json", "AdministrativeState"]
)
def test_hostile_link_details_are_ignored(hook: Hook, variable: str) -> None:
    hook.set_active(True)
    hostile = b"$(touch pwned)\n90-qmail-send: forged `touch pwned` \xff"
    proc = hook.run(env={**dispatcher_env(), variable: hostile})
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"wlan0")]
    hook.assert_untouched()


def test_iface_unset_logs_an_empty_name(hook: Hook) -> None:
    hook.set_active(True)
    env = dispatcher_env()
    del env["IFACE"]
    proc = hook.run(env=env)
    assert hook.calls() == [IS_ACTIVE, RELOAD]
    assert proc.stderr.splitlines() == [flushing_line("routable", b"")]
