"""Smoke scenarios for the OAuth 2.0 route and the accepted sender (issue 25, item 4), on real
qmail (notqmail 1.09 in the root): qmail-send, qmail-rspawn, our qmail-remote and msmtp
against a provider on the container's loopback (fixtures/oauth_provider.py: a token endpoint
and a STARTTLS smarthost with AUTH XOAUTH2 and OAUTHBEARER).

`setup --auth xoauth2 --oauth-provider microsoft` runs its device flow against that endpoint
(`--oauth-setting` points it there; it approves at the first poll). What each scenario asserts
is what qmail and the provider show: the journal's delivery lines, the smarthost's messages and
logins, the token endpoint's grants, the queue, `status`'s words and exit code.
The smarthost-login-sender scenario (conditions.py) covers a password login behind a smarthost
that takes only the login as sender; oauth-login-sender adds cron's mail without LOGNAME and a
bounce, through an OAuth login and `--envelope-sender`.
"""

from __future__ import annotations

import re
import shlex

from qss_toolkit.smoke.scenarios.fixtures.oauth_provider import (
    BASIC_AUTH_OFF,
    CLIENT_ID,
    SMTP_PORT,
    Provider,
    oauth_provider,
)
from qss_toolkit.smoke.scenarios.fixtures.smtp_tls import SERVER_NAME, USER, trust_system_wide
from qss_toolkit.smoke.scenarios.registry import QUEUE, UNIT, ScenarioContext, scenario
from qss_toolkit.smoke.scenarios.relay import FORWARD
from qss_toolkit.smoke.scenarios.submission import (
    SENDER,
    _prepare,
    _restore,
    _send,
    _setup,
)

STATE_DIR = "/var/lib/qmail-send-systemd/submission"
REAUTHORIZE = "qmail-send-systemd oauth-authorize"
INJECT = "/var/qmail/bin/qmail-inject"
# Advertised for 130 s, so that the helper (which renews a token with less than 120 s left)
# holds it for 10 s; the smarthost takes it for 12 s. Waiting 15 s lets it expire for both.
SHORT_EXPIRES_IN, SHORT_LIFETIME, EXPIRED_AFTER = 130, 12, 15


def _begin(ctx: ScenarioContext) -> None:
    _prepare(ctx)
    trust_system_wide(ctx)


def _end(ctx: ScenarioContext) -> None:
    _restore(ctx)
    ctx.run(["rm", "-rf", STATE_DIR])  # the grant and the token cache: no secret outlives it


def _msmtp_has_xoauth2(ctx: ScenarioContext) -> bool:
    """msmtp took XOAUTH2 in 1.8.13; Debian 11's 1.8.11 has OAUTHBEARER only."""
    found = re.search(r"msmtp version (\d+)\.(\d+)\.(\d+)", ctx.run(["msmtp", "--version"]).stdout)
    return found is None or tuple(int(n) for n in found.groups()) >= (1, 8, 13)


def _mechanism(ctx: ScenarioContext) -> str:
    """The scenarios whose subject is not the mechanism log in with XOAUTH2 (Microsoft 365's
    one), or OAUTHBEARER where msmtp lacks XOAUTH2 (where setup refuses xoauth2)."""
    return "xoauth2" if _msmtp_has_xoauth2(ctx) else "oauthbearer"


def _oauth_setup(ctx: ScenarioContext, mechanism: str = "xoauth2", *extra: str) -> str:
    argv = [
        "qmail-send-systemd", "setup", "--smarthost", f"{SERVER_NAME}:{SMTP_PORT}",
        "--tls", "starttls", "--user", USER, "--auth", mechanism,
        "--oauth-provider", "microsoft", "--oauth-client-id", CLIENT_ID,
        *Provider.settings(), "--forward-root", FORWARD, *extra,
    ]  # fmt: skip
    result = ctx.run(argv, timeout=120)
    ctx.expect(
        result.returncode == 0,
        f"setup --auth {mechanism} exited {result.returncode}:\n{result.stdout}{result.stderr}",
    )
    ctx.wait_ready()  # the drop-in changed: setup restarted qmail-send
    return result.stdout


def _journal(ctx: ScenarioContext, cursor: str) -> str:
    ctx.journal_sync()
    return ctx.check_output(
        ["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}", "-u", UNIT]
    )


def _wait_journal(ctx: ScenarioContext, cursor: str, needle: str, what: str) -> None:
    ctx.wait_for(
        f"journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
        f" | grep -qF -- {shlex.quote(needle)}",
        timeout=60,
        message=what,
    )


def _queued(ctx: ScenarioContext) -> int:
    return len(ctx.check_output(f"find {QUEUE}/mess -type f").split())


def _lines(journal: str, kind: str) -> list[str]:
    return [line for line in journal.splitlines() if re.match(rf"delivery \d+: {kind}: ", line)]


def _no_token_in_journal(ctx: ScenarioContext, cursor: str, provider: Provider) -> None:
    journal = _journal(ctx, cursor)
    tokens = {word for line in provider.logins() for word in line.split() if word[:3] == "at-"}
    leaked = [token for token in tokens if token in journal]
    ctx.expect(not leaked, f"an access token is in the journal: {leaked[:1]}")


@scenario("oauth-delivery")
def oauth_delivery(ctx: ScenarioContext) -> None:
    """setup --auth xoauth2, then oauthbearer: a user's mail reaches the smarthost over
    STARTTLS with a token from the device flow, delivered once, with the login as sender.
    Where msmtp has no XOAUTH2 (Debian 11), setup refuses --auth xoauth2 in one line."""
    _begin(ctx)
    try:
        with oauth_provider(ctx) as provider:
            cursor = ctx.journal_cursor()
            xoauth2 = _msmtp_has_xoauth2(ctx)
            mechanisms = ("xoauth2", "oauthbearer") if xoauth2 else ("oauthbearer",)
            for number, mechanism in enumerate(mechanisms, 1):
                out = _oauth_setup(ctx, mechanism)
                ctx.expect("QSS-1234" in out, f"setup did not show the device code:\n{out}")
                rc = ctx.check_output(["cat", "/etc/qmail-send-systemd/msmtprc"])
                ctx.expect(f"auth {mechanism}" in rc and "password " not in rc, f"msmtprc:\n{rc}")
                grant = ctx.check_output(["stat", "-c", "%U %a", f"{STATE_DIR}/oauth-grant"])
                ctx.expect(grant.strip() == "qmailr 600", f"the grant is {grant.strip()}")
                tag = f"{mechanism}{ctx.container.name[-6:]}"
                _send(ctx, "friend@example.org", tag)
                mail = provider.wait_messages(number)[-1]
                ctx.expect(f"body {tag}" in mail, f"not the mail sent:\n{mail}")
                ctx.expect(f"LOGIN {mechanism.upper()} at-" in mail, f"not a token login:\n{mail}")
                ctx.expect("TLS True" in mail, f"not over TLS:\n{mail}")
                ctx.expect(f"MAIL FROM:<{USER}>" in mail, f"the envelope sender:\n{mail}")
            mails = "".join(provider.messages())
            for mechanism in mechanisms:
                tag = f"body {mechanism}{ctx.container.name[-6:]}"
                ctx.expect(mails.count(tag) == 1, f"{tag} not delivered once:\n{mails}")
            journal = _journal(ctx, cursor)
            successes = len(_lines(journal, "success"))
            ctx.expect(successes == len(mechanisms), f"successes:\n{journal[-1500:]}")
            ctx.expect(not _lines(journal, "deferral"), f"a deferral:\n{journal[-1500:]}")
            refused = [line for line in provider.logins() if " refused " in line]
            ctx.expect(not refused, f"logins refused: {refused}")
            ctx.wait_for(f'[ -z "$(find {QUEUE}/mess -type f)" ]', message="an empty queue")
            _no_token_in_journal(ctx, cursor, provider)
            ctx.check_output(["qmail-send-systemd", "verify"])
            if not xoauth2:  # setup refuses it in one line, before it asks or writes anything
                requests = len(provider.token_requests())
                no_xoauth2 = ctx.run(
                    ["qmail-send-systemd", "setup", "--smarthost", f"{SERVER_NAME}:{SMTP_PORT}",
                     "--tls", "starttls", "--user", USER, "--auth", "xoauth2",
                     "--oauth-provider", "microsoft", "--oauth-client-id", CLIENT_ID,
                     *Provider.settings()]
                )  # fmt: skip
                ctx.expect(
                    no_xoauth2.returncode != 0
                    and "has no XOAUTH2" in no_xoauth2.stderr
                    and len(no_xoauth2.stderr.strip().splitlines()) == 1,
                    f"setup --auth xoauth2 with an msmtp without it exited {no_xoauth2.returncode}:"
                    f"\n{no_xoauth2.stdout}{no_xoauth2.stderr}",
                )
                ctx.expect(len(provider.token_requests()) == requests, "setup asked the provider")
                rc = ctx.check_output(["cat", "/etc/qmail-send-systemd/msmtprc"])
                ctx.expect("auth oauthbearer" in rc, f"setup changed msmtprc:\n{rc}")
    finally:
        _end(ctx)


@scenario("oauth-token-expiry", waits=True)
def oauth_token_expiry(ctx: ScenarioContext) -> None:
    """An access token that expires between two flushes: the second delivery refreshes it once
    (the refresh grant), logs in with the new one, and the mail is delivered once."""
    _begin(ctx)
    try:
        with oauth_provider(ctx, expires_in=SHORT_EXPIRES_IN, lifetime=SHORT_LIFETIME) as provider:
            cursor = ctx.journal_cursor()
            mechanism = _mechanism(ctx)
            _oauth_setup(ctx, mechanism)
            tag = "exp" + ctx.container.name[-6:]
            _send(ctx, "friend@example.org", tag + "a")
            first = provider.wait_messages(1)[0]
            used = re.search(rf"^LOGIN {mechanism.upper()} (at-\S+)$", first, re.M)
            ctx.expect(used is not None, f"the first mail's login:\n{first}")
            assert used is not None
            ctx.host.sleep(EXPIRED_AFTER)  # the token is past its life for both sides now
            before = len(provider.refreshes())
            _send(ctx, "friend@example.org", tag + "b")
            ctx.check_output(["qmail-send-systemd", "flush"])
            second = provider.wait_messages(2)[1]
            ctx.check_output(["qmail-send-systemd", "flush"])  # a flush more sends nothing
            ctx.host.sleep(3)
            mails = "".join(provider.messages())
            for part in "ab":
                ctx.expect(mails.count(f"body {tag}{part}") == 1, f"not once:\n{mails}")
            refreshed = provider.refreshes()[before:]
            ctx.expect(
                len(refreshed) == 1 and " 200 at-" in refreshed[0],
                f"not one refresh after the token expired: {provider.token_requests()}",
            )
            new = refreshed[0].split()[-1]
            ctx.expect(new != used.group(1), "the refresh gave the expired token back")
            ctx.expect(f"LOGIN {mechanism.upper()} {new}" in second, f"new token?\n{second}")
            journal = _journal(ctx, cursor)
            ctx.expect(not _lines(journal, "deferral"), f"a deferral:\n{journal[-1500:]}")
            ctx.expect(_queued(ctx) == 0, "mail is left in the queue")
    finally:
        _end(ctx)


@scenario("oauth-revoked-grant", waits=True)
def oauth_revoked_grant(ctx: ScenarioContext) -> None:
    """A revoked refresh token: the mail is deferred (never bounced), the journal and `status`
    name `qmail-send-systemd oauth-authorize`; once it ran, a flush delivers the mail once."""
    _begin(ctx)
    try:
        with oauth_provider(ctx, expires_in=SHORT_EXPIRES_IN, lifetime=SHORT_LIFETIME) as provider:
            _oauth_setup(ctx, _mechanism(ctx))
            ctx.host.sleep(EXPIRED_AFTER)  # the access token from setup has expired
            provider.revoke()
            cursor = ctx.journal_cursor()
            tag = "rev" + ctx.container.name[-6:]
            _send(ctx, "friend@example.org", tag)
            _wait_journal(ctx, cursor, "invalid_grant", "a deferral for the revoked grant")
            journal = _journal(ctx, cursor)
            deferrals = _lines(journal, "deferral")
            ctx.expect(
                any(REAUTHORIZE.replace(" ", "_") in line for line in deferrals),
                f"the deferral does not name {REAUTHORIZE}:\n{journal[-1500:]}",
            )
            ctx.expect(not _lines(journal, "failure"), f"a failure:\n{journal[-1500:]}")
            ctx.expect(_queued(ctx) == 1, "the mail left the queue with a revoked grant")
            ctx.expect(not provider.messages(), "mail was delivered with a revoked grant")
            status = ctx.run(["qmail-send-systemd", "status"])
            ctx.expect(
                status.returncode == 1 and REAUTHORIZE in status.stdout,
                f"status exited {status.returncode} and said:\n{status.stdout}{status.stderr}",
            )
            verify = ctx.run(["qmail-send-systemd", "verify"])
            ctx.expect(
                verify.returncode != 0 and REAUTHORIZE in verify.stdout + verify.stderr,
                f"verify exited {verify.returncode} and said:\n{verify.stdout}{verify.stderr}",
            )
            bounces = ctx.run(f"grep -rls {tag} /home/{SENDER}/Maildir/new").stdout
            ctx.expect(not bounces.strip(), f"a bounce reached {SENDER}: {bounces}")
            # What the administrator runs: a new grant, then a flush.
            ctx.check_output(REAUTHORIZE.split(), timeout=120)
            ctx.check_output(["qmail-send-systemd", "flush"])
            mail = provider.wait_messages(1)
            ctx.host.sleep(3)
            mails = "".join(provider.messages())
            ctx.expect(mails.count(f"body {tag}") == 1, f"not delivered once:\n{mails}")
            ctx.wait_for(f'[ -z "$(find {QUEUE}/mess -type f)" ]', message="an empty queue")
            after = ctx.run(["qmail-send-systemd", "status"])
            ctx.expect(
                REAUTHORIZE not in after.stdout,
                f"status still names {REAUTHORIZE} after a delivery:\n{after.stdout}",
            )
            ctx.expect(bool(mail), "no mail")
    finally:
        _end(ctx)


@scenario("oauth-basic-auth-off")
def oauth_basic_auth_off(ctx: ScenarioContext) -> None:
    """A smarthost that answers `550 5.7.30` to a password login (Microsoft 365 with basic
    authentication off): deferred with the OAuth fix, never bounced; setup --auth xoauth2 and a
    flush deliver it once."""
    _begin(ctx)
    try:
        with oauth_provider(ctx, basic_auth_off=True) as provider:
            cursor = ctx.journal_cursor()
            _setup(ctx, port=SMTP_PORT, tls="starttls", trust=False)  # a password login
            tag = "b57" + ctx.container.name[-6:]
            _send(ctx, "friend@example.org", tag)
            _wait_journal(ctx, cursor, "5.7.30", "a deferral with the smarthost's 550 5.7.30")
            journal = _journal(ctx, cursor)
            said = [line for line in _lines(journal, "deferral") if "5.7.30" in line]
            ctx.expect(
                bool(said) and "--auth_xoauth2" in said[0],
                f"the deferral does not give the OAuth fix:\n{journal[-1500:]}",
            )
            ctx.expect(not _lines(journal, "failure"), f"a failure (bounce):\n{journal[-1500:]}")
            ctx.expect(_queued(ctx) == 1, "the mail left the queue after the 550 5.7.30")
            ctx.expect(
                any(line.startswith("PLAIN refused") or line.startswith("LOGIN refused")
                    for line in provider.logins()),
                f"no password login was refused: {provider.logins()}",
            )  # fmt: skip
            status = ctx.run(["qmail-send-systemd", "status"])
            ctx.expect(
                status.returncode == 1 and "--auth xoauth2" in status.stdout,
                f"status exited {status.returncode} and said:\n{status.stdout}",
            )
            bounces = ctx.run(f"grep -rls {tag} /home/{SENDER}/Maildir/new").stdout
            ctx.expect(not bounces.strip(), f"a bounce reached {SENDER}: {bounces}")
            mechanism = _mechanism(ctx)
            _oauth_setup(ctx, mechanism)
            ctx.check_output(["qmail-send-systemd", "flush"])
            provider.wait_messages(1)
            ctx.host.sleep(3)
            mails = "".join(provider.messages())
            ctx.expect(mails.count(f"body {tag}") == 1, f"not delivered once:\n{mails}")
            ctx.expect(f"LOGIN {mechanism.upper()} at-" in mails, f"not with a token:\n{mails}")
            ctx.wait_for(f'[ -z "$(find {QUEUE}/mess -type f)" ]', message="an empty queue")
            ctx.expect(BASIC_AUTH_OFF[:3] == "550", "the fixture's reply")
    finally:
        _end(ctx)


@scenario("oauth-login-sender")
def oauth_login_sender(ctx: ScenarioContext) -> None:
    """An OAuth smarthost that takes no envelope sender but the login (553 otherwise), with
    `--envelope-sender` the login: cron's mail (qmail-inject without LOGNAME: anonymous@) and
    a bounce to a remote sender go through with that sender and a From: it accepts; nothing
    is refused, nothing discarded (smarthost-login-sender covers a password login)."""
    _begin(ctx)
    try:
        with oauth_provider(ctx, only_sender=USER) as provider:
            cursor = ctx.journal_cursor()
            mechanism = _mechanism(ctx)
            _oauth_setup(ctx, mechanism, "--envelope-sender", USER)
            rc = ctx.check_output(["cat", "/etc/qmail-send-systemd/msmtprc"])
            ctx.expect(f'from "{USER}"' in rc, f"msmtprc has no `from {USER}`:\n{rc}")
            tag = "snd" + ctx.container.name[-6:]
            # cron runs its jobs' mail through sendmail with no LOGNAME; qmail-inject then
            # says `From: anonymous@<me>`.
            ctx.run_expect(
                [0],
                ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", INJECT, "root"],
                input=f"Subject: cron {tag}\n\ncron {tag}\n",
            )
            # A bounce: mail from a remote sender to a local address that does not exist.
            ctx.run_expect(
                [0],
                ["/usr/sbin/sendmail", "-f", "friend@example.org", f"nosuchuser{tag}"],
                input=f"Subject: lost {tag}\n\nlost {tag}\n",
            )
            mails = provider.wait_messages(2, timeout=60)
            cron = [m for m in mails if f"cron {tag}" in m and "no mailbox" not in m.lower()]
            bounce = [m for m in mails if f"lost {tag}" in m]
            ctx.expect(len(cron) == 1 and len(bounce) == 1, f"cron's mail and the bounce:\n{mails}")
            ctx.expect(
                f"RCPT TO:<{FORWARD}>" in cron[0] and re.search(
                    rf'^From: "anonymous@[^"]*" <{re.escape(USER)}>$', cron[0], re.M
                ) is not None,
                f"cron's mail is not to {FORWARD} from the login:\n{cron[0]}",
            )  # fmt: skip
            ctx.expect("RCPT TO:<friend@example.org>" in bounce[0], f"the bounce:\n{bounce[0]}")
            for mail in (cron[0], bounce[0]):
                ctx.expect(f"MAIL FROM:<{USER}>\n" in mail, f"the envelope sender:\n{mail}")
                ctx.expect(f"LOGIN {mechanism.upper()} at-" in mail, f"no token login:\n{mail}")
            ctx.expect(
                re.search(rf'^From: "MAILER-DAEMON@[^"]*" <{re.escape(USER)}>$', bounce[0], re.M)
                is not None,
                f"the bounce's From: is not the login's:\n{bounce[0]}",
            )
            refused = [line for line in provider.logins() if line.startswith("MAIL refused")]
            ctx.expect(not refused, f"the smarthost refused senders: {refused}")
            journal = _journal(ctx, cursor)
            ctx.expect("triple bounce" not in journal, f"a triple bounce:\n{journal[-1500:]}")
            # The one failure is the local one that made the bounce.
            failures = [line for line in _lines(journal, "failure") if "no_mailbox" not in line]
            ctx.expect(not failures, f"a failure:\n{journal[-1500:]}")
            ctx.wait_for(f'[ -z "$(find {QUEUE}/mess -type f)" ]', message="an empty queue")
    finally:
        _end(ctx)
