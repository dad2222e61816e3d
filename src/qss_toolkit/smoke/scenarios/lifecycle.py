"""docs/design.md's "Maintainer-script semantics" table, proved in booted containers.

Each scenario starts from a clean state (`ctx.reset()`), so any one can run alone
(`smoke --scenario NAME`) and a failure does not cascade into the next. The one exception saves
a purge and a reinstall: a scenario that needs "current package running on real qmail" takes
that state over from the scenario just before it in the same boot when that one passed and
vouched for it (`ctx.leaves = RUNNING_CURRENT`), after checking it: install-qmail ->
reload-and-flush -> stop-in-flight, and reinstall-after-remove -> install-twice -> remove.
"""

from __future__ import annotations

from qss_toolkit.families import Family
from qss_toolkit.smoke.engines.base import BootKind
from qss_toolkit.smoke.scenarios.fixtures.smtp_sink import smtp_sink
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NM_PACKAGE,
    QUEUE,
    RUNNING_CURRENT,
    UNIT,
    WANTS_LINK,
    ScenarioContext,
    ScenarioFailed,
    scenario,
)

# A remote recipient: with no network, its deliveries are deferred and the message stays queued.
REMOTE_RECIPIENT = "someone@example.org"
# "The queue full" for the upgrade: 1.0.0 administrators upgrade with mail waiting offline.
QUEUE_FULL = 30
SLOW_MARK = "/var/qmail/alias/slow-delivery-done"
# Paths a purge may change besides /var/qmail: package-manager state, logs, runtime data, our
# own staging area, and systemd's runtime records.
# Where the package's scripts compile the helper's modules: Debian's postinst (py3compile)
# beside them, RPM's %post into a cache the package never owns.
BYTECODE_DIRS = ("/usr/share/qmail-send-systemd", "/var/cache/qmail-send-systemd")
PURGE_IGNORED = (
    "/var/qmail",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/cache",
    "/var/log",
    "/var/lib/systemd",
    "/var/tmp",
    "/tmp",
    "/run",
    "/srv/qss",
    "/etc/ld.so.cache",
    "/root",
)


def _attempts(ctx: ScenarioContext, recipient: str = REMOTE_RECIPIENT) -> int:
    """How many deliveries to `recipient` this run of the unit has started (qmail-send's log)."""
    ctx.journal_sync()
    out = ctx.run(
        f"journalctl -o cat _SYSTEMD_INVOCATION_ID={ctx.show('InvocationID')}"
        f" | grep -c '^starting delivery [0-9]*: msg [0-9]* to remote {recipient}$'"
    ).stdout
    return int(out.strip() or 0)


def _wait_for_alarm(ctx: ScenarioContext, seen: int, why: str, timeout: float = 20) -> None:
    """qmail-send got SIGALRM: it retried the deferred remote message at once (after its first
    deferral qmail waits 400 s before the next attempt); `seen` is _attempts() before."""
    invocation = ctx.show("InvocationID")
    ctx.wait_for(
        f"test $(journalctl -o cat _SYSTEMD_INVOCATION_ID={invocation}"
        f" | grep -c '^starting delivery [0-9]*: msg [0-9]* to remote {REMOTE_RECIPIENT}$')"
        f" -gt {seen}",
        timeout=timeout,
        message=f"qmail-send to retry the deferred message at once (SIGALRM) after {why}",
    )


TCPTO = f"{QUEUE}/lock/tcpto"


def _tcpto_stamp(ctx: ScenarioContext) -> str:
    """lock/tcpto's mtime: qmail-tcpok rewrites the file; qmail-remote writes it only after a
    timeout (a refused connection to a host not in it leaves it alone)."""
    return ctx.check_output(["stat", "-c", "%y", TCPTO]).strip()


def _wait_for_tcpok(ctx: ScenarioContext, before: str, why: str, timeout: float = 20) -> None:
    ctx.wait_for(
        f"[ \"$(stat -c %y {TCPTO})\" != '{before}' ]",
        timeout=timeout,
        message=f"qmail-tcpok to rewrite {TCPTO} after {why}",
    )


def _expect_reread(ctx: ScenarioContext, domain: str, why: str) -> None:
    """qmail-send got SIGHUP: control/locals, changed before `why`, was reread, so mail to
    `domain` is delivered locally (before the reread it went to the remote queue)."""
    invocation = ctx.show("InvocationID")
    ctx.check_output(
        f"printf 'To: root@{domain}\\nSubject: reread\\n\\nreread\\n'"
        f" | /var/qmail/bin/qmail-inject root@{domain}"
    )
    ctx.wait_for(
        f"journalctl -o cat _SYSTEMD_INVOCATION_ID={invocation}"
        f" | grep -q '^starting delivery [0-9]*: msg [0-9]* to local root@{domain}$'",
        message=f"mail to root@{domain} delivered locally (control/locals reread on SIGHUP)"
        f" after {why}",
    )


def _running_with_qmail(ctx: ScenarioContext, *, previous: bool = False) -> None:
    """Clean start, real qmail as just installed, our package installed, qmail-send active.

    When the scenario before this one vouched for exactly that state (RUNNING_CURRENT), it is
    taken over after a check instead of being made again by a purge and a reinstall.
    """
    if not previous and ctx.handover == RUNNING_CURRENT:
        _check_running_current(ctx)
        return
    ctx.reset()
    ctx.install_qmail()
    ctx.install_packages(previous=previous)
    ctx.wait_ready()


def _check_running_current(ctx: ScenarioContext) -> None:
    """The handover state holds: only our current main package, enabled, qmail-send ready."""
    current = ctx.built()[MAIN].version
    installed = ctx.version()
    ctx.expect(installed == current, f"handed over with {MAIN} {installed}, not {current}")
    for other in ctx.our_packages():
        if other != MAIN:
            ctx.expect(not ctx.installed(other), f"handed over with {other} installed")
    ctx.assert_enabled()
    ctx.wait_ready()
    # A fresh start-limit budget, as reset() gives: scenarios in a row that each restart the
    # unit hit systemd's StartLimitBurst (5 starts in 10 s) on a fast target otherwise.
    ctx.run(f"systemctl reset-failed {UNIT}")


def _queue_remote_messages(
    ctx: ScenarioContext, count: int = 3, *, route: str = "127.0.0.1:1"
) -> None:
    """Queue `count` messages for a remote recipient and wait until qmail-send has deferred the
    first attempt of each (no network): after that it only touches mtimes, so the queue's
    content stays still."""
    # Route the domain to a closed local port: each attempt is a quick deferral, never a hang.
    ctx.check_output(
        f"echo '{REMOTE_RECIPIENT.split('@')[1]}:{route}' > /var/qmail/control/smtproutes"
    )
    deferrals = (
        f"journalctl -o cat _SYSTEMD_INVOCATION_ID={ctx.show('InvocationID')}"
        " | grep -c '^delivery [0-9]*: deferral: '"
    )
    ctx.journal_sync()
    before = int(ctx.run(deferrals).stdout.strip() or 0)
    # One shell for all of them: an nsenter per message would cost more than the messages.
    ctx.check_output(
        f"for i in $(seq 0 {count - 1}); do"
        f" printf 'To: {REMOTE_RECIPIENT}\\nSubject: queued %s\\n\\nbody %s\\n' $i $i"
        f" | /var/qmail/bin/qmail-inject {REMOTE_RECIPIENT} || exit 1; done"
    )
    ctx.wait_for(
        f"test $({deferrals}) -ge {before + count}"
        f' && test -z "$(find {QUEUE}/todo {QUEUE}/intd -type f)"',
        message=f"qmail-send to defer the first attempt of the {count} queued messages",
    )


@scenario("install-no-qmail")
def install_no_qmail(ctx: ScenarioContext) -> None:
    """Install with no qmail: exit 0, a warning naming what is missing, enabled, not started."""
    ctx.reset()
    ctx.remove_qmail()
    result = ctx.install_packages()
    output = result.stdout + result.stderr
    ctx.expect("/var/qmail" in output, f"no warning naming /var/qmail in:\n{output}")
    ctx.assert_enabled()
    ctx.assert_active(expected="inactive")


@scenario("install-qmail")
def install_qmail(ctx: ScenarioContext) -> None:
    """Install with real qmail: enabled and active; the main process is the helper,
    with qmail-send (qmail-start exec'd into it) as its child, running as qmails."""
    _running_with_qmail(ctx)
    ctx.assert_enabled()
    comm = ctx.main_pid_comm()
    ctx.expect(comm == "qmail-send-syst", f"main PID runs {comm!r}, expected the helper")
    child = ctx.qmail_send_pid()
    status = ctx.check_output(["cat", f"/proc/{child}/status"])
    owner = ctx.check_output(["id", "-u", "qmails"]).strip()
    ctx.expect(f"\nUid:\t{owner}\t" in status, f"qmail-send does not run as qmails:\n{status}")
    # The administrator's guide, as each family ships documentation.
    guide = "README.gz" if ctx.target.family == "deb" else "README"
    ctx.check_output(["test", "-s", f"/usr/share/doc/{MAIN}/{guide}"])
    ctx.leaves = RUNNING_CURRENT  # read-only checks: the fresh install is as it was


@scenario("reload-and-flush")
def reload_and_flush(ctx: ScenarioContext) -> None:
    """`systemctl reload` and `qmail-send-systemd flush`: qmail-tcpok ran, qmail-send got HUP
    (reread locals and virtualdomains) and ALRM (retry now), and kept running."""
    _running_with_qmail(ctx)
    pid, child = ctx.show("MainPID"), ctx.qmail_send_pid()
    _queue_remote_messages(ctx, 1)
    for step, cmd in (
        ("reload", f"systemctl reload {UNIT}"),
        ("flush", "qmail-send-systemd flush"),
    ):
        domain = f"{step}.qss.test"
        ctx.check_output(f"echo {domain} >> /var/qmail/control/locals")
        tcpto, attempts = _tcpto_stamp(ctx), _attempts(ctx)
        ctx.check_output(cmd)
        _wait_for_alarm(ctx, attempts, step)
        _wait_for_tcpok(ctx, tcpto, step)
        _expect_reread(ctx, domain, step)
    ctx.expect(ctx.show("MainPID") == pid, "reload/flush changed the main PID (a restart?)")
    ctx.expect(ctx.qmail_send_pid() == child, "reload/flush restarted qmail-send")
    # The same running qmail-send, but mail queued and control/locals changed: not handed over.


@scenario("stop-in-flight")
def stop_in_flight(ctx: ScenarioContext) -> None:
    """Stop during a delivery in flight: qmail-send alone gets TERM first and the delivery ends."""
    _running_with_qmail(ctx)
    # A local delivery that takes a few seconds: qmail-local runs the program as alias, in
    # ~alias (the unit's PrivateTmp= would hide a file written to /tmp or /var/tmp).
    ctx.check_output(
        f"printf '|sleep 3; echo done >> {SLOW_MARK}\\n' > ~alias/.qmail-slow && rm -f {SLOW_MARK}"
    )
    ctx.container.run(
        ["/var/qmail/bin/qmail-inject", "slow"], input="To: slow\nSubject: slow\n\nslow\n"
    )
    ctx.wait_for("pgrep -x sleep >/dev/null", message="the slow delivery to start")
    invocation = ctx.show("InvocationID")
    ctx.check_output(f"systemctl stop {UNIT}", timeout=180)
    ctx.assert_active(expected="inactive")
    done = ctx.run(["cat", SLOW_MARK]).stdout
    ctx.expect("done" in done, "the delivery in flight was killed (KillMode=mixed lets it finish)")
    # qmail-send logs the delivery's end before it exits: it waited for the delivery in flight.
    # Only this run's lines, and journald may still be writing them when the stop returns.
    this_run = f"journalctl -o cat _SYSTEMD_INVOCATION_ID={invocation}"
    ctx.wait_for(f"{this_run} | grep -q '^status: exiting'", message="`status: exiting`")
    log = ctx.check_output(this_run)
    exiting = log.rfind("status: exiting")
    success = log.rfind(": success:", 0, exiting if exiting >= 0 else None)
    ctx.expect(exiting >= 0, "qmail-send never logged `status: exiting`")
    ctx.expect(success >= 0, "no delivery success logged before `status: exiting`")


def _upgrade(ctx: ScenarioContext) -> tuple[int, str, str]:
    """Upgrade previous -> current; return (starts of the unit, queue before, queue after)."""
    before_version = ctx.version()
    queue_before = ctx.queue_digest()
    cursor = ctx.journal_cursor()
    ctx.install_packages()
    after_version = ctx.version()
    ctx.expect(
        after_version != before_version, f"still at {before_version}: the upgrade did not happen"
    )
    return ctx.starts_since(cursor), queue_before, ctx.queue_digest()


@scenario("upgrade")
def upgrade(ctx: ScenarioContext) -> None:
    """Upgrade from the previous release with the queue full: restarted once, the queue
    untouched, the old package's removal scripts leave the new one enabled and running, and
    every queued mail is delivered exactly once afterwards."""
    _running_with_qmail(ctx, previous=True)
    with smtp_sink(ctx) as sink:
        # The smarthost is unreachable while the upgrade runs: every mail waits in the queue.
        _queue_remote_messages(ctx, QUEUE_FULL, route=sink.address)
        starts, queue_before, queue_after = _upgrade(ctx)
        ctx.expect(starts == 1, f"qmail-send.service was started {starts} times by the upgrade")
        ctx.expect(queue_before == queue_after, "the queue changed during the upgrade")
        ctx.assert_enabled()
        ctx.assert_active()
        ctx.wait_ready()
        sink.go_online()
        ctx.check_output(["qmail-send-systemd", "flush"])
        ctx.wait_for(
            f'test -z "$(find {QUEUE}/mess -type f)"',
            timeout=60,
            message=f"the {QUEUE_FULL} queued mails to leave the queue after the flush",
        )
        subjects = sorted(
            line for m in sink.messages() for line in m.splitlines() if line.startswith("Subject:")
        )
        expected = sorted(f"Subject: queued {i}" for i in range(QUEUE_FULL))
        ctx.expect(
            subjects == expected,
            f"the smarthost got {len(subjects)} mails for {QUEUE_FULL} queued:"
            f" {sorted(set(expected) - set(subjects))} missing,"
            f" {[s for s in set(subjects) if subjects.count(s) > 1]} twice",
        )


@scenario("upgrade-keeps-disable")
def upgrade_keeps_disable(ctx: ScenarioContext) -> None:
    """An administrator's `systemctl disable` survives the upgrade (still running, restarted)."""
    _running_with_qmail(ctx, previous=True)
    ctx.check_output(f"systemctl disable {UNIT}")
    starts, _, _ = _upgrade(ctx)
    ctx.assert_enabled(expected="disabled")
    ctx.assert_active()
    ctx.expect(starts == 1, f"a running, disabled unit was started {starts} times")


@scenario("upgrade-keeps-mask")
def upgrade_keeps_mask(ctx: ScenarioContext) -> None:
    """An administrator's `systemctl mask` (after stopping) survives the upgrade; nothing starts."""
    _running_with_qmail(ctx, previous=True)
    ctx.check_output(f"systemctl stop {UNIT} && systemctl mask {UNIT}")
    starts, _, _ = _upgrade(ctx)
    ctx.assert_enabled(expected="masked")
    ctx.assert_active(expected="inactive")
    ctx.expect(starts == 0, f"a masked unit was started {starts} times")


@scenario("purge", families=(Family.DEB,))
def purge(ctx: ScenarioContext) -> None:
    """Purge: the file system equals its pre-install snapshot, apart from /var/qmail."""
    ctx.reset()
    ctx.install_qmail()
    before = ctx.file_list(exclude=PURGE_IGNORED)
    ctx.install_packages()
    ctx.assert_active()
    ctx.purge()
    after = ctx.file_list(exclude=PURGE_IGNORED)
    if before != after:
        gone = sorted(set(before) - set(after))
        left = sorted(set(after) - set(before))
        raise ScenarioFailed(
            "the purge left the file system different from before the install:\n"
            + "\n".join([*(f"+ {p}" for p in left[:20]), *(f"- {p}" for p in gone[:20])])
        )


@scenario("reinstall-after-remove")
def reinstall_after_remove(ctx: ScenarioContext) -> None:
    """Remove, then install again: enabled and running again."""
    _running_with_qmail(ctx)
    ctx.remove()
    ctx.install_packages()
    ctx.assert_enabled()
    ctx.assert_active()
    ctx.leaves = RUNNING_CURRENT


@scenario("install-twice")
def install_twice(ctx: ScenarioContext) -> None:
    """Install the same package twice in a row (a reinstall): exit 0, enabled and running."""
    _running_with_qmail(ctx)
    ctx.reinstall_packages()
    ctx.assert_enabled()
    ctx.assert_active()
    ctx.leaves = RUNNING_CURRENT


@scenario("remove")
def remove(ctx: ScenarioContext) -> None:
    """Remove: stopped and disabled, the queue unchanged."""
    _running_with_qmail(ctx)
    _queue_remote_messages(ctx)
    queue_before = ctx.queue_digest()
    ctx.remove()
    ctx.assert_active(expected="inactive")
    ctx.expect(not ctx.installed(), f"{MAIN} still installed after remove")
    ctx.expect(ctx.is_enabled() != "enabled", f"{UNIT} is still enabled after remove")
    if ctx.manager.remove_keeps_enablement:
        # dh_installsystemd keeps the enablement symlink (dangling once the unit file is gone)
        # until purge, so that a reinstall restores the administrator's choice.
        dangling = ctx.run(["test", "-e", WANTS_LINK]).returncode != 0
        ctx.expect(dangling, f"{WANTS_LINK} still leads to a unit file after remove")
    else:
        # %systemd_preun disables on erase.
        link = ctx.run(["test", "-L", WANTS_LINK]).returncode == 0
        ctx.expect(not link, f"{WANTS_LINK} still exists after erase: not disabled")
    ctx.expect(ctx.queue_digest() == queue_before, "the queue changed when the package was removed")
    # The bytecode the package's scripts compiled goes with it (Debian's prerm: py3clean;
    # RPM's %postun on erase: the cache %post wrote).
    left = ctx.check_output(f"find {' '.join(BYTECODE_DIRS)} -name '*.pyc' 2>/dev/null || :")
    ctx.expect(not left.strip(), f"the helper's bytecode outlived the package:\n{left}")


@scenario("policy-rc-d-101", families=(Family.DEB,))
def policy_rc_d(ctx: ScenarioContext) -> None:
    """Debian's policy-rc.d exits 101: the package is installed and enabled, nothing started."""
    ctx.reset()
    ctx.install_qmail()
    ctx.check_output("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d")
    ctx.check_output("chmod 755 /usr/sbin/policy-rc.d")
    try:
        ctx.install_packages()
        ctx.assert_enabled()
        ctx.assert_active(expected="inactive")
    finally:
        ctx.run("rm -f /usr/sbin/policy-rc.d")


@scenario("offline-install", boot=BootKind.OFFLINE)
def offline_install(ctx: ScenarioContext) -> None:
    """Install where systemd is not running (image build): enabled by symlink, nothing started."""
    state = ctx.run(["systemctl", "is-system-running"]).stdout.strip()
    ctx.expect(state == "offline", f"systemd state {state!r}: this root is not offline")
    ctx.install_qmail()
    ctx.install_packages()
    target = ctx.check_output(["readlink", WANTS_LINK]).strip()
    ctx.expect(target.endswith(f"/{UNIT}"), f"{WANTS_LINK} -> {target!r}")
    ctx.expect(
        not ctx.run(["pgrep", "-x", "qmail-send"]).stdout,
        "qmail-send runs after an offline install",
    )


@scenario("networkmanager-hook")
def networkmanager_hook(ctx: ScenarioContext) -> None:
    """Real NetworkManager brings host0 up: its dispatcher runs our hook, qmail-send gets ALRM."""
    container = ctx.veth("the NetworkManager scenario")
    _running_with_qmail(ctx)
    ctx.install_packages([MAIN, NM_PACKAGE])
    ctx.artifacts.append("/etc/NetworkManager")
    try:
        ctx.check_output(
            "systemctl unmask NetworkManager.service && systemctl start NetworkManager"
        )
        # The host side of the veth pair must be up, or host0 never gets a carrier.
        ctx.host.run(["ip", "link", "set", container.host_veth(), "up"])
        _queue_remote_messages(ctx, 1)
        alarms = _attempts(ctx)
        ctx.check_output(
            "nmcli connection add type ethernet con-name qss ifname host0"
            " ipv4.method disabled ipv6.method link-local"
        )
        ctx.check_output("nmcli --wait 30 connection up qss", timeout=60)
        _wait_for_alarm(ctx, alarms, "NetworkManager brought host0 up", timeout=30)
        # The hook's one line reaches the journal through NetworkManager-dispatcher.service.
        ctx.wait_for(
            "journalctl -b -o cat -u NetworkManager-dispatcher.service"
            " | grep -q '90-qmail-send: up on interface \"host0\"'",
            message="the hook's log line for host0 up",
        )
    finally:
        # The boot is shared: NetworkManager goes back to masked for the scenarios after this.
        ctx.run(
            "nmcli connection delete qss; systemctl stop NetworkManager.service"
            " NetworkManager-dispatcher.service; systemctl mask NetworkManager.service; true"
        )
