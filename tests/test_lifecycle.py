"""configure / remove / flush: each row of docs/design.md's "Maintainer-script semantics" table,
calls recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FakeSystem, make_qmail_tree, policy_rc_d, systemd_running
from qmail_send_systemd import lifecycle
from qmail_send_systemd.errors import HelperError, UsageError
from qmail_send_systemd.systemd import UNIT, UNIT_STATE, System

DSH = "deb-systemd-helper"
# Whether the unit failed: asked before each start, try-restart and flush.
SHOW = "systemctl show " + " ".join(f"--property={name}" for name in UNIT_STATE) + f" {UNIT}"
FIRST_INSTALL_DEB = [
    f"{DSH} unmask {UNIT}",
    f"{DSH} --quiet was-enabled {UNIT}",
    f"{DSH} enable {UNIT}",
    "systemctl daemon-reload",
    SHOW,
    f"deb-systemd-invoke start {UNIT}",
]


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """qmail installed, systemd running."""
    make_qmail_tree(tmp_path)
    systemd_running(tmp_path)
    return tmp_path


# -- Debian -----------------------------------------------------------------------------------


def test_deb_first_install_enables_and_starts(live: Path) -> None:
    system = FakeSystem(live)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert system.commands() == FIRST_INSTALL_DEB
    assert (system.enabled_word(), system.active) == ("enabled", True)


def test_deb_first_install_is_idempotent(live: Path) -> None:
    system = FakeSystem(live)
    lifecycle.configure(system, "deb", upgrade=False)
    lifecycle.configure(system, "deb", upgrade=False)
    assert system.commands() == FIRST_INSTALL_DEB * 2
    assert (system.enabled_word(), system.active, system.restarts) == ("enabled", True, 0)


def test_deb_first_install_without_qmail_enables_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    systemd_running(tmp_path)
    system = FakeSystem(tmp_path)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert system.commands() == FIRST_INSTALL_DEB[:-2]
    assert (system.enabled_word(), system.active) == ("enabled", False)
    err = capsys.readouterr()
    assert "warning: " in err.err and "qmail's program directory is missing" in err.err
    assert "enabled, not started" in err.out


def test_deb_broken_qmail_enables_only(live: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (live / "var/qmail/bin/qmail-queue").chmod(0o711)
    system = FakeSystem(live)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert not system.active
    assert "lacks its set-uid bit" in capsys.readouterr().err


def test_deb_install_without_systemd_running(tmp_path: Path) -> None:
    make_qmail_tree(tmp_path)  # no run/systemd/system: image build or chroot
    system = FakeSystem(tmp_path)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert system.commands() == FIRST_INSTALL_DEB[:3]
    assert (system.enabled_word(), system.active) == ("enabled", False)


def test_deb_install_with_dpkg_root(live: Path) -> None:
    system = FakeSystem(live, environ={"DPKG_ROOT": "/srv/image"})
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert system.commands() == FIRST_INSTALL_DEB[:3]
    assert not system.active


def test_deb_policy_rc_d_101_starts_nothing(live: Path) -> None:
    policy_rc_d(live)
    system = FakeSystem(live, policy_code=101)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert (system.enabled_word(), system.active) == ("enabled", False)


def test_deb_policy_rc_d_101_without_deb_systemd_invoke(live: Path) -> None:
    # Without init-system-helpers' invoke, the helper asks policy-rc.d itself.
    policy_rc_d(live)
    system = FakeSystem(live, policy_code=101, have_dsi=False)
    lifecycle.configure(system, "deb", upgrade=False)
    assert system.commands()[-1] == f"/usr/sbin/policy-rc.d {UNIT} start"
    assert not system.active


def test_deb_without_init_system_helpers(live: Path) -> None:
    system = FakeSystem(live, have_dsh=False, have_dsi=False)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert system.commands() == [
        f"systemctl --no-reload enable {UNIT}",
        "systemctl daemon-reload",
        SHOW,
        f"systemctl is-enabled {UNIT}",
        f"systemctl start {UNIT}",
    ]
    assert system.active


def test_deb_upgrade_restarts_a_running_service(live: Path) -> None:
    system = FakeSystem(live, links=True, state_file=True, active=True)
    assert lifecycle.configure(system, "deb", upgrade=True) == 0
    assert system.commands() == [
        f"{DSH} unmask {UNIT}",
        f"{DSH} --quiet was-enabled {UNIT}",
        f"{DSH} enable {UNIT}",
        "systemctl daemon-reload",
        SHOW,
        f"deb-systemd-invoke try-restart {UNIT}",
    ]
    assert (system.active, system.restarts) == (True, 1)


def test_deb_upgrade_leaves_a_stopped_service_stopped(live: Path) -> None:
    system = FakeSystem(live, links=True, state_file=True, active=False)
    lifecycle.configure(system, "deb", upgrade=True)
    assert (system.active, system.restarts) == (False, 0)


def test_deb_upgrade_keeps_an_administrators_disable(live: Path) -> None:
    system = FakeSystem(live, links=False, state_file=True, active=False)
    lifecycle.configure(system, "deb", upgrade=True)
    assert f"{DSH} update-state {UNIT}" in system.commands()
    assert f"{DSH} enable {UNIT}" not in system.commands()
    assert (system.enabled_word(), system.active) == ("disabled", False)


def test_deb_upgrade_keeps_an_administrators_mask(live: Path) -> None:
    system = FakeSystem(live, links=True, state_file=True, masked=True)
    lifecycle.configure(system, "deb", upgrade=True)
    assert (system.enabled_word(), system.active) == ("masked", False)


def test_deb_masked_before_first_install_is_not_started(live: Path) -> None:
    system = FakeSystem(live, masked=True)
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    assert (system.enabled_word(), system.active) == ("masked", False)


def test_deb_upgrade_policy_rc_d_101_restarts_nothing(live: Path) -> None:
    policy_rc_d(live)
    system = FakeSystem(live, links=True, state_file=True, active=True, policy_code=101)
    lifecycle.configure(system, "deb", upgrade=True)
    assert system.restarts == 0


def test_deb_upgrade_policy_without_deb_systemd_invoke(live: Path) -> None:
    policy_rc_d(live)
    system = FakeSystem(
        live, links=True, state_file=True, active=True, policy_code=101, have_dsi=False
    )
    lifecycle.configure(system, "deb", upgrade=True)
    assert system.commands()[-1] == f"/usr/sbin/policy-rc.d {UNIT} try-restart"
    assert system.restarts == 0


def test_failed_calls_are_warnings_not_failures(
    live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system = FakeSystem(live, failing=("systemctl daemon-reload", f"{DSH} enable {UNIT}"))
    assert lifecycle.configure(system, "deb", upgrade=False) == 0
    err = capsys.readouterr().err
    assert "`systemctl daemon-reload` failed (exit 1): systemctl: simulated failure" in err
    assert f"`{DSH} enable {UNIT}` failed" in err


# -- RPM --------------------------------------------------------------------------------------


def test_rpm_first_install_presets_and_starts(live: Path) -> None:
    system = FakeSystem(live)
    assert lifecycle.configure(system, "rpm", upgrade=False) == 0
    assert system.commands() == [
        f"systemctl --no-reload preset {UNIT}",
        "systemctl daemon-reload",
        SHOW,
        f"systemctl is-enabled {UNIT}",
        f"systemctl start {UNIT}",
    ]
    assert (system.enabled_word(), system.active) == ("enabled", True)


def test_rpm_first_install_with_preset_disabling_starts_nothing(live: Path) -> None:
    system = FakeSystem(live, preset_enables=False)
    lifecycle.configure(system, "rpm", upgrade=False)
    assert (system.enabled_word(), system.active) == ("disabled", False)


def test_rpm_first_install_without_systemd_running(tmp_path: Path) -> None:
    make_qmail_tree(tmp_path)
    system = FakeSystem(tmp_path)
    lifecycle.configure(system, "rpm", upgrade=False)
    assert system.commands() == [f"systemctl --no-reload preset {UNIT}"]
    assert (system.enabled_word(), system.active) == ("enabled", False)


def test_rpm_first_install_without_qmail(tmp_path: Path) -> None:
    systemd_running(tmp_path)
    system = FakeSystem(tmp_path)
    assert lifecycle.configure(system, "rpm", upgrade=False) == 0
    assert (system.enabled_word(), system.active) == ("enabled", False)


def test_rpm_upgrade_only_reloads(live: Path) -> None:
    # An administrator's disable survives: no preset on upgrade. The restart is the old
    # package's %postun (remove --stage postun --count 1).
    system = FakeSystem(live, links=False, active=True)
    lifecycle.configure(system, "rpm", upgrade=True)
    assert system.commands() == ["systemctl daemon-reload"]
    assert (system.enabled_word(), system.restarts) == ("disabled", 0)


# -- removal ----------------------------------------------------------------------------------


def test_deb_prerm_remove_stops(live: Path) -> None:
    system = FakeSystem(live, links=True, active=True)
    assert lifecycle.remove_deb(system, "prerm", "remove") == 0
    assert system.commands() == [f"deb-systemd-invoke stop {UNIT}"]
    assert not system.active


@pytest.mark.parametrize("action", ["upgrade", "deconfigure", "failed-upgrade"])
def test_deb_prerm_other_actions_leave_it_running(live: Path, action: str) -> None:
    system = FakeSystem(live, links=True, active=True)
    lifecycle.remove_deb(system, "prerm", action)
    assert system.calls == []


def test_deb_prerm_without_systemd_running(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, active=True)
    lifecycle.remove_deb(system, "prerm", "remove")
    assert system.calls == []


def test_deb_unknown_stage_is_usage_error(live: Path) -> None:
    with pytest.raises(UsageError):
        lifecycle.remove_deb(FakeSystem(live), "postrm", "remove")


def test_rpm_preun_erase_disables_and_stops(live: Path) -> None:
    system = FakeSystem(live, links=True, active=True)
    assert lifecycle.remove_rpm(system, "preun", 0) == 0
    assert system.commands() == [f"systemctl --no-reload disable --now {UNIT}"]
    assert (system.enabled_word(), system.active) == ("disabled", False)


def test_rpm_preun_erase_without_systemd_running(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, links=True)
    lifecycle.remove_rpm(system, "preun", 0)
    assert system.commands() == [f"systemctl --no-reload disable {UNIT}"]


def test_rpm_old_packages_scripts_on_upgrade_keep_the_new_one(live: Path) -> None:
    # RPM runs the new %post first, then the old %preun 1 and %postun 1.
    system = FakeSystem(live, links=True, active=True)
    lifecycle.remove_rpm(system, "preun", 1)
    assert system.calls == []
    lifecycle.remove_rpm(system, "postun", 1)
    assert system.commands() == ["systemctl daemon-reload", SHOW, f"systemctl try-restart {UNIT}"]
    assert (system.enabled_word(), system.active, system.restarts) == ("enabled", True, 1)


def test_rpm_postun_upgrade_leaves_a_stopped_service_stopped(live: Path) -> None:
    system = FakeSystem(live, links=True, active=False)
    lifecycle.remove_rpm(system, "postun", 1)
    assert (system.active, system.restarts) == (False, 0)


def test_rpm_bad_arguments_are_usage_errors(live: Path) -> None:
    with pytest.raises(UsageError):
        lifecycle.remove_rpm(FakeSystem(live), "prerm", 0)
    with pytest.raises(UsageError):
        lifecycle.remove_rpm(FakeSystem(live), "preun", -1)


# -- a failed unit ---------------------------------------------------------------------------
# try-restart skips a failed unit and systemd restarts it no more: an upgrade brings it back
# when qmail verifies, unless it failed while being stopped or the administrator disabled or
# masked it.


def test_deb_upgrade_brings_a_failed_unit_back(
    live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    system = FakeSystem(live, links=True, state_file=True, failed="start-limit-hit")
    assert lifecycle.configure(system, "deb", upgrade=True) == 0
    assert system.commands()[-4:] == [
        SHOW,
        f"systemctl is-enabled {UNIT}",
        f"systemctl reset-failed {UNIT}",
        f"deb-systemd-invoke start {UNIT}",
    ]
    assert (system.active, system.failed) == (True, "")
    assert "had failed (start-limit-hit: systemd stopped restarting it" in capsys.readouterr().out


def test_deb_upgrade_of_a_running_unit_only_try_restarts(live: Path) -> None:
    system = FakeSystem(live, links=True, state_file=True, active=True)
    lifecycle.configure(system, "deb", upgrade=True)
    assert f"systemctl reset-failed {UNIT}" not in system.commands()
    assert system.restarts == 1


STOPPED_BY_THE_ADMINISTRATOR: list[tuple[Callable[[Path], FakeSystem], str]] = [
    (lambda r: FakeSystem(r, state_file=True, failed="exit-code"), "is failed and disabled"),
    (
        lambda r: FakeSystem(r, state_file=True, links=True, masked=True, failed="exit-code"),
        "is failed and masked: left as it is",
    ),
    (
        lambda r: FakeSystem(r, state_file=True, links=True, failed="timeout"),
        "failed while it was being stopped: left stopped",
    ),
]


@pytest.mark.parametrize(("make", "said"), STOPPED_BY_THE_ADMINISTRATOR)
def test_upgrade_leaves_a_failed_unit_the_administrator_stopped(
    live: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], FakeSystem],
    said: str,
) -> None:
    system = make(live)
    lifecycle.configure(system, "deb", upgrade=True)
    assert not system.active
    assert f"systemctl reset-failed {UNIT}" not in system.commands()
    assert said in capsys.readouterr().out


def test_upgrade_leaves_a_failed_unit_failed_while_qmail_is_broken(
    live: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (live / "var/qmail/bin/qmail-send").unlink()
    system = FakeSystem(live, links=True, state_file=True, failed="exit-code")
    lifecycle.configure(system, "deb", upgrade=True)
    assert (system.active, system.failed) == (False, "exit-code")
    assert "is failed and qmail is incomplete: not started" in capsys.readouterr().out


def test_upgrade_policy_rc_d_101_leaves_a_failed_unit_failed(live: Path) -> None:
    policy_rc_d(live)
    system = FakeSystem(live, links=True, state_file=True, failed="exit-code", policy_code=101)
    lifecycle.configure(system, "deb", upgrade=True)
    assert (system.active, system.failed) == (False, "exit-code")
    assert f"systemctl reset-failed {UNIT}" not in system.commands()


def test_rpm_upgrade_brings_a_failed_unit_back_in_the_old_postun(live: Path) -> None:
    system = FakeSystem(live, links=True, failed="start-limit-hit")
    lifecycle.configure(system, "rpm", upgrade=True)  # the new %post: no start yet
    assert (system.active, system.failed) == (False, "start-limit-hit")
    lifecycle.remove_rpm(system, "postun", 1)
    assert system.commands()[-3:] == [
        f"systemctl reset-failed {UNIT}",
        f"systemctl is-enabled {UNIT}",
        f"systemctl start {UNIT}",
    ]
    assert (system.active, system.failed, system.restarts) == (True, "", 0)


def test_configure_by_hand_starts_a_failed_unit(live: Path) -> None:
    # Not an upgrade: a first install or an administrator's own `configure` starts in any case.
    system = FakeSystem(live, failed="timeout")
    lifecycle.configure(system, "deb", upgrade=False)
    assert (system.active, system.failed) == (True, "")


@pytest.mark.parametrize(
    ("failed", "code", "status", "words"),
    [
        ("start-limit-hit", "1", "111", "systemd stopped restarting it after too many starts"),
        ("exit-code", "1", "111", "qmail-send exited with status 111"),
        ("signal", "2", "9", "killed by SIGKILL"),
        ("core-dump", "3", "11", "killed by SIGSEGV"),
        ("signal", "2", "200", "killed by signal 200"),
        ("oom-kill", "2", "9", "oom-kill"),
    ],
)
def test_failure_in_words(failed: str, code: str, status: str, words: str) -> None:
    state = {"Result": failed, "ExecMainCode": code, "ExecMainStatus": status}
    assert words in lifecycle.failure(state)


# -- flush ------------------------------------------------------------------------------------


def test_flush_when_active(live: Path) -> None:
    system = FakeSystem(live, active=True)
    assert lifecycle.flush(system) == 0
    assert system.commands() == [
        SHOW,
        "/var/qmail/bin/qmail-tcpok",
        f"systemctl reload {UNIT}",
    ]


def test_flush_when_inactive_says_so(live: Path, capsys: pytest.CaptureFixture[str]) -> None:
    system = FakeSystem(live, active=False)
    assert lifecycle.flush(system) == 0
    assert system.commands() == [SHOW]
    assert "not active: nothing to flush" in capsys.readouterr().out


def test_flush_reload_failure_is_an_error(live: Path) -> None:
    system = FakeSystem(live, active=True, failing=(f"systemctl reload {UNIT}",))
    with pytest.raises(HelperError, match=r"systemctl reload qmail-send\.service failed"):
        lifecycle.flush(system)


def test_flush_of_a_failed_unit_says_why_and_how(live: Path) -> None:
    system = FakeSystem(live, failed="exit-code")
    with pytest.raises(HelperError) as caught:
        lifecycle.flush(system)
    assert caught.value.code == 1
    assert "has failed (exit-code: qmail-send exited with status 111)" in caught.value.message
    assert "since Tue 2027-01-12 08:00:00 UTC" in caught.value.message
    assert caught.value.fix == ("systemctl reset-failed qmail-send && systemctl start qmail-send")
    assert system.commands() == [SHOW]


def test_flush_while_the_unit_waits_to_be_restarted(live: Path) -> None:
    system = FakeSystem(live, sub_state="auto-restart")
    with pytest.raises(HelperError, match="waits to be restarted") as caught:
        lifecycle.flush(system)
    assert "journalctl -u qmail-send -e" in caught.value.fix


def test_flush_as_an_ordinary_user_says_run_as_root(live: Path) -> None:
    system = FakeSystem(live, active=True, as_root=False)
    with pytest.raises(HelperError, match="flush needs root") as caught:
        lifecycle.flush(system)
    assert caught.value.fix == "run it as root: qmail-send-systemd flush"
    assert system.commands() == [SHOW]  # neither qmail-tcpok nor a reload was tried


# -- family detection and the real boundary ---------------------------------------------------


def test_family_detection(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        lifecycle.detect_family(tmp_path, {})
    assert lifecycle.detect_family(tmp_path, {"DPKG_MAINTSCRIPT_NAME": "postinst"}) == "deb"
    (tmp_path / "usr/lib/sysimage/rpm").mkdir(parents=True)
    assert lifecycle.detect_family(tmp_path, {}) == "rpm"
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text("")
    assert lifecycle.detect_family(tmp_path, {}) == "deb"


def test_configure_detects_the_family(live: Path) -> None:
    (live / "usr/lib/sysimage/rpm").mkdir(parents=True)
    system = FakeSystem(live)
    lifecycle.configure(system, None, upgrade=False)
    assert system.commands()[0] == f"systemctl --no-reload preset {UNIT}"


def test_systemd_running_means_run_systemd_system_and_no_dpkg_root(tmp_path: Path) -> None:
    assert not System(tmp_path, environ={}).systemd_running()
    systemd_running(tmp_path)
    assert System(tmp_path, environ={}).systemd_running()
    assert not System(tmp_path, environ={"DPKG_ROOT": "/srv/image"}).systemd_running()


def test_real_boundary_targets_the_image_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one real call site: under --root (or DPKG_ROOT) systemctl gets --root and
    # deb-systemd-helper sees DPKG_ROOT, so a test tree never touches the host's units.
    seen: list[tuple[list[str], str | None]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = kwargs["env"]
        assert isinstance(env, dict)
        seen.append((argv, env.get("DPKG_ROOT")))
        return subprocess.CompletedProcess(argv, 0, "enabled\n", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    system = System(tmp_path, environ={})
    assert system.is_enabled() == "enabled"
    system.call(["deb-systemd-helper", "enable", UNIT])
    assert seen == [
        (["systemctl", f"--root={tmp_path}", "is-enabled", UNIT], str(tmp_path)),
        (["deb-systemd-helper", "enable", UNIT], str(tmp_path)),
    ]


def test_work_beside_runs_in_a_child_while_the_caller_goes_on(tmp_path: Path) -> None:
    """System.beside: the work runs in another process, at once (it reads what the caller
    writes after beside() returned), and its plain-data result comes back whole."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a FIFO opened read-write does not wait for a reader

    def work() -> tuple[int, str, dict[int, dict[str, object]]]:
        signal.alarm(60)  # a beside() that ran the work here fails, never hangs
        word = os.read(os.open(fifo, os.O_RDONLY), 2).decode()
        return os.getpid(), word * 300_000, {7: {"seconds": 1.5, "shown": None}}

    try:
        result = System(Path("/"), environ={}).beside(work)
        os.write(writer, b"ab")
        pid, text, data = result()
    finally:
        os.close(writer)
        signal.alarm(0)
    assert pid != os.getpid()
    assert len(text) == 600_000 and data == {7: {"seconds": 1.5, "shown": None}}


def test_work_beside_that_fails_in_the_child_is_done_here() -> None:
    """A child that gives nothing back (it failed, was killed) costs only time: the work
    runs in the caller, whose answer is the same."""
    me = os.getpid()

    def work() -> str:
        if os.getpid() != me:
            os.kill(os.getpid(), signal.SIGKILL)
        return "here"

    assert System(Path("/"), environ={}).beside(work)() == "here"


def test_work_beside_without_a_child_is_done_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """No process to spare (fork refused: EAGAIN under a tight RLIMIT_NPROC): the same answer."""

    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    before = len(os.listdir("/proc/self/fd"))
    assert System(Path("/"), environ={}).beside(os.getpid)() == os.getpid()
    assert len(os.listdir("/proc/self/fd")) == before  # the pipe was closed


def test_real_boundary_survives_a_missing_program(tmp_path: Path) -> None:
    result = System(Path("/"), environ={"PATH": str(tmp_path)}).call(["systemctl", "status"])
    assert result.returncode == 127


def test_a_started_command_runs_while_the_caller_works_and_none_of_its_output_is_lost(
    tmp_path: Path,
) -> None:
    """status starts journalctl, then reads the queue: the command runs meanwhile (it reads
    what the caller writes after start() returned, no sleep), and output far larger than a
    pipe holds arrives whole."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    # The command waits for two bytes that the test writes once start() has returned (SIGALRM
    # ends that wait after a minute: a start() that waited for the command fails, not hangs).
    script = (
        "import os, signal, sys; signal.alarm(60); "
        "word = os.read(os.open(sys.argv[1], os.O_RDONLY), 2).decode(); "
        "sys.stdout.write(word * 300_000); sys.stderr.write('said')"
    )
    writer = os.open(fifo, os.O_RDWR)  # a FIFO opened read-write does not wait for a reader
    try:
        result = System(Path("/"), environ={}).start([sys.executable, "-c", script, str(fifo)])
        os.write(writer, b"ab")
        done = result()
    finally:
        os.close(writer)
    assert (done.returncode, len(done.stdout), done.stderr) == (0, 600_000, "said")
    assert set(done.stdout) == {"a", "b"}
    missing = System(Path("/"), environ={"PATH": str(tmp_path)}).start(["journalctl"])()
    assert missing.returncode == 127 and missing.stderr.startswith("journalctl: ")
