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
from pathlib import Path
from typing import Any

from qss_toolkit import DIST
from qss_toolkit.bench import flush
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
Measured = tuple[list[float], dict[str, Any]]  # the run times, and a run's report
# How many `delivery N: deferral:` lines this run of qmail-send has written.
DEFERRALS = (
    "journalctl -q -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -P InvocationID {unit})"
    " | grep -c '^delivery [0-9]*: deferral: '"
)


def _timed(argv: list[str], runs: int) -> Measured:
    """Run `argv` `runs` times (plus one to warm the page cache); the times and the report."""
    subprocess.run(argv, capture_output=True, check=False)
    times = []
    for _ in range(runs):
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, check=False, text=True)
        times.append(time.monotonic() - started)
    return times, json.loads(done.stdout)


def measure_host(messages: int, runs: int) -> Measured:
    with tempfile.TemporaryDirectory(prefix="qss-status-bench-") as tmp:
        fake_queue.fill(Path(tmp), messages, time.time())
        argv = [sys.executable, "-m", "qmail_send_systemd.cli", "--root", tmp, "status", "--json"]
        return _timed(argv, runs)


def _wait_deferred(ctx: ScenarioContext, messages: int) -> None:
    """Until qmail-send has preprocessed every message and deferred each once."""
    queue = "/var/qmail/queue"
    ctx.wait_for(
        f'test -z "$(find {queue}/todo {queue}/intd -type f | head -1)"'
        f" && test $({DEFERRALS.format(unit=UNIT)}) -ge {messages} || {{ sleep 2; false; }}",
        timeout=600 + messages * 0.1,
        message=f"qmail-send to preprocess and defer {messages} messages",
    )


def measure_container(target: str, messages: int, runs: int, dist: Path = DIST) -> Measured:
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
        timer = ["python3", "-c", flush.TIMER, str(runs + 1), *argv]
        times = json.loads(ctx.check_output(timer, timeout=600).strip().splitlines()[-1])
        qstat = ["python3", "-c", flush.TIMER, str(runs + 1), "/var/qmail/bin/qmail-qstat"]
        qstat_times = json.loads(ctx.check_output(qstat, timeout=600).strip().splitlines()[-1])
        result = ctx.run(argv)
        if result.returncode != 1:  # every message deferred: status must say so
            raise CheckFailed(f"status exited {result.returncode} with {messages} deferred")
        report = json.loads(result.stdout)
        report["qmail-qstat"] = [float(t) for t in qstat_times[1:]]
        return [float(t) for t in times[1:]], report


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    messages = args.status_messages
    rows: list[str] = []
    data: dict[str, Any] = {}
    places: list[tuple[str, Callable[[], Measured]]] = [
        (
            f"{DEFAULT_TARGET} container, real qmail, service running, whole command",
            functools.partial(
                measure_container, DEFAULT_TARGET, messages, RUNS, getattr(args, "dist", DIST)
            ),
        ),
        (
            "build host, --root, fake queue (queue only)",
            functools.partial(measure_host, messages, RUNS),
        ),
    ]
    for where, measure in places:
        times, report = measure()
        counted = report["queue"]["messages"]
        if counted != messages:
            raise CheckFailed(f"status counted {counted} of {messages} messages ({where})")
        median = statistics.median(times)
        rows.append(
            f"| {where} | {messages} | {len(times)} | {median * 1000:.0f} ms "
            f"| {max(times) * 1000:.0f} ms |"
        )
        data[where] = {
            "messages": messages,
            "median_s": round(median, 3),
            "runs": [round(t, 3) for t in times],
        }
        qstat = report.get("qmail-qstat")
        if qstat:
            rows.append(
                f"| {where.split(',')[0]}, qmail-qstat | {messages} | {len(qstat)} "
                f"| {statistics.median(qstat) * 1000:.0f} ms | {max(qstat) * 1000:.0f} ms |"
            )
            data[where]["qmail-qstat"] = {
                "median_s": round(statistics.median(qstat), 3),
                "runs": [round(t, 3) for t in qstat],
            }
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = "\n".join(
        [
            "## Status on a large queue",
            "",
            "`qmail-send-systemd status --json` on 10,000 queued messages, page cache warm. In "
            "the container the queue is real qmail's (each message to one remote recipient, "
            "preprocessed and deferred by qmail-send, which keeps running) and the time covers "
            "Python's start-up, `systemctl show` and journalctl; on the build host it is a "
            "fake queue in qmail's layout (two remote recipients each) read with `--root`. "
            f"Load average after the runs ({os.cpu_count()} CPUs): {load}.",
            "",
            "| where | messages | runs | median | slowest |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    return markdown, data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status-messages", type=int, default=DEFAULT_MESSAGES)
