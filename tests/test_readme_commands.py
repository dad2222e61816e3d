"""The README's two commands are what CI and the stock-machine test run, and ./nox's refusals.

tests/container/test_stock_machine.py runs `readme_commands()` on new Debian roots; these fast
tests check that `.ci/run` runs the README's test command with the distribution's Python first
on PATH, that the README keeps its two commands, and how ./nox stops when it cannot make its
virtual environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.readme import ReadmeCommands, readme_commands

CI_SCRIPT = PROJECT_ROOT / ".ci" / "run"
# Where Debian installs python3 and the tools: nothing a user or pyenv put before them.
DISTRIBUTION_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def ci_command(script: str) -> tuple[dict[str, str], list[str]]:
    """The environment and the words of a CI script's last command (`env NAME=VALUE... CMD`)."""
    lines = [line for line in script.splitlines() if line.strip() and not line.startswith("#")]
    words = shlex.split(lines[-1])
    env: dict[str, str] = {}
    if words and words[0] == "env":
        words = words[1:]
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
    return env, words


def check_ci_runs(script: str, readme: ReadmeCommands) -> None:
    """Fail unless `script` runs the README's test command with only the distribution's PATH."""
    env, words = ci_command(script)
    assert words == shlex.split(readme.test), f"CI runs {words}, the README shows {readme.test!r}"
    path = env.get("PATH", "")
    assert path, "CI does not set PATH: whatever Python comes first on the machine would run"
    assert all(d in DISTRIBUTION_PATH for d in path.split(":")), f"PATH={path}"


def test_the_readme_opens_with_the_build_and_the_test_command() -> None:
    commands = readme_commands()
    for command in (commands.build, commands.test):
        program = PROJECT_ROOT / shlex.split(command)[0]
        assert os.access(program, os.X_OK), f"{command!r}: no executable {program} in the clone"


def test_ci_runs_the_readmes_test_command_with_the_distributions_python() -> None:
    check_ci_runs(CI_SCRIPT.read_text(encoding="utf-8"), readme_commands())


@pytest.mark.parametrize(
    "last_line",
    [
        "./run-tests",  # the machine's own PATH: a pyenv or /usr/local Python may come first
        "env PATH=/root/.pyenv/shims:/usr/bin:/bin ./run-tests",
        "env PATH=/usr/bin:/bin ./run-tests -s tests",
        "env PATH=/usr/bin:/bin python3 -m nox",
    ],
)
def test_ci_running_anything_else_is_caught(last_line: str) -> None:
    script = CI_SCRIPT.read_text(encoding="utf-8").rstrip().rsplit("\n", 1)[0] + "\n" + last_line
    with pytest.raises(AssertionError):
        check_ci_runs(script, readme_commands())


def write_readme(tmp_path: Path, text: str) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    return readme


def test_readme_commands_are_the_first_two_indented_lines(tmp_path: Path) -> None:
    readme = write_readme(
        tmp_path,
        "# p\n\nBuild:\n\n    ./nox -s packages\n\nTest:\n\n    ./run-tests\n\n"
        "## Later\n\n    not a command of the opening\n",
    )
    assert readme_commands(readme) == ReadmeCommands("./nox -s packages", "./run-tests")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# p\n\n    ./nox -s packages\n\n## More\n\n    ./run-tests\n", "found 1 command"),
        ("# p\n\n    ./nox \\\n    -s packages\n\n    ./run-tests\n", "over two lines"),
        ("# p\n\n    a\n\n    b\n\n    c\n", "found 3 command"),
        ("# p\n\n```sh\n./nox -s packages\n./run-tests\n```\n", "found 0 command"),
    ],
)
def test_a_readme_without_its_two_commands_is_one_line_naming_it(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as raised:
        readme_commands(write_readme(tmp_path, text))
    assert "\n" not in str(raised.value)


def nox_requirement() -> str:
    script = (PROJECT_ROOT / "nox").read_text(encoding="utf-8")
    found = re.search(r'^NOX_REQUIREMENT="([^"]+)"$', script, re.MULTILINE)
    assert found, "./nox names no NOX_REQUIREMENT"
    return found.group(1)


def test_nox_installs_the_nox_the_noxfile_is_checked_with() -> None:
    # No tomllib: the suite runs on Debian 11's Python 3.9 too.
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lint = re.search(r"^lint = \[(.*?)\]$", pyproject, re.MULTILINE | re.DOTALL)
    assert lint, "pyproject.toml has no lint dependency group"
    assert f'"{nox_requirement()}"' in lint.group(1)


def nox_clone(tmp_path: Path, python_env: str = "") -> tuple[Path, dict[str, str]]:
    """A directory with ./nox alone, and an environment whose PATH has python3 (the tests' own,
    with `python_env` before it) and the few tools the script uses, but no apt-get: so it stops
    with the same line for root as for an ordinary user."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "cat", "id", "mkdir", "flock"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    python = bindir / "python3"
    python.write_text(f'#!/bin/sh\n{python_env}exec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy2(PROJECT_ROOT / "nox", clone / "nox")
    return clone, {"PATH": str(bindir), "HOME": str(clone), "LANG": "C.UTF-8"}


def test_nox_without_ensurepip_names_python3_venv_and_makes_nothing(tmp_path: Path) -> None:
    # Debian's and Ubuntu's python3 without python3-venv: `import ensurepip` fails.
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ensurepip is not installed')\n")
    clone, env = nox_clone(tmp_path, f"PYTHONPATH={shlex.quote(str(shadow.parent))} ")
    result = subprocess.run(
        [clone / "nox", "-s", "packages"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        "./nox: python3 -m venv needs python3-venv, which is not installed"
        " (fix: as root, apt-get install python3-venv)\n"
    )
    assert not (clone / ".nox" / ".bootstrap").exists()


def test_nox_remakes_an_environment_of_another_python_and_pip_failing_is_one_line(
    tmp_path: Path,
) -> None:
    clone, env = nox_clone(tmp_path)
    # An environment made from the Python of before a distribution upgrade.
    stale = clone / ".nox" / ".bootstrap"
    (stale / "bin").mkdir(parents=True)
    (stale / "bin" / "python").write_text("#!/bin/sh\necho stale nox\n")
    (stale / "bin" / "python").chmod(0o755)
    (stale / ".made-from").write_text(f"3.9.2 /usr/bin/python3 {nox_requirement()}\n")
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull)  # no index, no find-links
    result = subprocess.run(
        [clone / "nox", "--version"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "stale nox" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"./nox: installing {nox_requirement()} into .nox/.bootstrap (once)"
    assert lines[-1] == (
        f"./nox: pip could not install {nox_requirement()} from PyPI (fix: let this machine"
        " reach pypi.org, or set PIP_INDEX_URL to a mirror)"
    )
    # Made but not finished: the next run starts again instead of running a nox-less venv.
    assert (stale / "bin" / "python").is_symlink()  # a new environment in its place
    assert not (stale / ".made-from").exists()
