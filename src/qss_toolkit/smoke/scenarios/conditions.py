"""Smoke scenarios for the conditions administrators really have (issue 21, item 4), on real
qmail: a user's `|program` writing to /tmp and /var/tmp, a smarthost that takes no sender but
its login, an optional package removed while mail waits, and the README's quick start run as
written under `umask 077`.

Several of them fail on 1.1.0: what they find is issue 22's (items 1, 4 and 5). They are never
weakened to pass; the lead gates them (`smoke --scenario`) until those fixes land.
"""

from __future__ import annotations

import re
import shlex

from qss_toolkit import PROJECT_ROOT
from qss_toolkit.families import Family
from qss_toolkit.smoke.scenarios.fixtures.smtp_tls import (
    PASSWORD,
    SERVER_NAME,
    TLS_DIR,
    USER,
    make_pki,
    tls_server,
    trust_system_wide,
)
from qss_toolkit.smoke.scenarios.lifecycle import (
    REMOTE_RECIPIENT,
    _queue_remote_messages,
    _running_with_qmail,
)
from qss_toolkit.smoke.scenarios.registry import (
    MAIN,
    NETWORKD_PACKAGE,
    NM_PACKAGE,
    QUEUE,
    SENDMAIL_PACKAGE,
    SUBMISSION_PACKAGE,
    UNIT,
    ScenarioContext,
    scenario,
)
from qss_toolkit.smoke.scenarios.submission import (
    SENDER,
    _prepare,
    _restore,
    _send,
    _setup,
)

ALIAS_HOME = "/var/qmail/alias"
INJECT = "/var/qmail/bin/qmail-inject"


def _messages(ctx: ScenarioContext) -> int:
    return len(ctx.check_output(f"find {QUEUE}/mess -type f").split())


def _delivery_end(ctx: ScenarioContext, cursor: str, recipient: str) -> str:
    """The `success`/`deferral`/`failure` line of the one delivery to local `recipient` after
    `cursor` (waited for)."""
    journal = f"journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
    ctx.wait_for(
        f"n=$({journal} | sed -n 's/^starting delivery \\([0-9]*\\): msg [0-9]* to local"
        f' {recipient}@.*/\\1/p\' | tail -1) && [ -n "$n" ]'
        f' && {journal} | grep -q "^delivery $n: "',
        timeout=40,
        message=f"the delivery to {recipient} to end",
    )
    ctx.journal_sync()
    out = ctx.check_output(
        ["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}", "-u", UNIT]
    )
    started = re.findall(rf"^starting delivery (\d+): msg \d+ to local {recipient}@", out, re.M)
    ctx.expect(bool(started), f"no delivery to local {recipient} in the journal:\n{out[-1500:]}")
    ends = re.findall(rf"^delivery {started[-1]}: (.*)$", out, re.M)
    ctx.expect(bool(ends), f"delivery {started[-1]} to {recipient} has no end line:\n{out[-1500:]}")
    return str(ends[-1])


@scenario("program-writes-tmp")
def program_writes_tmp(ctx: ScenarioContext) -> None:
    """A .qmail `|program` that appends to /tmp and to /var/tmp: what a delivery reported as a
    success is there for the administrator, outside the service, and still after a restart;
    otherwise the delivery is deferred with its reason (issue 22, item 1)."""
    _running_with_qmail(ctx)
    tag = "tmp" + ctx.container.name[-6:]
    files = {"tmpfile": f"/tmp/qss-{tag}.txt", "vartmpfile": f"/var/tmp/qss-{tag}.txt"}
    try:
        for name, path in files.items():
            ctx.check_output(
                f"rm -f {path} && printf '%s\\n' '|cat >> {path}' > {ALIAS_HOME}/.qmail-{name}"
                f" && chmod 644 {ALIAS_HOME}/.qmail-{name}"
            )
        seen: dict[str, str] = {}
        for name, path in files.items():
            cursor = ctx.journal_cursor()
            ctx.run_expect([0], [INJECT, name], input=f"To: {name}\nSubject: {tag}\n\n{tag}\n")
            end = _delivery_end(ctx, cursor, name)
            if end.startswith("success"):
                written = ctx.run(["cat", path]).stdout
                ctx.expect(
                    tag in written,
                    f"the delivery to |cat >> {path} said `{end}`, but {path} seen from"
                    f" outside the service holds {written!r}: the mail is gone",
                )
                seen[path] = written
            else:
                ctx.expect(end.startswith("deferral"), f"|cat >> {path}: `{end}`")
        ctx.check_output(f"systemctl restart {UNIT}")
        ctx.wait_ready()
        for path, written in seen.items():
            after = ctx.run(["cat", path]).stdout
            ctx.expect(after == written, f"{path} after a restart holds {after!r}")
    finally:
        ctx.run(f"rm -f {ALIAS_HOME}/.qmail-tmpfile {ALIAS_HOME}/.qmail-vartmpfile")
        ctx.run(["rm", "-f", *files.values()])


@scenario("smarthost-login-sender")
def smarthost_login_sender(ctx: ScenarioContext) -> None:
    """A smarthost that takes no envelope sender but its login (553 otherwise, as most
    providers): a user's mail and cron's mail to root reach it, nothing bounces."""
    _prepare(ctx)
    try:
        trust_system_wide(ctx)
        with tls_server(ctx, only_sender=USER) as server:
            server.go_online()
            cursor = ctx.journal_cursor()
            _setup(ctx, port=587, tls="starttls", trust=False)
            tag = "login" + ctx.container.name[-6:]
            _send(ctx, "friend@example.org", tag)
            ctx.run_expect(
                [0], f"printf 'Subject: cron {tag}\\n\\ncron {tag}\\n' | /usr/sbin/sendmail root"
            )
            # Both at the smarthost, or a remote delivery failed (then it says why).
            ctx.wait_for(
                f"[ $(ls {TLS_DIR} | grep -c '[.]eml$') -ge 2 ]"
                f" || journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
                " | grep -q '^delivery [0-9]*: failure: '",
                timeout=60,
                message="the two mails at the smarthost, or a failure",
            )
            ctx.journal_sync()
            log = ctx.check_output(
                ["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}", "-u", UNIT]
            )
            refused = [line for line in log.splitlines() if ": failure: " in line]
            ctx.expect(
                not refused,
                f"the smarthost refused the mail (it takes only {USER} as sender): {refused[:2]}",
            )
            mail = "".join(server.wait_messages(2, timeout=40))
            ctx.expect(f"body {tag}" in mail and f"cron {tag}" in mail, f"missing:\n{mail}")
            ctx.expect(mail.count(f"MAIL FROM:<{USER}>") == 2, f"envelope senders:\n{mail}")
    finally:
        _restore(ctx)


def _local_mail_delivered(ctx: ScenarioContext, why: str) -> None:
    """One mail to a local alias (root's may be forwarded by setup) in ~alias/Maildir."""
    ctx.check_output(
        f"echo ./Maildir/ > {ALIAS_HOME}/.qmail-qsslocal && chmod 644 {ALIAS_HOME}/.qmail-qsslocal"
    )
    before = ctx.run(f"ls {ALIAS_HOME}/Maildir/new | wc -l").stdout.strip() or "0"
    ctx.run_expect([0], [INJECT, "qsslocal"], input=f"To: qsslocal\nSubject: {why}\n\n{why}\n")
    ctx.wait_for(
        f"test $(ls {ALIAS_HOME}/Maildir/new | wc -l) -gt {before}",
        timeout=40,
        message=f"local mail delivered {why}",
    )


# What the route program defers every remote delivery with while the submission package is
# gone (qmail-send writes its spaces as _).
ROUTE_WITHOUT_PACKAGE = f"needs_{SUBMISSION_PACKAGE},_which_is_not_installed"


@scenario("optional-package-removed")
def optional_package_removed(ctx: ScenarioContext) -> None:
    """Each optional package removed while remote mail is queued: the service keeps running
    and delivering local mail, after a restart and after a reboot; the remote mail stays
    queued (never bounced, never sent another way), and without the submission package
    `verify` and `status` say so in one line with the fix (issue 21, item 4; issue 22, item 5)."""
    for package in (NM_PACKAGE, NETWORKD_PACKAGE, SENDMAIL_PACKAGE, SUBMISSION_PACKAGE):
        if package == SUBMISSION_PACKAGE:
            _prepare(ctx)  # the main, sendmail and submission packages, qmail, a user
        else:
            ctx.reset()
            ctx.install_qmail()
            ctx.install_packages([MAIN, package])
            ctx.wait_ready()
        try:
            cursor = ctx.journal_cursor()
            if package == SUBMISSION_PACKAGE:
                # The smarthost is down: the mail waits for it.
                with tls_server(ctx):
                    _setup(ctx, port=587, tls="starttls", trust=True)
                    _send(ctx, REMOTE_RECIPIENT, "waits")
                    ctx.wait_for(
                        f"journalctl -q -o cat -u {UNIT} -n 50 | grep -q ': deferral: '",
                        message="the remote mail to be deferred",
                    )
            else:
                _queue_remote_messages(ctx, 2)
            queued = _messages(ctx)
            ctx.remove([package])
            ctx.assert_active()
            _local_mail_delivered(ctx, f"after removing {package}")
            ctx.check_output(f"systemctl restart {UNIT}", timeout=60)
            _still_waiting(ctx, package, queued, f"after removing {package} and a restart", cursor)
            ctx.reboot()
            why = f"after removing {package}, a restart and a reboot"
            _still_waiting(ctx, package, queued, why, cursor)
        finally:
            if package == SUBMISSION_PACKAGE:
                _restore(ctx)


def _still_waiting(ctx: ScenarioContext, package: str, queued: int, why: str, cursor: str) -> None:
    """`why` (after `package` was removed with `queued` messages in the queue): the service
    is active and delivers local mail, every remote mail is still queued, and none bounced
    since `cursor` (under podman a reboot empties the journal: its /var/log/journal is a
    tmpfs; the queue's bounce directory shows a bounce all the same)."""
    ctx.assert_active()
    ctx.wait_ready()
    _local_mail_delivered(ctx, why)
    if package == SUBMISSION_PACKAGE:
        _route_without_package(ctx, why)
    for command in ("verify", "status"):
        said = ctx.run(["qmail-send-systemd", command])
        if package == SUBMISSION_PACKAGE:
            # status also shows the latest deferral, which names it (as qmail-send logs it).
            named = [line for line in said.stdout.splitlines() if f"{package} is not" in line]
            ctx.expect(
                said.returncode == 1
                and len(named) == 1
                and "stays queued" in named[0]
                and f"install {package}" in named[0].partition("(fix: ")[2],
                f"{why}: `qmail-send-systemd {command}` exited {said.returncode}; lines naming"
                f" {package} (one, with the fix, expected): {named}\n{said.stdout[-1500:]}",
            )
        else:  # nothing needs it: nothing is said about it
            named = [line for line in said.stdout.splitlines() if package in line]
            ctx.expect(not named, f"{why}: `qmail-send-systemd {command}` says: {named}")
    ctx.journal_sync()
    log = ctx.run(["journalctl", "-q", "-o", "cat", "-u", UNIT, f"--after-cursor={cursor}"]).stdout
    bounced = [line for line in log.splitlines() if re.match(r"delivery \d+: failure: ", line)]
    ctx.expect(not bounced, f"{why}: a mail bounced: {bounced[:2]}")
    ctx.check_output(f'test -z "$(find {QUEUE}/bounce -type f)"')
    left = _messages(ctx)
    ctx.expect(left >= queued, f"{why}: {queued} remote mails queued, {left} left")


def _route_without_package(ctx: ScenarioContext, why: str) -> None:
    """With the smarthost up again and a flush, every remote delivery attempt is deferred by
    the route program for want of the submission package: none reaches the smarthost, in
    clear (qmail's own qmail-remote) or otherwise."""
    make_pki(ctx)  # the smarthost's name on the loopback again (podman rewrites /etc/hosts)
    cursor = ctx.journal_cursor()
    with tls_server(ctx) as server:
        server.go_online()
        ctx.check_output(["qmail-send-systemd", "flush"])
        ctx.wait_for(
            f"journalctl -q -o cat --after-cursor={shlex.quote(cursor)} -u {UNIT}"
            f" | grep -qF -- {shlex.quote(ROUTE_WITHOUT_PACKAGE)}",
            timeout=40,
            message=f"the flushed remote mail to be deferred for want of {SUBMISSION_PACKAGE}",
        )
        attempts = _remote_attempts(ctx, cursor)
        ctx.expect(bool(attempts), f"{why}: no remote delivery after the flush")
        other = {n: end for n, end in attempts.items() if ROUTE_WITHOUT_PACKAGE not in end}
        ctx.expect(
            not other, f"{why}: remote deliveries that did not wait for the package: {other}"
        )
        ctx.expect(
            not server.commands() and not server.messages(),
            f"{why}: the smarthost was spoken to: {server.commands()}",
        )


def _remote_attempts(ctx: ScenarioContext, cursor: str, timeout: float = 40) -> dict[str, str]:
    """Delivery number -> end line of each remote delivery started after `cursor`, once every
    one of them has ended."""
    deadline = ctx.host.monotonic() + timeout
    while True:
        ctx.journal_sync()
        out = ctx.check_output(
            ["journalctl", "-q", "-o", "cat", f"--after-cursor={cursor}", "-u", UNIT]
        )
        started = re.findall(r"^starting delivery (\d+): msg \d+ to remote ", out, re.M)
        ends = dict(re.findall(r"^delivery (\d+): (.*)$", out, re.M))
        if all(n in ends for n in started):
            return {n: ends[n] for n in started}
        ctx.expect(
            ctx.host.monotonic() < deadline,
            f"remote deliveries {[n for n in started if n not in ends]} did not end in"
            f" {timeout:.0f}s:\n{out[-1500:]}",
        )
        ctx.host.sleep(0.5)


QUICK_START = "## Laptop relay in five minutes"
# The README's example names, and what answers for them in the container.
EXAMPLES = (
    ("smtp.example.net", SERVER_NAME),
    ("you@example.net", USER),
    ("'your password'", shlex.quote(PASSWORD)),
)


def quick_start_blocks(readme: str) -> list[str]:
    """The ```sh blocks of the README's quick start, in order, as written."""
    start = readme.index(QUICK_START)
    end = readme.index("\n## ", start + len(QUICK_START))
    section = readme[start:end]
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```", section, re.M | re.S)
    return ["\n".join(line[len(indent) :] for line in body.splitlines()) for indent, body in blocks]


@scenario("readme-quick-start-umask-077", families=(Family.DEB,))
def readme_quick_start(ctx: ScenarioContext) -> None:
    """The README quick start's shell blocks, run as written (as root, as the README says, the
    example smarthost answered by a test one) under `umask 077`: each exits 0, and the test
    mail of its step 4 and the mail to root reach the smarthost (issue 22, item 4)."""
    blocks = quick_start_blocks((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))
    ctx.expect(len(blocks) >= 4, f"the quick start has {len(blocks)} shell blocks")
    # What the README's "Installing the packages" installs, from dist/ instead of a repository.
    _prepare(ctx, NM_PACKAGE)
    try:
        trust_system_wide(ctx)
        with tls_server(ctx) as server:
            server.go_online()
            for number, block in enumerate(blocks, 1):
                script = block
                for example, real in EXAMPLES:
                    script = script.replace(example, real)
                result = ctx.run(f"umask 077\n{script}", timeout=300)
                ctx.expect(
                    result.returncode == 0,
                    f"quick start block {number} exited {result.returncode}:\n{block}\n"
                    f"{(result.stdout + result.stderr)[-1500:]}",
                )
            ctx.check_output(f"runuser -u {SENDER} -- true")
            mail = "".join(server.wait_messages(2, timeout=60))
            ctx.expect("it works" in mail, f"the README's test mail did not arrive:\n{mail}")
            ctx.expect("cron says hello" in mail, f"the README's mail to root:\n{mail}")
    finally:
        _restore(ctx)
