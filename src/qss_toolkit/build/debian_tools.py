"""Debian's own tools on our packaging, as Salsa CI and a Debian maintainer run them.

- reprotest on the .dsc, as Salsa CI's reprotest job runs it (`reprotest ... X.dsc -- null`
  on a host holding the Build-Depends; Salsa runs it as a user with sudo, here it runs as
  root: reprotest's preset unpacks the .dsc with `dpkg-source -x` and builds with
  `dpkg-buildpackage --no-sign -b`, a control build and varied ones, and compares the .debs
  with diffoscope). Salsa CI leaves out `time` and `build_path`, and its user_group variation
  names its own user (no change of user); here every variation of reprotest is varied, in two
  varied builds (EXPERIMENTS says why two).
- `gbp buildpackage` in a fresh clone (debian/gbp.conf: the orig tarball exported from the
  branch), whose .debs are compared byte for byte with `dpkg-buildpackage -us -uc -b`'s in
  another clone.

tests/container/test_rebuild.py runs both in CI (`nox -s rebuild`); `python -m qss_toolkit
rebuild --route reprotest --route gbp` runs them by hand.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.errors import CommandFailed, ConfigurationError
from qss_toolkit.run import clean_env, require, run

log = logging.getLogger("qss_toolkit")

# The user of the varied build: base-passwd's, in every Debian system, so that no account is
# added to the host's passwd for a test (reprotest chowns its build tree to it and back).
OTHER_USER = "nobody:nogroup"
# reprotest's locale variation (et_EE.UTF-8, its default): without the locale installed the
# build falls back to C, and the variation varies nothing.
VARIED_LOCALE = "et_EE.UTF-8"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 900.0

# reprotest 0.7's variations (`reprotest --help`'s list), each varied by an experiment below.
VARIATIONS = (
    "environment", "build_path", "kernel", "aslr", "num_cpus", "time", "user_group",
    "fileordering", "domain_host", "home", "locales", "exec_path", "timezone", "umask",
)  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    """One varied build of a reprotest run, compared with the control build."""

    name: str
    # The first experiment's is reprotest's --vary; each further one's an --extra-build,
    # applied on top of the first's.
    vary: str
    left_out: dict[str, str]  # variation -> why this build leaves it out


# Two varied builds beside the control, in one reprotest run, so that every variation is
# varied in one of them: reprotest mounts disorderfs (the fileordering variation) as the user
# of the varied build, who needs a /dev/fuse it may open (root's alone, 0600, on hosts like
# the CI machine); so the other user's build leaves out fileordering and the second varies
# it, everything else included, as root. Both vary domain_host through sudo, as Salsa CI does
# (`domain_host.use_sudo=1`, which user_group requires), and time (faketime) and the build
# path, which Salsa leaves out.
EXPERIMENTS = (
    Experiment(
        "another-user",
        f"+all,-fileordering,user_group.available+={OTHER_USER},domain_host.use_sudo=1",
        {"fileordering": "disorderfs is mounted as the other user, who cannot open /dev/fuse"},
    ),
    Experiment(
        "shuffled-directories",
        "-user_group,+fileordering",
        {"user_group": "varied by the another-user build (disorderfs needs root's /dev/fuse)"},
    ),
)


def expected_variations(experiment: Experiment) -> list[str]:
    return [v for v in VARIATIONS if v not in experiment.left_out]


# reprotest 0.7.23 prefixes every sudo with `-h localhost`, which sudo 1.9 refuses beside a
# command ("a remote host may only be specified when listing privileges"): this sudo, first on
# reprotest's PATH, drops it and runs the real one.
SUDO_SHIM = """#!/bin/sh
if [ "$1" = -h ] && [ "$2" = localhost ]; then shift 2; fi
exec /usr/bin/sudo "$@"
"""

# What reprotest prints when a variation could not take effect: such a run is not a pass.
INEFFECTIVE = (
    re.compile(r"num_cpus is ineffective"),
    re.compile(r"IGNORING \w+ variation"),
    re.compile(r"Setting locale failed"),
)


@dataclass
class ReprotestResult:
    experiments: tuple[Experiment, ...]
    returncode: int  # reprotest's: 0 reproducible, 1 not, 125 a build failed, 2 bad usage
    varied: list[list[str]]  # what each experiment varied, from reprotest's own log lines
    ineffective: list[str]  # reprotest's lines saying a variation had no effect
    diffoscope: list[str]  # diffoscope's report of each experiment that differs, or ""
    log_tail: list[str]
    seconds: float

    @property
    def reproducible(self) -> bool:
        return self.returncode == 0 and not self.ineffective

    def summary(self) -> str:
        verdict = {0: "reproducible", 1: "NOT reproducible", 125: "a build failed"}.get(
            self.returncode, f"reprotest exit {self.returncode}"
        )
        lines = [f"reprotest: {verdict} in {self.seconds:.1f}s"]
        for index, experiment in enumerate(self.experiments):
            varied = self.varied[index] if index < len(self.varied) else []
            left = ", ".join(f"{k} ({why})" for k, why in experiment.left_out.items())
            report = self.diffoscope[index] if index < len(self.diffoscope) else ""
            lines += [
                f"  experiment-{index + 1} ({experiment.name}):",
                f"    varied: {', '.join(varied) or '(nothing)'}",
                f"    left out: {left or '(nothing)'}",
            ]
            if report:
                lines += ["    diffoscope:", *("      " + x for x in report.splitlines()[:80])]
        lines += [f"  ineffective: {line}" for line in self.ineffective]
        if self.returncode not in (0, 1):
            lines += ["  reprotest's last lines:", *("    " + x for x in self.log_tail)]
        return "\n".join(lines)


def _check_host() -> None:
    for tool in ("reprotest", "sudo", "faketime", "disorderfs", "diffoscope", "setarch"):
        require(tool, needed_for="reprotest's variations")
    locales = run(["locale", "-a"], capture=True).stdout.split()
    if not {VARIED_LOCALE, VARIED_LOCALE.replace("UTF-8", "utf8")} & set(locales):
        raise ConfigurationError(
            f"the locale {VARIED_LOCALE} is not installed: reprotest's locale variation would"
            " vary nothing",
            hint="apt-get install locales-all",
        )


def varied_in(output: str) -> list[list[str]]:
    """The variations of each of reprotest's experiment builds, from its lines
    `build "experiment-N": vary environment, FIX time, ...`."""
    return [
        [item.split()[1] for item in line.split(", ") if item.startswith("vary ")]
        for line in re.findall(r'build "experiment-\d+": (.*)', output)
    ]


def reprotest_dsc(dsc: Path, experiments: tuple[Experiment, ...] = EXPERIMENTS) -> ReprotestResult:
    """reprotest on `dsc` (its tarballs beside it), as Salsa CI runs it: a control build and
    one varied build per experiment; the host holds the Build-Depends (apt-packages.txt)."""
    _check_host()
    if not dsc.is_file():
        raise ConfigurationError(f"{dsc} does not exist", hint="nox -s sources")
    with tempfile.TemporaryDirectory(prefix="qss-reprotest-") as tmp:
        shim = Path(tmp) / "bin"
        shim.mkdir()
        (shim / "sudo").write_text(SUDO_SHIM, encoding="utf-8")
        (shim / "sudo").chmod(0o755)
        store = Path(tmp) / "store"
        argv = [
            require("reprotest"),
            # The control build on one CPU, the varied one on more: `--min-cpus $(nproc)`
            # (Salsa's) would make num_cpus vary nothing on a machine of 2.
            "--min-cpus=1",
            "--verbosity=1",
            f"--store-dir={store}",
            f"--vary={experiments[0].vary}",
            *(f"--extra-build={e.vary}" for e in experiments[1:]),
            dsc.name,
            "--",
            "null",
        ]
        env = clean_env({"PATH": f"{shim}:{SYSTEM_PATH}", "HOME": tmp})
        env.pop("SOURCE_DATE_EPOCH", None)  # dpkg takes it from debian/changelog, as on Salsa
        log.info("reprotest: %s", shlex.join(argv))
        started = time.monotonic()
        done = subprocess.run(  # our argv, no shell
            argv,
            cwd=dsc.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        reports = [store / f"experiment-{i}.diffoscope.out" for i in range(1, len(experiments) + 1)]
        diffoscope = [
            r.read_text("utf-8", errors="replace") if r.is_file() else "" for r in reports
        ]
    output = done.stdout
    ineffective = [
        line.strip()
        for line in output.splitlines()
        if any(pattern.search(line) for pattern in INEFFECTIVE)
    ]
    return ReprotestResult(
        experiments,
        done.returncode,
        varied_in(output),
        sorted(set(ineffective)),
        diffoscope,
        output.splitlines()[-25:],
        seconds,
    )


def _clone(repo: Path, dest: Path) -> Path:
    """A fresh clone of `repo`'s HEAD on a branch `main`, debian/gbp.conf's debian-branch."""
    run(["git", "clone", "--quiet", "--no-hardlinks", repo, dest])
    run(["git", "-C", dest, "checkout", "--quiet", "-B", "main"])
    return dest


def _debs(directory: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    found = []
    for deb in sorted(directory.glob("*.deb")):
        found.append(Path(shutil.copy2(deb, out / deb.name)))
    return found


def gbp_buildpackage(out: Path, repo: Path = PROJECT_ROOT) -> list[Path]:
    """`gbp buildpackage -us -uc` in a fresh clone, as a maintainer runs it: gbp exports the orig
    tarball from the branch (debian/gbp.conf) and runs its default builder, debuild, which
    builds the source and the binary packages. lintian, which debuild runs after the build,
    is left to `nox -s lint` and the lint route. The .debs are copied into `out`."""
    require("gbp", needed_for="gbp buildpackage")
    require("debuild", needed_for="gbp buildpackage's builder")
    with tempfile.TemporaryDirectory(prefix="qss-gbp-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        clone = _clone(repo, Path(tmp) / "qmail-send-systemd")
        env = {"HOME": str(home), "PATH": SYSTEM_PATH}
        argv = ["gbp", "buildpackage", "--git-builder=debuild --no-lintian -i -I", "-us", "-uc"]
        try:
            run(argv, cwd=clone, env=env, capture=True, timeout=TIMEOUT)
        except CommandFailed as exc:
            raise CommandFailed(f"gbp buildpackage in a clone failed: {exc}") from exc
        return _debs(Path(tmp), out)


def dpkg_buildpackage(out: Path, repo: Path = PROJECT_ROOT) -> list[Path]:
    """`dpkg-buildpackage -us -uc -b` in a fresh clone (docs/source-packages.md); the .debs into
    `out`."""
    require("dpkg-buildpackage")
    with tempfile.TemporaryDirectory(prefix="qss-dpkg-") as tmp:
        clone = _clone(repo, Path(tmp) / "src")
        env = {"HOME": tmp, "PATH": SYSTEM_PATH}
        run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=clone, env=env, capture=True,
            timeout=TIMEOUT)  # fmt: skip
        return _debs(Path(tmp), out)


def different_bytes(first: list[Path], second: list[Path]) -> list[str]:
    """The file names whose bytes differ, or that only one list has."""
    a = {p.name: p.read_bytes() for p in first}
    b = {p.name: p.read_bytes() for p in second}
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
