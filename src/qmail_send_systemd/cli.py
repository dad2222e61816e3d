"""The command line of /usr/sbin/qmail-send-systemd: parsing, --root, --debug and exit codes.

Exit codes: 0 ok, 1 a check or step failed, 2 bad usage. Expected failures print one line
with a fix; a traceback appears only with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qmail_send_systemd import __version__, lifecycle, relay, start, verify
from qmail_send_systemd.errors import EXIT_FAILED, EXIT_OK, HelperError
from qmail_send_systemd.systemd import System

PROG = "qmail-send-systemd"
# Steps that run inside package transactions: an unexpected error there is a warning, so that
# a bug of ours never leaves the package half-configured (--debug shows it in full).
TRANSACTION_STEPS = ("configure", "remove")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run qmail-send as a systemd service: checks and package steps."
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("DPKG_ROOT") or "/",
        metavar="DIR",
        help="look at DIR instead of / (default: $DPKG_ROOT or /)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser("verify", help="check the qmail installation (read-only)")
    check.add_argument("--json", action="store_true", help="findings as JSON")

    configure = commands.add_parser("configure", help="postinst configure / %%post step")
    configure.add_argument("--family", choices=sorted(lifecycle.FAMILIES), help="deb or rpm")
    configure.add_argument("--upgrade", action="store_true", help="an upgrade, not an install")

    remove = commands.add_parser("remove", help="prerm / %%preun / %%postun step")
    remove.add_argument("--family", choices=sorted(lifecycle.FAMILIES), required=True)
    remove.add_argument("--stage", choices=("prerm", "preun", "postun"), required=True)
    remove.add_argument("--action", help="dpkg's $1 (deb prerm)")
    remove.add_argument("--count", type=int, help="rpm's $1 (%%preun, %%postun)")

    commands.add_parser("flush", help="qmail-tcpok and reload: retry deferred mail now")
    commands.add_parser("exec-qmail-start", help="the unit's ExecStart (execs qmail-start)")
    commands.add_parser("log-priority", help="qmail-start's logger: journal priority prefixes")
    relay.add_parser(commands)
    return parser


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    root = Path(args.root)
    command = args.command
    if command == "verify":
        findings = verify.check(root)
        print(verify.render_json(findings) if args.json else verify.render_text(findings))
        return EXIT_FAILED if verify.has_errors(findings) else EXIT_OK
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
    if command == "exec-qmail-start":
        return start.exec_qmail_start(root)
    if command == "log-priority":
        return start.log_priority(sys.stdin.buffer, sys.stdout.fileno())
    return relay.run(args, root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args, parser)
    except HelperError as exc:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        kind = type(exc).__name__
        print(
            f"{PROG} {args.command}: internal error: {kind}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_OK if args.command in TRANSACTION_STEPS else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
