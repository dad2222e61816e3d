"""`qmail-send-systemd status` in a booted root with real qmail: what it says about a
healthy relay, about mail that waits (deferred, then over an hour old), and about a stopped
service, each checked against what systemd and the queue directory say themselves."""

from __future__ import annotations

import json
import shlex

from qss_toolkit.smoke.scenarios.lifecycle import _queue_remote_messages
from qss_toolkit.smoke.scenarios.registry import (
    QUEUE,
    UNIT,
    ScenarioContext,
    ScenarioFailed,
    scenario,
)

SMARTHOST = "smarthost.example.net"
SMTPROUTES = "/var/qmail/control/smtproutes"
# An ordinary user: the queue's info/, local/ and remote/ and the system journal are closed.
AS_NOBODY = "setpriv --reuid=nobody --regid=nogroup --clear-groups"


# Modules every `status` imports: each must come from bytecode, never be compiled at the start.
STARTED_MODULES = ("cli", "status", "systemd")


def _starts_from_bytecode(ctx: ScenarioContext) -> None:
    """`status`, as nobody, reads the helper's modules from the bytecode that the package's
    scripts compiled (Debian's postinst into __pycache__, RPM's %post into a cache): none is
    compiled at the start (20 ms of the 80 that status takes on 10,000 messages). Python's -v
    names where each code object came from: a .pyc, or the .py it compiled."""
    err = ctx.run_expect(
        [1], f"{AS_NOBODY} python3 -ISv /usr/sbin/qmail-send-systemd status"
    ).stderr
    ours = [line for line in err.splitlines() if line.startswith("# code object from ")]
    ours = [line for line in ours if "qmail_send_systemd" in line]
    for module in STARTED_MODULES:
        ctx.expect(
            any(f"/{module}.cpython-" in line and line.endswith(".pyc'") for line in ours),
            f"as nobody, status compiled {module}.py at its start:\n" + "\n".join(ours),
        )


def _status(ctx: ScenarioContext, code: int, prefix: str = "") -> dict[str, object]:
    """`qmail-send-systemd status --json`, which must exit `code`, as a dict."""
    result = ctx.run_expect([code], f"{prefix} qmail-send-systemd status --json".strip())
    try:
        report = json.loads(result.stdout)
    except ValueError as exc:
        raise ScenarioFailed(f"status --json printed no JSON: {result.stdout!r}") from exc
    ctx.expect(isinstance(report, dict), f"status --json printed {report!r}")
    ctx.expect("Traceback" not in result.stderr, f"status printed a traceback:\n{result.stderr}")
    assert isinstance(report, dict)
    return report


def _problems(report: dict[str, object]) -> list[str]:
    found = report["attention"]
    assert isinstance(found, list)
    return [str(p["problem"]) for p in found]


def _part(report: dict[str, object], name: str) -> dict[str, object]:
    part = report[name]
    assert isinstance(part, dict), f"{name}: {part!r}"
    return part


def _files(ctx: ScenarioContext, directory: str) -> int:
    """How many message files `find` sees under queue/DIRECTORY (qmail-qstat's count)."""
    return int(ctx.check_output(f"find {QUEUE}/{directory} -type f | wc -l").strip())


def _a_restart_is_one_more_start(ctx: ScenarioContext, healthy: dict[str, object]) -> None:
    """Starts since boot come from systemd's own lines in the journal (NRestarts resets at
    every manual start): a restart by hand is one more, and the text says the same count."""
    starts = _part(healthy, "journal")["since_boot"]
    assert isinstance(starts, dict)
    ctx.check_output(f"systemctl restart {UNIT}")
    ctx.wait_ready()
    again = _part(_status(ctx, 0), "journal")
    ctx.expect(
        again["since_boot"] == {**starts, "starts": int(starts["starts"]) + 1},
        f"a restart by hand: since boot {starts}, then {again['since_boot']}",
    )
    ctx.expect(
        f"started {int(starts['starts']) + 1} times since boot"
        in ctx.run("qmail-send-systemd status").stdout,
        "status's text does not say the starts since boot",
    )


def _a_hup_to_every_process_is_named(ctx: ScenarioContext) -> None:
    """`systemctl kill -s HUP` (issue 22, item 8) kills qmail-lspawn, -rspawn and -clean;
    qmail-send dies of it and systemd restarts it: status's note says so, with the command
    that is safe, from qmail-send's own alert in this boot's journal."""
    before = int(ctx.show("NRestarts"))
    ctx.check_output(f"systemctl kill -s HUP {UNIT}")
    ctx.wait_for(
        f'test "$(systemctl show -P NRestarts {UNIT})" -gt {before}'
        f" && systemctl is-active --quiet {UNIT}",
        timeout=30,
        message="systemd to restart qmail-send after it lost its helpers (RestartSec=)",
    )
    ctx.wait_ready()
    text = ctx.run(["qmail-send-systemd", "status"]).stdout
    ctx.expect(
        "note: qmail-send lost qmail-lspawn, -rspawn or -clean at " in text
        and "`systemctl reload qmail-send` passes HUP and ALRM to qmail-send alone" in text,
        f"no note of the lost helpers after `systemctl kill -s HUP`:\n{text}",
    )


@scenario("status")
def status_report(ctx: ScenarioContext) -> None:
    """status: healthy exit 0; deferred and hour-old mail exit 1; a stopped service exit 1."""
    ctx.reset()
    ctx.install_qmail()
    ctx.install_packages()
    ctx.wait_ready()
    ctx.check_output(f"echo ':{SMARTHOST}' > {SMTPROUTES}")

    healthy = _status(ctx, 0)
    service, queue = _part(healthy, "service"), _part(healthy, "queue")
    ctx.expect(service["ActiveState"] == "active", f"service: {service}")
    ctx.expect(service["MainPID"] == ctx.show("MainPID"), f"main PID: {service}")
    ctx.expect(service["NRestarts"] == ctx.show("NRestarts"), f"restarts: {service}")
    ctx.expect(queue["counted"] is True and queue["messages"] == 0, f"queue: {queue}")
    ctx.expect(_part(healthy, "smarthost")["route"] == SMARTHOST, f"smarthost: {healthy}")
    text = ctx.run_expect([0], "qmail-send-systemd status").stdout
    ctx.expect(text.rstrip().endswith("ok: nothing needs attention"), f"status:\n{text}")
    _a_restart_is_one_more_start(ctx, healthy)
    _a_hup_to_every_process_is_named(ctx)

    # As an ordinary user: it says what it could not read, and never "ok" about it (exit 1:
    # the queue and the journal are closed to nobody; issue 22, item 3).
    user = _status(ctx, 1, AS_NOBODY)
    hidden = _problems(user)
    ctx.expect(
        any("queue could not be read" in p for p in hidden)
        and any("journal could not be read" in p for p in hidden),
        f"as nobody, status did not name what it could not see: {hidden}",
    )
    unread = _part(user, "queue")["not_read"]
    assert isinstance(unread, list)
    ctx.expect(
        f"{QUEUE}/info: permission denied" in unread,
        f"as nobody, info/ (0700 qmails) was read: {user['queue']}",
    )
    ctx.expect(_part(user, "service")["ActiveState"] == "active", f"as nobody: {user}")
    _starts_from_bytecode(ctx)

    # Mail that cannot go out: the latest attempt deferred, the message still queued.
    _queue_remote_messages(ctx, count=1)
    ctx.check_output(f"echo ':{SMARTHOST}' >> {SMTPROUTES}")
    deferred = _status(ctx, 1)
    queue, journal = _part(deferred, "queue"), _part(deferred, "journal")
    ctx.expect(queue["messages"] == _files(ctx, "mess") == 1, f"queue: {queue}")
    ctx.expect(queue["with_deliveries_to_do"] == {"local": 0, "remote": 1}, f"queue: {queue}")
    deferral = journal["deferral"]
    ctx.expect(
        isinstance(deferral, dict) and " deferral: " in str(deferral["line"]),
        f"no deferral line in {journal}",
    )
    # Every queued message whose last attempt was deferred is flagged, with its recipient.
    problems = _problems(deferred)
    ctx.expect(
        len(problems) == 1
        and problems[0].startswith("1 queued message whose last delivery attempt was deferred")
        and "someone@example.org" in problems[0],
        f"attention: {deferred['attention']}",
    )
    # ...and older than an hour: info/'s mtime is the message's age, as for qmail-qread.
    info = ctx.check_output(f"find {QUEUE}/info -type f").split()
    ctx.expect(len(info) == 1, f"info files: {info}")
    ctx.check_output(f"touch -d '2 hours ago' {shlex.quote(info[0])}")
    old = _problems(_status(ctx, 1))
    ctx.expect(any("has waited 2 h" in p for p in old), f"attention: {old}")

    # The service stopped: that comes first, with its fix.
    ctx.check_output(f"systemctl stop {UNIT}")
    stopped = _status(ctx, 1)
    ctx.expect(_problems(stopped)[0] == f"{UNIT} is inactive", f"attention: {stopped}")
    ctx.expect(_part(stopped, "service")["MainPID"] == "0", f"service: {stopped['service']}")
    text = ctx.run_expect([1], "qmail-send-systemd status").stdout
    ctx.expect("(fix: as root: systemctl start qmail-send" in text, f"status:\n{text}")
    ctx.expect(_part(stopped, "queue")["messages"] == 1, "stopping lost the queued message")
