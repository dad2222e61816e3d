"""The command line of /usr/sbin/qmail-send-systemd: parsing, --root, --debug and exit codes.

Exit codes: 0 ok, 1 a check or step failed, 2 bad usage. Expected failures print one line
with a fix; a traceback appears only with --debug.

Each command imports only the modules it uses: the helper has no bytecode cache (see the entry
script), so every module is compiled at each start, and the unit runs it twice per start.
"""

from __future__ import annotations

import os
import sys

from qmail_send_systemd import __version__
from qmail_send_systemd.errors import EXIT_FAILED, EXIT_OK, HelperError

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

PROG = "qmail-send-systemd"
FAMILIES = ("deb", "rpm")
# Steps that run inside package transactions: an unexpected error there is a warning, so that
# a bug of ours never leaves the package half-configured (--debug shows it in full).
TRANSACTION_STEPS = ("configure", "remove")
# What the unit runs at every start; it then lives as long as qmail-send. Given alone, without
# options, it skips argparse and its imports: a third of the helper's start-up.
# exec-qmail-start is 1.0.0's name for it: a unit loaded before an upgrade still runs that
# until systemd is reloaded.
SERVICE_COMMANDS = ("run", "exec-qmail-start")
# What an administrator types most, `status` alone or with --json, skips argparse too: its
# import is a fifth of the command's start-up (`python3 -X importtime`).
STATUS_FORMS = (["status"], ["status", "--json"])


def default_root() -> str:
    return os.environ.get("DPKG_ROOT") or "/"


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Run qmail-send as a systemd service: checks and package steps."
    )
    parser.add_argument(
        "--root",
        default=default_root(),
        metavar="DIR",
        help="look at DIR instead of / (default: $DPKG_ROOT or /)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser("verify", help="check the qmail installation (read-only)")
    check.add_argument("--json", action="store_true", help="findings as JSON")

    configure = commands.add_parser("configure", help="postinst configure / %%post step")
    configure.add_argument("--family", choices=FAMILIES, help="deb or rpm")
    configure.add_argument("--upgrade", action="store_true", help="an upgrade, not an install")

    remove = commands.add_parser("remove", help="prerm / %%preun / %%postun step")
    remove.add_argument("--family", choices=FAMILIES, required=True)
    remove.add_argument("--stage", choices=("prerm", "preun", "postun"), required=True)
    remove.add_argument("--action", help="dpkg's $1 (deb prerm)")
    remove.add_argument("--count", type=int, help="rpm's $1 (%%preun, %%postun)")

    status = commands.add_parser(
        "status",
        help="where is my mail: the service, the queue, the smarthost, the latest deferral",
        description=(
            "Read-only. Exit 0 when nothing needs attention, 1 when something does (each "
            "with its fix): the service down, mail queued for more than an hour, or the "
            "latest delivery attempt deferred."
        ),
    )
    status.add_argument("--json", action="store_true", help="the report as JSON")
    commands.add_parser(
        "flush", help="qmail-tcpok and reload: reread locals and virtualdomains, retry mail now"
    )
    commands.add_parser(
        "run",
        aliases=["exec-qmail-start"],
        help="the unit's ExecStart: runs qmail-start and copies its log to the journal",
    )
    setup = commands.add_parser(
        "setup",
        help="make qmail relay through a smarthost and forward root's mail",
        description=(
            "Write /var/qmail/control/smtproutes (all remote mail through HOST) and "
            "~alias/.qmail-root, .qmail-postmaster, .qmail-mailer-daemon (forward to ADDRESS); "
            "with --tls, /etc/qmail-send-systemd/msmtprc and a drop-in that makes "
            "qmail-send.service relay through msmtp with TLS and SMTP AUTH. "
            "Replaced files are kept as NAME.bak.TIMESTAMP, except msmtprc (the password)."
        ),
    )
    setup.add_argument("--smarthost", metavar="HOST[:PORT]", help="relay for all remote mail")
    setup.add_argument("--forward-root", metavar="ADDRESS", help="where root's mail goes")
    # The submission route (docs/submission.md): TLS and a login, through msmtp.
    setup.add_argument(
        "--tls",
        choices=("starttls", "implicit"),
        help="submission with STARTTLS (port 587) or implicit TLS (465), through msmtp",
    )
    setup.add_argument("--user", metavar="NAME", help="the smarthost login (with --tls)")
    setup.add_argument(
        "--password-file",
        metavar="FILE",
        help="a file whose one line is the password (with --tls; never give it as an argument)",
    )
    setup.add_argument(
        "--tls-trust-file",
        metavar="CA.pem",
        help="trust these CA certificates instead of the system's (with --tls)",
    )
    add_oauth_arguments(setup)
    setup.add_argument(
        "--dry-run", action="store_true", help="say what would change, write nothing"
    )
    commands.add_parser(
        "oauth-token",
        help="print a valid OAuth access token (msmtp's passwordeval; run as qmailr)",
    )
    commands.add_parser(
        "oauth-authorize",
        help="authorise again with the provider setup --auth named (an expired or revoked grant)",
    )
    return parser


def add_oauth_arguments(setup: argparse.ArgumentParser) -> None:
    """setup's OAuth 2.0 login and sender options (oauth_setup.py, docs/submission.md)."""
    setup.add_argument(
        "--auth",
        choices=("password", "xoauth2", "oauthbearer"),
        help="how msmtp logs in (with --tls; default password)",
    )
    setup.add_argument("--oauth-provider", choices=("microsoft", "google"))
    setup.add_argument("--oauth-client-id", metavar="ID", help="your registered app's client ID")
    setup.add_argument(
        "--oauth-client-secret-file", metavar="FILE", help="Google: the client secret's file"
    )
    setup.add_argument("--oauth-tenant", metavar="TENANT", help="Microsoft: the tenant ID")
    setup.add_argument(
        "--oauth-setting",
        action="append",
        metavar="KEY=VALUE",
        help="override scope, token_url, device_url or authorize_url",
    )
    setup.add_argument(
        "--oauth-port", type=int, metavar="PORT", help="Google: the loopback port (default any)"
    )
    setup.add_argument(
        "--envelope-sender",
        metavar="ADDRESS",
        help="every message's envelope sender, and a local From:'s (default: the --user address)",
    )


def run_service_command(root: str) -> int:
    from qmail_send_systemd import start

    return start.run(root)


def run_status(root: str, *, as_json: bool) -> int:
    from qmail_send_systemd import status
    from qmail_send_systemd.systemd import System

    report = status.check(System(root))
    print(status.render_json(report) if as_json else status.render_text(report))
    return EXIT_FAILED if status.needs_attention(report) else EXIT_OK


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    root = Path(args.root)
    command = args.command
    if command in SERVICE_COMMANDS:
        return run_service_command(args.root)
    if command == "verify":
        from qmail_send_systemd import verify

        findings = verify.check(root)
        print(verify.render_json(findings) if args.json else verify.render_text(findings))
        return EXIT_FAILED if verify.has_errors(findings) else EXIT_OK
    if command == "status":
        return run_status(args.root, as_json=args.json)
    if command == "setup":
        from qmail_send_systemd import relay

        return relay.run(args, root)
    if command in ("oauth-token", "oauth-authorize"):
        from qmail_send_systemd import oauth

        return oauth.print_token(root) if command == "oauth-token" else oauth.authorize(root)
    from qmail_send_systemd import lifecycle
    from qmail_send_systemd.systemd import System

    if command == "configure":
        return lifecycle.configure(System(root), args.family, args.upgrade)
    if command == "remove":
        if args.family == "deb":
            if args.action is None:
                parser.error("remove --family deb needs --action (dpkg's $1)")
            return lifecycle.remove_deb(System(root), args.stage, args.action)
        if args.count is None:
            parser.error("remove --family rpm needs --count (rpm's $1)")
        return lifecycle.remove_rpm(System(root), args.stage, args.count)
    if command == "flush":
        return lifecycle.flush(System(root))
    raise AssertionError(f"no handler for {command!r}")  # argparse allows only known commands


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    action: Callable[[], int]
    if len(given) == 1 and given[0] in SERVICE_COMMANDS:
        command, debug = given[0], False
        action = lambda: run_service_command(default_root())  # noqa: E731
    elif given in STATUS_FORMS:
        command, debug = "status", False
        action = lambda: run_status(default_root(), as_json=given[-1] == "--json")  # noqa: E731
    else:
        parser = build_parser()
        args = parser.parse_args(given)
        command, debug = args.command, args.debug
        action = lambda: dispatch(args, parser)  # noqa: E731
    try:
        return action()
    except HelperError as exc:
        if debug:
            raise
        report(command, str(exc))
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            raise
        report(command, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return EXIT_OK if command in TRANSACTION_STEPS else EXIT_FAILED


def report(command: str, problem: str) -> None:
    """One line on stderr. For the unit's own commands it is an `error:` line of the service,
    with the journal priority that word names (start.say)."""
    if command in SERVICE_COMMANDS:
        from qmail_send_systemd.start import say

        say(f"error: {PROG} {command}: {problem}")
    else:
        print(f"{PROG} {command}: {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
