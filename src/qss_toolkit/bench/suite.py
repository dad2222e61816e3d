"""The bench's `suite` section: each lane's sessions and each smoke target, as long as they took
when they last ran (.nox/timings.json, qss_toolkit.timings), so that a slower suite is seen.

It measures nothing itself and needs no root: run the suite (./run-tests, `nox -s NAME`), then
`nox -s bench -- --section suite`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from qss_toolkit import timings
from qss_toolkit.timings import Timing, Timings

NEEDS_ROOT = False
LANE = "lane "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own."""


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _row(name: str, timing: Timing) -> list[str]:
    verdict = "" if timing.ok else " (failed)"
    return [name, f"{timing.seconds:.1f} s{verdict}", _when(timing.ended)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(recorded: Timings) -> str:
    """One table per group: a lane's sessions with the lane's total (its sessions run one
    after the other), and the smoke targets of each backend."""
    if not recorded:
        return f"No timings in {timings.TIMINGS}: run the suite first (./run-tests, nox -s NAME)."
    blocks = []
    lanes = sorted(g for g in recorded if g.startswith(LANE))
    others = sorted(g for g in recorded if not g.startswith(LANE))
    for group in [*lanes, *others]:
        entries = recorded[group]
        rows = [_row(name, t) for name, t in entries.items()]
        if group.startswith(LANE):
            total = sum(t.seconds for t in entries.values())
            rows.append([f"({group}: the sessions above, total)", f"{total:.1f} s", ""])
            header = ["session", f"{group}: last run", "ended"]
        else:
            header = ["target", f"{group}: last run", "ended"]
        blocks.append(_table(header, rows))
    return "\n\n".join(blocks)


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    recorded = timings.load()
    data = {
        group: {name: round(t.seconds, 1) for name, t in entries.items()}
        for group, entries in recorded.items()
    }
    return render(recorded), data
