"""What setup accepts as a smarthost and as a mail address, checked before anything is written.

A leaf: relay (setup) and sender (the envelope sender a smarthost accepts) both check
addresses with it, and it needs nothing of either.
"""

from __future__ import annotations

import re

from qmail_send_systemd.errors import UsageError
from qmail_send_systemd.setup_plan import Smarthost

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\Z")
# RFC 5322 dot-atom text: what a forward line (`&address`) can carry without quoting.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")


def _usage(message: str, hint: str = "") -> UsageError:
    return UsageError(message, hint)


def _is_hostname(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return False
    # An all-numeric name that is not a valid dotted quad (1.2.3, 300.1.1.1) is a typo, not a host.
    return not all(label.isdigit() for label in labels)


def parse_smarthost(text: str) -> Smarthost:
    """HOST, HOST:PORT, IPv4, [IPv4] or [IPv4]:PORT, as qmail-remote's smtproutes accepts them."""
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise _usage(
            f"malformed smarthost {text!r}", "give HOST or HOST:PORT, e.g. smtp.example.org:587"
        )
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _usage(f"malformed smarthost {text!r}: no closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _usage(f"malformed smarthost {text!r}", "write [ADDRESS]:PORT")
            port_text = rest[1:]
        if not _IPV4.match(host):
            raise _usage(
                f"smarthost {text!r} is not an IPv4 literal",
                "qmail-remote has no IPv6 support; give a hostname or an IPv4 address",
            )
    elif text.count(":") > 1:
        raise _usage(
            f"smarthost {text!r} looks like an IPv6 address",
            "qmail-remote has no IPv6 support; give a hostname or an IPv4 address",
        )
    elif ":" in text:
        host, port_text = text.split(":", 1)
    if not (_IPV4.match(host) or _is_hostname(host)):
        raise _usage(
            f"malformed smarthost host {host!r}",
            "give a hostname (RFC 1123 letters, digits, '-' and '.') or an IPv4 address",
        )
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
            raise _usage(f"malformed smarthost port {port_text!r}", "the port is 1..65535")
        port = int(port_text)
    return Smarthost(host.lower(), port)


def check_address(text: str) -> str:
    """A forward target local@domain that a `&address` line carries as-is."""
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in text):
        raise _usage(
            f"malformed address {text!r}: spaces, control or non-ASCII characters",
            "give local@domain, e.g. me@example.org",
        )
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise _usage(f"malformed address {text!r}", "give local@domain, e.g. me@example.org")
    if not all(_ATOM.match(part) for part in local.split(".")):
        raise _usage(
            f"malformed address {text!r}: unsupported local part {local!r}",
            "use letters, digits and !#$%&'*+/=?^_`{|}~- separated by single dots",
        )
    literal = domain[1:-1] if domain.startswith("[") and domain.endswith("]") else None
    if not (_is_hostname(domain) or (literal is not None and _IPV4.match(literal))):
        raise _usage(f"malformed address {text!r}: bad domain {domain!r}")
    return text
