"""The status bench: how long `qmail-send-systemd status --json` takes on a queue of 10,000
messages (qss_toolkit.smoke.fake_queue, in qmail's layout), as an administrator runs it.

Two places: in a booted container with the packages (the whole command: Python start-up,
`systemctl show`, journalctl, the queue; qmail-send stopped so that it leaves the fake
messages alone), and on the build host with `--root` (the queue alone, no systemd calls).
Each figure is the median of several runs with the queue in the page cache.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qss_toolkit import DIST, PROJECT_ROOT
from qss_toolkit.bench import flush
from qss_toolkit.errors import CheckFailed
from qss_toolkit.smoke import fake_queue
from qss_toolkit.smoke.engines.nspawn import booted
from qss_toolkit.smoke.scenarios.registry import UNIT, ScenarioContext
from qss_toolkit.smoke.targets import TARGETS

DEFAULT_MESSAGES = 10_000
DEFAULT_TARGET = "debian-12"
RUNS = 5
FILL = "/srv/qss/fake_queue.py"
# In the container: fill /var/qmail/queue with N messages (argv: N), as fake_queue.fill does.
FILLER = (
    "import sys, time; from pathlib import Path; sys.path.insert(0, '/srv/qss');"
    " import fake_queue; fake_queue.fill(Path('/'), int(sys.argv[1]), time.time())"
)
Measured = tuple[list[float], dict[str, Any]]  # the run times, and a run's report


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


def measure_container(target: str, messages: int, runs: int) -> Measured:
    with booted(TARGETS[target]) as container:
        ctx = ScenarioContext(target=TARGETS[target], container=container, dist=DIST)
        ctx.install_qmail()
        ctx.install_packages()
        ctx.check_output(["systemctl", "stop", UNIT])
        container.copy_into(PROJECT_ROOT / "src/qss_toolkit/smoke/fake_queue.py", FILL)
        ctx.check_output(["python3", "-c", FILLER, str(messages)], timeout=600)
        argv = ["qmail-send-systemd", "status", "--json"]
        timer = ["python3", "-c", flush.TIMER, str(runs + 1), *argv]
        times = json.loads(ctx.check_output(timer, timeout=600).strip().splitlines()[-1])
        result = ctx.run(argv)
        if result.returncode != 1:  # the service is stopped: status must say so
            raise CheckFailed(f"status exited {result.returncode} with qmail-send stopped")
        return [float(t) for t in times[1:]], json.loads(result.stdout)


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    messages = args.status_messages
    rows: list[str] = []
    data: dict[str, Any] = {}
    places: list[tuple[str, Callable[[], Measured]]] = [
        (
            f"{DEFAULT_TARGET} container, whole command",
            functools.partial(measure_container, DEFAULT_TARGET, messages, RUNS),
        ),
        ("build host, --root (queue only)", functools.partial(measure_host, messages, RUNS)),
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
    markdown = "\n".join(
        [
            "## Status on a large queue",
            "",
            "`qmail-send-systemd status --json` on a queue of fake messages in qmail's layout "
            "(two remote recipients each), page cache warm. The container run includes Python's "
            "start-up, `systemctl show` and journalctl.",
            "",
            "| where | messages | runs | median | slowest |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    return markdown, data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status-messages", type=int, default=DEFAULT_MESSAGES)
