"""configure / remove / flush: docs/design.md's "Maintainer-script semantics", for each family.

Debian follows what dh_installsystemd generates (deb-systemd-helper keeps the enablement state
that purge removes, deb-systemd-invoke honours policy-rc.d); RPM follows the expansions of
%systemd_post, %systemd_preun and %systemd_postun_with_restart. No step ever fails the package
transaction: a failed call becomes a warning and the exit status stays 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qmail_send_systemd import QMAIL_HOME
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.systemd import REVIVE, UNIT, Result, System

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import ClassVar

    from qmail_send_systemd.findings import Finding

START_HINT = f"fix what the warnings name, then: systemctl start {UNIT}"
JOURNAL_HINT = "`journalctl -u qmail-send -e` says why"
# A failed unit with this Result was being stopped when it failed (the stop outlasted
# TimeoutStopSec=): an administrator's stop or a shutdown, which no package step undoes.
STOPPED_RESULTS = ("timeout",)


def info(message: str) -> None:
    print(f"qmail-send-systemd: {message}")


def warn(message: str) -> None:
    print(f"qmail-send-systemd: warning: {message}", file=sys.stderr)


def _detail(result: Result) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return f": {lines[-1]}" if lines else ""


def attempt(system: System, argv: list[str]) -> Result:
    """Run a step whose failure must not fail the package transaction: warn and go on."""
    result = system.call(argv)
    if not result.ok:
        warn(f"`{' '.join(argv)}` failed (exit {result.returncode}){_detail(result)}; continuing")
    return result


class Family:
    """How one package family enables, starts, restarts and stops the unit."""

    name: ClassVar[str]

    def enable(self, system: System, upgrade: bool) -> None:
        raise NotImplementedError

    def start(self, system: System) -> None:
        raise NotImplementedError

    def restart_after_upgrade(self, system: System) -> None:
        raise NotImplementedError

    def stop(self, system: System) -> None:
        raise NotImplementedError

    def revive(self, system: System) -> None:
        """Start a unit that failed, its failed state and start limit cleared first."""
        attempt(system, ["systemctl", "reset-failed", UNIT])
        self.start(system)


class Deb(Family):
    """dh_installsystemd's postinst and prerm, through init-system-helpers when present."""

    name = "deb"

    def enable(self, system: System, upgrade: bool) -> None:
        if system.have("deb-systemd-helper"):
            # unmask removes only a mask that deb-systemd-helper made at removal; an
            # administrator's mask stays. was-enabled is true on a first install, and false
            # after an administrator's disable, which update-state then respects.
            attempt(system, ["deb-systemd-helper", "unmask", UNIT])
            if system.call(["deb-systemd-helper", "--quiet", "was-enabled", UNIT]).ok:
                attempt(system, ["deb-systemd-helper", "enable", UNIT])
            else:
                attempt(system, ["deb-systemd-helper", "update-state", UNIT])
            return
        if upgrade:
            return  # without the state file, keep whatever the administrator chose
        attempt(system, ["systemctl", "--no-reload", "enable", UNIT])

    def _invoke(self, system: System, action: str) -> None:
        # deb-systemd-invoke asks policy-rc.d before every action, try-restart included
        # (init-system-helpers >= 1.29: the check precedes its action dispatch); without it,
        # ask policy-rc.d here.
        if system.have("deb-systemd-invoke"):
            attempt(system, ["deb-systemd-invoke", action, UNIT])
        elif not system.policy_allows(action):
            info(f"policy-rc.d forbids {action} of {UNIT}: not done")
        elif action == "start" and system.is_enabled() != "enabled":
            info(f"{UNIT} is not enabled: not started")  # what deb-systemd-invoke does
        else:
            attempt(system, ["systemctl", action, UNIT])

    def start(self, system: System) -> None:
        self._invoke(system, "start")

    def restart_after_upgrade(self, system: System) -> None:
        self._invoke(system, "try-restart")

    def stop(self, system: System) -> None:
        self._invoke(system, "stop")

    def revive(self, system: System) -> None:
        # policy-rc.d first: where it forbids the start, the unit stays failed, as it was.
        if system.policy_allows("start"):
            super().revive(system)
        else:
            info(f"policy-rc.d forbids start of {UNIT}: left failed")


class Rpm(Family):
    """%systemd_post (preset on first install) and %systemd_preun / %systemd_postun."""

    name = "rpm"

    def enable(self, system: System, upgrade: bool) -> None:
        if not upgrade:
            attempt(system, ["systemctl", "--no-reload", "preset", UNIT])

    def start(self, system: System) -> None:
        state = system.is_enabled()
        if state == "enabled":
            attempt(system, ["systemctl", "start", UNIT])
        else:
            info(f"{UNIT} is {state} (system preset policy): not started")

    def restart_after_upgrade(self, system: System) -> None:
        # RPM runs the new %post before the old %preun/%postun: the old package's
        # `remove --stage postun --count 1` does the try-restart, once the old files are gone.
        return

    def stop(self, system: System) -> None:
        if system.systemd_running():
            attempt(system, ["systemctl", "--no-reload", "disable", "--now", UNIT])
        else:
            attempt(system, ["systemctl", "--no-reload", "disable", UNIT])


FAMILIES: dict[str, Family] = {family.name: family for family in (Deb(), Rpm())}
# Where each family's package database lives; the first one found names the family.
FAMILY_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("deb", ("var/lib/dpkg/status",)),
    ("rpm", ("usr/lib/sysimage/rpm", "var/lib/rpm")),
)


def detect_family(root: Path, environ: Mapping[str, str]) -> str:
    if environ.get("DPKG_MAINTSCRIPT_NAME"):
        return "deb"
    for name, markers in FAMILY_MARKERS:
        if any((root / marker).exists() for marker in markers):
            return name
    raise UsageError("cannot tell whether this is a deb or an rpm system", "pass --family")


def configure(system: System, family_name: str | None, upgrade: bool) -> int:
    """postinst configure / %post: enable always; start or try-restart where the table says."""
    from qmail_send_systemd import verify  # only configure checks (flush runs on each NM event)

    family = FAMILIES[family_name or detect_family(system.root, system.environ)]
    findings = verify.check(system.root)
    for finding in findings:
        warn(f"{finding.path}: {finding.message} (fix: {finding.fix})")
    family.enable(system, upgrade)
    if not system.systemd_running():
        info(f"systemd is not running here (image, chroot or DPKG_ROOT): {UNIT} not started")
        return 0
    attempt(system, ["systemctl", "daemon-reload"])
    if upgrade:
        # RPM's restart is its old %postun's (remove_rpm), which brings a failed unit back too.
        if family.name == "rpm" or not bring_back(system, family, findings):
            family.restart_after_upgrade(system)
    elif verify.has_errors(findings):
        info(f"{UNIT} enabled, not started: qmail is missing or incomplete ({START_HINT})")
    elif system.unit_state().get("ActiveState") == "failed":
        family.revive(system)  # a first install, or configure by hand: start it in any case
    else:
        family.start(system)
    return 0


def bring_back(system: System, family: Family, findings: list[Finding]) -> bool:
    """A unit left failed (its start limit hit, a crash with Restart= changed by a drop-in)
    comes back when qmail verifies; False when it is not failed, so the caller goes on.

    try-restart skips a failed unit, and systemd restarts it no more, so queued mail would
    wait for an administrator. Never a unit that was being stopped, or that the
    administrator disabled or masked: those stay as they are.
    """
    from qmail_send_systemd import verify

    state = system.unit_state()
    if state.get("ActiveState") != "failed":
        return False
    enabled = system.is_enabled()
    if state.get("Result") in STOPPED_RESULTS:
        info(f"{UNIT} failed while it was being stopped: left stopped")
    elif enabled != "enabled":
        info(f"{UNIT} is failed and {enabled}: left as it is")
    elif verify.has_errors(findings):
        info(f"{UNIT} is failed and qmail is incomplete: not started ({START_HINT})")
    else:
        info(f"{UNIT} had failed ({failure(state)}): starting it again")
        family.revive(system)
    return True


def failure(state: Mapping[str, str]) -> str:
    """What systemd says of a failed unit, in words."""
    result = state.get("Result", "")
    code, status = state.get("ExecMainCode", ""), state.get("ExecMainStatus", "")
    if result == "start-limit-hit":
        return "start-limit-hit: systemd stopped restarting it after too many starts in a row"
    if result == "exit-code" and code == "1":
        return f"exit-code: qmail-send exited with status {status}"
    if result in ("signal", "core-dump") and status.isdigit():
        import signal

        try:
            name = signal.Signals(int(status)).name
        except ValueError:
            name = f"signal {status}"
        return f"{result}: killed by {name}"
    return result or "no result given"


def remove_deb(system: System, stage: str, action: str) -> int:
    """prerm: stop on `remove` only (an upgrade restarts from the new postinst)."""
    if stage != "prerm":
        raise UsageError(f"deb has no {stage} step here", "use --stage prerm")
    if action == "remove" and system.systemd_running():
        FAMILIES["deb"].stop(system)
    return 0


def remove_rpm(system: System, stage: str, count: int) -> int:
    """%preun / %postun with rpm's $1: 0 on erase, >= 1 on upgrade."""
    if count < 0:
        raise UsageError(f"--count {count} is negative", "pass rpm's $1")
    if stage == "preun":
        if count == 0:
            FAMILIES["rpm"].stop(system)
    elif stage == "postun":
        if system.systemd_running():
            attempt(system, ["systemctl", "daemon-reload"])
            if count >= 1 and not _bring_back_verified(system, FAMILIES["rpm"]):
                attempt(system, ["systemctl", "try-restart", UNIT])
    else:
        raise UsageError(f"rpm has no {stage} step here", "use --stage preun or postun")
    return 0


def _bring_back_verified(system: System, family: Family) -> bool:
    from qmail_send_systemd import verify

    if system.unit_state().get("ActiveState") != "failed":
        return False  # the common case: no verify on every upgrade
    return bring_back(system, family, verify.check(system.root))


def flush(system: System) -> int:
    """Forget unreachable hosts and retry deferred mail now, when qmail-send runs."""
    state = system.unit_state()
    active, sub = state.get("ActiveState", ""), state.get("SubState", "")
    if active == "failed":
        since = state.get("InactiveEnterTimestamp", "")
        raise HelperError(
            f"{UNIT} has failed ({failure(state)}){' since ' + since if since else ''}, and"
            f" queued mail waits for it ({JOURNAL_HINT})",
            REVIVE,
        )
    if sub.startswith("auto-restart"):
        raise HelperError(
            f"{UNIT} is down after a failure ({failure(state)}) and waits to be restarted:"
            " nothing flushed",
            f"{JOURNAL_HINT} it fails; once that is fixed, systemd starts it within 5 s",
        )
    if active not in ("active", "reloading"):
        info(f"{UNIT} is not active: nothing to flush (start it: systemctl start {UNIT})")
        return 0
    if not system.is_root():
        raise HelperError(
            "flush needs root: qmail-tcpok writes queue/lock/tcpto, and only root may reload"
            f" {UNIT}",
            "sudo qmail-send-systemd flush",
        )
    tcpok = system.root / QMAIL_HOME / "bin/qmail-tcpok"
    attempt(system, [str(tcpok)])
    result = system.systemctl("reload", UNIT)
    if not result.ok:
        raise HelperError(
            f"systemctl reload {UNIT} failed (exit {result.returncode}){_detail(result)}",
            f"journalctl -u {UNIT}",
        )
    info("flushed: qmail-send is retrying every deferred delivery")
    return 0
