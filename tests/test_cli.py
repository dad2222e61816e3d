"""The command line: exit codes 0/1/2, one-line errors without tracebacks, --json, the entry
point script, and real runs on Python 3.9 and 3.13 (Debian 11 and 13)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_qmail_tree
from qmail_send_systemd import cli, lifecycle

PROJECT = Path(__file__).resolve().parents[1]
SRC = PROJECT / "src"
ENTRY_POINT = PROJECT / "packaging/qmail-send-systemd.sbin"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--root", str(tmp_path), "verify")
    assert code == 1
    assert out.splitlines()[-1].startswith("verify: ")
    make_qmail_tree(tmp_path)
    code, out, _ = run_main(capsys, "--root", str(tmp_path), "verify")
    assert (code, out) == (0, "verify: the qmail installation is complete\n")


def test_verify_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_qmail_tree(tmp_path)
    (tmp_path / "var/qmail/alias/.qmail-root").unlink()
    code, out, _ = run_main(capsys, "--root", str(tmp_path), "verify", "--json")
    document = json.loads(out)
    assert code == 1
    assert document["ok"] is False
    assert [f["path"] for f in document["findings"]] == [
        str(tmp_path / "var/qmail/alias/.qmail-root")
    ]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["configure", "--family", "slackware"],
        ["remove", "--family", "deb", "--stage", "prerm"],
        ["remove", "--family", "rpm", "--stage", "preun"],
        ["remove", "--family", "rpm", "--stage", "preun", "--count", "x"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_usage_error_from_a_step_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(
        capsys, "--root", str(tmp_path), "remove", "--family", "rpm", "--stage", "prerm",
        "--count", "0",
    )  # fmt: skip
    assert code == 2
    assert err == (
        "qmail-send-systemd remove: rpm has no prerm step here (fix: use --stage preun or postun)\n"
    )


def test_failed_step_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "--root", str(tmp_path), "run")
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("error: qmail-send-systemd run: cannot execute ")
    assert "(fix: " in err and "Traceback" not in err


def test_unexpected_error_in_a_package_step_never_fails_the_transaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lifecycle, "configure", broken)
    code, _, err = run_main(capsys, "--root", str(tmp_path), "configure", "--family", "deb")
    assert code == 0
    assert err == (
        "qmail-send-systemd configure: internal error: RuntimeError: a bug (rerun with --debug)\n"
    )
    with pytest.raises(RuntimeError):
        cli.main(["--root", str(tmp_path), "--debug", "configure", "--family", "deb"])


def test_configure_on_a_tree_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No run/systemd/system under the tree: enablement only (into the tree), exit 0.
    make_qmail_tree(tmp_path)
    code, out, _ = run_main(capsys, "--root", str(tmp_path), "configure", "--family", "rpm")
    assert code == 0
    assert "not started" in out


def test_dpkg_root_is_the_default_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_qmail_tree(tmp_path)
    monkeypatch.setenv("DPKG_ROOT", str(tmp_path))
    assert run_main(capsys, "verify")[0] == 0


def test_entry_point_script(tmp_path: Path) -> None:
    # The helper is imported from a copy, which must stay free of __pycache__ (purge).
    # Not the tree's own __pycache__: the test run itself may have written one there.
    shutil.copytree(
        SRC / "qmail_send_systemd",
        tmp_path / "qmail_send_systemd",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, str(ENTRY_POINT), "--root", str(tmp_path), "verify"],
        env={**env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1].startswith("verify: ")
    assert not list(tmp_path.rglob("__pycache__"))
    assert ENTRY_POINT.read_text().startswith("#!/usr/bin/python3 -IS\n")
    assert os.access(ENTRY_POINT, os.X_OK)


def python(version: str) -> str | None:
    """A working interpreter (pyenv shims exist for versions that are not active: try each)."""
    pattern = f"~/.pyenv/versions/{version}.*/bin/python{version}"
    pyenv = sorted(glob.glob(os.path.expanduser(pattern)))
    for candidate in [*pyenv, shutil.which(f"python{version}")]:
        if not candidate:
            continue
        if subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.9", "3.13"])  # Debian 11's and Debian 13's
def test_runs_on_the_oldest_and_newest_python(tmp_path: Path, version: str) -> None:
    interpreter = python(version)
    if interpreter is None:
        pytest.skip(f"no python{version} on this host")
    make_qmail_tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"}
    modules = sorted(p.stem for p in (SRC / "qmail_send_systemd").glob("*.py"))
    imports = "; ".join(f"import qmail_send_systemd.{m}" for m in modules if m != "__init__")
    subprocess.run([interpreter, "-c", imports], env=env, check=True)
    done = subprocess.run(
        [interpreter, "-m", "qmail_send_systemd.cli", "--root", str(tmp_path), "verify", "--json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    # The unit's main process, with a qmail-start that logs two lines and exits.
    (tmp_path / "var/qmail/bin/qmail-start").write_text(
        "#!/bin/sh\necho 'status: local 0/10 remote 0/20'\necho 'alert: y'\nexit 111\n"
    )
    logged = subprocess.run(
        [interpreter, "-m", "qmail_send_systemd.cli", "--root", str(tmp_path), "run"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert logged.returncode == 111
    assert logged.stdout == b"status: local 0/10 remote 0/20\nalert: y\n"


def test_cli_families_are_the_lifecycle_families() -> None:
    assert tuple(sorted(lifecycle.FAMILIES)) == cli.FAMILIES


def _modules_loaded_by(argv: list[str], stdin: bytes = b"") -> set[str]:
    """The helper's and argparse's modules loaded when the entry script runs `argv`."""
    probe = (
        "import runpy, sys; sys.argv = [sys.argv[0], *sys.argv[1:]]\n"
        "try:\n    runpy.run_path(sys.argv.pop(1), run_name='__main__')\n"
        "except BaseException:\n    pass\n"
        "sys.stderr.write(' '.join(m for m in sys.modules"
        " if m.startswith(('qmail_send_systemd', 'argparse'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(ENTRY_POINT), *argv],
        env={**os.environ, "PYTHONPATH": str(SRC), "DPKG_ROOT": "/nonexistent"},
        input=stdin, capture_output=True, check=False,
    )  # fmt: skip
    return set(done.stderr.decode().split()[-20:])


@pytest.mark.parametrize("command", ["run", "exec-qmail-start"])  # 1.1.0's and 1.0.0's name
def test_service_commands_load_only_what_they_use(command: str) -> None:
    # The unit's ExecStart runs at every start: no argparse, no checks (here on a root
    # without qmail: a one-line error).
    loaded = _modules_loaded_by([command])
    assert "qmail_send_systemd.start" in loaded
    assert not loaded & {"argparse", "qmail_send_systemd.verify", "qmail_send_systemd.lifecycle"}
    # With an option it goes through the parser, like every other command.
    assert "argparse" in _modules_loaded_by(["--debug", command])


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"]])
def test_status_loads_neither_argparse_nor_what_writes(argv: list[str]) -> None:
    # What an administrator types most: no parser, no setup or OAuth code, no tempfile.
    loaded = _modules_loaded_by(argv)
    assert "qmail_send_systemd.status" in loaded
    assert not loaded & {
        "argparse", "qmail_send_systemd.relay", "qmail_send_systemd.oauth",
        "qmail_send_systemd.verify",
    }  # fmt: skip
    assert "argparse" in _modules_loaded_by(["status", "--help"])


def test_service_command_errors_are_one_line_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DPKG_ROOT", str(tmp_path))  # no qmail-start under it
    code, _, err = run_main(capsys, "exec-qmail-start")
    assert code == 1
    assert err.startswith("error: qmail-send-systemd exec-qmail-start: ") and err.count("\n") == 1
    code, _, err = run_main(capsys, "run")
    assert (code, err.startswith("error: qmail-send-systemd run: cannot execute ")) == (1, True)
