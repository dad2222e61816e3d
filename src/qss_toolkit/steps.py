"""Per-step timings, folded where the CI engine folds a log: one line, or one fold, per step.

`with step("lintian"):` prints, around what the block prints,

- under GitHub Actions (GITHUB_ACTIONS=true): `::group::lintian` ... `::endgroup::`, a fold the
  job's log opens on a click;
- under GitLab CI (GITLAB_CI=true): `section_start:EPOCH:NAME[collapsed=true]` ...
  `section_end:EPOCH:NAME`, the markers GitLab folds on (each behind an erase-line escape);
- elsewhere nothing before the step;

and after it, everywhere, `== lintian (12.3 s)` (`== lintian failed (12.3 s)` when the block
raised), outside the fold, so that a step's time is read without opening it. The smoke runner
and the toolkit's session commands use it for their steps.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

GITHUB = "github"
GITLAB = "gitlab"
_ERASE = "\x1b[0K"  # GitLab's markers are behind it, so that the raw log does not show them


def ci_engine(environ: Mapping[str, str] | None = None) -> str | None:
    """The CI engine whose fold markers apply (GITHUB_ACTIONS, GITLAB_CI), None elsewhere."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") == "true":
        return GITHUB
    if env.get("GITLAB_CI") == "true":
        return GITLAB
    return None


def section_id(name: str) -> str:
    """A GitLab section name for `name`: only letters, digits, `_`, `.` and `-` are allowed."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "step"


@contextlib.contextmanager
def step(
    name: str,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Fold what the block prints as the step `name`, and say how long it took."""
    out = sys.stdout if stream is None else stream
    engine = ci_engine(environ)
    ident = section_id(name)

    def emit(line: str) -> None:
        sys.stderr.flush()  # what the step logged comes before the marker
        out.write(line + "\n")
        out.flush()

    if engine == GITHUB:
        emit(f"::group::{name}")
    elif engine == GITLAB:
        emit(f"{_ERASE}section_start:{int(time.time())}:{ident}[collapsed=true]\r{_ERASE}{name}")
    started = clock()
    outcome = "failed "
    try:
        yield
        outcome = ""
    finally:
        seconds = clock() - started
        if engine == GITHUB:
            emit("::endgroup::")
        elif engine == GITLAB:
            emit(f"{_ERASE}section_end:{int(time.time())}:{ident}\r{_ERASE}")
        emit(f"== {name} {outcome}({seconds:.1f} s)")
