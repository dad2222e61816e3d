"""`python -m qss_toolkit smoke`: boot every target, install the packages, run the scenarios.

Prints a target x scenario table (pass/fail/skip and seconds), writes smoke-junit.xml, and
keeps the journal and logs of each failed scenario under smoke-logs/<target>/<scenario>/, both
in the directory of the packages under test (--dist, dist/ by default).
A target the backend cannot boot here (a registry image that cannot be pulled, or one that
nspawn does not boot) is skipped with the reason. Exit 0 when every scenario that ran passed,
1 when one failed (or, with --require-targets, a target was skipped), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from qss_toolkit import DIST, timings
from qss_toolkit.errors import CheckFailed, ConfigurationError, FatalError
from qss_toolkit.settings import BACKEND, PREVIOUS_DIST, settings
from qss_toolkit.smoke import previous
from qss_toolkit.smoke.engines.base import Backend, BootKind
from qss_toolkit.smoke.engines.nspawn import NspawnBackend
from qss_toolkit.smoke.engines.podman import PodmanBackend
from qss_toolkit.smoke.scenarios.registry import (
    Scenario,
    ScenarioContext,
    package_files,
    select_scenarios,
)
from qss_toolkit.smoke.targets import TARGETS, Target, select_targets
from qss_toolkit.steps import step
from qss_toolkit.words import Word

log = logging.getLogger("qss_toolkit")

# --backend NAME -> the engine; settings.BACKENDS names the same ones for $QSS_BACKEND.
BACKENDS: dict[str, Callable[[], Backend]] = {"nspawn": NspawnBackend, "podman": PodmanBackend}

# What to keep from a container when a scenario fails (besides the whole boot's journal).
FAILURE_FILES = ("/var/log/apt/term.log", "/var/log/dpkg.log", "/var/log/dnf.log")


class Status(Word):
    """A scenario's outcome: ERROR when the harness (a boot, a tool), not the scenario, broke."""

    PASS = "pass"  # noqa: S105 - a scenario's outcome, not a password
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"  # not run here, with the reason (the target's image cannot be had)

    @property
    def word(self) -> str:
        """How the table prints it: failures stand out."""
        return str(self) if self in (Status.PASS, Status.SKIP) else str(self).upper()


@dataclass
class ScenarioResult:
    target: str
    scenario: str
    status: Status
    seconds: float
    message: str = ""
    logs: str = ""
    cpu_seconds: float | None = None  # the container's and its commands' CPU time


@dataclass
class TargetRun:
    target: Target
    results: list[ScenarioResult] = field(default_factory=list)
    boot_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None  # why the backend could not boot the target here

    @property
    def cpu_seconds(self) -> float | None:
        """The scenarios' CPU time (None when none of them could be measured)."""
        measured = [r.cpu_seconds for r in self.results if r.cpu_seconds is not None]
        return sum(measured) if measured else None


def default_jobs() -> int:
    """Two targets per CPU: measured on 2 cores, 4 jobs ran the matrix in 206 s, 2 in 359 s."""
    return 2 * (os.cpu_count() or 1)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit smoke")
    parser.add_argument(
        "--target", action="append", help=f"repeat; default: every target ({', '.join(TARGETS)})"
    )
    parser.add_argument("--scenario", action="append", help="run only these scenarios (repeat)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        help="targets run at once, each in up to two shared boots side by side (default: 2 per"
        " CPU: the scenarios mostly wait)",
    )
    parser.add_argument("--dist", type=Path, default=DIST, help="the packages under test")
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help=f"the previous release's packages (default: ${PREVIOUS_DIST}, else from its commit)",
    )
    parser.add_argument("--keep", action="store_true", help="keep containers (debugging)")
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=None,
        help=f"the container engine (default: ${BACKEND}, else nspawn)",
    )
    parser.add_argument(
        "--require-targets",
        action="store_true",
        help="fail when a target is skipped (CI where a registry is reachable)",
    )
    parser.add_argument(
        "--repeat",
        type=positive,
        default=1,
        metavar="N",
        help="run the whole selection N times, one run after the other, each on new boots;"
        " the table gives each cell's passes (5/5) and median time",
    )
    return parser.parse_args(list(argv))


def positive(text: str) -> int:
    """A count of 1 or more (argparse turns the ValueError into a one-line usage error)."""
    number = int(text)
    if number < 1:
        raise ValueError(text)
    return number


def make_backend(name: str | None) -> Backend:
    """The engine `name` (--backend), else $QSS_BACKEND's, else nspawn."""
    return BACKENDS[name or settings().backend]()


def require_root() -> None:
    if os.geteuid() != 0:
        raise ConfigurationError(
            "smoke tests boot containers (systemd-nspawn, podman) and must run as root",
            hint="run it as root (a root shell, or su -c './nox -s smoke')",
        )


def plan(target: Target, scenarios: Sequence[Scenario]) -> list[tuple[BootKind, list[Scenario]]]:
    """Boot groups of one target: a shared boot for the scenarios that work, a second one for
    those that mostly wait on timers (run side by side: run_target), then a fresh root per
    offline scenario."""
    mine = [s for s in scenarios if s.applies_to(target)]
    groups: list[tuple[BootKind, list[Scenario]]] = []
    for waits in (False, True):
        shared = [s for s in mine if s.boot is BootKind.SHARED and s.waits is waits]
        if shared:
            groups.append((BootKind.SHARED, shared))
    groups += [(s.boot, [s]) for s in mine if s.boot is BootKind.OFFLINE]
    return groups


def run_target(
    target: Target,
    scenarios: Sequence[Scenario],
    *,
    dist: Path,
    previous: Path | None,
    logs: Path,
    backend: Backend,
    keep: bool = False,
    report: Callable[[ScenarioResult], None] = lambda r: None,
    cancel: threading.Event | None = None,
) -> TargetRun:
    """Run `target`'s scenarios, each one timed and judged on its own.

    When `cancel` is set (Ctrl-C in the main thread) no further scenario starts; the
    container of the current one is torn down as usual.
    """
    outcome = TargetRun(target)
    started = time.monotonic()

    def none_run(status: Status, message: str) -> TargetRun:
        """Every scenario of the target, unrun, with `status` and why."""
        for unrun in (s for s in scenarios if s.applies_to(target)):
            result = ScenarioResult(target.name, unrun.name, status, 0.0, message)
            outcome.results.append(result)
            report(result)
        outcome.seconds = time.monotonic() - started
        return outcome

    try:
        outcome.skipped = backend.prepare(target)
    except (FatalError, OSError) as exc:  # the image could be had, but making it failed
        return none_run(Status.ERROR, f"preparing {target.name} for {backend.name}: {exc}")
    if outcome.skipped is not None:
        return none_run(Status.SKIP, outcome.skipped)
    lock = threading.Lock()
    stop = cancel or threading.Event()  # set: no further scenario starts

    def record(result: ScenarioResult) -> None:
        with lock:
            outcome.results.append(result)
            report(result)

    def run_group(kind: BootKind, group: list[Scenario]) -> None:
        if stop.is_set():
            return
        pending = list(group)
        try:
            with backend.start(kind, target, keep=keep) as container:
                boot = getattr(container, "boot_seconds", None)
                if isinstance(boot, float):
                    with lock:
                        outcome.boot_seconds.append(boot)
                handover: str | None = None
                while pending and not stop.is_set():
                    current = pending.pop(0)
                    ctx = ScenarioContext(target, container, dist, previous, handover=handover)
                    result = run_scenario(ctx, current, logs / target.name / current.name)
                    # Only a passed scenario vouches for the state it leaves, and only to the next.
                    handover = ctx.leaves if result.status is Status.PASS else None
                    record(result)
        except (FatalError, OSError) as exc:
            # The container itself failed: every scenario not yet run in it is an error.
            for lost in pending:
                message = f"{kind} boot: {exc}"
                record(ScenarioResult(target.name, lost.name, Status.ERROR, 0.0, message))

    groups = plan(target, scenarios)
    # The shared boots side by side (the second one's scenarios mostly wait), then the offline
    # roots one after another.
    shared = [group for group in groups if group[0] is BootKind.SHARED]
    side_by_side(run_group, shared, stop)
    for group in groups[len(shared) :]:
        run_group(*group)
    order = {s.name: i for i, s in enumerate(s for _, g in groups for s in g)}
    outcome.results.sort(key=lambda r: order.get(r.scenario, len(order)))
    outcome.seconds = time.monotonic() - started
    return outcome


def side_by_side(
    run_group: Callable[[BootKind, list[Scenario]], None],
    groups: Sequence[tuple[BootKind, list[Scenario]]],
    stop: threading.Event,
) -> None:
    """Run the boot groups at once, one thread each; when one raises, `stop` tells the others
    to start no further scenario, and the exception goes on up once they have ended."""
    if len(groups) <= 1:
        for group in groups:
            run_group(*group)
        return
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [pool.submit(run_group, *group) for group in groups]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(future.exception() for future in done):
            stop.set()
        for future in futures:
            future.result()


def run_scenario(ctx: ScenarioContext, scenario: Scenario, logs: Path) -> ScenarioResult:
    started = time.monotonic()
    cpu_before = ctx.container.cpu_seconds()
    status, message = Status.PASS, ""
    try:
        scenario.function(ctx)
    except CheckFailed as exc:
        status, message = Status.FAIL, str(exc)
    except AssertionError as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        status = Status.FAIL
        message = f"assertion failed at {Path(where.filename).name}:{where.lineno}: {exc}"
    except FatalError as exc:
        status, message = Status.ERROR, str(exc)
    seconds = time.monotonic() - started
    cpu_after = ctx.container.cpu_seconds()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    result = ScenarioResult(
        ctx.target.name, scenario.name, status, seconds, message, cpu_seconds=cpu
    )
    if status is not Status.PASS:
        result.logs = str(save_failure_logs(ctx, result, logs))
    return result


def save_failure_logs(ctx: ScenarioContext, result: ScenarioResult, where: Path) -> Path:
    """Keep what is needed to debug a failure: message, journal, package logs, qmail's
    control files."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    (where / "failure.txt").write_text(
        f"target: {result.target}\nscenario: {result.scenario}\n\n{result.message}\n"
    )
    with contextlib.suppress(FatalError, OSError):
        (where / "journal.txt").write_text(ctx.container.journal(None))
    for path in (*FAILURE_FILES, *ctx.artifacts):
        with contextlib.suppress(FatalError, OSError):
            probe = ctx.container.run(["test", "-e", path], check=False)
            if probe.returncode == 0:
                ctx.container.copy_out(path, where / path.strip("/").replace("/", "_"))
    return where


def render_table(runs: Sequence[TargetRun]) -> str:
    """Scenario rows x target columns; each cell is `pass 1.2s` / `FAIL 3.4s` / `skip` / `-`."""
    targets = [r.target.name for r in runs]
    scenarios: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    for run_ in runs:
        for res in run_.results:
            if res.scenario not in scenarios:
                scenarios.append(res.scenario)
            cell = (
                f"{res.status.word} {res.seconds:.1f}s" if res.status is not Status.SKIP else "skip"
            )
            cells[(res.scenario, run_.target.name)] = cell
    footer = {
        "(boot, median)": {
            r.target.name: f"{sorted(r.boot_seconds)[len(r.boot_seconds) // 2]:.1f}s"
            for r in runs
            if r.boot_seconds
        },
        "(target total)": {r.target.name: f"{r.seconds:.1f}s" for r in runs},
    }
    cpu = {r.target.name: f"{r.cpu_seconds:.1f}s" for r in runs if r.cpu_seconds is not None}
    if cpu:
        footer["(scenario CPU)"] = cpu
    header = ["scenario", *targets]
    rows = [[s] + [cells.get((s, t), "-") for t in targets] for s in scenarios]
    rows += [[k] + [v.get(t, "-") for t in targets] for k, v in footer.items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_repeats(rounds: Sequence[Sequence[TargetRun]]) -> str:
    """The table of repeated runs: each cell is `5/5 1.2s` (the runs it passed, of the runs it
    ran; the median of their seconds), `skip`, or `-`; each target's median total below."""
    targets = [r.target.name for r in rounds[0]] if rounds else []
    scenarios: list[str] = []
    cells: dict[tuple[str, str], list[ScenarioResult]] = {}
    totals: dict[str, list[float]] = {}
    for round_ in rounds:
        for run_ in round_:
            totals.setdefault(run_.target.name, []).append(run_.seconds)
            for res in run_.results:
                if res.scenario not in scenarios:
                    scenarios.append(res.scenario)
                cells.setdefault((res.scenario, run_.target.name), []).append(res)

    def median(values: Sequence[float]) -> float:
        return sorted(values)[len(values) // 2]

    def cell(results: Sequence[ScenarioResult]) -> str:
        if not results:
            return "-"
        if all(r.status is Status.SKIP for r in results):
            return "skip"
        passed = sum(r.status is Status.PASS for r in results)
        return f"{passed}/{len(results)} {median([r.seconds for r in results]):.1f}s"

    header = ["scenario", *targets]
    rows = [[s] + [cell(cells.get((s, t), [])) for t in targets] for s in scenarios]
    rows.append(["(target total, median)"] + [f"{median(totals[t]):.1f}s" for t in targets])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def junit_xml(runs: Sequence[TargetRun]) -> str:
    suites = ET.Element("testsuites", name="smoke")
    for run_ in runs:
        failures = sum(r.status is Status.FAIL for r in run_.results)
        errors = sum(r.status is Status.ERROR for r in run_.results)
        skipped = sum(r.status is Status.SKIP for r in run_.results)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=run_.target.name,
            tests=str(len(run_.results)),
            failures=str(failures),
            errors=str(errors),
            skipped=str(skipped),
            time=f"{run_.seconds:.3f}",
        )
        for res in run_.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"smoke.{run_.target.name}",
                name=res.scenario,
                time=f"{res.seconds:.3f}",
            )
            if res.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=res.message)
            elif res.status is not Status.PASS:
                tag = "failure" if res.status is Status.FAIL else "error"
                first = res.message.splitlines()[0] if res.message else res.status
                node = ET.SubElement(case, tag, message=first)
                node.text = res.message + (f"\nlogs: {res.logs}" if res.logs else "")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def failure_report(runs: Sequence[TargetRun], max_lines: int = 30) -> str:
    """Each failure on one screen: target, scenario, then the command and its output."""
    blocks = []
    for run_ in runs:
        for res in run_.results:
            if res.status in (Status.PASS, Status.SKIP):
                continue
            body = res.message.splitlines()
            if len(body) > max_lines:
                body = [*body[: max_lines // 3], "[...]", *body[-(max_lines * 2 // 3) :]]
            logs = f"\n  logs: {res.logs}" if res.logs else ""
            text = "\n  ".join(body)
            blocks.append(
                f"{res.status.value.upper()} {res.target} / {res.scenario}\n  {text}{logs}"
            )
    return "\n\n".join(blocks)


@contextlib.contextmanager
def previous_build(explicit: Path | None, formats: Sequence[str]) -> Iterator[Path]:
    """The previous release's packages: --previous, $QSS_PREVIOUS_DIST, else from its commit."""
    given = explicit or settings().previous_dist
    if given:
        yield given
        return
    yield build_previous(formats)


def build_previous(formats: Sequence[str]) -> Path:
    """The previous release's packages (smoke.previous: built from its commit, cached)."""

    return previous.packages(formats)


def check_dist(dist: Path, targets: Sequence[Target]) -> None:
    for family in sorted({t.family for t in targets}):
        if not package_files(dist, family):
            raise ConfigurationError(
                f"no .{family} packages in {dist}", hint="build them first: nox -s packages"
            )


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM (a CI timeout, `kill`) into KeyboardInterrupt, so containers are torn down."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def run_matrix(
    targets: Sequence[Target],
    scenarios: Sequence[Scenario],
    *,
    dist: Path,
    previous: Path | None,
    logs: Path,
    backend: Backend,
    jobs: int,
    keep: bool = False,
    report: Callable[[ScenarioResult], None] = lambda r: None,
) -> list[TargetRun]:
    """Every target's scenarios, `jobs` targets at a time, in the order of `targets`.

    A missing root is built by its target's first boot (RootfsCache locks per key), so on a
    cold cache the mmdebstrap runs overlap each other and the warm targets' scenarios. On
    Ctrl-C (or SIGTERM, see interrupt_on_sigterm) no further scenario starts, the running ones
    finish and their containers are torn down, then KeyboardInterrupt goes on up.
    """
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        return list(
            pool.map(
                lambda t: run_target(
                    t,
                    scenarios,
                    dist=dist,
                    previous=previous,
                    logs=logs,
                    backend=backend,
                    keep=keep,
                    report=report,
                    cancel=cancel,
                ),
                targets,
            )
        )
    except KeyboardInterrupt:
        log.warning("interrupted: finishing the current scenarios and tearing down")
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def report_line(res: ScenarioResult) -> None:
    """Log one finished scenario, as it finishes."""
    cpu = f" (CPU {res.cpu_seconds:.1f}s)" if res.cpu_seconds is not None else ""
    log.info("%-17s %-28s %-5s %5.1fs%s", res.target, res.scenario, res.status, res.seconds, cpu)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    require_root()
    interrupt_on_sigterm()
    targets = select_targets(args.target)
    scenarios = select_scenarios(args.scenario)
    dist: Path = args.dist.resolve()
    check_dist(dist, targets)
    # Beside the packages under test: a run of other packages (the rebuild lane's, at the same
    # time as the matrix) keeps its logs and report apart.
    logs = dist / "smoke-logs"
    if logs.exists():
        shutil.rmtree(logs)
    backend = make_backend(args.backend)
    with step(f"smoke: prune ({backend.name})"):
        backend.prune(list(TARGETS.values()))
    for target in targets:
        if target.note:
            log.info("%s: %s", target.name, target.note)
    started = time.monotonic()
    formats = sorted({t.family for t in targets})
    rounds: list[list[TargetRun]] = []
    with contextlib.ExitStack() as stack:
        with step("smoke: the previous release's packages"):
            previous = stack.enter_context(previous_build(args.previous, formats))
        for number in range(1, args.repeat + 1):
            which = f" (run {number}/{args.repeat})" if args.repeat > 1 else ""
            with step(f"smoke: {len(scenarios)} scenarios on {len(targets)} targets{which}"):
                runs = run_matrix(
                    targets,
                    scenarios,
                    dist=dist,
                    previous=previous,
                    # Each run's failures kept apart (dist/smoke-logs/run-2/TARGET/SCENARIO).
                    logs=logs / f"run-{number}" if args.repeat > 1 else logs,
                    backend=backend,
                    jobs=args.jobs,
                    keep=args.keep,
                    report=report_line,
                )
            record_timings(runs, backend.name, len(scenarios))
            rounds.append(runs)
    wall = time.monotonic() - started
    runs = [run_ for round_ in rounds for run_ in round_]
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "smoke-junit.xml").write_text(junit_xml(runs))
    print(render_table(runs) if args.repeat == 1 else render_repeats(rounds))
    for target in targets:
        if target.note:
            print(f"{target.name}: {target.note}")
    runs_note = f", {args.repeat} runs" if args.repeat > 1 else ""
    print(f"\nwall time {wall:.1f}s, jobs {args.jobs}, backend {backend.name}{runs_note};"
          f" JUnit: {dist / 'smoke-junit.xml'}")  # fmt: skip
    text, code = verdict(runs, backend.leftovers(), backend.name, args.require_targets)
    if text:
        print("\n" + text)
    return code


def record_timings(runs: Sequence[TargetRun], backend: str, scenarios: int) -> None:
    """Each target's time, for `nox -s bench -- --section suite` (qss_toolkit.timings), under
    the backend and the number of scenarios chosen: a subset's times stand apart."""
    for run_ in runs:
        if run_.skipped is None:
            ok = all(r.status in (Status.PASS, Status.SKIP) for r in run_.results)
            group = f"smoke {backend}, {scenarios} scenario{'' if scenarios == 1 else 's'}"
            timings.record(group, run_.target.name, run_.seconds, ok=ok)


def verdict(
    runs: Sequence[TargetRun], leftovers: Sequence[str], backend: str, require_targets: bool
) -> tuple[str, int]:
    """What the run ends with (skipped targets, failures, an incomplete teardown) and its exit
    code: 1 for a failure, a teardown that left something, or a skip under --require-targets."""
    blocks = []
    # dict.fromkeys: a target skipped in each of repeated runs is one line.
    skipped = list(
        dict.fromkeys(f"{r.target.name}: skipped: {r.skipped}" for r in runs if r.skipped)
    )
    if skipped:
        blocks.append("\n".join(skipped))
    failures = failure_report(runs)
    if failures:
        blocks.append(failures)
    if leftovers:
        blocks.append(f"teardown incomplete ({backend}):\n  " + "\n  ".join(leftovers))
    if skipped and require_targets:
        blocks.append(f"--require-targets: {len(skipped)} target(s) skipped")
    failed = bool(failures or leftovers or (skipped and require_targets))
    return "\n\n".join(blocks), 1 if failed else 0
