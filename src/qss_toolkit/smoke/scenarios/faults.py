"""Smoke scenarios for the service under load and faults (issue 17): every delivery line of a
burst in the journal, restarts and crashes that never leave the unit failed, transient faults
that heal by themselves, an upgrade that brings a failed unit back, qmail-send's last words on
start failures and stops, a reload that rereads virtualdomains, and qmail's lines in the
system journal whatever the qmail users' uids.

Figures (recovery times, restarts per minute) are logged at info level; the bounds they are
checked against follow from the unit's RestartSec= (docs/design.md, "The unit").
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qss_toolkit.smoke.scenarios.fixtures.smtp_sink import SINK_DIR, smtp_sink
from qss_toolkit.smoke.scenarios.lifecycle import (
    _attempts,
    _queue_remote_messages,
    _running_with_qmail,
    _upgrade,
    _wait_for_alarm,
)
from qss_toolkit.smoke.scenarios.registry import (
    RUNNING_CURRENT,
    UNIT,
    ScenarioContext,
    scenario,
)

log = logging.getLogger("qss_toolkit")

ALIAS_HOME = "/var/qmail/alias"
CONTROL = "/var/qmail/control"
INJECT = "/var/qmail/bin/qmail-inject"
MUTEX = "/var/qmail/queue/lock/sendmutex"
# The unit's RestartSec=, and what a start may take on top of it on a loaded 2-core machine
# (qmail-start and its four programs, the helper; measured 0.5-2 s).
RESTART_SEC = 5.0
START_SLACK = 10.0
RECOVERY_BOUND = RESTART_SEC + START_SLACK
# A second qmail (qmail-start, as an old init script would leave one running), in a unit of its
# own so that it outlives the command that started it: its qmail-send holds queue/lock/sendmutex.
LEFTOVER_UNIT = "qss-leftover-qmail-send.service"

# The burst: many recipients per message (one qmail-inject each), one delivery per recipient,
# each with its own `starting delivery` and `delivery N: success` lines.
BURST_MESSAGES, BURST_RECIPIENTS = 20, 100
CONTROL_MESSAGES, CONTROL_RECIPIENTS = 2, 50
# During the burst journald's own default is made small (in /run, removed afterwards): a
# unit whose limits did not take effect then loses lines at once, where journald's real
# default (10000 lines per 30 s, times up to 6 with the free space) needs a flush of some
# thousands of messages. Every 2 s window also makes journald report what it suppressed soon.
# 5 lines (times 3 to 4 here) per 2 s: below what even a slow machine's control burst writes.
JOURNALD_DROPIN = "/run/systemd/journald.conf.d/qss-burst.conf"
JOURNALD_SMALL = "[Journal]\nRateLimitIntervalSec=2s\nRateLimitBurst=5\n"
UNIT_DROPIN_DIR = "/run/systemd/system/qmail-send.service.d"
# What the issue tried first, in a drop-in: "switch the limit off". systemd does not export 0.
ZERO_LIMITS = "[Service]\nLogRateLimitIntervalSec=0\nLogRateLimitBurst=0\n"

STARTING = re.compile(r"^starting delivery (\d+): msg \d+ to local (\S+)$", re.M)
SUCCESS = re.compile(r"^delivery (\d+): success: ", re.M)
SUPPRESSED = re.compile(r"Suppressed \d+ messages from qmail-send\.service")


def _journal(ctx: ScenarioContext, cursor: str, *args: str) -> str:
    ctx.journal_sync()
    return ctx.check_output(
        ["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}", *args], timeout=300
    )


def _new_mail(ctx: ScenarioContext, maildir: str) -> int:
    out = ctx.run(f"ls {shlex.quote(maildir)}/new 2>/dev/null | wc -l").stdout.strip()
    return int(out or 0)


def _maildir_for_alias(ctx: ScenarioContext, name: str, extension: str) -> str:
    """~alias/NAME/, a Maildir that ~alias/.qmail-EXTENSION-default delivers to."""
    maildir = f"{ALIAS_HOME}/{name}"
    ctx.check_output(
        f"rm -rf {maildir} && runuser -u alias -- /var/qmail/bin/maildirmake {maildir}"
        f" && echo './{name}/' > {ALIAS_HOME}/.qmail-{extension}-default"
        f" && chown alias {ALIAS_HOME}/.qmail-{extension}-default"
        f" && chmod 644 {ALIAS_HOME}/.qmail-{extension}-default"
    )
    return maildir


def _drop_alias_maildir(ctx: ScenarioContext, name: str, extension: str) -> None:
    ctx.run(f"rm -rf {ALIAS_HOME}/{name} {ALIAS_HOME}/.qmail-{extension}-default")


def _deliver_to_root(ctx: ScenarioContext, why: str) -> None:
    """One mail to root, delivered into ~alias/Maildir (the empty .qmail-root)."""
    before = _new_mail(ctx, f"{ALIAS_HOME}/Maildir")
    ctx.run_expect([0], [INJECT, "root"], input=f"To: root\nSubject: {why}\n\n{why}\n")
    ctx.wait_for(
        f"test $(ls {ALIAS_HOME}/Maildir/new | wc -l) -gt {before}",
        timeout=60,
        message=f"mail to root to be delivered {why}",
    )


def _inject_burst(ctx: ScenarioContext, tag: str, messages: int, recipients: int) -> None:
    """messages x recipients local deliveries to TAG-M-R, in one shell in the container."""
    ctx.check_output(
        f'for m in $(seq {messages}); do rcpts=$(seq -f "{tag}-$m-%g" {recipients});'
        f" printf 'Subject: {tag} %s\\n\\nburst\\n' $m | {INJECT} $rcpts || exit 1; done",
        timeout=600,
    )


def _restart_with_dropin(ctx: ScenarioContext, dropin: str | None) -> None:
    """qmail-send restarted with or without a /run drop-in of ours (its log limits are
    exported to journald when the unit starts)."""
    if dropin is None:
        ctx.check_output(f"rm -rf {UNIT_DROPIN_DIR}")
    else:
        ctx.run_expect(
            [0], f"mkdir -p {UNIT_DROPIN_DIR} && cat > {UNIT_DROPIN_DIR}/qss.conf", input=dropin
        )
    ctx.check_output(f"systemctl daemon-reload && systemctl restart {UNIT}")
    ctx.wait_ready()


@contextmanager
def _small_journald_default(ctx: ScenarioContext) -> Iterator[None]:
    ctx.run_expect(
        [0],
        f"mkdir -p {JOURNALD_DROPIN.rsplit('/', 1)[0]} && cat > {JOURNALD_DROPIN}",
        input=JOURNALD_SMALL,
    )
    ctx.check_output("systemctl restart systemd-journald")
    try:
        yield
    finally:
        ctx.run(f"rm -f {JOURNALD_DROPIN}; systemctl restart systemd-journald")


@dataclass(frozen=True)
class Burst:
    """What one burst left in the journal, for its own recipients."""

    deliveries: int
    starting: int  # `starting delivery N: msg M to local TAG-...` lines
    successes: int  # `delivery N: success` lines of those N
    suppressed: list[str]  # journald's `Suppressed K messages from qmail-send.service`


def _burst(ctx: ScenarioContext, tag: str, messages: int, recipients: int) -> Burst:
    """Inject, wait for every delivery in the Maildir, then make journald close its window
    (one more line of qmail-send's, 2.5 s later) and read the journal."""
    maildir = _maildir_for_alias(ctx, tag, tag)
    count = messages * recipients
    cursor = ctx.journal_cursor()
    started = ctx.host.monotonic()
    try:
        _inject_burst(ctx, tag, messages, recipients)
        ctx.wait_for(
            f"test $(ls {maildir}/new | wc -l) -ge {count}",
            timeout=60 + count * 0.5,
            message=f"{count} deliveries into {maildir}",
        )
        seconds = ctx.host.monotonic() - started
        delivered = _new_mail(ctx, maildir)
    finally:
        _drop_alias_maildir(ctx, tag, tag)
    ctx.host.sleep(2.5)
    closing = ctx.journal_cursor()
    ctx.run_expect([0], [INJECT, "root"], input="To: root\nSubject: closing\n\nclosing\n")
    ctx.wait_for(
        f"journalctl -q -o cat --after-cursor={shlex.quote(closing)} -u {UNIT}"
        " | grep -q '^starting delivery [0-9]*: msg [0-9]* to local root@'",
        message="qmail-send's lines for one more mail after the burst",
    )
    journal = _journal(ctx, cursor)
    ours = {n for n, rcpt in STARTING.findall(journal) if rcpt.startswith(f"{tag}-")}
    burst = Burst(
        delivered, len(ours), len(set(SUCCESS.findall(journal)) & ours),
        SUPPRESSED.findall(journal),
    )  # fmt: skip
    log.info(
        "%s: %d deliveries in %.1fs (%.0f/s); %d starting and %d success lines; %s",
        ctx.target.name, delivered, seconds, delivered / seconds, burst.starting,
        burst.successes, burst.suppressed or "nothing suppressed",
    )  # fmt: skip
    ctx.expect(delivered == count, f"{delivered} of {count} mails in {maildir}")
    return burst


@scenario("log-burst")
def log_burst(ctx: ScenarioContext) -> None:
    """2,000 local deliveries in a burst: every `starting delivery` and `delivery N: success`
    line is in `journalctl -u qmail-send` and journald suppressed nothing, with journald's
    own default made small; the limit the issue tried (0, in a drop-in) loses lines."""
    _running_with_qmail(ctx)
    tag = "burst" + ctx.container.name[-5:]
    try:
        with _small_journald_default(ctx):
            # The control: what a unit gets from journald's default. If nothing were lost
            # here, the check below could not tell either.
            _restart_with_dropin(ctx, ZERO_LIMITS)
            control = _burst(ctx, tag + "c", CONTROL_MESSAGES, CONTROL_RECIPIENTS)
            ctx.expect(
                bool(control.suppressed) and control.successes < control.deliveries,
                f"LogRateLimitIntervalSec=0 lost no line ({control}): the check proves nothing",
            )
            _restart_with_dropin(ctx, None)
            burst = _burst(ctx, tag, BURST_MESSAGES, BURST_RECIPIENTS)
            count = BURST_MESSAGES * BURST_RECIPIENTS
            ctx.expect(burst.starting == count, f"{burst.starting} of {count} starting lines")
            ctx.expect(burst.successes == count, f"{burst.successes} of {count} success lines")
            ctx.expect(not burst.suppressed, f"journald: {burst.suppressed[:3]}")
    finally:
        ctx.run(f"rm -rf {UNIT_DROPIN_DIR}; systemctl daemon-reload")
    ctx.check_output(f"systemctl restart {UNIT}")
    ctx.wait_ready()
    ctx.leaves = RUNNING_CURRENT


# -- restarts and crashes ---------------------------------------------------------------------


def _wait_running_again(ctx: ScenarioContext, old_child: str, why: str) -> float:
    """Seconds until the unit is active with a qmail-send other than old_child, ready."""
    started = ctx.host.monotonic()
    ctx.wait_for(
        f"systemctl is-active --quiet {UNIT} && m=$(systemctl show -P MainPID {UNIT})"
        f' && p=$({ctx.ready_pid_shell("$m")}) && [ "$p" != {shlex.quote(old_child)} ]',
        timeout=RECOVERY_BOUND + 30,
        message=f"qmail-send running again after {why}",
    )
    return ctx.host.monotonic() - started


def _expect_not_given_up(ctx: ScenarioContext) -> None:
    result = ctx.show("Result")
    ctx.expect(result != "start-limit-hit", f"{UNIT} hit its start limit")


@scenario("restart-storm", waits=True)
def restart_storm(ctx: ScenarioContext) -> None:
    """Six `systemctl restart` in a row, then six crashes (kill -9, each as soon as qmail-send
    is back; qmail-send and the helper in turn): never start-limit-hit, running again within
    RestartSec + start, and the mail sent afterwards is delivered."""
    _running_with_qmail(ctx)
    for attempt in range(6):
        ctx.run_expect([0], f"systemctl restart {UNIT}", timeout=60)
        ctx.assert_active()
        log.debug("restart %d done", attempt + 1)
    _expect_not_given_up(ctx)
    restarts = int(ctx.show("NRestarts"))
    recoveries = []
    for crash in range(6):
        child = ctx.qmail_send_pid()
        victim = child if crash % 2 == 0 else ctx.show("MainPID")
        ctx.check_output(["kill", "-KILL", victim])
        recoveries.append(_wait_running_again(ctx, child, f"crash {crash + 1} (kill -9)"))
        _expect_not_given_up(ctx)
        ctx.host.sleep(0.5)
    log.info(
        "%s: back after each kill -9 in %s s", ctx.target.name,
        ", ".join(f"{s:.1f}" for s in recoveries),
    )  # fmt: skip
    ctx.expect(max(recoveries) <= RECOVERY_BOUND, f"recoveries {recoveries} > {RECOVERY_BOUND}s")
    ctx.expect(
        int(ctx.show("NRestarts")) == restarts + 6,
        f"NRestarts went from {restarts} to {ctx.show('NRestarts')}, not up by 6",
    )
    _deliver_to_root(ctx, "after the crashes")
    ctx.leaves = RUNNING_CURRENT


@contextmanager
def _leftover_qmail_send(ctx: ScenarioContext) -> Iterator[None]:
    ctx.run(["systemctl", "stop", LEFTOVER_UNIT])
    # The service's qmail-send holds the lock while it runs: the second qmail takes it first,
    # as one left running by an old init script does when the service is started.
    ctx.check_output(["systemctl", "stop", UNIT], timeout=60)
    ctx.check_output(
        # As LWQ's /var/qmail/rc starts it: qmail-start finds its programs on PATH.
        ["systemd-run", f"--unit={LEFTOVER_UNIT}", "--collect",
         "--setenv=PATH=/var/qmail/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "/var/qmail/bin/qmail-start", "./Maildir/"]
    )  # fmt: skip
    ctx.wait_for(
        f"systemctl is-active --quiet {LEFTOVER_UNIT} && lslocks -n -o PATH | grep -qx {MUTEX}",
        message="a second qmail-send holding queue/lock/sendmutex",
    )
    try:
        yield
    finally:
        ctx.run(["systemctl", "stop", LEFTOVER_UNIT])


@contextmanager
def _unreadable_control_me(ctx: ScenarioContext) -> Iterator[None]:
    # qmail-send reads control/me as qmails: root's 0600 keeps it out.
    ctx.check_output(f"chmod 600 {CONTROL}/me")
    try:
        yield
    finally:
        ctx.run(f"chmod 644 {CONTROL}/me")


def _fault_for(ctx: ScenarioContext, seconds: float, alert: str) -> float:
    """With a fault in place: a restart fails with qmail-send's alert at priority alert,
    flush says the unit is down, and systemd keeps restarting it; the restarts per minute
    while the fault lasts `seconds`."""
    cursor = ctx.journal_cursor()
    failed = ctx.run(f"systemctl restart {UNIT}", timeout=60)
    ctx.expect(failed.returncode != 0, "qmail-send started although it could not")
    # journald reads the stream on its own time: a failed `systemctl restart` may return first.
    ctx.wait_for(
        f"journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT} -p alert"
        f" | grep -qxF {shlex.quote(alert)}",
        message=f"`{alert}` at priority alert in the journal",
    )
    # Between two starts (not during one): exit 1 and what happened.
    ctx.wait_for(
        "out=$(qmail-send-systemd flush 2>&1); [ $? -eq 1 ]"
        " && echo \"$out\" | grep -q 'waits to be restarted'",
        timeout=RECOVERY_BOUND,
        message="flush to say that the unit waits to be restarted",
    )
    before, started = int(ctx.show("NRestarts")), ctx.host.monotonic()
    ctx.host.sleep(seconds)
    rate = (int(ctx.show("NRestarts")) - before) * 60 / (ctx.host.monotonic() - started)
    _expect_not_given_up(ctx)
    return rate


@scenario("transient-faults", waits=True)
def transient_faults(ctx: ScenarioContext) -> None:
    """A leftover qmail-send holding queue/lock/sendmutex, then control/me unreadable, for a
    while each: every start fails with qmail-send's alert, systemd restarts it every 5 s and
    never gives up, flush says it is down, and once the fault is gone it runs again by
    itself within RestartSec + start; flush as an ordinary user says it needs root."""
    _running_with_qmail(ctx)
    figures = []
    faults = (
        (_leftover_qmail_send, "alert: cannot start: qmail-send is already running"),
        (_unreadable_control_me, "alert: cannot start: unable to read controls"),
    )
    for fault, alert in faults:
        child = ctx.qmail_send_pid()
        with fault(ctx):
            rate = _fault_for(ctx, 12.0, alert)
        recovery = _wait_running_again(ctx, child, f"`{alert}` stopped")
        figures.append(f"{alert!r}: {rate:.0f} restarts/min, back {recovery:.1f}s after")
        ctx.expect(rate <= 60 / RESTART_SEC + 1, f"{rate:.0f} restarts a minute: a tight loop")
        ctx.expect(recovery <= RECOVERY_BOUND, f"running again {recovery:.1f}s after the fault")
    log.info("%s: %s", ctx.target.name, "; ".join(figures))
    _deliver_to_root(ctx, "after the faults")
    user = ctx.run(["runuser", "-u", "nobody", "--", "qmail-send-systemd", "flush"])
    ctx.expect(
        user.returncode == 1 and "run it as root: qmail-send-systemd flush" in user.stderr,
        f"flush as nobody: exit {user.returncode}: {user.stdout}{user.stderr}",
    )
    ctx.leaves = RUNNING_CURRENT


@scenario("upgrade-failed-unit")
def upgrade_failed_unit(ctx: ScenarioContext) -> None:
    """The previous release's unit after six `systemctl restart` in a row under a start limit
    (1.1.0's unit has none, StartLimitIntervalSec=0: an administrator's drop-in sets one, as
    1.0.0's default did): start-limit-hit and failed, mail waiting; the package upgrade brings
    it back and the mail is delivered."""
    _running_with_qmail(ctx, previous=True)
    dropin = f"/etc/systemd/system/{UNIT}.d/90-qss-start-limit.conf"
    ctx.check_output(
        f"mkdir -p $(dirname {dropin}) && printf '[Unit]\\nStartLimitIntervalSec=60\\n"
        f"StartLimitBurst=5\\n' > {dropin} && systemctl daemon-reload"
    )
    try:
        for _ in range(6):
            ctx.run(f"systemctl restart {UNIT}", timeout=60)
        state = (ctx.show("ActiveState"), ctx.show("Result"))
        ctx.expect(state == ("failed", "start-limit-hit"), f"the previous unit is {state}")
        before = _new_mail(ctx, f"{ALIAS_HOME}/Maildir")
        ctx.run_expect([0], [INJECT, "root"], input="To: root\nSubject: waits\n\nwaits\n")
        _upgrade(ctx)
        ctx.assert_active()
        ctx.wait_ready()
        ctx.wait_for(
            f"test $(ls {ALIAS_HOME}/Maildir/new | wc -l) -gt {before}",
            timeout=60,
            message="the mail queued while the unit was failed to be delivered after the upgrade",
        )
    finally:
        ctx.run(f"rm -f {dropin}; rmdir $(dirname {dropin}) 2>/dev/null; systemctl daemon-reload")


# -- qmail-send's last words ------------------------------------------------------------------

ROUNDS = 20


def _priorities(ctx: ScenarioContext, cursor: str, text: str) -> list[str]:
    """PRIORITY= of each of qmail-send's journal entries after cursor whose message is text."""
    ctx.journal_sync()
    out = ctx.check_output(
        ["journalctl", "-q", "-o", "json", f"--after-cursor={cursor}", "-u", UNIT], timeout=300
    )
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [str(e.get("PRIORITY")) for e in entries if e.get("MESSAGE") == text]


@scenario("last-words")
def last_words(ctx: ScenarioContext) -> None:
    """20 start failures (a leftover qmail-send, then control/me unreadable, 10 each) and 20
    stops: every failure's `alert: cannot start: ...` (priority alert) and every stop's
    `status: exiting` (info) is in the journal: 20 of 20 each."""
    _running_with_qmail(ctx)
    cursor = ctx.journal_cursor()
    half = ROUNDS // 2
    failures = 0
    for fault in (_leftover_qmail_send, _unreadable_control_me):
        with fault(ctx):
            for _ in range(half):
                failures += ctx.run(f"systemctl restart {UNIT}", timeout=60).returncode != 0
    ctx.expect(failures == ROUNDS, f"{failures} of {ROUNDS} starts failed")
    # Restart= adds a start of its own now and then (after 5 s): each failed start, ours or
    # systemd's, is one exit 111, and must have its alert.
    exits = _journal(ctx, cursor, "-u", UNIT).count("Main process exited, code=exited, status=111")
    mutex = _priorities(ctx, cursor, "alert: cannot start: qmail-send is already running")
    controls = _priorities(ctx, cursor, "alert: cannot start: unable to read controls")
    log.info(
        "%s: %d failed starts, %d alerts in the journal (%d mutex, %d controls)",
        ctx.target.name, exits, len(mutex) + len(controls), len(mutex), len(controls),
    )  # fmt: skip
    ctx.expect(exits >= ROUNDS, f"systemd logged {exits} failed starts for {ROUNDS}")
    ctx.expect(len(mutex) + len(controls) == exits, f"{len(mutex) + len(controls)} alerts")
    ctx.expect(len(mutex) >= half and len(controls) >= half, f"{len(mutex)}, {len(controls)}")
    ctx.expect(set(mutex + controls) == {"1"}, f"alert priorities {set(mutex + controls)}")
    ctx.check_output(f"systemctl restart {UNIT}")
    stops = []
    for _ in range(ROUNDS):
        ctx.wait_ready()
        invocation = ctx.show("InvocationID")
        ctx.check_output(f"systemctl stop {UNIT}", timeout=180)
        stops.append(invocation)
        ctx.check_output(f"systemctl start {UNIT}", timeout=60)
    # journald reads each stream on its own time: wait for the last stop's line first.
    ctx.wait_for(
        f"journalctl -q -o cat _SYSTEMD_INVOCATION_ID={stops[-1]} | grep -qx 'status: exiting'",
        message="the last stop's `status: exiting`",
    )
    missing = [
        i for i in stops
        if ctx.check_output(["journalctl", "-q", "-o", "cat", f"_SYSTEMD_INVOCATION_ID={i}"])
        .splitlines()[-1:] != ["status: exiting"]
    ]  # fmt: skip
    exiting = _priorities(ctx, cursor, "status: exiting")
    log.info("%s: `status: exiting` last of %d of %d stops", ctx.target.name,
             ROUNDS - len(missing), ROUNDS)  # fmt: skip
    ctx.expect(not missing, f"{len(missing)} of {ROUNDS} stops end without `status: exiting`")
    ctx.expect(set(exiting) == {"6"}, f"`status: exiting` priorities: {sorted(set(exiting))}")
    ctx.wait_ready()
    ctx.leaves = RUNNING_CURRENT


# -- reload ------------------------------------------------------------------------------------

VIRTUAL = "virt.example"


@scenario("reload-virtualdomain")
def reload_virtualdomain(ctx: ScenarioContext) -> None:
    """A new virtual domain in control/virtualdomains: mail for it still goes out to the
    smarthost until `systemctl reload` makes qmail-send reread the file (SIGHUP), then it is
    delivered locally, to the prefix's ~alias/.qmail-vd-default."""
    _running_with_qmail(ctx)
    try:
        with smtp_sink(ctx) as sink:
            sink.go_online()
            _queue_remote_messages(ctx, 1)  # deferred: the reload's ALRM retries it at once
            ctx.check_output(f"echo '{VIRTUAL}:{sink.address}' >> {CONTROL}/smtproutes")
            maildir = _maildir_for_alias(ctx, "vd", "vd")
            ctx.check_output(f"echo '{VIRTUAL}:vd' > {CONTROL}/virtualdomains")
            ctx.run_expect([0], [INJECT, f"before@{VIRTUAL}"], input="Subject: before\n\nx\n")
            ctx.wait_for(
                f"grep -qs '<before@{VIRTUAL}>' {SINK_DIR}/*.eml",
                timeout=60,
                message="mail for the new domain to reach the smarthost before the reload",
            )
            # The reload's HUP reaches qmail-send before its ALRM, and qmail-send rereads its
            # controls in the same turn of its loop as it retries the deferred message.
            attempts = _attempts(ctx)
            ctx.check_output(f"systemctl reload {UNIT}")
            _wait_for_alarm(ctx, attempts, "the reload")
            cursor = ctx.journal_cursor()
            ctx.run_expect([0], [INJECT, f"after@{VIRTUAL}"], input="Subject: after\n\nx\n")
            ctx.wait_for(
                f"test $(ls {maildir}/new | wc -l) -ge 1",
                timeout=60,
                message=f"mail for after@{VIRTUAL} in {maildir} after the reload",
            )
            journal = _journal(ctx, cursor, "-u", UNIT)
            ctx.expect(
                f"to local vd-after@{VIRTUAL}" in journal, f"not a local delivery:\n{journal}"
            )
            remote = [m for m in sink.messages() if f"<after@{VIRTUAL}>" in m]
            ctx.expect(not remote, "the mail after the reload went to the smarthost too")
    finally:
        ctx.run(f"rm -f {CONTROL}/virtualdomains {CONTROL}/smtproutes")
        _drop_alias_maildir(ctx, "vd", "vd")
        ctx.run(f"systemctl reload {UNIT}")
    ctx.leaves = RUNNING_CURRENT


# -- where the log is --------------------------------------------------------------------------


def _lines_in_each_journal(ctx: ScenarioContext) -> tuple[int, int]:
    """This run's qmail-send lines in every journal, and in the system journal alone."""
    ctx.journal_sync()
    match = f"_SYSTEMD_INVOCATION_ID={ctx.show('InvocationID')}"
    every = ctx.check_output(["journalctl", "-q", "-o", "cat", match])
    system = ctx.check_output(["journalctl", "--system", "-q", "-o", "cat", match])
    return len(every.splitlines()), len(system.splitlines())


@scenario("journal-install-ids")
def journal_install_ids(ctx: ScenarioContext) -> None:
    """qmail's users made by INSTALL.ids's useradd lines (uids from 1000, as every root has
    them): 1.0.0's qmaill logger had journald file qmail's lines in that user's journal, out of
    `journalctl --system -u qmail-send`. 1.1.0 (the previous release now) fixed it: every line
    is in the system journal before the upgrade and after it."""
    ctx.reset()
    ctx.install_qmail()
    uid = int(ctx.check_output(["id", "-u", "qmaill"]).strip())
    ctx.expect(uid >= 1000, f"INSTALL.ids gave qmaill uid {uid}")
    ctx.install_packages(previous=True)
    ctx.wait_ready()
    _deliver_to_root(ctx, "with the previous release")
    every, system = _lines_in_each_journal(ctx)
    ctx.expect(every > 5 and system == every, f"the previous release's lines: {system} of {every}")
    _upgrade(ctx)
    ctx.wait_ready()
    _deliver_to_root(ctx, "after the upgrade")
    every, system = _lines_in_each_journal(ctx)
    log.info("%s: qmaill uid %d: %d of %d lines in --system", ctx.target.name, uid,
             system, every)  # fmt: skip
    ctx.expect(every > 5 and system == every, f"{system} of {every} lines in --system")
