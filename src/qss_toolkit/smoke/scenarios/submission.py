"""Smoke scenarios for the submission route (docs/submission.md): qmail's queue, msmtp's TLS and
AUTH, against a real aiosmtpd smarthost on the container's loopback (smtp_tls.py).

qmail is notqmail 1.09, built in the root (qmail_root.py); its qmail-rspawn runs
/var/qmail/bin/qmail-remote; the drop-in that `setup --tls` writes puts ours there in
the service's namespace, so every delivery below goes through it and msmtp.
"""

from __future__ import annotations

import shlex

from qss_toolkit.smoke.scenarios.fixtures.smtp_tls import (
    PASSWORD,
    PKI_DIR,
    SERVER_NAME,
    USER,
    Listener,
    TlsServer,
    make_pki,
    tls_server,
    trust_system_wide,
)
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NM_HOOK,
    NM_PACKAGE,
    QUEUE,
    SENDMAIL_PACKAGE,
    SUBMISSION_PACKAGE,
    UNIT,
    ScenarioContext,
    scenario,
)
from qss_toolkit.smoke.scenarios.relay import FORWARD, _restore_lwq_state

PASSWORD_FILE = "/root/smarthost-password"  # noqa: S105 - a path, not a password
MSMTPRC = "/etc/qmail-send-systemd/msmtprc"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-{SUBMISSION_PACKAGE}.conf"
SENDER = "dev"


def _prepare(ctx: ScenarioContext, *extra: str) -> None:
    ctx.reset()
    ctx.remove_qmail()
    ctx.install_qmail()  # RPM-on-Debian's root has Fedora's /usr/sbin/alternatives (targets.py)
    ctx.install_packages([MAIN, SENDMAIL_PACKAGE, SUBMISSION_PACKAGE, *extra])
    ctx.wait_ready()
    make_pki(ctx)
    # A local user with a Maildir, to send mail and to receive bounces.
    ctx.check_output(
        f"id {SENDER} >/dev/null 2>&1 || useradd --create-home {SENDER};"
        f" runuser -u {SENDER} -- mkdir -p /home/{SENDER}/Maildir/new /home/{SENDER}/Maildir/cur"
        f" /home/{SENDER}/Maildir/tmp; rm -f /home/{SENDER}/Maildir/new/*"
    )


def _restore(ctx: ScenarioContext) -> None:
    """Take the route away again, so that the next scenario starts qmail-send without it."""
    ctx.run(
        f"rm -rf /etc/qmail-send-systemd {DROPIN} {PASSWORD_FILE}; systemctl daemon-reload"
        f"; systemctl try-restart {UNIT}"
    )
    trust_system_wide(ctx, trusted=False)
    _restore_lwq_state(ctx)


def _write_password(ctx: ScenarioContext, password: str) -> None:
    ctx.run_expect([0], f"umask 077; cat > {PASSWORD_FILE}", input=password + "\n")


def _setup(
    ctx: ScenarioContext, *, port: int, tls: str, trust: bool, password: str = PASSWORD
) -> str:
    _write_password(ctx, password)
    argv = [
        "qmail-send-systemd", "setup", "--smarthost", f"{SERVER_NAME}:{port}", "--tls", tls,
        "--user", USER, "--password-file", PASSWORD_FILE, "--forward-root", FORWARD,
    ]  # fmt: skip
    if trust:
        argv += ["--tls-trust-file", f"{PKI_DIR}/trusted-ca.pem"]
    out = ctx.check_output(argv)
    ctx.wait_ready()  # the drop-in changed: setup restarted qmail-send
    return out


def _send(ctx: ScenarioContext, recipient: str, tag: str) -> None:
    message = f"To: {recipient}\nSubject: qss {tag}\nMessage-ID: <{tag}@laptop>\n\nbody {tag}\n"
    ctx.run_expect(
        [0],
        ["runuser", "-u", SENDER, "--", "/usr/sbin/sendmail", "-i", "-t"],
        input=message,
    )


def _journal(ctx: ScenarioContext, cursor: str) -> str:
    ctx.journal_sync()
    return ctx.check_output(["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}"])


def _wait_journal(ctx: ScenarioContext, cursor: str, needle: str, what: str) -> None:
    ctx.wait_for(
        f"journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
        f" | grep -qF -- {shlex.quote(needle)}",
        timeout=40,
        message=what,
    )


def _queued(ctx: ScenarioContext) -> int:
    return len(ctx.check_output(f"find {QUEUE}/mess -type f").split())


def _assert_no_secret(ctx: ScenarioContext, cursor: str) -> None:
    """The password never reaches the journal (qmail-send writes spaces as _), verify, or ps."""
    journal = _journal(ctx, cursor)
    for form in (PASSWORD, PASSWORD.replace(" ", "_")):
        ctx.expect(form not in journal, "the smarthost password is in the journal")
    verify = ctx.run(["qmail-send-systemd", "verify", "--json"]).stdout
    ctx.expect(PASSWORD not in verify, "the password is in verify --json")


def _assert_only_tls(server: TlsServer) -> None:
    clear = [c for c in server.commands() if c.startswith("clear ") and "EHLO" not in c]
    server.ctx.expect(not clear, f"commands sent in clear: {clear}")


@scenario("submission-starttls")
def submission_starttls(ctx: ScenarioContext) -> None:
    """setup --tls starttls: mail and cron's mail to root reach the smarthost over STARTTLS with
    AUTH, the certificate checked against the system's CAs; a 5xx recipient bounces."""
    _prepare(ctx)
    try:
        trust_system_wide(ctx)
        with tls_server(ctx) as server:
            server.go_online()
            _starttls_flow(ctx, server)
    finally:
        _restore(ctx)


def _starttls_flow(ctx: ScenarioContext, server: TlsServer) -> None:
    cursor = ctx.journal_cursor()
    _setup(ctx, port=587, tls="starttls", trust=False)
    meta = ctx.check_output(["stat", "-c", "%U %a", MSMTPRC]).strip()
    ctx.expect(meta == "qmailr 600", f"{MSMTPRC} is {meta}, expected qmailr 600")
    route = ctx.check_output(["cat", "/var/qmail/control/smtproutes"])
    ctx.expect(route == f":{SERVER_NAME}:587\n", f"smtproutes holds {route!r}")
    ctx.check_output(["qmail-send-systemd", "verify"])
    tag = "tls" + ctx.container.name[-6:]
    _send(ctx, "friend@example.org", tag)
    # What cron does with a job's output: root's mail is forwarded through the smarthost.
    ctx.run_expect(
        [0], f"printf 'Subject: cron {tag}\\n\\ncron {tag}\\n' | /usr/sbin/sendmail root"
    )
    mail = "".join(server.wait_messages(2))
    ctx.expect(mail.count(f"body {tag}") == 1, f"the mail did not arrive once:\n{mail}")
    ctx.expect(f"RCPT TO:<{FORWARD}>" in mail and f"cron {tag}" in mail, f"no cron mail:\n{mail}")
    ctx.expect(mail.count("AUTH True\nTLS True\n") == 2, f"not sent with TLS and AUTH:\n{mail}")
    _assert_only_tls(server)
    # A permanent 5xx for the recipient is a bounce to the sender, with the smarthost's words.
    _send(ctx, "reject-perm@example.org", tag + "b")
    ctx.wait_for(
        f"grep -rqs '550 5.1.1' /home/{SENDER}/Maildir/new",
        timeout=40,
        message="the bounce with the smarthost's 550 in the sender's Maildir",
    )
    again = ctx.check_output(
        ["qmail-send-systemd", "setup", "--smarthost", f"{SERVER_NAME}:587", "--tls", "starttls",
         "--user", USER, "--password-file", PASSWORD_FILE, "--forward-root", FORWARD]
    )  # fmt: skip
    ctx.expect("restarted" not in again and "replaced" not in again, f"not a no-op:\n{again}")
    _assert_no_secret(ctx, cursor)
    ctx.wait_for(f'[ -z "$(find {QUEUE}/mess -type f)" ]', message="an empty queue")


@scenario("submission-deferrals")
def submission_deferrals(ctx: ScenarioContext) -> None:
    """Implicit TLS on 465: an unknown CA and a wrong password defer the mail (nothing in clear,
    the server's reply in the journal); once both are right it is delivered exactly once."""
    _prepare(ctx)
    try:
        cursor = ctx.journal_cursor()
        with tls_server(ctx, ca="rogue") as server:
            server.go_online()
            _setup(ctx, port=465, tls="implicit", trust=True)
            tag = "def" + ctx.container.name[-6:]
            _send(ctx, "friend@example.org", tag)
            _wait_journal(ctx, cursor, "certificate", "a deferral naming the certificate")
            ctx.expect(not server.messages(), "mail was delivered to an untrusted server")
            said = server.commands()
            ctx.expect(not any("MAIL" in c or "auth" in c for c in said), f"it talked: {said}")
        with tls_server(ctx, listeners=(Listener(465, "implicit"),)) as server:
            server.go_online()
            cursor = ctx.journal_cursor()
            _setup(ctx, port=465, tls="implicit", trust=True, password="not " + PASSWORD)
            ctx.check_output(["qmail-send-systemd", "flush"])
            _wait_journal(ctx, cursor, "535", "a deferral with the server's 535")
            journal = _journal(ctx, cursor)
            ctx.expect("deferral" in journal, f"the refused login was not a deferral:\n{journal}")
            ctx.expect(_queued(ctx) == 1, "the mail left the queue after a refused login")
            ctx.expect(not server.messages(), "mail was delivered after a refused login")
            _setup(ctx, port=465, tls="implicit", trust=True)
            ctx.check_output(["qmail-send-systemd", "flush"])
            mail = server.wait_messages(1)
            ctx.run(["sleep", "2"])
            ctx.check_output(["qmail-send-systemd", "flush"])
            ctx.run(["sleep", "2"])
            mail = server.messages()
            ctx.expect(len(mail) == 1 and f"body {tag}" in mail[0], f"not once: {mail}")
            _assert_only_tls(server)
            _assert_no_secret(ctx, cursor)
    finally:
        _restore(ctx)


@scenario("submission-offline-flush")
def submission_offline_flush(ctx: ScenarioContext) -> None:
    """Smarthost down: five mails wait in the queue; back up, the NetworkManager hook flushes
    them through STARTTLS + AUTH, each delivered exactly once."""
    _prepare(ctx, NM_PACKAGE)
    try:
        with tls_server(ctx) as server:
            cursor = ctx.journal_cursor()
            _setup(ctx, port=587, tls="starttls", trust=True)
            tags = [f"off{n}" + ctx.container.name[-6:] for n in range(5)]
            for tag in tags:
                _send(ctx, "friend@example.org", tag)
            ctx.wait_for(
                f"[ $(journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
                " | grep -c ': deferral: ') -ge 5 ]",
                timeout=40,
                message="five deferred deliveries",
            )
            server.go_online()
            ctx.run(["sleep", "3"])
            ctx.expect(not server.messages(), "mail arrived before any flush")
            # The hook as NetworkManager-dispatcher runs it: interface, action, environment.
            ctx.check_output(
                f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CONNECTIVITY_STATE=FULL"
                f" DEVICE_IFACE=host0 NM_DISPATCHER_ACTION=up {NM_HOOK} host0 up"
            )
            mail = "".join(server.wait_messages(5))
            ctx.check_output(["qmail-send-systemd", "flush"])  # a second flush sends nothing
            ctx.run(["sleep", "3"])
            mail = "".join(server.messages())
            for tag in tags:
                ctx.expect(mail.count(f"body {tag}") == 1, f"{tag} not delivered once:\n{mail}")
            ctx.expect(len(server.messages()) == 5, "more than five messages arrived")
            ctx.expect(_queued(ctx) == 0, "mail is left in the queue")
            _assert_only_tls(server)
    finally:
        _restore(ctx)
