"""The sendmail package as each family sees it: metadata, programs, and the mta alternative."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from debian.deb822 import Deb822

from qmail_send_systemd import __version__
from qss_toolkit.smoke.scenarios.registry import SENDMAIL_PACKAGE

PROJECT = Path(__file__).resolve().parents[1]
SCRIPTS = PROJECT / "packaging/scripts/rpm"
PROGRAMS = PROJECT / "packaging/sendmail"
NAME = SENDMAIL_PACKAGE  # the package that ships /usr/sbin/sendmail (packaging/nfpm/)
QMAIL = Path("/var/qmail")
# What the package's programs run when qmail is installed.
QMAIL_PROGRAMS = {"sendmail": "sendmail", "mailq": "qmail-qread", "newaliases": "newaliases"}


@pytest.fixture(scope="module")
def built(project_dist: Path) -> Path:
    """Every package, built by the toolkit's nfpm route (as `nox -s packages` builds them)."""
    return project_dist


@pytest.fixture(scope="module")
def deb(built: Path) -> Path:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    return built / f"{NAME}_{__version__}-1_all.deb"


@pytest.fixture(scope="module")
def rpm(built: Path) -> Path:
    if not shutil.which("rpm"):
        pytest.skip("rpm is not installed")
    return built / f"{NAME}-{__version__}-1.noarch.rpm"


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_deb_declares_itself_the_mail_transport_agent(deb: Path) -> None:
    control = Deb822(_out("dpkg-deb", "--field", str(deb)))
    assert control["Package"] == NAME
    assert control["Source"] == "qmail-send-systemd"
    assert control["Architecture"] == "all"
    assert control["Version"].startswith(__version__)
    # Debian policy 7.5: one MTA at a time, and apt counts this one for mail-transport-agent.
    for field in ("Provides", "Conflicts", "Replaces"):
        assert control[field] == "mail-transport-agent", field
    assert control["Depends"] == "qmail-send-systemd"


def test_deb_ships_sendmail_mailq_and_newaliases_as_policy_11_6_asks(deb: Path) -> None:
    entries = {}
    for line in _out("dpkg-deb", "--contents", str(deb)).splitlines():
        fields = line.split(None, 5)
        path = fields[5].split(" -> ")[0].lstrip(".")
        entries[path] = (fields[0], line.split(" -> ")[1] if " -> " in line else "")
    # Programs, not links to /var/qmail: nothing dangles while qmail is missing.
    for path in ("/usr/sbin/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases"):
        assert entries[path] == ("-rwxr-xr-x", ""), path
    assert entries["/usr/lib/sendmail"][1] == "../sbin/sendmail"
    for page in ("man8/sendmail.8.gz", "man1/mailq.1.gz", "man1/newaliases.1.gz"):
        assert entries[f"/usr/share/man/{page}"][0] == "-rw-r--r--", page
    assert not [p for p in entries if p.startswith("/var/")]


def test_rpm_follows_fedoras_alternatives_guideline(rpm: Path) -> None:
    provides = _out("rpm", "-qp", "--nosignature", "--provides", str(rpm)).split("\n")
    assert "MTA" in provides and "smtpdaemon" in provides
    assert "mail-transport-agent" not in provides
    assert not any(p.startswith("server(smtp)") for p in provides)
    query = "[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]"
    requires = _out("rpm", "-qp", "--nosignature", "--qf", query, str(rpm)).splitlines()
    assert {"/usr/sbin/alternatives post", "/usr/sbin/alternatives preun"} <= set(requires)
    assert "qmail-send-systemd manual" in requires
    listing = _out(
        "rpm", "-qp", "--nosignature", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", str(rpm)
    )
    files = dict(line.rsplit(" ", 1) for line in listing.splitlines())
    # The links alternatives makes are owned but never written (%ghost), the suffixed
    # programs are what they point to.
    for ghost in ("/usr/sbin/sendmail", "/usr/lib/sendmail", "/usr/bin/mailq",
                  "/usr/bin/newaliases"):  # fmt: skip
        assert files[ghost] == "g", ghost
    for page in ("man8/sendmail.8.gz", "man1/mailq.1.gz", "man1/newaliases.1.gz"):
        assert files[f"/usr/share/man/{page}"] == "dg", page
        assert files[f"/usr/share/man/{page.replace('.', '.qmail.', 1)}"] == "d", page
    for program in (
        "/usr/sbin/sendmail.qmail",
        "/usr/bin/mailq.qmail",
        "/usr/bin/newaliases.qmail",
    ):
        assert files[program] == "", program
    assert _out("rpm", "-qp", "--nosignature", "--qf", "%{ARCH}", str(rpm)) == "noarch"


def test_rpm_scriptlets_are_the_ones_in_the_tree(rpm: Path) -> None:
    scripts = _out("rpm", "-qp", "--nosignature", "--scripts", str(rpm))
    assert "alternatives --install /usr/sbin/sendmail mta /usr/sbin/sendmail.qmail 70" in scripts
    assert "alternatives --remove mta /usr/sbin/sendmail.qmail" in scripts
    assert "postinstall scriptlet" in scripts and "preuninstall scriptlet" in scripts


# The programs themselves, on this host, where qmail is not installed.


@pytest.fixture
def no_qmail() -> None:
    if QMAIL.exists():
        pytest.skip("/var/qmail exists on this host; the smoke scenarios cover qmail present")


def _program(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROGRAMS / name), *args],
        input="To: root\n\nbody\n",
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_sendmail_without_qmail_is_a_temporary_failure_in_one_line(no_qmail: None) -> None:
    result = _program("sendmail", "-i", "-t")
    assert result.returncode == 75  # EX_TEMPFAIL: cron and mailx report it, the mail is not lost
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "/var/qmail/bin/sendmail is missing" in line and "(fix: install qmail" in line


def test_mailq_without_qmail_says_so(no_qmail: None) -> None:
    result = _program("mailq")
    assert result.returncode == 69  # EX_UNAVAILABLE
    [line] = result.stderr.splitlines()
    assert "/var/qmail/bin/qmail-qread is missing" in line and "(fix: install qmail" in line


def test_newaliases_without_fastforward_explains_and_succeeds(no_qmail: None) -> None:
    result = _program("newaliases")
    assert result.returncode == 0  # policy 11.6: a newaliases that does nothing must succeed
    assert result.stdout.startswith("newaliases: qmail keeps its aliases in ~alias/.qmail-*")
    assert result.stderr == ""


# With qmail: each program runs qmail's own with the arguments exactly as given. Run in a
# private mount namespace whose /var is a tmpfs holding recording stand-ins for qmail's programs.
# The program under test is opened before the mount (a checkout under /var would be hidden by
# it) and run from a copy in the tmpfs.
RECORDER = '#!/bin/sh\necho "$0"; for arg; do echo "[$arg]"; done; exit 3\n'
ARGS = ("-f", "dev@example.org", "-t", "", "two words", "*")
UNDER_TEST = "/var/qss-under-test"


def _in_namespace_with_qmail(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    setup = 'exec 3<"$1" && shift && mount -t tmpfs qss /var && mkdir -p /var/qmail/bin'
    setup += f" && cat <&3 >{UNDER_TEST} && exec 3<&- && chmod 0755 {UNDER_TEST}"
    for qmail_program in QMAIL_PROGRAMS.values():
        target = f"/var/qmail/bin/{qmail_program}"
        setup += f" && printf %s '{RECORDER}' > {target} && chmod 0755 {target}"
    return subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", f'{setup} && exec {UNDER_TEST} "$@"',
         "sh", str(PROGRAMS / program), *args],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(("program", "qmail_program"), QMAIL_PROGRAMS.items())
def test_each_program_runs_qmails_own_with_its_arguments(program: str, qmail_program: str) -> None:
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("no unprivileged mount namespaces here; the smoke scenarios cover this")
    result = _in_namespace_with_qmail(program, *ARGS)
    lines = result.stdout.splitlines()
    assert result.returncode == 3, result.stderr  # qmail's exit status is passed on
    assert lines[0] == f"/var/qmail/bin/{qmail_program}"
    # qmail's sendmail -bp, which mailq stands for, takes no further options
    expected = [] if program == "mailq" else [f"[{a}]" for a in ARGS]
    assert lines[1:] == expected


@pytest.mark.parametrize(("program", "args"), [("mailq", ()), ("sendmail", ("-bp",))])
def test_a_user_who_cannot_read_the_queue_gets_one_line_with_the_fix(
    program: str, args: tuple[str, ...]
) -> None:
    """Issue 22: qmail-qread printed a bare `fatal: unable to chdir: access denied`."""
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], check=False)
    if probe.returncode != 0 or os.geteuid() != 0:
        pytest.skip("needs root for a user who cannot read the namespace's queue")
    # As _in_namespace_with_qmail: the program is opened before the mount hides a checkout
    # under /var, and run from a copy in the tmpfs.
    setup = (
        'exec 3<"$1" && shift && mount -t tmpfs qss /var'
        " && mkdir -p /var/qmail/bin /var/qmail/queue/info"
        " && chmod 0750 /var/qmail/queue && chmod 0700 /var/qmail/queue/info"
        f" && cat <&3 >{UNDER_TEST} && exec 3<&- && chmod 0755 {UNDER_TEST}"
    )
    for qmail_program in QMAIL_PROGRAMS.values():
        target = f"/var/qmail/bin/{qmail_program}"
        setup += f" && printf %s '{RECORDER}' > {target} && chmod 0755 {target}"
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c",
         f'{setup} && exec setpriv --reuid=65534 --regid=65534 --clear-groups {UNDER_TEST} "$@"',
         "sh", str(PROGRAMS / program), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 77, result.stderr  # EX_NOPERM, qmail-qread never ran
    [line] = result.stderr.splitlines()
    assert "only root may read qmail's queue (/var/qmail/queue) (fix: run " in line
    assert result.stdout == ""


# The scriptlets, with a recording alternatives(8) in front of PATH.


@pytest.fixture
def fake_alternatives(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "alternatives.log"
    fake = bindir / "alternatives"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexit "${{FAKE_ALT_EXIT:-0}}"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}, log


def _scriptlet(name: str, arg: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPTS / name), arg], env=env, capture_output=True, text=True, check=False
    )


INSTALL = (
    "--install /usr/sbin/sendmail mta /usr/sbin/sendmail.qmail 70"
    " --slave /usr/lib/sendmail mta-sendmail /usr/sbin/sendmail.qmail"
    " --slave /usr/bin/mailq mta-mailq /usr/bin/mailq.qmail"
    " --slave /usr/bin/newaliases mta-newaliases /usr/bin/newaliases.qmail"
)


def test_post_registers_the_mta_alternative(
    fake_alternatives: tuple[dict[str, str], Path],
) -> None:
    """This host has none of the package's man pages: they are not slaves then (as with
    rpm --excludedocs); the RPM smoke scenario sees them as slaves where they are installed."""
    if Path("/usr/share/man/man8/sendmail.qmail.8.gz").exists():
        pytest.skip("the package's man pages are installed on this host")
    env, log = fake_alternatives
    result = _scriptlet("sendmail-postinstall", "1", env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [INSTALL]


def test_post_on_upgrade_withdraws_the_alternative_of_1_0_0(
    fake_alternatives: tuple[dict[str, str], Path],
) -> None:
    env, log = fake_alternatives
    assert _scriptlet("sendmail-postinstall", "2", env).returncode == 0
    calls = log.read_text().splitlines()
    assert calls[0] == "--remove mta /var/qmail/bin/sendmail"
    assert calls[1].startswith(INSTALL)


def test_post_fails_when_alternatives_fails(
    fake_alternatives: tuple[dict[str, str], Path],
) -> None:
    """The package provides MTA: a %post that cannot make it the sendmail must say so to rpm."""
    env, _ = fake_alternatives
    assert _scriptlet("sendmail-postinstall", "1", {**env, "FAKE_ALT_EXIT": "2"}).returncode == 2
    without = _scriptlet("sendmail-postinstall", "1", {"PATH": "/nonexistent:/usr/bin:/bin"})
    if shutil.which("alternatives", path="/usr/bin:/bin") is None:
        assert without.returncode == 127


def test_preun_removes_only_on_erase_and_never_fails(
    fake_alternatives: tuple[dict[str, str], Path],
) -> None:
    env, log = fake_alternatives
    assert _scriptlet("sendmail-preremove", "1", env).returncode == 0
    assert not log.exists()  # upgrade: the new package's %post already re-registered it
    assert _scriptlet("sendmail-preremove", "0", {**env, "FAKE_ALT_EXIT": "1"}).returncode == 0
    assert log.read_text().splitlines() == ["--remove mta /usr/sbin/sendmail.qmail"]
