"""`lint`: ruff, mypy, shellcheck, systemd-analyze verify, lintian and rpmlint, all steps reported.

Every step runs even when an earlier one fails, and the session fails at the end naming each
failed step. Nothing is filtered here: a lintian or rpmlint tag that must stay is overridden in
the package (packaging/lintian/<package>) or in packaging/rpm/rpmlint.toml, with its reason.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, PROJECT_ROOT, build, payload, sources
from qss_toolkit.errors import CheckFailed, CommandFailed, FatalError
from qss_toolkit.run import run

log = logging.getLogger("qss_toolkit")

PYTHON_PATHS = ("src", "tests", "noxfile.py")
UNIT = PROJECT_ROOT / "units" / "qmail-send.service"
RPMLINT_CONFIG = PROJECT_ROOT / "packaging" / "rpm" / "rpmlint.toml"
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
_RPMLINT_SUMMARY = re.compile(r"(\d+) errors?, (\d+) warnings?")


@dataclass(frozen=True)
class Step:
    name: str
    check: Callable[[Path], str]  # returns a one-line summary, raises FatalError on failure


def _ruff(_dist: Path) -> str:
    run(["ruff", "check", *PYTHON_PATHS], cwd=PROJECT_ROOT, capture=True)
    run(["ruff", "format", "--check", *PYTHON_PATHS], cwd=PROJECT_ROOT, capture=True)
    return "ruff check and ruff format --check: clean"


def _mypy(_dist: Path) -> str:
    # Files and strictness (strict on qss_toolkit) come from pyproject.toml's [tool.mypy].
    result = run(["mypy"], cwd=PROJECT_ROOT, capture=True)
    return result.stdout.strip().splitlines()[-1]


def shell_scripts() -> list[Path]:
    """Every shell script we ship: payload files with a sh shebang, and the maintainer scripts."""
    found: set[Path] = set()
    for package in payload.load_packages():
        for fmt_scripts in package.scripts.values():
            found.update(PROJECT_ROOT / p for p in fmt_scripts.values())
        for f in package.files:
            if f.source and f.kind == "file" and not f.source.startswith("generated/"):
                head = (PROJECT_ROOT / f.source).read_bytes()[:64]
                if re.match(rb"#!\s*/(usr/)?bin/(env )?(sh|bash|dash)\b", head):
                    found.add(PROJECT_ROOT / f.source)
    return sorted(p for p in found if p.is_file())


def _shellcheck(_dist: Path) -> str:
    scripts = shell_scripts()
    run(["shellcheck", "--severity=style", *scripts], cwd=PROJECT_ROOT, capture=True)
    return f"{len(scripts)} scripts clean: " + ", ".join(
        str(p.relative_to(PROJECT_ROOT)) for p in scripts
    )


def _exec_programs(unit_text: str) -> list[str]:
    programs = []
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().startswith("Exec") and value.strip():
            programs.append(value.strip().lstrip("+-!@:").split()[0])
    return programs


def _systemd_analyze(_dist: Path) -> str:
    """verify in a root holding the host's units, ours, and stand-ins for the programs it runs.

    The programs (our helper, qmail's) are installed by the packages, not on the build host.
    """
    host_units = next((d for d in HOST_UNIT_DIRS if (d / "multi-user.target").exists()), None)
    if host_units is None:
        raise CheckFailed("no systemd units on this host to verify against", hint="install systemd")
    with tempfile.TemporaryDirectory(prefix="qss-verify-") as tmp:
        root = Path(tmp)
        units = root / "usr/lib/systemd/system"
        shutil.copytree(host_units, units, symlinks=True)
        text = UNIT.read_text(encoding="utf-8")
        (units / UNIT.name).write_text(text, encoding="utf-8")
        for program in _exec_programs(text):
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
            stub.chmod(0o755)
        result = run(
            ["systemd-analyze", "verify", f"--root={root}", UNIT.name], capture=True, check=False
        )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or output:
        raise CheckFailed(f"systemd-analyze verify {UNIT.name}: {output or result.returncode}")
    return f"systemd-analyze verify {UNIT.name}: no output"


def _packages(dist: Path, pattern: str) -> list[Path]:
    found = sorted(dist.glob(pattern))
    if not found:
        raise CheckFailed(f"no {pattern} in {dist}", hint="nox -s packages")
    return found


# The review's flags: every tag, pedantic ones too, shown; errors and warnings fail.
LINTIAN_ARGS = ("-EvIL", "+pedantic", "--fail-on", "error,warning")


def lintian_verdict(output: str, returncode: int, what: str) -> str:
    """The summary of a lintian run, or CheckFailed naming every error and warning."""
    tags = [ln for ln in output.splitlines() if re.match(r"^[EW]: ", ln)]
    if returncode != 0 or tags:
        raise CheckFailed("lintian: " + ("; ".join(tags) or f"exit {returncode}"))
    return f"lintian on {what}: 0 errors, 0 warnings"


def rpmlint_verdict(output: str, returncode: int, what: str) -> str:
    """The summary of an rpmlint run, or CheckFailed naming every error and warning."""
    summary = _RPMLINT_SUMMARY.search(output)
    tags = [ln for ln in output.splitlines() if re.search(r": [EW]: ", ln)]
    if returncode != 0 or summary is None or tags:
        detail = "; ".join(tags) or output.strip()[-300:]
        raise CheckFailed(f"rpmlint: {detail}")
    return f"rpmlint on {what}: {summary.group(0)}"


def _lintian(dist: Path) -> str:
    debs = _packages(dist, "*.deb")
    changes = _packages(dist, "*_source.changes")  # the .dsc with it
    result = run(["lintian", *LINTIAN_ARGS, *debs, *changes], capture=True, check=False)
    what = f"{len(debs)} .deb, {len(changes)} source .changes and its .dsc"
    return lintian_verdict(result.stdout + result.stderr, result.returncode, what)


def spec_of(srpm: Path, dest: Path) -> Path:
    """The spec as the source RPM ships it, extracted into `dest`."""
    with srpm.open("rb") as stdin:
        archive = subprocess.run(["rpm2archive", "-"], stdin=stdin, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".spec"):
                handle = tar.extractfile(member)
                assert handle is not None
                spec = dest / Path(member.name).name
                spec.write_bytes(handle.read())
                return spec
    raise CheckFailed(f"{srpm.name} holds no spec")


def _rpmlint(dist: Path) -> str:
    rpms = _packages(dist, "*.rpm")  # the source RPM too
    with tempfile.TemporaryDirectory(prefix="qss-spec-") as tmp:
        specs = [spec_of(s, Path(tmp)) for s in _packages(dist, "*.src.rpm")]
        result = run(
            ["rpmlint", "--config", RPMLINT_CONFIG, *rpms, *specs], capture=True, check=False
        )
    what = f"{len(rpms)} .rpm (source RPM included) and {len(specs)} spec"
    return rpmlint_verdict(result.stdout + result.stderr, result.returncode, what)


STEPS: tuple[Step, ...] = (
    Step("ruff", _ruff),
    Step("mypy", _mypy),
    Step("shellcheck", _shellcheck),
    Step("systemd-analyze", _systemd_analyze),
    Step("lintian", _lintian),
    Step("rpmlint", _rpmlint),
)


def lint(dist: Path, only: list[str] | None = None) -> list[str]:
    """Run every step; return their summaries, or raise CheckFailed naming the failed ones."""
    if not any(dist.glob("*.deb")) or not any(dist.glob("*.noarch.rpm")):
        log.info("lint: %s has no packages yet; building them with nfpm first", dist)
        build.build("nfpm", payload.FORMATS, dist)
    if not any(dist.glob("*.dsc")) or not any(dist.glob("*.src.rpm")):
        log.info("lint: %s has no source packages yet; building them first", dist)
        sources.write_sources(dist)
    summaries: list[str] = []
    failed: list[str] = []
    for step in STEPS:
        if only and step.name not in only:
            continue
        started = time.monotonic()
        try:
            line = f"ok   {step.name}: {step.check(dist)}"
        except (CheckFailed, CommandFailed) as exc:
            line = f"FAIL {step.name}: {exc}"
            failed.append(step.name)
        except FatalError as exc:  # a missing tool: the step cannot run, which is a failure
            line = f"FAIL {step.name}: {exc}"
            failed.append(step.name)
        line += f" ({time.monotonic() - started:.1f}s)"
        log.info("%s", line)
        summaries.append(line)
    if failed:
        raise CheckFailed(f"lint failed: {', '.join(failed)}")
    return summaries


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit lint", description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST, help="packages to check (dist/)")
    parser.add_argument("--step", action="append", choices=[s.name for s in STEPS])
    args = parser.parse_args(argv)
    lint(args.dist.resolve(), args.step)
    return 0
