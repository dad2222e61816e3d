"""qss_toolkit.build.dep8 without a test bed: autopkgtest's command line, its verdict, and the
podman wrapper (tests/container/test_autopkgtest.py runs autopkgtest itself)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from qss_toolkit.build import dep8
from qss_toolkit.smoke.engines.podman import Podman
from qss_toolkit.smoke.targets import DebianRoot

PROJECT = Path(__file__).resolve().parent.parent


def test_the_command_tests_the_given_debs_and_hands_the_archive_over(tmp_path: Path) -> None:
    debs = [tmp_path / "a_1_all.deb", tmp_path / "b_1_all.deb"]
    argv = dep8.command(
        tmp_path / "x.dsc", debs, "localhost/img:k", tmp_path / "n.tar.gz", tmp_path
    )
    assert "--no-built-binaries" in argv
    assert f"--copy={tmp_path / 'n.tar.gz'}:{dep8.TARBALL_IN_TESTBED}" in argv
    assert f"--env=NOTQMAIL_TARBALL={dep8.TARBALL_IN_TESTBED}" in argv
    server = argv[argv.index("--") + 1 :]
    assert server[:4] == ["podman", "--init", "localhost/img:k", "--network=none"]
    assert "--systemd=always" in server and "--cap-add=SYS_ADMIN" in server
    assert argv[argv.index("--") - 3 :][:3] == [str(tmp_path / "x.dsc"), *map(str, debs)]


def test_the_verdict_follows_autopkgtest_and_its_summary() -> None:
    ok = ["helper-judges-a-tree PASS", "notqmail             PASS"]
    assert dep8.Result(0, ok, 1.0).passed
    assert not dep8.Result(2, [*ok[:1], "notqmail SKIP breaks-testbed"], 1.0).passed
    assert not dep8.Result(0, [], 1.0).passed
    assert not dep8.Result(
        4, [ok[0], "notqmail             FAIL non-zero exit status 2"], 1.0
    ).passed
    assert not dep8.Result(0, [ok[0], "notqmail             FAIL stderr: x"], 1.0).passed
    assert not dep8.Result(20, [], 1.0).passed  # autopkgtest itself failed: no summary


def test_the_summary_is_read_from_the_output_directory(tmp_path: Path) -> None:
    assert dep8.summary_lines(tmp_path) == []
    (tmp_path / "summary").write_text("helper-judges-a-tree PASS\nnotqmail FAIL x\n")
    assert dep8.summary_lines(tmp_path) == ["helper-judges-a-tree PASS", "notqmail FAIL x"]


def test_the_podman_wrapper_passes_the_toolkits_state_and_runc(tmp_path: Path) -> None:
    podman = Podman(tmp_path / "state")
    wrapper = dep8.podman_wrapper(tmp_path, podman)
    text = wrapper.read_text()
    assert text.startswith("#!/bin/sh\nexec ") and text.endswith(' "$@"\n')
    assert f"--root={tmp_path / 'state' / 'storage'}" in text and "--runtime=" in text
    assert wrapper.stat().st_mode & 0o111


def test_the_test_bed_holds_what_debian_tests_control_depends_on() -> None:
    """Offline, apt can only find the tests' Depends installed: a Depends added to
    debian/tests/control without the test bed's package list would fail the run."""
    control = (PROJECT / "debian/tests/control").read_text("utf-8")
    depends: set[str] = set()
    field = False
    for line in control.splitlines():
        if line.startswith("Depends:"):
            field = True
        elif not line.startswith(" "):
            field = False
        if field:
            items = line.removeprefix("Depends:").split(",")
            depends |= {d.strip() for d in items if d.strip()}
    assert depends - {"qmail-send-systemd"} <= set(dep8.TESTBED_PACKAGES)
    root = dep8.TESTBED.root
    assert isinstance(root, DebianRoot) and not root.smoke  # a plain root, not a smoke root


def test_the_notqmail_test_takes_a_handed_archive_and_still_checks_it(tmp_path: Path) -> None:
    """NOTQMAIL_TARBALL replaces the download; the digest check still refuses another file."""
    script = (PROJECT / "debian/tests/notqmail").read_text("utf-8")
    assert 'cp "$NOTQMAIL_TARBALL" notqmail.tar.gz' in script
    head = script.split("\ntar -xf notqmail.tar\n")[0]
    bogus = tmp_path / "bogus.tar.gz"
    subprocess.run(["sh", "-c", f"echo not qmail | gzip > {bogus}"], check=True)
    done = subprocess.run(
        ["sh", "-c", head],
        env={
            "PATH": "/usr/bin:/bin",
            "NOTQMAIL_TARBALL": str(bogus),
            "AUTOPKGTEST_TMP": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr
