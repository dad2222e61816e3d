"""Smoke scenarios for the original user's needs: sendmail for git send-email, mailx without
another MTA, the mta alternative on RPM, and `setup`'s control and alias files."""

from __future__ import annotations

import shlex

from qss_toolkit.families import Family
from qss_toolkit.scenarios import MAIN, SENDMAIL_PACKAGE, UNIT, ScenarioContext, scenario
from qss_toolkit.smtp_sink import SINK_DIR, SmtpSink, smtp_sink
from qss_toolkit.targets import APT_SUBSET_LIST

QMAIL_SENDMAIL = "/var/qmail/bin/sendmail"
SENDMAIL_LINKS = ("/usr/sbin/sendmail", "/usr/lib/sendmail")
# What git send-email writes to `sendmail -i -t`: recipients come from the headers.
MESSAGE = (
    "From: Dev <dev@laptop.example.net>\n"
    "To: list@example.org\n"
    "Cc: maintainer@example.org\n"
    "Subject: [PATCH] qss smoke {tag}\n"
    "Message-ID: <{tag}@laptop.example.net>\n"
    "\n"
    "A patch body.\n"
    ".\n"
    "A line with one dot above: -i must keep it.\n"
)
# A Fedora-style MTA already in place before ours (what postfix registers, priority 60).
OTHER_MTA = "/usr/local/libexec/other-mta/sendmail"
MTA_FAMILY_PACKAGES = ("exim4-base", "exim4-daemon-light", "postfix", "sendmail-bin", "nullmailer")


def _sendmail_target(ctx: ScenarioContext, link: str) -> str:
    return ctx.check_output(["readlink", "-f", link]).strip()


def _queued_messages(ctx: ScenarioContext) -> list[str]:
    out = ctx.check_output("find /var/qmail/queue/mess -type f | sort")
    return [line for line in out.splitlines() if line]


def _other_mta(ctx: ScenarioContext) -> None:
    ctx.check_output(
        f"mkdir -p {shlex.quote(OTHER_MTA.rsplit('/', 1)[0])}"
        f" && printf '#!/bin/sh\\nexit 0\\n' > {OTHER_MTA} && chmod 0755 {OTHER_MTA}"
        f" && alternatives --install /usr/sbin/sendmail mta {OTHER_MTA} 60"
        f" --slave /usr/lib/sendmail mta-sendmail {OTHER_MTA}"
    )


@scenario("sendmail-git-send-email")
def sendmail_git_send_email(ctx: ScenarioContext) -> None:
    """`sendmail -i -t` run by a user, as git send-email calls it, puts the mail in the queue."""
    ctx.reset()
    ctx.install_standin()
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    for link in SENDMAIL_LINKS:
        target = _sendmail_target(ctx, link)
        ctx.expect(target == QMAIL_SENDMAIL, f"{link} resolves to {target!r}, not {QMAIL_SENDMAIL}")
    # With qmail-send stopped the message stays where qmail-queue put it, so it can be read back
    # (a running qmail-send would move it on at once).
    ctx.check_output(["systemctl", "stop", UNIT])
    ctx.run("id dev >/dev/null 2>&1 || useradd --create-home dev")
    before = _queued_messages(ctx)
    tag = "gse" + ctx.container.name[-6:]
    result = ctx.run(
        ["runuser", "-u", "dev", "--", "/usr/sbin/sendmail", "-i", "-t"],
        input=MESSAGE.format(tag=tag),
    )
    ctx.expect(
        result.returncode == 0,
        f"sendmail -i -t exited {result.returncode}: {(result.stdout + result.stderr).strip()}",
    )
    new = sorted(set(_queued_messages(ctx)) - set(before))
    ctx.expect(len(new) == 1, f"expected one new message in the queue, found {new}")
    body = ctx.check_output(["cat", new[0]])
    ctx.expect(f"Message-ID: <{tag}@laptop.example.net>" in body, f"{new[0]} is not our mail")
    ctx.expect("\n.\n" in body, "-i was ignored: the line with a single dot was lost")
    ctx.check_output(["systemctl", "start", UNIT])
    ctx.assert_active()


# apt with the slice of Debian's archive that the root keeps (targets.apt_subset_script): the
# archive's own stanzas and .debs for bsd-mailx and the MTA apt picks for it, read offline.
APT_DEBIAN = (
    "DEBIAN_FRONTEND=noninteractive apt-get -q"
    f" -o Dir::Etc::SourceList={APT_SUBSET_LIST} -o Dir::Etc::SourceParts=/nonexistent"
)


@scenario("sendmail-mta-for-apt", families=(Family.DEB,))
def sendmail_mta_for_apt(ctx: ScenarioContext) -> None:
    """With the sendmail package, bsd-mailx pulls in no other MTA; a purge leaves no link."""
    ctx.reset()
    ctx.install_standin()
    ctx.check_output(f"{APT_DEBIAN} update", timeout=300)
    # The control: without us, bsd-mailx's `default-mta | mail-transport-agent` brings exim4.
    plain = ctx.check_output(f"{APT_DEBIAN} install -s -y bsd-mailx", timeout=300)
    ctx.expect(
        any(line.startswith("Inst exim4") for line in plain.splitlines()),
        "control failed: without the sendmail package apt would not install exim4 for bsd-mailx",
    )
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    ctx.check_output(f"{APT_DEBIAN} install -y bsd-mailx", timeout=300)
    installed = ctx.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *MTA_FAMILY_PACKAGES]
    ).stdout
    others = [line.split()[0] for line in installed.splitlines() if line.endswith(" installed")]
    ctx.expect(not others, f"bsd-mailx pulled in another MTA: {others}")
    owner = ctx.check_output(["dpkg-query", "-S", "/usr/sbin/sendmail"]).split(":")[0]
    ctx.expect(owner == SENDMAIL_PACKAGE, f"/usr/sbin/sendmail belongs to {owner!r}")
    ctx.expect(
        _sendmail_target(ctx, "/usr/sbin/sendmail") == QMAIL_SENDMAIL,
        "/usr/sbin/sendmail is not qmail's after installing bsd-mailx",
    )
    ctx.check_output(f"{APT_DEBIAN} purge -y bsd-mailx {SENDMAIL_PACKAGE}", timeout=300)
    for link in SENDMAIL_LINKS:
        ctx.expect(ctx.run(["test", "-L", link]).returncode != 0, f"{link} is left after the purge")
    ctx.check_output(["test", "-x", QMAIL_SENDMAIL])  # qmail's own file is never ours to remove


@scenario("sendmail-mta-alternative", families=(Family.RPM,))
def sendmail_mta_alternative(ctx: ScenarioContext) -> None:
    """RPM: the package wins the `mta` alternative beside another MTA; erasing restores that one."""
    ctx.reset()
    ctx.install_standin()
    _other_mta(ctx)
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    provides = ctx.check_output(["rpm", "-q", "--provides", SENDMAIL_PACKAGE]).split("\n")
    ctx.expect("MTA" in provides and "smtpdaemon" in provides, f"provides: {provides}")
    for link in SENDMAIL_LINKS:
        target = _sendmail_target(ctx, link)
        ctx.expect(target == QMAIL_SENDMAIL, f"{link} resolves to {target!r} with both installed")
    display = ctx.check_output(["alternatives", "--display", "mta"])
    ctx.expect(OTHER_MTA in display, f"the other MTA left the mta alternative:\n{display}")
    ctx.remove([SENDMAIL_PACKAGE])
    for link in SENDMAIL_LINKS:
        target = _sendmail_target(ctx, link)
        ctx.expect(
            target == OTHER_MTA, f"after erase {link} resolves to {target!r}, not {OTHER_MTA}"
        )
    ctx.check_output(["alternatives", "--remove", "mta", OTHER_MTA])
    ctx.check_output(["test", "-x", QMAIL_SENDMAIL])


SMARTHOST = "smtp.example.org:587"
FORWARD = "admin@example.org"
# path -> (content, "owner:group mode") as qmail needs them (qmail-remote reads smtproutes as
# any user; qmail-local, as the alias user, refuses a group- or world-writable .qmail file).
SETUP_FILES = {
    "/var/qmail/control/smtproutes": (":smtp.example.org:587\n", "root:qmail 644"),
    "/var/qmail/alias/.qmail-root": (f"&{FORWARD}\n", "alias:qmail 644"),
    "/var/qmail/alias/.qmail-postmaster": (f"&{FORWARD}\n", "alias:qmail 644"),
    "/var/qmail/alias/.qmail-mailer-daemon": (f"&{FORWARD}\n", "alias:qmail 644"),
}


LIST_BACKUPS = "ls -a /var/qmail/control /var/qmail/alias | grep -F .bak."


def _restore_lwq_state(ctx: ScenarioContext) -> None:
    """Leave the stand-in as LWQ leaves qmail (no smarthost, empty alias files): the next
    scenario in this container reinstalls the stand-in, which keeps existing control files."""
    alias_files = [p for p in SETUP_FILES if "/alias/" in p]
    ctx.run(
        "rm -f /var/qmail/control/smtproutes /var/qmail/control/*.bak.*"
        " /var/qmail/alias/.qmail-*.bak.*; "
        + "; ".join(f"[ ! -e {p} ] || : > {p}" for p in alias_files)
    )


@scenario("setup-relay-files")
def setup_relay_files(ctx: ScenarioContext) -> None:
    """`setup` writes smtproutes and the alias forwards with the owners and modes qmail needs."""
    ctx.reset()
    ctx.remove_qmail()  # a fresh LWQ state: empty alias files, no smtproutes
    ctx.install_standin()
    ctx.install_packages([MAIN])
    try:
        setup = ["qmail-send-systemd", "setup", "--smarthost", SMARTHOST, "--forward-root", FORWARD]
        ctx.check_output(setup)
        for path, (content, meta) in SETUP_FILES.items():
            seen = ctx.check_output(["cat", path])
            ctx.expect(seen == content, f"{path} holds {seen!r}, expected {content!r}")
            got = ctx.check_output(["stat", "-c", "%U:%G %a", path]).strip()
            ctx.expect(got == meta, f"{path} is {got}, expected {meta}")
        backups = ctx.check_output(f"{LIST_BACKUPS} | sort")
        # LWQ's empty alias files were replaced, so each is kept; smtproutes did not exist.
        ctx.expect(
            len(backups.split()) == 3 and "smtproutes" not in backups,
            f"expected a backup of each of the three alias files, found: {backups!r}",
        )
        again = ctx.check_output(setup)
        ctx.expect(
            again.count("unchanged") == len(SETUP_FILES), f"second run was not a no-op:\n{again}"
        )
        bad = ["qmail-send-systemd", "setup", "--smarthost", "bad host", "--forward-root", FORWARD]
        refused = ctx.run(bad)
        ctx.expect(refused.returncode == 2, f"a malformed host exited {refused.returncode}, not 2")
        after = ctx.check_output(f"{LIST_BACKUPS} | sort")
        ctx.expect(after == backups, f"a no-op or refused run made backups: {after!r}")
        ctx.check_output(["qmail-send-systemd", "verify"])  # the alias files satisfy verify
        # The service keeps running: qmail-remote and qmail-local read these at each delivery.
        ctx.assert_active()
    finally:
        _restore_lwq_state(ctx)


@scenario("relay-root-mail-after-reconnect")
def relay_root_mail_after_reconnect(ctx: ScenarioContext) -> None:
    """Cron's mail to root, sent offline, reaches the forward address via the smarthost on flush."""
    ctx.reset()
    ctx.remove_qmail()
    ctx.install_standin()
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    ctx.wait_ready()
    try:
        with smtp_sink(ctx) as sink:
            _cron_mail_through(ctx, sink)
    finally:
        _restore_lwq_state(ctx)


def _cron_mail_through(ctx: ScenarioContext, sink: SmtpSink) -> None:
    ctx.check_output(
        ["qmail-send-systemd", "setup", "--smarthost", sink.address, "--forward-root", FORWARD]
    )
    cursor = ctx.journal_cursor()
    tag = "cron" + ctx.container.name[-6:]
    # What cron does with a job's output: sendmail with the recipient on the command line.
    ctx.run_expect(
        [0],
        f"printf 'Subject: Cron <root@laptop> {tag}\\n\\noutput of {tag}\\n'"
        " | /usr/sbin/sendmail -i root",
    )
    # Offline: the smarthost refuses connections, so the forwarded copy is deferred.
    journal = f"journalctl -q -o cat --after-cursor='{cursor}' -u {UNIT}"
    ctx.wait_for(
        f"{journal} | grep -q 'to remote {FORWARD}' && {journal} | grep -q ': deferral: '",
        timeout=30,
        message=f"a deferred remote delivery to {FORWARD}",
    )
    sink.go_online()
    # Back online, but qmail-send's next scheduled retry is minutes away: nothing moves...
    ctx.run(["sleep", "3"])
    early = sink.messages()
    ctx.expect(not early, f"mail arrived before any flush: {early}")
    # ...until the flush that the NetworkManager hook triggers.
    ctx.check_output(["qmail-send-systemd", "flush"])
    ctx.wait_for(
        f"ls {SINK_DIR}/*.eml >/dev/null 2>&1",
        timeout=20,
        message="the smarthost to receive the mail after the flush",
    )
    mail = "".join(sink.messages())
    ctx.expect(f"<{FORWARD}>" in mail, f"the smarthost got other recipients:\n{mail}")
    ctx.expect(f"output of {tag}" in mail, f"the smarthost got another message:\n{mail}")
