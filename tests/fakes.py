"""Stand-ins for the smoke harness's engines, for fast tests: a Container that answers from a
table and records every command, and a Backend that starts it (or fails to). mypy checks that
both conform to the protocols the harness types them with (see the end of this file)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from qss_toolkit.smoke.engines.base import Backend, BootKind, Container, ContainerError
from qss_toolkit.smoke.targets import Target


class RecordingContainer:
    """A Container that answers from a table: command line -> (exit code, stdout).

    Every command, copy and reboot is recorded in `commands`; a `copy_out` writes the file it names.
    `cpu` is what cpu_seconds() reads (None: the host cannot count it).
    """

    def __init__(
        self, answers: Mapping[str, tuple[int, str]] | None = None, name: str = "fake"
    ) -> None:
        self.name = name
        self.answers = dict(answers or {})
        self.commands: list[str] = []
        self.copied: dict[str, Path] = {}
        self.cpu: float | None = 0.0
        self.reboots = 0

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
        self.copied[dest] = src

    def copy_out(self, src: str, dest: Path) -> None:
        dest.write_text(f"copied {src}")

    def journal(self, unit: str | None = None) -> str:
        return "journal lines"

    def cpu_seconds(self) -> float | None:
        return self.cpu

    def reboot(self) -> None:
        """Recorded as the command `reboot`, among the others, in the order it came."""
        self.commands.append("reboot")
        self.reboots += 1


class FakeBackend:
    """Starts `container` for every boot, or raises `fails` for the boot kinds in `failing`;
    `unavailable` targets are ones it cannot boot (prepare() says why)."""

    name = "fake"

    def __init__(
        self,
        container: RecordingContainer,
        *,
        failing: Sequence[BootKind] = (),
        fails: Exception | None = None,
    ) -> None:
        self.container = container
        self.failing = tuple(failing)
        self.fails = fails or ContainerError("systemd did not finish booting")
        self.started: list[tuple[BootKind, str]] = []
        self.stopped = 0
        self.prepared: list[str] = []
        self.pruned: list[list[str]] = []
        self.unavailable: dict[str, str] = {}  # target name -> why prepare() cannot boot it
        self.left: list[str] = []  # what leftovers() reports

    def prepare(self, target: Target) -> str | None:
        self.prepared.append(target.name)
        return self.unavailable.get(target.name)

    def start(
        self, kind: BootKind, target: Target, *, keep: bool = False
    ) -> contextlib.AbstractContextManager[Container]:
        return self._start(kind, target)

    def prune(self, targets: Sequence[Target]) -> None:
        self.pruned.append([t.name for t in targets])

    def leftovers(self) -> list[str]:
        return list(self.left)

    @contextlib.contextmanager
    def _start(self, kind: BootKind, target: Target) -> Iterator[Container]:
        self.started.append((kind, target.name))
        if kind in self.failing:
            raise self.fails
        try:
            yield self.container
        finally:
            self.stopped += 1


def _conforms(container: RecordingContainer, backend: FakeBackend) -> tuple[Container, Backend]:
    """Never called: mypy fails here if a fake drifts from the protocol it stands for."""
    return container, backend
