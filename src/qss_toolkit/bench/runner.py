"""`python -m qss_toolkit bench`: how long the smoke pipeline's parts take, as medians of runs.

The bench is a list of sections (SECTIONS); each adds its options, measures, and returns a
Markdown table plus the raw numbers. Everything is printed and written to dist/bench.json.
Not run by CI: it builds roots from the archive and boots many containers.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qss_toolkit import DIST, payload
from qss_toolkit.errors import ConfigurationError
from qss_toolkit.families import Family
from qss_toolkit.run import require, run
from qss_toolkit.settings import COPY_METHODS
from qss_toolkit.smoke import runner
from qss_toolkit.smoke.engines.base import Backend, BootKind
from qss_toolkit.smoke.rootfs import RootfsCache
from qss_toolkit.smoke.runner import BACKENDS, default_jobs, interrupt_on_sigterm, make_backend
from qss_toolkit.smoke.scenarios.registry import package_files, select_scenarios
from qss_toolkit.smoke.targets import LOCAL_TARGETS, TARGETS, Target, debian_root, select_targets

log = logging.getLogger("qss_toolkit")

Numbers = dict[str, Any]


@dataclass(frozen=True)
class SectionResult:
    markdown: str
    data: Numbers


@dataclass(frozen=True)
class Section:
    """One part of the bench: `measure(args)` returns its table and raw numbers."""

    name: str
    title: str
    measure: Callable[[argparse.Namespace], SectionResult]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    needs_root: bool = True  # it boots containers or builds roots


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _targets(args: argparse.Namespace) -> list[Target]:
    """The targets named, else the ones booted here (the registry images are not)."""
    return select_targets(args.target or list(LOCAL_TARGETS))


def _summary(samples: Sequence[float]) -> Numbers:
    return {"median_s": round(median(samples), 3), "runs": [round(s, 3) for s in samples]}


# -- sections ----------------------------------------------------------------------------------


def measure_cold_roots(args: argparse.Namespace) -> SectionResult:
    """mmdebstrap from the archive into an empty cache, per target (parallel builds excluded)."""
    data: Numbers = {}
    rows = []
    for target in _targets(args):
        samples = []
        for _ in range(args.cold_runs):
            with tempfile.TemporaryDirectory(prefix="qss-bench-cold-", dir=_scratch()) as tmp:
                cache = RootfsCache(Path(tmp))
                samples.append(timed(functools.partial(cache.ensure, target)))
        data[target.name] = _summary(samples)
        rows.append(
            [target.name, debian_root(target).suite, f"{median(samples):.1f} s", str(len(samples))]
        )
    table = markdown_table(["target", "suite", "cold root build (median)", "runs"], rows)
    return SectionResult(table, data)


def measure_checkout(args: argparse.Namespace) -> SectionResult:
    """A run's private copy of a cached root: overlayfs mount vs `cp --reflink=auto -a`."""
    target = _targets(args)[0]
    RootfsCache().ensure(target)
    data: Numbers = {}
    rows = []
    for method in COPY_METHODS:
        cache = RootfsCache(copy=method)
        samples = []
        for i in range(args.runs):
            started = time.monotonic()
            with cache.checkout(target, f"bench-{method}-{i}-{os.getpid()}"):
                ready = time.monotonic() - started
            samples.append(time.monotonic() - started)
            log.debug("%s: ready after %.2fs", method, ready)
        data[method] = _summary(samples)
        rows.append([method, f"{median(samples):.2f} s", str(len(samples))])
    table = markdown_table(
        [f"copy method ({target.name})", "create + delete (median)", "runs"], rows
    )
    return SectionResult(table, data)


def _backends(args: argparse.Namespace) -> list[Backend]:
    return [make_backend(name) for name in args.backend or sorted(BACKENDS)]


def measure_boot(args: argparse.Namespace) -> SectionResult:
    """Per backend: start to `systemctl is-system-running --wait` = running (warm cache, its
    image already made), and the round trip of `true` run in the container."""
    data: Numbers = {}
    rows = []
    for backend in _backends(args):
        for target in _targets(args):
            if backend.prepare(target) is not None:
                continue  # a registry image that cannot be had here
            boots, totals, execs = [], [], []
            for _ in range(args.runs):
                started = time.monotonic()
                with backend.start(BootKind.SHARED, target) as container:
                    boot = getattr(container, "boot_seconds", None)
                    boots.append(boot if isinstance(boot, float) else float("nan"))
                    execs += [timed(functools.partial(container.run, ["true"])) for _ in range(10)]
                totals.append(time.monotonic() - started)
            data.setdefault(backend.name, {})[target.name] = {
                "boot": _summary(boots),
                "boot_and_teardown": _summary(totals),
                "exec_round_trip": _summary(execs),
            }
            rows.append(
                [
                    backend.name,
                    target.name,
                    f"{median(boots):.2f} s",
                    f"{median(execs) * 1000:.0f} ms",
                    f"{median(totals):.2f} s",
                    str(args.runs),
                ]
            )
    header = [
        "backend", "target", "boot to running (median)", "exec `true` (median of 10/boot)",
        "start + boot + teardown", "runs",
    ]  # fmt: skip
    return SectionResult(markdown_table(header, rows), data)


def _smoke_once(
    targets: Sequence[Target], jobs: int, dist: Path, backend: Backend
) -> dict[str, float]:
    """One warm smoke run: seconds per target and the wall time of the whole run."""

    backend.prune(list(TARGETS.values()))
    scenarios = select_scenarios(None)
    logs = Path(tempfile.mkdtemp(prefix="qss-bench-logs-"))
    formats = sorted({t.family for t in targets})
    try:
        with runner.previous_build(None, formats) as previous:
            started = time.monotonic()
            runs = runner.run_matrix(
                targets,
                scenarios,
                dist=dist,
                previous=previous,
                logs=logs,
                backend=backend,
                jobs=jobs,
            )
            wall = time.monotonic() - started
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    failed = [
        f"{r.target}/{r.scenario}"
        for run_ in runs
        for r in run_.results
        if r.status not in (runner.Status.PASS, runner.Status.SKIP)
    ]
    if failed:
        log.warning("bench: smoke failures (times still count): %s", " ".join(failed))
        log.warning("%s", runner.failure_report(runs))
    result = {run_.target.name: run_.seconds for run_ in runs}
    result["(matrix wall)"] = wall
    # CPU time of the containers and their commands: the matrix is CPU-bound on two cores.
    result["(scenario CPU)"] = sum(run_.cpu_seconds or 0.0 for run_ in runs)
    return result


def measure_smoke(args: argparse.Namespace) -> SectionResult:
    """Per backend: warm smoke time per target (each alone, one job; with
    --smoke-matrix-only, each as the matrix ran it beside the others) and the whole matrix's
    wall time and scenario CPU time (the targets it can boot here)."""
    data: Numbers = {}
    rows = []
    for backend in _backends(args):
        targets = [t for t in _targets(args) if backend.prepare(t) is None]
        per_target: dict[str, list[float]] = {t.name: [] for t in targets}
        walls: list[float] = []
        cpu: list[float] = []
        for _ in range(args.smoke_runs):
            if not args.smoke_matrix_only:
                for target in targets:
                    alone = _smoke_once([target], 1, args.dist, backend)
                    per_target[target.name].append(alone[target.name])
            matrix = _smoke_once(targets, args.jobs, args.dist, backend)
            if args.smoke_matrix_only:  # each target's time as it ran beside the others
                for target in targets:
                    per_target[target.name].append(matrix[target.name])
            walls.append(matrix["(matrix wall)"])
            cpu.append(matrix["(scenario CPU)"])
        mine: Numbers = {name: _summary(s) for name, s in per_target.items()}
        mine["matrix_wall"] = {**_summary(walls), "jobs": args.jobs, "cpus": os.cpu_count()}
        mine["matrix_scenario_cpu"] = _summary(cpu)
        data[backend.name] = mine
        rows += [
            [backend.name, name, f"{median(s):.1f} s", str(len(s))]
            for name, s in per_target.items()
        ]
        rows.append(
            [
                backend.name,
                f"whole matrix, {args.jobs} jobs (wall)",
                f"{median(walls):.1f} s",
                str(len(walls)),
            ]
        )
        rows.append(
            [backend.name, "whole matrix, scenario CPU time", f"{median(cpu):.1f} s", str(len(cpu))]
        )
    table = markdown_table(["backend", "warm smoke", "median", "runs"], rows)
    return SectionResult(table, data)


def measure_piuparts(args: argparse.Namespace) -> SectionResult:
    """The peer: piuparts' install/purge test of the same .deb on Debian 12."""
    require("piuparts")
    target = TARGETS["debian-12"]
    main = payload.main_package().name
    main_deb = package_files(args.dist, Family.DEB).get(main)
    if main_deb is None:
        raise ConfigurationError(f"no {main} .deb in {args.dist}", hint="nox -s packages")
    # Our cached Debian 12 root as piuparts' base: the same systemd + python3 system the smoke
    # tests start from (from a minbase chroot, systemd pulled in as a dependency leaves
    # /var/lib/private & co. after the purge, and piuparts blames our package for them).
    base = RootfsCache().ensure(target)
    samples, status = [], "pass"
    for _ in range(args.piuparts_runs):
        with tempfile.TemporaryDirectory(prefix="qss-piuparts-", dir=_scratch()) as tmp:
            started = time.monotonic()
            result = run(
                [
                    "piuparts",
                    f"--existing-chroot={base}",
                    "--distribution=" + debian_root(target).suite,
                    "--mirror=" + debian_root(target).mirror,
                    "--tmpdir=" + tmp,
                    "--no-upgrade-test",
                    "--skip-logrotatefiles-test",
                    main_deb,
                ],
                check=False,
                capture=True,
                timeout=1800,
            )
            samples.append(time.monotonic() - started)
            output = result.stdout + result.stderr
            if result.returncode != 0:
                fails = [ln for ln in output.splitlines() if "FAIL:" in ln] or ["no FAIL line"]
                status = "FAIL: " + fails[0].split("FAIL:", 1)[1].strip()
            elif "WARN:" in output:
                warned = {
                    ln.split("WARN:", 1)[1].strip() for ln in output.splitlines() if "WARN:" in ln
                }
                status = "pass, warnings: " + "; ".join(sorted(warned))
    data: Numbers = {"debian-12": {**_summary(samples), "result": status}}
    rows = [["piuparts install/purge (debian-12)", f"{median(samples):.1f} s", status]]
    return SectionResult(markdown_table(["peer", "median", "result"], rows), data)


def _module_section(name: str, title: str, module_name: str) -> Section:
    """A section whose code is qss_toolkit.bench.MODULE_NAME's measure_section and add_arguments."""
    module = importlib.import_module(f"qss_toolkit.bench.{module_name}")

    def measure(args: argparse.Namespace) -> SectionResult:
        return SectionResult(*module.measure_section(args))

    return Section(name, title, measure, module.add_arguments, getattr(module, "NEEDS_ROOT", True))


def _scratch() -> Path:
    path = RootfsCache().directory / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", action="append", help=f"repeat; default: {', '.join(LOCAL_TARGETS)}"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per warm measurement")
    parser.add_argument("--smoke-runs", type=int, default=3, help="warm smoke runs")
    parser.add_argument(
        "--smoke-matrix-only",
        action="store_true",
        help="time the whole matrix alone, not also each target by itself (a quarter of the time)",
    )
    parser.add_argument("--cold-runs", type=int, default=2, help="cold root builds per target")
    parser.add_argument("--piuparts-runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--dist", type=Path, default=DIST)
    parser.add_argument(
        "--backend",
        action="append",
        choices=sorted(BACKENDS),
        help="the container engines to measure (repeat); default: every one",
    )


SECTIONS: list[Section] = [
    Section("cold", "Cold root builds (mmdebstrap from the archive)", measure_cold_roots),
    Section("checkout", "A run's private root", measure_checkout),
    Section("boot", "Container boot and exec round trip, per backend", measure_boot),
    Section("smoke", "Warm smoke runs, per backend", measure_smoke),
    Section("piuparts", "Peer: piuparts on Debian 12", measure_piuparts),
]


def sections() -> list[Section]:
    return [
        _module_section("suite", "The suite's lanes and smoke targets, as last run", "suite"),
        *SECTIONS,
        _module_section("flush", "Flush on reconnect", "flush"),
        _module_section("status", "Status on a large queue", "status"),
        _module_section("relay", "The helper's cost as qmail-send's log relay", "relay"),
    ]


def previous_sections(path: Path) -> Numbers:
    """The sections of an earlier bench.json, so that `--section X` re-measures X alone and
    keeps the others' figures (a full bench takes many minutes)."""
    try:
        sections = json.loads(path.read_text()).get("sections", {})
    except (OSError, ValueError):
        return {}
    return sections if isinstance(sections, dict) else {}


def main(argv: Sequence[str]) -> int:
    all_sections = sections()
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit bench", description=__doc__)
    _common_arguments(parser)
    parser.add_argument(
        "--section",
        action="append",
        choices=[s.name for s in all_sections],
        help="run only these sections (repeat); default: all",
    )
    for section in all_sections:
        section.add_arguments(parser)
    args = parser.parse_args(list(argv))
    chosen = [s for s in all_sections if not args.section or s.name in args.section]
    if any(s.needs_root for s in chosen) and os.geteuid() != 0:
        raise ConfigurationError(
            "the bench boots containers and must run as root",
            hint="run it as root, or --section suite for the suite's recorded timings alone",
        )
    interrupt_on_sigterm()
    report: Numbers = {"cpus": os.cpu_count(), "sections": {}}
    if args.section:
        report["sections"] = previous_sections(DIST / "bench.json")
    out = ["# qmail-send-systemd bench", ""]
    for section in chosen:
        log.info("bench: %s", section.title)
        result = section.measure(args)
        report["sections"][section.name] = result.data
        block = result.markdown
        if not block.startswith("## "):
            block = f"## {section.title}\n\n{block}"
        out += [block, ""]
        print(block + "\n", flush=True)
    DIST.mkdir(exist_ok=True)
    (DIST / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (DIST / "bench.md").write_text("\n".join(out))
    print(f"wrote {DIST / 'bench.json'} and {DIST / 'bench.md'}")
    return 0
