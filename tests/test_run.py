"""The one subprocess wrapper: what a failure, a timeout and a missing tool look like."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from qss_toolkit.errors import CommandFailed, MissingToolError
from qss_toolkit.run import require, run, run_pipeline


def test_a_command_that_hangs_is_stopped_at_its_timeout() -> None:
    # The message says the timeout stopped it (the sleep would have ended in success).
    with pytest.raises(CommandFailed) as info:
        run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert str(info.value).startswith("timed out after 0.5s: ")
    assert "time.sleep(30)" in str(info.value)  # the command line, copy-pasteable
    assert info.value.return_code == 4


def test_a_failure_names_the_command_and_the_end_of_its_stderr() -> None:
    script = "import sys; [print('line', i, file=sys.stderr) for i in range(40)]; sys.exit(3)"
    argv = [sys.executable, "-c", script]
    with pytest.raises(CommandFailed) as info:
        run(argv, capture=True)
    first, *detail = str(info.value).splitlines()
    assert first == f"exit 3: {shlex.join(argv)}"
    assert [d.strip() for d in detail] == [f"line {i}" for i in range(25, 40)]
    assert run(argv, check=False, capture=True).returncode == 3


def test_the_child_gets_a_clean_locale_and_no_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    script = (
        "import os, sys; print(os.environ['LC_ALL'], 'LANGUAGE' in os.environ, sys.stdin.read())"
    )
    out = run([sys.executable, "-c", script], capture=True, env={"EXTRA": "1"}).stdout
    assert out == "C.UTF-8 False \n"


def test_a_missing_tool_is_one_line_naming_its_package(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as info:
        require("createrepo_c", directory=tmp_path, needed_for="the dnf repository")
    assert str(info.value) == (
        f"{tmp_path}/createrepo_c is not installed (the dnf repository)"
        " (fix: apt-get install createrepo-c or dnf install createrepo_c)"
    )
    with pytest.raises(MissingToolError, match=r"^no-such-tool-qss is not installed \(fix: "):
        run(["no-such-tool-qss", "--version"])


def test_a_pipeline_feeds_one_command_to_the_next_and_names_the_one_that_failed() -> None:
    counted = run_pipeline(["printf", "a\\nb\\nc\\n"], ["wc", "-l"])
    assert counted.stdout.strip() == "3"
    with pytest.raises(CommandFailed) as producer:
        run_pipeline([sys.executable, "-c", "import sys; sys.exit('no root here')"], ["cat"])
    assert str(producer.value).startswith(f"exit 1: {shlex.quote(sys.executable)} -c ")
    assert "no root here" in str(producer.value)
    # A consumer that stops reading: its failure is the one reported, and the endless
    # producer is stopped rather than left writing into a pipe nobody reads (were it left,
    # run_pipeline would wait for it for ever, and no `yes` of ours may be left running).
    with pytest.raises(CommandFailed, match=r"^exit 5: .*head -c 10"):
        run_pipeline(["yes"], ["sh", "-c", "head -c 10 >/dev/null; exit 5"])
    assert "yes" not in children_commands()


def children_commands() -> list[str]:
    """The command names of this process's children (proc(5): task/*/children)."""
    pids = [
        pid
        for task in Path("/proc/self/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except FileNotFoundError:
            continue  # gone meanwhile
    return names


def test_a_program_that_failed_before_it_ran_is_started_once_more(tmp_path: Path) -> None:
    """`again` recognises a failure before any of the work ran (nspawn's cgroup mount): the
    command runs once more, once; any other failure is reported as it is, never repeated."""
    marker = tmp_path / "starts"
    script = (
        "import sys; p = sys.argv[1]; n = len(open(p).read()) if __import__('os').path.exists(p)"
        " else 0; open(p, 'a').write('x'); "
        "sys.exit(print('ran') or 0) if n >= int(sys.argv[2]) else "
        "sys.exit(print('setup refused', file=sys.stderr) or 1)"
    )

    def refused(stderr: str) -> bool:
        return stderr.startswith("setup refused")

    argv = [sys.executable, "-c", script, str(marker)]
    result = run([*argv, "1"], capture=True, again=refused)
    assert (result.returncode, result.stdout, marker.read_text()) == (0, "ran\n", "xx")
    marker.unlink()
    with pytest.raises(CommandFailed, match="setup refused"):  # refused twice: reported
        run([*argv, "5"], capture=True, again=refused)
    assert marker.read_text() == "xx"
    marker.unlink()
    with pytest.raises(CommandFailed):  # a failure `again` does not recognise: once only
        run([*argv, "5"], capture=True, again=lambda stderr: False)
    assert marker.read_text() == "x"
