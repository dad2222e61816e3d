"""How long the suite's parts took when they last ran, kept in .nox/timings.json for the bench.

The noxfile records each session of its lanes (group `lane NAME`), the smoke runner each
target it ran (group `smoke BACKEND`); `nox -s bench -- --section suite` prints them. An entry
is the latest run of its name, with whether it passed and when it ended. The two lanes run
side by side, so every update reads and writes the file under a lock.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.locks import exclusive

log = logging.getLogger("qss_toolkit")

# Beside nox's environments in the clone, not in dist/: dist/ holds what a build makes, and
# nothing else (the stock machines compare it; builders publish it).
TIMINGS = PROJECT_ROOT / ".nox" / "timings.json"


@dataclass(frozen=True)
class Timing:
    seconds: float
    ok: bool
    ended: float  # seconds since the epoch


Timings = dict[str, dict[str, Timing]]  # group -> name -> its latest run


def load(path: Path | None = None) -> Timings:
    """The recorded timings; none when the file is missing or not ours (it is only a record)."""
    path = path or TIMINGS
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            group: {name: Timing(**entry) for name, entry in entries.items()}
            for group, entries in raw.items()
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def record(group: str, name: str, seconds: float, *, ok: bool, path: Path | None = None) -> None:
    """Keep `seconds` as the latest time of `name` in `group` (in `path`, else TIMINGS). A
    record that cannot be written (dist/ made by root, read-only) is warned about, and never
    fails what it timed."""
    path = path or TIMINGS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path.with_name(path.name + ".lock")):
            timings = load(path)
            timings.setdefault(group, {})[name] = Timing(round(seconds, 3), ok, round(time.time()))
            data = {g: {n: asdict(t) for n, t in runs.items()} for g, runs in timings.items()}
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(path)
    except OSError as exc:
        log.warning("not recorded in %s: %s %s took %.1f s (%s)", path, group, name, seconds, exc)
