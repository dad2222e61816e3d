"""What `setup` writes, as data: the smarthost, and each file with its content, owner and mode.

A leaf: relay plans qmail's files with it and submission_config the TLS route's, and
submission_config needs nothing else of relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# qmail-local refuses a .qmail file or a home directory that is group- or world-writable
# (conf-patrn); 0644 lets qmail-local, running as the alias user, read a root-owned file too.
FILE_MODE = 0o644


class Smarthost(NamedTuple):
    host: str
    port: int | None

    def route(self) -> str:
        """The catch-all smtproutes line (qmail-remote: `domain:relay[:port]`, empty domain)."""
        return f":{self.host}" if self.port is None else f":{self.host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """One file that setup owns: where, what (None: remove it), and the owner and mode its
    reader needs."""

    path: Path
    content: bytes | None
    uid: int
    gid: int
    mode: int = FILE_MODE
    backup: bool = True  # False for a secret that must exist once (the OAuth grant)
