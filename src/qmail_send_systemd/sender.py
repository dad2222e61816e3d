"""A sender the smarthost accepts: the envelope sender and the From: header of relayed mail.

Most providers refuse an envelope sender other than the login (553 5.7.1), and Microsoft 365
also a From: it does not let the login send as. Mail that local programs and qmail itself make
has neither: cron's (qmail-inject: `From: root@laptop.example`, or `anonymous@...` without
LOGNAME), bounces (envelope sender `<>`, `From: MAILER-DAEMON@...`), the double bounce
(`#@[]`). Refused, a bounce's bounce is refused too, and qmail ends with `triple bounce:
discarding`. So with `setup --envelope-sender ADDRESS` (by default the login when it is an
address) msmtprc says `from ADDRESS`, and our qmail-remote:

- gives msmtp that address as the envelope sender of every message (`-f`), whatever qmail's;
- replaces a From: that is missing or local (its domain is control/me's, locals' or
  defaulthost's, or it has none) by that address, keeping the old one as the display name
  (`From: "root@laptop.example" <you@example.net>`), so the recipient still sees who wrote;
  any other From: (a user's own address) is left alone: it is theirs to get accepted.

The message is read from the queue file (fd 0, seekable); a rewritten one goes to msmtp
through a temporary file in the unit's PrivateTmp, never through memory whole.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: see start.py
if TYPE_CHECKING:
    from collections.abc import Iterable

CONTROL = "var/qmail/control"  # relative to the root
HEADER_LIMIT = 1 << 20  # a header larger than this is passed on untouched
CHUNK = 65536


def local_domains(root: str) -> set[str]:
    """The domains qmail-inject and qmail-send put in the From: of what they make."""
    names: set[str] = set()
    for name in ("me", "locals", "defaulthost", "defaultdomain"):
        try:
            with open(os.path.join(root, CONTROL, name), encoding="utf-8", errors="replace") as f:
                names.update(line.strip().lower() for line in f)
        except OSError:
            continue
    names.discard("")
    return names


def _fields(header: bytes) -> list[bytes]:
    """Header fields, each with its continuation lines."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _is_local(addresses: Iterable[tuple[str, str]], local: set[str]) -> bool:
    found = False
    for _, address in addresses:
        found = True
        domain = address.rpartition("@")[2].strip().lower() if "@" in address else ""
        if domain and domain not in local:
            return False
    return found


def rewrite_header(header: bytes, address: str, local: set[str]) -> bytes | None:
    """The header with a From: of `address` if its From: is missing or local; else None.
    `header` ends with the empty line that ends it (or is the whole message, without one)."""
    from email.utils import formataddr, getaddresses

    fields = _fields(header)
    index = next((i for i, f in enumerate(fields) if f[:5].lower() == b"from:"), None)
    if index is None:
        position = next((i for i, f in enumerate(fields) if not f.strip()), len(fields))
        fields.insert(position, f"From: <{address}>\n".encode("ascii"))
        return b"".join(fields)
    value = fields[index][5:].decode("latin-1").replace("\r", "").replace("\n", "")
    parsed = getaddresses([value])
    if not _is_local(parsed, local):
        return None
    names = [name for name, _ in parsed if name]
    shown = names[0] if names else ", ".join(a for _, a in parsed if a)
    new = formataddr((shown, address)) if shown else f"<{address}>"
    fields[index] = b"From: " + new.encode("latin-1", "replace") + b"\n"
    return b"".join(fields)


def _read_header(fd: int) -> tuple[bytes, bool]:
    """Read from fd up to the end of the header; (what was read, whether the end was seen)."""
    data = b""
    while len(data) < HEADER_LIMIT:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return data, True
        start = max(0, len(data) - 2)
        data += chunk
        if data.startswith(b"\n") or b"\n\n" in data[start:] or b"\n\r\n" in data[start:]:
            return data, True
    return data, False


def message_for_msmtp(fd: int, address: str, local: set[str]) -> int:
    """The fd msmtp reads the message from: `fd` itself, rewound, when its From: stays; else
    a temporary file with the new header and the rest of the message (caller closes it)."""
    import tempfile

    data, complete = _read_header(fd)
    end = data.find(b"\n\n") + 2 if b"\n\n" in data else len(data)
    if data.startswith(b"\n"):
        end = 0
    new = rewrite_header(data[:end], address, local) if complete else None
    if new is None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return fd
        except OSError:  # not a file (a pipe in a test): copy as it is
            new = data[:end]
    with tempfile.TemporaryFile() as out:
        out.write(new)
        out.write(data[end:])
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            out.write(chunk)
        out.flush()
        copy = os.dup(out.fileno())
    os.lseek(copy, 0, os.SEEK_SET)
    return copy


def default_sender(user: str, given: str | None) -> str | None:
    """setup's envelope sender: the one given, else the login when it is an address."""
    from qmail_send_systemd.addresses import check_address
    from qmail_send_systemd.errors import HelperError

    if given is not None:
        return check_address(given)
    if user and "@" in user:
        try:
            return check_address(user)
        except HelperError:
            return None
    return None
