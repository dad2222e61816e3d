"""The status bench: how long `qmail-send-systemd status --json` takes on a queue of 10,000
messages, as an administrator runs it.

The headline is a queue that real qmail filled: in a booted container with notqmail and the
packages, 10,000 messages to a remote domain whose smarthost is unreachable (a closed port)
go through qmail-queue (inject.py); qmail-send preprocesses each into info/ and remote/ and
defers it, and the service keeps running (and retrying) while the whole command is timed:
Python's start-up, `systemctl show`, journalctl, the queue. qmail-qstat's time on the same
queue is beside it. The build host's figure (`--root`, the queue alone, no systemd calls) is
on a queue written in qmail's layout by qss_toolkit.smoke.fake_queue. Each figure is the
median of several runs with the queue in the page cache.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qss_toolkit import DIST
from qss_toolkit.bench.inject import inject
from qss_toolkit.errors import CheckFailed
from qss_toolkit.smoke import fake_queue
from qss_toolkit.smoke.engines.nspawn import booted
from qss_toolkit.smoke.scenarios.registry import UNIT, ScenarioContext
from qss_toolkit.smoke.targets import TARGETS

log = logging.getLogger("qss_toolkit")

DEFAULT_MESSAGES = 10_000
DEFAULT_TARGET = "debian-12"
RUNS = 5
# Remote mail routed to a closed port: each attempt is a quick deferral, never a hang.
REMOTE_DOMAIN = "remote.example"
ROUTE = f"{REMOTE_DOMAIN}:127.0.0.1:1"
# How many `delivery N: deferral:` lines this run of qmail-send has written.
DEFERRALS = (
    "journalctl -q -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -P InvocationID {unit})"
    " | grep -c '^delivery [0-9]*: deferral: '"
)


# Runs in the container or here. argv: runs command...; prints one JSON list of [wall seconds,
# CPU seconds (user + system of the command and its children, os.times())] per run.
TIMER = r"""
import json, os, subprocess, sys, time
runs = []
for _ in range(int(sys.argv[1])):
    before, start = os.times(), time.monotonic()
    subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall, after = time.monotonic() - start, os.times()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    runs.append([wall, cpu])
print(json.dumps(runs))
"""


@dataclass(frozen=True)
class Timing:
    """Runs of one command: wall and CPU seconds each (the first run, warming the page cache,
    left out)."""

    what: str
    wall: tuple[float, ...]
    cpu: tuple[float, ...]

    @classmethod
    def from_runs(cls, what: str, runs: list[list[float]]) -> Timing:
        kept = runs[1:]
        return cls(what, tuple(r[0] for r in kept), tuple(r[1] for r in kept))

    def row(self, messages: int) -> str:
        return (
            f"| {self.what} | {messages} | {len(self.wall)} "
            f"| {statistics.median(self.wall) * 1000:.0f} ms | {max(self.wall) * 1000:.0f} ms "
            f"| {statistics.median(self.cpu) * 1000:.0f} ms |"
        )

    def numbers(self) -> dict[str, Any]:
        return {
            "median_s": round(statistics.median(self.wall), 3),
            "cpu_median_s": round(statistics.median(self.cpu), 3),
            "runs": [round(t, 3) for t in self.wall],
            "cpu_runs": [round(t, 3) for t in self.cpu],
        }


def _run_timer(run: Callable[[list[str]], str], what: str, argv: list[str], runs: int) -> Timing:
    out = run(["python3", "-c", TIMER, str(runs + 1), *argv])
    return Timing.from_runs(what, json.loads(out.strip().splitlines()[-1]))


def measure_host(messages: int, runs: int) -> tuple[list[Timing], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="qss-status-bench-") as tmp:
        fake_queue.fill(Path(tmp), messages, time.time())
        argv = [sys.executable, "-m", "qmail_send_systemd.cli", "--root", tmp, "status", "--json"]

        def here(command: list[str]) -> str:
            command = [sys.executable, *command[1:]]
            return subprocess.run(command, capture_output=True, check=True, text=True).stdout

        timing = _run_timer(here, "build host, --root, fake queue (queue only)", argv, runs)
        report = json.loads(subprocess.run(argv, capture_output=True, check=False).stdout)
        return [timing], report


def _wait_deferred(ctx: ScenarioContext, messages: int) -> None:
    """Until qmail-send has preprocessed every message and deferred each once."""
    queue = "/var/qmail/queue"
    ctx.wait_for(
        f'test -z "$(find {queue}/todo {queue}/intd -type f | head -1)"'
        f" && test $({DEFERRALS.format(unit=UNIT)}) -ge {messages} || {{ sleep 2; false; }}",
        timeout=600 + messages * 0.1,
        message=f"qmail-send to preprocess and defer {messages} messages",
    )


# qmail_send_systemd.status's DELIVERY_LINES and SYSTEMD_LINES (the toolkit does not import
# the helper; tests/test_bench_status.py compares them).
STATUS_JOURNALCTL = [
    "journalctl", f"_SYSTEMD_UNIT={UNIT}", "-o", "short-unix", "-r", "-n", "5000", "--all",
    "--quiet", "--no-pager",
]  # fmt: skip
STATUS_SYSTEMD_LINES = [
    "journalctl", "-b", "_PID=1", f"UNIT={UNIT}", "-o", "export", "--output-fields=MESSAGE_ID",
    "--no-pager",
]  # fmt: skip
# What status does besides reading the queue, timed alone on the same root: the parts.
CONTEXT = (
    ("context: qmail-qstat", ["/var/qmail/bin/qmail-qstat"]),
    ("context: status's journalctl of qmail-send's lines", STATUS_JOURNALCTL),
    ("context: status's journalctl of systemd's lines", STATUS_SYSTEMD_LINES),
    ("context: status's systemctl show", ["systemctl", "show", "-p", "ActiveState", UNIT]),
    ("context: python3 -IS start-up", ["python3", "-IS", "-c", "pass"]),
)


def measure_container(
    target: str, messages: int, runs: int, dist: Path = DIST
) -> tuple[list[Timing], dict[str, Any]]:
    """`status --json` in a booted root whose queue real qmail filled, the service running."""
    with booted(TARGETS[target]) as container:
        ctx = ScenarioContext(target=TARGETS[target], container=container, dist=dist)
        ctx.install_qmail()
        ctx.install_packages()
        ctx.wait_ready()
        ctx.check_output(f"echo '{ROUTE}' > /var/qmail/control/smtproutes")
        seconds = inject(ctx, messages, f"r{{n}}@{REMOTE_DOMAIN}")
        log.info("status bench: %d messages queued in %.1f s", messages, seconds)
        _wait_deferred(ctx, messages)
        ctx.assert_active()
        argv = ["qmail-send-systemd", "status", "--json"]

        def there(command: list[str]) -> str:
            return ctx.check_output(command, timeout=600)

        where = f"{target} container, real qmail, service running, whole command"
        timings = [_run_timer(there, where, argv, runs)]
        # What an administrator types most: the text report (no json to write).
        text = f"{where}, without --json"
        timings.append(_run_timer(there, text, ["qmail-send-systemd", "status"], runs))
        timings += [_run_timer(there, what, command, runs) for what, command in CONTEXT]
        result = ctx.run(argv)
        if result.returncode != 1:  # every message deferred: status must say so
            raise CheckFailed(f"status exited {result.returncode} with {messages} deferred")
        return timings, json.loads(result.stdout)


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    messages = args.status_messages
    rows: list[str] = []
    data: dict[str, Any] = {}
    places: list[Callable[[], tuple[list[Timing], dict[str, Any]]]] = [
        functools.partial(
            measure_container, DEFAULT_TARGET, messages, RUNS, getattr(args, "dist", DIST)
        ),
        functools.partial(measure_host, messages, RUNS),
    ]
    for measure in places:
        timings, report = measure()
        counted = report["queue"]["messages"]
        if counted != messages:
            raise CheckFailed(f"status counted {counted} of {messages} messages ({timings[0]})")
        for timing in timings:
            rows.append(timing.row(messages))
            data[timing.what] = {"messages": messages, **timing.numbers()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = "\n".join(
        [
            "## Status on a large queue",
            "",
            "`qmail-send-systemd status --json` on 10,000 queued messages, page cache warm. In "
            "the container the queue is real qmail's (each message to one remote recipient, "
            "preprocessed and deferred by qmail-send, which keeps running) and the time covers "
            "Python's start-up, `systemctl show` and journalctl; the context rows time parts "
            "alone. On the build host it is a fake queue in qmail's layout (two remote "
            "recipients each) read with `--root`. CPU is user + system time of the command and "
            "its children, which a loaded machine inflates less than the wall time. Load "
            f"average after the runs ({os.cpu_count()} CPUs): {load}.",
            "",
            "| what | messages | runs | median | slowest | median CPU |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    return markdown, data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status-messages", type=int, default=DEFAULT_MESSAGES)
