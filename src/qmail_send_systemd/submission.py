"""qmail-remote for the submission route: hand each remote delivery to msmtp (TLS + SMTP AUTH).

The qmail-send-systemd-submission package installs /usr/lib/qmail-send-systemd/qmail-remote,
which runs `main()`; `setup --tls` bind-mounts it over /var/qmail/bin/qmail-remote in
qmail-send.service's mount namespace alone (docs/submission.md). qmail-rspawn runs it exactly
as it runs qmail's own: argv `qmail-remote host sender recip...`, the message on fd 0, fd 1 and
fd 2 both the pipe back to qmail-rspawn. So it speaks qmail-remote(8)'s protocol: one report
per recipient (`r` accepted, `h` permanently or `s` temporarily rejected), then one for the
message (`K` delivered, `Z` temporary, `D` permanent failure), each a letter, a text, and a 0
byte; it always exits 0, and writes nothing else on fd 1 or fd 2.

Nothing is lost and nothing is sent twice: `K` is written only after msmtp exited 0 (the
smarthost accepted the DATA), and qmail-send removes a message only after `K`. A crash before
the report is a retry, as with qmail's own qmail-remote. A failure counts as permanent only when
the smarthost answered 5xx to the message itself (its sender, a recipient, or its content);
everything before that (DNS, connection, TLS, STARTTLS, the login) defers the mail, so that a
network outage, an untrusted certificate or a wrong password never bounces it.

Runs as qmailr inside the unit's sandbox; stdlib only (Python >= 3.9), imports only os and sys
until a delivery needs more.
"""

from __future__ import annotations

import os
import sys

from qmail_send_systemd.msmtprc import ACCOUNT, CONFIG, read_config

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Sequence

MSMTP = "/usr/bin/msmtp"
CONTROL = "var/qmail/control"  # relative to the root
# What qmail-remote says when it cannot even start (qmail-remote.c's perm_usage).
USAGE = "I (qmail-remote) was invoked improperly. (#5.3.5)\n"
# msmtp parses command-line recipients as header addresses (NEWS 1.4.32): these would be split
# or rewritten, so such a recipient cannot be relayed through it at all.
# (A domain literal, user@[192.0.2.1], passes unchanged.)
UNSAFE_IN_ADDRESS = frozenset(',;:<>()"\\ \t')

# How msmtp (LC_ALL=C) names the step that failed, on its first line of error output.
STAGES = (
    ("envelope from address", "sender"),
    ("recipient address", "recipient"),
    ("did not accept the mail", "data"),
    ("authentication failed", "login"),
)
SERVER_SAID = "server message: "
SENDER_FIX = (
    "give an envelope sender the smarthost accepts with `qmail-send-systemd setup "
    "--envelope-sender ADDRESS ...` (the login, usually), then `qmail-send-systemd flush`"
)
LOGIN_FIX = (
    "correct the user or password with `qmail-send-systemd setup`, then `qmail-send-systemd flush`"
)
# Microsoft 365's answer to a password once basic authentication is off for the tenant.
BASIC_AUTH_OFF = "5.7.30"
OAUTH_FIX = (
    "the provider wants OAuth 2.0: `qmail-send-systemd setup ... --auth xoauth2 "
    "--oauth-provider microsoft ...` (docs/submission.md), then `qmail-send-systemd flush`"
)


class Outcome:
    """What one msmtp run came to: the step (delivered, sender, recipient, data, login,
    connection), whether the smarthost's answer was permanent, its reply lines, and msmtp's
    own description of the failure."""

    __slots__ = ("permanent", "problem", "said", "stage")

    def __init__(self, stage: str, permanent: bool, said: tuple[str, ...], problem: str) -> None:
        self.stage, self.permanent, self.said, self.problem = stage, permanent, said, problem

    def __repr__(self) -> str:
        return f"Outcome({self.stage!r}, {self.permanent!r}, {self.said!r}, {self.problem!r})"


def classify(returncode: int, stderr: str) -> Outcome:
    """Read msmtp's exit status and error output (LC_ALL=C)."""
    if returncode == 0:
        return Outcome("delivered", False, (), "")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line[len("msmtp: ") :] if line.startswith("msmtp: ") else line for line in lines]
    said = tuple(line[len(SERVER_SAID) :] for line in lines if line.startswith(SERVER_SAID))
    problems = [line for line in lines if not line.startswith(SERVER_SAID)]
    problem = problems[0] if problems else f"msmtp exited {returncode}"
    if returncode < 0:
        return Outcome("connection", False, said, f"msmtp was killed by signal {-returncode}")
    stage = next((name for marker, name in STAGES if marker in problem), "connection")
    code = said[-1][:3] if said and said[-1][:3].isdigit() else ""
    # Only an answer about the message itself may bounce it; a refused login is deferred too
    # (535 is permanent in SMTP, but for a relay it is a setting to fix, not a bad message).
    permanent = stage in ("sender", "recipient", "data") and code.startswith("5")
    return Outcome(stage, permanent, said, problem)


def _said(outcome: Outcome) -> str:
    return "Remote host said: " + "\n".join(outcome.said) + "\n" if outcome.said else ""


def reports(outcome: Outcome, name: str, recipients: Sequence[str]) -> list[str]:
    """qmail-remote(8)'s reports (without their 0 bytes) for one msmtp run to `name`, in the
    words qmail-remote.c uses for the same events."""
    said = _said(outcome)
    letter = "D" if outcome.permanent else "Z"
    if outcome.stage == "delivered":
        return ["r"] * len(recipients) + [f"K{name} accepted message.\n"]
    if outcome.stage == "sender":
        # Deferred even on 5xx: the bounce would carry a sender the smarthost refuses too,
        # and qmail would end with `triple bounce: discarding` (sender.py). `status` says it.
        return [
            f"ZConnected to {name} but sender was rejected.\n{said}"
            f"The mail stays queued: {SENDER_FIX}. (#4.7.1)\n"
        ]
    if outcome.stage == "recipient":
        refused = next((r for r in recipients if f" {r} " in f" {outcome.problem} "), None)
        out = []
        for recipient in recipients:
            if recipient == refused or refused is None:
                out.append(
                    ("h" if outcome.permanent else "s") + f"{name} does not like recipient.\n{said}"
                )
            else:  # accepted, but msmtp sends to all recipients or to none
                out.append(f"s{name} did not get the message: msmtp gave up on {refused}.\n")
            if recipient == refused:
                break
        return [*out, f"DGiving up on {name}.\n"]  # qmail-rspawn reads the first letter
    if outcome.stage == "data":
        return ["r"] * len(recipients) + [
            f"{letter}{name} failed after I sent the message.\n{said}"
        ]
    if outcome.stage == "login":
        return [
            f"ZConnected to {name} but my login was refused: {outcome.problem}.\n{said}"
            f"The mail stays queued: {login_fix(outcome)}. (#4.7.0)\n"
        ]
    return [f"ZSorry, I couldn't deliver through {name}: {outcome.problem}. (#4.4.1)\n{said}"]


def login_fix(outcome: Outcome) -> str:
    return OAUTH_FIX if any(BASIC_AUTH_OFF in line for line in outcome.said) else LOGIN_FIX


def remember(root: str, outcome: Outcome, name: str) -> None:
    """What only the administrator can fix, for `status` and `verify` (submission_state.py);
    forgotten once the smarthost accepts a message again."""
    from qmail_send_systemd import submission_state

    said = f": {outcome.said[-1]}" if outcome.said else ""
    if outcome.stage == "delivered":
        submission_state.clear(root)
    elif outcome.stage == "sender":
        problem = f"{name} refuses the envelope sender{said}"
        submission_state.record(root, "sender", problem, SENDER_FIX)
    elif outcome.stage == "login":
        problem = f"{name} refuses the login{said}"
        submission_state.record(root, "login", problem, login_fix(outcome))


def _control(root: str, name: str) -> str:
    try:
        with open(os.path.join(root, CONTROL, name), encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return ""


def msmtp_command(
    msmtp: str, config: str, envelope: Sequence[str], helo: str, timeout: str
) -> list[str]:
    """The msmtp command line: the envelope (sender, recipients) as qmail gives it, and
    nothing secret."""
    sender, *recipients = envelope
    argv = [msmtp, f"--file={config}", f"--account={ACCOUNT}"]
    if helo:
        argv.append(f"--domain={helo}")  # qmail-remote(8): helohost, else me
    argv += [f"--timeout={timeout}", "-f", sender, "--", *recipients]
    return argv


def relay(
    argv: Sequence[str],
    *,
    root: str = "/",
    config: str = CONFIG,
    msmtp: str = MSMTP,
    message: int = 0,
) -> str:
    """Run one delivery (the message on fd 0) and return the report text, 0 bytes included."""
    if len(argv) < 4:
        return "D" + USAGE + "\0"
    sender, recipients = argv[2], list(argv[3:])
    try:
        settings = read_config(config)
    except OSError as exc:
        return (
            f"ZUnable to read {config}: {exc.strerror}: run `qmail-send-systemd setup "
            "--smarthost HOST:PORT --tls ...` (#4.3.0)\n\0"
        )
    name = f"{settings.get('host', '?')}:{settings.get('port', '?')}"
    unsafe = [r for r in recipients if UNSAFE_IN_ADDRESS & set(r)]
    if unsafe:
        text = f"h{unsafe[0]} cannot be relayed through msmtp (it would parse it). (#5.1.3)\n"
        return text + "\0" + f"DGiving up on {name}.\n\0"
    helo = _control(root, "helohost") or _control(root, "me")
    timeout = _control(root, "timeoutremote") or "1200"
    timeout = timeout if timeout.isdigit() else "1200"
    if settings.get("auth") in ("xoauth2", "oauthbearer"):
        from qmail_send_systemd import oauth
        from qmail_send_systemd.errors import HelperError

        try:  # here, so that a revoked grant is our deferral, with its fix, not msmtp's
            oauth.access_token(root)
        except HelperError as exc:
            return f"ZNo OAuth access token for {name}: {exc}. (#4.7.0)\n\0"
    if settings.get("from"):  # setup --envelope-sender (sender.py)
        from qmail_send_systemd import sender as rewrite

        sender = settings["from"]
        message = rewrite.message_for_msmtp(message, sender, rewrite.local_domains(root))
    command = msmtp_command(msmtp, config, [sender, *recipients], helo, timeout)
    import subprocess  # at the delivery, not at the start

    try:
        proc = subprocess.run(
            command,
            stdin=message,  # the queue file itself, as qmail-rspawn opened it
            capture_output=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            check=False,
        )
    except OSError as exc:
        return f"ZUnable to run {msmtp}: {exc.strerror}: install msmtp. (#4.3.0)\n\0"
    outcome = classify(proc.returncode, proc.stderr.decode("utf-8", "replace"))
    remember(root, outcome, name)
    text = "".join(report + "\0" for report in reports(outcome, name, recipients))
    password = settings.get("password", "")
    # msmtp never prints the password; should a future one, it still never reaches the log.
    return text.replace(password, "(password)") if password else text


def main(argv: Sequence[str] | None = None) -> int:
    text = relay(sys.argv if argv is None else argv)
    try:
        os.write(1, text.encode("utf-8", "replace"))
    except OSError:
        return 111  # qmail-rspawn: "Unable to run qmail-remote", a deferral
    return 0
