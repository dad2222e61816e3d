"""Fast tests of the smoke harness's own logic: no root, no containers."""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fakes import FakeBackend, RecordingContainer
from qss_toolkit import payload
from qss_toolkit.bench.runner import previous_sections
from qss_toolkit.build import rebuild, sources
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family, PackageFile
from qss_toolkit.settings import Settings
from qss_toolkit.smoke import qmail_root, qmail_source, rootfs, runner, targets
from qss_toolkit.smoke.cgroups import cgroup_hierarchies, cpu_seconds, in_cgroups, remove_cgroup
from qss_toolkit.smoke.engines import base as engine_base
from qss_toolkit.smoke.engines import nspawn as nspawn_engine
from qss_toolkit.smoke.engines.base import BootKind, ContainerError, command_line, machine_name
from qss_toolkit.smoke.engines.nspawn import NspawnContainer, OfflineRoot, booted, find_child
from qss_toolkit.smoke.nspawn_argv import nspawn_setup_failed
from qss_toolkit.smoke.runner import Status
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NM_PACKAGE,
    RUNNING_CURRENT,
    SCENARIOS,
    SENDMAIL_PACKAGE,
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    load_scenarios,
    scenario,
    select_scenarios,
)
from qss_toolkit.smoke.scenarios.repo import HTTP_SERVER
from qss_toolkit.smoke.targets import (
    APT_SUBSET_DIR,
    APT_SUBSET_LIST,
    BASE_PACKAGES,
    LOCAL_TARGETS,
    TARGETS,
    apt_subset_script,
    debian_root,
    host_provides_script,
    select_targets,
)

D12 = TARGETS["debian-12"]
RPM = TARGETS["rpm-on-debian-13"]


def test_every_family_has_a_target_and_every_root_can_boot_systemd() -> None:
    assert {t.family for t in LOCAL_TARGETS.values()} == set(Family)  # none untested here
    for target in LOCAL_TARGETS.values():
        assert set(BASE_PACKAGES) <= set(debian_root(target).packages), target.name
        # What our packages depend on, read from packaging/nfpm/*.yaml: the hooks' dispatchers.
        assert {"network-manager", "networkd-dispatcher"} <= set(debian_root(target).packages)
        assert not [p for p in debian_root(target).packages if p.startswith("qmail-send")]
    # Extra packages add to the base set; they never replace it.
    extra = replace(debian_root(D12), extra_packages=("strace",))
    assert set(extra.packages) == {*debian_root(D12).packages, "strace"}
    # rpmbuild --rebuild (rebuild.py) unpacks the source RPM's tarball with xz.
    assert "xz-utils" in debian_root(RPM).packages


def test_a_dependency_with_alternatives_puts_its_first_in_the_roots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Declared:
        name = "ours-extra"

        def relation(self, family: Family, kind: str, version: str) -> tuple[str, ...]:
            return ("default-mta | mail-transport-agent", "msmtp (>= 1.8)", "ours-main")

    class Main(Declared):
        name = "ours-main"

    monkeypatch.setattr(payload, "project_packages", lambda: (Main(), Declared()))
    targets.dependency_packages.cache_clear()
    try:
        # `a | b` is satisfied by a: apt installs the first, and so does every root.
        assert targets.dependency_packages() == ("default-mta", "msmtp")
    finally:
        targets.dependency_packages.cache_clear()


def test_select_targets_rejects_unknown_names_with_a_suggestion() -> None:
    assert [t.name for t in select_targets(["debian-12", "debian-11", "debian-12"])] == [
        "debian-12",
        "debian-11",
    ]
    assert len(select_targets(None)) == len(TARGETS)
    with pytest.raises(ConfigurationError, match="debian-99") as info:
        select_targets(["debian-99"])
    assert info.value.return_code == 2
    assert info.value.hint is not None and "did you mean debian-" in info.value.hint
    with pytest.raises(ConfigurationError) as far:
        select_targets(["gentoo-2025"])
    assert far.value.hint is not None and "did you mean" not in far.value.hint
    assert "choose from debian-11, debian-12" in far.value.hint


def test_select_scenarios_drops_duplicates_and_suggests_like_targets() -> None:
    chosen = select_scenarios(["upgrade", "remove", "upgrade"])
    assert [s.name for s in chosen] == ["upgrade", "remove"]
    with pytest.raises(ConfigurationError, match="'upgarde'") as info:
        select_scenarios(["upgarde"])
    assert info.value.hint is not None and info.value.hint.startswith("did you mean upgrade? ")


def test_smoke_names_an_unknown_target_before_it_boots_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ConfigurationError, match="unknown smoke target 'debian-2'"):
        runner.main(["--target", "debian-2"])


def test_cache_key_depends_on_suite_packages_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rootfs.cache_key(D12)
    assert key.startswith("bookworm-")
    assert rootfs.cache_key(D12) == key  # stable
    assert (
        rootfs.cache_key(replace(D12, root=replace(debian_root(D12), extra_packages=("strace",))))
        != key
    )
    assert (
        rootfs.cache_key(replace(D12, root=replace(debian_root(D12), customize=("true",)))) != key
    )
    assert rootfs.cache_key(replace(D12, name="renamed", note="x")) == key  # the root alone
    assert rootfs.cache_key(TARGETS["debian-13"]) != rootfs.cache_key(RPM)
    monkeypatch.setattr(rootfs, "FORMAT_VERSION", rootfs.FORMAT_VERSION + 1)
    assert rootfs.cache_key(D12) != key


def test_a_build_root_has_the_buildd_variant_and_nothing_of_the_smoke_roots(tmp_path: Path) -> None:
    for target in rebuild.BUILD_ROOTS.values():
        argv = rootfs.mmdebstrap_command(debian_root(target), tmp_path / "root")
        assert "--variant=buildd" in argv
        assert not [a for a in argv if a.startswith("--include=")]  # no systemd, no python3
        # Only the Build-Depends, installed by apt as sbuild installs them.
        [step] = rootfs.build_steps(debian_root(target))
        assert "apt-get satisfy" in step and sources.build_depends() in step
        subprocess.run(["sh", "-n"], input=step, text=True, check=True)
    # The smoke roots' keys do not change with the variant field (their cached roots stay).
    d12 = debian_root(D12)
    assert rootfs.build_steps(d12)[: len(rootfs.COMMON_CUSTOMIZE)] == rootfs.COMMON_CUSTOMIZE
    buildd = replace(D12, root=replace(d12, variant="buildd"))
    assert rootfs.cache_key(buildd) != rootfs.cache_key(D12)


def test_cache_dir_follows_qss_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QSS_CACHE", str(tmp_path))
    assert rootfs.default_cache_dir() == tmp_path / "rootfs"
    monkeypatch.delenv("QSS_CACHE")
    assert rootfs.default_cache_dir().parts[-2:] == ("qmail-send-systemd", "rootfs")


def test_copy_method_is_validated() -> None:
    assert Settings.from_env({"QSS_ROOTFS_COPY": "copy"}).rootfs_copy == "copy"
    assert Settings.from_env({}).rootfs_copy == "overlay"
    with pytest.raises(ConfigurationError, match="hardlink"):
        Settings.from_env({"QSS_ROOTFS_COPY": "hardlink"})


def test_mmdebstrap_command_builds_a_systemd_root(tmp_path: Path) -> None:
    argv = rootfs.mmdebstrap_command(debian_root(TARGETS["debian-11"]), tmp_path / "root")
    assert argv[0] == "mmdebstrap" and "--variant=apt" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert set(include.removeprefix("--include=").split(",")) >= {"systemd", "dbus", "python3"}
    assert argv[-3:] == ["bullseye", str(tmp_path / "root"), "http://deb.debian.org/debian"]


def test_commands_enter_a_root_the_way_its_kind_needs(tmp_path: Path) -> None:
    inner = ["/usr/bin/env", "-i", "PATH=/bin", "sh", "-c", "echo --boot"]
    # Where systemd runs, a command joins its namespaces (nsenter) and never starts nspawn.
    booted_root = NspawnContainer(tmp_path / "root", "qssd12-abc")
    booted_root.init_pid = 4242
    argv = booted_root._host_command(inner)
    assert argv[:3] == ["nsenter", "--target=4242", "--all"] and argv[-len(inner) :] == inner
    # Where it does not, each command is its own nspawn --pipe, in the root's cgroups.
    argv = OfflineRoot(tmp_path, "x", [tmp_path / "cg"])._host_command(inner)
    nspawn = argv[argv.index("--", 4) + 1 :]  # after in_cgroups' own `--`
    assert nspawn[-len(inner) - 1 :] == ["--", *inner]
    options = nspawn[: -len(inner) - 1]
    assert "--pipe" in options and "--boot" not in options
    assert {"--register=no", "--keep-unit", f"--directory={tmp_path}"} <= set(options)


def _rebooting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int
) -> tuple[NspawnContainer, list[str]]:
    """A booted NspawnContainer whose systemd-nspawn exits with `exit_code` once asked to
    reboot; what it does is recorded (commands inside, the veth awaited, the boots)."""
    events: list[str] = []
    container = NspawnContainer(tmp_path / "root", "qssd12-abc", network_veth=True)
    container.process = subprocess.Popen(["sleep", "60"])
    counted = iter([2.5, 1.0])

    def run(cmd: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        events.append(f"run {cmd}")
        assert container.process is not None
        container.process.kill()  # the container goes down, as systemctl reboot makes it
        container.process.wait()
        container.process.returncode = exit_code
        return subprocess.CompletedProcess([], -9, "", "")

    def boot(self: NspawnContainer, started: float, *, console_mode: str) -> None:
        events.append(f"boot {console_mode}")

    monkeypatch.setattr(container, "run", run)
    monkeypatch.setattr(container, "host_veth", lambda: "ve-qssd12-abc")
    monkeypatch.setattr(nspawn_engine, "cpu_seconds", lambda cgroups: next(counted))

    def wait_link_gone(name: str) -> bool:
        events.append(name)
        return True

    monkeypatch.setattr(nspawn_engine, "wait_link_gone", wait_link_gone)
    monkeypatch.setattr(NspawnContainer, "_boot", boot)
    return container, events


def test_an_nspawn_reboot_boots_the_same_root_again_once_the_old_veth_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container, events = _rebooting(tmp_path, monkeypatch, nspawn_engine.NSPAWN_REBOOTED)
    container.reboot()
    assert events == ["run ['systemctl', 'reboot']", "ve-qssd12-abc", "boot ab"]
    # What the first boot's cgroups counted is kept: the scenario's CPU time spans a reboot.
    assert container.cpu_offset == 2.5
    assert container.cpu_seconds() == 3.5


def test_an_nspawn_container_that_powers_off_instead_is_not_booted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container, events = _rebooting(tmp_path, monkeypatch, 0)
    with pytest.raises(ContainerError, match="exited with 0 after systemctl reboot, not 133"):
        container.reboot()
    assert events == ["run ['systemctl', 'reboot']"]
    with pytest.raises(ContainerError, match="not running: nothing to reboot"):
        container.reboot()  # nspawn is gone: booted()'s teardown is all that is left
    offline = OfflineRoot(tmp_path, "qssd12-off", [])
    with pytest.raises(ContainerError, match="systemd is not running in this root"):
        offline.reboot()


def test_a_containers_init_starts_at_niceness_zero_whatever_the_harnesss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["systemd-nspawn", "--boot"]
    monkeypatch.setattr(os, "getpriority", lambda which, who: 10)
    assert engine_base.at_niceness_zero(argv) == ["nice", "--adjustment=-10", *argv]
    monkeypatch.setattr(os, "getpriority", lambda which, who: 0)
    assert engine_base.at_niceness_zero(argv) == argv


def test_machine_names_fit_a_veth_name() -> None:
    names = {machine_name(t) for t in TARGETS.values()}
    assert len(names) == len(TARGETS)
    assert all(len("ve-" + n) <= 15 for n in names)


def test_command_line_runs_strings_through_sh() -> None:
    assert command_line("echo $HOME") == ["/bin/sh", "-c", "echo $HOME"]
    assert command_line(["systemctl", "is-active", "x"]) == ["systemctl", "is-active", "x"]


def test_find_child_parses_proc_stat() -> None:
    with subprocess.Popen(["sleep", "5"]) as child:
        try:
            assert find_child(os.getpid(), "sleep") == child.pid
            assert find_child(os.getpid(), "no-such-command") == 0
        finally:
            child.kill()


def test_host_provides_script_is_valid_shell_naming_the_capabilities() -> None:
    script = host_provides_script()
    assert "Name: qss-host-provides" in script
    capabilities = ("python3", "systemd", "/bin/sh", "python(abi)", "NetworkManager")
    for capability in (*capabilities, "networkd-dispatcher", "/usr/sbin/alternatives"):
        assert f"Provides: {capability}" in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_scenario_registry_rejects_duplicates_and_bad_boot_kinds() -> None:
    @scenario("test-only-registry", families=("deb",))
    def first(ctx: ScenarioContext) -> None:
        """First line is the description."""

    try:
        registered = SCENARIOS["test-only-registry"]
        # The words are taken for the enums: scenarios may be written either way.
        assert registered.families == (Family.DEB,) and registered.boot is BootKind.SHARED
        assert registered.description == "First line is the description."
        with pytest.raises(ConfigurationError, match="twice"):
            scenario("test-only-registry")(lambda ctx: None)
        with pytest.raises(ConfigurationError, match="'vm'") as boot:
            scenario("test-only-bad-boot", boot="vm")
        assert boot.value.hint is not None and "'offline'" in boot.value.hint
        with pytest.raises(ConfigurationError, match="'apk'"):
            scenario("test-only-bad-family", families=("apk",))
    finally:
        del SCENARIOS["test-only-registry"]


def test_load_scenarios_finds_the_lifecycle_table() -> None:
    names = set(load_scenarios())
    assert {
        "install-no-qmail",
        "install-qmail",
        "reload-and-flush",
        "stop-in-flight",
        "upgrade",
        "remove",
        "purge",
        "offline-install",
        "policy-rc-d-101",
        "networkmanager-hook",
        "networkd-hook",
        "status",
        # issue 17: load and faults, on every target
        "log-burst",
        "restart-storm",
        "transient-faults",
        "upgrade-failed-unit",
        "last-words",
        "reload-virtualdomain",
        "journal-install-ids",
    } <= names
    for name in ("log-burst", "last-words", "upgrade-failed-unit", "journal-install-ids"):
        assert all(SCENARIOS[name].applies_to(target) for target in TARGETS.values()), name
    assert not SCENARIOS["purge"].applies_to(RPM)
    assert SCENARIOS["upgrade"].applies_to(RPM)


def _noop(ctx: ScenarioContext) -> None:
    """Does nothing."""


def test_plan_shares_one_boot_and_isolates_offline() -> None:
    both, shared, offline = tuple(Family), BootKind.SHARED, BootKind.OFFLINE
    scenarios = [
        Scenario("d", _noop, both, offline, ""),
        Scenario("a", _noop, both, shared, ""),
        Scenario("b", _noop, both, shared, ""),
        Scenario("c", _noop, (Family.DEB,), shared, ""),
        Scenario("e", _noop, both, offline, ""),
        Scenario("w", _noop, both, shared, "", waits=True),
        Scenario("f", _noop, both, shared, ""),
    ]
    deb = runner.plan(D12, scenarios)
    assert [(kind, [s.name for s in group]) for kind, group in deb] == [
        (shared, ["a", "b", "c", "f"]),
        (shared, ["w"]),  # the waiting ones: a second boot, beside the first
        (offline, ["d"]),
        (offline, ["e"]),
    ]
    rpm = runner.plan(RPM, scenarios)
    assert [s.name for _, group in rpm for s in group] == ["a", "b", "f", "w", "d", "e"]


def test_the_waiting_scenarios_run_beside_the_others_in_a_second_boot(tmp_path: Path) -> None:
    # Each of the two boots' scenarios waits for the other's at a barrier: the run only
    # passes when both boots run at once.
    met = threading.Barrier(2, timeout=30)

    def meet(ctx: ScenarioContext) -> None:
        met.wait()

    scenarios = [
        Scenario("works", meet, tuple(Family), BootKind.SHARED, ""),
        Scenario("waits", meet, tuple(Family), BootKind.SHARED, "", waits=True),
        *_group("offline", boot=BootKind.OFFLINE),
    ]
    backend = FakeBackend(RecordingContainer())
    outcome = runner.run_target(
        D12, scenarios, dist=tmp_path, previous=None, logs=tmp_path, backend=backend
    )
    assert [(r.scenario, r.status) for r in outcome.results] == [
        ("works", Status.PASS),
        ("waits", Status.PASS),
        ("offline", Status.PASS),
    ]
    assert sorted(backend.started) == sorted(
        [(BootKind.SHARED, "debian-12")] * 2 + [(BootKind.OFFLINE, "debian-12")]
    )
    assert backend.started[-1] == (BootKind.OFFLINE, "debian-12")  # after both shared boots


def test_check_output_failure_names_command_exit_code_and_output() -> None:
    container = RecordingContainer({"systemctl start qmail-send": (1, "Job failed")})
    ctx = ScenarioContext(TARGETS["debian-12"], container, Path("/nonexistent"))
    with pytest.raises(ScenarioFailed) as info:
        ctx.check_output("systemctl start qmail-send")
    text = str(info.value)
    assert "exit 1: systemctl start qmail-send" in text
    assert "Job failed" in text and "stderr text" in text and "expected exit 0" in text
    assert ctx.run_expect([0, 1], "systemctl start qmail-send").returncode == 1


def test_assert_active_reports_state_and_status() -> None:
    container = RecordingContainer({"systemctl is-active qmail-send.service": (3, "inactive\n")})
    ctx = ScenarioContext(TARGETS["debian-12"], container, Path("/nonexistent"))
    ctx.assert_active(expected="inactive")
    with pytest.raises(ScenarioFailed, match="'inactive', expected 'active'"):
        ctx.assert_active()


def test_starts_since_counts_finished_start_jobs() -> None:
    export = (
        "MESSAGE=Stopping\nJOB_TYPE=stop\n\n"
        "MESSAGE=Stopped\nJOB_TYPE=restart\nJOB_RESULT=done\n\n"
        "MESSAGE=Started\nJOB_TYPE=start\nJOB_RESULT=done\n\n"
        "MESSAGE=Failed\nJOB_TYPE=start\nJOB_RESULT=failed\n"
    )
    cmd = "journalctl --quiet --after-cursor=C -o export UNIT=qmail-send.service"
    ctx = ScenarioContext(TARGETS["debian-12"], RecordingContainer({cmd: (0, export)}), Path("."))
    assert ctx.starts_since("C") == 1


def _result(
    target: str, name: str, status: Status, seconds: float, msg: str = ""
) -> runner.ScenarioResult:
    return runner.ScenarioResult(target, name, status, seconds, msg)


def _runs() -> list[runner.TargetRun]:
    d12 = runner.TargetRun(D12, seconds=12.5, boot_seconds=[0.5, 0.7, 0.6])
    d12.results = [
        _result("debian-12", "install", Status.PASS, 1.25),
        _result("debian-12", "upgrade", Status.FAIL, 3.0, "exit 1: apt-get install x\nE: broken"),
    ]
    rpm = runner.TargetRun(RPM, seconds=9.0)
    rpm.results = [_result("rpm-on-debian-13", "install", Status.ERROR, 0.0, "boot: no systemd")]
    return [d12, rpm]


def test_table_has_a_row_per_scenario_and_a_column_per_target() -> None:
    lines = runner.render_table(_runs()).splitlines()
    assert lines[0].split() == ["scenario", "debian-12", "rpm-on-debian-13"]
    assert lines[2].split() == ["install", "pass", "1.2s", "ERROR", "0.0s"]
    assert lines[3].split() == ["upgrade", "FAIL", "3.0s", "-"]
    assert lines[4].split() == ["(boot,", "median)", "0.6s", "-"]
    assert lines[5].split() == ["(target", "total)", "12.5s", "9.0s"]
    assert len(lines) == 6  # no CPU row: no result measured any


def test_table_sums_each_targets_scenario_cpu_time() -> None:
    runs = _runs()
    runs[0].results[0].cpu_seconds = 2.0
    runs[0].results[1].cpu_seconds = 1.25
    last = runner.render_table(runs).splitlines()[-1]
    assert last.split() == ["(scenario", "CPU)", "3.2s", "-"]


def _round(upgrade: Status, seconds: float) -> list[runner.TargetRun]:
    """One run of two scenarios on debian-12 and a skipped registry target."""
    d12 = runner.TargetRun(D12, seconds=seconds)
    d12.results = [
        _result("debian-12", "install", Status.PASS, seconds / 10),
        _result("debian-12", "upgrade", upgrade, seconds / 5, "exit 1: apt-get install x"),
    ]
    fedora = runner.TargetRun(targets.IMAGE_TARGETS["fedora-45"], skipped="no registry")
    fedora.results = [_result("fedora-45", n, Status.SKIP, 0.0) for n in ("install", "upgrade")]
    return [d12, fedora]


def test_repeated_runs_give_each_cell_its_passes_out_of_its_runs() -> None:
    rounds = [_round(Status.PASS, 10.0), _round(Status.FAIL, 30.0), _round(Status.PASS, 20.0)]
    lines = runner.render_repeats(rounds).splitlines()
    assert lines[0].split() == ["scenario", "debian-12", "fedora-45"]
    assert lines[2].split() == ["install", "3/3", "2.0s", "skip"]
    assert lines[3].split() == ["upgrade", "2/3", "4.0s", "skip"]  # the median of 2, 6, 4
    assert lines[4].split() == ["(target", "total,", "median)", "20.0s", "0.0s"]


def test_smoke_repeat_runs_the_selection_n_times_and_fails_if_one_run_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses = iter([Status.PASS, Status.FAIL, Status.PASS])
    kept: list[Path] = []

    def run_matrix(*args: object, logs: Path, **kwargs: object) -> list[runner.TargetRun]:
        kept.append(logs)
        return _round(next(statuses), 10.0)

    backend = FakeBackend(RecordingContainer())
    monkeypatch.setattr(runner, "require_root", lambda: None)
    monkeypatch.setattr(runner, "check_dist", lambda dist, targets: None)
    monkeypatch.setattr(runner, "make_backend", lambda name: backend)
    monkeypatch.setattr(runner, "build_previous", lambda formats: tmp_path)
    monkeypatch.setattr(runner, "record_timings", lambda *args: None)
    monkeypatch.setattr(runner, "run_matrix", run_matrix)
    monkeypatch.setattr(runner, "DIST", tmp_path / "dist")
    code = runner.main(["--target", "debian-12", "--scenario", "install-qmail", "--repeat", "3"])
    out = capsys.readouterr().out
    assert code == 1  # one of the three runs failed a cell
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["install"] == ["3/3", "1.0s", "skip"] and rows["upgrade"] == ["2/3", "2.0s", "skip"]
    assert [p.name for p in kept] == ["run-1", "run-2", "run-3"]
    assert out.count("fedora-45: skipped: no registry") == 1
    assert "3 runs;" in out
    assert runner.parse_args([]).repeat == 1
    with pytest.raises(SystemExit) as usage:
        runner.parse_args(["--repeat", "0"])
    assert usage.value.code == 2


def test_junit_counts_failures_and_errors_per_target() -> None:
    root = ET.fromstring(runner.junit_xml(_runs()))  # noqa: S314 - our own output
    d12, rpm = root.findall("testsuite")
    assert (d12.get("name"), d12.get("tests"), d12.get("failures")) == ("debian-12", "2", "1")
    assert rpm.get("errors") == "1"
    failure = d12.find("testcase[@name='upgrade']/failure")
    assert failure is not None and failure.get("message") == "exit 1: apt-get install x"
    assert failure.text is not None and "E: broken" in failure.text


def test_failure_report_names_target_scenario_command_and_output() -> None:
    report = runner.failure_report(_runs())
    assert "FAIL debian-12 / upgrade\n  exit 1: apt-get install x\n  E: broken" in report
    assert "ERROR rpm-on-debian-13 / install" in report
    long = [_result("debian-12", "x", Status.FAIL, 1.0, "\n".join(f"line {i}" for i in range(100)))]
    run_ = runner.TargetRun(D12, results=long)
    assert len(runner.failure_report([run_]).splitlines()) <= 35


def test_failure_logs_keep_what_exists_of_the_files_worth_keeping(tmp_path: Path) -> None:
    # `test -e` says which of the files exist in the container: only /var/log/dpkg.log and
    # the stand-in's logs (the answers default to exit 0: make every other one missing).
    missing = [*runner.FAILURE_FILES, "/var/qmail/queue", "/etc/extra"]
    present = ["/var/log/dpkg.log", "/var/qmail/control"]
    container = RecordingContainer({f"test -e {p}": (1, "") for p in missing if p not in present})
    ctx = ScenarioContext(D12, container, Path("."))
    ctx.artifacts.append("/etc/extra")
    where = tmp_path / "debian-12" / "upgrade"
    (where / "stale-from-last-run").parent.mkdir(parents=True)
    (where / "stale-from-last-run").write_text("old")
    result = _result("debian-12", "upgrade", Status.FAIL, 1.0, "exit 1: boom")
    assert runner.save_failure_logs(ctx, result, where) == where
    kept = sorted(p.name for p in where.iterdir())
    assert kept == ["failure.txt", "journal.txt", "var_log_dpkg.log", "var_qmail_control"]
    assert (where / "failure.txt").read_text().endswith("scenario: upgrade\n\nexit 1: boom\n")


def test_smoke_refuses_to_run_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigurationError, match="must run as root"):
        runner.main(["--target", "debian-12"])


def test_remove_cgroup_removes_nested_directories_deepest_first(tmp_path: Path) -> None:
    top = tmp_path / "qss-x"
    (top / "payload" / "system.slice" / "qmail-send.service").mkdir(parents=True)
    (top / "supervisor").mkdir()
    remove_cgroup(top)
    assert not top.exists()


def test_in_cgroups_enters_every_cgroup_before_the_command(tmp_path: Path) -> None:
    cgroups = [tmp_path / "a", tmp_path / "b"]
    for c in cgroups:
        c.mkdir()
    argv = in_cgroups(cgroups, ["sh", "-c", "echo ran $0", "x y"])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out == "ran x y\n"
    pids = {(c / "cgroup.procs").read_text().strip() for c in cgroups}
    assert len(pids) == 1 and pids.pop().isdigit()


def test_cpu_seconds_sums_cgroup2_usage_and_skips_v1_hierarchies(tmp_path: Path) -> None:
    v1, container, commands = (tmp_path / n for n in ("systemd", "unified", "exec"))
    for c in (v1, container, commands):
        c.mkdir()
    (v1 / "cgroup.procs").write_text("")  # a v1 hierarchy: no cpu.stat
    (container / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (commands / "cpu.stat").write_text("usage_usec 500000\n")
    assert cpu_seconds([v1, container, commands]) == pytest.approx(3.0)
    assert cpu_seconds([v1]) is None


def test_run_scenario_counts_the_cpu_time_used_while_it_ran(tmp_path: Path) -> None:
    container = RecordingContainer()
    container.cpu = 40.0  # what the container used before this scenario

    def busy(ctx: ScenarioContext) -> None:
        container.cpu = 42.5

    ctx = ScenarioContext(D12, container, tmp_path)
    busy_scenario = Scenario("busy", busy, (Family.DEB,), BootKind.SHARED, "")
    result = runner.run_scenario(ctx, busy_scenario, tmp_path / "logs")
    assert result.status is Status.PASS
    assert result.cpu_seconds == pytest.approx(2.5)
    container.cpu = None  # a host without cgroup2 counts nothing: no figure, not 0
    assert runner.run_scenario(ctx, busy_scenario, tmp_path / "logs").cpu_seconds is None


def test_run_scenario_tells_a_failed_check_from_a_broken_harness(tmp_path: Path) -> None:
    def fails(ctx: ScenarioContext) -> None:
        ctx.expect(False, "the unit is masked")

    def asserts(ctx: ScenarioContext) -> None:
        assert ctx.is_active() == "nonsense"

    def breaks(ctx: ScenarioContext) -> None:
        raise ConfigurationError("no dist/")

    ctx = ScenarioContext(D12, RecordingContainer(), tmp_path)
    outcomes = {}
    for function in (fails, asserts, breaks):
        one = Scenario(function.__name__, function, (Family.DEB,), BootKind.SHARED, "")
        outcomes[one.name] = runner.run_scenario(ctx, one, tmp_path / one.name)
    assert outcomes["fails"].status is Status.FAIL
    assert outcomes["fails"].message == "the unit is masked"
    assert outcomes["asserts"].status is Status.FAIL
    assert outcomes["asserts"].message.startswith("assertion failed at test_smoke_harness.py:")
    assert outcomes["breaks"].status is Status.ERROR
    assert all((tmp_path / name / "failure.txt").is_file() for name in outcomes)


@pytest.mark.parametrize(
    ("membership", "mounted", "expected"),
    [
        (
            "0::/user.slice/session-1.scope\n",
            ["cgroup.controllers"],
            [("", "/user.slice/session-1.scope")],
        ),
        (
            "12:cpu,cpuacct:/x\n1:name=systemd:/init.scope\n0::/init.scope\n",
            ["systemd/cgroup.procs", "unified/cgroup.procs"],
            [("systemd", "/init.scope"), ("unified", "/init.scope")],
        ),
        (
            "12:cpu,cpuacct:/x\n1:name=systemd:/init.scope\n",
            ["systemd/cgroup.procs"],
            [("systemd", "/init.scope")],
        ),
        ("1:name=systemd:/init.scope\n", [], []),
    ],
    ids=["cgroup2-only", "hybrid", "v1-only", "none-mounted"],
)
def test_cgroup_hierarchies_follow_the_hosts_layout(
    tmp_path: Path, membership: str, mounted: list[str], expected: list[tuple[str, str]]
) -> None:
    (tmp_path / "self").write_text(membership)
    base = tmp_path / "sys-fs-cgroup"
    for rel in mounted:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("")
    found = cgroup_hierarchies(tmp_path / "self", base)
    assert found == [(base / mount if mount else base, path) for mount, path in expected]


def test_prune_removes_only_unheld_old_unkept_copies(tmp_path: Path) -> None:
    cache = rootfs.RootfsCache(tmp_path)
    runs = tmp_path / "runs"
    for name in ("stale", "held", "kept", "young"):
        (runs / name / "root").mkdir(parents=True)
    (runs / "kept" / rootfs.KEPT_MARKER).write_text("kept")
    old = time.time() - 2 * rootfs.STALE_AFTER
    for name in ("stale", "held", "kept"):
        os.utime(runs / name, (old, old))
    with (runs / "held.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        removed = cache.prune_stale_runs()
    assert removed == [runs / "stale"]
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["held", "kept", "young"]


def test_prune_removes_only_old_unheld_roots_that_no_target_names(tmp_path: Path) -> None:
    cache = rootfs.RootfsCache(tmp_path)
    d12 = TARGETS["debian-12"]
    current = rootfs.cache_key(d12)
    older = ("bookworm-0123456789abcdef", "trixie-fedcba9876543210", "bullseye-00000000000000ff")
    names = (current, *older)
    for name in (*names, "bench", "runs"):
        (tmp_path / name).mkdir()
    old = time.time() - 2 * rootfs.SUPERSEDED_AFTER
    for name in (current, names[1], names[3], "bench", "runs"):
        os.utime(tmp_path / name, (old, old))  # names[2] was used recently
    with (tmp_path / f"{names[3]}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # being built or checked out by another run
        removed = cache.prune_superseded_roots([d12])
    assert removed == [tmp_path / names[1]]
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert left == sorted([current, names[2], names[3], "bench", "runs"])


def test_ensure_marks_a_cached_root_as_used_beside_it_not_in_it(tmp_path: Path) -> None:
    """The root itself is left as it is: another run may be streaming it into `podman import`
    (tar fails on a directory that changes as it reads it), or have it as an overlay's lower
    layer. Its last use is a stamp beside it, which prune_superseded_roots() reads."""
    cache = rootfs.RootfsCache(tmp_path)
    d12 = TARGETS["debian-12"]
    root = cache.path(d12)
    root.mkdir()
    old = time.time() - 2 * rootfs.SUPERSEDED_AFTER
    os.utime(root, (old, old))
    assert cache.ensure(d12) == root
    assert root.stat().st_mtime == old
    assert time.time() - (tmp_path / f"{root.name}.used").stat().st_mtime < 60
    # A root that no target names any more, unused for long but for its stamp, stays; once
    # the stamp is old too, it goes, and its stamp with it.
    gone = tmp_path / "bookworm-0123456789abcdef"
    gone.mkdir()
    os.utime(gone, (old, old))
    stamp = tmp_path / f"{gone.name}.used"
    stamp.touch()
    assert cache.prune_superseded_roots([d12]) == []
    os.utime(stamp, (old, old))
    assert cache.prune_superseded_roots([d12]) == [gone]
    assert not gone.exists() and not stamp.exists()


def test_sigterm_becomes_keyboard_interrupt_so_containers_are_torn_down() -> None:
    saved = signal.getsignal(signal.SIGTERM)
    try:
        runner.interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_debian_roots_keep_an_archive_slice_for_bsd_mailx(tmp_path: Path) -> None:
    script = apt_subset_script()
    for name in ("debian-11", "debian-12", "debian-13"):
        assert script in debian_root(TARGETS[name]).customize  # so the cache key changes with it
    assert script not in debian_root(RPM).customize
    assert "apt-get install -d -y -q bsd-mailx" in script
    assert f"file:{APT_SUBSET_DIR} ./" in script and APT_SUBSET_LIST in script
    (tmp_path / "s.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "s.sh")], check=False).returncode == 0


def test_only_a_passed_scenario_hands_its_state_to_the_next(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    def make(name: str, *, leaves: bool, fails: bool) -> Scenario:
        def function(ctx: ScenarioContext) -> None:
            seen.append((name, ctx.handover))
            if leaves:
                ctx.leaves = RUNNING_CURRENT
            if fails:
                raise ScenarioFailed("no")

        return Scenario(name, function, (Family.DEB,), BootKind.SHARED, "")

    group = [
        make("a", leaves=True, fails=False),
        make("b", leaves=True, fails=True),
        make("c", leaves=False, fails=False),
        make("d", leaves=True, fails=False),
        make("e", leaves=False, fails=False),
    ]
    backend = FakeBackend(RecordingContainer())
    outcome = runner.run_target(
        D12, group, dist=tmp_path, previous=None, logs=tmp_path, backend=backend
    )
    assert [r.status for r in outcome.results] == ["pass", "fail", "pass", "pass", "pass"]
    assert backend.started == [(BootKind.SHARED, "debian-12")]  # one boot for the group
    assert seen == [
        ("a", None),
        ("b", RUNNING_CURRENT),
        ("c", None),  # b left the state but failed: nothing is handed over
        ("d", None),
        ("e", RUNNING_CURRENT),
    ]


def test_bench_section_runs_keep_the_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    assert previous_sections(path) == {}  # no earlier bench
    path.write_text('{"cpus": 2, "sections": {"piuparts": {"debian-12": {"median_s": 17.1}}}}')
    assert previous_sections(path) == {"piuparts": {"debian-12": {"median_s": 17.1}}}
    path.write_text("not json")
    assert previous_sections(path) == {}


def test_repo_http_server_answers_a_conditional_get_in_full(tmp_path: Path) -> None:
    # A republish within the second of the client's last update has the same Last-Modified:
    # plain http.server would answer 304 and apt would see no new version.

    (tmp_path / "InRelease").write_text("new index\n")
    with subprocess.Popen(
        [sys.executable, "-c", HTTP_SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as server:
        _ask_for_the_index(server, tmp_path)


def _ask_for_the_index(server: subprocess.Popen[str], tmp_path: Path) -> None:
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[-1])
        stamp = email.utils.formatdate((tmp_path / "InRelease").stat().st_mtime, usegmt=True)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/InRelease", headers={"If-Modified-Since": stamp}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert response.status == 200
            assert response.read() == b"new index\n"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _group(*names: str, boot: BootKind = BootKind.SHARED) -> list[Scenario]:
    return [Scenario(n, _noop, tuple(Family), boot, "") for n in names]


def test_a_boot_that_fails_is_an_error_for_its_scenarios_alone(tmp_path: Path) -> None:
    backend = FakeBackend(RecordingContainer(), failing=[BootKind.SHARED])
    scenarios = [*_group("a", "b"), *_group("offline", boot=BootKind.OFFLINE)]
    reported: list[str] = []
    outcome = runner.run_target(
        D12,
        scenarios,
        dist=tmp_path,
        previous=None,
        logs=tmp_path,
        backend=backend,
        report=lambda r: reported.append(r.scenario),
    )
    statuses = {r.scenario: (r.status, r.message) for r in outcome.results}
    boot_error = "shared boot: systemd did not finish booting"
    assert statuses == {
        "a": (Status.ERROR, boot_error),
        "b": (Status.ERROR, boot_error),
        "offline": (Status.PASS, ""),  # the next boot of the target still runs
    }
    assert reported == ["a", "b", "offline"]
    assert backend.stopped == 1  # the offline root's container, torn down


def test_ctrl_c_starts_no_further_target_and_tears_down(tmp_path: Path) -> None:
    backend = FakeBackend(RecordingContainer())

    def interrupted(result: runner.ScenarioResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_matrix(
            [D12, RPM],
            _group("a", "b"),
            dist=tmp_path,
            previous=None,
            logs=tmp_path,
            backend=backend,
            jobs=1,
            report=interrupted,
        )
    assert backend.started == [(BootKind.SHARED, "debian-12")]  # rpm-on-debian-13 never
    assert backend.stopped == 1


def test_booted_tears_down_after_an_exception_inside_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events: list[str] = []

    class Cache(rootfs.RootfsCache):
        @contextlib.contextmanager
        def checkout(self, target: object, name: str, *, keep: bool = False) -> Iterator[Path]:
            events.append(f"checkout keep={keep}")
            try:
                yield tmp_path / "root"
            finally:
                events.append("discard")

    def start(self: NspawnContainer) -> None:
        events.append("start")
        if self.name.endswith("!"):
            raise ContainerError("no systemd")

    monkeypatch.setattr(nspawn_engine, "require", lambda tool: tool)
    monkeypatch.setattr(NspawnContainer, "start", start)
    monkeypatch.setattr(NspawnContainer, "stop", lambda self: events.append("stop"))
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError, match="scenario broke"), booted(D12, cache=cache):
        raise RuntimeError("scenario broke")
    assert events == ["checkout keep=False", "start", "stop", "discard"]
    events.clear()
    monkeypatch.setattr(nspawn_engine, "machine_name", lambda target: "qssd12-x!")
    with pytest.raises(ContainerError), booted(D12, cache=cache):
        events.append("never reached")
    assert events == ["checkout keep=False", "start", "stop", "discard"]  # a failed boot too
    events.clear()
    monkeypatch.setenv("QSS_KEEP_CONTAINER", "1")
    monkeypatch.setattr(nspawn_engine, "machine_name", lambda target: "qssd12-x")
    with booted(D12, cache=cache):
        pass
    assert events == ["checkout keep=True", "start", "discard"]  # kept: not stopped


def _fake_dist(tmp_path: Path, family: Family, names: list[str]) -> Path:
    """A dist/ whose package files the manager reads from a table (no dpkg-deb, no rpm)."""
    dist = tmp_path / f"dist-{family}"
    dist.mkdir()
    for name in names:
        (dist / family.manager.file_name(name, "1.1.0")).write_text(name)
    return dist


@pytest.fixture
def identities(monkeypatch: pytest.MonkeyPatch) -> None:
    """The managers read a package file's name from its content, its version is 1.1.0-1."""
    for family in Family:
        monkeypatch.setattr(
            type(family.manager), "_identity", lambda self, path: (path.read_text(), "1.1.0-1")
        )


@pytest.mark.usefixtures("identities")
def test_install_packages_copies_the_files_and_installs_them_with_apt(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path, Family.DEB, [MAIN, SENDMAIL_PACKAGE])
    container = RecordingContainer()
    ctx = ScenarioContext(D12, container, dist)
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    main_deb = f"/srv/qss/debs/{MAIN}_1.1.0-1_all.deb"
    sendmail_deb = f"/srv/qss/debs/{SENDMAIL_PACKAGE}_1.1.0-1_all.deb"
    assert container.copied == {main_deb: dist / Path(main_deb).name,
                                sendmail_deb: dist / Path(sendmail_deb).name}  # fmt: skip
    assert container.commands[-1] == (
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {main_deb} {sendmail_deb}"
    )
    with pytest.raises(ScenarioFailed, match="package qmail-send-systemd-networkd not built"):
        ctx.install_packages(["qmail-send-systemd-networkd"])
    container.answers[container.commands[-1]] = (100, "E: broken")
    with pytest.raises(ScenarioFailed, match="E: broken"):
        ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    assert ctx.install_packages([MAIN, SENDMAIL_PACKAGE], check=False).returncode == 100


@pytest.mark.usefixtures("identities")
def test_install_packages_makes_one_dnf_repository_per_build(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path, Family.RPM, [MAIN, NM_PACKAGE])
    container = RecordingContainer()
    ctx = ScenarioContext(RPM, container, dist)
    ctx.install_packages()
    made = [c for c in container.commands if c.startswith(("copy", "createrepo_c"))]
    assert sorted(made) == sorted(
        [f"copy {p} /srv/qss/rpms/{p.name}" for p in dist.iterdir()]
        + ["createrepo_c --quiet /srv/qss/rpms"]
    )
    # An upgrade must name the version: `dnf install NAME` leaves an installed one as it is.
    assert container.commands[-1].endswith(f" install {MAIN}-1.1.0-1")
    assert "cat > /srv/qss/rpms/.qss-stamp" in container.commands  # what it was made from
    # The container's repository already has this build (its stamp): not made again.
    container.answers["cat /srv/qss/rpms/.qss-stamp"] = (0, _stamp(dist))
    container.commands.clear()
    ctx.install_packages([NM_PACKAGE])
    assert not [c for c in container.commands if c.startswith(("copy", "createrepo_c"))]
    assert container.commands[-1].endswith(f" install {NM_PACKAGE}-1.1.0-1")


def _stamp(dist: Path) -> str:
    return "".join(
        f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in sorted(dist.iterdir())
    )


@pytest.mark.parametrize("target", [D12, RPM], ids=lambda t: t.name)
def test_reset_purges_every_package_of_the_payload_in_one_command(target: object) -> None:
    assert isinstance(target, type(D12))
    container = RecordingContainer()
    ScenarioContext(target, container, Path(".")).reset()
    (command,) = container.commands
    ours = [p.name for p in payload.load_packages()]
    loop = command.split("; do", 1)[0]
    # Every package of packaging/nfpm/, the ones that depend on the main package before it.
    assert loop.split(" in ", 1)[1].split() == [*ours[1:], ours[0]]
    assert ("dpkg --purge" in command) == (target.family is Family.DEB)
    assert ("rpm -e" in command) == (target.family is Family.RPM)
    assert "systemctl reset-failed qmail-send.service" in command


def _stub(bindir: Path, name: str, script: str) -> None:
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bindir / name).chmod(0o755)


@pytest.mark.parametrize(
    ("family", "stubs"),
    [
        (
            Family.DEB,
            {
                # dpkg's view: one package installed, one removed (its conffiles are left).
                "dpkg-query": 'case "$3" in a) echo installed;; b) echo config-files;;'
                " *) exit 1;; esac",
                "dpkg": 'echo "$@" >> "$LOG"',
            },
        ),
        (
            Family.RPM,
            {
                "rpm": 'if [ "$1" = -q ]; then case "$2" in a|b) exit 0;; *) exit 1;; esac;'
                ' else echo "$@" >> "$LOG"; fi',
            },
        ),
    ],
    ids=["deb", "rpm"],
)
def test_reset_removes_what_is_left_of_each_package_and_nothing_else(
    tmp_path: Path, family: Family, stubs: dict[str, str]
) -> None:
    for name, script in stubs.items():
        _stub(tmp_path / "bin", name, script)
    log = tmp_path / "log"
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "LOG": str(log)}
    command = family.manager.reset(["a", "b", "c"])
    subprocess.run(["sh", "-c", command], env=env, check=True)
    removed = "--purge a b" if family is Family.DEB else "-e a b"
    assert log.read_text() == f"{removed}\n"  # c was never installed: not named
    log.unlink()
    subprocess.run(["sh", "-c", family.manager.reset(["c"])], env=env, check=True)
    assert not log.exists()  # nothing to remove: the low-level tool is not even run


def test_each_family_stages_its_packages_its_own_way(tmp_path: Path) -> None:
    files = []
    for name in ("qmail-send-systemd", "qmail-send-systemd-sendmail"):
        (tmp_path / f"{name}.pkg").write_text(name)
        files.append(PackageFile(tmp_path / f"{name}.pkg", name, "1.0"))
    deb = RecordingContainer()
    Family.DEB.manager.stage(deb, files[:1], files, "/srv/qss/debs")
    assert deb.commands == [f"copy {files[0].path} /srv/qss/debs/qmail-send-systemd.pkg"]
    rpm = RecordingContainer()
    Family.RPM.manager.stage(rpm, files[:1], files, "/srv/qss/rpms")
    assert len(rpm.copied) == 2 and "createrepo_c --quiet /srv/qss/rpms" in rpm.commands
    # The same build staged again in the same boot: the stamp matches, nothing is copied.
    stamp = rpm.commands.index("createrepo_c --quiet /srv/qss/rpms") + 1
    assert rpm.commands[stamp].startswith("cat > /srv/qss/rpms/.qss-stamp")
    listed = "".join(f"{f.path.name} {f.path.stat().st_size} {f.path.stat().st_mtime_ns}\n"
                     for f in sorted(files, key=lambda f: f.path))  # fmt: skip
    again = RecordingContainer({"cat /srv/qss/rpms/.qss-stamp": (0, listed)})
    Family.RPM.manager.stage(again, files[:1], files, "/srv/qss/rpms")
    assert again.commands == ["cat /srv/qss/rpms/.qss-stamp"]


def test_a_smoke_root_has_a_qmail_layer_keyed_on_base_source_and_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, layer = rootfs.base_key(D12), rootfs.cache_key(D12)
    assert layer == rootfs.qmail_key(D12) != base
    assert layer.startswith("bookworm-") and rootfs.ROOT_NAME.fullmatch(layer)
    buildd = replace(D12, root=replace(debian_root(D12), variant="buildd"))
    assert rootfs.cache_key(buildd) == rootfs.base_key(buildd)  # no qmail in a build root
    monkeypatch.setattr(qmail_source, "TAR_SHA256", "0" * 64)
    assert rootfs.cache_key(D12) != layer and rootfs.base_key(D12) == base
    monkeypatch.undo()
    monkeypatch.setattr(qmail_root, "build_steps", lambda me=qmail_root.ME: ("true",))
    assert rootfs.cache_key(D12) != layer and rootfs.base_key(D12) == base


def test_a_root_s_build_steps_are_started_once_more_when_nspawn_could_not_set_it_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cold cache builds each root with nspawn steps: one that nspawn could not set up (the
    cgroup v1 mount refused) is started once more, as a boot or a command is."""
    seen: list[tuple[list[str], object]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append((argv, kwargs.get("again")))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(rootfs, "run", fake_run)
    monkeypatch.setattr(rootfs, "make_cgroups", lambda name: [])
    rootfs.RootfsCache._customize(["true", "false"], tmp_path)
    assert [again for _, again in seen] == [nspawn_setup_failed, nspawn_setup_failed]
    assert [argv[-1] for argv, _ in seen] == ["true", "false"]


def test_the_qmail_steps_are_the_documented_ones_and_parse() -> None:
    steps = qmail_root.build_steps()
    for step in steps:
        subprocess.run(["sh", "-n"], input=step, text=True, check=True)
    text = "\n".join(steps)
    # INSTALL.ids's Linux lines, as written (ordinary accounts: uids from 1000 up).
    assert "useradd -g nofiles -d /var/qmail/alias alias" in steps
    assert "useradd -g qmail -d /var/qmail qmails" in steps
    assert "make setup check" in text and f"./config-fast {qmail_root.ME}" in text
    assert "echo ./Maildir/ > /var/qmail/control/defaultdelivery" in steps
    # The build tools go again, and the build fails if the package set is not as before.
    assert "apt-get purge" in text and "diff -u" in text
    assert steps[-1].endswith(f"tar -C / -cpf {qmail_root.PRISTINE} var/qmail")


def test_a_cached_qmail_layer_is_used_without_its_base_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = rootfs.RootfsCache(tmp_path)
    layer = tmp_path / rootfs.cache_key(D12)
    layer.mkdir()
    monkeypatch.setattr(rootfs, "run", lambda *a, **k: pytest.fail("a warm run built something"))
    assert cache.ensure(D12) == layer
    assert not (tmp_path / rootfs.base_key(D12)).exists()


def test_a_cold_layer_builds_the_base_then_qmail_on_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def base(self: rootfs.RootfsCache, target: object, tmp: Path) -> None:
        (tmp / "etc").mkdir(parents=True)
        built.append("base")

    def qmail(self: rootfs.RootfsCache, base: Path, target: object, tmp: Path) -> None:
        assert base == tmp_path / rootfs.base_key(D12) and base.is_dir()
        (tmp / "etc").mkdir(parents=True)
        built.append("qmail")

    monkeypatch.setattr(rootfs.RootfsCache, "_build_base", base)
    monkeypatch.setattr(rootfs.RootfsCache, "_build_qmail", qmail)
    cache = rootfs.RootfsCache(tmp_path)
    assert cache.ensure(D12) == tmp_path / rootfs.cache_key(D12)
    assert cache.ensure(D12) == tmp_path / rootfs.cache_key(D12)
    assert built == ["base", "qmail"]
    # The source is checked before it is copied in: a wrong one fails the build, one line.
    monkeypatch.undo()
    monkeypatch.setenv("QSS_QMAIL_SOURCE", str(tmp_path / "none"))
    with pytest.raises(qmail_source.QmailSourceError, match="QSS_QMAIL_SOURCE: "):
        rootfs.RootfsCache(tmp_path)._build_qmail(tmp_path, D12, tmp_path / "x")


def test_a_boot_error_carries_the_console_logs_last_line(tmp_path: Path) -> None:
    # The run's directory (and the console log in it) goes at teardown: the error keeps what
    # nspawn said.
    container = NspawnContainer(tmp_path / "root", "qssd12-abcde")
    assert container.console_tail() == ""  # no log yet
    container.console_log.write_text("Spawning container qssd12-abcde on /x.\nFailed to X: Y\n\n")
    assert container.console_tail() == "Failed to X: Y"


class _FlakyNspawn(OfflineRoot):
    """An offline root whose systemd-nspawn fails to set the root up at its first start, as
    nspawn did in two cold CI runs (a cgroup v1 hierarchy it could not mount), then runs."""

    def _host_command(self, inner: list[str]) -> list[str]:
        script = (
            "import pathlib, sys; seen = pathlib.Path(sys.argv[1]); "
            "first = not seen.exists(); seen.touch(); "
            "sys.stderr.write('Failed to mount cgroup (type cgroup) on /sys/fs/cgroup/"
            'perf_event (MS_NOSUID|MS_NODEV|MS_NOEXEC "perf_event"): Operation not permitted\\n\''
            " if first else ''); print('' if first else 'ran'); sys.exit(1 if first else 0)"
        )
        return [sys.executable, "-c", script, str(self.root / "started")]


def test_nspawn_failing_to_set_a_root_up_is_started_once_more(tmp_path: Path) -> None:
    result = _FlakyNspawn(tmp_path, "qssd12-off", []).run(["true"])
    assert (result.returncode, result.stdout) == (0, "ran\n")
    # What the command inside says is never taken for nspawn's own failure.
    assert not nspawn_setup_failed("E: Failed to mount cgroup? no: a test's words")
    assert nspawn_setup_failed(
        "Failed to mount cgroup (type cgroup) on /sys/fs/cgroup/perf_event (...): EPERM\n"
    )
