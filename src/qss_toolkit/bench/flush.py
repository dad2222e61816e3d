"""The flush bench: how long our side takes from a network event to qmail-send's SIGALRM.

In a booted container with the packages and real qmail, a driver runs each dispatcher
hook exactly as its dispatcher does (NetworkManager-dispatcher: argv `INTERFACE ACTION` and
NM's environment; networkd-dispatcher: no arguments, the link's data in the environment) and
times two things per event: the hook's own run time (both dispatchers run their scripts one at
a time, so this is what every other hook waits), and hook start -> SIGALRM
delivered to qmail-send, which covers `systemctl --no-block reload`, the reload job,
ExecReload's qmail-tcpok and `kill -HUP`/`kill -ALRM $MAINPID`, which the helper (the main
process) passes on to qmail-send. The SIGALRM is seen by strace attached to qmail-send
(signal-delivery stops only; no system call is traced), so the figure is the signal's arrival
at qmail-send itself, whatever qmail does with it.

Beside it, the whole way a deferred mail takes after the flush, for both remote routes in the
same boot: hook start -> the message stored by the smarthost (aiosmtpd, smtp_tls.py), through
plain SMTP (qmail's own qmail-remote), through STARTTLS + AUTH with a password (ours, msmtp;
docs/submission.md) and through STARTTLS + XOAUTH2 with an OAuth 2.0 token (setup's device
flow against the smoke tests' provider, oauth_provider.py). Each sample queues a mail while
the smarthost is down, waits for its deferral, brings the smarthost up, then runs the hook.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qss_toolkit import DIST
from qss_toolkit.errors import CheckFailed
from qss_toolkit.smoke.engines.base import Container
from qss_toolkit.smoke.engines.nspawn import booted
from qss_toolkit.smoke.scenarios.fixtures.oauth_provider import (
    CLIENT_ID,
    OAUTH_DIR,
    Provider,
    oauth_provider,
)
from qss_toolkit.smoke.scenarios.fixtures.oauth_provider import SMTP_PORT as OAUTH_SMTP_PORT
from qss_toolkit.smoke.scenarios.fixtures.smtp_tls import (
    PKI_DIR,
    SERVER_NAME,
    TLS_DIR,
    USER,
    make_pki,
    tls_server,
)
from qss_toolkit.smoke.scenarios.oauth import _mechanism
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NETWORKD_HOOK,
    NETWORKD_PACKAGE,
    NM_HOOK,
    NM_PACKAGE,
    SUBMISSION_PACKAGE,
    UNIT,
    ScenarioContext,
)
from qss_toolkit.smoke.targets import TARGETS, Target

log = logging.getLogger("qss_toolkit")

DEFAULT_TARGET = "debian-12"
DEFAULT_EVENTS = 120
DEFAULT_DELIVERIES = 20  # per route: each sample waits for a deferral and a server restart
HOOK_TARGET_MS = 50.0
ALRM_TARGET_MS = 250.0


@dataclass(frozen=True)
class Event:
    """One dispatcher event: the hook it runs, with the arguments and environment it gets."""

    action: str
    hook: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


# NetworkManager-dispatcher(8): device actions name the interface; connectivity-change has an
# empty interface argument. CONNECTIVITY_STATE is set for every action. networkd-dispatcher
# (its run_hooks_for_state) passes no argument and sets what `networkctl status` said.
EVENTS: tuple[Event, ...] = (
    Event(
        "up",
        NM_HOOK,
        ("host0", "up"),
        (
            ("DEVICE_IFACE", "host0"),
            ("DEVICE_IP_IFACE", "host0"),
            ("CONNECTION_ID", "Wired connection 1"),
            ("CONNECTION_UUID", "6c3c1e6a-5d7e-4c4b-9c41-1f0e7b3c2a10"),
            ("NM_DISPATCHER_ACTION", "up"),
            ("CONNECTIVITY_STATE", "FULL"),
        ),
    ),
    Event(
        "connectivity-change",
        NM_HOOK,
        ("", "connectivity-change"),
        (("NM_DISPATCHER_ACTION", "connectivity-change"), ("CONNECTIVITY_STATE", "FULL")),
    ),
    Event(
        "routable",
        NETWORKD_HOOK,
        (),
        (
            ("IFACE", "host0"),
            ("STATE", "routable"),
            ("OperationalState", "routable"),
            ("AdministrativeState", "configured"),
            ("ADDR", "192.0.2.2"),
            ("IP_ADDRS", "192.0.2.2"),
            ("IP6_ADDRS", ""),
            ("ESSID", ""),
            ("json", '{"InterfaceName": "host0", "OperationalState": "routable"}'),
        ),
    ),
)
EVENT_LABELS = {
    "connectivity-change": "connectivity-change (FULL)",
    "routable": "networkd-dispatcher: routable",
}

# Runs in the container (python3 of the target, 3.9 at the oldest). argv: hook-argv-as-JSON
# count warmup env-as-JSON hook [pid] (default: qmail-send's, as pgrep finds it). Prints one
# JSON list.
DRIVER = r"""
import json, os, select, subprocess, sys, time

args, count, warmup = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
env.update(json.loads(sys.argv[4]))
HOOK = sys.argv[5]
if len(sys.argv) > 6:
    pid = int(sys.argv[6])
else:
    found = subprocess.run(["pgrep", "-x", "qmail-send"], capture_output=True, text=True)
    pid = int(found.stdout.split()[0]) if found.stdout.split() else 0
if pid <= 0:
    sys.exit("no qmail-send runs (pgrep -x qmail-send)")
tracer = subprocess.Popen(
    ["strace", "-qq", "-ttt", "-e", "trace=none", "-e", "signal=SIGALRM", "-p", str(pid)],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

def tracer_pid():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0

deadline = time.monotonic() + 10
while tracer_pid() != tracer.pid:
    if time.monotonic() > deadline or tracer.poll() is not None:
        sys.exit("strace could not attach to qmail-send (PID %d)" % pid)
    time.sleep(0.01)

buffered = b""
def next_alrm(since, timeout):
    # The first SIGALRM stamped at or after `since`: a late one from an earlier event is stale.
    global buffered
    end = time.monotonic() + timeout
    while True:
        while b"\n" not in buffered:
            left = end - time.monotonic()
            if left <= 0 or not select.select([tracer.stderr], [], [], left)[0]:
                return None
            chunk = os.read(tracer.stderr.fileno(), 4096)
            if not chunk:
                return None
            buffered += chunk
        line, buffered = buffered.split(b"\n", 1)
        if b"SIGALRM" in line and float(line.split()[0]) >= since:
            return float(line.split()[0])

samples = []
for i in range(warmup + count):
    start = time.time()
    code = subprocess.run([HOOK, *args], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    end = time.time()
    alrm = next_alrm(start, 5.0)
    if i >= warmup:
        samples.append({"hook": end - start, "alrm": None if alrm is None else alrm - start,
                        "code": code})
    time.sleep(0.05)  # NetworkManager's events are seconds apart; let each reload finish
tracer.terminate()
print(json.dumps(samples))
"""


# Runs in the container. argv: count smarthost-dir hook. Prints one JSON list of seconds (hook
# start -> the smarthost's N.eml), null where no mail arrived within 30 s.
DELIVERY_DRIVER = r"""
import json, os, subprocess, sys, time

count, server, hook = int(sys.argv[1]), sys.argv[2], sys.argv[3]
online, listening = os.path.join(server, "online"), os.path.join(server, "listening")
env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONNECTIVITY_STATE": "FULL",
       "DEVICE_IFACE": "host0", "NM_DISPATCHER_ACTION": "up"}

def wait(condition, timeout, step=0.005):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True

def stored():
    return sum(name.endswith(".eml") for name in os.listdir(server))

def journal(*args):
    return subprocess.run(["journalctl", "-q", "-o", "cat", *args], capture_output=True,
                          text=True).stdout

samples = []
for i in range(count):
    if os.path.exists(online):
        os.unlink(online)
    wait(lambda: not os.path.exists(listening), 15)
    cursor = [l for l in journal("-n0", "--show-cursor").splitlines() if "cursor" in l]
    cursor = cursor[0].split("cursor: ", 1)[1].strip() if cursor else ""
    subprocess.run(["/var/qmail/bin/sendmail", "-i", "bench@example.org"],
                   input=b"Subject: bench %d\n\nflush bench\n" % i, check=True)
    deferred = lambda: ": deferral: " in journal("-u", "qmail-send.service",
                                                 "--after-cursor=" + cursor)
    if not wait(deferred, 30, 0.1):
        sys.exit("the mail was not deferred while the smarthost was down")
    open(online, "w").close()
    wait(lambda: os.path.exists(listening), 15)
    before = stored()
    start = time.monotonic()
    subprocess.run([hook, "host0", "up"], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    arrived = wait(lambda: stored() > before, 30)
    samples.append(time.monotonic() - start if arrived else None)
print(json.dumps(samples))
"""

BENCH_PASSWORD_FILE = "/root/bench-password"  # noqa: S105 - a path
BENCH_PASSWORD = "bench password"  # noqa: S105 - the throwaway account of the bench's server
# The two remote routes: the name in the table, and setup's arguments for it.
ROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # qmail's own qmail-remote asks DNS alone, never /etc/hosts: the server by its address.
    ("plain SMTP (qmail-remote)", ("--smarthost", "127.0.0.1:25")),
    (
        "STARTTLS + AUTH (msmtp)",
        (
            *("--smarthost", f"{SERVER_NAME}:587", "--tls", "starttls", "--user", USER),
            *("--password-file", BENCH_PASSWORD_FILE),
            *("--tls-trust-file", f"{PKI_DIR}/trusted-ca.pem"),
        ),
    ),
)


@dataclass(frozen=True)
class DeliveryStats:
    """Hook start -> the deferred mail stored by the smarthost, through one route."""

    target: str
    route: str
    ms: tuple[float, ...]
    lost: int

    @classmethod
    def from_samples(cls, target: str, route: str, samples: list[float | None]) -> DeliveryStats:
        ms = tuple(s * 1000 for s in samples if s is not None)
        return cls(target, route, ms, len(samples) - len(ms))


# Parts of the path timed alone, so the table can be read: what one systemctl call costs on this
# machine (the hook makes two), and what qmail-tcpok costs in ExecReload.
CONTEXT_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("one `systemctl is-active` call", ("systemctl", "is-active", "--quiet", UNIT)),
    ("qmail-tcpok", ("/var/qmail/bin/qmail-tcpok",)),
)
CONTEXT_RUNS = 30
TIMER = r"""
import json, subprocess, sys, time
runs = []
for _ in range(int(sys.argv[1])):
    start = time.monotonic()
    subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    runs.append(time.monotonic() - start)
print(json.dumps(runs))
"""


@dataclass(frozen=True)
class ContextTiming:
    target: str
    what: str
    ms: tuple[float, ...]


@dataclass(frozen=True)
class FlushRun:
    """Everything one bench run measured: the events, the context timings, the machine's load."""

    stats: tuple[FlushStats, ...]
    context: tuple[ContextTiming, ...]
    load: tuple[tuple[str, str, str], ...]  # (target, load average before, after)
    deliveries: tuple[DeliveryStats, ...] = ()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class FlushStats:
    target: str
    action: str
    events: int
    hook_ms: tuple[float, ...]
    alrm_ms: tuple[float, ...]  # only the events whose SIGALRM arrived
    lost: int  # events after which no SIGALRM arrived within 5 s
    failed: int  # hook runs that exited non-zero

    @classmethod
    def from_samples(cls, target: str, action: str, samples: list[dict[str, object]]) -> FlushStats:
        hook = tuple(float(str(s["hook"])) * 1000 for s in samples)
        alrm = tuple(float(str(s["alrm"])) * 1000 for s in samples if s["alrm"] is not None)
        return cls(
            target=target,
            action=action,
            events=len(samples),
            hook_ms=hook,
            alrm_ms=alrm,
            lost=len(samples) - len(alrm),
            failed=sum(1 for s in samples if s["code"] != 0),
        )

    def ok(self) -> bool:
        return (
            not self.lost
            and not self.failed
            and bool(self.alrm_ms)
            and percentile(self.hook_ms, 95) < HOOK_TARGET_MS
            and percentile(self.alrm_ms, 95) < ALRM_TARGET_MS
        )


def _cell(values: Sequence[float]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return f"{statistics.median(values):.1f} ms", f"{percentile(values, 95):.1f} ms"


def render(
    stats: Sequence[FlushStats],
    context: Sequence[ContextTiming] = (),
    deliveries: Sequence[DeliveryStats] = (),
) -> str:
    """The flush table (Markdown), one row per measured path; the verdict is on p95."""
    lines = [
        "| target | event | measured | events | median | p95 | target | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in stats:
        event = EVENT_LABELS.get(s.action, s.action)
        for what, values, limit in (
            ("hook run time", s.hook_ms, HOOK_TARGET_MS),
            ("hook start -> SIGALRM at qmail-send", s.alrm_ms, ALRM_TARGET_MS),
        ):
            median, p95 = _cell(values)
            verdict = "ok" if values and percentile(values, 95) < limit else "MISSED"
            if what.startswith("hook start") and s.lost:
                verdict = f"MISSED ({s.lost} without SIGALRM)"
            if what == "hook run time" and s.failed:
                verdict = f"MISSED ({s.failed} hook runs failed)"
            lines.append(
                f"| {s.target} | {event} | {what} | {s.events} | {median} | {p95} "
                f"| < {limit:.0f} ms | {verdict} |"
            )
    for d in deliveries:
        median, p95 = _cell(d.ms)
        verdict = f"MISSED ({d.lost} not delivered)" if d.lost or not d.ms else "ok"
        lines.append(
            f"| {d.target} | up | hook start -> mail at the smarthost, {d.route} "
            f"| {len(d.ms) + d.lost} | {median} | {p95} | | {verdict} |"
        )
    for c in context:
        median, p95 = _cell(c.ms)
        lines.append(f"| {c.target} | - | context: {c.what} | {len(c.ms)} | {median} | {p95} | | |")
    return "\n".join(lines)


def prepare(ctx: ScenarioContext) -> None:
    """Packages, real qmail, a running qmail-send, and strace to watch its signals."""
    ctx.install_qmail()
    ctx.install_packages([MAIN, NM_PACKAGE, NETWORKD_PACKAGE])
    ctx.check_output(["systemctl", "start", UNIT])
    ctx.wait_ready()  # a SIGALRM before qmail-send's handlers are in place would kill it
    if ctx.run(["sh", "-c", "command -v strace"]).returncode != 0:
        ctx.check_output(
            "DEBIAN_FRONTEND=noninteractive apt-get update -q"
            " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace",
            timeout=600,
        )


def measure_deliveries(ctx: ScenarioContext, count: int) -> list[DeliveryStats]:
    """Both routes, one after the other, against one smarthost in the booted container."""
    ctx.install_packages([MAIN, NM_PACKAGE, SUBMISSION_PACKAGE])
    ctx.wait_ready()
    make_pki(ctx)
    ctx.run_expect([0], f"umask 077; cat > {BENCH_PASSWORD_FILE}", input=BENCH_PASSWORD + "\n")
    found = []
    with tls_server(ctx, users={USER: BENCH_PASSWORD}) as server:
        server.go_online()
        for route, args in ROUTES:
            ctx.check_output(["qmail-send-systemd", "setup", *args])
            ctx.wait_ready()  # --tls (or its removal) restarted qmail-send
            found.append(_deliveries(ctx, route, count, TLS_DIR))
    found.append(_measure_oauth(ctx, count))
    ctx.check_output(["qmail-send-systemd", "setup", *ROUTES[0][1]])
    return found


def _measure_oauth(ctx: ScenarioContext, count: int) -> DeliveryStats:
    """The same route with an OAuth 2.0 login (issue 25): setup's device flow against the
    smoke tests' provider, then each deferred mail flushed through msmtp with a token."""
    mechanism = _mechanism(ctx)  # XOAUTH2, or OAUTHBEARER where msmtp lacks it
    route = f"STARTTLS + {mechanism.upper()} (msmtp, OAuth 2.0)"
    with oauth_provider(ctx, toggle=True):
        ctx.check_output(
            ["qmail-send-systemd", "setup", "--smarthost", f"{SERVER_NAME}:{OAUTH_SMTP_PORT}",
             "--tls", "starttls", "--user", USER, "--auth", mechanism,
             "--oauth-provider", "microsoft", "--oauth-client-id", CLIENT_ID,
             *Provider.settings(), "--tls-trust-file", f"{PKI_DIR}/trusted-ca.pem"],
            timeout=120,
        )  # fmt: skip
        ctx.wait_ready()
        stats = _deliveries(ctx, route, count, OAUTH_DIR)
    ctx.run(["rm", "-rf", "/var/lib/qmail-send-systemd/submission"])  # the grant: no secret kept
    return stats


def _deliveries(ctx: ScenarioContext, route: str, count: int, server_dir: str) -> DeliveryStats:
    """`count` deferred mails flushed through the route set up now, to the smarthost whose
    files are in `server_dir` (DELIVERY_DRIVER in the container)."""
    log.info("flush bench: %s, %d deliveries through %s", ctx.target.name, count, route)
    argv = ["python3", "-c", DELIVERY_DRIVER, str(count), server_dir, NM_HOOK]
    result = ctx.container.run(argv, check=False, timeout=120 + count * 40)
    if result.returncode != 0:
        raise CheckFailed(
            f"delivery bench failed on {ctx.target.name} ({route}): "
            + (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
    samples = json.loads(result.stdout.strip().splitlines()[-1])
    return DeliveryStats.from_samples(ctx.target.name, route, samples)


def measure(container: Container, target: Target, event: Event, events: int) -> FlushStats:
    env = json.dumps(dict(event.env))
    hook_argv = json.dumps(list(event.argv))
    argv = ["python3", "-c", DRIVER, hook_argv, str(events), "3", env, event.hook]
    result = container.run(argv, check=False, timeout=60 + events * 6)
    if result.returncode != 0:
        raise CheckFailed(
            f"flush bench driver failed on {target.name} ({event.action}): "
            + (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
    samples = json.loads(result.stdout.strip().splitlines()[-1])
    return FlushStats.from_samples(target.name, event.action, samples)


def time_commands(container: Container, target: Target) -> list[ContextTiming]:
    timings = []
    for what, argv in CONTEXT_COMMANDS:
        result = container.run(
            ["python3", "-c", TIMER, str(CONTEXT_RUNS), *argv], check=False, timeout=120
        )
        if result.returncode == 0:
            ms = tuple(v * 1000 for v in json.loads(result.stdout.strip().splitlines()[-1]))
            timings.append(ContextTiming(target.name, what, ms))
    return timings


def _loadavg(container: Container) -> str:
    return " ".join(container.run(["cat", "/proc/loadavg"]).stdout.split()[:3])


def run_flush_bench(
    targets: Sequence[Target],
    *,
    dist: Path = DIST,
    events: int = DEFAULT_EVENTS,
    deliveries: int = DEFAULT_DELIVERIES,
) -> FlushRun:
    """Boot each target, prepare it, and measure every event kind `events` times, then each
    remote route `deliveries` times."""
    stats: list[FlushStats] = []
    context: list[ContextTiming] = []
    load: list[tuple[str, str, str]] = []
    delivered: list[DeliveryStats] = []
    for target in targets:
        with booted(target) as container:
            ctx = ScenarioContext(target=target, container=container, dist=dist)
            prepare(ctx)
            before = _loadavg(container)
            for event in EVENTS:
                log.info("flush bench: %s, %d x %s", target.name, events, event.action)
                stats.append(measure(container, target, event, events))
            context += time_commands(container, target)
            if deliveries > 0:
                delivered += measure_deliveries(ctx, deliveries)
            load.append((target.name, before, _loadavg(container)))
    return FlushRun(tuple(stats), tuple(context), tuple(load), tuple(delivered))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flush-target",
        action="append",
        choices=list(TARGETS),
        help=f"target(s) for the flush bench (default: {DEFAULT_TARGET})",
    )
    parser.add_argument("--flush-events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument(
        "--flush-deliveries",
        type=int,
        default=DEFAULT_DELIVERIES,
        help="deferred mails flushed through each remote route (0: none)",
    )


def numbers(run: FlushRun) -> dict[str, Any]:
    """The raw figures behind the table (milliseconds), for dist/bench.json."""
    data: dict[str, Any] = {}
    for c in run.context:
        data.setdefault(c.target, {})[f"context: {c.what}"] = {
            "median": round(statistics.median(c.ms), 2),
            "p95": round(percentile(c.ms, 95), 2),
        }
    for target, before, after in run.load:
        data.setdefault(target, {})["loadavg"] = {"before": before, "after": after}
    for s in run.stats:
        row: dict[str, Any] = {"events": s.events, "lost": s.lost, "failed": s.failed}
        for key, values in (("hook_ms", s.hook_ms), ("alrm_ms", s.alrm_ms)):
            if values:
                row[key] = {
                    "median": round(statistics.median(values), 2),
                    "p95": round(percentile(values, 95), 2),
                    "samples": [round(v, 2) for v in values],
                }
        row["ok"] = s.ok()
        data.setdefault(s.target, {})[s.action] = row
    for d in run.deliveries:
        entry: dict[str, Any] = {"samples": [round(v, 2) for v in d.ms], "lost": d.lost}
        if d.ms:
            entry["median"] = round(statistics.median(d.ms), 2)
            entry["p95"] = round(percentile(d.ms, 95), 2)
        data.setdefault(d.target, {}).setdefault("delivery_ms", {})[d.route] = entry
    return data


def measure_section(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The bench's "flush" section: Markdown (heading, what is measured, table) and numbers."""
    names = args.flush_target or [DEFAULT_TARGET]
    if args.flush_events < 100:
        log.warning("flush bench: %d events per kind (the target is >= 100)", args.flush_events)
    run = run_flush_bench(
        [TARGETS[n] for n in names],
        dist=getattr(args, "dist", DIST),
        events=args.flush_events,
        deliveries=getattr(args, "flush_deliveries", DEFAULT_DELIVERIES),
    )
    loads = "; ".join(f"{t}: {a} before, {b} after" for t, a, b in run.load)
    markdown = "\n".join(
        [
            "## Flush on reconnect",
            "",
            "Network event -> dispatcher hook -> `systemctl --no-block reload` -> "
            "ExecReload (qmail-tcpok, `kill -HUP`, `kill -ALRM`, passed on by the helper) -> "
            "SIGALRM at qmail-send (seen by strace), "
            "in a booted container with real qmail; each hook is run as its dispatcher "
            "(NetworkManager-dispatcher, networkd-dispatcher) runs it. Verdicts are on p95. "
            "The context rows time parts of the path alone. The mail rows follow a deferred mail "
            "from the hook's start to the smarthost (aiosmtpd in the container) through each "
            "remote route, same boot. Load average (1/5/15 min) on "
            f"{os.cpu_count()} CPUs: {loads}.",
            "",
            render(run.stats, run.context, run.deliveries),
        ]
    )
    return markdown, numbers(run)


def section(args: argparse.Namespace) -> str:
    return measure_section(args)[0]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qss_toolkit.bench.flush")
    parser.add_argument("--dist", type=Path, default=DIST)
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    print(section(args))
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
