"""The relay bench: what the helper costs as the service's main process, on real qmail.

The helper (`qmail-send-systemd run`, the unit's MainPID) copies every line qmail-send writes
to the journal (start.py). In a booted container with notqmail and the packages, 10,000
messages for local delivery into a Maildir (~alias/.qmail-bench-default) go through
qmail-queue (inject.py) while the service runs; once all are delivered, the CPU time each
process used meanwhile (utime + stime of /proc/PID/stat: its own, not its children's) and its
resident memory are read for the helper and for qmail-send. The aim (issue 22): the helper at
most 10% of qmail-send's CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qss_toolkit import DIST
from qss_toolkit.bench.inject import inject
from qss_toolkit.errors import CheckFailed
from qss_toolkit.smoke.engines.nspawn import booted
from qss_toolkit.smoke.qmail_root import ME
from qss_toolkit.smoke.scenarios.registry import ScenarioContext
from qss_toolkit.smoke.targets import TARGETS

log = logging.getLogger("qss_toolkit")

DEFAULT_TARGET = "debian-12"
DEFAULT_MESSAGES = 10_000
AIM = 0.10  # the helper's CPU over qmail-send's
ALIAS_HOME = "/var/qmail/alias"
MAILDIR = f"{ALIAS_HOME}/bench"
# proc(5): after the command name in parentheses, utime and stime are the 12th and 13th
# fields (the 14th and 15th of the line); cutime and cstime, the children's, are not counted.
UTIME_AFTER_COMM = 11


@dataclass(frozen=True)
class Usage:
    """One process's CPU time (clock ticks) and resident set (kB) at one moment."""

    ticks: int
    rss_kb: int


def cpu_ticks(stat: str) -> int:
    """utime + stime from a /proc/PID/stat line: the process's own CPU time, in clock ticks.
    The command name may hold spaces and parentheses: the fields start after its last ')'."""
    head, paren, rest = stat.rpartition(")")
    fields = rest.split()
    if not paren or not head or len(fields) <= UTIME_AFTER_COMM + 1:
        raise CheckFailed(f"not a /proc/PID/stat line: {stat[:80]!r}")
    return int(fields[UTIME_AFTER_COMM]) + int(fields[UTIME_AFTER_COMM + 1])


def rss_kb(status: str) -> int:
    """VmRSS from /proc/PID/status, in kB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise CheckFailed("no VmRSS line in /proc/PID/status (a kernel thread or a zombie?)")


@dataclass(frozen=True)
class RelayCost:
    """The helper's and qmail-send's CPU seconds over one injection and its deliveries."""

    messages: int
    helper_cpu_s: float
    qmail_send_cpu_s: float
    helper_rss_kb: int
    qmail_send_rss_kb: int
    seconds: float  # from the injection's start to the last delivery

    @property
    def ratio(self) -> float:
        return self.helper_cpu_s / self.qmail_send_cpu_s if self.qmail_send_cpu_s else float("inf")

    def ok(self) -> bool:
        return self.ratio <= AIM


def cost(
    before: dict[str, Usage], after: dict[str, Usage], hertz: int, messages: int, seconds: float
) -> RelayCost:
    """The CPU used between two readings of "helper" and "qmail-send", and their last RSS."""
    if hertz <= 0:
        raise CheckFailed(f"clock ticks per second: {hertz}")
    used = {name: (after[name].ticks - before[name].ticks) / hertz for name in after}
    if min(used.values()) < 0:
        raise CheckFailed(f"CPU time went back ({before} -> {after}): a process was replaced")
    return RelayCost(
        messages,
        used["helper"],
        used["qmail-send"],
        after["helper"].rss_kb,
        after["qmail-send"].rss_kb,
        seconds,
    )


def render(costs: list[tuple[str, RelayCost]]) -> str:
    lines = [
        "| where | messages | helper CPU | qmail-send CPU | helper/qmail-send | aim "
        "| helper RSS | qmail-send RSS | injection to last delivery |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for where, c in costs:
        verdict = "ok" if c.ok() else "MISSED"
        lines.append(
            f"| {where} | {c.messages} | {c.helper_cpu_s:.2f} s | {c.qmail_send_cpu_s:.2f} s "
            f"| {c.ratio:.1%} | <= {AIM:.0%} ({verdict}) | {c.helper_rss_kb / 1024:.1f} MB "
            f"| {c.qmail_send_rss_kb / 1024:.1f} MB | {c.seconds:.1f} s |"
        )
    return "\n".join(lines)


def _usage(ctx: ScenarioContext, pids: dict[str, str]) -> dict[str, Usage]:
    found = {}
    for name, pid in pids.items():
        stat = ctx.check_output(["cat", f"/proc/{pid}/stat"])
        status = ctx.check_output(["cat", f"/proc/{pid}/status"])
        found[name] = Usage(cpu_ticks(stat), rss_kb(status))
    return found


def measure_relay(target: str, messages: int, dist: Path = DIST) -> RelayCost:
    with booted(TARGETS[target]) as container:
        ctx = ScenarioContext(target=TARGETS[target], container=container, dist=dist)
        ctx.install_qmail()
        ctx.install_packages()
        ctx.wait_ready()
        ctx.check_output(
            f"rm -rf {MAILDIR} && runuser -u alias -- /var/qmail/bin/maildirmake {MAILDIR}"
            f" && echo './bench/' > {ALIAS_HOME}/.qmail-bench-default"
            f" && chown alias {ALIAS_HOME}/.qmail-bench-default"
            f" && chmod 644 {ALIAS_HOME}/.qmail-bench-default"
        )
        pids = {"helper": ctx.show("MainPID"), "qmail-send": ctx.qmail_send_pid()}
        hertz = int(ctx.check_output(["getconf", "CLK_TCK"]).strip())
        before = _usage(ctx, pids)
        started = ctx.host.monotonic()
        injected = inject(ctx, messages, f"bench-{{n}}@{ME}")
        log.info("relay bench: %d messages queued in %.1f s", messages, injected)
        ctx.wait_for(
            f"test $(ls -f {MAILDIR}/new | wc -l) -ge {messages + 2} || {{ sleep 1; false; }}",
            timeout=900 + messages * 0.2,
            message=f"{messages} deliveries into {MAILDIR}",
        )
        seconds = ctx.host.monotonic() - started
        ctx.host.sleep(1)  # the helper's last gather and write
        after = _usage(ctx, pids)
        if ctx.show("MainPID") != pids["helper"]:
            raise CheckFailed("the service restarted during the relay bench")
        return cost(before, after, hertz, messages, seconds)


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    messages = args.relay_messages
    where = f"{DEFAULT_TARGET} container, real qmail, local Maildir delivery"
    result = measure_relay(DEFAULT_TARGET, messages, getattr(args, "dist", DIST))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = "\n".join(
        [
            "## The helper's cost as qmail-send's log relay",
            "",
            f"{messages} messages injected through qmail-queue and delivered into a Maildir "
            "by real qmail, the service running; CPU is each process's own utime + stime "
            "(/proc/PID/stat) from before the injection to the last delivery, RSS at the end. "
            f"Load average after the run ({os.cpu_count()} CPUs): {load}.",
            "",
            render([(where, result)]),
        ]
    )
    data = {
        where: {
            "messages": result.messages,
            "helper_cpu_s": round(result.helper_cpu_s, 2),
            "qmail_send_cpu_s": round(result.qmail_send_cpu_s, 2),
            "ratio": round(result.ratio, 4),
            "helper_rss_kb": result.helper_rss_kb,
            "qmail_send_rss_kb": result.qmail_send_rss_kb,
            "seconds": round(result.seconds, 1),
        }
    }
    return markdown, data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--relay-messages", type=int, default=DEFAULT_MESSAGES)
