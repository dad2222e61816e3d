"""The README's two commands, read from the README itself: what CI and the stock-machine test run.

The README opens with the build command and the test command, each an indented line of its
own, exactly as a user types them. `.ci/run` (checked by tests/test_readme_commands.py) and
tests/container/test_stock_machine.py run what this reads, so the README cannot drift from
what is proven.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import ConfigurationError

README = PROJECT_ROOT / "README.md"
INDENT = "    "  # Markdown's indented code block


@dataclass(frozen=True)
class ReadmeCommands:
    build: str  # builds the packages into dist/
    test: str  # the full test suite


def readme_commands(readme: Path = README) -> ReadmeCommands:
    """The indented lines before the README's first section: the build, then the test command."""
    commands: list[str] = []
    previous = ""
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## ") or line.startswith("```"):
            break
        if line.startswith(INDENT) and line.strip():
            if previous.startswith(INDENT) and previous.strip():
                raise _error(readme, f"the command {commands[-1]!r} goes on over two lines")
            commands.append(line.strip())
        previous = line
    if len(commands) != 2:
        raise _error(readme, f"found {len(commands)} command lines before the first section")
    return ReadmeCommands(build=commands[0], test=commands[1])


def _error(readme: Path, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"{readme.name}: {problem}",
        hint="open it with the build command and the test command, each an indented line",
    )
