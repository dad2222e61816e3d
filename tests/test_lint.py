"""`lint` itself: every step runs and the failed ones are named, and each tool's output is read
right (what counts as a pass, what as a finding)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.build import lint, packages, sources
from qss_toolkit.errors import CheckFailed, MissingToolError


def test_every_step_runs_and_the_failed_ones_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def step(name: str, error: Exception | None = None) -> lint.Step:
        def check(dist: Path, options: lint.Options) -> str:
            ran.append(name)
            if error is not None:
                raise error
            return f"{name} is fine"

        return lint.Step(name, check)

    steps = [
        step("first"),
        step("broken", CheckFailed("3 findings")),
        step("toolless", MissingToolError("shellcheck is not installed", hint="apt-get it")),
        step("last"),
    ]
    caplog.set_level(logging.INFO, logger="qss_toolkit")
    with pytest.raises(CheckFailed) as failure:
        lint.lint(tmp_path, steps=steps)
    # The failure names each failed step with what it found, not only the step.
    assert str(failure.value).splitlines() == [
        "lint failed: broken, toolless",
        "FAIL broken: 3 findings",
        "FAIL toolless: shellcheck is not installed (fix: apt-get it)",
    ]
    assert ran == ["first", "broken", "toolless", "last"]  # a failure stops nothing
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("ok   first: first is fine (")
    assert lines[1].startswith("FAIL broken: 3 findings (")
    assert lines[2].startswith("FAIL toolless: shellcheck is not installed (fix: apt-get it) (")
    ran.clear()
    assert lint.lint(tmp_path, only=["last", "first"], steps=steps)[1].startswith("ok   last:")
    assert ran == ["first", "last"]  # in the steps' order


def test_packages_are_built_only_for_the_steps_that_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    monkeypatch.setattr(packages, "build", lambda builder, formats, dist: built.append("binary"))
    monkeypatch.setattr(sources, "write_sources", lambda dist: built.append("source"))
    quiet = [lint.Step(name, lambda dist, options: "ok") for name in ("ruff", "rpmlint")]
    lint.lint(tmp_path, only=["ruff"], steps=quiet)
    assert built == []
    lint.lint(tmp_path, only=["rpmlint"], steps=quiet)
    # An empty dist/: nfpm builds the packages first, then the source packages.
    assert built == ["binary", "source"]


def test_mypy_summary_is_its_last_verdict_line() -> None:
    out = "src/a.py:1: error: x  [misc]\nFound 1 error in 1 file (checked 40 source files)\n"
    assert lint.mypy_summary(out) == "Found 1 error in 1 file (checked 40 source files)"
    ok = "Success: no issues found in 40 source files\n"
    assert lint.mypy_summary(ok) == "Success: no issues found in 40 source files"
    with pytest.raises(CheckFailed, match="no summary"):
        lint.mypy_summary("Traceback (most recent call last):\n")


def test_the_python39_check_needs_its_own_mypy(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError, match=r"no mypy for Python 3\.9") as info:
        lint._mypy_py39(tmp_path, lint.Options(py39_mypy=tmp_path))
    assert info.value.hint is not None and "nox -s lint" in info.value.hint


def test_lintian_passes_on_info_lines_and_fails_on_errors_and_warnings() -> None:
    clean = "N: 3 hints overridden\nI: qmail-send-systemd: some-info-tag\n"
    assert lint.lintian_verdict(clean, 0, "3 .deb") == "lintian on 3 .deb: 0 errors, 0 warnings"
    found = (
        "E: qmail-send-systemd: bad-perm-for-file-in-etc-sudoers.d [etc/x]\n"
        "W: qmail-send-systemd-sendmail: no-manual-page [usr/sbin/x]\n"
    )
    with pytest.raises(CheckFailed) as info:
        lint.lintian_verdict(found, 2, "3 .deb")
    assert str(info.value) == "lintian: " + "; ".join(found.splitlines())
    with pytest.raises(CheckFailed, match="lintian: exit 2"):
        lint.lintian_verdict("", 2, "3 .deb")  # lintian broke without a tag


def test_rpmlint_needs_its_summary_and_no_finding() -> None:
    summary = "3 packages and 0 specfiles checked; 0 errors, 0 warnings, 0 badness; has taken 0.2 s"
    assert lint.rpmlint_verdict(summary + "\n", 0, "3 .rpm") == (
        "rpmlint on 3 .rpm: 0 errors, 0 warnings"
    )
    warned = "qmail-send-systemd.noarch: W: no-documentation\n" + summary.replace("0 w", "1 w")
    with pytest.raises(CheckFailed, match=r"no-documentation$"):
        lint.rpmlint_verdict(warned, 0, "3 .rpm")
    with pytest.raises(CheckFailed, match="config error"):
        lint.rpmlint_verdict("config error: bad rpmlint.toml\n", 0, "3 .rpm")


def test_the_units_verified_are_the_ones_the_payload_ships() -> None:
    units = lint.unit_files()
    assert list(units) == ["qmail-send.service"]
    assert units["qmail-send.service"] == PROJECT_ROOT / "units/qmail-send.service"


def test_the_unit_harness_refuses_a_host_without_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lint, "HOST_UNIT_DIRS", (Path("/nonexistent"),))
    with pytest.raises(CheckFailed, match="no systemd units on this host"):
        lint.systemd_verify({"x.service": "[Service]\nExecStart=/bin/true\n"})
