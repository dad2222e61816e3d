"""Fast tests of the smoke harness's own logic: no root, no containers."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from qss_toolkit import rootfs, smoke
from qss_toolkit.cgroups import cgroup_hierarchies, cpu_seconds, in_cgroups, remove_cgroup
from qss_toolkit.container import NspawnContainer, command_line, find_child, machine_name
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.scenarios import (
    SCENARIOS,
    Scenario,
    ScenarioContext,
    ScenarioFailed,
    load_scenarios,
    scenario,
)
from qss_toolkit.targets import TARGETS, host_provides_script, select_targets


class RecordingContainer:
    """A Container that answers from a table: command line -> (exit code, stdout)."""

    name = "fake"

    def __init__(self, answers: Mapping[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        line = cmd if isinstance(cmd, str) else " ".join(cmd)
        self.commands.append(line)
        code, out = self.answers.get(line, (0, ""))
        return subprocess.CompletedProcess([line], code, out, "stderr text")

    def copy_into(self, src: Path, dest: str) -> None:
        self.commands.append(f"copy {src} {dest}")

    def copy_out(self, src: str, dest: Path) -> None:
        dest.write_text(f"copied {src}")

    def journal(self, unit: str | None = None) -> str:
        return "journal lines"

    cpu = 0.0

    def cpu_seconds(self) -> float | None:
        """Each reading is 1.5 s after the one before."""
        self.cpu += 1.5
        return self.cpu


def test_targets_cover_the_matrix() -> None:
    assert list(TARGETS) == ["debian-11", "debian-12", "debian-13", "rpm-on-debian-13"]
    assert {t.suite for t in TARGETS.values()} == {"bullseye", "bookworm", "trixie"}
    rpm = TARGETS["rpm-on-debian-13"]
    assert rpm.family == "rpm"
    assert "RPM-on-Debian" in rpm.label and "not Fedora" in rpm.label
    assert {"rpm", "dnf", "createrepo-c"} <= set(rpm.packages)
    for target in TARGETS.values():
        assert {"systemd", "dbus", "python3"} <= set(target.packages)
        # What our packages depend on, read from packaging/nfpm/*.yaml: the hooks' dispatchers.
        assert {"network-manager", "networkd-dispatcher"} <= set(target.packages)
        assert not [p for p in target.packages if p.startswith("qmail-send-systemd")]


def test_select_targets_rejects_unknown_names_with_the_choices() -> None:
    assert [t.name for t in select_targets(["debian-12", "debian-12"])] == ["debian-12"]
    assert len(select_targets(None)) == len(TARGETS)
    with pytest.raises(ConfigurationError, match="debian-99") as info:
        select_targets(["debian-99"])
    assert info.value.hint is not None and "debian-12" in info.value.hint
    assert info.value.return_code == 2


def test_cache_key_depends_on_suite_packages_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    d12 = TARGETS["debian-12"]
    key = rootfs.cache_key(d12)
    assert key.startswith("bookworm-")
    assert rootfs.cache_key(d12) == key  # stable
    assert rootfs.cache_key(replace(d12, extra_packages=("strace",))) != key
    assert rootfs.cache_key(replace(d12, customize=("true",))) != key
    assert rootfs.cache_key(TARGETS["debian-13"]) != rootfs.cache_key(TARGETS["rpm-on-debian-13"])
    monkeypatch.setattr(rootfs, "FORMAT_VERSION", rootfs.FORMAT_VERSION + 1)
    assert rootfs.cache_key(d12) != key


def test_cache_dir_follows_qss_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QSS_CACHE", str(tmp_path))
    assert rootfs.default_cache_dir() == tmp_path / "rootfs"
    monkeypatch.delenv("QSS_CACHE")
    assert rootfs.default_cache_dir().parts[-2:] == ("qmail-send-systemd", "rootfs")


def test_copy_method_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rootfs.COPY_ENV, "copy")
    assert rootfs.copy_method() == "copy"
    monkeypatch.setenv(rootfs.COPY_ENV, "hardlink")
    with pytest.raises(ConfigurationError, match="hardlink"):
        rootfs.copy_method()


def test_mmdebstrap_command_builds_a_systemd_root(tmp_path: Path) -> None:
    argv = rootfs.mmdebstrap_command(TARGETS["debian-11"], tmp_path / "root")
    assert argv[0] == "mmdebstrap" and "--variant=apt" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert set(include.removeprefix("--include=").split(",")) >= {"systemd", "dbus", "python3"}
    assert argv[-3:] == ["bullseye", str(tmp_path / "root"), "http://deb.debian.org/debian"]


def test_nspawn_command_line(tmp_path: Path) -> None:
    plain = NspawnContainer(tmp_path / "root", "qssd12-abc").nspawn_command()
    assert plain[1:5] == ["--boot", "--register=no", "--keep-unit", "--quiet"]
    assert f"--directory={tmp_path / 'root'}" in plain and "--network-veth" not in plain
    veth = NspawnContainer(tmp_path / "root", "x", network_veth=True).nspawn_command()
    assert "--network-veth" in veth


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
            import os

            assert find_child(os.getpid(), "sleep") == child.pid
            assert find_child(os.getpid(), "no-such-command") == 0
        finally:
            child.kill()


def test_host_provides_script_is_valid_shell_naming_the_capabilities() -> None:
    script = host_provides_script()
    assert "Name: qss-host-provides" in script
    for capability in (
        "python3",
        "systemd",
        "/bin/sh",
        "python(abi)",
        "NetworkManager",
        "networkd-dispatcher",
    ):
        assert f"Provides: {capability}" in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_scenario_registry_rejects_duplicates_and_bad_boot_kinds() -> None:
    @scenario("test-only-registry", families=("deb",))
    def first(ctx: ScenarioContext) -> None:
        """First line is the description."""

    try:
        registered = SCENARIOS["test-only-registry"]
        assert registered.families == ("deb",) and registered.boot == "shared"
        assert registered.description == "First line is the description."
        with pytest.raises(ConfigurationError, match="twice"):
            scenario("test-only-registry")(lambda ctx: None)
        with pytest.raises(ConfigurationError, match="boot"):
            scenario("test-only-bad-boot", boot="vm")
    finally:
        del SCENARIOS["test-only-registry"]


def test_load_scenarios_finds_the_lifecycle_table() -> None:
    names = set(load_scenarios())
    assert {
        "install-no-qmail",
        "install-standin",
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
    assert not SCENARIOS["purge"].applies_to(TARGETS["rpm-on-debian-13"])
    assert SCENARIOS["upgrade"].applies_to(TARGETS["rpm-on-debian-13"])


def _noop(ctx: ScenarioContext) -> None:
    """Does nothing."""


def test_plan_shares_one_boot_and_isolates_offline() -> None:
    scenarios = [
        Scenario("a", _noop, ("deb", "rpm"), "shared", ""),
        Scenario("b", _noop, ("deb", "rpm"), "shared", ""),
        Scenario("c", _noop, ("deb",), "shared", ""),
        Scenario("d", _noop, ("deb", "rpm"), "offline", ""),
    ]
    deb = smoke.plan(TARGETS["debian-12"], scenarios)
    assert [(kind, [s.name for s in group]) for kind, group in deb] == [
        ("shared", ["a", "b", "c"]),
        ("offline", ["d"]),
    ]
    rpm = smoke.plan(TARGETS["rpm-on-debian-13"], scenarios)
    assert [s.name for _, group in rpm for s in group] == ["a", "b", "d"]


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
    target: str, name: str, status: str, seconds: float, msg: str = ""
) -> smoke.ScenarioResult:
    return smoke.ScenarioResult(target, name, status, seconds, msg)


def _runs() -> list[smoke.TargetRun]:
    d12 = smoke.TargetRun(TARGETS["debian-12"], seconds=12.5, boot_seconds=[0.5, 0.7, 0.6])
    d12.results = [
        _result("debian-12", "install", "pass", 1.25),
        _result("debian-12", "upgrade", "fail", 3.0, "exit 1: apt-get install x\nE: broken"),
    ]
    rpm = smoke.TargetRun(TARGETS["rpm-on-debian-13"], seconds=9.0)
    rpm.results = [_result("rpm-on-debian-13", "install", "error", 0.0, "boot: no systemd")]
    return [d12, rpm]


def test_table_has_a_row_per_scenario_and_a_column_per_target() -> None:
    lines = smoke.render_table(_runs()).splitlines()
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
    last = smoke.render_table(runs).splitlines()[-1]
    assert last.split() == ["(scenario", "CPU)", "3.2s", "-"]


def test_junit_counts_failures_and_errors_per_target() -> None:
    root = ET.fromstring(smoke.junit_xml(_runs()))  # noqa: S314 - our own output
    d12, rpm = root.findall("testsuite")
    assert (d12.get("name"), d12.get("tests"), d12.get("failures")) == ("debian-12", "2", "1")
    assert rpm.get("errors") == "1"
    failure = d12.find("testcase[@name='upgrade']/failure")
    assert failure is not None and failure.get("message") == "exit 1: apt-get install x"
    assert failure.text is not None and "E: broken" in failure.text


def test_failure_report_names_target_scenario_command_and_output() -> None:
    report = smoke.failure_report(_runs())
    assert "FAIL debian-12 / upgrade\n  exit 1: apt-get install x\n  E: broken" in report
    assert "ERROR rpm-on-debian-13 / install" in report
    long = [_result("debian-12", "x", "fail", 1.0, "\n".join(f"line {i}" for i in range(100)))]
    run_ = smoke.TargetRun(TARGETS["debian-12"], results=long)
    assert len(smoke.failure_report([run_]).splitlines()) <= 35


def test_failure_logs_keep_message_journal_and_files(tmp_path: Path) -> None:
    container = RecordingContainer({})
    ctx = ScenarioContext(TARGETS["debian-12"], container, Path("."))
    result = _result("debian-12", "upgrade", "fail", 1.0, "exit 1: boom")
    where = smoke.save_failure_logs(ctx, result, tmp_path / "debian-12" / "upgrade")
    assert "scenario: upgrade" in (where / "failure.txt").read_text()
    assert (where / "journal.txt").read_text() == "journal lines"
    assert (where / "var_qmail_standin").read_text() == "copied /var/qmail/standin"


def test_smoke_refuses_to_run_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smoke.os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigurationError, match="must run as root"):
        smoke.main(["--target", "debian-12"])


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


def test_run_scenario_records_the_cpu_time_the_scenario_used() -> None:
    container = RecordingContainer({})
    ctx = ScenarioContext(TARGETS["debian-12"], container, Path("."))
    noop = Scenario("noop", lambda ctx: None, ("deb",), "shared", "")
    result = smoke.run_scenario(ctx, noop, Path("unused"))
    assert (result.status, result.cpu_seconds) == ("pass", 1.5)


def test_cgroup_hierarchies_are_under_sys_fs_cgroup() -> None:
    for mount, path in cgroup_hierarchies():
        assert mount.is_relative_to(Path("/sys/fs/cgroup"))
        assert path.startswith("/")


def test_prune_removes_only_unheld_old_unkept_copies(tmp_path: Path) -> None:
    import fcntl
    import os
    import time

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
    import fcntl
    import os
    import time

    from qss_toolkit import rootfs

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


def test_ensure_marks_a_cached_root_as_used(tmp_path: Path) -> None:
    import os

    from qss_toolkit import rootfs

    cache = rootfs.RootfsCache(tmp_path)
    root = cache.path(TARGETS["debian-12"])
    root.mkdir()
    os.utime(root, (0, 0))
    assert cache.ensure(TARGETS["debian-12"]) == root
    assert root.stat().st_mtime > 0


def test_sigterm_becomes_keyboard_interrupt_so_containers_are_torn_down() -> None:
    import os
    import signal

    saved = signal.getsignal(signal.SIGTERM)
    try:
        smoke.interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_debian_roots_keep_an_archive_slice_for_bsd_mailx(tmp_path: Path) -> None:
    from qss_toolkit.targets import APT_SUBSET_DIR, APT_SUBSET_LIST, apt_subset_script

    script = apt_subset_script()
    for name in ("debian-11", "debian-12", "debian-13"):
        assert script in TARGETS[name].customize  # so the cache key changes with it
    assert script not in TARGETS["rpm-on-debian-13"].customize
    assert "apt-get install -d -y -q bsd-mailx" in script
    assert f"file:{APT_SUBSET_DIR} ./" in script and APT_SUBSET_LIST in script
    (tmp_path / "s.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "s.sh")], check=False).returncode == 0


def test_only_a_passed_scenario_hands_its_state_to_the_next(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import contextlib

    from qss_toolkit.scenarios import RUNNING_CURRENT

    seen: list[tuple[str, str | None]] = []

    def make(name: str, *, leaves: bool, fails: bool) -> Scenario:
        def function(ctx: ScenarioContext) -> None:
            seen.append((name, ctx.handover))
            if leaves:
                ctx.leaves = RUNNING_CURRENT
            if fails:
                raise ScenarioFailed("no")

        return Scenario(name, function, ("deb",), "shared", "")

    group = [
        make("a", leaves=True, fails=False),
        make("b", leaves=True, fails=True),
        make("c", leaves=False, fails=False),
        make("d", leaves=True, fails=False),
        make("e", leaves=False, fails=False),
    ]
    container = RecordingContainer({})
    monkeypatch.setattr(smoke, "_container_for", lambda *a, **k: contextlib.nullcontext(container))
    outcome = smoke.run_target(
        TARGETS["debian-12"],
        group,
        dist=tmp_path,
        previous=None,
        logs=tmp_path,
        cache=None,  # type: ignore[arg-type]
    )
    assert [r.status for r in outcome.results] == ["pass", "fail", "pass", "pass", "pass"]
    assert seen == [
        ("a", None),
        ("b", RUNNING_CURRENT),
        ("c", None),  # b left the state but failed: nothing is handed over
        ("d", None),
        ("e", RUNNING_CURRENT),
    ]


def test_bench_section_runs_keep_the_other_sections(tmp_path: Path) -> None:
    from qss_toolkit.bench import previous_sections

    path = tmp_path / "bench.json"
    assert previous_sections(path) == {}  # no earlier bench
    path.write_text('{"cpus": 2, "sections": {"piuparts": {"debian-12": {"median_s": 17.1}}}}')
    assert previous_sections(path) == {"piuparts": {"debian-12": {"median_s": 17.1}}}
    path.write_text("not json")
    assert previous_sections(path) == {}


def test_repo_http_server_answers_a_conditional_get_in_full(tmp_path: Path) -> None:
    # A republish within the second of the client's last update has the same Last-Modified:
    # plain http.server would answer 304 and apt would see no new version.
    import email.utils
    import sys
    import urllib.request

    from qss_toolkit.scenarios_repo import HTTP_SERVER

    (tmp_path / "InRelease").write_text("new index\n")
    server = subprocess.Popen(
        [sys.executable, "-c", HTTP_SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
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
