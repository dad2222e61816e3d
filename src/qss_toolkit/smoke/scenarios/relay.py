"""Smoke scenarios for the original user's needs: sendmail for git send-email, mailx without
another MTA, the mta alternative on RPM, sendmail, mailq and newaliases with and without
qmail, and `setup`'s control and alias files."""

from __future__ import annotations

from qss_toolkit.families import Family
from qss_toolkit.smoke.scenarios.fixtures.smtp_sink import SINK_DIR, SmtpSink, smtp_sink
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    SENDMAIL_PACKAGE,
    UNIT,
    ScenarioContext,
    scenario,
)
from qss_toolkit.smoke.targets import APT_SUBSET_LIST

QMAIL_SENDMAIL = "/var/qmail/bin/sendmail"
SENDMAIL_LINKS = ("/usr/sbin/sendmail", "/usr/lib/sendmail")
# What each family's /usr/sbin/sendmail is: the package's program (packaging/sendmail), on RPM
# through the mta alternative.
OUR_SENDMAIL = {Family.DEB: "/usr/sbin/sendmail", Family.RPM: "/usr/sbin/sendmail.qmail"}
# The mta alternative's slave links besides /usr/lib/sendmail, and what ours point to.
MAN = "/usr/share/man"
MTA_SLAVES = {
    "/usr/bin/mailq": "/usr/bin/mailq.qmail",
    "/usr/bin/newaliases": "/usr/bin/newaliases.qmail",
    f"{MAN}/man8/sendmail.8.gz": f"{MAN}/man8/sendmail.qmail.8.gz",
    f"{MAN}/man1/mailq.1.gz": f"{MAN}/man1/mailq.qmail.1.gz",
    f"{MAN}/man1/newaliases.1.gz": f"{MAN}/man1/newaliases.qmail.1.gz",
}
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
# A Fedora-style MTA already in place before ours: a package that owns the links as %ghost
# and registers its sendmail as postfix does (priority 60).
OTHER_MTA = "/usr/sbin/sendmail.other"
OTHER_MTA_SPEC = f"""Name: other-mta
Version: 1
Release: 1
Summary: An MTA packaged as Fedora's postfix is, for the alternatives scenario
License: MIT
BuildArch: noarch
Provides: MTA
%description
Registers {OTHER_MTA} as the mta alternative and owns its links, as postfix does.
%install
mkdir -p %{{buildroot}}/usr/sbin %{{buildroot}}/usr/lib
printf '#!/bin/sh\\nexit 0\\n' > %{{buildroot}}{OTHER_MTA}
chmod 0755 %{{buildroot}}{OTHER_MTA}
touch %{{buildroot}}/usr/sbin/sendmail %{{buildroot}}/usr/lib/sendmail
%post
alternatives --install /usr/sbin/sendmail mta {OTHER_MTA} 60 \\
    --slave /usr/lib/sendmail mta-sendmail {OTHER_MTA}
%preun
[ $1 = 0 ] && alternatives --remove mta {OTHER_MTA} || :
%files
{OTHER_MTA}
%ghost %attr(0755,root,root) /usr/sbin/sendmail
%ghost %attr(0755,root,root) /usr/lib/sendmail
"""
MTA_FAMILY_PACKAGES = ("exim4-base", "exim4-daemon-light", "postfix", "sendmail-bin", "nullmailer")


def _sendmail_target(ctx: ScenarioContext, link: str) -> str:
    return ctx.check_output(["readlink", "-f", link]).strip()


def _queued_messages(ctx: ScenarioContext) -> list[str]:
    out = ctx.check_output("find /var/qmail/queue/mess -type f | sort")
    return [line for line in out.splitlines() if line]


def _install_other_mta(ctx: ScenarioContext) -> None:
    """Build and install other-mta (OTHER_MTA_SPEC) in the RPM root."""
    ctx.run_expect([0], "mkdir -p /srv/qss/other-mta && cat > /srv/qss/other-mta/other.spec",
                   input=OTHER_MTA_SPEC)  # fmt: skip
    ctx.check_output(
        "rpmbuild --quiet --define '_topdir /srv/qss/other-mta' -bb /srv/qss/other-mta/other.spec"
        " && rpm -i /srv/qss/other-mta/RPMS/noarch/other-mta-1-1.noarch.rpm",
        timeout=300,
    )


@scenario("sendmail-git-send-email")
def sendmail_git_send_email(ctx: ScenarioContext) -> None:
    """`sendmail -i -t` run by a user, as git send-email calls it, puts the mail in the queue."""
    ctx.reset()
    ctx.install_qmail()
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    ours = OUR_SENDMAIL[ctx.target.family]
    for link in SENDMAIL_LINKS:
        target = _sendmail_target(ctx, link)
        ctx.expect(target == ours, f"{link} resolves to {target!r}, not {ours}")
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
    ctx.install_qmail()
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
        _sendmail_target(ctx, "/usr/sbin/sendmail") == OUR_SENDMAIL[Family.DEB],
        "/usr/sbin/sendmail is not ours after installing bsd-mailx",
    )
    ctx.check_output(f"{APT_DEBIAN} purge -y bsd-mailx {SENDMAIL_PACKAGE}", timeout=300)
    for link in SENDMAIL_LINKS:
        ctx.expect(ctx.run(["test", "-L", link]).returncode != 0, f"{link} is left after the purge")
    ctx.check_output(["test", "-x", QMAIL_SENDMAIL])  # qmail's own file is never ours to remove


@scenario("sendmail-mta-alternative", families=(Family.RPM,))
def sendmail_mta_alternative(ctx: ScenarioContext) -> None:
    """RPM: the package wins the `mta` alternative beside another MTA, with the slave links of
    postfix's; erasing it restores that one, and the links are %ghost files of both."""
    ctx.reset()
    ctx.install_qmail()
    ctx.run("rpm -q other-mta >/dev/null && rpm -e other-mta")
    _install_other_mta(ctx)
    try:
        ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
        provides = ctx.check_output(["rpm", "-q", "--provides", SENDMAIL_PACKAGE]).split("\n")
        ctx.expect("MTA" in provides and "smtpdaemon" in provides, f"provides: {provides}")
        for link in SENDMAIL_LINKS:
            target = _sendmail_target(ctx, link)
            ctx.expect(target == OUR_SENDMAIL[Family.RPM], f"{link} resolves to {target!r}")
        for link, ours in MTA_SLAVES.items():
            target = _sendmail_target(ctx, link)
            ctx.expect(target == ours, f"the slave {link} resolves to {target!r}, not {ours}")
        owners = ctx.check_output(["rpm", "-qf", "--qf", "%{NAME}\\n", "/usr/sbin/sendmail"])
        expected = sorted([SENDMAIL_PACKAGE, "other-mta"])
        ctx.expect(sorted(owners.split()) == expected, f"/usr/sbin/sendmail's owners: {owners}")
        display = ctx.check_output(["alternatives", "--display", "mta"])
        ctx.expect(OTHER_MTA in display, f"the other MTA left the mta alternative:\n{display}")
        ctx.remove([SENDMAIL_PACKAGE])
        for link in SENDMAIL_LINKS:
            target = _sendmail_target(ctx, link)
            ctx.expect(target == OTHER_MTA, f"after erase {link} resolves to {target!r}")
        for link in MTA_SLAVES:
            ctx.expect(ctx.run(["test", "-e", link]).returncode != 0, f"{link} is left")
    finally:
        ctx.run("rpm -q other-mta >/dev/null && rpm -e other-mta")
    ctx.check_output(["test", "-x", QMAIL_SENDMAIL])


@scenario("sendmail-without-and-with-qmail")
def sendmail_without_and_with_qmail(ctx: ScenarioContext) -> None:
    """Without qmail nothing dangles and sendmail fails temporarily, in one line; with it, mailq
    lists the queue and newaliases explains that qmail needs no alias database."""
    ctx.reset()
    ctx.remove_qmail()
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE])
    for path in (*SENDMAIL_LINKS, "/usr/bin/mailq", "/usr/bin/newaliases"):
        ctx.expect(ctx.run(["test", "-x", path]).returncode == 0, f"{path} dangles without qmail")
    sent = ctx.run(["/usr/sbin/sendmail", "-i", "-t"], input="To: root\n\nfrom cron\n")
    lines = sent.stderr.strip().splitlines()
    ctx.expect(sent.returncode == 75, f"sendmail without qmail exited {sent.returncode}")
    ctx.expect(
        len(lines) == 1 and QMAIL_SENDMAIL in lines[0] and "(fix: " in lines[0],
        f"sendmail without qmail said: {sent.stderr!r}",
    )
    ctx.run_expect([69], ["mailq"])
    ctx.run_expect([0], ["newaliases"])
    # qmail installed, remote mail deferred (the smarthost refuses): mailq shows it queued.
    ctx.install_qmail()
    ctx.check_output("echo ':127.0.0.1:9' > /var/qmail/control/smtproutes")
    ctx.check_output(["systemctl", "start", UNIT])
    ctx.wait_ready()
    ctx.run_expect([0], ["/usr/sbin/sendmail", "-i", "friend@example.org"], input="Subject: q\n\n")
    ctx.wait_for(
        "find /var/qmail/queue/info -type f | grep -q .",
        timeout=20,
        message="qmail-send to take the mail",
    )
    listing = ctx.check_output(["mailq"])
    ctx.expect("\tremote\tfriend@example.org" in listing, f"mailq listed:\n{listing}")
    ctx.expect(" GMT  #" in listing, f"mailq is not qmail-qread's listing:\n{listing}")
    aliases = ctx.run_expect([0], ["newaliases"]).stdout
    ctx.expect("~alias/.qmail-" in aliases, f"newaliases said: {aliases!r}")
    ctx.check_output(["rm", "-f", "/var/qmail/control/smtproutes"])


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
    """Leave qmail as LWQ leaves it (no smarthost, empty alias files), for a scenario after
    this one in the container that does not unpack /var/qmail afresh."""
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
    ctx.install_qmail()
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
    ctx.install_qmail()
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
