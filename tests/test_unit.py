"""units/qmail-send.service: what docs/design.md ("The unit") requires, `systemd-analyze verify`
clean, and a `systemd-analyze security` exposure of at most 2.5."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qss_toolkit.build import lint

UNIT = lint.unit_files()["qmail-send.service"]
MAX_EXPOSURE = 2.5


def directives(text: str | None = None) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; keys may repeat."""
    section = ""
    found = []
    for raw in (UNIT.read_text() if text is None else text).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(section: str, key: str) -> list[str]:
    return [v for s, k, v in directives() if (s, k) == (section, key)]


def one(section: str, key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times"
    return found[0]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("Unit", "ConditionFileIsExecutable", "/var/qmail/bin/qmail-start"),
        ("Service", "Type", "notify"),
        ("Service", "Restart", "always"),
        ("Service", "ExecStart", "/usr/sbin/qmail-send-systemd run"),
        ("Service", "KillMode", "mixed"),
        ("Service", "SyslogFacility", "mail"),
        ("Service", "SyslogIdentifier", "qmail-send"),
        ("Service", "SyslogLevelPrefix", "yes"),
        ("Install", "WantedBy", "multi-user.target"),
    ],
)
def test_required_directive(section: str, key: str, value: str) -> None:
    assert one(section, key) == value


def test_reload_is_tcpok_then_sighup_and_sigalrm_to_the_main_pid() -> None:
    # HUP: qmail-send rereads locals and virtualdomains; ALRM: it retries deferred mail now.
    reload = [v.lstrip("+-!@:") for v in values("Service", "ExecReload")]
    assert reload == [
        "/var/qmail/bin/qmail-tcpok",
        "/bin/kill -HUP $MAINPID",
        "/bin/kill -ALRM $MAINPID",
    ]


def prefixes(value: str) -> str:
    return value[: len(value) - len(value.lstrip("+-!@:"))]


def test_a_stop_during_a_reload_cannot_fail_the_unit() -> None:
    # A stop that arrives while a reload runs sends SIGTERM to the running ExecReload= step;
    # without "-" a step killed that way makes the stopped unit "failed" (Result=signal).
    for value in values("Service", "ExecReload"):
        assert "-" in prefixes(value), value


def test_only_qmail_tcpok_runs_outside_the_sandbox() -> None:
    # It writes queue/lock/tcpto (qmailr's); the kills signal the helper, root like them.
    outside = [v.lstrip("+-!@:") for v in values("Service", "ExecReload") if "+" in prefixes(v)]
    assert outside == ["/var/qmail/bin/qmail-tcpok"]


def test_restarts_are_paced_and_never_given_up() -> None:
    # A persistent fault: one start every RestartSec=, not systemd's default 100 ms and its
    # start limit (5 starts in 10 s), which left the unit failed with mail queued.
    assert one("Unit", "StartLimitIntervalSec") == "0"
    assert one("Service", "RestartSec") == "5s"


def test_no_delivery_line_is_suppressed_by_journald() -> None:
    # 0 is not exported by systemd 247-257 (journald's global default applies): a real
    # interval with a burst far above qmail-send's rate.
    assert one("Service", "LogRateLimitIntervalSec") == "30s"
    assert int(one("Service", "LogRateLimitBurst")) >= 30 * 30000


def test_stop_timeout_leaves_time_for_deliveries_in_flight() -> None:
    match = re.fullmatch(r"(\d+)(min|s)?", one("Service", "TimeoutStopSec"))
    assert match, "TimeoutStopSec= in s or min"
    seconds = int(match[1]) * (60 if match[2] == "min" else 1)
    assert seconds > 90  # systemd's default, which a delivery on a slow link can exceed


def test_path_is_spelled_out() -> None:
    (path,) = [v for v in values("Service", "Environment") if v.startswith("PATH=")]
    assert path.startswith("PATH=/var/qmail/bin:")
    assert "$" not in path  # Environment= does not expand variables


def test_obsolete_and_buggy_settings_are_gone() -> None:
    found = directives()
    assert ("Unit", "After", "syslog.target") not in found
    assert not [v for s, k, v in found if k == "After" and "syslog.target" in v]
    assert not [v for s, k, v in found if k in ("StandardOutput", "StandardError")]
    assert "~" not in one("Service", "ExecStart")


def test_hardening_keeps_qmails_flows_working() -> None:
    found = {(s, k): v for s, k, v in directives()}
    # setuid qmail-queue (.qmail forwards): no NoNewPrivileges, and nothing that runs the
    # service unprivileged (which would make seccomp options imply it).
    assert found.get(("Service", "NoNewPrivileges"), "no") in ("no", "false", "0")
    for key in ("User", "DynamicUser", "PrivateUsers", "PrivateNetwork"):
        assert ("Service", key) not in found, key
    # Deliveries into home directories.
    assert found.get(("Service", "ProtectHome"), "no") in ("no", "false")
    capabilities = found[("Service", "CapabilityBoundingSet")].split()
    assert {"CAP_SETUID", "CAP_SETGID"} <= set(capabilities)
    families = found[("Service", "RestrictAddressFamilies")].split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families)


# What a user's |program may do under a plain qmail-start, as any process may: lower its
# priority (nice, setpriority) and its I/O priority (ionice), set its own limits (ulimit,
# setrlimit, prlimit), pick its CPUs or a non-realtime scheduling class (taskset, chrt -b/-i).
USER_PROGRAM_CALLS = frozenset(
    {"nice", "setpriority", "ioprio_set", "setrlimit", "prlimit64", "sched_setaffinity",
     "sched_setscheduler", "sched_setattr"}
)  # fmt: skip


def syscall_set(tool: str, names: list[str]) -> set[str]:
    """The system calls that `names` (calls and @groups) stand for, as this systemd has them."""
    found: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            found.add(name)
            continue
        listing = subprocess.run(
            [tool, "syscall-filter", name], capture_output=True, text=True, check=True
        ).stdout.splitlines()[1:]
        words = [w.strip() for w in listing if w.strip() and not w.strip().startswith("#")]
        found |= syscall_set(tool, words)
    return found


def allowed_calls(tool: str, text: str) -> set[str]:
    """What the unit's SystemCallFilter= lines allow: the allow lists, minus the ~ lines."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for section, key, value in directives(text):
        if (section, key) == ("Service", "SystemCallFilter"):
            words = value.split()
            if words[0].startswith("~"):
                denied |= syscall_set(tool, [words[0][1:], *words[1:]])
            else:
                allowed |= syscall_set(tool, words)
    return allowed - denied


def test_users_programs_may_lower_their_priority_and_set_their_limits() -> None:
    tool = analyze()
    assert allowed_calls(tool, UNIT.read_text()) >= USER_PROGRAM_CALLS


def test_the_syscall_check_sees_a_filter_that_takes_them_away() -> None:
    # The 1.0.0 unit's `~@resources`: `|nice -n 5 prog` printed "cannot set niceness".
    tool = analyze()
    old = UNIT.read_text().replace(
        "SystemCallFilter=@system-service\n",
        "SystemCallFilter=@system-service\nSystemCallFilter=~@resources\n",
    )
    missing = USER_PROGRAM_CALLS - allowed_calls(tool, old)
    assert {"nice", "setpriority", "setrlimit", "ioprio_set"} <= missing


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def verify_output(unit_text: str) -> subprocess.CompletedProcess[str]:
    """What lint's systemd-analyze step sees for the unit `unit_text` (its own harness)."""
    analyze()
    if lint.host_unit_dir() is None:
        pytest.skip("this host has no systemd units to verify against")
    return lint.systemd_verify({UNIT.name: unit_text})


def test_systemd_analyze_verify_prints_nothing() -> None:
    done = verify_output(UNIT.read_text())
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_harness_does_report_problems() -> None:
    # The same harness on the recipe's obsolete settings: proof that it is not silent.
    text = UNIT.read_text().replace("[Service]\n", "[Service]\nStandardOutput=syslog\n", 1)
    done = verify_output(text)
    assert "syslog" in done.stdout + done.stderr
    # Every program a unit runs gets its stand-in in the root (a host has none of them).
    more = UNIT.read_text().replace("ExecStart=", "ExecStartPre=/opt/qss/check\nExecStart=", 1)
    done = lint.systemd_verify({UNIT.name: more})
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_security_exposure(tmp_path: Path) -> None:
    tool = analyze()
    done = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match[1]) <= MAX_EXPOSURE
